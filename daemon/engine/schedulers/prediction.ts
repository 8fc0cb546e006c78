/**
 * What the UNet's output stands for, turned into the predicted original sample (diffusers'
 * pred_original_sample, x0) and the predicted noise. Two noise levels, each formula written once:
 * - alpha space (DDIM, LCM, PNDM, DPM-Solver++): x_t = alpha_t x0 + sigma_t eps;
 * - sigma space (Euler, Euler ancestral): x = x0 + sigma eps, the k-diffusion form.
 */
import { f } from "./numeric";

/** diffusers' prediction_type: the UNet predicts the noise, the velocity, or the original sample. */
export type PredictionType = "epsilon" | "v_prediction" | "sample";

/** alpha_t and sigma_t of x_t = alpha_t x0 + sigma_t eps. */
export interface AlphaSpaceLevel {
  alphaT: number;
  sigmaT: number;
}

/** The step's sigma, and sigmaHat = sigma (gamma + 1) where Euler's churn raised it. */
export interface SigmaSpaceLevel {
  sigma: number;
  sigmaHat: number;
}

/**
 * x0 from the model output. Alpha space: epsilon (x - sigma_t eps) / alpha_t, v-prediction
 * alpha_t x - sigma_t v. Sigma space: epsilon x - sigmaHat eps, v-prediction eps c_out + x / (sigma^2 + 1)
 * with c_out = -sigma / sqrt(sigma^2 + 1) (diffusers uses sigma, not sigmaHat, there). "sample" (and
 * Euler's "original_sample") is the model output itself, copied.
 */
export function originalFromPrediction(
  predictionType: PredictionType | "original_sample",
  sample: Float32Array,
  modelOutput: Float32Array,
  level: AlphaSpaceLevel | SigmaSpaceLevel,
): Float32Array {
  const len = sample.length;
  const x0 = new Float32Array(len);
  if (predictionType !== "epsilon" && predictionType !== "v_prediction") {
    x0.set(modelOutput);
  } else if ("alphaT" in level) {
    const { alphaT, sigmaT } = level;
    if (predictionType === "epsilon") {
      for (let k = 0; k < len; k++) x0[k] = f(f(sample[k]! - f(sigmaT * modelOutput[k]!)) / alphaT);
    } else {
      for (let k = 0; k < len; k++) x0[k] = f(f(alphaT * sample[k]!) - f(sigmaT * modelOutput[k]!));
    }
  } else if (predictionType === "epsilon") {
    for (let k = 0; k < len; k++) x0[k] = f(sample[k]! - f(level.sigmaHat * modelOutput[k]!));
  } else {
    const s2 = f(f(level.sigma * level.sigma) + 1);
    const cOut = f(-level.sigma / f(Math.sqrt(s2)));
    for (let k = 0; k < len; k++) x0[k] = f(f(modelOutput[k]! * cOut) + f(sample[k]! / s2));
  }
  return x0;
}

/**
 * The noise, in alpha space: epsilon is the model output itself (not a copy); v-prediction
 * alpha_t v + sigma_t x; "sample" (x - alpha_t x0) / sigma_t with x0 the model output.
 */
export function noiseFromPrediction(
  predictionType: PredictionType,
  sample: Float32Array,
  modelOutput: Float32Array,
  { alphaT, sigmaT }: AlphaSpaceLevel,
): Float32Array {
  if (predictionType === "epsilon") return modelOutput;
  const eps = new Float32Array(sample.length);
  for (let k = 0; k < eps.length; k++) {
    eps[k] =
      predictionType === "v_prediction"
        ? f(f(alphaT * modelOutput[k]!) + f(sigmaT * sample[k]!))
        : f(f(sample[k]! - f(alphaT * modelOutput[k]!)) / sigmaT);
  }
  return eps;
}
