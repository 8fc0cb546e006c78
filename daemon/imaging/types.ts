/** Plain pixel buffers and rectangles: what every module of daemon/imaging takes and returns. */

export { ImagingError, isImagingError, type ImagingErrorCode } from "./errors";

/** A rectangle in pixels; x, y is its top-left corner. */
export interface Bounds {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Size {
  width: number;
  height: number;
}

/**
 * 8-bit pixels, interleaved, row-major. Masks are channels 1: 0 = keep, 255 = repaint, soft values
 * in between are kept by every operation.
 */
export interface Image8 {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  data: Uint8Array;
}
