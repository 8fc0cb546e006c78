/**
 * Schedules against diffusers 0.27.2 (shared/fixtures/schedules.json): alphas_cumprod, timesteps,
 * sigmas, init_noise_sigma and order of the 7 schedulers for 1, 4, 20 and 50 steps.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  createScheduler,
  parseSchedulerConfig,
  parseSchedulerConfigText,
  SCHEDULER_NAMES,
  type SchedulerName,
} from "../../../../daemon/engine/schedulers";
import { FIXTURES_DIR } from "./reference-case";

const SchedulesSchema = z.looseObject({
  diffusers_version: z.string(),
  alphas_cumprod: z.array(z.number()),
  schedulers: z.record(
    z.string(),
    z.looseObject({
      config: z.record(z.string(), z.unknown()),
      steps: z.record(
        z.string(),
        z.looseObject({
          timesteps: z.array(z.number()),
          timesteps_torch_dtype: z.string(),
          init_noise_sigma: z.number(),
          order: z.number().int(),
          sigmas: z.array(z.number()).optional(),
        }),
      ),
    }),
  ),
});

const schedules = SchedulesSchema.parse(JSON.parse(readFileSync(path.join(FIXTURES_DIR, "schedules.json"), "utf8")) as unknown);
const tinySdConfig = parseSchedulerConfigText(
  readFileSync(path.join(FIXTURES_DIR, "tiny-sd", "scheduler", "scheduler_config.json"), "utf8"),
);

function entry(name: SchedulerName) {
  const e = schedules.schedulers[name];
  if (!e) throw new Error(`schedules.json has no ${name}`);
  return e;
}

describe("schedules.json (diffusers 0.27.2)", () => {
  it("covers every scheduler we offer", () => {
    expect(schedules.diffusers_version).toBe("0.27.2");
    expect(Object.keys(schedules.schedulers).sort()).toEqual([...SCHEDULER_NAMES].sort());
  });

  for (const name of SCHEDULER_NAMES) {
    describe(name, () => {
      it("alphas_cumprod is bit-exact", () => {
        const s = createScheduler(name, parseSchedulerConfig(entry(name).config));
        expect(Array.from(s.alphasCumprod)).toEqual(schedules.alphas_cumprod);
      });

      for (const [n, want] of Object.entries(entry(name).steps)) {
        it(`${n} steps: timesteps, sigmas, init_noise_sigma, order`, () => {
          const s = createScheduler(name, parseSchedulerConfig(entry(name).config));
          s.setTimesteps(Number(n));
          expect(Array.from(s.timesteps)).toEqual(want.timesteps);
          if (want.timesteps_torch_dtype === "torch.int64") {
            for (const t of s.timesteps) expect(Number.isInteger(t)).toBe(true);
          } else {
            for (const t of s.timesteps) expect(Math.fround(t)).toBe(t);
          }
          if (want.sigmas) {
            expect(s.sigmas).toBeDefined();
            expect(Array.from(s.sigmas!)).toEqual(want.sigmas);
          } else {
            expect(s.sigmas).toBeUndefined();
          }
          expect(s.initNoiseSigma).toBe(want.init_noise_sigma);
          expect(s.order).toBe(want.order);
        });
      }

      it("the SD 1.x model folder's PNDM config gives the same schedules (own timestep_spacing)", () => {
        for (const [n, want] of Object.entries(entry(name).steps)) {
          const s = createScheduler(name, tinySdConfig);
          s.setTimesteps(Number(n));
          expect(Array.from(s.timesteps)).toEqual(want.timesteps);
          if (want.sigmas) expect(Array.from(s.sigmas!)).toEqual(want.sigmas);
          expect(s.initNoiseSigma).toBe(want.init_noise_sigma);
        }
      });
    });
  }
});

/**
 * numpy-schedules.json (numpy-schedules.py): the numpy side of set_timesteps for every spacing and
 * step counts from 1 to 100, SD 1.5 betas, steps_offset 1.
 */
const NumpySchedulesSchema = z.looseObject({
  steps_offset: z.number().int(),
  schedules: z.record(z.string(), z.object({ timesteps: z.array(z.number()), sigmas: z.array(z.number()).optional() })),
});
const numpySchedules = NumpySchedulesSchema.parse(
  JSON.parse(readFileSync(new URL("./numpy-schedules.json", import.meta.url), "utf8")) as unknown,
);

describe("numpy-schedules.json (all spacings, 1-100 steps)", () => {
  const base = parseSchedulerConfig({ ...entry("pndm").config, steps_offset: numpySchedules.steps_offset });
  for (const [key, want] of Object.entries(numpySchedules.schedules)) {
    const [name, spacing, n] = key.split("/") as [SchedulerName, "leading" | "linspace" | "trailing", string];
    const names: SchedulerName[] = name === "euler" ? ["euler", "euler_a"] : [name];
    for (const nm of names) {
      it(`${nm} ${spacing} ${n}`, () => {
        const s = createScheduler(nm, base, { timestepSpacing: spacing });
        s.setTimesteps(Number(n));
        expect(Array.from(s.timesteps)).toEqual(want.timesteps);
        if (want.sigmas) expect(Array.from(s.sigmas!)).toEqual(want.sigmas);
      });
    }
  }
});
