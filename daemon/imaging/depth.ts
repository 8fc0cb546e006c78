/**
 * A depth map estimated from a picture by a depth estimator (Depth Anything), for depth ControlNets:
 *
 *   1. the picture prepared as transformers' DPTImageProcessor prepares it (resized by
 *      get_resize_output_image_size: with keep_aspect_ratio both sides take the scale closer to 1,
 *      then each side is rounded to a multiple of ensure_multiple_of; resampled with sharp's kernel for
 *      its PIL resample code, bicubic for 3; rescaled; normalised by mean and std; channels first);
 *   2. the estimator run on it (predicted_depth: relative inverse depth, larger = nearer);
 *   3. its output min-max normalised to [0, 1], near white and far black (what depth ControlNets were
 *      trained on), as 8-bit grey, and resized to the generation size.
 *
 * Transparency is flattened onto white first, as for every control image.
 */
import sharp from "sharp";
import type { Pixels, Size } from "../../geometry";
import { ImagingError } from "./errors";
import { assertImage, assertSize } from "./image";
import { resizeTo, type ResizeKernel } from "./resample";

/** How pictures are prepared (a DPTImageProcessor's preprocessor_config.json, in our words). */
export interface DepthPreprocessing {
  /** The target height and width, or null to keep the picture's size. */
  resize: Size | null;
  keepAspectRatio: boolean;
  /** Each side is rounded to a multiple of this (DINOv2's patch: 14). */
  multipleOf: number;
  /** PIL's resample code: 0 nearest, 1 Lanczos, 2 bilinear, 3 bicubic, 4 box, 5 Hamming. */
  resample: number;
  /** Multiplies the 0..255 values (1/255), or null for none. */
  rescaleFactor: number | null;
  /** Per-channel (x - mean) / std, or null for none. */
  normalize: { mean: readonly [number, number, number]; std: readonly [number, number, number] } | null;
}

/** The estimator, run on one prepared picture [1, 3, height, width]; gives its depth [height', width']. */
export interface DepthRunner {
  readonly preprocessing: DepthPreprocessing;
  run(pixelValues: Float32Array, size: Size): Promise<{ data: Float32Array; width: number; height: number }>;
}

/** Python's round(): halves to the even neighbour (transformers rounds with it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** transformers' constrain_to_multiple_of (min_val 0, no max), never below one multiple (a side of 0 cannot be run). */
export function constrainToMultipleOf(value: number, multiple: number): number {
  const x = roundHalfEven(value / multiple) * multiple;
  return Math.max(multiple, x);
}

/** transformers' DPT get_resize_output_image_size: the size a picture of `input` is resized to. */
export function dptResizeSize(input: Size, target: Size, keepAspectRatio: boolean, multiple: number): Size {
  let scaleHeight = target.height / input.height;
  let scaleWidth = target.width / input.width;
  if (keepAspectRatio) {
    // Scale as little as possible: both sides take the scale closer to 1.
    if (Math.abs(1 - scaleWidth) < Math.abs(1 - scaleHeight)) scaleHeight = scaleWidth;
    else scaleWidth = scaleHeight;
  }
  return { width: constrainToMultipleOf(scaleWidth * input.width, multiple), height: constrainToMultipleOf(scaleHeight * input.height, multiple) };
}

const KERNELS: Record<number, ResizeKernel> = { 0: "nearest", 1: "lanczos3", 2: "linear", 3: "cubic", 4: "linear", 5: "linear" };

/** The size the estimator sees a picture of `input` at. */
export function depthInputSize(input: Size, p: DepthPreprocessing): Size {
  if (!p.resize) return { width: constrainToMultipleOf(input.width, p.multipleOf), height: constrainToMultipleOf(input.height, p.multipleOf) };
  return dptResizeSize(input, p.resize, p.keepAspectRatio, p.multipleOf);
}

/** `layer` prepared for the estimator: pixel_values [1, 3, height, width] and its size. */
export async function depthPixelValues(layer: Pixels, p: DepthPreprocessing): Promise<{ data: Float32Array; size: Size }> {
  assertImage(layer);
  const size = depthInputSize(layer, p);
  let pipeline = sharp(layer.data, { raw: { width: layer.width, height: layer.height, channels: layer.channels } });
  if (layer.channels === 4) pipeline = pipeline.flatten({ background: { r: 255, g: 255, b: 255 } });
  if (layer.channels === 1) pipeline = pipeline.toColourspace("srgb");
  if (size.width !== layer.width || size.height !== layer.height) pipeline = pipeline.resize(size.width, size.height, { fit: "fill", kernel: KERNELS[p.resample] ?? "cubic" });
  const { data: rgb, info } = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== size.width || info.height !== size.height) {
    throw new ImagingError("invalid_argument", `Preparing the picture for depth gave ${info.width}x${info.height}x${info.channels}, expected ${size.width}x${size.height}x3.`);
  }
  const plane = size.width * size.height;
  const out = new Float32Array(3 * plane);
  const factor = p.rescaleFactor ?? 1;
  for (let c = 0; c < 3; c++) {
    const mean = p.normalize?.mean[c] ?? 0;
    const std = p.normalize?.std[c] ?? 1;
    for (let i = 0; i < plane; i++) out[c * plane + i] = (rgb[3 * i + c]! * factor - mean) / std;
  }
  return { data: out, size };
}

/** A depth as 8-bit grey: min-max normalised, larger (nearer) white; a flat depth is black. */
export function normalizedDepth(depth: { data: Float32Array; width: number; height: number }): Pixels {
  let min = Infinity;
  let max = -Infinity;
  for (const v of depth.data) {
    if (!Number.isFinite(v)) throw new ImagingError("invalid_argument", "The depth estimator gave a depth that is not a finite number.");
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  const data = new Uint8Array(depth.width * depth.height);
  if (range > 0) for (let i = 0; i < data.length; i++) data[i] = Math.round((255 * (depth.data[i]! - min)) / range);
  return { width: depth.width, height: depth.height, channels: 1, data };
}

/** The depth map of `layer` at `size`: one grey channel, near white. */
export async function estimateDepth(runner: DepthRunner, layer: Pixels, size: Size): Promise<Pixels> {
  assertSize(size, "target size");
  const input = await depthPixelValues(layer, runner.preprocessing);
  const depth = await runner.run(input.data, input.size);
  if (depth.data.length !== depth.width * depth.height || depth.width <= 0 || depth.height <= 0) {
    throw new ImagingError("invalid_argument", `The depth estimator gave ${depth.data.length} values for a ${depth.width}x${depth.height} depth.`);
  }
  return resizeTo(normalizedDepth(depth), size, { kernel: "cubic" });
}

/**
 * Whether a layer is a depth map already: every pixel grey (red, green and blue within 2 levels of
 * each other, for maps saved through colour management). Anything with colour is a picture.
 */
export function isGreyLayer(layer: Pixels): boolean {
  if (layer.channels === 1) return true;
  const { data, channels } = layer;
  for (let i = 0; i < data.length; i += channels) {
    const r = data[i]!;
    const g = data[i + 1]!;
    const b = data[i + 2]!;
    if (Math.abs(r - g) > 2 || Math.abs(g - b) > 2 || Math.abs(r - b) > 2) return false;
  }
  return true;
}
