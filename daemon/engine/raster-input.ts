/** The init image as the pipeline wants it: 8-bit RGB at the generation size. */
import sharp from "sharp";
import type { Raster } from "./engine";

/** 16-bit -> 8-bit by rounding v / 257 (the exact 65535 -> 255 map). */
export function to8Bit(raster: Raster): Raster {
  if (raster.bitsPerChannel === 8) return raster;
  const words = new Uint16Array(raster.data.buffer.slice(raster.data.byteOffset, raster.data.byteOffset + raster.data.byteLength));
  const data = new Uint8Array(words.length);
  for (let i = 0; i < words.length; i++) data[i] = Math.round(words[i]! / 257);
  return { ...raster, bitsPerChannel: 8, data };
}

/**
 * RGB at width x height: grayscale expanded, transparency flattened onto white (what an artist
 * sees on an empty canvas), resized with Lanczos when the size differs.
 */
export async function toRgbAt(raster: Raster, width: number, height: number): Promise<Uint8Array> {
  const eight = to8Bit(raster);
  let image = sharp(eight.data, { raw: { width: eight.width, height: eight.height, channels: eight.channels } });
  if (eight.channels === 4) image = image.flatten({ background: { r: 255, g: 255, b: 255 } });
  if (eight.channels === 1) image = image.toColourspace("srgb");
  if (eight.width !== width || eight.height !== height) image = image.resize(width, height, { fit: "fill", kernel: "lanczos3" });
  const data = await image.removeAlpha().raw().toBuffer();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
