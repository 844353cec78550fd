/*
 * A Kafka protocol stand-in for the tests of hopper-streams/kafka: librdkafka's mock cluster,
 * which Confluent maintains to test librdkafka itself, listening on 127.0.0.1.
 *
 *   kafka-mock [-b BROKERS] [-e TOPIC=ERRCODE]... TOPIC[:PARTITIONS] ...
 *
 * Creates the topics named on the command line (PARTITIONS defaults to 1); -e makes metadata
 * requests for TOPIC answer the Kafka protocol error ERRCODE (29: TOPIC_AUTHORIZATION_FAILED), to
 * test errors a client cannot retry. Prints the bootstrap address list on one line of stdout, then
 * waits for signals:
 *   SIGUSR1  takes every broker down (connections closed, new ones refused), prints "down"
 *   SIGUSR2  brings every broker back up, prints "up"
 *   SIGTERM, SIGINT  destroys the cluster and exits 0
 * "down" and "up" are printed after the change took effect, so a test can wait on them.
 * On Linux it also exits when its parent dies, so a crashed test run leaves no broker behind.
 *
 * Build: gcc -O2 -o .tmp/kafka-mock test/helpers/kafka-mock.c -lrdkafka
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void usage(const char *why) {
  fprintf(stderr, "kafka-mock: %s\nusage: kafka-mock [-b BROKERS] [-e TOPIC=ERRCODE]... TOPIC[:PARTITIONS] ...\n", why);
  exit(2);
}

static void set_all(rd_kafka_mock_cluster_t *mcluster, int brokers, int up) {
  for (int id = 1; id <= brokers; id++) {
    rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(mcluster, id) : rd_kafka_mock_broker_set_down(mcluster, id);
    if (err) fprintf(stderr, "kafka-mock: broker %d %s: %s\n", id, up ? "up" : "down", rd_kafka_err2str(err));
  }
  printf("%s\n", up ? "up" : "down");
  fflush(stdout);
}

int main(int argc, char **argv) {
  int brokers = 3;
  int opt;
  char *topic_errors[16];
  int topic_error_count = 0;
  while ((opt = getopt(argc, argv, "b:e:")) != -1) {
    if (opt == 'b') {
      brokers = atoi(optarg);
      if (brokers < 1 || brokers > 16) usage("BROKERS must be from 1 to 16");
    } else if (opt == 'e') {
      if (topic_error_count == 16) usage("at most 16 -e options");
      if (!strchr(optarg, '=')) usage("-e takes TOPIC=ERRCODE");
      topic_errors[topic_error_count++] = optarg;
    } else {
      usage("unknown option");
    }
  }
  if (optind >= argc) usage("name at least one topic");

  /* Signals are taken synchronously with sigwait(): block them before librdkafka starts its
   * threads, which inherit the mask, so none of them is interrupted by one. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) usage("cannot block signals");
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) return 0;
#endif

  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* This handle only hosts the cluster; it connects nowhere, so its warnings are noise. */
  if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) usage(errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) usage(errstr);

  rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mcluster) usage("rd_kafka_mock_cluster_new() failed");

  for (int i = optind; i < argc; i++) {
    char *topic = argv[i];
    int partitions = 1;
    char *colon = strrchr(topic, ':');
    if (colon) {
      *colon = '\0';
      partitions = atoi(colon + 1);
      if (partitions < 1) usage("PARTITIONS must be 1 or more");
    }
    if (*topic == '\0') usage("a topic name is empty");
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mcluster, topic, partitions, brokers < 3 ? brokers : 3);
    if (err) {
      fprintf(stderr, "kafka-mock: creating topic %s: %s\n", topic, rd_kafka_err2str(err));
      return 1;
    }
  }

  for (int i = 0; i < topic_error_count; i++) {
    char *equals = strrchr(topic_errors[i], '=');
    *equals = '\0';
    rd_kafka_mock_topic_set_error(mcluster, topic_errors[i], (rd_kafka_resp_err_t)atoi(equals + 1));
  }

  printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
  fflush(stdout);

  for (;;) {
    int sig;
    int rc = sigwait(&set, &sig);
    if (rc != 0) {
      if (rc == EINTR) continue;
      fprintf(stderr, "kafka-mock: sigwait: %s\n", strerror(rc));
      break;
    }
    if (sig == SIGUSR1) set_all(mcluster, brokers, 0);
    else if (sig == SIGUSR2) set_all(mcluster, brokers, 1);
    else break;
  }

  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
