/**
 * Soft masks (one channel, 0 = keep, 255 = repaint): bounds, grow, shrink, feather, and the two
 * masks a masked edit needs (krita-ai-diffusion's scheme): a denoise mask reaching a little beyond the
 * selection and a blend mask that fades the result in strictly inside it.
 */
import { blurReach, gaussianBlur, maxFilterOctagon, minFilterOctagon } from "./filters";
import { assertMask, assertRadius, assertSameSize, cloneImage, diagonal } from "./image";
import { defaultMaskParameters, type MaskParameters, type Pixels, type Region } from "../../geometry";

/** Region of the pixels > threshold (default 0); null when there are none. */
export function maskBounds(mask: Pixels, threshold = 0): Region | null {
  assertMask(mask);
  const { width, height, data } = mask;
  let top = -1;
  for (let y = 0; y < height && top < 0; y++) {
    for (let x = y * width, end = x + width; x < end; x++) if (data[x]! > threshold) { top = y; break; }
  }
  if (top < 0) return null;
  let bottom = top;
  for (let y = height - 1; y > top; y--) {
    let hit = false;
    for (let x = y * width, end = x + width; x < end; x++) if (data[x]! > threshold) { hit = true; break; }
    if (hit) { bottom = y; break; }
  }
  let left = width;
  let right = -1;
  for (let y = top; y <= bottom; y++) {
    const row = y * width;
    for (let x = 0; x < left; x++) if (data[row + x]! > threshold) { left = x; break; }
    for (let x = width - 1; x > right; x--) if (data[row + x]! > threshold) { right = x; break; }
  }
  return { x: left, y: top, width: right - left + 1, height: bottom - top + 1 };
}

/**
 * Dilation (max filter) by a disk of `radius` px, approximated by a regular octagon with that inradius
 * (at most 8% wider on the diagonals); soft values are carried outward as they are. Radius rounds to whole px.
 */
export function growMask(mask: Pixels, radius: number): Pixels {
  assertMask(mask);
  assertRadius(radius, "grow radius");
  return { width: mask.width, height: mask.height, channels: 1, data: maxFilterOctagon(mask.data, mask.width, mask.height, radius) };
}

/** Erosion (min filter) by the same octagon; the canvas edge does not erode a mask that touches it. */
export function shrinkMask(mask: Pixels, radius: number): Pixels {
  assertMask(mask);
  assertRadius(radius, "shrink radius");
  return { width: mask.width, height: mask.height, channels: 1, data: minFilterOctagon(mask.data, mask.width, mask.height, radius) };
}

/**
 * Gaussian blur with sigma = radius / 2, so a hard edge becomes a ramp about 2 * radius wide
 * (2.3% .. 97.7% between edge - radius and edge + radius). Three box blurs: the ramp ends exactly
 * ~1.5 * radius from the edge. Edges are clamped, so a mask touching the canvas edge stays full there.
 */
export function featherMask(mask: Pixels, radius: number): Pixels {
  assertMask(mask);
  assertRadius(radius, "feather radius");
  if (radius === 0) return cloneImage(mask);
  const { width, height } = mask;
  const region = activeRegion(mask, blurReach(radius / 2) + 1);
  if (!region) return cloneImage(mask);
  // Only the part of the mask that is not flat can change: blur that crop, copy the rest.
  const { x: rx, y: ry, width: rw, height: rh } = region;
  const plane = new Float32Array(rw * rh);
  for (let y = 0; y < rh; y++) {
    const from = (ry + y) * width + rx;
    for (let x = 0; x < rw; x++) plane[y * rw + x] = mask.data[from + x]!;
  }
  gaussianBlur(plane, rw, rh, 1, radius / 2);
  const out = new Uint8Array(mask.data);
  for (let y = 0; y < rh; y++) {
    const to = (ry + y) * width + rx;
    for (let x = 0; x < rw; x++) {
      const v = plane[y * rw + x]!;
      out[to + x] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
  return { width, height, channels: 1, data: out };
}

/**
 * Where a blur can change anything: bounds of the non-uniform part (pixels that differ from the
 * mask's background value 0) padded by the blur's reach, or null when the mask is uniform.
 */
function activeRegion(mask: Pixels, reach: number): Region | null {
  const bounds = maskBounds(mask);
  if (!bounds) return null;
  if (bounds.width === mask.width && bounds.height === mask.height) {
    // Mostly selected: blur everything (uniform 255 stays 255 under a normalized kernel).
    return { x: 0, y: 0, width: mask.width, height: mask.height };
  }
  const x0 = Math.max(0, bounds.x - reach);
  const y0 = Math.max(0, bounds.y - reach);
  const x1 = Math.min(mask.width, bounds.x + bounds.width + reach);
  const y1 = Math.min(mask.height, bounds.y + bounds.height + reach);
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

export interface MaskOptions {
  /** Denoise mask: dilation radius, px. */
  grow?: number;
  /** Denoise mask: feather radius after growing, px. */
  feather?: number;
  /** Blend mask: erosion radius, px (the generated area starts this far inside the selection). */
  shrink?: number;
  /** Blend mask: feather radius after shrinking, px. */
  blend?: number;
}

export interface MaskPair {
  /** What the model may repaint: the selection grown and feathered (reaches beyond it). */
  denoise: Pixels;
  /** How much of the result shows: shrunk and feathered, and never above the selection anywhere. */
  blend: Pixels;
  /** The radii used, defaults resolved. */
  parameters: MaskParameters;
}


/**
 * The denoise and blend masks for a selection. blend = min(selection, feather(shrink(selection))),
 * so blend <= selection at every pixel and blend == 0 wherever the selection is 0, whatever the radii.
 * An empty selection gives two empty masks.
 */
export function masksFor(selection: Pixels, options: MaskOptions = {}): MaskPair {
  assertMask(selection, "selection");
  const bounds = maskBounds(selection);
  const defaults = bounds ? defaultMaskParameters(bounds) : { grow: 0, feather: 0, shrink: 0, blend: 0 };
  const parameters: MaskParameters = {
    grow: options.grow ?? defaults.grow,
    feather: options.feather ?? defaults.feather,
    shrink: options.shrink ?? defaults.shrink,
    blend: options.blend ?? defaults.blend,
  };
  for (const [name, value] of Object.entries(parameters)) assertRadius(value, `${name} radius`);
  if (!bounds) return { denoise: cloneImage(selection), blend: cloneImage(selection), parameters };
  const denoise = featherMask(growMask(selection, parameters.grow), parameters.feather);
  const blend = featherMask(shrinkMask(selection, parameters.shrink), parameters.blend);
  const b = blend.data;
  const s = selection.data;
  for (let i = 0; i < b.length; i++) if (b[i]! > s[i]!) b[i] = s[i]!;
  // The denoise mask must cover the selection too (feathering a grown mask can dip below it at corners).
  const dn = denoise.data;
  for (let i = 0; i < dn.length; i++) if (dn[i]! < s[i]!) dn[i] = s[i]!;
  return { denoise, blend, parameters };
}

/** Per-pixel max of two masks of the same size. */
export function unionMask(a: Pixels, b: Pixels): Pixels {
  assertMask(a);
  assertMask(b);
  assertSameSize(a, b, "first mask", "second mask");
  const out = new Uint8Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.max(a.data[i]!, b.data[i]!);
  return { width: a.width, height: a.height, channels: 1, data: out };
}

/** 255 - mask. */
export function invertMask(mask: Pixels): Pixels {
  assertMask(mask);
  const out = new Uint8Array(mask.data.length);
  for (let i = 0; i < out.length; i++) out[i] = 255 - mask.data[i]!;
  return { width: mask.width, height: mask.height, channels: 1, data: out };
}

