/**
 * PNDMScheduler (diffusers 0.27.2, scheduling_pndm.py). Stable Diffusion 1.x's default: with
 * skip_prk_steps = true it is PLMS (linear multistep, 4th order), whose first step is taken twice
 * (the second timestep is repeated, n + 1 UNet calls for n > 1 steps). The Runge-Kutta warm-up
 * (skip_prk_steps = false) is ported too.
 */
import { addNoiseDdpm, signalAndNoiseScales } from "./alpha-space";
import { makeNoiseSchedule } from "./betas";
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { f, npArange, npLinspace, roundHalfEven } from "./numeric";
import { noiseFromPrediction } from "./prediction";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./types";

export const PNDM_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as readonly number[] | null,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
  steps_offset: 0,
};
export type PndmConfig = typeof PNDM_DEFAULTS;

const CLASS = "PNDMScheduler";
const PNDM_ORDER = 4;

export class PndmScheduler implements Scheduler {
  readonly name = "pndm" as const;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly config: PndmConfig;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;
  timesteps: Float64Array;
  numInferenceSteps: number | null = null;
  /** Number of PRK timesteps at the start of `timesteps` (0 with skip_prk_steps). */
  prkCount = 0;

  private readonly predictionType: "epsilon" | "v_prediction";
  private ets: Float32Array[] = [];
  private counter = 0;
  private curSample: Float32Array | null = null;
  private curModelOutput: Float32Array | null = null;

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    this.config = resolveConfig(CLASS, PNDM_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    checkChoice(CLASS, "timestep_spacing", this.config.timestep_spacing, ["leading", "linspace", "trailing"]);
    this.predictionType = checkChoice(CLASS, "prediction_type", this.config.prediction_type, ["epsilon", "v_prediction"]);
    const schedule = makeNoiseSchedule(this.config, CLASS);
    this.alphasCumprod = schedule.alphasCumprod;
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;
    const n = this.config.num_train_timesteps;
    this.timesteps = new Float64Array(n);
    for (let i = 0; i < n; i++) this.timesteps[i] = n - 1 - i;
  }

  setTimesteps(steps: number): void {
    if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`${CLASS}: invalid number of steps ${steps}`);
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    this.numInferenceSteps = steps;
    // ascending, like diffusers' self._timesteps
    let base: number[];
    if (cfg.timestep_spacing === "linspace") {
      base = Array.from(npLinspace(0, T - 1, steps), roundHalfEven);
    } else if (cfg.timestep_spacing === "leading") {
      const ratio = Math.floor(T / steps);
      base = Array.from({ length: steps }, (_, i) => i * ratio + cfg.steps_offset);
    } else {
      const ratio = T / steps;
      base = Array.from(npArange(T, 0, -ratio), (v) => roundHalfEven(v) - 1).reverse();
    }

    let prk: number[];
    let plms: number[];
    if (cfg.skip_prk_steps) {
      // for some models like stable diffusion the prk steps can/should be skipped to produce better results
      prk = [];
      plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const last = base.slice(-PNDM_ORDER);
      const half = Math.floor(Math.floor(T / steps) / 2);
      const rep: number[] = [];
      for (const t of last) rep.push(t, t + half); // repeat(2) + tile([0, half])
      const dropLast = rep.slice(0, -1);
      const doubled: number[] = [];
      for (const t of dropLast) doubled.push(t, t);
      prk = doubled.slice(1, -1).reverse();
      plms = base.slice(0, -3).reverse();
    }
    this.prkCount = prk.length;
    this.timesteps = Float64Array.from([...prk, ...plms]);
    this.ets = [];
    this.counter = 0;
    this.curSample = null;
    this.curModelOutput = null;
  }

  /** PNDM has no begin index in diffusers 0.27 (the pipelines skip it). */
  setBeginIndex(_index: number): void {}

  scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    _shape: readonly number[],
    _noise: NoiseSource,
  ): Float32Array {
    if (this.numInferenceSteps === null) {
      throw new Error("Number of inference steps is 'None', you need to run 'set_timesteps' after creating the scheduler");
    }
    if (this.counter < this.prkCount && !this.config.skip_prk_steps) return this.stepPrk(modelOutput, timestep, sample);
    return this.stepPlms(modelOutput, timestep, sample);
  }

  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const T = this.config.num_train_timesteps;
    const N = this.numInferenceSteps!;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(T / N) / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.timesteps[Math.floor(this.counter / 4) * 4]!;
    const len = modelOutput.length;
    let output = modelOutput;
    const acc = (coef: number): void => {
      const c = f(coef);
      const cur = this.curModelOutput;
      const next = new Float32Array(len);
      for (let i = 0; i < len; i++) next[i] = cur ? f(cur[i]! + f(c * modelOutput[i]!)) : f(c * modelOutput[i]!);
      this.curModelOutput = next;
    };
    const phase = this.counter % 4;
    if (phase === 0) {
      acc(1 / 6);
      this.ets.push(modelOutput);
      this.curSample = sample;
    } else if (phase === 1 || phase === 2) {
      acc(1 / 3);
    } else {
      const c = f(1 / 6);
      const cur = this.curModelOutput;
      output = new Float32Array(len);
      for (let i = 0; i < len; i++) output[i] = cur ? f(cur[i]! + f(c * modelOutput[i]!)) : f(c * modelOutput[i]!);
      this.curModelOutput = null;
    }
    const curSample = this.curSample ?? sample;
    const prev = this.getPrevSample(curSample, t, prevTimestep, output);
    this.counter += 1;
    return prev;
  }

  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): Float32Array {
    const T = this.config.num_train_timesteps;
    const N = this.numInferenceSteps!;
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new Error(
        `${CLASS} can only be run AFTER scheduler has been run in 'prk' mode for at least 12 iterations`,
      );
    }
    let t = timestep;
    let prevTimestep = timestep - Math.floor(T / N);
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      prevTimestep = timestep;
      t = timestep + Math.floor(T / N);
    }

    const ets = this.ets;
    const len = modelOutput.length;
    let output: Float32Array;
    let x = sample;
    if (ets.length === 1 && this.counter === 0) {
      output = modelOutput;
      this.curSample = sample;
    } else if (ets.length === 1 && this.counter === 1) {
      const e1 = ets[0]!;
      output = new Float32Array(len);
      for (let i = 0; i < len; i++) output[i] = f(f(modelOutput[i]! + e1[i]!) / 2);
      x = this.curSample ?? sample;
      this.curSample = null;
    } else if (ets.length === 2) {
      const e1 = ets[1]!;
      const e2 = ets[0]!;
      output = new Float32Array(len);
      for (let i = 0; i < len; i++) output[i] = f(f(f(3 * e1[i]!) - e2[i]!) / 2);
    } else if (ets.length === 3) {
      const e1 = ets[2]!;
      const e2 = ets[1]!;
      const e3 = ets[0]!;
      output = new Float32Array(len);
      for (let i = 0; i < len; i++) {
        output[i] = f(f(f(f(23 * e1[i]!) - f(16 * e2[i]!)) + f(5 * e3[i]!)) / 12);
      }
    } else {
      const e1 = ets[3]!;
      const e2 = ets[2]!;
      const e3 = ets[1]!;
      const e4 = ets[0]!;
      const c = f(1 / 24);
      output = new Float32Array(len);
      for (let i = 0; i < len; i++) {
        const s = f(f(f(f(55 * e1[i]!) - f(59 * e2[i]!)) + f(37 * e3[i]!)) - f(9 * e4[i]!));
        output[i] = f(c * s);
      }
    }
    const prev = this.getPrevSample(x, t, prevTimestep, output);
    this.counter += 1;
    return prev;
  }

  /** See formula (9) of the PNDM paper (arXiv 2202.09778). */
  private getPrevSample(sample: Float32Array, timestep: number, prevTimestep: number, modelOutput: Float32Array): Float32Array {
    const ac = this.alphasCumprod;
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= ac.length) {
      throw new RangeError(`${CLASS}: timestep ${timestep} is outside the training schedule`);
    }
    const at = ac[timestep]!;
    if (prevTimestep >= ac.length) throw new RangeError(`${CLASS}: timestep ${prevTimestep} is outside the training schedule`);
    const ap = prevTimestep >= 0 ? ac[prevTimestep]! : this.finalAlphaCumprod;
    const bt = f(1 - at);
    const bp = f(1 - ap);
    const len = sample.length;
    const [alphaT, sigmaT] = signalAndNoiseScales(at);
    const eps = noiseFromPrediction(this.predictionType, sample, modelOutput, { alphaT, sigmaT });
    const sampleCoeff = f(Math.sqrt(f(ap / at)));
    const denom = f(f(at * f(Math.sqrt(bp))) + f(Math.sqrt(f(f(at * bt) * ap))));
    const diff = f(ap - at);
    const out = new Float32Array(len);
    for (let i = 0; i < len; i++) out[i] = f(f(sampleCoeff * sample[i]!) - f(f(diff * eps[i]!) / denom));
    return out;
  }

  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array {
    return addNoiseDdpm(this.alphasCumprod, original, noise, timestep, CLASS);
  }
}
