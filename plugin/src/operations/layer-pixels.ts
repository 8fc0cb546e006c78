/**
 * The panel's own pixel work, kept small: RGBA from what the daemon sends, and the JavaScript
 * resampling thumbnails need (sizes and rectangles are geometry/'s, shared with the daemon).
 */
import type { Rgba8 } from "../photoshop/host";

/** RGB, gray or RGBA 8-bit pixels as RGBA. */
export function asRgba(image: { width: number; height: number; channels: 1 | 3 | 4; data: Uint8Array }): Rgba8 {
  const { width, height, channels, data } = image;
  if (channels === 4) return { width, height, channels: 4, data };
  const count = width * height;
  const out = new Uint8Array(count * 4);
  for (let i = 0; i < count; i++) {
    const s = i * channels;
    out[i * 4] = data[s]!;
    out[i * 4 + 1] = data[channels === 1 ? s : s + 1]!;
    out[i * 4 + 2] = data[channels === 1 ? s : s + 2]!;
    out[i * 4 + 3] = 255;
  }
  return { width, height, channels: 4, data: out };
}

interface Taps {
  start: Int32Array;
  count: Int32Array;
  weights: Float32Array;
  taps: number;
}

/** Triangle-filter taps for one axis (bilinear when enlarging, area-like when shrinking). */
function taps(from: number, to: number): Taps {
  const scale = from / to;
  const support = Math.max(1, scale);
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(to);
  const count = new Int32Array(to);
  const weights = new Float32Array(to * taps);
  for (let i = 0; i < to; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support));
    const hi = Math.min(from, Math.ceil(center + support));
    let total = 0;
    let n = 0;
    for (let j = lo; j < hi && n < taps; j++, n++) {
      const w = Math.max(0, 1 - Math.abs(j + 0.5 - center) / support);
      weights[i * taps + n] = w;
      total += w;
    }
    if (total === 0) {
      // Degenerate: take the nearest pixel.
      weights[i * taps] = 1;
      start[i] = Math.min(from - 1, Math.floor(center));
      count[i] = 1;
      continue;
    }
    for (let k = 0; k < n; k++) weights[i * taps + k]! /= total;
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, weights, taps };
}

/** Resamples RGBA to width x height (premultiplied while filtering, so edges do not darken). */
export function resizeRgba(image: Rgba8, width: number, height: number): Rgba8 {
  if (image.width === width && image.height === height) return image;
  const sw = image.width;
  const sh = image.height;
  const pre = new Float32Array(sw * sh * 4);
  for (let i = 0; i < sw * sh; i++) {
    const a = image.data[i * 4 + 3]! / 255;
    pre[i * 4] = image.data[i * 4]! * a;
    pre[i * 4 + 1] = image.data[i * 4 + 1]! * a;
    pre[i * 4 + 2] = image.data[i * 4 + 2]! * a;
    pre[i * 4 + 3] = a;
  }
  const h = taps(sw, width);
  const rows = new Float32Array(width * sh * 4);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let k = 0; k < h.count[x]!; k++) {
        const w = h.weights[x * h.taps + k]!;
        const s = (y * sw + h.start[x]! + k) * 4;
        r += pre[s]! * w;
        g += pre[s + 1]! * w;
        b += pre[s + 2]! * w;
        a += pre[s + 3]! * w;
      }
      const o = (y * width + x) * 4;
      rows[o] = r;
      rows[o + 1] = g;
      rows[o + 2] = b;
      rows[o + 3] = a;
    }
  }
  const v = taps(sh, height);
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let k = 0; k < v.count[y]!; k++) {
        const w = v.weights[y * v.taps + k]!;
        const s = ((v.start[y]! + k) * width + x) * 4;
        r += rows[s]! * w;
        g += rows[s + 1]! * w;
        b += rows[s + 2]! * w;
        a += rows[s + 3]! * w;
      }
      const o = (y * width + x) * 4;
      const alpha = Math.min(1, Math.max(0, a));
      out[o + 3] = Math.round(alpha * 255);
      if (alpha > 0) {
        out[o] = Math.min(255, Math.max(0, Math.round(r / alpha)));
        out[o + 1] = Math.min(255, Math.max(0, Math.round(g / alpha)));
        out[o + 2] = Math.min(255, Math.max(0, Math.round(b / alpha)));
      }
    }
  }
  return { width, height, channels: 4, data: out };
}
