/**
 * Pre-fill: what the model must invent is painted over before the picture is VAE-encoded, so the
 * latents start from plausible colours instead of whatever the selection held (or nothing, beyond
 * the old canvas). Only pixels with mask > threshold (default 127, i.e. "mostly repaint") are
 * touched; every other pixel, soft edge included, is kept as it is and serves as a source.
 */
import { ImagingError } from "./errors";
import { blurReach, gaussianBlur } from "./filters";
import { assertImage, assertMask, assertRadius, assertSameSize, averageSide, cloneImage } from "./image";
import { maskBounds } from "./mask";
import type { Region, Pixels } from "../../geometry";

export type PrefillMode = "none" | "neutral" | "blur" | "propagate";

export interface PrefillOptions {
  /** Pixels with mask above this are filled (default 127). */
  threshold?: number;
  /** "blur": feather radius of the blur, sigma = radius / 2 (default: a quarter of the filled area's average side, 8..256). */
  radius?: number;
}

/** Known pixels kept around a hole for the coarse levels of the fill (more costs memory, not accuracy). */
const MAX_MARGIN = 256;

/** The grey that is 0 in the VAE's [-1, 1] range. */
export const NEUTRAL_GREY = 128;

/**
 * A copy of `image` with the masked pixels filled:
 * - "none": unchanged;
 * - "neutral": flat grey (alpha, if any, opaque);
 * - "blur": a wide blur of the surroundings in which only known pixels count (normalized convolution);
 *   deep inside holes wider than the blur it fades into the "propagate" fill, so nothing is left empty;
 * - "propagate": a membrane (harmonic) fill solved by multigrid: the colours on the hole's edge
 *   continue smoothly into it (exact for a linear gradient), fading towards their average with
 *   distance (a pattern repeating every L px along the edge fades to a third L / 6 px in); no streaks.
 *   The canvas edge is free, so near it the fill flattens along the edge. Used for outpainting.
 * A mask that covers the whole image leaves nothing to propagate from: the fill is then neutral.
 */
export function prefill(image: Pixels, mask: Pixels, mode: PrefillMode, options: PrefillOptions = {}): Pixels {
  assertImage(image);
  assertMask(mask);
  assertSameSize(image, mask, "image", "mask");
  if (!["none", "neutral", "blur", "propagate"].includes(mode)) throw new ImagingError("invalid_argument", `Unknown pre-fill mode "${String(mode)}".`);
  const threshold = options.threshold ?? 127;
  const out = cloneImage(image);
  if (mode === "none") return out;
  const bounds = maskBounds(mask, threshold);
  if (!bounds) return out;
  const wholeImage = bounds.width === image.width && bounds.height === image.height && everyPixelAbove(mask, threshold);
  if (mode === "neutral" || wholeImage) {
    fillNeutral(out, mask, threshold);
    return out;
  }
  if (mode === "propagate") {
    // The fill depends only on the known pixels touching the hole, but the coarse levels need whole
    // known blocks around it to start from the right answer: keep half the hole's size around it.
    const crop = padBounds(bounds, Math.min(MAX_MARGIN, Math.max(4, Math.ceil(Math.max(bounds.width, bounds.height) / 2))), image);
    const { values, known } = floatCrop(image, mask, crop, threshold);
    harmonicFill(values, known, crop.width, crop.height, image.channels);
    writeBack(out, mask, threshold, crop, values);
    return out;
  }
  const radius = options.radius ?? Math.min(256, Math.max(8, Math.round(averageSide(bounds) / 4)));
  assertRadius(radius, "blur radius");
  blurFill(out, image, mask, threshold, bounds, radius);
  return out;
}

function everyPixelAbove(mask: Pixels, threshold: number): boolean {
  for (let i = 0; i < mask.data.length; i++) if (mask.data[i]! <= threshold) return false;
  return true;
}

function fillNeutral(out: Pixels, mask: Pixels, threshold: number): void {
  const c = out.channels;
  const n = out.width * out.height;
  for (let i = 0; i < n; i++) {
    if (mask.data[i]! <= threshold) continue;
    const p = i * c;
    if (c === 1) out.data[p] = NEUTRAL_GREY;
    else {
      out.data[p] = out.data[p + 1] = out.data[p + 2] = NEUTRAL_GREY;
      if (c === 4) out.data[p + 3] = 255;
    }
  }
}

function padBounds(b: Region, pad: number, size: { width: number; height: number }): Region {
  const x0 = Math.max(0, b.x - pad);
  const y0 = Math.max(0, b.y - pad);
  const x1 = Math.min(size.width, b.x + b.width + pad);
  const y1 = Math.min(size.height, b.y + b.height + pad);
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

/** The crop as floats, and 1 where the pixel is known (mask <= threshold). */
function floatCrop(image: Pixels, mask: Pixels, crop: Region, threshold: number): { values: Float32Array; known: Uint8Array } {
  const c = image.channels;
  const values = new Float32Array(crop.width * crop.height * c);
  const known = new Uint8Array(crop.width * crop.height);
  for (let y = 0; y < crop.height; y++) {
    const row = (crop.y + y) * image.width + crop.x;
    for (let x = 0; x < crop.width; x++) {
      const i = y * crop.width + x;
      if (mask.data[row + x]! > threshold) continue;
      known[i] = 1;
      for (let ch = 0; ch < c; ch++) values[i * c + ch] = image.data[(row + x) * c + ch]!;
    }
  }
  return { values, known };
}

function writeBack(out: Pixels, mask: Pixels, threshold: number, crop: Region, values: Float32Array): void {
  const c = out.channels;
  for (let y = 0; y < crop.height; y++) {
    const row = (crop.y + y) * out.width + crop.x;
    for (let x = 0; x < crop.width; x++) {
      if (mask.data[row + x]! <= threshold) continue;
      const from = (y * crop.width + x) * c;
      for (let ch = 0; ch < c; ch++) out.data[(row + x) * c + ch] = toByte(values[from + ch]!);
    }
  }
}

function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

/** Below this share of known weight the blur hands over to the propagated fill. */
const BLUR_CONFIDENCE = 0.1;

/**
 * Normalized convolution: blur(value * known) / blur(known). A wide blur needs no full resolution,
 * so it runs on a grid f times coarser (f a power of 2 keeping the coarse sigma >= 2) and is sampled
 * back bilinearly: smooth by construction, and 4096^2 canvases stay fast.
 */
function blurFill(out: Pixels, image: Pixels, mask: Pixels, threshold: number, bounds: Region, radius: number): void {
  const sigma = radius / 2;
  const crop = padBounds(bounds, blurReach(sigma) + 1, image);
  const c = image.channels;
  const planesPerPixel = c + 1;
  const { values, known } = floatCrop(image, mask, crop, threshold);
  const { width: w, height: h } = crop;
  let f = 1;
  while (f * 2 <= sigma / 2) f *= 2;
  const lw = Math.ceil(w / f);
  const lh = Math.ceil(h / f);
  const low = new Float32Array(lw * lh * planesPerPixel);
  for (let y = 0; y < h; y++) {
    const ly = Math.floor(y / f);
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!known[i]) continue;
      const j = (ly * lw + Math.floor(x / f)) * planesPerPixel;
      for (let k = 0; k < c; k++) low[j + k]! += values[i * c + k]!;
      low[j + c]! += 1;
    }
  }
  // Block sums -> block means, so the known share stays in [0, 1] (edge blocks are smaller).
  for (let ly = 0; ly < lh; ly++) {
    const bh = Math.min(f, h - ly * f);
    for (let lx = 0; lx < lw; lx++) {
      const area = bh * Math.min(f, w - lx * f);
      const j = (ly * lw + lx) * planesPerPixel;
      for (let k = 0; k <= c; k++) low[j + k]! /= area;
    }
  }
  gaussianBlur(low, lw, lh, planesPerPixel, sigma / f);
  const fill = new Float32Array(lw * lh * c);
  const confident = new Uint8Array(lw * lh);
  let needsFallback = false;
  for (let j = 0; j < lw * lh; j++) {
    const weight = low[j * planesPerPixel + c]!;
    if (weight > 1e-9) for (let k = 0; k < c; k++) fill[j * c + k] = low[j * planesPerPixel + k]! / weight;
    if (weight >= BLUR_CONFIDENCE) confident[j] = 1;
    else needsFallback = true;
  }
  if (needsFallback) {
    // Deep inside holes wider than the blur: fade into the membrane fill of the confident values.
    const membrane = new Float32Array(fill);
    harmonicFill(membrane, confident, lw, lh, c);
    for (let j = 0; j < lw * lh; j++) {
      if (confident[j]) continue;
      const share = low[j * planesPerPixel + c]! / BLUR_CONFIDENCE;
      for (let k = 0; k < c; k++) fill[j * c + k] = share * fill[j * c + k]! + (1 - share) * membrane[j * c + k]!;
    }
  }
  for (let y = 0; y < h; y++) {
    const fy = Math.min(lh - 1, Math.max(0, (y + 0.5) / f - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(lh - 1, y0 + 1);
    const ty = fy - y0;
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (known[i]) continue;
      const fx = Math.min(lw - 1, Math.max(0, (x + 0.5) / f - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(lw - 1, x0 + 1);
      const tx = fx - x0;
      for (let k = 0; k < c; k++) {
        const a = fill[(y0 * lw + x0) * c + k]!;
        const b = fill[(y0 * lw + x1) * c + k]!;
        const d = fill[(y1 * lw + x0) * c + k]!;
        const e = fill[(y1 * lw + x1) * c + k]!;
        values[i * c + k] = (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * d + tx * e);
      }
    }
  }
  writeBack(out, mask, threshold, crop, values);
}

/**
 * Fills the unknown pixels (known[i] == 0) of interleaved float channels with the solution of
 * Laplace's equation, known pixels fixed, image edges free (Neumann). Cascadic multigrid: the
 * problem is halved until it is tiny (coarse pixels known where any of their 2x2 was), solved there,
 * then each finer level starts from the bilinear upsampling of the coarser solution and is relaxed
 * with a few symmetric Gauss-Seidel sweeps. O(n) overall.
 */
export function harmonicFill(values: Float32Array, known: Uint8Array, width: number, height: number, channels: number): void {
  let anyKnown = false;
  for (let i = 0; i < known.length; i++) if (known[i]) { anyKnown = true; break; }
  if (!anyKnown) throw new ImagingError("empty_mask", "Nothing around the area to fill: every pixel is masked.");
  solveLevel(values, known, width, height, channels, 0);
}

/**
 * Sweeps at a level: 4 at the finest, x3 per coarser level (cascadic multigrid needs the coarse
 * levels close to converged); each level has a quarter of the pixels, so the total stays ~12n.
 */
function sweepsAt(depth: number): number {
  return Math.min(256, Math.round(4 * 3 ** depth));
}

function solveLevel(values: Float32Array, known: Uint8Array, w: number, h: number, c: number, depth: number): void {
  let count = 0;
  for (let i = 0; i < known.length; i++) if (!known[i]) count++;
  if (count === 0) return;
  const list = new Int32Array(count);
  for (let i = 0, u = 0; i < known.length; i++) if (!known[i]) list[u++] = i;
  if (w > 1 || h > 1) {
    const cw = (w + 1) >> 1;
    const ch = (h + 1) >> 1;
    const cvalues = new Float32Array(cw * ch * c);
    const cknown = new Uint8Array(cw * ch);
    const counts = new Uint8Array(cw * ch);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!known[i]) continue;
        const j = (y >> 1) * cw + (x >> 1);
        counts[j]!++;
        for (let k = 0; k < c; k++) cvalues[j * c + k]! += values[i * c + k]!;
      }
    }
    // A coarse pixel is known when all its fine pixels are: a partial block's mean sits off its
    // centre and would bend gradients. Only when no block is whole do partial ones count.
    let whole = 0;
    for (let j = 0; j < cw * ch; j++) {
      const n = counts[j]!;
      if (n === 0) continue;
      const cx = j % cw;
      const cy = (j - cx) / cw;
      const size = (2 * cx + 1 < w ? 2 : 1) * (2 * cy + 1 < h ? 2 : 1);
      if (n === size) {
        cknown[j] = 1;
        whole++;
      }
      for (let k = 0; k < c; k++) cvalues[j * c + k]! /= n;
    }
    if (whole === 0) for (let j = 0; j < cw * ch; j++) if (counts[j]! > 0) cknown[j] = 1;
    solveLevel(cvalues, cknown, cw, ch, c, depth + 1);
    // Start from the coarse solution, sampled bilinearly at this level's pixel centres.
    for (let u = 0; u < list.length; u++) {
      const i = list[u]!;
      const x = i % w;
      const y = (i - x) / w;
      const fx = Math.min(cw - 1, Math.max(0, x / 2 - 0.25));
      const fy = Math.min(ch - 1, Math.max(0, y / 2 - 0.25));
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const x1 = Math.min(cw - 1, x0 + 1);
      const y1 = Math.min(ch - 1, y0 + 1);
      const tx = fx - x0;
      const ty = fy - y0;
      for (let k = 0; k < c; k++) {
        const a = cvalues[(y0 * cw + x0) * c + k]!;
        const b = cvalues[(y0 * cw + x1) * c + k]!;
        const d = cvalues[(y1 * cw + x0) * c + k]!;
        const e = cvalues[(y1 * cw + x1) * c + k]!;
        values[i * c + k] = (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * d + tx * e);
      }
    }
  }
  relax(values, list, w, h, c, sweepsAt(depth), depth === 0 ? OMEGA_FINE : OMEGA_COARSE);
}

const INVERSE = [0, 1, 1 / 2, 1 / 3, 1 / 4];
/** Over-relaxation: plain Gauss-Seidel smooths the finest level; SOR converges the coarse ones faster. */
const OMEGA_FINE = 1;
const OMEGA_COARSE = 1.8;

/** Symmetric Gauss-Seidel on the listed pixels: each becomes the mean of its existing 4-neighbours. */
function relax(values: Float32Array, list: Int32Array, w: number, h: number, c: number, sweeps: number, omega: number): void {
  const flags = new Uint8Array(list.length);
  for (let u = 0; u < list.length; u++) {
    const i = list[u]!;
    const x = i % w;
    const y = (i - x) / w;
    flags[u] = (x > 0 ? 1 : 0) | (x < w - 1 ? 2 : 0) | (y > 0 ? 4 : 0) | (y < h - 1 ? 8 : 0);
  }
  const rowStep = w * c;
  const n = list.length;
  for (let s = 0; s < sweeps; s++) {
    const forward = s % 2 === 0;
    for (let t = 0; t < n; t++) {
      const u = forward ? t : n - 1 - t;
      const f = flags[u]!;
      const inv = INVERSE[(f & 1) + ((f >> 1) & 1) + ((f >> 2) & 1) + ((f >> 3) & 1)]!;
      const p = list[u]! * c;
      for (let k = 0; k < c; k++) {
        const q = p + k;
        let sum = 0;
        if (f & 1) sum += values[q - c]!;
        if (f & 2) sum += values[q + c]!;
        if (f & 4) sum += values[q - rowStep]!;
        if (f & 8) sum += values[q + rowStep]!;
        const old = values[q]!;
        values[q] = old + omega * (sum * inv - old);
      }
    }
  }
}
