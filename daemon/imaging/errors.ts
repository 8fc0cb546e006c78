/** The one error type of daemon/imaging: a code the engine can act on and a sentence the panel can show. */

export const IMAGING_ERROR_CODES = ["size_mismatch", "empty_mask", "invalid_argument"] as const;
export type ImagingErrorCode = (typeof IMAGING_ERROR_CODES)[number];

export class ImagingError extends Error {
  override readonly name = "ImagingError";

  constructor(
    readonly code: ImagingErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isImagingError(value: unknown): value is ImagingError {
  return value instanceof ImagingError;
}
