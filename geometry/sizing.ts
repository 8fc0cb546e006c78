/** The sizes pictures are made and read at: the model's working size, and how small a read may be. */
import { GeometryError } from "./errors";
import type { Size } from "./types";

export interface GenerationSizeOptions {
  /** Each side is a multiple of this (default 8, the VAE's factor). */
  multiple?: number;
  /** Areas smaller than this are upscaled to it (default nativeResolution^2): more detail, as krita does. */
  minPixels?: number;
  /** Areas larger than this are downscaled to it (default 1.5 x nativeResolution^2, i.e. 512x768 for SD 1.5). */
  maxPixels?: number;
  /** The shortest side allowed (default 64). */
  minSide?: number;
}

function assertSize(size: Size, what: string): void {
  if (!(Number.isInteger(size.width) && Number.isInteger(size.height) && size.width > 0 && size.height > 0)) {
    throw new GeometryError(`The ${what} must be whole pixels, at least 1x1 (got ${size.width}x${size.height}).`);
  }
}

/**
 * The size to run the model at for a picture or region of `size`: its aspect kept, its area clamped
 * to [minPixels, maxPixels] (small regions are upscaled to the native area, which gives the model
 * room for detail; regions near the native size keep their scale), each side rounded to the nearest
 * multiple, at least minSide. Very thin regions cannot keep their aspect: the short side stops at
 * minSide and the long side is cut so the area stays under maxPixels.
 */
export function generationSize(size: Size, nativeResolution: number, options: GenerationSizeOptions = {}): Size {
  assertSize(size, "region");
  if (!(Number.isFinite(nativeResolution) && nativeResolution >= 64)) {
    throw new GeometryError(`The model's native resolution must be at least 64 px (got ${nativeResolution}).`);
  }
  const multiple = options.multiple ?? 8;
  const minSide = Math.max(multiple, Math.ceil((options.minSide ?? 64) / multiple) * multiple);
  const maxPixels = options.maxPixels ?? Math.round(1.5 * nativeResolution * nativeResolution);
  const minPixels = Math.min(options.minPixels ?? nativeResolution * nativeResolution, maxPixels);
  if (!(Number.isInteger(multiple) && multiple >= 1) || !(maxPixels >= minSide * minSide)) {
    throw new GeometryError(`A generation size needs a whole multiple and room for at least ${minSide}x${minSide} pixels.`);
  }
  const pixels = size.width * size.height;
  const target = Math.min(maxPixels, Math.max(minPixels, pixels));
  const scale = Math.sqrt(target / pixels);
  const snap = (v: number) => Math.max(minSide, Math.round(v / multiple) * multiple);
  let width = snap(size.width * scale);
  let height = snap(size.height * scale);
  // Rounding (or the minimum side) may push the area over the budget: take from the longer side.
  while (width * height > maxPixels) {
    if (width >= height && width > minSide) width -= multiple;
    else if (height > minSide) height -= multiple;
    else break;
  }
  return { width, height };
}

/**
 * ONNX exports of SD's UNet trace its upsampling at fixed factors: latents must halve cleanly three
 * times (SD 1.x/2.x), so the model runs at multiples of 64 px.
 */
export const MODEL_SIDE_MULTIPLE = 64;

/**
 * The size a whole picture (text-to-image, img2img) is made at for an output of `output`: the model's
 * native area in the output's proportions, sides multiples of 64. Stable Diffusion makes poor
 * pictures far from its native size, so small canvases are made larger and big ones smaller, and the
 * result is resampled to the output.
 */
export function wholePictureSize(output: Size, nativeResolution: number): Size {
  const native = nativeResolution * nativeResolution;
  return generationSize(output, nativeResolution, { multiple: MODEL_SIDE_MULTIPLE, minPixels: native, maxPixels: native });
}

/** The size masked edits run at for a context of `size`, within `budget` pixels (default 1.5 x native area). */
export function maskedEditSize(size: Size, nativeResolution: number, budget?: number): Size {
  return generationSize(size, nativeResolution, { multiple: MODEL_SIDE_MULTIPLE, ...(budget !== undefined ? { maxPixels: budget } : {}) });
}

/** `size` shrunk, aspect kept, so its longer side is at most `maxSide` (never enlarged). */
export function fitWithin(size: Size, maxSide: number): Size {
  const scale = Math.min(1, maxSide / Math.max(size.width, size.height));
  return { width: Math.max(1, Math.round(size.width * scale)), height: Math.max(1, Math.round(size.height * scale)) };
}

/** `size` shrunk, aspect kept, so it has at most `maxPixels` pixels (never enlarged). */
export function fitArea(size: Size, maxPixels: number): Size {
  const scale = Math.min(1, Math.sqrt(maxPixels / (size.width * size.height)));
  if (scale === 1) return { width: size.width, height: size.height };
  return { width: Math.max(1, Math.floor(size.width * scale)), height: Math.max(1, Math.floor(size.height * scale)) };
}

/**
 * The resolution worth reading a context of `size` at for a model working at `modelSize`: twice the
 * model's pixels along each side is enough for the daemon's resampling to keep all the detail the
 * model can use; a context already smaller is read as it is.
 */
export const READ_OVERSAMPLE = 2;
export function readSize(size: Size, modelSize: Size): Size {
  return fitArea(size, READ_OVERSAMPLE * READ_OVERSAMPLE * modelSize.width * modelSize.height);
}
