export type ReproduceErrorCode =
  | 'REPRODUCE_NOT_PERMITTED'
  | 'REPRODUCE_LAB_FAILED'
  | 'REPRODUCE_NO_GENERATORS'
  | 'REPRODUCE_COUNTERS_UNREADABLE'
  | 'REPRODUCE_INTERRUPTED';

/** Why `doctor --reproduce` could not run its experiment; `code` is stable, the text is not. */
export class ReproduceError extends Error {
  override readonly name = 'ReproduceError';
  constructor(
    readonly code: ReproduceErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
