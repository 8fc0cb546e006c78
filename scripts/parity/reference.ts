/** Reading diffusers reference cases: index.json, each case's manifest.json and its .bin tensors. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { parseSchedulerConfig, SCHEDULER_NAMES, schedulerForClass, type SchedulerName } from "../../daemon/engine/schedulers";

const TensorEntry = z.object({
  file: z.string(),
  shape: z.array(z.number().int().min(0)),
  dtype: z.enum(["float32", "int32"]),
});

const PromptValue = z.union([z.string(), z.array(z.string())]);

export const CaseManifest = z.looseObject({
  case: z.string(),
  kind: z.string(),
  model: z.string(),
  params: z.looseObject({
    prompt: PromptValue,
    negative_prompt: z.union([PromptValue, z.null()]).optional(),
    height: z.number().int(),
    width: z.number().int(),
    num_inference_steps: z.number().int(),
    guidance_scale: z.number(),
    strength: z.number().nullable().optional(),
    eta: z.number().nullable().optional(),
    num_images_per_prompt: z.number().int().default(1),
  }),
  scheduler: z.looseObject({
    /** our scheduler name, or a case family such as "turbo_euler_a" (then config._class_name says which) */
    kind: z.string(),
    config: z.record(z.string(), z.unknown()),
    /** set when diffusers built the scheduler with from_config of the model folder's own file */
    config_file: z.string().optional(),
  }),
  scheduler_state: z.looseObject({ timesteps: z.array(z.number()) }),
  identical_to_generator_only_run: z.boolean().nullable().optional(),
  rng: z.looseObject({
    seed: z.number().int(),
    draws: z.array(
      z.looseObject({ tensor: z.string(), shape: z.array(z.number().int()), caller: z.string().optional(), from_generator: z.boolean().optional() }),
    ),
  }),
  tensors: z.record(z.string(), TensorEntry),
});
export type CaseManifest = z.infer<typeof CaseManifest>;

/** The engine's scheduler a case ran: its kind when that is one of ours, else the class its config names. */
export function caseScheduler(manifest: CaseManifest): SchedulerName | undefined {
  const kind = manifest.scheduler.kind;
  if ((SCHEDULER_NAMES as readonly string[]).includes(kind)) return kind as SchedulerName;
  const config = parseSchedulerConfig(manifest.scheduler.config);
  return config._class_name === undefined ? undefined : schedulerForClass(config._class_name, config);
}

export const ReferenceIndex = z.looseObject({
  cases: z.array(z.looseObject({ case: z.string(), kind: z.string(), dir: z.string() })),
});

export interface LoadedTensor {
  data: Float32Array | Int32Array;
  shape: number[];
}

export class ReferenceCase {
  private constructor(
    readonly dir: string,
    readonly manifest: CaseManifest,
  ) {}

  static async load(dir: string): Promise<ReferenceCase> {
    const file = path.join(dir, "manifest.json");
    const parsed = CaseManifest.safeParse(JSON.parse(await readFile(file, "utf8")));
    if (!parsed.success) throw new Error(`${file}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    return new ReferenceCase(dir, parsed.data);
  }

  has(name: string): boolean {
    return name in this.manifest.tensors;
  }

  async tensor(name: string): Promise<LoadedTensor> {
    const entry = this.manifest.tensors[name];
    if (!entry) throw new Error(`case ${this.manifest.case} has no tensor ${name}`);
    const bytes = await readFile(path.join(this.dir, entry.file));
    const count = entry.shape.reduce((a, b) => a * b, 1);
    if (bytes.byteLength !== count * 4) throw new Error(`${entry.file}: ${bytes.byteLength} bytes for shape [${entry.shape.join(", ")}]`);
    const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    return { data: entry.dtype === "int32" ? new Int32Array(copy) : new Float32Array(copy), shape: entry.shape };
  }

  async floats(name: string): Promise<Float32Array> {
    const t = await this.tensor(name);
    if (!(t.data instanceof Float32Array)) throw new Error(`${name} is not float32`);
    return t.data;
  }

  /** Prompts as a list, one per batch item (num_images_per_prompt repeats each in place, as diffusers does). */
  prompts(): { prompts: string[]; negatives: string[] } {
    const { params } = this.manifest;
    const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]);
    const prompts = list(params.prompt);
    const negativeRaw = params.negative_prompt ?? null;
    const negatives = negativeRaw === null ? prompts.map(() => "") : list(negativeRaw);
    const repeat = (xs: string[]) => xs.flatMap((x) => Array.from({ length: params.num_images_per_prompt }, () => x));
    return { prompts: repeat(prompts), negatives: repeat(negatives.length === 1 && prompts.length > 1 ? prompts.map(() => negatives[0]!) : negatives) };
  }
}
