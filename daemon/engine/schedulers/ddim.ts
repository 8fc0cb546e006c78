/**
 * DDIMScheduler (diffusers 0.27.2, scheduling_ddim.py). eta = 0 is deterministic; eta > 0 draws one
 * noise tensor per step.
 */
import { addNoiseDdpm, mixSignalAndNoise, signalAndNoiseScales } from "./alpha-space";
import { makeNoiseSchedule } from "./betas";
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { clampInPlace, f, npArange, npLinspace, roundHalfEven, thresholdSample } from "./numeric";
import { noiseFromPrediction, originalFromPrediction, type PredictionType } from "./prediction";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./types";

export const DDIM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as readonly number[] | null,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  rescale_betas_zero_snr: false,
};
export type DdimConfig = typeof DDIM_DEFAULTS;

const CLASS = "DDIMScheduler";

export class DdimScheduler implements Scheduler {
  readonly name = "ddim" as const;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: DdimConfig;
  readonly eta: number;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  timesteps: Float64Array;
  numInferenceSteps: number | null = null;
  private readonly predictionType: PredictionType;

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    this.config = resolveConfig(CLASS, DDIM_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    checkChoice(CLASS, "timestep_spacing", this.config.timestep_spacing, ["leading", "linspace", "trailing"]);
    this.predictionType = checkChoice(CLASS, "prediction_type", this.config.prediction_type, [
      "epsilon",
      "v_prediction",
      "sample",
    ]);
    this.eta = options.eta ?? 0;
    if (!(this.eta >= 0)) throw new RangeError(`${CLASS}: eta must be >= 0, got ${this.eta}`);
    const schedule = makeNoiseSchedule(this.config, CLASS);
    this.alphasCumprod = schedule.alphasCumprod;
    // At every step we look into the previous alphas_cumprod; for the final step there is none, so
    // set_alpha_to_one picks 1 or the first alphas_cumprod.
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
    const n = this.config.num_train_timesteps;
    this.timesteps = new Float64Array(n);
    for (let i = 0; i < n; i++) this.timesteps[i] = n - 1 - i;
  }

  setTimesteps(steps: number): void {
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`${CLASS}: invalid number of steps ${steps}`);
    if (steps > T) {
      throw new RangeError(`${CLASS}: num_inference_steps ${steps} cannot be larger than num_train_timesteps ${T}`);
    }
    this.numInferenceSteps = steps;
    let ts: number[];
    if (cfg.timestep_spacing === "linspace") {
      ts = Array.from(npLinspace(0, T - 1, steps), roundHalfEven).reverse();
    } else if (cfg.timestep_spacing === "leading") {
      const ratio = Math.floor(T / steps);
      ts = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + cfg.steps_offset);
    } else {
      const ratio = T / steps;
      ts = Array.from(npArange(T, 0, -ratio), (v) => roundHalfEven(v) - 1);
    }
    this.timesteps = Float64Array.from(ts);
  }

  /** DDIM has no begin index in diffusers 0.27 (the pipelines skip it). */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    shape: readonly number[],
    noise: NoiseSource,
  ): Float32Array {
    if (this.numInferenceSteps === null) {
      throw new Error("Number of inference steps is 'None', you need to run 'set_timesteps' after creating the scheduler");
    }
    const cfg = this.config;
    const ac = this.alphasCumprod;
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= ac.length) {
      throw new RangeError(`${CLASS}: timestep ${timestep} is outside the training schedule`);
    }
    // 1. previous step (= t - 1)
    const prevTimestep = timestep - Math.floor(cfg.num_train_timesteps / this.numInferenceSteps);
    // 2. alphas, betas
    const at = ac[timestep]!;
    const ap = prevTimestep >= 0 ? ac[prevTimestep]! : this.finalAlphaCumprod;
    const bt = f(1 - at);
    const [alphaT, sigmaT] = signalAndNoiseScales(at);
    const len = sample.length;
    // 3. predicted original sample and epsilon
    let x0 = originalFromPrediction(this.predictionType, sample, modelOutput, { alphaT, sigmaT });
    const eps = noiseFromPrediction(this.predictionType, sample, modelOutput, { alphaT, sigmaT });
    // 4. clip or threshold x0
    if (cfg.thresholding) {
      x0 = thresholdSample(x0, shape, cfg.dynamic_thresholding_ratio, cfg.sample_max_value);
    } else if (cfg.clip_sample) {
      clampInPlace(x0, -cfg.clip_sample_range, cfg.clip_sample_range);
    }
    // 5. variance sigma_t(eta), formula (16)
    const bp = f(1 - ap);
    const variance = f(f(bp / bt) * f(1 - f(at / ap)));
    const std = f(f(this.eta) * f(Math.sqrt(variance)));
    // 6. direction pointing to x_t, formula (12)
    const dirCoef = f(Math.sqrt(f(f(1 - ap) - f(std * std))));
    const out = mixSignalAndNoise(x0, eps, f(Math.sqrt(ap)), dirCoef);
    if (this.eta > 0) {
      const z = noise.randn(shape);
      if (z.length !== len) throw new RangeError(`${CLASS}: noise has ${z.length} values, expected ${len}`);
      for (let i = 0; i < len; i++) out[i] = f(out[i]! + f(std * z[i]!));
    }
    return out;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseDdpm(this.alphasCumprod, original, noise, timestep, CLASS);
  }
}
