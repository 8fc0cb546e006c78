/**
 * Sigma-schedule pieces shared by the Euler schedulers and DPM-Solver (diffusers 0.27.2):
 * timestep spacing (float32 timesteps), Karras sigmas, sigma -> timestep interpolation.
 */
import { f, npArange, npLinspace, roundHalfEven } from "./numeric";

/**
 * EulerDiscreteScheduler / EulerAncestralDiscreteScheduler.set_timesteps spacing: descending float32
 * timesteps (as a Float64Array of float32 values).
 */
export function eulerTimesteps(spacing: string, trainSteps: number, steps: number, stepsOffset: number): Float64Array {
  let ts: number[];
  if (spacing === "linspace") {
    ts = Array.from(npLinspace(0, trainSteps - 1, steps), f).reverse();
  } else if (spacing === "leading") {
    const ratio = Math.floor(trainSteps / steps);
    ts = Array.from({ length: steps }, (_, i) => f(f((steps - 1 - i) * ratio) + stepsOffset));
  } else if (spacing === "trailing") {
    const ratio = trainSteps / steps;
    ts = Array.from(npArange(trainSteps, 0, -ratio), (v) => f(f(roundHalfEven(v)) - 1));
  } else {
    throw new Error(`${spacing} is not supported. Please make sure to choose one of 'linspace', 'leading' or 'trailing'.`);
  }
  return Float64Array.from(ts);
}

/** np.log of a float32 array, elementwise (float32 result). */
export function logF32(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.log(values[i]!);
  return out;
}

/**
 * _sigma_to_t: the (fractional) training timestep whose sigma is `sigma`, by linear interpolation in
 * log sigma (float64, log_sigmas float32 ascending in t).
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  const n = logSigmas.length;
  // low_idx = cumsum(dists >= 0).argmax() clipped to n - 2: the last index with log_sigma >= log_sigmas[i]
  // (log_sigmas increases with t), i.e. the first maximum of the running count.
  let count = 0;
  let best = -1;
  let lowIdx = 0;
  for (let i = 0; i < n; i++) {
    if (logSigma - logSigmas[i]! >= 0) count++;
    if (count > best) {
      best = count;
      lowIdx = i;
    }
  }
  lowIdx = Math.min(lowIdx, n - 2);
  const highIdx = lowIdx + 1;
  const low = logSigmas[lowIdx]!;
  const high = logSigmas[highIdx]!;
  let w = (low - logSigma) / (low - high);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * lowIdx + w * highIdx;
}

/** Karras et al. (2022) sigmas between sigmaMax and sigmaMin (float64), rho = 7. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number): Float64Array {
  const rho = 7.0;
  const ramp = npLinspace(0, 1, steps);
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) out[i] = (maxInvRho + ramp[i]! * (minInvRho - maxInvRho)) ** rho;
  return out;
}

/** The Euler family's model input: x / sqrt(sigma^2 + 1), in float32 as torch computes it. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const denom = f(Math.sqrt(f(f(sigma * sigma) + 1)));
  const out = new Float32Array(sample.length);
  for (let i = 0; i < out.length; i++) out[i] = f(sample[i]! / denom);
  return out;
}

/** The Euler family's noising: x + noise * sigma, in float32 (add_noise, and Euler ancestral's fresh noise). */
export function addNoiseAtSigma(sample: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  const out = new Float32Array(sample.length);
  for (let k = 0; k < out.length; k++) out[k] = f(sample[k]! + f(noise[k]! * sigma));
  return out;
}
