/** Measures of a composite: how visible its seam is, and how far its colours are from the original's. */
import { ImagingError } from "./errors";
import { maxFilterOctagon, minFilterOctagon } from "./filters";
import { assertImage, assertMask, assertRadius, assertSameSize } from "./image";
import type { Pixels } from "../../geometry";

/**
 * The pixels within `width` px of the mask's edge, on either side (a band about 2 * width wide); the
 * edge is where the mask crosses 50%. The canvas edge is not a mask edge.
 */
export function ringAround(mask: Pixels, width: number): Pixels {
  assertMask(mask);
  assertRadius(width, "ring width");
  const n = mask.data.length;
  const inside = new Uint8Array(n);
  for (let i = 0; i < n; i++) inside[i] = mask.data[i]! > 127 ? 255 : 0;
  const out = new Uint8Array(n);
  if (width > 0) {
    const grown = maxFilterOctagon(inside, mask.width, mask.height, width);
    const shrunk = minFilterOctagon(inside, mask.width, mask.height, width);
    for (let i = 0; i < n; i++) out[i] = grown[i]! > 0 && shrunk[i] === 0 ? 255 : 0;
  }
  return { width: mask.width, height: mask.height, channels: 1, data: out };
}

/** Per pixel, the RMS over colour channels of the central-difference gradient (one-sided at the edges). */
export function gradientMagnitude(image: Pixels): Float32Array {
  assertImage(image);
  const { width, height } = image;
  const c = image.channels;
  const colours = c === 4 ? 3 : c;
  const d = image.data;
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const yu = y > 0 ? y - 1 : y;
    const yd = y < height - 1 ? y + 1 : y;
    const sy = yd - yu || 1;
    for (let x = 0; x < width; x++) {
      const xl = x > 0 ? x - 1 : x;
      const xr = x < width - 1 ? x + 1 : x;
      const sx = xr - xl || 1;
      let sum = 0;
      for (let k = 0; k < colours; k++) {
        const gx = (d[(y * width + xr) * c + k]! - d[(y * width + xl) * c + k]!) / sx;
        const gy = (d[(yd * width + x) * c + k]! - d[(yu * width + x) * c + k]!) / sy;
        sum += gx * gx + gy * gy;
      }
      out[y * width + x] = Math.sqrt(sum / colours);
    }
  }
  return out;
}

export interface SeamScore {
  /** Mean gradient magnitude on the blend's border: its ramp (0 < blend < 255) plus one pixel either side. */
  border: number;
  /** Mean gradient magnitude of the untouched picture (blend == 0) within `reach` px of that border. */
  interior: number;
  /** border / interior: about 1 when the edge looks like the picture around it, well above 1 for a seam. */
  ratio: number;
}

/**
 * How visible the edge of a composite is. A hard paste concentrates the whole colour step in two
 * pixels; a feathered one spreads it over its ramp; the local picture's own texture is the yardstick.
 * Throws empty_mask when the blend has no border or no untouched pixels near it.
 */
export function seamScore(image: Pixels, blend: Pixels, options: { reach?: number } = {}): SeamScore {
  assertImage(image);
  assertMask(blend, "blend mask");
  assertSameSize(image, blend, "image", "blend mask");
  const reach = options.reach ?? 16;
  assertRadius(reach, "reach");
  const { width, height } = image;
  const n = width * height;
  const b = blend.data;
  // Border: pixels whose 3x3 neighbourhood is neither all 0 nor all 255.
  const hi = maxFilterOctagon(b, width, height, 1);
  const lo = minFilterOctagon(b, width, height, 1);
  const border = new Uint8Array(n);
  let borderCount = 0;
  for (let i = 0; i < n; i++) {
    if (hi[i]! > 0 && lo[i]! < 255) {
      border[i] = 255;
      borderCount++;
    }
  }
  if (borderCount === 0) throw new ImagingError("empty_mask", "The blend mask has no edge to measure.");
  const near = maxFilterOctagon(border, width, height, Math.max(1, Math.round(reach)));
  const gradient = gradientMagnitude(image);
  let sumBorder = 0;
  let sumInterior = 0;
  let interiorCount = 0;
  for (let i = 0; i < n; i++) {
    if (border[i]) sumBorder += gradient[i]!;
    else if (b[i] === 0 && near[i]! > 0) {
      sumInterior += gradient[i]!;
      interiorCount++;
    }
  }
  if (interiorCount === 0) throw new ImagingError("empty_mask", "There are no untouched pixels next to the blend mask to compare with.");
  const borderMean = sumBorder / borderCount;
  const interiorMean = sumInterior / interiorCount;
  return { border: borderMean, interior: interiorMean, ratio: borderMean / Math.max(interiorMean, 1e-6) };
}

const SRGB_TO_LINEAR = (() => {
  const lut = new Float64Array(256);
  for (let v = 0; v < 256; v++) {
    const c = v / 255;
    lut[v] = c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  }
  return lut;
})();

/** D65 reference white (2 degree observer), Y = 1. */
const WHITE = [0.95047, 1, 1.08883] as const;
const EPSILON = (6 / 29) ** 3;
const KAPPA_SLOPE = 1 / (3 * (6 / 29) ** 2);

function labF(t: number): number {
  return t > EPSILON ? Math.cbrt(t) : t * KAPPA_SLOPE + 4 / 29;
}

/** CIE L*a*b* (D65) of an 8-bit sRGB colour. */
export function srgbToLab(r: number, g: number, b: number): [number, number, number] {
  const R = SRGB_TO_LINEAR[r]!;
  const G = SRGB_TO_LINEAR[g]!;
  const B = SRGB_TO_LINEAR[b]!;
  const X = 0.4124564 * R + 0.3575761 * G + 0.1804375 * B;
  const Y = 0.2126729 * R + 0.7151522 * G + 0.072175 * B;
  const Z = 0.0193339 * R + 0.119192 * G + 0.9503041 * B;
  const fx = labF(X / WHITE[0]);
  const fy = labF(Y / WHITE[1]);
  const fz = labF(Z / WHITE[2]);
  return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
}

/** Mean CIE76 colour difference (Euclidean distance in L*a*b*, sRGB D65) over the pixels where `where` > 0. */
export function deltaE76(a: Pixels, b: Pixels, where: Pixels): number {
  assertImage(a, "first image");
  assertImage(b, "second image");
  assertMask(where, "measured area");
  assertSameSize(a, b, "first image", "second image");
  assertSameSize(a, where, "first image", "measured area");
  const ac = a.channels;
  const bc = b.channels;
  let sum = 0;
  let count = 0;
  for (let i = 0; i < where.data.length; i++) {
    if (where.data[i] === 0) continue;
    const pa = i * ac;
    const pb = i * bc;
    const la = ac === 1 ? srgbToLab(a.data[pa]!, a.data[pa]!, a.data[pa]!) : srgbToLab(a.data[pa]!, a.data[pa + 1]!, a.data[pa + 2]!);
    const lb = bc === 1 ? srgbToLab(b.data[pb]!, b.data[pb]!, b.data[pb]!) : srgbToLab(b.data[pb]!, b.data[pb + 1]!, b.data[pb + 2]!);
    sum += Math.hypot(la[0] - lb[0], la[1] - lb[1], la[2] - lb[2]);
    count++;
  }
  if (count === 0) throw new ImagingError("empty_mask", "There are no pixels to compare colours on.");
  return sum / count;
}
