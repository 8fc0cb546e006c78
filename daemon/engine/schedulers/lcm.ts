/**
 * LCMScheduler (diffusers 0.27.2, scheduling_lcm.py): consistency-model steps on a subset of the
 * distillation schedule; fresh noise on every step but the last. Ignores timestep_spacing/steps_offset.
 */
import { addNoiseDdpm, mixSignalAndNoise, signalAndNoiseScales } from "./alpha-space";
import { makeNoiseSchedule } from "./betas";
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { clampInPlace, f, npLinspace, thresholdSample } from "./numeric";
import { originalFromPrediction, type PredictionType } from "./prediction";
import { indexForTimestep, StepIndex } from "./step-index";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./types";

export const LCM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null as readonly number[] | null,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};
export type LcmConfig = typeof LCM_DEFAULTS;

const CLASS = "LCMScheduler";
const SIGMA_DATA = 0.5;

export class LcmScheduler implements Scheduler {
  readonly name = "lcm" as const;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: LcmConfig;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  timesteps: Float64Array;
  numInferenceSteps: number | null = null;
  private readonly index: StepIndex;
  private readonly predictionType: PredictionType;

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    this.config = resolveConfig(CLASS, LCM_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    const cfg = this.config;
    this.predictionType = checkChoice(CLASS, "prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"]);
    this.alphasCumprod = makeNoiseSchedule(cfg, CLASS).alphasCumprod;
    this.finalAlphaCumprod = cfg.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
    this.index = new StepIndex((t) => indexForTimestep(this.timesteps, t, CLASS));
    const n = cfg.num_train_timesteps;
    this.timesteps = new Float64Array(n);
    for (let i = 0; i < n; i++) this.timesteps[i] = n - 1 - i;
  }

  get stepIndex(): number | null {
    return this.index.stepIndex;
  }

  get beginIndex(): number | null {
    return this.index.beginIndex;
  }

  /**
   * `strength` is LCM's own img2img argument (its LCM img2img pipeline); the regular SD pipelines leave
   * it at 1 and truncate the schedule with the begin index instead.
   */
  setTimesteps(steps: number, strength = 1.0): void {
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`${CLASS}: invalid number of steps ${steps}`);
    const originalSteps = cfg.original_inference_steps;
    if (originalSteps > T) {
      throw new RangeError(
        `${CLASS}: original_steps ${originalSteps} cannot be larger than num_train_timesteps ${T}`,
      );
    }
    if (steps > T) throw new RangeError(`${CLASS}: num_inference_steps ${steps} cannot be larger than num_train_timesteps ${T}`);
    // The skipping step parameter k from the paper; the distillation schedule is linearly spaced.
    const k = Math.floor(T / originalSteps);
    const count = Math.trunc(originalSteps * strength);
    const origin: number[] = [];
    for (let i = 1; i <= count; i++) origin.push(i * k - 1);
    const skippingStep = Math.floor(origin.length / steps);
    if (skippingStep < 1) {
      throw new RangeError(
        `${CLASS}: the combination of original_steps x strength (${originalSteps} x ${strength}) is smaller than num_inference_steps ${steps}`,
      );
    }
    if (steps > originalSteps) {
      throw new RangeError(`${CLASS}: num_inference_steps ${steps} cannot be larger than original_inference_steps ${originalSteps}`);
    }
    origin.reverse();
    const idx = npLinspace(0, origin.length, steps, false);
    this.timesteps = Float64Array.from(idx, (v) => origin[Math.floor(v)]!);
    this.numInferenceSteps = steps;
    this.index.reset();
  }

  setBeginIndex(index: number): void {
    this.index.setBegin(index);
  }

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** c_skip, c_out of the consistency-model boundary condition (float32; timestep as torch int64 * float). */
  boundaryScalings(timestep: number): [number, number] {
    const scaled = f(f(timestep) * f(this.config.timestep_scaling));
    const s2 = f(f(scaled * scaled) + f(SIGMA_DATA * SIGMA_DATA));
    const cSkip = f(f(SIGMA_DATA * SIGMA_DATA) / s2);
    const cOut = f(scaled / f(Math.sqrt(s2)));
    return [cSkip, cOut];
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
    const i = this.index.current(timestep);
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= ac.length) {
      throw new RangeError(`${CLASS}: timestep ${timestep} is outside the training schedule`);
    }
    // 1. previous step value
    const prevIndex = i + 1;
    const prevTimestep = prevIndex < this.timesteps.length ? this.timesteps[prevIndex]! : timestep;
    // 2. alphas, betas
    const at = ac[timestep]!;
    const ap = prevTimestep >= 0 ? ac[prevTimestep]! : this.finalAlphaCumprod;
    // 3. boundary-condition scalings
    const [cSkip, cOut] = this.boundaryScalings(timestep);
    // 4. predicted original sample
    const len = sample.length;
    const [alphaT, sigmaT] = signalAndNoiseScales(at);
    let x0 = originalFromPrediction(this.predictionType, sample, modelOutput, { alphaT, sigmaT });
    // 5. clip or threshold
    if (cfg.thresholding) {
      x0 = thresholdSample(x0, shape, cfg.dynamic_thresholding_ratio, cfg.sample_max_value);
    } else if (cfg.clip_sample) {
      clampInPlace(x0, -cfg.clip_sample_range, cfg.clip_sample_range);
    }
    // 6. denoise with the boundary condition
    let out: Float32Array = new Float32Array(len);
    for (let k = 0; k < len; k++) out[k] = f(f(cOut * x0[k]!) + f(cSkip * sample[k]!));
    // 7. fresh noise except on the final step (so one-step sampling draws none)
    if (i !== this.numInferenceSteps - 1) {
      const z = noise.randn(shape);
      if (z.length !== len) throw new RangeError(`${CLASS}: noise has ${z.length} values, expected ${len}`);
      const [sap, sbp] = signalAndNoiseScales(ap);
      out = mixSignalAndNoise(out, z, sap, sbp);
    }
    this.index.advance();
    return out;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseDdpm(this.alphasCumprod, original, noise, timestep, CLASS);
  }
}
