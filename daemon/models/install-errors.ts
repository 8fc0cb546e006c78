/**
 * Errors of installing, verifying and removing models: a code a program can act on and a
 * sentence an artist can act on (what went wrong, which file, what to do next).
 */

export const MODEL_INSTALL_ERROR_CODES = [
  /** The id is neither in the registry nor an owner/name hub repo id. */
  "unknown_model",
  "repo_not_found",
  "revision_not_found",
  /** HTTP 401/403 without a usable token. */
  "unauthorized",
  /** A gated repo whose license the token's account has not accepted. */
  "gated",
  /** The repo holds no ONNX export in the diffusers layout. */
  "not_onnx",
  /** An ONNX export the engine cannot run (SDXL, an unknown UNet, …). */
  "unsupported",
  /** The hub could not be reached, or the connection kept dropping. */
  "network",
  /** The hub answered with an HTTP error we did not expect. */
  "http",
  "disk_full",
  /** A file's size or checksum is not what the hub says, or a folder fails its checks. */
  "verify_failed",
  "already_installed",
  "not_installed",
  /** Another process is pulling the same model. */
  "busy",
  "cancelled",
  /** A bad name or path given on the command line. */
  "invalid_request",
  /** The models folder could not be read or written (permissions, a file in the way). */
  "io",
] as const;
export type ModelInstallErrorCode = (typeof MODEL_INSTALL_ERROR_CODES)[number];

export class ModelInstallError extends Error {
  override readonly name = "ModelInstallError";
  /** The file at fault (relative to the model folder), where one is. */
  readonly file: string | undefined;
  /** A dropped connection or a busy server: worth another try after a pause. */
  readonly retryable: boolean;

  constructor(
    readonly code: ModelInstallErrorCode,
    message: string,
    options: { cause?: unknown; file?: string; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.file = options.file;
    this.retryable = options.retryable ?? false;
  }
}

export function isModelInstallError(value: unknown): value is ModelInstallError {
  return value instanceof ModelInstallError;
}
