import fs from 'node:fs';
import { Worker } from 'node:worker_threads';

// Worker threads for tests. A worker runs a TypeScript module through tsx (Node 20 does not apply
// `--import` hooks to a worker's entry point, so a small evaluated entry imports it with tsx's
// API). Each worker is terminated in the test's teardown, whatever the outcome.

interface Teardown {
  teardown: (fn: () => void | Promise<void>) => void;
}

const tsxApi = import.meta.resolve('tsx/esm/api');

/** Starts `module` (a .ts file URL) in a worker thread with `workerData`; terminated in `t.teardown`. */
export function startWorker(t: Teardown, module: URL, workerData: unknown): Worker {
  const file = JSON.stringify(module.href);
  const worker = new Worker(`import(${JSON.stringify(tsxApi)}).then((tsx) => tsx.tsImport(${file}, ${file}))`, { eval: true, workerData });
  t.teardown(async () => {
    await worker.terminate();
  });
  return worker;
}

/** Waits for the next message of `worker` that `accept` takes; rejects if the worker fails or exits first. */
export function workerMessage<T>(worker: Worker, accept: (m: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: T): void => {
      if (!accept(m)) return;
      off();
      resolve(m);
    };
    const onError = (err: Error): void => {
      off();
      reject(err);
    };
    const onExit = (code: number): void => {
      off();
      reject(new Error(`worker ${worker.threadId} exited (${code}) before answering`));
    };
    const off = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
  });
}

/** This thread's kernel id, from /proc/thread-self. */
export function osThreadId(): number {
  return Number(fs.readlinkSync('/proc/thread-self').split('/')[2]);
}
