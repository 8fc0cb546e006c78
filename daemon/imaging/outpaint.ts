/** Extending the canvas: the bigger picture with the old one in place, and the mask of what to invent. */
import { ImagingError } from "./errors";
import { assertImage } from "./image";
import { LIMITS, OUTPAINT_OVERLAP, overlapBands, type Expansion, type Pixels, type Region, type Size } from "../../geometry";

export interface ExpandOptions {
  /** The longest overlap band into the old pixels, px (default 64). */
  overlap?: number;
  /**
   * The size of the whole old picture, when `image` is only the part of it next to the growth (the
   * context the model sees): the overlap bands are sized from it, as they are for the whole picture.
   */
  oldSize?: Size;
  /** Refuse canvases wider or taller than this (default LIMITS.maxCanvasSide, Photoshop's limit for a .psd). */
  maxSide?: number;
  /** Refuse canvases with more pixels than this (default 2^28). */
  maxPixels?: number;
}

export interface ExpandedCanvas {
  /** The new canvas: old pixels at (left, top), the new area 0 (transparent if the image has alpha). */
  canvas: Pixels;
  /** 255 on the new area, plus a soft ramp reaching into the old pixels on the extended sides only. */
  mask: Pixels;
  /** Where the old picture sits in the new canvas. */
  oldRegion: Region;
  /** 255 on the new area only: what the pre-fill must invent (the band's old pixels are kept as sources). */
  newArea: Pixels;
  /** The width of the overlap band on each side (0 on sides that were not extended). */
  overlap: Expansion;
}

/** The ramp's value at depth k (0 = the old pixel touching the new area) in a band of width n: smoothstep from 255 to 0. */
function ramp(k: number, n: number): number {
  if (k >= n) return 0;
  const t = 1 - (k + 0.5) / n;
  return Math.round(255 * t * t * (3 - 2 * t));
}

/**
 * The canvas grown by `by` px per side. An expansion of 0 everywhere gives the same picture and an
 * empty mask; negative, fractional or too large expansions are refused.
 */
export function expandCanvas(image: Pixels, by: Expansion, options: ExpandOptions = {}): ExpandedCanvas {
  assertImage(image);
  for (const side of ["left", "top", "right", "bottom"] as const) {
    const v = by[side];
    if (!Number.isInteger(v) || v < 0) throw new ImagingError("invalid_argument", `The canvas can only grow by whole pixels, 0 or more (${side}: ${v}).`);
  }
  const overlap = options.overlap ?? OUTPAINT_OVERLAP;
  if (!(Number.isInteger(overlap) && overlap >= 0)) throw new ImagingError("invalid_argument", `The overlap must be whole pixels, 0 or more (got ${overlap}).`);
  const width = image.width + by.left + by.right;
  const height = image.height + by.top + by.bottom;
  const maxSide = options.maxSide ?? LIMITS.maxCanvasSide;
  const maxPixels = options.maxPixels ?? LIMITS.maxImagePixels;
  if (width > maxSide || height > maxSide || width * height > maxPixels) {
    throw new ImagingError(
      "invalid_argument",
      `The extended canvas would be ${width}x${height}: at most ${maxSide} px a side and ${maxPixels} pixels in all.`,
    );
  }
  const c = image.channels;
  const canvas = new Uint8Array(width * height * c);
  const rowBytes = image.width * c;
  for (let y = 0; y < image.height; y++) {
    canvas.set(image.data.subarray(y * rowBytes, (y + 1) * rowBytes), ((y + by.top) * width + by.left) * c);
  }
  const oldRegion = { x: by.left, y: by.top, width: image.width, height: image.height };
  const bands = overlapBands(options.oldSize ?? image, by, overlap);
  const mask = new Uint8Array(width * height).fill(255);
  const newArea = new Uint8Array(width * height).fill(255);
  // Per column and per row of the old picture, the ramp from the extended sides; corners take the max.
  const columnRamp = new Uint8Array(image.width);
  for (let x = 0; x < image.width; x++) columnRamp[x] = Math.max(ramp(x, bands.left), ramp(image.width - 1 - x, bands.right));
  const rowRamp = new Uint8Array(image.height);
  for (let y = 0; y < image.height; y++) rowRamp[y] = Math.max(ramp(y, bands.top), ramp(image.height - 1 - y, bands.bottom));
  for (let y = 0; y < image.height; y++) {
    const row = (y + by.top) * width + by.left;
    newArea.fill(0, row, row + image.width);
    const r = rowRamp[y]!;
    for (let x = 0; x < image.width; x++) {
      const cr = columnRamp[x]!;
      mask[row + x] = cr > r ? cr : r;
    }
  }
  return {
    canvas: { width, height, channels: c, data: canvas },
    mask: { width, height, channels: 1, data: mask },
    newArea: { width, height, channels: 1, data: newArea },
    oldRegion,
    overlap: bands,
  };
}
