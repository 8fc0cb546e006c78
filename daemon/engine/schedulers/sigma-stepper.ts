/**
 * What the sigma schedulers (Euler, Euler ancestral, DPM-Solver++; diffusers 0.27.2) share: the
 * training schedule and its sigmas, the schedule setTimesteps builds, the step index, and the
 * k-diffusion forms of init_noise_sigma, scale_model_input and add_noise. DPM-Solver++ is a VP
 * scheduler and overrides those three with its own forms.
 */
import { makeNoiseSchedule, sigmasFromAlphasCumprod, type BetaScheduleConfig } from "./betas";
import { f } from "./numeric";
import { addNoiseAtSigma, scaleBySigma } from "./sigmas";
import { StepIndex } from "./step-index";
import type { Scheduler, SchedulerName } from "./types";

/** The config keys the shared part reads. */
export interface SigmaStepperConfig extends BetaScheduleConfig {
  timestep_spacing: string;
  rescale_betas_zero_snr: boolean;
}

/** What setTimesteps builds: the UNet's timesteps and their sigmas, plus the end sigma. */
export interface SigmaSchedule {
  timesteps: Float64Array;
  sigmas: Float32Array;
}

/** Where a timestep stands in the schedule, for the step index's first value and add_noise. */
export type TimestepLookup = (schedule: Float64Array, timestep: number, className: string) => number;

/** Everything but the step: each scheduler adds its schedule (scheduleFor) and its step(). */
export abstract class SigmaStepper<Config extends SigmaStepperConfig> implements Omit<Scheduler, "step"> {
  abstract readonly name: SchedulerName;
  readonly order = 1;
  readonly alphasCumprod: Float32Array;
  timesteps: Float64Array;
  /** Descending, one more than timesteps: the schedule's end (DPM-Solver++ keeps its own until setTimesteps). */
  sigmas: Float32Array;
  numInferenceSteps: number | null = null;
  protected readonly index: StepIndex;
  /** sqrt((1 - alpha_bar) / alpha_bar) of every training timestep, ascending in t (float32). */
  protected readonly trainingSigmas: Float32Array;

  protected constructor(
    protected readonly className: string,
    readonly config: Config,
    lookup: TimestepLookup,
  ) {
    const ac = makeNoiseSchedule(config, className).alphasCumprod;
    // Close to 0 without being 0 so the first sigma is not inf (FP16 smallest positive subnormal).
    if (config.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
    this.alphasCumprod = ac;
    this.index = new StepIndex((t) => lookup(this.timesteps, t, className));
    // the training schedule, until setTimesteps
    const n = config.num_train_timesteps;
    this.timesteps = new Float64Array(n);
    for (let i = 0; i < n; i++) this.timesteps[i] = n - 1 - i;
    this.trainingSigmas = sigmasFromAlphasCumprod(ac);
    this.sigmas = new Float32Array(n + 1);
    this.sigmas.set(Float32Array.from(this.trainingSigmas).reverse());
  }

  /** The largest sigma, or sqrt(sigma_max^2 + 1) with "leading" spacing. */
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

  /** Builds the schedule for `steps` inference steps and restarts the step index. */
  setTimesteps(steps: number): void {
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`${this.className}: invalid number of steps ${steps}`);
    this.numInferenceSteps = steps;
    const { timesteps, sigmas } = this.scheduleFor(steps);
    this.timesteps = timesteps;
    this.sigmas = sigmas;
    this.index.reset();
  }

  /** The timesteps of `steps` inference steps and their sigmas (one more, the schedule's end). */
  protected abstract scheduleFor(steps: number): SigmaSchedule;

  setBeginIndex(index: number): void {
    this.index.setBegin(index);
  }

  /** sample / sqrt(sigma^2 + 1) at the current step (which starts the step index). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    return scaleBySigma(sample, this.sigmas[this.index.current(timestep)]!);
  }

  /** Noise at the sigma of the step add_noise picks (img2img's start, inpainting's blend after a step). */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    if (original.length !== noise.length) throw new RangeError(`${this.className}.addNoise: sample and noise sizes differ`);
    return this.noiseAtSigma(original, noise, this.sigmas[this.index.forAddNoise(timestep)]!);
  }

  /** The k-diffusion form x + sigma * noise. */
  protected noiseAtSigma(original: Float32Array, noise: Float32Array, sigma: number): Float32Array {
    return addNoiseAtSigma(original, noise, sigma);
  }

  /** The step index of this step (set on the first), refused once the schedule is used up. */
  protected currentStep(timestep: number): number {
    const i = this.index.current(timestep);
    if (i + 1 >= this.sigmas.length) throw new RangeError(`${this.className}: stepped past the end of the schedule`);
    return i;
  }
}
