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
 * reads only its own keys. One deliberate addition: when the config was written for ANOTHER class
 * (`_class_name` differs), `timestep_spacing` is dropped too, so every scheduler keeps its own default
 * spacing (PNDM/DDIM leading, Euler/Euler a/DPM++ linspace). This is what diffusers does with the
 * original SD 1.x configs, which never set the key (so it lands in `_use_default_values`), and what the
 * reference cases were made with; a config saved by a newer diffusers writes "leading" explicitly,
 * which diffusers would then carry over to Euler/DPM++. `options.timestepSpacing` overrides either way.
 */
export function resolveConfig<D extends Partial<Record<SchedulerConfigKey, unknown>>>(
  className: string,
  defaults: D,
  config: SchedulerConfig,
  overrides: Partial<D> = {},
): D {
  const dropped = new Set(config._use_default_values ?? []);
  if (config._class_name !== undefined && config._class_name !== className) dropped.add("timestep_spacing");
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

export function checkChoice<T extends string>(className: string, key: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(`${className}: ${key} ${JSON.stringify(value)} is not supported (expected one of ${allowed.join(", ")})`);
  }
  return value as T;
}
