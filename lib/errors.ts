// Typed errors. Native code throws comeba::Error{code, message}; the binding turns it into a JS Error
// carrying `.code`, and `fromNative` re-creates it here as the matching subclass with the caller's stack.

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_REQUEST'
  | 'MODEL_MISMATCH'
  | 'NUMERICAL_FAILURE'
  | 'INVALID_CHECKPOINT'
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'LIBTORCH_NOT_FOUND'
  | 'LIBTORCH_VERSION_MISMATCH'
  | 'ADDON_NOT_FOUND'
  | 'DEVICE_UNAVAILABLE'
  | 'DISPOSED'
  | 'ABORTED'
  | 'OUT_OF_MEMORY'
  | 'INTERNAL'
  | 'INVALID_DATASET'
  | 'FOLDER_LOCKED'
  | 'NO_SPACE'
  | 'REDIS_UNAVAILABLE';

export class ComebaError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidArgumentError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_ARGUMENT', message, options); }
}
/** An edit request that cannot be used; `index` is its position in the batch. */
export class InvalidRequestError extends ComebaError {
  readonly index: number;
  constructor(index: number, message: string) {
    super('INVALID_REQUEST', `request ${index}: ${message}`);
    this.index = index;
  }
}
/** Saved state or statistics that belong to another model. */
export class ModelMismatchError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('MODEL_MISMATCH', message, options); }
}
/** NaN/Inf, or a Cholesky factorisation that failed even with the largest diagonal jitter. */
export class NumericalFailureError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('NUMERICAL_FAILURE', message, options); }
}
export class InvalidCheckpointError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_CHECKPOINT', message, options); }
}
export class UnsupportedArchitectureError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('UNSUPPORTED_ARCHITECTURE', message, options); }
}
export class LibtorchNotFoundError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('LIBTORCH_NOT_FOUND', message, options); }
}
export class LibtorchVersionMismatchError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('LIBTORCH_VERSION_MISMATCH', message, options); }
}
export class AddonNotFoundError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('ADDON_NOT_FOUND', message, options); }
}
export class DeviceUnavailableError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('DEVICE_UNAVAILABLE', message, options); }
}
export class DisposedError extends ComebaError {
  /** `message` replaces the default "<what> has been disposed" (the addon words its own). */
  constructor(what: string, message = `${what} has been disposed`) { super('DISPOSED', message); }
}
export class AbortError extends ComebaError {
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) { super('ABORTED', message, options); }
}
export class OutOfMemoryError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('OUT_OF_MEMORY', message, options); }
}
/** Another process is writing the folder (an editor's save, a sweep); the message names it. */
export class FolderLockedError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('FOLDER_LOCKED', message, options); }
}
/** The disk (or a quota) is full: nothing was half-written; free space and write again. */
export class NoSpaceError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('NO_SPACE', message, options); }
}
/** The Redis of a queue or worker cannot be reached (nothing listens there, or the host is unreachable). */
export class RedisUnavailableError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('REDIS_UNAVAILABLE', message, options); }
}
export class InternalError extends ComebaError {
  constructor(message: string, options?: { cause?: unknown }) { super('INTERNAL', message, options); }
}

/** A dataset file that cannot be read or holds a malformed record; the message names the file, the record's index and the field. */
export class InvalidDatasetError extends ComebaError {
  readonly file?: string;
  readonly index?: number;
  readonly field?: string;
  constructor(message: string, options?: { cause?: unknown; file?: string; index?: number; field?: string }) {
    const where = [
      options?.file !== undefined ? options.file : '',
      options?.index !== undefined ? `record ${options.index}` : '',
      options?.field !== undefined ? `field ${JSON.stringify(options.field)}` : '',
    ].filter((s) => s !== '').join(', ');
    super('INVALID_DATASET', where ? `${where}: ${message}` : message, options);
    this.file = options?.file;
    this.index = options?.index;
    this.field = options?.field;
  }
}

/**
 * The one table from code to typed error: total over ErrorCode (the compiler checks), and checked against every
 * code native/ can raise by test/errors.test.ts. A code's class re-created from the addon's message alone.
 */
export const errorClasses: { [C in ErrorCode]: (message: string) => ComebaError } = {
  INVALID_ARGUMENT: (m) => new InvalidArgumentError(m),
  // "request 3: …", as InvalidRequestError words it; the index is -1 where the message names none.
  INVALID_REQUEST: (m) => {
    const match = /^request (\d+): ([\s\S]*)$/.exec(m);
    return match ? new InvalidRequestError(Number(match[1]), match[2]) : new InvalidRequestError(-1, m);
  },
  MODEL_MISMATCH: (m) => new ModelMismatchError(m),
  NUMERICAL_FAILURE: (m) => new NumericalFailureError(m),
  INVALID_CHECKPOINT: (m) => new InvalidCheckpointError(m),
  UNSUPPORTED_ARCHITECTURE: (m) => new UnsupportedArchitectureError(m),
  LIBTORCH_NOT_FOUND: (m) => new LibtorchNotFoundError(m),
  LIBTORCH_VERSION_MISMATCH: (m) => new LibtorchVersionMismatchError(m),
  ADDON_NOT_FOUND: (m) => new AddonNotFoundError(m),
  DEVICE_UNAVAILABLE: (m) => new DeviceUnavailableError(m),
  DISPOSED: (m) => new DisposedError('', m),
  ABORTED: (m) => new AbortError(m),
  OUT_OF_MEMORY: (m) => new OutOfMemoryError(m),
  INTERNAL: (m) => new InternalError(m),
  INVALID_DATASET: (m) => new InvalidDatasetError(m),
  FOLDER_LOCKED: (m) => new FolderLockedError(m),
  NO_SPACE: (m) => new NoSpaceError(m),
  REDIS_UNAVAILABLE: (m) => new RedisUnavailableError(m),
};

/** Converts an error thrown by the addon into the typed error for its code, stacked at the caller. */
export function fromNative(err: unknown): Error {
  if (err instanceof ComebaError) return err;
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    const make = typeof code === 'string' && Object.hasOwn(errorClasses, code) ? errorClasses[code as ErrorCode] : undefined;
    return make ? make(err.message) : new InternalError(err.message, { cause: err });
  }
  return new InternalError(String(err));
}

/** Calls into the addon and rethrows any failure, synchronous (argument checks) or async, as a typed error. */
export async function callNative<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw fromNative(err);
  }
}
