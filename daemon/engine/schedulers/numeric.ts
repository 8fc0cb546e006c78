/**
 * numpy / torch arithmetic as diffusers 0.27.2 uses it to build its schedules, reproduced bit for bit
 * where the reference data allowed checking: torch float32 tensors (`f` = Math.fround after every op),
 * numpy float64 (plain JS numbers).
 */

export const f = Math.fround;

/** numpy's round (half to even) on float64. */
export function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const r = Math.round(x); // half up
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** np.linspace(start, stop, num, endpoint=True) in float64. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): Float64Array {
  const out = new Float64Array(Math.max(0, num));
  if (num <= 0) return out;
  const div = endpoint ? num - 1 : num;
  const delta = stop - start;
  if (div > 0) {
    const step = delta / div;
    for (let i = 0; i < num; i++) out[i] = step === 0 ? (i / div) * delta + start : i * step + start;
  } else {
    // num == 1 with endpoint: numpy multiplies by delta (step is nan) and then adds start
    for (let i = 0; i < num; i++) out[i] = i * delta + start;
  }
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) for float64 (numpy fills start + i * ((start + step) - start)). */
export function npArange(start: number, stop: number, step: number): Float64Array {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out = new Float64Array(len);
  if (len === 0) return out;
  out[0] = start;
  if (len > 1) out[1] = start + step;
  const delta = out[1]! - start;
  for (let i = 2; i < len; i++) out[i] = start + i * delta;
  return out;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU, as the AVX2+FMA kernel computes it
 * (checked bit for bit against diffusers' alphas_cumprod): pairs of 8-lane vectors, each lane
 * `base + k*step` with one rounding, the base from `start` below the halfway point and from `end` above;
 * the remainder element by element.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(Math.max(0, steps));
  if (steps <= 0) return out;
  const s = f(start);
  const e = f(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f(f(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  // s + step*idx is exact in float64 for these magnitudes, so fround gives the fused (single) rounding.
  const at = (idx: number): number => (idx < halfway ? f(s + step * idx) : f(e - step * (steps - idx - 1)));
  const VEC = 8;
  let i = 0;
  for (; i + 2 * VEC <= steps; i += VEC) {
    const base = at(i);
    out[i] = base;
    for (let k = 1; k < VEC; k++) out[i + k] = f(base + k * step);
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}

/** np.interp(x, [0, 1, ..., fp.length - 1], fp) in float64. */
export function npInterpIndex(x: number, fp: ArrayLike<number>): number {
  const n = fp.length;
  if (Number.isNaN(x)) return x;
  if (x <= 0) return fp[0]!;
  if (x >= n - 1) return fp[n - 1]!;
  const j = Math.floor(x);
  if (j === x) return fp[j]!;
  const y0 = fp[j]!;
  const y1 = fp[j + 1]!;
  const slope = (y1 - y0) / (j + 1 - j);
  let r = slope * (x - j) + y0;
  if (Number.isNaN(r)) {
    r = slope * (x - (j + 1)) + y1;
    if (Number.isNaN(r) && y0 === y1) r = y0;
  }
  return r;
}

/** torch.cumprod on float32 (CPU accumulates in double, stores float32). */
export function cumprodF32(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  let p = 1;
  for (let i = 0; i < values.length; i++) {
    p *= values[i]!;
    out[i] = p;
  }
  return out;
}

export function assertSameLength(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${what}: length ${a.length} != ${b.length}`);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * torch.quantile(x, q) with linear interpolation over one row (float32 in, float32 out), as diffusers'
 * dynamic thresholding uses it.
 */
export function quantileF32(row: Float32Array, q: number): number {
  const sorted = Float32Array.from(row).sort();
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = f(f(q) * (n - 1));
  const lo = Math.floor(rank);
  const hi = Math.min(Math.ceil(rank), n - 1);
  const w = f(rank - lo);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  // torch.lerp: w < 0.5 ? a + w*(b-a) : b - (b-a)*(1-w)
  return w < 0.5 ? f(a + f(w * f(b - a))) : f(b - f(f(b - a) * f(1 - w)));
}

/**
 * diffusers' _threshold_sample (dynamic thresholding, Imagen): per batch item, s = quantile(|x|, ratio)
 * clamped to [1, sampleMaxValue]; x = clamp(x, -s, s) / s.
 */
export function thresholdSample(
  sample: Float32Array,
  shape: readonly number[],
  ratio: number,
  sampleMaxValue: number,
): Float32Array {
  const batch = shape[0] ?? 1;
  const per = sample.length / batch;
  const out = new Float32Array(sample.length);
  for (let b = 0; b < batch; b++) {
    const row = sample.subarray(b * per, (b + 1) * per);
    const abs = new Float32Array(per);
    for (let i = 0; i < per; i++) abs[i] = Math.abs(row[i]!);
    let s = quantileF32(abs, ratio);
    s = f(Math.min(Math.max(s, 1), sampleMaxValue));
    for (let i = 0; i < per; i++) {
      const v = Math.min(Math.max(row[i]!, -s), s);
      out[b * per + i] = f(v / s);
    }
  }
  return out;
}

export function clampInPlace(x: Float32Array, lo: number, hi: number): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = Math.min(Math.max(x[i]!, lo), hi);
  return x;
}
