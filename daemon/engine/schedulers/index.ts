/**
 * Schedulers: ports of diffusers 0.27.2 behind one interface, and the factory that builds one from a
 * model folder's scheduler/scheduler_config.json.
 */
import { carriedConfig, type SchedulerConfig } from "./config";
import { DDIM_DEFAULTS, DdimScheduler } from "./ddim";
import { DPM_SOLVER_DEFAULTS, DpmSolverMultistepScheduler } from "./dpm-solver";
import { EULER_DEFAULTS, EulerScheduler } from "./euler";
import { EULER_ANCESTRAL_DEFAULTS, EulerAncestralScheduler } from "./euler-ancestral";
import { LCM_DEFAULTS, LcmScheduler } from "./lcm";
import { PNDM_DEFAULTS, PndmScheduler } from "./pndm";
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

/** The default timestep spacing of the diffusers classes whose configs ship with models. */
const DEFAULT_SPACING: Readonly<Record<string, string>> = {
  PNDMScheduler: PNDM_DEFAULTS.timestep_spacing,
  DDIMScheduler: DDIM_DEFAULTS.timestep_spacing,
  EulerDiscreteScheduler: EULER_DEFAULTS.timestep_spacing,
  EulerAncestralDiscreteScheduler: EULER_ANCESTRAL_DEFAULTS.timestep_spacing,
  DPMSolverMultistepScheduler: DPM_SOLVER_DEFAULTS.timestep_spacing,
  LCMScheduler: LCM_DEFAULTS.timestep_spacing,
  // classes we do not run (diffusers 0.27.2 defaults)
  DDPMScheduler: "leading",
  LMSDiscreteScheduler: "linspace",
  HeunDiscreteScheduler: "linspace",
  UniPCMultistepScheduler: "linspace",
  DEISMultistepScheduler: "linspace",
  KDPM2DiscreteScheduler: "linspace",
};

/** Our scheduler for a diffusers class name (what a model's own scheduler_config.json asks for), if we run it. */
export function schedulerForClass(className: string, config: SchedulerConfig = {}): SchedulerName | undefined {
  if (className === "DPMSolverMultistepScheduler") return config.use_karras_sigmas ? "dpmpp_2m_karras" : "dpmpp_2m";
  const names = Object.keys(SCHEDULER_CLASS_NAMES) as SchedulerName[];
  return names.find((name) => SCHEDULER_CLASS_NAMES[name] === className);
}

/**
 * Builds a scheduler the way diffusers' `Cls.from_config(pipe.scheduler.config, **overrides)` does:
 * the config's keys the class knows override the class's defaults, and a config written for another
 * class carries what its author chose (carriedConfig: SD-Turbo's trailing spacing reaches Euler
 * ancestral; SD 1.x's PNDM "leading", PNDM's default, leaves Euler and DPM++ their "linspace"). The
 * overrides per name:
 * - dpmpp_2m: algorithm_type "dpmsolver++", solver_order 2, use_karras_sigmas false;
 * - dpmpp_2m_karras: the same with use_karras_sigmas true.
 * PNDM takes the config's skip_prk_steps (SD 1.x sets it: PLMS).
 */
export function createScheduler(name: SchedulerName, fileConfig: SchedulerConfig, options: SchedulerOptions = {}): Scheduler {
  const config = carriedConfig(SCHEDULER_CLASS_NAMES[name], fileConfig, (className) => DEFAULT_SPACING[className]);
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
