import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import type { Pixels } from "../../../geometry";
import { ROOT } from "../../helpers/paths";

export const PHOTOS = path.resolve(ROOT, "..", "shared", "fixtures", "images");

/** A test photograph as 8-bit RGB. */
export async function loadPhoto(name: "chelsea.png" | "coffee.png"): Promise<Pixels> {
  const { data, info } = await sharp(path.join(PHOTOS, name)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Writes a PNG for a person to look at, only when IMAGING_DEBUG_DIR is set (never into the repository). */
export async function debugWrite(name: string, image: Pixels): Promise<void> {
  const dir = process.env.IMAGING_DEBUG_DIR;
  if (!dir) return;
  const target = path.resolve(dir === "1" ? path.join(os.tmpdir(), "underpaint-imaging") : dir);
  fs.mkdirSync(target, { recursive: true });
  await sharp(Buffer.from(image.data), { raw: { width: image.width, height: image.height, channels: image.channels } })
    .png()
    .toFile(path.join(target, name));
}

export function blankMask(width: number, height: number, fill = 0): Pixels {
  return { width, height, channels: 1, data: new Uint8Array(width * height).fill(fill) };
}

/** A soft-edged elliptical selection, like a feathered lasso: 255 inside, a linear ramp `soft` px wide. */
export function ellipseMask(width: number, height: number, cx: number, cy: number, rx: number, ry: number, soft = 0): Pixels {
  const mask = blankMask(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot((x - cx) / rx, (y - cy) / ry);
      // Signed distance in px, approximately, from the ellipse edge (positive inside).
      const inside = (1 - d) * Math.min(rx, ry);
      const v = soft > 0 ? Math.max(0, Math.min(1, 0.5 + inside / soft)) : inside > 0 ? 1 : 0;
      mask.data[y * width + x] = Math.round(255 * v);
    }
  }
  return mask;
}

export function rectMask(width: number, height: number, x0: number, y0: number, w: number, h: number): Pixels {
  const mask = blankMask(width, height);
  for (let y = y0; y < y0 + h; y++) mask.data.fill(255, y * width + x0, y * width + x0 + w);
  return mask;
}

/** A deterministic pseudo-random generator (mulberry32). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function countWhere(mask: Pixels, test: (v: number) => boolean): number {
  let n = 0;
  for (let i = 0; i < mask.data.length; i++) if (test(mask.data[i]!)) n++;
  return n;
}

/** Byte equality, fast (vitest's deep equality is slow on big typed arrays). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}
