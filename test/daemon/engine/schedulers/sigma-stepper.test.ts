/**
 * The shell Euler, Euler ancestral and DPM-Solver++ share: one schedule, one step index, and the
 * k-diffusion forms (Euler family) or the VP forms (DPM-Solver++) of init noise, model input and add_noise.
 */
import { describe, expect, it } from "vitest";
import { createScheduler, parseSchedulerConfig, type NoiseSource, type SchedulerName } from "../../../../daemon/engine/schedulers";
import { SigmaStepper } from "../../../../daemon/engine/schedulers/sigma-stepper";

const f = Math.fround;
const SD15 = parseSchedulerConfig({
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  steps_offset: 1,
});
const SIGMA_SCHEDULERS: readonly SchedulerName[] = ["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras"];
const SHAPE = [1, 4, 1, 1] as const;
const x = Float32Array.from([0.5, -1, 1.5, 0.25]);
const n = Float32Array.from([0.1, 0.2, -0.3, 0.4]);
const zeros: NoiseSource = { randn: (shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)) };

describe("the sigma stepper", () => {
  it("is what every sigma scheduler is built on, and none of the alpha-space ones", () => {
    for (const name of SIGMA_SCHEDULERS) expect(createScheduler(name, SD15), name).toBeInstanceOf(SigmaStepper);
    for (const name of ["pndm", "ddim", "lcm"] as const) expect(createScheduler(name, SD15), name).not.toBeInstanceOf(SigmaStepper);
  });

  it("setTimesteps: one more sigma than timesteps, the schedule ending at 0; bad counts are refused by name", () => {
    for (const name of SIGMA_SCHEDULERS) {
      const s = createScheduler(name, SD15);
      s.setTimesteps(7);
      expect(s.timesteps.length, name).toBe(7);
      expect(s.sigmas!.length, name).toBe(8);
      expect(s.sigmas![7], name).toBe(0);
      expect(() => s.setTimesteps(0), name).toThrow(/invalid number of steps 0/);
      expect(() => s.setTimesteps(2.5), name).toThrow(/invalid number of steps/);
    }
  });

  it("Euler family: init noise sigma is sigma_max, input is x / sqrt(sigma^2 + 1), noise is x + sigma n", () => {
    for (const name of ["euler", "euler_a"] as const) {
      const s = createScheduler(name, SD15);
      s.setTimesteps(5);
      const sigma = s.sigmas![0]!;
      expect(s.initNoiseSigma, name).toBe(sigma);
      const denom = f(Math.sqrt(f(f(sigma * sigma) + 1)));
      expect(Array.from(s.scaleModelInput(x, s.timesteps[0]!)), name).toEqual(Array.from(x, (v) => f(v / denom)));
      expect(Array.from(s.addNoise(x, n, s.timesteps[0]!)), name).toEqual(Array.from(x, (v, i) => f(v + f(n[i]! * sigma))));
    }
  });

  it("DPM-Solver++: init noise sigma 1, input unscaled, noise alpha_t x + sigma_t n", () => {
    for (const name of ["dpmpp_2m", "dpmpp_2m_karras"] as const) {
      const s = createScheduler(name, SD15);
      s.setTimesteps(5);
      expect(s.initNoiseSigma, name).toBe(1);
      expect(s.scaleModelInput(x, s.timesteps[0]!), name).toBe(x);
      const sigma = s.sigmas![1]!;
      const alphaT = f(1 / f(Math.sqrt(f(f(sigma * sigma) + 1))));
      const sigmaT = f(sigma * alphaT);
      expect(Array.from(s.addNoise(x, n, s.timesteps[1]!)), name).toEqual(
        Array.from(x, (v, i) => f(f(alphaT * v) + f(sigmaT * n[i]!))),
      );
    }
  });

  it("add_noise refuses mismatched sizes, and a step past the end of the schedule is refused, naming the class", () => {
    const classes: Record<string, string> = {
      euler: "EulerDiscreteScheduler",
      euler_a: "EulerAncestralDiscreteScheduler",
      dpmpp_2m: "DPMSolverMultistepScheduler",
      dpmpp_2m_karras: "DPMSolverMultistepScheduler",
    };
    for (const name of SIGMA_SCHEDULERS) {
      const s = createScheduler(name, SD15);
      s.setTimesteps(2);
      expect(() => s.addNoise(x, n.subarray(1), s.timesteps[0]!)).toThrow(`${classes[name]}.addNoise: sample and noise sizes differ`);
      let sample: Float32Array = x;
      for (const t of s.timesteps) sample = s.step(n, t, sample, SHAPE, zeros);
      expect(() => s.step(n, s.timesteps[1]!, sample, SHAPE, zeros)).toThrow(`${classes[name]}: stepped past the end of the schedule`);
    }
  });
});
