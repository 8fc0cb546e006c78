/**
 * Reads a recorded diffusers pipeline run (reference/cases/CASE: manifest.json + little-endian .bin
 * tensors), as described in shared/fixtures/README.md. Only the manifest fields we rely on are
 * validated; everything else passes through.
 */
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parseSchedulerConfig, SCHEDULER_NAMES, schedulerForClass, type SchedulerName } from "../../../../daemon/engine/schedulers";

const here = path.dirname(fileURLToPath(import.meta.url));

/** shared/fixtures (override with UNDERPAINT_FIXTURES). */
export const FIXTURES_DIR = process.env.UNDERPAINT_FIXTURES ?? path.resolve(here, "../../../../../shared/fixtures");
export const REFERENCE_DIR = path.join(FIXTURES_DIR, "reference");

const TensorEntry = z.looseObject({
  file: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  dtype: z.enum(["float32", "int32"]),
  note: z.string().nullable().optional(),
});

const RngDraw = z.looseObject({
  index: z.number().int(),
  tensor: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  caller: z.string(),
});

export const CaseManifestSchema = z.looseObject({
  case: z.string(),
  /** "txt2img" | "img2img" | "inpaint" | "inpaint_legacy" */
  kind: z.string(),
  pipeline: z.string(),
  /** tiny-sd | tiny-sd-inpaint: resolve as FIXTURES_DIR/model */
  model: z.string(),
  params: z.looseObject({
    prompt: z.union([z.string(), z.array(z.string())]).nullable().optional(),
    negative_prompt: z.union([z.string(), z.array(z.string())]).nullable().optional(),
    height: z.number().int(),
    width: z.number().int(),
    num_inference_steps: z.number().int().positive(),
    guidance_scale: z.number(),
    strength: z.number().nullable(),
    eta: z.number().nullable().optional(),
    num_images_per_prompt: z.number().int().optional(),
    batch_size: z.number().int().positive(),
  }),
  scheduler: z.looseObject({
    /** pndm | ddim | euler | euler_a | dpmpp_2m | dpmpp_2m_karras | lcm */
    kind: z.string(),
    description: z.string().optional(),
    config: z.record(z.string(), z.unknown()),
  }),
  scheduler_state: z.looseObject({
    timesteps: z.array(z.number()),
    sigmas: z.array(z.number()).nullable().optional(),
    init_noise_sigma: z.number(),
    order: z.number().int(),
  }),
  steps: z.array(
    z.looseObject({
      i: z.number().int(),
      timestep: z.number(),
      sigma: z.number().nullable().optional(),
      sigma_next: z.number().nullable().optional(),
    }),
  ),
  rng: z.looseObject({
    seed: z.number().int(),
    draws: z.array(RngDraw),
  }),
  vae_scaling_factor: z.number().optional(),
  vae_scale_factor: z.number().optional(),
  tensors: z.record(z.string(), TensorEntry),
});
export type CaseManifest = z.infer<typeof CaseManifestSchema>;
export type RngDrawEntry = z.infer<typeof RngDraw>;

const IndexSchema = z.looseObject({
  cases: z.array(
    z.looseObject({
      case: z.string(),
      kind: z.string(),
      scheduler: z.string(),
      dir: z.string(),
    }),
  ),
});

export interface Tensor<T extends Float32Array | Int32Array = Float32Array> {
  data: T;
  shape: number[];
}

function readLittleEndian(file: string, dtype: "float32" | "int32", count: number): Float32Array | Int32Array {
  const buf = readFileSync(file);
  if (buf.byteLength !== count * 4) {
    throw new Error(`${file}: ${buf.byteLength} bytes, expected ${count * 4}`);
  }
  const out = dtype === "float32" ? new Float32Array(count) : new Int32Array(count);
  if (os.endianness() === "LE") {
    new Uint8Array(out.buffer).set(buf);
  } else {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let i = 0; i < count; i++) out[i] = dtype === "float32" ? view.getFloat32(i * 4, true) : view.getInt32(i * 4, true);
  }
  return out;
}

/** Is this draw the scheduler's (randn_tensor called from scheduler.step)? */
export function isSchedulerDraw(draw: RngDrawEntry): boolean {
  return draw.caller.split("<-").includes("step");
}

export class ReferenceCase {
  private readonly cache = new Map<string, Tensor<Float32Array | Int32Array>>();

  private constructor(
    readonly dir: string,
    readonly manifest: CaseManifest,
  ) {}

  static load(dir: string): ReferenceCase {
    const json: unknown = JSON.parse(readFileSync(path.join(dir, "manifest.json"), "utf8"));
    return new ReferenceCase(dir, CaseManifestSchema.parse(json));
  }

  get name(): string {
    return this.manifest.case;
  }

  has(name: string): boolean {
    return name in this.manifest.tensors;
  }

  private read(name: string): Tensor<Float32Array | Int32Array> {
    const hit = this.cache.get(name);
    if (hit) return hit;
    const entry = this.manifest.tensors[name];
    if (!entry) throw new Error(`${this.name}: no tensor ${name}`);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    const t = { data: readLittleEndian(path.join(this.dir, entry.file), entry.dtype, count), shape: [...entry.shape] };
    this.cache.set(name, t);
    return t;
  }

  /** A float32 tensor. */
  tensor(name: string): Tensor<Float32Array> {
    const t = this.read(name);
    if (!(t.data instanceof Float32Array)) throw new Error(`${this.name}: ${name} is not float32`);
    return t as Tensor<Float32Array>;
  }

  /** An int32 tensor (token ids). */
  tensorInt32(name: string): Tensor<Int32Array> {
    const t = this.read(name);
    if (!(t.data instanceof Int32Array)) throw new Error(`${this.name}: ${name} is not int32`);
    return t as Tensor<Int32Array>;
  }

  /** Entry `index` along the first axis of a stacked tensor ([steps, ...] / [calls, ...]), as a view. */
  at(name: string, index: number): Tensor<Float32Array> {
    const t = this.tensor(name);
    const [n, ...rest] = t.shape;
    if (n === undefined || index < 0 || index >= n) throw new RangeError(`${this.name}: ${name}[${index}] out of range`);
    const per = rest.reduce((a, b) => a * b, 1);
    return { data: t.data.subarray(index * per, (index + 1) * per), shape: rest };
  }

  /** Our scheduler for the case: its kind when that is one of ours ("turbo_euler_a" etc.: the class its config names). */
  schedulerName(): SchedulerName {
    const kind = this.manifest.scheduler.kind;
    if ((SCHEDULER_NAMES as readonly string[]).includes(kind)) return kind as SchedulerName;
    const config = parseSchedulerConfig(this.manifest.scheduler.config);
    const name = config._class_name === undefined ? undefined : schedulerForClass(config._class_name, config);
    if (!name) throw new Error(`unknown scheduler ${kind}`);
    return name;
  }

  /** The draws made by scheduler.step, in call order. */
  schedulerDraws(): RngDrawEntry[] {
    return this.manifest.rng.draws.filter(isSchedulerDraw);
  }

  /** The scheduler's img2img start (diffusers get_timesteps): t_start, 0 without strength. */
  tStart(): number {
    const { num_inference_steps: n, strength } = this.manifest.params;
    if (strength === null || this.manifest.kind === "txt2img") return 0;
    const init = Math.min(Math.floor(n * strength), n);
    return Math.max(n - init, 0);
  }
}

/** The cases listed in REFERENCE_DIR/index.json (or another folder of the same format). */
export function listReferenceCases(root: string = REFERENCE_DIR): { name: string; kind: string; scheduler: string; dir: string }[] {
  const index = IndexSchema.parse(JSON.parse(readFileSync(path.join(root, "index.json"), "utf8")) as unknown);
  return index.cases.map((c) => ({ name: c.case, kind: c.kind, scheduler: c.scheduler, dir: path.join(root, c.dir) }));
}

/** A NoiseSource that hands out the recorded draws in order (checking each shape). */
export class RecordedNoise {
  private next = 0;

  constructor(
    private readonly ref: ReferenceCase,
    private readonly draws: RngDrawEntry[],
  ) {}

  randn(shape: readonly number[]): Float32Array {
    const draw = this.draws[this.next];
    if (!draw) throw new Error(`${this.ref.name}: the scheduler drew more noise than recorded (${this.draws.length} draws)`);
    if (draw.shape.join(",") !== shape.join(",")) {
      throw new Error(`${this.ref.name}: draw ${draw.tensor} has shape [${draw.shape.join(", ")}], asked for [${shape.join(", ")}]`);
    }
    this.next++;
    return Float32Array.from(this.ref.tensor(draw.tensor).data);
  }

  get used(): number {
    return this.next;
  }
}

/** max |a - b| / max |ref| (0 when ref is all zero and a == b). */
export function relativeError(actual: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (actual.length !== ref.length) throw new RangeError(`length ${actual.length} != ${ref.length}`);
  let maxRef = 0;
  let maxDiff = 0;
  for (let i = 0; i < ref.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    const d = Math.abs(actual[i]! - ref[i]!);
    if (!(d <= maxDiff)) maxDiff = d; // NaN propagates
  }
  if (maxDiff === 0) return 0;
  return maxDiff / maxRef;
}
