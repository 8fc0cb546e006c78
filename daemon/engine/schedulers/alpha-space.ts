/**
 * The alpha-space pieces shared by the schedulers that work on the training schedule's cumulative
 * alphas (PNDM, DDIM, LCM; DPM-Solver++ mixes the same way): x_t = alpha_t x0 + sigma_t eps.
 */
import { f } from "./numeric";

/** alpha_t = sqrt(alpha_bar), sigma_t = sqrt(1 - alpha_bar) of one cumulative alpha (float32). */
export function signalAndNoiseScales(alphaCumprod: number): [number, number] {
  return [f(Math.sqrt(alphaCumprod)), f(Math.sqrt(f(1 - alphaCumprod)))];
}

/** signalScale * signal + noiseScale * noise, elementwise in float32. */
export function mixSignalAndNoise(
  signal: Float32Array,
  noise: Float32Array,
  signalScale: number,
  noiseScale: number,
): Float32Array {
  const out = new Float32Array(signal.length);
  for (let i = 0; i < out.length; i++) out[i] = f(f(signalScale * signal[i]!) + f(noiseScale * noise[i]!));
  return out;
}

/** DDPM-style add_noise at a training timestep: sqrt(a_t) x0 + sqrt(1 - a_t) eps (PNDM, DDIM, LCM). */
export function addNoiseDdpm(
  alphasCumprod: Float32Array,
  original: Float32Array,
  noise: Float32Array,
  timestep: number,
  className: string,
): Float32Array {
  if (!Number.isInteger(timestep) || timestep < 0 || timestep >= alphasCumprod.length) {
    throw new RangeError(`${className}.addNoise: timestep ${timestep} is outside the training schedule`);
  }
  if (original.length !== noise.length) throw new RangeError(`${className}.addNoise: sample and noise sizes differ`);
  const [sa, sb] = signalAndNoiseScales(alphasCumprod[timestep]!);
  return mixSignalAndNoise(original, noise, sa, sb);
}
