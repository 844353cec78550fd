// The benchmark peers, as far as the bench uses them. fileq ships no types; disk-queue ships
// some, but its package.json `exports` has no `types` condition, so "nodenext" does not find them.

declare module 'fileq' {
  interface FileQueueOptions {
    path?: string;
    truncate?: boolean;
  }
  interface FileQueue {
    push(record: unknown): Promise<void>;
    poll(): Promise<unknown>;
    close(): Promise<void>;
  }
  const FileQueue: { from(name: string, options?: FileQueueOptions): FileQueue };
  export default FileQueue;
}

declare module 'disk-queue' {
  import { EventEmitter } from 'node:events';
  export interface Options {
    filePath: string;
    serializer?: (data: unknown) => string;
    deserializer?: (text: string) => unknown;
  }
  export class DiskQueue<T = unknown> extends EventEmitter {
    constructor(options: Options);
    remainCount: number;
    push(...items: T[]): void;
    shift(): T | undefined;
    reset(): void;
    close(): void;
  }
}
