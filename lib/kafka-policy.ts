/**
 * The Kafka sink's two judgements, as pure functions: which send errors are worth retrying, and
 * how long to wait before the next attempt.
 */

/**
 * Kafka protocol errors that no resend can fix, by name (KafkaJS's `error.type`) and by protocol
 * code (`error.code`: KafkaJS protocol errors, and @confluentinc/kafka-javascript, whose errors
 * carry librdkafka's codes, equal to the protocol's for broker errors).
 */
const PERMANENT: ReadonlyArray<readonly [string, number]> = [
  ['UNKNOWN_TOPIC_OR_PARTITION', 3],
  ['MESSAGE_TOO_LARGE', 10],
  ['INVALID_TOPIC_EXCEPTION', 17],
  ['RECORD_LIST_TOO_LARGE', 18],
  ['INVALID_REQUIRED_ACKS', 21],
  ['TOPIC_AUTHORIZATION_FAILED', 29],
  ['CLUSTER_AUTHORIZATION_FAILED', 31],
  ['UNSUPPORTED_SASL_MECHANISM', 33],
  ['TRANSACTIONAL_ID_AUTHORIZATION_FAILED', 53],
  ['SASL_AUTHENTICATION_FAILED', 58],
  ['INVALID_RECORD', 87],
];
const PERMANENT_TYPES = new Set(PERMANENT.map(([type]) => type));
const PERMANENT_CODES = new Set(PERMANENT.map(([, code]) => code));
/** librdkafka's local codes for a partition or topic the cluster does not have, and a failed authentication. */
const PERMANENT_LOCAL_CODES = new Set([-190, -188, -169]);

/**
 * Errors whose `retriable: false` only means "this client will not retry it itself": the client
 * giving up after its own retries (KafkaJS wraps the error it gave up on, as `cause`, in one of the
 * first two, once per layer of retries), and timeouts waiting for a lock. The sink looks at the
 * cause, or retries: an outage must never fail it.
 */
const WRAPPERS = new Set(['KafkaJSNumberOfRetriesExceeded', 'KafkaJSNonRetriableError', 'KafkaJSTimeout', 'KafkaJSLockTimeout']);
/** Programming errors, which KafkaJS does not retry either. */
const UNRECOVERABLE = new Set(['RangeError', 'ReferenceError', 'SyntaxError', 'TypeError']);

interface ErrorFacts {
  name?: unknown;
  type?: unknown;
  code?: unknown;
  retriable?: unknown;
  cause?: unknown;
}

/**
 * Whether a failed `send()` should be retried. It is not when the error (or, once the client gave
 * up after its own retries, the error it gave up on) is one of the protocol errors above, a
 * programming error, or marked `retriable: false` for a reason other than a timeout. Anything
 * else, including errors that say nothing of themselves, is retried: an outage must never fail
 * the sink.
 */
export function isRetriableSendError(error: unknown): boolean {
  let err = error as ErrorFacts | null | undefined;
  for (let depth = 0; depth < 8 && err !== null && typeof err === 'object'; depth++) {
    if (typeof err.type === 'string' && PERMANENT_TYPES.has(err.type)) return false;
    if (typeof err.code === 'number' && (PERMANENT_CODES.has(err.code) || PERMANENT_LOCAL_CODES.has(err.code))) return false;
    if (typeof err.name === 'string' && UNRECOVERABLE.has(err.name)) return false;
    const timeout = err.name === 'KafkaJSTimeout' || err.name === 'KafkaJSLockTimeout';
    if (typeof err.name === 'string' && WRAPPERS.has(err.name) && (timeout || (err.cause !== undefined && err.cause !== null))) {
      err = err.cause as ErrorFacts | null | undefined;
      continue;
    }
    return err.retriable !== false;
  }
  return true;
}

/** The Kafka sink's backoff between attempts (the segment log's retries have a RetryPolicy of their own, in segments/io.ts). */
export interface KafkaRetryPolicy {
  /** Wait before the first resend, in milliseconds. */
  initialMs: number;
  /** The longest wait between attempts, in milliseconds. */
  maxMs: number;
}

/**
 * The wait after the `attempt`-th failed attempt (1 for the first): `initialMs` doubled per
 * attempt up to `maxMs`, less up to a fifth at random, so that many sinks that lost the same
 * cluster do not all come back in the same instant. `random` is a number in [0, 1).
 */
export function retryDelay(attempt: number, policy: KafkaRetryPolicy, random: number = Math.random()): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 52);
  const full = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  return Math.round(full * (1 - random / 5));
}
