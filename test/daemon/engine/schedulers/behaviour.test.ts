/**
 * What the reference cases do not reach: other timestep spacings, prediction types, DDIM eta > 0,
 * PNDM's PRK warm-up schedule, config resolution, add_noise indexing, and chained (not fed) replays.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  createScheduler,
  DdimScheduler,
  parseSchedulerConfig,
  SCHEDULER_NAMES,
  schedulerForClass,
  type NoiseSource,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerName,
} from "../../../../daemon/engine/schedulers";
import { torchLinspaceF32 } from "../../../../daemon/engine/schedulers/numeric";
import { SDXL_LIGHTNING_SCHEDULER } from "../../../../scripts/replicas";
import { FIXTURES_DIR, listReferenceCases, RecordedNoise, REFERENCE_DIR, ReferenceCase, relativeError } from "./reference-case";

const SD15: SchedulerConfig = parseSchedulerConfig({
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.6.0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
});

function withConfig(extra: Record<string, unknown>): SchedulerConfig {
  return parseSchedulerConfig({ ...SD15, ...extra });
}

/** Deterministic pseudo-random values in [-2, 2). */
function pseudoRandom(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 4 - 2;
  }
  return out;
}

class CountingNoise implements NoiseSource {
  calls = 0;
  constructor(private readonly seed = 7) {}
  randn(shape: readonly number[]): Float32Array {
    this.calls++;
    return pseudoRandom(
      shape.reduce((a, b) => a * b, 1),
      this.seed + this.calls,
    );
  }
}

const SHAPE = [2, 4, 3, 3] as const;
const N_EL = SHAPE.reduce((a, b) => a * b, 1);

describe("timestep spacing (10 steps, T = 1000, steps_offset 1)", () => {
  const cases: [SchedulerName, string, number[]][] = [
    ["ddim", "linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]],
    ["ddim", "leading", [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]],
    ["ddim", "trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]],
    ["pndm", "linspace", [999, 888, 888, 777, 666, 555, 444, 333, 222, 111, 0]],
    ["pndm", "trailing", [999, 899, 899, 799, 699, 599, 499, 399, 299, 199, 99]],
    ["euler", "leading", [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]],
    ["euler", "trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]],
    ["euler_a", "trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]],
    ["dpmpp_2m", "leading", [901, 811, 721, 631, 541, 451, 361, 271, 181, 91]],
    ["dpmpp_2m", "trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]],
  ];
  for (const [name, spacing, want] of cases) {
    it(`${name} ${spacing}`, () => {
      const s = createScheduler(name, withConfig({ _class_name: undefined, timestep_spacing: spacing }));
      s.setTimesteps(10);
      expect(Array.from(s.timesteps)).toEqual(want);
      const viaOption = createScheduler(name, SD15, { timestepSpacing: spacing as "leading" | "linspace" | "trailing" });
      viaOption.setTimesteps(10);
      expect(Array.from(viaOption.timesteps)).toEqual(want);
    });
  }

  it("SDXL-Lightning's EulerDiscreteScheduler with trailing spacing, 4 steps: diffusers' round(arange(1000, 0, -250)) - 1 = [999, 749, 499, 249], initial noise sigma_max", () => {
    // Cyronius/sdxl-lightning-4step-onnx-web's scheduler: SDXL base's config with timestep_spacing "trailing" (scripts/replicas.ts).
    const lightning = parseSchedulerConfig({ ...SDXL_LIGHTNING_SCHEDULER });
    const s = createScheduler("euler", lightning);
    s.setTimesteps(4);
    const trainSteps = 1000;
    const ratio = trainSteps / 4;
    const formula = Array.from({ length: 4 }, (_, i) => Math.round(trainSteps - i * ratio) - 1);
    expect(formula).toEqual([999, 749, 499, 249]);
    expect(Array.from(s.timesteps)).toEqual(formula);
    // Trailing spacing starts from pure noise at sigma_max (no sqrt(sigma^2 + 1) as with leading), and ends at sigma 0.
    expect(s.initNoiseSigma).toBe(s.sigmas![0]);
    expect(s.sigmas!.at(-1)).toBe(0);
    expect(schedulerForClass("EulerDiscreteScheduler")).toBe("euler");
  });

  it("Euler with leading spacing scales the initial noise by sqrt(sigma_max^2 + 1)", () => {
    const s = createScheduler("euler", SD15, { timestepSpacing: "leading" });
    s.setTimesteps(10);
    const sigmaMax = s.sigmas![0]!;
    expect(s.initNoiseSigma).toBe(Math.fround(Math.sqrt(Math.fround(Math.fround(sigmaMax * sigmaMax) + 1))));
  });

  it("LCM ignores the spacing and follows the 50-step distillation schedule", () => {
    const s = createScheduler("lcm", SD15, { timestepSpacing: "trailing" });
    s.setTimesteps(4);
    expect(Array.from(s.timesteps)).toEqual([999, 759, 499, 259]);
    s.setTimesteps(1);
    expect(Array.from(s.timesteps)).toEqual([999]);
    expect(() => s.setTimesteps(51)).toThrow();
  });

  it("PNDM without skip_prk_steps: 12 Runge-Kutta timesteps, then PLMS", () => {
    const s = createScheduler("pndm", withConfig({ skip_prk_steps: false, steps_offset: 0 }));
    s.setTimesteps(10);
    expect(Array.from(s.timesteps)).toEqual([
      900, 850, 850, 800, 800, 750, 750, 700, 700, 650, 650, 600, 600, 500, 400, 300, 200, 100, 0,
    ]);
    // runs through the whole schedule
    const noise = new CountingNoise();
    let x: Float32Array = pseudoRandom(N_EL, 1);
    for (const t of s.timesteps) {
      x = s.step(pseudoRandom(N_EL, t + 3), t, x, SHAPE, noise);
      expect(x.every((v) => Number.isFinite(v))).toBe(true);
    }
    expect(noise.calls).toBe(0);
  });
});

describe("config resolution", () => {
  it("a config written for another class does not carry the writer's default spacing over", () => {
    const pndmFile = withConfig({ timestep_spacing: "leading", prediction_type: "epsilon" });
    const euler = createScheduler("euler", pndmFile);
    euler.setTimesteps(4);
    expect(Array.from(euler.timesteps)).toEqual([999, 666, 333, 0]);
    const pndm = createScheduler("pndm", pndmFile);
    pndm.setTimesteps(4);
    expect(Array.from(pndm.timesteps)).toEqual([751, 501, 501, 251, 1]);
  });

  it("a spacing the author chose travels to other classes: SD-Turbo's Euler trailing runs 1 step at t = 999", () => {
    const turboFile = parseSchedulerConfig(JSON.parse(readFileSync(path.join(FIXTURES_DIR, "tiny-sd-turbo-config", "scheduler", "scheduler_config.json"), "utf8")));
    for (const caseName of ["turbo_t2i_euler_1step_cfg0", "turbo_t2i_euler_a_1step_cfg0"]) {
      const ref = ReferenceCase.load(path.join(REFERENCE_DIR, "cases", caseName));
      const s = createScheduler(ref.schedulerName(), turboFile);
      s.setTimesteps(1);
      expect(Array.from(s.timesteps), caseName).toEqual(ref.manifest.scheduler_state.timesteps);
      expect(Array.from(s.sigmas ?? []), caseName).toEqual(ref.manifest.scheduler_state.sigmas);
      expect(s.initNoiseSigma, caseName).toBe(ref.manifest.scheduler_state.init_noise_sigma);
    }
    for (const name of ["ddim", "dpmpp_2m", "dpmpp_2m_karras", "pndm"] as const) {
      const s = createScheduler(name, turboFile);
      s.setTimesteps(1);
      expect(s.timesteps[0], name).toBe(999);
    }
  });

  it("the prediction type and karras sigmas an author chose travel to other classes", () => {
    const v = withConfig({ prediction_type: "v_prediction" });
    for (const name of ["ddim", "euler", "euler_a", "dpmpp_2m", "lcm"] as const) {
      const s = createScheduler(name, v) as Scheduler & { config: { prediction_type: string } };
      expect(s.config.prediction_type, name).toBe("v_prediction");
    }
    const karras = parseSchedulerConfig({ ...SD15, _class_name: "EulerDiscreteScheduler", use_karras_sigmas: true });
    const euler = createScheduler("euler", karras);
    const plain = createScheduler("euler", withConfig({ _class_name: "EulerDiscreteScheduler" }));
    euler.setTimesteps(8);
    plain.setTimesteps(8);
    expect(Array.from(euler.sigmas!)).not.toEqual(Array.from(plain.sigmas!));
    expect(schedulerForClass("DPMSolverMultistepScheduler", karras)).toBe("dpmpp_2m_karras");
    expect(schedulerForClass("EulerDiscreteScheduler")).toBe("euler");
    expect(schedulerForClass("UniPCMultistepScheduler")).toBeUndefined();
  });

  it("a config written for the same class keeps its spacing; _use_default_values are dropped", () => {
    const own = withConfig({ _class_name: "EulerDiscreteScheduler", timestep_spacing: "leading" });
    const s = createScheduler("euler", own);
    s.setTimesteps(4);
    expect(Array.from(s.timesteps)).toEqual([751, 501, 251, 1]);
    const dropped = withConfig({
      _class_name: "EulerDiscreteScheduler",
      timestep_spacing: "leading",
      _use_default_values: ["timestep_spacing"],
    });
    const d = createScheduler("euler", dropped);
    d.setTimesteps(4);
    expect(Array.from(d.timesteps)).toEqual([999, 666, 333, 0]);
  });

  it("missing keys take the class's own defaults (DDIM: linear betas, clip_sample, set_alpha_to_one)", () => {
    const s = createScheduler("ddim", parseSchedulerConfig({}));
    expect(s).toBeInstanceOf(DdimScheduler);
    const ddim = s as DdimScheduler;
    expect(ddim.config.clip_sample).toBe(true);
    expect(ddim.config.set_alpha_to_one).toBe(true);
    expect(ddim.config.beta_schedule).toBe("linear");
    expect(ddim.finalAlphaCumprod).toBe(1);
    const betas = torchLinspaceF32(0.0001, 0.02, 1000);
    let p = 1;
    for (let i = 0; i < 1000; i++) {
      p *= Math.fround(1 - betas[i]!);
      expect(ddim.alphasCumprod[i]).toBe(Math.fround(p));
    }
  });

  it("parses Python's non-finite numbers and keeps unknown keys", () => {
    const c = parseSchedulerConfig({ lambda_min_clipped: "-inf", some_future_key: [1, 2] });
    expect(c.lambda_min_clipped).toBe(-Infinity);
    expect((c as Record<string, unknown>).some_future_key).toEqual([1, 2]);
    expect(() => parseSchedulerConfig({ num_train_timesteps: "1000" })).toThrow();
  });

  it("rejects what is not ported with a clear error", () => {
    expect(() => createScheduler("ddim", withConfig({ prediction_type: "x0" }))).toThrow(/prediction_type/);
    expect(() => createScheduler("euler_a", withConfig({ prediction_type: "sample" }))).toThrow(/sample/);
    expect(() => createScheduler("pndm", withConfig({ prediction_type: "sample" }))).toThrow(/prediction_type/);
    expect(() => createScheduler("euler", withConfig({ beta_schedule: "sigmoid" }))).toThrow(/sigmoid/);
    expect(() => createScheduler("ddim", SD15, { eta: -1 })).toThrow(/eta/);
  });

  it("every name builds from the SD 1.5 config with order 1", () => {
    for (const name of SCHEDULER_NAMES) {
      const s = createScheduler(name, SD15);
      expect(s.name).toBe(name);
      expect(s.order).toBe(1);
    }
  });
});

/**
 * Feeds each scheduler model outputs consistent with one fixed x0 in each parameterisation and checks
 * that epsilon, v_prediction and sample give the same trajectory.
 */
describe("prediction types agree", () => {
  const x0 = pseudoRandom(N_EL, 11);
  const sqrt = Math.sqrt;

  type Kind = "epsilon" | "v_prediction" | "sample";
  /** Model outputs for x at training timestep t (DDPM family: alphas_cumprod). */
  function ddpmOutputs(s: Scheduler, x: Float32Array, t: number): Record<Kind, Float32Array> {
    const a = s.alphasCumprod[t]!;
    const eps = x.map((v, i) => (v - sqrt(a) * x0[i]!) / sqrt(1 - a));
    return {
      epsilon: eps,
      v_prediction: eps.map((e, i) => sqrt(a) * e - sqrt(1 - a) * x0[i]!),
      sample: Float32Array.from(x0),
    };
  }
  /** Euler family: x = x0 + sigma eps (unscaled); v on the scaled input. */
  function eulerOutputs(x: Float32Array, sigma: number): Record<Kind, Float32Array> {
    const eps = x.map((v, i) => (v - x0[i]!) / sigma);
    const alpha = 1 / sqrt(sigma * sigma + 1);
    return {
      epsilon: eps,
      v_prediction: eps.map((e, i) => alpha * e - sigma * alpha * x0[i]!),
      sample: Float32Array.from(x0),
    };
  }
  /** DPM-Solver: x = alpha_t x0 + sigma_t eps (VP). */
  function dpmOutputs(x: Float32Array, sigma: number): Record<Kind, Float32Array> {
    const alpha = 1 / sqrt(sigma * sigma + 1);
    const st = sigma * alpha;
    const eps = x.map((v, i) => (v - alpha * x0[i]!) / st);
    return {
      epsilon: eps,
      v_prediction: eps.map((e, i) => alpha * e - st * x0[i]!),
      sample: Float32Array.from(x0),
    };
  }

  const plans: { name: SchedulerName; kinds: Kind[]; steps: number; maxSteps?: number; outputs: "ddpm" | "euler" | "dpm" }[] = [
    { name: "ddim", kinds: ["epsilon", "v_prediction", "sample"], steps: 8, outputs: "ddpm" },
    { name: "pndm", kinds: ["epsilon", "v_prediction"], steps: 8, maxSteps: 1, outputs: "ddpm" },
    { name: "lcm", kinds: ["epsilon", "v_prediction", "sample"], steps: 4, outputs: "ddpm" },
    { name: "euler", kinds: ["epsilon", "v_prediction", "sample"], steps: 8, outputs: "euler" },
    { name: "euler_a", kinds: ["epsilon", "v_prediction"], steps: 8, outputs: "euler" },
    { name: "dpmpp_2m", kinds: ["epsilon", "v_prediction", "sample"], steps: 8, outputs: "dpm" },
    { name: "dpmpp_2m_karras", kinds: ["epsilon", "v_prediction", "sample"], steps: 8, outputs: "dpm" },
  ];

  for (const plan of plans) {
    it(`${plan.name}: ${plan.kinds.join(" = ")}`, () => {
      const scheds = plan.kinds.map((k) => createScheduler(plan.name, withConfig({ prediction_type: k })));
      for (const s of scheds) s.setTimesteps(plan.steps);
      const ref = scheds[0]!;
      const noises = plan.kinds.map(() => new CountingNoise(5));
      let x: Float32Array = pseudoRandom(N_EL, 3).map((v, i) => v * 3 + x0[i]!);
      const total = Math.min(ref.timesteps.length, plan.maxSteps ?? Infinity);
      for (let i = 0; i < total; i++) {
        const t = ref.timesteps[i]!;
        const sigma = ref.sigmas ? ref.sigmas[i]! : 0;
        const outs = plan.outputs === "ddpm" ? ddpmOutputs(ref, x, t) : plan.outputs === "euler" ? eulerOutputs(x, sigma) : dpmOutputs(x, sigma);
        const results = scheds.map((s, k) => s.step(outs[plan.kinds[k]!], t, x, SHAPE, noises[k]!));
        for (let k = 1; k < results.length; k++) {
          expect(relativeError(results[k]!, results[0]!), `${plan.kinds[k]} step ${i}`).toBeLessThan(2e-5);
        }
        x = results[0]!;
      }
    });
  }
});

describe("noise draws", () => {
  const expected: Record<SchedulerName, (steps: number) => number> = {
    pndm: () => 0,
    ddim: () => 0,
    euler: (n) => n,
    euler_a: (n) => n,
    dpmpp_2m: () => 0,
    dpmpp_2m_karras: () => 0,
    lcm: (n) => n - 1,
  };
  for (const name of SCHEDULER_NAMES) {
    it(`${name} draws where diffusers does`, () => {
      const s = createScheduler(name, SD15);
      s.setTimesteps(5);
      const noise = new CountingNoise();
      let x: Float32Array = pseudoRandom(N_EL, 1);
      for (const t of s.timesteps) {
        s.scaleModelInput(x, t);
        x = s.step(pseudoRandom(N_EL, 9), t, x, SHAPE, noise);
      }
      expect(noise.calls).toBe(expected[name](5));
    });
  }

  it("DDIM with eta > 0 adds eta-scaled noise every step (formula 16 of the DDIM paper)", () => {
    const eta = 0.7;
    const s = createScheduler("ddim", SD15, { eta });
    const s0 = createScheduler("ddim", SD15);
    s.setTimesteps(5);
    s0.setTimesteps(5);
    const noise = new CountingNoise();
    const x = pseudoRandom(N_EL, 1);
    const eps = pseudoRandom(N_EL, 2);
    for (const t of s.timesteps) {
      const before = noise.calls;
      const got = s.step(eps, t, x, SHAPE, noise);
      expect(noise.calls).toBe(before + 1);
      const z = new CountingNoise();
      z.calls = before;
      const drawn = z.randn(SHAPE);
      // reference in float64
      const ac = s.alphasCumprod;
      const a = ac[t]!;
      const prevT = t - 200;
      const ap = prevT >= 0 ? ac[prevT]! : ac[0]!;
      const variance = ((1 - ap) / (1 - a)) * (1 - a / ap);
      const std = eta * Math.sqrt(variance);
      const want = x.map((v, i) => {
        const x0 = (v - Math.sqrt(1 - a) * eps[i]!) / Math.sqrt(a);
        return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - std * std) * eps[i]! + std * drawn[i]!;
      });
      expect(relativeError(got, want)).toBeLessThan(1e-5);
      // eta = 0 draws nothing
      const z0 = new CountingNoise();
      s0.step(eps, t, x, SHAPE, z0);
      expect(z0.calls).toBe(0);
    }
  });
});

describe("step index and add_noise (sigma schedulers)", () => {
  it("Euler: add_noise by timestep, by begin index, then by the current step index", () => {
    const s = createScheduler("euler", SD15);
    s.setTimesteps(8);
    const sig = s.sigmas!;
    const x = pseudoRandom(N_EL, 1);
    const n = pseudoRandom(N_EL, 2);
    const f = Math.fround;
    const withSigma = (k: number): number[] => Array.from(x, (v, i) => f(v + f(n[i]! * sig[k]!)));
    expect(Array.from(s.addNoise(x, n, s.timesteps[3]!))).toEqual(withSigma(3));
    s.setBeginIndex(4);
    expect(Array.from(s.addNoise(x, n, s.timesteps[0]!))).toEqual(withSigma(4));
    s.step(pseudoRandom(N_EL, 3), s.timesteps[4]!, x, SHAPE, new CountingNoise());
    expect(Array.from(s.addNoise(x, n, s.timesteps[5]!))).toEqual(withSigma(5));
    // setTimesteps resets the begin index
    s.setTimesteps(8);
    expect(Array.from(s.addNoise(x, n, s.timesteps[2]!))).toEqual(withSigma(2));
  });

  it("the step index starts at the begin index whatever timestep is passed", () => {
    const a = createScheduler("euler_a", SD15);
    const b = createScheduler("euler_a", SD15);
    a.setTimesteps(6);
    b.setTimesteps(6);
    a.setBeginIndex(2);
    const x = pseudoRandom(N_EL, 1);
    const eps = pseudoRandom(N_EL, 2);
    const ra = a.step(eps, 12345, x, SHAPE, new CountingNoise());
    const rb = b.step(eps, b.timesteps[2]!, x, SHAPE, new CountingNoise());
    expect(Array.from(ra)).toEqual(Array.from(rb));
    expect(() => createScheduler("euler", SD15).step(eps, 12.5, x, SHAPE, new CountingNoise())).toThrow(/not in the schedule/);
  });
});

describe("chained txt2img replay (own latents fed back, recorded model outputs)", () => {
  for (const c of listReferenceCases().filter((k) => k.kind === "txt2img")) {
    it(c.name, () => {
      const ref = ReferenceCase.load(c.dir);
      const m = ref.manifest;
      const s = createScheduler(ref.schedulerName(), parseSchedulerConfig(m.scheduler.config), {
        eta: m.params.eta ?? 0,
      });
      s.setTimesteps(m.params.num_inference_steps);
      const init = ref.tensor("latents_init");
      let latents: Float32Array = init.data.map((v) => Math.fround(v * s.initNoiseSigma));
      const noise = new RecordedNoise(ref, ref.schedulerDraws());
      for (let i = 0; i < m.steps.length; i++) {
        const t = s.timesteps[i]!;
        expect(relativeError(latents, ref.at("step_sample", i).data)).toBeLessThanOrEqual(1e-5);
        s.scaleModelInput(latents, t);
        latents = s.step(ref.at("step_model_output", i).data, t, latents, init.shape, noise);
        expect(relativeError(latents, ref.at("latents_after_step", i).data), `step ${i}`).toBeLessThanOrEqual(1e-5);
      }
    });
  }
});
