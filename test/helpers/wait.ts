// Waits in tests end on events and counts. A bounded wait is a safety net only: generous, so that
// only a hang meets it and never a slow machine, and its failure says what did not happen.

/** The safety net's limit, well inside ava's 2-minute test timeout. */
export const SAFETY_NET_MS = 90_000;

/** Resolves as `promise` does, or rejects saying that `what` did not happen within the safety net. */
export async function within<T>(promise: Promise<T>, what: string, ms = SAFETY_NET_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const net = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, net]);
  } finally {
    clearTimeout(timer);
  }
}
