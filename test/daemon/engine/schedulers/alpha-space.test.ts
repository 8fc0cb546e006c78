/** The alpha-space helpers PNDM, DDIM and LCM share (and DPM-Solver++'s mixing). */
import { describe, expect, it } from "vitest";
import { addNoiseDdpm, mixSignalAndNoise, signalAndNoiseScales } from "../../../../daemon/engine/schedulers/alpha-space";

const f = Math.fround;

describe("alpha space", () => {
  it("signalAndNoiseScales: sqrt(alpha_bar) and sqrt(1 - alpha_bar) in float32", () => {
    const a = f(0.7);
    expect(signalAndNoiseScales(a)).toEqual([f(Math.sqrt(a)), f(Math.sqrt(f(1 - a)))]);
  });

  it("mixSignalAndNoise rounds each product, then the sum", () => {
    const signal = Float32Array.from([1.1, -2.3]);
    const noise = Float32Array.from([0.4, 0.9]);
    expect(Array.from(mixSignalAndNoise(signal, noise, 0.3, 0.95))).toEqual(
      Array.from(signal, (x, i) => f(f(0.3 * x) + f(0.95 * noise[i]!))),
    );
  });

  it("addNoiseDdpm mixes at the timestep's cumulative alpha and names the scheduler when refused", () => {
    const alphasCumprod = Float32Array.from([0.99, 0.9, 0.5]);
    const x = Float32Array.from([0.25, -0.75]);
    const n = Float32Array.from([1.5, 0.5]);
    const [sa, sb] = signalAndNoiseScales(alphasCumprod[1]!);
    expect(Array.from(addNoiseDdpm(alphasCumprod, x, n, 1, "DDIMScheduler"))).toEqual(Array.from(mixSignalAndNoise(x, n, sa, sb)));
    expect(() => addNoiseDdpm(alphasCumprod, x, n, 3, "DDIMScheduler")).toThrow(/DDIMScheduler.addNoise: timestep 3/);
    expect(() => addNoiseDdpm(alphasCumprod, x, n, 0.5, "LCMScheduler")).toThrow(/outside the training schedule/);
    expect(() => addNoiseDdpm(alphasCumprod, x, n.subarray(1), 1, "PNDMScheduler")).toThrow(/PNDMScheduler.addNoise: sample and noise sizes differ/);
  });
});
