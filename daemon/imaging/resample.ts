/**
 * Resampling crops and pictures with sharp (Lanczos 3 by default; a plain copy when no resampling
 * is needed). Which region and size to use is geometry/'s business.
 */
import sharp from "sharp";
import { ImagingError } from "./errors";
import { assertImage, assertInside, assertSize, cropImage } from "./image";
import type { Region, Pixels, Size } from "../../geometry";

export type ResizeKernel = "nearest" | "linear" | "cubic" | "mitchell" | "lanczos2" | "lanczos3";

/**
 * The pixels of `region`, resampled to `size` (Lanczos 3 by default; use "linear" for masks if
 * Lanczos ringing matters). A plain copy, bit for bit, when the region already has that size.
 */
export async function cropAndResize(image: Pixels, region: Region, size: Size, options: { kernel?: ResizeKernel } = {}): Promise<Pixels> {
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
export async function resizeTo(image: Pixels, size: Size, options: { kernel?: ResizeKernel } = {}): Promise<Pixels> {
  assertImage(image);
  return cropAndResize(image, { x: 0, y: 0, width: image.width, height: image.height }, size, options);
}

/**
 * RGB at `size` for the model's init image: gray expanded, transparency flattened onto white (what
 * an artist sees on an empty canvas), resampled with Lanczos 3 when the size differs.
 */
export async function rgbAt(image: Pixels, size: Size): Promise<Uint8Array> {
  assertImage(image);
  assertSize(size, "target size");
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } });
  if (image.channels === 4) pipeline = pipeline.flatten({ background: { r: 255, g: 255, b: 255 } });
  if (image.channels === 1) pipeline = pipeline.toColourspace("srgb");
  if (image.width !== size.width || image.height !== size.height) pipeline = pipeline.resize(size.width, size.height, { fit: "fill", kernel: "lanczos3" });
  const data = await pipeline.removeAlpha().raw().toBuffer();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
