/**
 * EulerAncestralDiscreteScheduler (diffusers 0.27.2, scheduling_euler_ancestral_discrete.py): an Euler
 * step down to sigma_down, then fresh noise of size sigma_up (one draw per step).
 */
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { f, npInterpIndex } from "./numeric";
import { originalFromPrediction } from "./prediction";
import { SigmaStepper, type SigmaSchedule } from "./sigma-stepper";
import { addNoiseAtSigma, eulerTimesteps } from "./sigmas";
import { indexForTimestep } from "./step-index";
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

export class EulerAncestralScheduler extends SigmaStepper<EulerAncestralConfig> implements Scheduler {
  readonly name = "euler_a" as const;
  private readonly predictionType: "epsilon" | "v_prediction";

  constructor(config: SchedulerConfig, options: SchedulerOptions = {}) {
    const cfg = resolveConfig(CLASS, EULER_ANCESTRAL_DEFAULTS, config, { timestep_spacing: options.timestepSpacing });
    checkChoice(CLASS, "timestep_spacing", cfg.timestep_spacing, ["leading", "linspace", "trailing"]);
    if (cfg.prediction_type === "sample") throw new Error(`${CLASS}: prediction_type not implemented yet: sample`);
    const predictionType = checkChoice(CLASS, "prediction_type", cfg.prediction_type, ["epsilon", "v_prediction"]);
    super(CLASS, cfg, indexForTimestep);
    this.predictionType = predictionType;
  }

  protected scheduleFor(steps: number): SigmaSchedule {
    const cfg = this.config;
    const timesteps = eulerTimesteps(cfg.timestep_spacing, cfg.num_train_timesteps, steps, cfg.steps_offset);
    const sigmas = new Float32Array(steps + 1);
    for (let i = 0; i < steps; i++) sigmas[i] = npInterpIndex(timesteps[i]!, this.trainingSigmas);
    return { timesteps, sigmas };
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
    // 1. predicted original sample (x_0)
    const x0 = originalFromPrediction(this.predictionType, sample, modelOutput, { sigma, sigmaHat: sigma });
    const from = sigma;
    const to = this.sigmas[i + 1]!;
    const from2 = f(from * from);
    const to2 = f(to * to);
    const sigmaUp = f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2)));
    const sigmaDown = f(Math.sqrt(f(to2 - f(sigmaUp * sigmaUp))));
    // 2. ODE derivative, Euler step to sigma_down
    const dt = f(sigmaDown - sigma);
    const down = new Float32Array(len);
    for (let k = 0; k < len; k++) {
      const d = f(f(sample[k]! - x0[k]!) / sigma);
      down[k] = f(sample[k]! + f(d * dt));
    }
    // 3. fresh noise
    const z = noise.randn(shape);
    if (z.length !== len) throw new RangeError(`${CLASS}: noise has ${z.length} values, expected ${len}`);
    const out = addNoiseAtSigma(down, z, sigmaUp);
    this.index.advance();
    return out;
  }
}
