/**
 * Putting the generated pixels back: colour match at the mask edge, then a per-pixel blend in pixel
 * space at full resolution, so pixels the blend mask leaves at 0 come back bit for bit.
 */
import { ImagingError } from "./errors";
import { maxFilterOctagon } from "./filters";
import { assertImage, assertMask, assertRadius, assertSameSize, averageSide } from "./image";
import { maskBounds } from "./mask";
import type { Region, Pixels } from "../../geometry";

export interface ColourCorrection {
  /** Per colour channel: corrected = gain * generated + offset. */
  gain: number[];
  offset: number[];
  /** Pixels the statistics came from (0 = nothing to match: identity). */
  ringPixels: number;
  ringWidth: number;
}

/** The gain is kept within [1/MAX_GAIN, MAX_GAIN]: a ring of flat sky must not blow noise up. */
const MAX_GAIN = 2;

/** Default ring width: a tenth of the mask's average side, 8..64 px. */
export function defaultRingWidth(bounds: Region): number {
  return Math.min(64, Math.max(8, Math.round(averageSide(bounds) / 10)));
}

/**
 * The ring the statistics come from: pixels OUTSIDE the mask (mask == 0) within `ringWidth` of it.
 * There the original is the truth and the generated picture is the model's rendering of the same
 * surroundings, so the two differ only by the model's colour drift. Inside the mask the original is
 * what the artist wants replaced (an object to remove, say), so it says nothing about the right colour.
 */
export function outerRing(mask: Pixels, ringWidth?: number): { ring: Uint8Array; width: number; count: number } {
  assertMask(mask);
  const bounds = maskBounds(mask);
  if (!bounds) return { ring: new Uint8Array(mask.data.length), width: ringWidth ?? 0, count: 0 };
  const width = Math.round(ringWidth ?? defaultRingWidth(bounds));
  assertRadius(width, "ring width");
  const ring = new Uint8Array(mask.data.length);
  if (width === 0) return { ring, width, count: 0 };
  // Grow only the crop that can change.
  const x0 = Math.max(0, bounds.x - width);
  const y0 = Math.max(0, bounds.y - width);
  const x1 = Math.min(mask.width, bounds.x + bounds.width + width);
  const y1 = Math.min(mask.height, bounds.y + bounds.height + width);
  const cw = x1 - x0;
  const ch = y1 - y0;
  const crop = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) crop[y * cw + x] = mask.data[(y0 + y) * mask.width + x0 + x]! > 0 ? 255 : 0;
  }
  const grown = maxFilterOctagon(crop, cw, ch, width);
  let count = 0;
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      if (grown[y * cw + x]! > 0 && crop[y * cw + x] === 0) {
        ring[(y0 + y) * mask.width + x0 + x] = 255;
        count++;
      }
    }
  }
  return { ring, width, count };
}

/**
 * Per colour channel, the gain and offset that give the generated ring the original ring's mean
 * and standard deviation (gain clamped to [0.5, 2]; gain 1 where the generated ring is flat).
 */
export function colourCorrection(generated: Pixels, original: Pixels, mask: Pixels, ringWidth?: number): ColourCorrection {
  checkPair(generated, original, mask);
  const { ring, width, count } = outerRing(mask, ringWidth);
  const colours = Math.min(3, generated.channels, original.channels);
  const gain = [1, 1, 1].slice(0, colours);
  const offset = [0, 0, 0].slice(0, colours);
  if (count === 0) return { gain, offset, ringPixels: 0, ringWidth: width };
  const gc = generated.channels;
  const oc = original.channels;
  for (let k = 0; k < colours; k++) {
    let sg = 0, sg2 = 0, so = 0, so2 = 0;
    for (let i = 0; i < ring.length; i++) {
      if (!ring[i]) continue;
      const g = generated.data[i * gc + k]!;
      const o = original.data[i * oc + k]!;
      sg += g;
      sg2 += g * g;
      so += o;
      so2 += o * o;
    }
    const mg = sg / count;
    const mo = so / count;
    const dg = Math.sqrt(Math.max(0, sg2 / count - mg * mg));
    const dO = Math.sqrt(Math.max(0, so2 / count - mo * mo));
    const g = dg < 1 ? 1 : Math.min(MAX_GAIN, Math.max(1 / MAX_GAIN, dO / dg));
    gain[k] = g;
    offset[k] = mo - g * mg;
  }
  return { gain, offset, ringPixels: count, ringWidth: width };
}

/** The generated image with a correction applied to its colour channels (alpha untouched), clamped. */
export function applyColourCorrection(generated: Pixels, correction: ColourCorrection): Pixels {
  assertImage(generated, "generated image");
  const c = generated.channels;
  const out = new Uint8Array(generated.data);
  const colours = correction.gain.length;
  for (let k = 0; k < colours; k++) {
    const g = correction.gain[k]!;
    const o = correction.offset[k]!;
    if (g === 1 && o === 0) continue;
    const lut = new Uint8Array(256);
    for (let v = 0; v < 256; v++) lut[v] = Math.min(255, Math.max(0, Math.round(g * v + o)));
    for (let p = k; p < out.length; p += c) out[p] = lut[out[p]!]!;
  }
  return { width: generated.width, height: generated.height, channels: generated.channels, data: out };
}

/**
 * Corrects the generated picture's per-channel mean and spread to the original's, measured in the
 * ring just outside the mask (see outerRing; default width a tenth of the mask's average side,
 * 8..64 px). The whole picture gets the same correction. Returns a new image; an empty ring (empty
 * mask, or a mask covering everything) leaves the colours as they are.
 */
export function matchColours(generated: Pixels, original: Pixels, mask: Pixels, ringWidth?: number): Pixels {
  return applyColourCorrection(generated, colourCorrection(generated, original, mask, ringWidth));
}

function checkPair(generated: Pixels, original: Pixels, mask: Pixels): void {
  assertImage(generated, "generated image");
  assertImage(original, "original image");
  assertMask(mask);
  assertSameSize(original, generated, "original image", "generated image");
  assertSameSize(original, mask, "original image", "mask");
  if (generated.channels === 1 || original.channels === 1) {
    if (generated.channels !== original.channels) {
      throw new ImagingError("invalid_argument", "Both pictures must be grey, or both colour.");
    }
  }
}

/**
 * result = original * (1 - b) + generated * b, b = blend / 255, rounded, in the original's channels.
 * Where blend == 0 the original's bytes are copied (bit-identical, alpha included); where blend ==
 * 255 the generated colours are copied. The generated picture is opaque unless it has an alpha
 * channel, so alpha = lerp(original alpha, generated alpha or 255, b); where either alpha is below
 * 255 the colours are mixed weighted by alpha (no dark fringes from transparent pixels).
 */
export function composite(original: Pixels, generated: Pixels, blend: Pixels): Pixels {
  assertImage(original, "original image");
  assertImage(generated, "generated image");
  assertMask(blend, "blend mask");
  assertSameSize(original, generated, "original image", "generated image");
  assertSameSize(original, blend, "original image", "blend mask");
  const oc = original.channels;
  const gc = generated.channels;
  if ((oc === 1) !== (gc === 1)) throw new ImagingError("invalid_argument", "Both pictures must be grey, or both colour.");
  const colours = oc === 1 ? 1 : 3;
  const o = original.data;
  const g = generated.data;
  const b = blend.data;
  const out = new Uint8Array(o);
  const n = original.width * original.height;
  for (let i = 0; i < n; i++) {
    const w = b[i]!;
    if (w === 0) continue;
    const po = i * oc;
    const pg = i * gc;
    const ao = oc === 4 ? o[po + 3]! : 255;
    const ag = gc === 4 ? g[pg + 3]! : 255;
    if (ao === 255 && ag === 255) {
      if (w === 255) for (let k = 0; k < colours; k++) out[po + k] = g[pg + k]!;
      else {
        const v = 255 - w;
        // round((o * (255 - w) + g * w) / 255) in integers: exact for every input.
        for (let k = 0; k < colours; k++) out[po + k] = div255(o[po + k]! * v + g[pg + k]! * w);
      }
      continue;
    }
    const t = w / 255;
    const alpha = ao * (1 - t) + ag * t;
    if (oc === 4) out[po + 3] = Math.round(alpha);
    for (let k = 0; k < colours; k++) {
      out[po + k] = alpha > 0 ? Math.round((o[po + k]! * ao * (1 - t) + g[pg + k]! * ag * t) / alpha) : w === 255 ? g[pg + k]! : o[po + k]!;
    }
  }
  return { width: original.width, height: original.height, channels: original.channels, data: out };
}

/** round(x / 255) for 0 <= x <= 255 * 255, without division. */
function div255(x: number): number {
  const t = x + 128;
  return (t + (t >> 8)) >> 8;
}

/** What becomes the Photoshop layer: the generated colours, alpha = blend (times the generated alpha, if any). */
export function layerPixels(generated: Pixels, blend: Pixels): Pixels {
  assertImage(generated, "generated image");
  assertMask(blend, "blend mask");
  assertSameSize(generated, blend, "generated image", "blend mask");
  const n = generated.width * generated.height;
  const c = generated.channels;
  const g = generated.data;
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const p = i * c;
    const q = i * 4;
    if (c === 1) out[q] = out[q + 1] = out[q + 2] = g[p]!;
    else {
      out[q] = g[p]!;
      out[q + 1] = g[p + 1]!;
      out[q + 2] = g[p + 2]!;
    }
    out[q + 3] = c === 4 ? div255(blend.data[i]! * g[p + 3]!) : blend.data[i]!;
  }
  return { width: generated.width, height: generated.height, channels: 4, data: out };
}
