/**
 * What the model sees: a context crop around the mask, the size to run the model at, and the
 * resampling there and back (sharp, Lanczos 3; a plain copy when no resampling is needed).
 */
import sharp from "sharp";
import { ImagingError } from "./errors";
import { assertImage, assertInside, assertSize, cropImage } from "./image";
import type { Bounds, Image8, Size } from "./types";

export type ContextMode = "automatic" | "selection" | "image";

export interface ContextOptions {
  /** Automatic mode: the smallest context side, px (default 512, the smallest native size). */
  minSize?: number;
  /** Automatic mode: grow the shorter side towards a square (default true). */
  square?: boolean;
  /** Round each side up to a multiple of this where the canvas allows (default 8). */
  multiple?: number;
}

/** Pixels of margin around the mask in "selection" mode: one latent cell. */
export const SELECTION_PADDING = 8;

/**
 * The region of the canvas the model sees, always containing `maskBounds` and clamped to the canvas.
 * - "image": the whole canvas.
 * - "selection": the mask bounds + `padding` (default 8 px).
 * - "automatic": the mask bounds + max(longest canvas side / 16, average mask side / 2) per side
 *   (krita-ai-diffusion's rule: a small mask gets its surroundings, a large one half its size again),
 *   or `padding` when given; then grown to a square and to at least 512 px where the canvas allows.
 * Regions that stick out of the canvas are shifted back inside before being clipped, so the model
 * keeps as much context as it was promised. Sides are rounded up to multiples of 8 where possible.
 * Pass the bounds of the denoise mask (which reaches past the selection), not of the selection.
 */
export function contextRegion(maskBounds: Bounds, canvas: Size, mode: ContextMode, padding?: number, options: ContextOptions = {}): Bounds {
  assertSize(canvas, "canvas");
  assertInside(maskBounds, canvas, "mask bounds");
  if (padding !== undefined && !(Number.isFinite(padding) && padding >= 0)) {
    throw new ImagingError("invalid_argument", `The context padding must be 0 or more pixels (got ${padding}).`);
  }
  if (mode === "image") return { x: 0, y: 0, width: canvas.width, height: canvas.height };
  if (mode !== "automatic" && mode !== "selection") throw new ImagingError("invalid_argument", `Unknown context mode "${String(mode)}".`);
  const multiple = options.multiple ?? 8;
  let x0: number, y0: number, x1: number, y1: number;
  if (mode === "selection") {
    const pad = Math.round(padding ?? SELECTION_PADDING);
    [x0, y0, x1, y1] = [maskBounds.x - pad, maskBounds.y - pad, maskBounds.x + maskBounds.width + pad, maskBounds.y + maskBounds.height + pad];
  } else {
    const longest = Math.max(canvas.width, canvas.height);
    const average = (maskBounds.width + maskBounds.height) / 2;
    const pad = Math.round(padding ?? Math.max(longest / 16, average / 2));
    [x0, y0, x1, y1] = [maskBounds.x - pad, maskBounds.y - pad, maskBounds.x + maskBounds.width + pad, maskBounds.y + maskBounds.height + pad];
    let w = x1 - x0;
    let h = y1 - y0;
    const minSize = options.minSize ?? 512;
    let targetW = Math.max(w, minSize);
    let targetH = Math.max(h, minSize);
    if (options.square ?? true) targetW = targetH = Math.max(targetW, targetH);
    [x0, x1] = widen(x0, x1, targetW);
    [y0, y1] = widen(y0, y1, targetH);
    w = x1 - x0;
    h = y1 - y0;
  }
  [x0, x1] = widen(x0, x1, roundUp(x1 - x0, multiple));
  [y0, y1] = widen(y0, y1, roundUp(y1 - y0, multiple));
  [x0, x1] = fit(x0, x1, canvas.width);
  [y0, y1] = fit(y0, y1, canvas.height);
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

function roundUp(value: number, multiple: number): number {
  return multiple > 1 ? Math.ceil(value / multiple) * multiple : value;
}

/** [a, b) grown evenly on both sides to `size`. */
function widen(a: number, b: number, size: number): [number, number] {
  const extra = size - (b - a);
  if (extra <= 0) return [a, b];
  const before = Math.floor(extra / 2);
  return [a - before, b + extra - before];
}

/** [a, b) shifted inside [0, limit), then clipped if still too big. Keeps everything it contained that was inside. */
function fit(a: number, b: number, limit: number): [number, number] {
  if (a < 0) [a, b] = [0, b - a];
  if (b > limit) [a, b] = [a - (b - limit), limit];
  return [Math.max(0, a), Math.min(limit, b)];
}

export interface GenerationSizeOptions {
  /** Each side is a multiple of this (default 8, the VAE's factor). */
  multiple?: number;
  /** Regions smaller than this are upscaled to it (default nativeResolution^2): more detail, as krita does. */
  minPixels?: number;
  /** Regions larger than this are downscaled to it (default 1.5 x nativeResolution^2, i.e. 512x768 for SD 1.5). */
  maxPixels?: number;
  /** The shortest side allowed (default 64). */
  minSide?: number;
}

/**
 * The size to run the model at for a region: its aspect kept, its area clamped to
 * [minPixels, maxPixels] (so small regions are upscaled to native area, which gives the model room for
 * detail, and regions already near native size are left at their own scale), each side rounded to the
 * nearest multiple of 8, at least 64. Very thin regions cannot keep their aspect: the short side stops
 * at 64 and the long side is cut so the area stays under maxPixels.
 */
export function generationSize(region: Size, nativeResolution: number, options: GenerationSizeOptions = {}): Size {
  assertSize(region, "region");
  if (!(Number.isFinite(nativeResolution) && nativeResolution >= 64)) {
    throw new ImagingError("invalid_argument", `The model's native resolution must be at least 64 px (got ${nativeResolution}).`);
  }
  const multiple = options.multiple ?? 8;
  const minSide = Math.max(multiple, Math.ceil((options.minSide ?? 64) / multiple) * multiple);
  const maxPixels = options.maxPixels ?? Math.round(1.5 * nativeResolution * nativeResolution);
  const minPixels = Math.min(options.minPixels ?? nativeResolution * nativeResolution, maxPixels);
  if (!(Number.isInteger(multiple) && multiple >= 1) || !(maxPixels >= minSide * minSide)) {
    throw new ImagingError("invalid_argument", `A generation size needs a whole multiple and room for at least ${minSide}x${minSide} pixels.`);
  }
  const area = region.width * region.height;
  const targetArea = Math.min(maxPixels, Math.max(minPixels, area));
  const scale = Math.sqrt(targetArea / area);
  const snap = (v: number) => Math.max(minSide, Math.round(v / multiple) * multiple);
  let width = snap(region.width * scale);
  let height = snap(region.height * scale);
  // Rounding (or the minimum side) may push the area over the budget: take from the longer side.
  while (width * height > maxPixels) {
    if (width >= height && width > minSide) width -= multiple;
    else if (height > minSide) height -= multiple;
    else break;
  }
  return { width, height };
}

export type ResizeKernel = "nearest" | "linear" | "cubic" | "mitchell" | "lanczos2" | "lanczos3";

/**
 * The pixels of `region`, resampled to `size` (Lanczos 3 by default; use "linear" for masks if
 * Lanczos ringing matters). A plain copy, bit for bit, when the region already has that size.
 */
export async function cropAndResize(image: Image8, region: Bounds, size: Size, options: { kernel?: ResizeKernel } = {}): Promise<Image8> {
  assertImage(image);
  assertInside(region, image);
  assertSize(size, "target size");
  if (region.width === size.width && region.height === size.height) return cropImage(image, region);
  const input = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  let pipeline = sharp(input, { raw: { width: image.width, height: image.height, channels: image.channels } });
  if (region.x !== 0 || region.y !== 0 || region.width !== image.width || region.height !== image.height) {
    pipeline = pipeline.extract({ left: region.x, top: region.y, width: region.width, height: region.height });
  }
  pipeline = pipeline.resize(size.width, size.height, { fit: "fill", kernel: options.kernel ?? "lanczos3" });
  // sharp hands back one-channel input as sRGB unless told to stay grey.
  if (image.channels === 1) pipeline = pipeline.toColourspace("b-w");
  const { data, info } = await pipeline
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== image.channels || info.width !== size.width || info.height !== size.height) {
    throw new ImagingError("invalid_argument", `Resampling gave ${info.width}x${info.height}x${info.channels}, expected ${size.width}x${size.height}x${image.channels}.`);
  }
  return { width: size.width, height: size.height, channels: image.channels, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** The whole image resampled to `size` (a copy when it already has that size). */
export async function resizeTo(image: Image8, size: Size, options: { kernel?: ResizeKernel } = {}): Promise<Image8> {
  assertImage(image);
  return cropAndResize(image, { x: 0, y: 0, width: image.width, height: image.height }, size, options);
}
