/**
 * EulerAncestralDiscreteScheduler (diffusers 0.27.2, scheduling_euler_ancestral_discrete.py): an Euler
 * step down to sigma_down, then fresh noise of size sigma_up (one draw per step).
 */
import { makeNoiseSchedule, sigmasFromAlphasCumprod } from "./betas";
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { f, npInterpIndex } from "./numeric";
import { eulerTimesteps, eulerDenoised, scaleBySigma } from "./sigmas";
import { indexForTimestep, StepIndex } from "./step-index";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./types";

export const EULER_ANCESTRAL_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as readonly number[] | null,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type EulerAncestralConfig = typeof EULER_ANCESTRAL_DEFAULTS;

const CLASS = "EulerAncestralDiscreteScheduler";

export class EulerAncestralScheduler implements Scheduler {
  readonly name = "euler_a" as const;
  readonly order = 1;
  readonly config: EulerAncestralConfig;
  readonly alphasCumprod: Float32Array;
  timesteps: Float64Array;
  sigmas: Float32Array;
  numInferenceSteps: number | null = null;
  private readonly index: StepIndex;
  private readonly predictionType: "epsilon" | "v_prediction";

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    this.config = resolveConfig(CLASS, EULER_ANCESTRAL_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    const cfg = this.config;
    checkChoice(CLASS, "timestep_spacing", cfg.timestep_spacing, ["leading", "linspace", "trailing"]);
    if (cfg.prediction_type === "sample") throw new Error(`${CLASS}: prediction_type not implemented yet: sample`);
    this.predictionType = checkChoice(CLASS, "prediction_type", cfg.prediction_type, ["epsilon", "v_prediction"]);
    const ac = makeNoiseSchedule(cfg, CLASS).alphasCumprod;
    // Close to 0 without being 0 so the first sigma is not inf (FP16 smallest positive subnormal).
    if (cfg.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
    this.alphasCumprod = ac;
    this.index = new StepIndex((t) => indexForTimestep(this.timesteps, t, CLASS));
    const n = cfg.num_train_timesteps;
    this.timesteps = new Float64Array(n);
    for (let i = 0; i < n; i++) this.timesteps[i] = n - 1 - i;
    this.sigmas = new Float32Array(n + 1);
    this.sigmas.set(sigmasFromAlphasCumprod(ac).reverse());
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
    const timesteps = eulerTimesteps(cfg.timestep_spacing, cfg.num_train_timesteps, steps, cfg.steps_offset);
    const trainSigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    this.sigmas = new Float32Array(steps + 1);
    for (let i = 0; i < steps; i++) this.sigmas[i] = npInterpIndex(timesteps[i]!, trainSigmas);
    this.timesteps = timesteps;
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
    // 1. predicted original sample (x_0)
    const x0 = eulerDenoised(this.predictionType, sample, modelOutput, sigma, sigma);
    const from = sigma;
    const to = this.sigmas[i + 1]!;
    const from2 = f(from * from);
    const to2 = f(to * to);
    const sigmaUp = f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2)));
    const sigmaDown = f(Math.sqrt(f(to2 - f(sigmaUp * sigmaUp))));
    // 2. ODE derivative, Euler step to sigma_down
    const dt = f(sigmaDown - sigma);
    const out = new Float32Array(len);
    for (let k = 0; k < len; k++) {
      const d = f(f(sample[k]! - x0[k]!) / sigma);
      out[k] = f(sample[k]! + f(d * dt));
    }
    // 3. fresh noise
    const z = noise.randn(shape);
    if (z.length !== len) throw new RangeError(`${CLASS}: noise has ${z.length} values, expected ${len}`);
    for (let k = 0; k < len; k++) out[k] = f(out[k]! + f(z[k]! * sigmaUp));
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
