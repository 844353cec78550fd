// Type test of what a user reads: a record of the wrong shape is told which field it lacks, on
// every typed way in. `npm run test:types` checks that the line under each `// @error: TEXT`
// fails with a message containing TEXT, and that every other line compiles.
import { createHopperStream, createHopperStreams, HopperError } from 'hopper-streams';
import { createKafkaSink, type KafkaProducer } from 'hopper-streams/kafka';

interface Row {
  id: number;
  name: string;
}

declare const producer: KafkaProducer;
const hopper = createHopperStreams<Row>();
const duplex = createHopperStream<Row>();
const sink = createKafkaSink<Row>({ producer, topic: 'rows', value: (row) => Buffer.from(row.name) });

// @error: Property 'id' is missing
hopper.writable.write({ name: 'x' });
// @error: Property 'id' is missing
hopper.writable.write({ name: 'x' }, (err) => void err);
// @error: Property 'id' is missing
hopper.writable.end({ name: 'x' });
// @error: Property 'id' is missing
hopper.sender().write({ name: 'x' });
// @error: Property 'id' is missing
hopper.send({ name: 'x' });
// @error: Property 'id' is missing
duplex.write({ name: 'x' });
// @error: Property 'id' is missing
duplex.send({ name: 'x' });
// @error: Property 'id' is missing
sink.write({ name: 'x' });
// @error: Property 'id' is missing
sink.end({ name: 'x' });
// @error: Type 'string' is not assignable to type 'number'
hopper.writable.write({ id: 'one', name: 'x' });

// The right records compile.
hopper.writable.write({ id: 1, name: 'x' });
hopper.writable.write({ id: 1, name: 'x' }, (err) => void err);
hopper.writable.end({ id: 1, name: 'x' });
duplex.write({ id: 1, name: 'x' });
sink.write({ id: 1, name: 'x' }, (err) => void err);
hopper.readable.pipe(sink);

// The Kafka sink's failure hands back its records typed: no cast needed to resend them.
sink.on('error', (err) => {
  if (!HopperError.is<Row>(err, 'ERR_HOPPER_KAFKA_SEND')) return;
  for (const row of err.records) hopper.send(row);
  const names: string[] = err.records.map((row) => row.name);
  void names;
});
