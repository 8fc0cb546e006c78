/**
 * LCM's guidance embedding (diffusers' LatentConsistencyModelPipeline.get_guidance_scale_embedding):
 * a UNet distilled with its guidance scale w = guidance - 1 baked in takes w as a sinusoidal
 * embedding in `timestep_cond` and runs without a classifier-free guidance batch. float32 as torch
 * computes it: x = 1000 w, f_i = exp(-i ln(10000) / (half - 1)), emb = [sin(x f), cos(x f)].
 * x reaches 7000 and more, so one ulp of f_i moves a sine by 1e-3: f_i is computed with the float32
 * exp that torch's CPU kernels use (SLEEF's vectorized expf, 1-ulp accurate), not a rounded Math.exp.
 */
const f = Math.fround;

/** fused multiply-add in float32: a*b is exact in a double for float32 inputs, one rounding after. */
const fma = (a: number, b: number, c: number): number => f(a * b + c);

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const LN2_HI = f(0.693145751953125);
const LN2_LO = f(1.428606765330187045e-6);
const INV_LN2 = f(1 / Math.LN2);
const EXP_POLY = [1.98527617612853646278381e-4, 1.39304355252534151077271e-3, 8.33336077630519866943359e-3, 4.16664853692054748535156e-2, 1.66666671633720397949219e-1, 0.5].map(f);

/** exp(d) in float32 the way torch's CPU kernels compute it: range reduction by ln 2, a degree-5 polynomial. */
export function expFloat32(d: number): number {
  const q = roundHalfEven(f(d * INV_LN2));
  let s = fma(q, -LN2_HI, d);
  s = fma(q, -LN2_LO, s);
  let u = EXP_POLY[0]!;
  for (let k = 1; k < EXP_POLY.length; k++) u = fma(u, s, EXP_POLY[k]!);
  u = f(1 + fma(f(s * s), u, s));
  return f(u * 2 ** q);
}

/** One row of the embedding for guidance `guidance`, `width` values wide (the UNet's time_cond_proj_dim). */
export function guidanceEmbedding(guidance: number, width: number): Float32Array {
  const half = Math.floor(width / 2);
  const out = new Float32Array(width); // an odd width ends with one zero, as diffusers pads it
  const x = f(f(guidance - 1) * 1000);
  const step = half > 1 ? f(f(Math.log(10000)) / (half - 1)) : 0;
  for (let i = 0; i < half; i++) {
    const angle = f(x * expFloat32(f(i * -step)));
    out[i] = Math.sin(angle);
    out[half + i] = Math.cos(angle);
  }
  return out;
}

/** The embedding repeated for every row of a UNet batch. */
export function guidanceEmbeddingBatch(guidance: number, width: number, rows: number): Float32Array {
  const row = guidanceEmbedding(guidance, width);
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(row, r * width);
  return out;
}
