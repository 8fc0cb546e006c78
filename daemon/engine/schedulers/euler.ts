/**
 * EulerDiscreteScheduler (diffusers 0.27.2, scheduling_euler_discrete.py): Karras et al. Algorithm 2
 * with s_churn = 0 (the pipelines' values). It still draws one noise tensor per step, which the
 * pipeline's generator feels.
 */
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { f, npInterpIndex, torchLinspaceF32 } from "./numeric";
import { originalFromPrediction } from "./prediction";
import { SigmaStepper, type SigmaSchedule } from "./sigma-stepper";
import { eulerTimesteps, karrasSigmas, logF32, sigmaToT } from "./sigmas";
import { indexForTimestep } from "./step-index";
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

export class EulerScheduler extends SigmaStepper<EulerConfig> implements Scheduler {
  readonly name = "euler" as const;
  churn: EulerChurn = { sChurn: 0, sTmin: 0, sTmax: Infinity, sNoise: 1 };
  private readonly predictionType: "epsilon" | "v_prediction" | "sample" | "original_sample";

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    const cfg = resolveConfig(CLASS, EULER_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    checkChoice(CLASS, "timestep_spacing", cfg.timestep_spacing, ["leading", "linspace", "trailing"]);
    checkChoice(CLASS, "interpolation_type", cfg.interpolation_type, ["linear", "log_linear"]);
    checkChoice(CLASS, "timestep_type", cfg.timestep_type, ["discrete", "continuous"]);
    const predictionType = checkChoice(CLASS, "prediction_type", cfg.prediction_type, [
      "epsilon",
      "v_prediction",
      "sample",
      "original_sample",
    ]);
    super(CLASS, cfg, indexForTimestep);
    this.predictionType = predictionType;
    if (this.continuousTimesteps) {
      const n = cfg.num_train_timesteps;
      for (let i = 0; i < n; i++) this.timesteps[i] = f(0.25 * f(Math.log(this.sigmas[i]!)));
    }
  }

  /** Continuous v-prediction models take 0.25 log(sigma) as their timestep. */
  private get continuousTimesteps(): boolean {
    return this.config.timestep_type === "continuous" && this.predictionType === "v_prediction";
  }

  protected scheduleFor(steps: number): SigmaSchedule {
    const cfg = this.config;
    let timesteps = eulerTimesteps(cfg.timestep_spacing, cfg.num_train_timesteps, steps, cfg.steps_offset);
    const trainSigmas = this.trainingSigmas;
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
    const withEnd = new Float32Array(sig32.length + 1);
    withEnd.set(sig32);
    return {
      timesteps: this.continuousTimesteps
        ? Float64Array.from(sig32, (s) => f(0.25 * f(Math.log(s))))
        : Float64Array.from(timesteps, f),
      sigmas: withEnd,
    };
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    shape: readonly number[],
    noise: NoiseSource,
  ): Float32Array {
    const i = this.currentStep(timestep);
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
    const x0 = originalFromPrediction(this.predictionType, x, modelOutput, { sigma, sigmaHat });
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
}
