/**
 * Canny edges as OpenCV's cv2.Canny(image, low, high) computes them, which is how the ControlNet
 * canny models' training data and the diffusers / Automatic1111 examples make control images
 * (thresholds 100 and 200 on 0..255): grey by BT.601 weights, an optional Gaussian blur (off by
 * default, as cv2.Canny has none), 3x3 Sobel with replicated borders, L1 gradient magnitude,
 * non-maximum suppression along the gradient's direction quantised to 4 sectors, and hysteresis
 * (pixels above `high` are edges, pixels above `low` are edges when 8-connected to one).
 */
import type { Pixels } from "../../geometry";
import { assertImage } from "./image";

export interface CannyOptions {
  low?: number;
  high?: number;
  /** Gaussian blur's sigma before the gradients (0: none, as cv2.Canny). */
  blurSigma?: number;
}

function grey(image: Pixels): Float32Array {
  const n = image.width * image.height;
  const out = new Float32Array(n);
  const c = image.channels;
  for (let i = 0; i < n; i++) {
    const p = i * c;
    out[i] = c === 1 ? image.data[p]! : 0.299 * image.data[p]! + 0.587 * image.data[p + 1]! + 0.114 * image.data[p + 2]!;
  }
  return out;
}

function blur(values: Float32Array, width: number, height: number, sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const sum = kernel.reduce((a, b) => a + b, 0);
  const k = kernel.map((v) => v / sum);
  const pass = (src: Float32Array, dx: number, dy: number) => {
    const out = new Float32Array(src.length);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        let acc = 0;
        for (let j = -radius; j <= radius; j++) {
          const xx = Math.min(width - 1, Math.max(0, x + j * dx));
          const yy = Math.min(height - 1, Math.max(0, y + j * dy));
          acc += k[j + radius]! * src[yy * width + xx]!;
        }
        out[y * width + x] = acc;
      }
    return out;
  };
  return pass(pass(values, 1, 0), 0, 1);
}

/** One channel, 255 on edges and 0 elsewhere, the image's size. */
export function cannyEdges(image: Pixels, options: CannyOptions = {}): Pixels {
  assertImage(image);
  const { width: w, height: h } = image;
  const low = options.low ?? 100;
  const high = options.high ?? 200;
  let g = grey(image);
  if (options.blurSigma) g = blur(g, w, h, options.blurSigma);
  const at = (x: number, y: number) => g[Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))]!;
  const gx = new Float32Array(w * h);
  const gy = new Float32Array(w * h);
  const mag = new Float32Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      gx[i] = at(x + 1, y - 1) + 2 * at(x + 1, y) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x - 1, y) - at(x - 1, y + 1);
      gy[i] = at(x - 1, y + 1) + 2 * at(x, y + 1) + at(x + 1, y + 1) - at(x - 1, y - 1) - 2 * at(x, y - 1) - at(x + 1, y - 1);
      mag[i] = Math.abs(gx[i]!) + Math.abs(gy[i]!);
    }
  const m = (x: number, y: number) => (x < 0 || y < 0 || x >= w || y >= h ? 0 : mag[y * w + x]!);
  // 0: not an edge, 1: weak candidate, 2: strong.
  const state = new Uint8Array(w * h);
  const TAN22 = Math.tan(Math.PI / 8);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const v = mag[i]!;
      if (v <= low) continue;
      const ax = Math.abs(gx[i]!);
      const ay = Math.abs(gy[i]!);
      let keep: boolean;
      if (ay <= ax * TAN22) keep = v > m(x - 1, y) && v >= m(x + 1, y);
      else if (ay >= ax / TAN22) keep = v > m(x, y - 1) && v >= m(x, y + 1);
      else {
        const s = gx[i]! * gy[i]! < 0 ? -1 : 1;
        keep = v > m(x - s, y - 1) && v >= m(x + s, y + 1);
      }
      if (keep) state[i] = v > high ? 2 : 1;
    }
  const out = new Uint8Array(w * h);
  const stack: number[] = [];
  for (let i = 0; i < state.length; i++) if (state[i] === 2) stack.push(i);
  while (stack.length) {
    const i = stack.pop()!;
    if (out[i]) continue;
    out[i] = 255;
    const x = i % w;
    const y = (i - x) / w;
    for (let dy = -1; dy <= 1; dy++)
      for (let dx = -1; dx <= 1; dx++) {
        const xx = x + dx;
        const yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        const j = yy * w + xx;
        if (state[j] && !out[j]) stack.push(j);
      }
  }
  return { width: w, height: h, channels: 1, data: out };
}
