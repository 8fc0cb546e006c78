/**
 * Schedulers: ports of diffusers 0.27.2 behind one interface, and the factory that builds one from a
 * model folder's scheduler/scheduler_config.json.
 */
import type { SchedulerConfig } from "./config";
import { DdimScheduler } from "./ddim";
import { DpmSolverMultistepScheduler } from "./dpm-solver";
import { EulerScheduler } from "./euler";
import { EulerAncestralScheduler } from "./euler-ancestral";
import { LcmScheduler } from "./lcm";
import { PndmScheduler } from "./pndm";
import type { Scheduler, SchedulerName, SchedulerOptions } from "./types";

export type { NoiseSource, Scheduler, SchedulerName, SchedulerOptions, TimestepSpacing } from "./types";
export { SCHEDULER_NAMES } from "./types";
export {
  parseSchedulerConfig,
  parseSchedulerConfigText,
  SchedulerConfigSchema,
  type SchedulerConfig,
} from "./config";
export { DdimScheduler } from "./ddim";
export { DpmSolverMultistepScheduler } from "./dpm-solver";
export { EulerScheduler } from "./euler";
export { EulerAncestralScheduler } from "./euler-ancestral";
export { LcmScheduler } from "./lcm";
export { PndmScheduler } from "./pndm";

/** The diffusers class behind each name (what `_class_name` says when a config was written for it). */
export const SCHEDULER_CLASS_NAMES: Readonly<Record<SchedulerName, string>> = {
  pndm: "PNDMScheduler",
  ddim: "DDIMScheduler",
  euler: "EulerDiscreteScheduler",
  euler_a: "EulerAncestralDiscreteScheduler",
  dpmpp_2m: "DPMSolverMultistepScheduler",
  dpmpp_2m_karras: "DPMSolverMultistepScheduler",
  lcm: "LCMScheduler",
};

/**
 * Builds a scheduler the way diffusers' `Cls.from_config(pipe.scheduler.config, **overrides)` does:
 * the config's keys the class knows override the class's defaults. When `_class_name` names another
 * class (the usual case: a PNDM config from an SD 1.x folder), `timestep_spacing` is not carried over,
 * so each scheduler keeps its own default (PNDM/DDIM/LCM leading, Euler/Euler a/DPM++ linspace), as
 * diffusers does with SD 1.x's original config. The overrides per name:
 * - dpmpp_2m: algorithm_type "dpmsolver++", solver_order 2, use_karras_sigmas false;
 * - dpmpp_2m_karras: the same with use_karras_sigmas true.
 * PNDM takes the config's skip_prk_steps (SD 1.x sets it: PLMS).
 */
export function createScheduler(name: SchedulerName, config: SchedulerConfig, options: SchedulerOptions = {}): Scheduler {
  switch (name) {
    case "pndm":
      return new PndmScheduler(config, options);
    case "ddim":
      return new DdimScheduler(config, options);
    case "euler":
      return new EulerScheduler(config, options);
    case "euler_a":
      return new EulerAncestralScheduler(config, options);
    case "dpmpp_2m":
      return new DpmSolverMultistepScheduler(name, config, options, {
        algorithm_type: "dpmsolver++",
        solver_order: 2,
        use_karras_sigmas: false,
      });
    case "dpmpp_2m_karras":
      return new DpmSolverMultistepScheduler(name, config, options, {
        algorithm_type: "dpmsolver++",
        solver_order: 2,
        use_karras_sigmas: true,
      });
    case "lcm":
      return new LcmScheduler(config, options);
    default: {
      const never: never = name;
      throw new Error(`unknown scheduler ${String(never)}`);
    }
  }
}
