/**
 * EulerDiscreteScheduler (diffusers 0.27.2, scheduling_euler_discrete.py): Karras et al. Algorithm 2
 * with s_churn = 0 (the pipelines' values). It still draws one noise tensor per step, which the
 * pipeline's generator feels.
 */
import { makeNoiseSchedule, sigmasFromAlphasCumprod } from "./betas";
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { f, npInterpIndex, torchLinspaceF32 } from "./numeric";
import { eulerTimesteps, karrasSigmas, logF32, sigmaToT, eulerDenoised, scaleBySigma } from "./sigmas";
import { indexForTimestep, StepIndex } from "./step-index";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./types";

export const EULER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as readonly number[] | null,
  prediction_type: "epsilon",
  interpolation_type: "linear",
  use_karras_sigmas: false as boolean | null,
  sigma_min: null as number | null,
  sigma_max: null as number | null,
  timestep_spacing: "linspace",
  timestep_type: "discrete",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type EulerConfig = typeof EULER_DEFAULTS;

const CLASS = "EulerDiscreteScheduler";

/** The Euler sampler's knobs (diffusers' step() arguments); the pipelines use these defaults. */
export interface EulerChurn {
  sChurn: number;
  sTmin: number;
  sTmax: number;
  sNoise: number;
}

export class EulerScheduler implements Scheduler {
  readonly name = "euler" as const;
  readonly order = 1;
  readonly config: EulerConfig;
  readonly alphasCumprod: Float32Array;
  timesteps: Float64Array;
  sigmas: Float32Array;
  numInferenceSteps: number | null = null;
  churn: EulerChurn = { sChurn: 0, sTmin: 0, sTmax: Infinity, sNoise: 1 };
  private readonly index: StepIndex;
  private readonly predictionType: "epsilon" | "v_prediction" | "sample" | "original_sample";

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    this.config = resolveConfig(CLASS, EULER_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    const cfg = this.config;
    checkChoice(CLASS, "timestep_spacing", cfg.timestep_spacing, ["leading", "linspace", "trailing"]);
    checkChoice(CLASS, "interpolation_type", cfg.interpolation_type, ["linear", "log_linear"]);
    checkChoice(CLASS, "timestep_type", cfg.timestep_type, ["discrete", "continuous"]);
    this.predictionType = checkChoice(CLASS, "prediction_type", cfg.prediction_type, [
      "epsilon",
      "v_prediction",
      "sample",
      "original_sample",
    ]);
    const ac = makeNoiseSchedule(cfg, CLASS).alphasCumprod;
    // Close to 0 without being 0 so the first sigma is not inf (FP16 smallest positive subnormal).
    if (cfg.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
    this.alphasCumprod = ac;
    this.index = new StepIndex((t) => indexForTimestep(this.timesteps, t, CLASS));
    // the training schedule, until setTimesteps
    const sig = sigmasFromAlphasCumprod(ac).reverse();
    const n = cfg.num_train_timesteps;
    this.timesteps = new Float64Array(n);
    for (let i = 0; i < n; i++) this.timesteps[i] = f(n - 1 - i);
    if (cfg.timestep_type === "continuous" && this.predictionType === "v_prediction") {
      for (let i = 0; i < n; i++) this.timesteps[i] = f(0.25 * f(Math.log(sig[i]!)));
    }
    this.sigmas = new Float32Array(n + 1);
    this.sigmas.set(sig);
  }

  get initNoiseSigma(): number {
    let max = 0;
    for (const s of this.sigmas) if (s > max) max = s;
    if (this.config.timestep_spacing === "linspace" || this.config.timestep_spacing === "trailing") return max;
    return f(Math.sqrt(f(f(max * max) + 1)));
  }

  get stepIndex(): number | null {
    return this.index.stepIndex;
  }

  get beginIndex(): number | null {
    return this.index.beginIndex;
  }

  setTimesteps(steps: number): void {
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`${CLASS}: invalid number of steps ${steps}`);
    const cfg = this.config;
    this.numInferenceSteps = steps;
    let timesteps = eulerTimesteps(cfg.timestep_spacing, cfg.num_train_timesteps, steps, cfg.steps_offset);
    const trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = logF32(trainSigmas);

    let sigmas: ArrayLike<number>;
    if (cfg.interpolation_type === "linear") {
      sigmas = Float64Array.from(timesteps, (t) => npInterpIndex(t, trainSigmas));
    } else {
      const a = f(Math.log(trainSigmas[trainSigmas.length - 1]!));
      const b = f(Math.log(trainSigmas[0]!));
      const lin = torchLinspaceF32(a, b, steps + 1);
      sigmas = Float32Array.from(lin, (v) => Math.exp(v));
    }

    if (cfg.use_karras_sigmas) {
      const sigmaMin = cfg.sigma_min ?? sigmas[sigmas.length - 1]!;
      const sigmaMax = cfg.sigma_max ?? sigmas[0]!;
      const k = karrasSigmas(sigmaMin, sigmaMax, steps);
      sigmas = k;
      timesteps = Float64Array.from(k, (s) => sigmaToT(s, logSigmas));
    }

    const sig32 = Float32Array.from(sigmas);
    if (cfg.timestep_type === "continuous" && this.predictionType === "v_prediction") {
      this.timesteps = Float64Array.from(sig32, (s) => f(0.25 * f(Math.log(s))));
    } else {
      this.timesteps = Float64Array.from(timesteps, f);
    }
    this.sigmas = new Float32Array(sig32.length + 1);
    this.sigmas.set(sig32);
    this.index.reset();
  }

  setBeginIndex(index: number): void {
    this.index.setBegin(index);
  }

  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.index.current(timestep)]!);
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    shape: readonly number[],
    noise: NoiseSource,
  ): Float32Array {
    const i = this.index.current(timestep);
    if (i + 1 >= this.sigmas.length) throw new RangeError(`${CLASS}: stepped past the end of the schedule`);
    const len = sample.length;
    const sigma = this.sigmas[i]!;
    const { sChurn, sTmin, sTmax, sNoise } = this.churn;
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const z = noise.randn(shape);
    if (z.length !== len) throw new RangeError(`${CLASS}: noise has ${z.length} values, expected ${len}`);
    const sigmaHat = f(sigma * f(gamma + 1));
    let x = sample;
    if (gamma > 0) {
      const c = f(Math.sqrt(f(f(sigmaHat * sigmaHat) - f(sigma * sigma))));
      const sn = f(sNoise);
      x = new Float32Array(len);
      for (let k = 0; k < len; k++) x[k] = f(sample[k]! + f(f(z[k]! * sn) * c));
    }
    // 1. predicted original sample (x_0)
    const x0 = eulerDenoised(this.predictionType, x, modelOutput, sigmaHat, sigma);
    // 2. ODE derivative, 3. Euler step
    const dt = f(this.sigmas[i + 1]! - sigmaHat);
    const out = new Float32Array(len);
    for (let k = 0; k < len; k++) {
      const d = f(f(x[k]! - x0[k]!) / sigmaHat);
      out[k] = f(x[k]! + f(d * dt));
    }
    this.index.advance();
    return out;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    if (original.length !== noise.length) throw new RangeError(`${CLASS}.addNoise: sample and noise sizes differ`);
    const sigma = this.sigmas[this.index.forAddNoise(timestep)]!;
    const out = new Float32Array(original.length);
    for (let k = 0; k < out.length; k++) out[k] = f(original[k]! + f(noise[k]! * sigma));
    return out;
  }
}
