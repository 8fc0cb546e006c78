/**
 * The one error type of daemon/models: a code the daemon can act on and a sentence the
 * panel can show, naming the file at fault.
 */

export const MODEL_FOLDER_ERROR_CODES = ["model_file_missing", "model_file_invalid", "model_unsupported"] as const;
export type ModelFolderErrorCode = (typeof MODEL_FOLDER_ERROR_CODES)[number];

export class ModelFolderError extends Error {
  override readonly name = "ModelFolderError";

  constructor(
    readonly code: ModelFolderErrorCode,
    /** The file (or folder) at fault, absolute. */
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isModelFolderError(value: unknown): value is ModelFolderError {
  return value instanceof ModelFolderError;
}
