/**
 * DPMSolverMultistepScheduler (diffusers 0.27.2, scheduling_dpmsolver_multistep.py) with
 * algorithm_type "dpmsolver++": DPM++ 2M (solver_order 2, midpoint) and DPM++ 2M Karras
 * (use_karras_sigmas). Orders 1-3, midpoint and heun second-order updates, lower_order_final,
 * euler_at_final, final_sigmas_type, Lu lambdas are ported; the SDE and non-++ variants are not.
 */
import { mixSignalAndNoise, signalAndNoiseScales } from "./alpha-space";
import { checkChoice, resolveConfig, type SchedulerConfig } from "./config";
import { f, npArange, npInterpIndex, npLinspace, roundHalfEven, thresholdSample } from "./numeric";
import { originalFromPrediction, type PredictionType } from "./prediction";
import { SigmaStepper, type SigmaSchedule } from "./sigma-stepper";
import { karrasSigmas, logF32, sigmaToT } from "./sigmas";
import type { NoiseSource, Scheduler, SchedulerName, SchedulerOptions } from "./types";

export const DPM_SOLVER_DEFAULTS = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null as readonly number[] | null,
  solver_order: 2,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: "dpmsolver++",
  solver_type: "midpoint",
  lower_order_final: true,
  euler_at_final: false,
  use_karras_sigmas: false as boolean | null,
  use_lu_lambdas: false as boolean | null,
  final_sigmas_type: "zero" as string | null,
  lambda_min_clipped: -Infinity,
  variance_type: null as string | null,
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};
export type DpmSolverConfig = typeof DPM_SOLVER_DEFAULTS;

const CLASS = "DPMSolverMultistepScheduler";

/** The DPM-Solver index lookup: not found -> the last index; repeated -> the second occurrence. */
function dpmIndexForTimestep(schedule: Float64Array, timestep: number): number {
  const found: number[] = [];
  for (let i = 0; i < schedule.length && found.length < 2; i++) if (schedule[i] === timestep) found.push(i);
  if (found.length === 0) return schedule.length - 1;
  return found.length > 1 ? found[1]! : found[0]!;
}

/** alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (float32). */
function alphaSigma(sigma: number): [number, number] {
  const alpha = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))));
  return [alpha, f(sigma * alpha)];
}

/** lambda = log(alpha) - log(sigma) (float32; +inf at sigma = 0). */
function lambdaOf(alpha: number, sigma: number): number {
  return f(f(Math.log(alpha)) - f(Math.log(sigma)));
}

export class DpmSolverMultistepScheduler extends SigmaStepper<DpmSolverConfig> implements Scheduler {
  private readonly predictionType: PredictionType;
  private readonly solverType: "midpoint" | "heun";
  private readonly finalSigmasType: "zero" | "sigma_min";
  private modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;
  private readonly lambdaT: Float32Array;

  constructor(
    readonly name: SchedulerName,
    config: SchedulerConfig,
    options: SchedulerOptions = {},
    overrides: Partial<DpmSolverConfig> = {},
  ) {
    const cfg = resolveConfig(CLASS, DPM_SOLVER_DEFAULTS, config, { ...overrides, timestep_spacing: options.timestepSpacing });
    checkChoice(CLASS, "timestep_spacing", cfg.timestep_spacing, ["leading", "linspace", "trailing"]);
    checkChoice(CLASS, "algorithm_type", cfg.algorithm_type, ["dpmsolver++"]);
    const predictionType = checkChoice(CLASS, "prediction_type", cfg.prediction_type, ["epsilon", "v_prediction", "sample"]);
    // diffusers maps the UniPC names to midpoint
    const solverType = ["logrho", "bh1", "bh2"].includes(cfg.solver_type) ? "midpoint" : cfg.solver_type;
    const checkedSolverType = checkChoice(CLASS, "solver_type", solverType, ["midpoint", "heun"]);
    const finalSigmasType = checkChoice(CLASS, "final_sigmas_type", String(cfg.final_sigmas_type), ["zero", "sigma_min"]);
    if (cfg.variance_type === "learned" || cfg.variance_type === "learned_range") {
      throw new Error(`${CLASS}: variance_type ${cfg.variance_type} (learned variance UNets) is not supported`);
    }
    if (!(cfg.solver_order >= 1 && cfg.solver_order <= 3)) {
      throw new Error(`${CLASS}: solver_order ${cfg.solver_order} is not supported (1, 2 or 3)`);
    }
    super(CLASS, cfg, dpmIndexForTimestep);
    this.predictionType = predictionType;
    this.solverType = checkedSolverType;
    this.finalSigmasType = finalSigmasType;
    const ac = this.alphasCumprod;
    // VP-type noise schedule
    this.lambdaT = new Float32Array(ac.length);
    for (let i = 0; i < ac.length; i++) {
      const [alphaT, sigmaT] = signalAndNoiseScales(ac[i]!);
      this.lambdaT[i] = lambdaOf(alphaT, sigmaT);
    }
    // until setTimesteps diffusers keeps the training sigmas ascending, without the final 0
    this.sigmas = Float32Array.from(this.trainingSigmas);
    this.modelOutputs = new Array<Float32Array | null>(cfg.solver_order).fill(null);
  }

  /** A VP scheduler: the initial noise is not scaled. */
  override get initNoiseSigma(): number {
    return 1;
  }

  /** Also clears the multistep history; the step count is the schedule's (the lambda clip can shorten it). */
  override setTimesteps(steps: number): void {
    super.setTimesteps(steps);
    this.numInferenceSteps = this.timesteps.length;
    this.modelOutputs = new Array<Float32Array | null>(this.config.solver_order).fill(null);
    this.lowerOrderNums = 0;
  }

  protected scheduleFor(steps: number): SigmaSchedule {
    const cfg = this.config;
    const T = cfg.num_train_timesteps;
    // Clip the minimum of all lambda(t) for numerical stability (critical for cosine schedules):
    // searchsorted(flip(lambda_t), lambda_min_clipped), side left.
    let clippedIdx = 0;
    const L = this.lambdaT.length;
    while (clippedIdx < L && this.lambdaT[L - 1 - clippedIdx]! < cfg.lambda_min_clipped) clippedIdx++;
    const lastTimestep = T - clippedIdx;

    let timesteps: number[];
    if (cfg.timestep_spacing === "linspace") {
      timesteps = Array.from(npLinspace(0, lastTimestep - 1, steps + 1), roundHalfEven).reverse().slice(0, -1);
    } else if (cfg.timestep_spacing === "leading") {
      const ratio = Math.floor(lastTimestep / (steps + 1));
      timesteps = Array.from({ length: steps + 1 }, (_, i) => (steps - i) * ratio + cfg.steps_offset).slice(0, -1);
    } else {
      const ratio = T / steps;
      timesteps = Array.from(npArange(lastTimestep, 0, -ratio), (v) => roundHalfEven(v) - 1);
    }

    const trainSigmas = this.trainingSigmas;
    const logSigmas = logF32(trainSigmas);
    let sigmas: number[];
    if (cfg.use_karras_sigmas) {
      // in_sigmas = flip(sigmas): sigma_min = sigma(t=0), sigma_max = sigma(t=T-1)
      const k = karrasSigmas(trainSigmas[0]!, trainSigmas[trainSigmas.length - 1]!, steps);
      sigmas = Array.from(k);
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else if (cfg.use_lu_lambdas) {
      // diffusers passes flip(log_sigmas) as the "lambdas"
      const lambdaMin = logSigmas[0]!;
      const lambdaMax = logSigmas[logSigmas.length - 1]!;
      const ramp = npLinspace(0, 1, steps);
      const lambdas = Array.from(ramp, (r) => lambdaMax + r * (lambdaMin - lambdaMax));
      sigmas = lambdas.map((l) => Math.exp(l));
      timesteps = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else {
      sigmas = timesteps.map((t) => npInterpIndex(t, trainSigmas));
    }
    // the schedule ends at sigma 0, or at the smallest training sigma
    const sigmaLast = this.finalSigmasType === "sigma_min" ? trainSigmas[0]! : 0;
    return { timesteps: Float64Array.from(timesteps), sigmas: Float32Array.from([...sigmas, sigmaLast]) };
  }

  /** A VP scheduler: the UNet takes the sample as it is (and the step index is not started here). */
  override scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** convert_model_output: the data prediction x0 (DPM-Solver++ works on x0). */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, shape: readonly number[]): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(this.sigmas[this.index.stepIndex!]!);
    let x0 = originalFromPrediction(this.predictionType, sample, modelOutput, { alphaT, sigmaT });
    if (this.config.thresholding) {
      x0 = thresholdSample(x0, shape, this.config.dynamic_thresholding_ratio, this.config.sample_max_value);
    }
    return x0;
  }

  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    shape: readonly number[],
    _noise: NoiseSource,
  ): Float32Array {
    if (this.numInferenceSteps === null) {
      throw new Error("Number of inference steps is 'None', you need to run 'set_timesteps' after creating the scheduler");
    }
    const cfg = this.config;
    const i = this.currentStep(timestep);
    const n = this.timesteps.length;
    // Improve numerical stability for small number of steps
    const lowerOrderFinal =
      i === n - 1 && (cfg.euler_at_final || (cfg.lower_order_final && n < 15) || this.finalSigmasType === "zero");
    const lowerOrderSecond = i === n - 2 && cfg.lower_order_final && n < 15;

    const x0 = this.convertModelOutput(modelOutput, sample, shape);
    for (let k = 0; k < cfg.solver_order - 1; k++) this.modelOutputs[k] = this.modelOutputs[k + 1]!;
    this.modelOutputs[cfg.solver_order - 1] = x0;

    let prev: Float32Array;
    if (cfg.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      prev = this.firstOrderUpdate(x0, sample, i);
    } else if (cfg.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) {
      prev = this.secondOrderUpdate(sample, i);
    } else {
      prev = this.thirdOrderUpdate(sample, i);
    }
    if (this.lowerOrderNums < cfg.solver_order) this.lowerOrderNums += 1;
    this.index.advance();
    return prev;
  }

  /** DPM-Solver++ first order (= DDIM), eq. (5) of arXiv 2206.00927. */
  private firstOrderUpdate(x0: Float32Array, sample: Float32Array, i: number): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(this.sigmas[i + 1]!);
    const [alphaS, sigmaS] = alphaSigma(this.sigmas[i]!);
    const h = f(lambdaOf(alphaT, sigmaT) - lambdaOf(alphaS, sigmaS));
    const c1 = f(sigmaT / sigmaS);
    const c2 = f(alphaT * f(f(Math.exp(-h)) - 1));
    const out = new Float32Array(sample.length);
    for (let k = 0; k < out.length; k++) out[k] = f(f(c1 * sample[k]!) - f(c2 * x0[k]!));
    return out;
  }

  private secondOrderUpdate(sample: Float32Array, i: number): Float32Array {
    const m0 = this.modelOutputs[this.modelOutputs.length - 1]!;
    const m1 = this.modelOutputs[this.modelOutputs.length - 2]!;
    const [alphaT, sigmaT] = alphaSigma(this.sigmas[i + 1]!);
    const [alphaS0, sigmaS0] = alphaSigma(this.sigmas[i]!);
    const [alphaS1, sigmaS1] = alphaSigma(this.sigmas[i - 1]!);
    const lambdaT = lambdaOf(alphaT, sigmaT);
    const lambdaS0 = lambdaOf(alphaS0, sigmaS0);
    const lambdaS1 = lambdaOf(alphaS1, sigmaS1);
    const h = f(lambdaT - lambdaS0);
    const h0 = f(lambdaS0 - lambdaS1);
    const r0 = f(h0 / h);
    const invR0 = f(1 / r0);
    const c1 = f(sigmaT / sigmaS0);
    const expm = f(f(Math.exp(-h)) - 1);
    const c2 = f(alphaT * expm);
    const out = new Float32Array(sample.length);
    if (this.solverType === "midpoint") {
      const c3 = f(0.5 * c2);
      for (let k = 0; k < out.length; k++) {
        const d1 = f(invR0 * f(m0[k]! - m1[k]!));
        out[k] = f(f(f(c1 * sample[k]!) - f(c2 * m0[k]!)) - f(c3 * d1));
      }
    } else {
      const c3 = f(alphaT * f(f(expm / h) + 1));
      for (let k = 0; k < out.length; k++) {
        const d1 = f(invR0 * f(m0[k]! - m1[k]!));
        out[k] = f(f(f(c1 * sample[k]!) - f(c2 * m0[k]!)) + f(c3 * d1));
      }
    }
    return out;
  }

  private thirdOrderUpdate(sample: Float32Array, i: number): Float32Array {
    const len = this.modelOutputs.length;
    const m0 = this.modelOutputs[len - 1]!;
    const m1 = this.modelOutputs[len - 2]!;
    const m2 = this.modelOutputs[len - 3]!;
    const [alphaT, sigmaT] = alphaSigma(this.sigmas[i + 1]!);
    const [alphaS0, sigmaS0] = alphaSigma(this.sigmas[i]!);
    const [alphaS1, sigmaS1] = alphaSigma(this.sigmas[i - 1]!);
    const [alphaS2, sigmaS2] = alphaSigma(this.sigmas[i - 2]!);
    const lambdaT = lambdaOf(alphaT, sigmaT);
    const lambdaS0 = lambdaOf(alphaS0, sigmaS0);
    const lambdaS1 = lambdaOf(alphaS1, sigmaS1);
    const lambdaS2 = lambdaOf(alphaS2, sigmaS2);
    const h = f(lambdaT - lambdaS0);
    const h0 = f(lambdaS0 - lambdaS1);
    const h1 = f(lambdaS1 - lambdaS2);
    const r0 = f(h0 / h);
    const r1 = f(h1 / h);
    const invR0 = f(1 / r0);
    const invR1 = f(1 / r1);
    const cD1 = f(r0 / f(r0 + r1));
    const cD2 = f(1 / f(r0 + r1));
    const expm = f(f(Math.exp(-h)) - 1);
    const c1 = f(sigmaT / sigmaS0);
    const c2 = f(alphaT * expm);
    const c3 = f(alphaT * f(f(expm / h) + 1));
    const c4 = f(alphaT * f(f(f(f(expm + h) / f(h * h))) - 0.5));
    const out = new Float32Array(sample.length);
    for (let k = 0; k < out.length; k++) {
      const d10 = f(invR0 * f(m0[k]! - m1[k]!));
      const d11 = f(invR1 * f(m1[k]! - m2[k]!));
      const dd = f(d10 - d11);
      const d1 = f(d10 + f(cD1 * dd));
      const d2 = f(cD2 * dd);
      out[k] = f(f(f(f(c1 * sample[k]!) - f(c2 * m0[k]!)) + f(c3 * d1)) - f(c4 * d2));
    }
    return out;
  }

  /** The VP form alpha_t x + sigma_t noise, alpha_t and sigma_t from sigma. */
  protected override noiseAtSigma(original: Float32Array, noise: Float32Array, sigma: number): Float32Array {
    const [alphaT, sigmaT] = alphaSigma(sigma);
    return mixSignalAndNoise(original, noise, alphaT, sigmaT);
  }
}
