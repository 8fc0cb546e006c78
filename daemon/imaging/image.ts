/** Small helpers on Pixels: make, check, crop, paste, convert to a mask. */
import { ImagingError } from "./errors";
import type { Region, Pixels, Size } from "../../geometry";

export function createImage(width: number, height: number, channels: 1 | 3 | 4, fill = 0): Pixels {
  assertSize({ width, height }, "image");
  const data = new Uint8Array(width * height * channels);
  if (fill !== 0) data.fill(fill);
  return { width, height, channels, data };
}

export function cloneImage(image: Pixels): Pixels {
  return { width: image.width, height: image.height, channels: image.channels, data: new Uint8Array(image.data) };
}

export function assertSize(size: Size, what: string): void {
  const { width, height } = size;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImagingError("invalid_argument", `The ${what} must be at least 1x1 whole pixels (got ${width}x${height}).`);
  }
}

/** Throws unless the buffer holds exactly width x height x channels bytes. */
export function assertImage(image: Pixels, what = "image"): void {
  assertSize(image, what);
  if (image.channels !== 1 && image.channels !== 3 && image.channels !== 4) {
    throw new ImagingError("invalid_argument", `The ${what} must have 1, 3 or 4 channels (got ${String(image.channels)}).`);
  }
  if (!(image.data instanceof Uint8Array) || image.data.length !== image.width * image.height * image.channels) {
    throw new ImagingError(
      "invalid_argument",
      `The ${what} (${image.width}x${image.height}, ${image.channels} channels) should hold ${image.width * image.height * image.channels} bytes, not ${image.data?.length}.`,
    );
  }
}

export function assertMask(mask: Pixels, what = "mask"): void {
  assertImage(mask, what);
  if (mask.channels !== 1) throw new ImagingError("invalid_argument", `The ${what} must have one channel (got ${mask.channels}).`);
}

export function assertSameSize(a: Pixels, b: Pixels, aName: string, bName: string): void {
  if (a.width !== b.width || a.height !== b.height) {
    throw new ImagingError("size_mismatch", `The ${bName} (${b.width}x${b.height}) must be the size of the ${aName} (${a.width}x${a.height}).`);
  }
}

export function assertRadius(radius: number, what: string): void {
  if (!Number.isFinite(radius) || radius < 0) throw new ImagingError("invalid_argument", `The ${what} must be a number of pixels, 0 or more (got ${radius}).`);
}

/** Throws unless the bounds are whole pixels, non-empty and inside the image. */
export function assertInside(region: Region, size: Size, what = "region"): void {
  const { x, y, width, height } = region;
  if (![x, y, width, height].every(Number.isInteger) || width < 1 || height < 1) {
    throw new ImagingError("invalid_argument", `The ${what} must be whole pixels and at least 1x1 (got ${x},${y} ${width}x${height}).`);
  }
  if (x < 0 || y < 0 || x + width > size.width || y + height > size.height) {
    throw new ImagingError("invalid_argument", `The ${what} (${x},${y} ${width}x${height}) must lie inside the ${size.width}x${size.height} image.`);
  }
}

/** The pixels of `region`, copied. */
export function cropImage(image: Pixels, region: Region): Pixels {
  assertImage(image);
  assertInside(region, image);
  const { channels } = image;
  const out = new Uint8Array(region.width * region.height * channels);
  const rowBytes = region.width * channels;
  for (let y = 0; y < region.height; y++) {
    const from = ((region.y + y) * image.width + region.x) * channels;
    out.set(image.data.subarray(from, from + rowBytes), y * rowBytes);
  }
  return { width: region.width, height: region.height, channels, data: out };
}

/** A copy of `target` with `patch` written at (x, y); the patch must fit and have the same channels. */
export function pasteImage(target: Pixels, patch: Pixels, at: { x: number; y: number }): Pixels {
  assertImage(target, "target image");
  assertImage(patch, "patch");
  if (patch.channels !== target.channels) {
    throw new ImagingError("invalid_argument", `The patch has ${patch.channels} channels, the target ${target.channels}.`);
  }
  assertInside({ x: at.x, y: at.y, width: patch.width, height: patch.height }, target, "patch");
  const out = new Uint8Array(target.data);
  const rowBytes = patch.width * patch.channels;
  for (let y = 0; y < patch.height; y++) {
    out.set(patch.data.subarray(y * rowBytes, (y + 1) * rowBytes), ((at.y + y) * target.width + at.x) * target.channels);
  }
  return { ...target, data: out };
}

/**
 * A one-channel mask from any image (a mask PNG may arrive as grey, RGB or RGBA): Rec. 601 luma,
 * times alpha when there is one, so white = repaint, black or transparent = keep.
 */
export function maskFromImage(image: Pixels): Pixels {
  assertImage(image);
  if (image.channels === 1) return cloneImage(image);
  const n = image.width * image.height;
  const c = image.channels;
  const src = image.data;
  const out = new Uint8Array(n);
  for (let i = 0, p = 0; i < n; i++, p += c) {
    let v = (299 * src[p]! + 587 * src[p + 1]! + 114 * src[p + 2]!) / 1000;
    if (c === 4) v = (v * src[p + 3]!) / 255;
    out[i] = Math.round(v);
  }
  return { width: image.width, height: image.height, channels: 1, data: out };
}

/** 255 where mask > threshold, else 0. */
export function thresholdMask(mask: Pixels, threshold = 127): Pixels {
  assertMask(mask);
  const out = new Uint8Array(mask.data.length);
  const src = mask.data;
  for (let i = 0; i < src.length; i++) out[i] = src[i]! > threshold ? 255 : 0;
  return { width: mask.width, height: mask.height, channels: 1, data: out };
}

/** (w + h) / 2 and the diagonal of a rectangle: what defaults scale with. */
export function averageSide(size: Size): number {
  return (size.width + size.height) / 2;
}

export function diagonal(size: Size): number {
  return Math.hypot(size.width, size.height);
}
