/**
 * The training noise schedule every scheduler starts from (diffusers 0.27.2), as float32 tensors.
 */
import { cumprodF32, f, torchLinspaceF32 } from "./numeric";

export interface BetaScheduleConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: readonly number[] | null;
  rescale_betas_zero_snr?: boolean;
}

/** diffusers' betas_for_alpha_bar with the cosine transform (squaredcos_cap_v2), float64 then float32. */
export function betasForAlphaBar(numDiffusionTimesteps: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI / 2) ** 2;
  const out = new Float32Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
  }
  return out;
}

/** diffusers' rescale_zero_terminal_snr (arXiv 2305.08891, Algorithm 1) on float32 betas. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const alphas = new Float32Array(n);
  for (let i = 0; i < n; i++) alphas[i] = f(1 - betas[i]!);
  const cum = cumprodF32(alphas);
  const sqrtBar = new Float32Array(n);
  for (let i = 0; i < n; i++) sqrtBar[i] = Math.sqrt(cum[i]!);
  const first = sqrtBar[0]!;
  const last = sqrtBar[n - 1]!;
  const scale = f(first / f(first - last));
  for (let i = 0; i < n; i++) sqrtBar[i] = f(f(sqrtBar[i]! - last) * scale);
  const bar = new Float32Array(n);
  for (let i = 0; i < n; i++) bar[i] = f(sqrtBar[i]! * sqrtBar[i]!);
  const out = new Float32Array(n);
  out[0] = f(1 - bar[0]!);
  for (let i = 1; i < n; i++) out[i] = f(1 - f(bar[i]! / bar[i - 1]!));
  return out;
}

/** betas as the scheduler's __init__ builds them (float32). */
export function makeBetas(config: BetaScheduleConfig, className: string): Float32Array {
  const n = config.num_train_timesteps;
  let betas: Float32Array;
  if (config.trained_betas != null) {
    betas = Float32Array.from(config.trained_betas);
  } else if (config.beta_schedule === "linear") {
    betas = torchLinspaceF32(config.beta_start, config.beta_end, n);
  } else if (config.beta_schedule === "scaled_linear") {
    // this schedule is very specific to the latent diffusion model.
    const lin = torchLinspaceF32(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n);
    betas = new Float32Array(n);
    for (let i = 0; i < n; i++) betas[i] = f(lin[i]! * lin[i]!);
  } else if (config.beta_schedule === "squaredcos_cap_v2") {
    betas = betasForAlphaBar(n);
  } else {
    throw new Error(`${config.beta_schedule} is not implemented for ${className}`);
  }
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

export interface NoiseSchedule {
  betas: Float32Array;
  alphas: Float32Array;
  alphasCumprod: Float32Array;
}

export function makeNoiseSchedule(config: BetaScheduleConfig, className: string): NoiseSchedule {
  const betas = makeBetas(config, className);
  const alphas = new Float32Array(betas.length);
  for (let i = 0; i < betas.length; i++) alphas[i] = f(1 - betas[i]!);
  const alphasCumprod = cumprodF32(alphas);
  return { betas, alphas, alphasCumprod };
}

/** sqrt((1 - alphas_cumprod) / alphas_cumprod) in float32, one per training timestep. */
export function sigmasFromAlphasCumprod(alphasCumprod: Float32Array): Float32Array {
  const out = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < out.length; i++) {
    const a = alphasCumprod[i]!;
    out[i] = Math.sqrt(f(f(1 - a) / a));
  }
  return out;
}
