/**
 * Pixel conversions between Photoshop's image data (8, 16 or 32 bits; gray or RGB; with or
 * without alpha) and the panel's 8-bit pixels, a band of rows at a time when writing, and
 * putting Photoshop's trimmed (and maybe scaled) reads back into the rectangle asked for. Pure
 * functions: no Photoshop APIs here.
 */
import type { Pixels } from "../../../geometry";
import { asRgba, resizeRgba } from "../operations/layer-pixels";
import type { Mask8, ReadSize, Rgba8 } from "./host";

export type ComponentSize = 8 | 16 | 32;
export type Samples = Uint8Array | Uint16Array | Float32Array;

/**
 * Every buffer the conversions here allocate, counted (bytes in all, and the largest), so tests
 * can hold the panel to its memory bound. Reset it before what is measured.
 */
export const conversionMemory = {
  allocated: 0,
  largest: 0,
  reset(): void {
    this.allocated = 0;
    this.largest = 0;
  },
};

function counted<T extends Samples>(buffer: T): T {
  conversionMemory.allocated += buffer.byteLength;
  conversionMemory.largest = Math.max(conversionMemory.largest, buffer.byteLength);
  return buffer;
}

/** Photoshop's 16-bit range is 0..32768, not 0..65535. */
export const PS16_MAX = 32768;

export function srgbToLinear(v: number): number {
  return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
}

export function linearToSrgb(v: number): number {
  return v <= 0.0031308 ? v * 12.92 : 1.055 * Math.pow(v, 1 / 2.4) - 0.055;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** One sample as 0..1 in its own encoding (32-bit samples are linear light). */
function sampleTo8(v: number, size: ComponentSize, linear: boolean): number {
  if (size === 8) return v;
  if (size === 16) return Math.round((clamp01(v / PS16_MAX)) * 255);
  const unit = clamp01(linear ? linearToSrgb(clamp01(v)) : v);
  return Math.round(unit * 255);
}

/**
 * Photoshop image data (chunky) -> 8-bit sRGB RGBA. `linear32` says 32-bit samples are linear
 * light (Photoshop's 32-bit documents); alpha is never gamma-encoded.
 */
export function toRgba8(
  samples: Samples,
  image: { width: number; height: number; components: number; componentSize: ComponentSize },
  linear32 = true,
): Rgba8 {
  const { width, height, components, componentSize } = image;
  const count = width * height;
  if (samples.length < count * components) {
    throw new Error(`Photoshop returned ${samples.length} samples for ${width}x${height}x${components}.`);
  }
  const gray = components <= 2;
  const hasAlpha = components === 2 || components === 4;
  const out = counted(new Uint8Array(count * 4));
  const colour = (v: number) => sampleTo8(v, componentSize, linear32 && componentSize === 32);
  const alpha = (v: number) => sampleTo8(v, componentSize, false);
  for (let i = 0, s = 0, o = 0; i < count; i++, s += components, o += 4) {
    if (gray) {
      const g = colour(samples[s]!);
      out[o] = g;
      out[o + 1] = g;
      out[o + 2] = g;
      out[o + 3] = hasAlpha ? alpha(samples[s + 1]!) : 255;
    } else {
      out[o] = colour(samples[s]!);
      out[o + 1] = colour(samples[s + 1]!);
      out[o + 2] = colour(samples[s + 2]!);
      out[o + 3] = hasAlpha ? alpha(samples[s + 3]!) : 255;
    }
  }
  return { width, height, channels: 4, data: out };
}

/** One-channel selection or mask data at any depth -> 8-bit. */
export function toMask8(samples: Samples, image: { width: number; height: number; components: number; componentSize: ComponentSize }): Mask8 {
  const { width, height, components, componentSize } = image;
  const count = width * height;
  const out = counted(new Uint8Array(count));
  for (let i = 0; i < count; i++) out[i] = sampleTo8(samples[i * components]!, componentSize, false);
  return { width, height, channels: 1, data: out };
}

/** Luma of sRGB-encoded values (Rec. 709 weights), for writing into Grayscale documents. */
export function grayOf(r: number, g: number, b: number): number {
  return Math.round(0.2126 * r + 0.7152 * g + 0.0722 * b);
}

function from8(v: number, size: ComponentSize, linear: boolean): number {
  if (size === 8) return v;
  if (size === 16) return Math.round((v / 255) * PS16_MAX);
  return linear ? srgbToLinear(v / 255) : v / 255;
}

/** from8 of every 8-bit value: a sample per value instead of arithmetic per sample. */
function table(size: ComponentSize, linear: boolean): Float64Array {
  return Float64Array.from({ length: 256 }, (_, v) => from8(v, size, linear));
}

/** A buffer for `length` samples of this size (counted). */
export function sampleBuffer(size: ComponentSize, length: number): Samples {
  return counted(size === 8 ? new Uint8Array(length) : size === 16 ? new Uint16Array(length) : new Float32Array(length));
}

/** What a document takes: samples of its depth, gray or RGB, with or without alpha. */
export interface SampleFormat {
  componentSize: ComponentSize;
  grayscale: boolean;
  alpha: boolean;
}

export function componentsOf(format: SampleFormat): number {
  return (format.grayscale ? 1 : 3) + (format.alpha ? 1 : 0);
}

/**
 * Rows [top, top + rows) of 8-bit gray, RGB or RGBA pixels as chunky samples of `format` (32-bit:
 * linear light, as Photoshop keeps it; alpha never gamma-encoded; missing alpha opaque), written
 * into the start of `out` (one band buffer reused for every band): the part written.
 */
export function colourBand(pixels: Pixels, top: number, rows: number, format: SampleFormat, out: Samples): Samples {
  const { componentSize, grayscale, alpha } = format;
  const components = componentsOf(format);
  const count = pixels.width * rows;
  const dst = out.subarray(0, count * components);
  const { channels, data } = pixels;
  const colour = table(componentSize, componentSize === 32);
  const coverage = table(componentSize, false);
  for (let i = 0, s = top * pixels.width * channels, o = 0; i < count; i++, s += channels, o += components) {
    const r = data[s]!;
    const g = channels >= 3 ? data[s + 1]! : r;
    const b = channels >= 3 ? data[s + 2]! : r;
    if (grayscale) {
      dst[o] = colour[grayOf(r, g, b)]!;
    } else {
      dst[o] = colour[r]!;
      dst[o + 1] = colour[g]!;
      dst[o + 2] = colour[b]!;
    }
    if (alpha) dst[o + components - 1] = coverage[channels === 4 ? data[s + 3]! : 255]!;
  }
  return dst;
}

/**
 * Rows [top, top + rows) of one channel of 8-bit pixels (a mask's only one, or RGBA's alpha) as
 * mask samples of this depth (coverage, never gamma-encoded), into the start of `out`.
 */
export function maskBand(source: Pixels, channel: number, top: number, rows: number, componentSize: ComponentSize, out: Samples): Samples {
  const count = source.width * rows;
  const dst = out.subarray(0, count);
  const { channels, data } = source;
  const coverage = table(componentSize, false);
  for (let i = 0, s = top * source.width * channels + channel; i < count; i++, s += channels) dst[i] = coverage[data[s]!]!;
  return dst;
}

/**
 * Copies `src` (which covers `at` in the same coordinates as `into`'s origin) into a
 * zero-filled image of `into`'s size: Photoshop trims reads to where pixels exist, and the
 * panel always wants the rectangle it asked for.
 */
export function padRgba(src: Rgba8, at: { left: number; top: number }, into: { width: number; height: number }): Rgba8 {
  if (at.left === 0 && at.top === 0 && src.width === into.width && src.height === into.height) return src;
  const out = counted(new Uint8Array(into.width * into.height * 4));
  blit(src.data, src.width, src.height, 4, at.left, at.top, out, into.width, into.height);
  return { width: into.width, height: into.height, channels: 4, data: out };
}

export function padMask(src: Mask8, at: { left: number; top: number }, into: { width: number; height: number }): Mask8 {
  if (at.left === 0 && at.top === 0 && src.width === into.width && src.height === into.height) return src;
  const out = counted(new Uint8Array(into.width * into.height));
  blit(src.data, src.width, src.height, 1, at.left, at.top, out, into.width, into.height);
  return { width: into.width, height: into.height, channels: 1, data: out };
}

function blit(src: Uint8Array, sw: number, sh: number, channels: number, dx: number, dy: number, dst: Uint8Array, dw: number, dh: number): void {
  const x0 = Math.max(0, dx);
  const x1 = Math.min(dw, dx + sw);
  if (x1 <= x0) return;
  for (let y = Math.max(0, dy); y < Math.min(dh, dy + sh); y++) {
    const from = ((y - dy) * sw + (x0 - dx)) * channels;
    dst.set(src.subarray(from, from + (x1 - x0) * channels), (y * dw + x0) * channels);
  }
}

/** A rectangle by its edges, as Photoshop's imaging API gives bounds. */
export interface Edges {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** The size a read of `region` returns: `size` when given (checked: scaling down only), else the region's own. */
export function readSize(region: ReadSize, size?: ReadSize): ReadSize {
  if (!size) return { width: region.width, height: region.height };
  const { width, height } = size;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`A read's size must be whole pixels, at least 1x1, not ${width}x${height}.`);
  }
  if (width > region.width || height > region.height) {
    throw new Error(`Reads only scale down: ${width}x${height} is bigger than the ${region.width}x${region.height} region read.`);
  }
  return { width, height };
}

/**
 * Bounds Photoshop returned from a pyramid level (a cache at 1/2^level of full resolution,
 * whose coordinates the returned sourceBounds are in, per @types/photoshop) in document
 * pixels. Level 0, the full-resolution canvas, is the document itself.
 */
export function levelToDocument(bounds: Edges, level: number | undefined): Edges {
  const f = level && level > 0 ? 2 ** level : 1;
  return { left: bounds.left * f, top: bounds.top * f, right: bounds.right * f, bottom: bounds.bottom * f };
}

/** One edge at `from` scale, `to` scale: rounded the same way for every edge, clamped to the image. */
function scaleEdge(v: number, from: number, to: number): number {
  return Math.min(to, Math.max(0, Math.round((v * to) / from)));
}

/** A span [lo, hi) of the scaled image, at least one pixel wide. */
function scaleSpan(lo: number, hi: number, from: number, to: number): [number, number] {
  let a = scaleEdge(lo, from, to);
  let b = scaleEdge(hi, from, to);
  if (b <= a) {
    a = Math.min(a, to - 1);
    b = a + 1;
  }
  return [a, b];
}

/**
 * Where `bounds` (document pixels) land in an image of `size` that shows `region` scaled:
 * every edge is scaled by size/region and rounded on its own, so the whole region maps onto
 * exactly `size`, areas that meet in the document meet in the image, and any area keeps at
 * least one pixel. Without scaling (size = region) this is `bounds` relative to the region.
 */
export function scaledPlacement(bounds: Edges, region: { x: number; y: number } & ReadSize, size: ReadSize): { left: number; top: number; width: number; height: number } {
  const [left, right] = scaleSpan(bounds.left - region.x, bounds.right - region.x, region.width, size.width);
  const [top, bottom] = scaleSpan(bounds.top - region.y, bounds.bottom - region.y, region.height, size.height);
  return { left, top, width: right - left, height: bottom - top };
}

/** A mask resampled to width x height with the RGBA resampler (the mask as an opaque gray image). */
export function resizeMask(mask: Mask8, width: number, height: number): Mask8 {
  if (mask.width === width && mask.height === height) return mask;
  const gray = resizeRgba(asRgba({ ...mask, channels: 1 }), width, height);
  return { width, height, channels: 1, data: counted(Uint8Array.from({ length: width * height }, (_, i) => gray.data[i * 4]!)) };
}

/**
 * Photoshop's answer to a read of `region` at `size`, in the rectangle asked for: `at` is the
 * returned sourceBounds in document pixels (trimmed to where pixels exist). The image is
 * resampled to the exact scaled size of `at` when Photoshop's differs (its own rounding, a
 * pyramid level), then padded to `size` (transparent / unselected where it has no pixels).
 */
function place<T extends Rgba8 | Mask8>(
  image: T,
  at: Edges,
  region: { x: number; y: number } & ReadSize,
  size: ReadSize,
  resize: (image: T, width: number, height: number) => T,
  pad: (image: T, at: { left: number; top: number }, into: ReadSize) => T,
): T {
  const spot = scaledPlacement(at, region, size);
  return pad(resize(image, spot.width, spot.height), spot, size);
}

export function placeRgba(image: Rgba8, at: Edges, region: { x: number; y: number } & ReadSize, size: ReadSize): Rgba8 {
  return place(image, at, region, size, resizeRgba, padRgba);
}

export function placeMask(mask: Mask8, at: Edges, region: { x: number; y: number } & ReadSize, size: ReadSize): Mask8 {
  return place(mask, at, region, size, resizeMask, padMask);
}
