/**
 * scheduler/scheduler_config.json of a diffusers model folder, and how a scheduler class picks its
 * settings from it (diffusers 0.27.2 ConfigMixin.from_config / extract_init_dict).
 */
import { z } from "zod";

/** Numbers that Python's json writes as strings or non-standard literals ("-inf", "Infinity", "NaN"). */
const looseNumber = z.union([
  z.number(),
  z
    .string()
    .transform((s, ctx) => {
      const t = s.trim().toLowerCase();
      if (t === "-inf" || t === "-infinity") return -Infinity;
      if (t === "inf" || t === "+inf" || t === "infinity" || t === "+infinity") return Infinity;
      if (t === "nan") return NaN;
      const v = Number(t);
      if (t === "" || Number.isNaN(v)) {
        ctx.addIssue({ code: "custom", message: `not a number: ${JSON.stringify(s)}` });
        return z.NEVER;
      }
      return v;
    }),
]);

/**
 * Every key any of our schedulers reads. All optional: a missing key takes the scheduler class's own
 * default (they differ between classes, see each scheduler's DEFAULTS). String-valued choices are kept
 * as strings here and checked by the scheduler that uses them, so a config written for one class still
 * parses when another class is built from it. Unknown keys pass through.
 */
export const SchedulerConfigSchema = z.looseObject({
  _class_name: z.string().optional(),
  _diffusers_version: z.string().optional(),
  /** Keys the config file did not set (diffusers records them on load and drops them for other classes). */
  _use_default_values: z.array(z.string()).optional(),

  num_train_timesteps: z.number().int().positive().optional(),
  beta_start: looseNumber.optional(),
  beta_end: looseNumber.optional(),
  /** "linear" | "scaled_linear" | "squaredcos_cap_v2" */
  beta_schedule: z.string().optional(),
  trained_betas: z.array(looseNumber).nullable().optional(),
  /** "epsilon" | "v_prediction" | "sample" */
  prediction_type: z.string().optional(),
  /** "leading" | "linspace" | "trailing" */
  timestep_spacing: z.string().optional(),
  steps_offset: z.number().int().optional(),
  rescale_betas_zero_snr: z.boolean().optional(),

  // PNDM / DDIM / LCM
  skip_prk_steps: z.boolean().optional(),
  set_alpha_to_one: z.boolean().optional(),
  clip_sample: z.boolean().optional(),
  clip_sample_range: looseNumber.optional(),
  thresholding: z.boolean().optional(),
  dynamic_thresholding_ratio: looseNumber.optional(),
  sample_max_value: looseNumber.optional(),

  // Euler
  /** "linear" | "log_linear" */
  interpolation_type: z.string().optional(),
  use_karras_sigmas: z.boolean().nullable().optional(),
  sigma_min: looseNumber.nullable().optional(),
  sigma_max: looseNumber.nullable().optional(),
  /** "discrete" | "continuous" */
  timestep_type: z.string().optional(),

  // DPM-Solver multistep
  solver_order: z.number().int().optional(),
  /** "dpmsolver++" (others are not ported) */
  algorithm_type: z.string().optional(),
  /** "midpoint" | "heun" */
  solver_type: z.string().optional(),
  lower_order_final: z.boolean().optional(),
  euler_at_final: z.boolean().optional(),
  use_lu_lambdas: z.boolean().nullable().optional(),
  /** "zero" | "sigma_min" */
  final_sigmas_type: z.string().nullable().optional(),
  lambda_min_clipped: looseNumber.optional(),
  variance_type: z.string().nullable().optional(),

  // LCM
  original_inference_steps: z.number().int().optional(),
  timestep_scaling: looseNumber.optional(),
});

export type SchedulerConfig = z.infer<typeof SchedulerConfigSchema>;
type SchedulerConfigInput = z.input<typeof SchedulerConfigSchema>;

/** Parses scheduler_config.json's content (throws a ZodError on wrong types). */
export function parseSchedulerConfig(json: unknown): SchedulerConfig {
  return SchedulerConfigSchema.parse(json);
}

/** Parses the text of scheduler_config.json. */
export function parseSchedulerConfigText(text: string): SchedulerConfig {
  return parseSchedulerConfig(JSON.parse(text) as SchedulerConfigInput);
}

/** Known config keys (everything the schema names). */
export type SchedulerConfigKey = Exclude<keyof SchedulerConfig, `_${string}`>;

/**
 * A scheduler class's resolved settings: its defaults, overridden by the config's values.
 *
 * diffusers' rules (extract_init_dict): keys listed in `_use_default_values` are dropped; the class
 * reads only its own keys. Which keys of a config written for another class count as chosen is
 * decided before this, by `carriedConfig` (createScheduler applies it). `overrides` win over both.
 */
export function resolveConfig<D extends Partial<Record<SchedulerConfigKey, unknown>>>(
  className: string,
  defaults: D,
  config: SchedulerConfig,
  overrides: Partial<D> = {},
): D {
  const dropped = new Set(config._use_default_values ?? []);
  const out: Record<string, unknown> = { ...defaults };
  const src = config as Record<string, unknown>;
  for (const key of Object.keys(defaults)) {
    if (dropped.has(key)) continue;
    const value = src[key];
    if (value !== undefined) out[key] = value;
  }
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) out[key] = value;
  return out as D;
}

/**
 * diffusers' `Target.from_config(config)` for a config written for another class: every key the
 * file sets travels across classes (SD-Turbo's `timestep_spacing: "trailing"`, SD 2.x's
 * `prediction_type: "v_prediction"`, `use_karras_sigmas`), and keys it did not set
 * (`_use_default_values`) keep the target class's defaults. One key needs more care:
 * `timestep_spacing` arrived in diffusers 0.17, so the SD 1.x configs never set it (diffusers then
 * gives Euler and DPM++ their "linspace", as in the reference cases), while the same configs re-saved
 * by a newer save_pretrained spell out the writing class's default ("leading" for PNDM). A spacing
 * equal to the writer's own default is therefore taken as not chosen; any other spacing was chosen and
 * is carried. `writerSpacing` gives the default spacing of the class named by `_class_name`
 * (undefined: a class we do not know, whose spacing is carried).
 */
export function carriedConfig(
  targetClass: string,
  config: SchedulerConfig,
  writerSpacing: (className: string) => string | undefined,
): SchedulerConfig {
  const writer = config._class_name;
  if (writer === undefined || writer === targetClass || config.timestep_spacing === undefined) return config;
  if (config.timestep_spacing !== writerSpacing(writer)) return config;
  return { ...config, _use_default_values: [...(config._use_default_values ?? []), "timestep_spacing"] };
}

export function checkChoice<T extends string>(className: string, key: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`${className}: ${key} ${JSON.stringify(value)} is not supported (expected one of ${allowed.join(", ")})`);
  }
  return value as T;
}
