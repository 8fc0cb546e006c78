/**
 * Replicas of the real repos the registry offers: tiny random-weight model folders (made from the
 * Stable-Diffusion-shaped fixtures in ../shared/fixtures) laid out as each repo publishes them, with
 * its file names, where its weights live (weights.pb, model.onnx_data, embedded in model.onnx),
 * Optimum's per-part config.json, its extra UNet inputs and its published model_index.json and
 * scheduler config. Tests serve them from a local hub imitation and pull them through the same code
 * a real download takes.
 *
 * float16 repos get float16 graphs made by casting the fixtures' (float32 torch exports) weights and
 * types: the structure of an fp16 export, not torch's fp16 tracing. Other differences from the real
 * repo are said in each replica's `gaps`.
 *
 *   npx tsx scripts/replicas.ts OUT_DIR     writes one folder per replica, named by its repo
 */
import { cp, mkdir, readFile, rm, writeFile, chmod, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import onnxProto from "onnx-proto";
import { convertModelFloats, externalizeInitializers, FLOAT, FLOAT16, initializerReader } from "../daemon/models/float-precision";

const { onnx } = onnxProto;
const here = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURES_DIR = process.env.UNDERPAINT_FIXTURES ?? path.resolve(here, "../../shared/fixtures");

export interface Replica {
  /** The hub repo it replicates. */
  repo: string;
  /** The fixture it is made from. */
  from: "tiny-sd" | "tiny-sd-inpaint" | "tiny-lcm" | "tiny-sd-turbo-config";
  /** Where the parts' weights live. */
  weights: "weights.pb" | "model.onnx_data" | "embedded";
  /** Every part a float16 export, as the repo ships it. */
  float16: boolean;
  /** Optimum writes each part's diffusers config.json beside its model.onnx. */
  partConfigs: boolean;
  /** The repo's scheduler/scheduler_config.json, as published. */
  scheduler: Record<string, unknown>;
  /** The repo's model_index.json pipeline class. */
  pipeline: string;
  gaps: string[];
}

/** runwayml's SD 1.5 scheduler config, as the SD 1.5 ONNX repos copy it (no timestep_spacing). */
const SD15_SCHEDULER = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.6.0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

async function fixtureScheduler(name: Replica["from"]): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(FIXTURES_DIR, name, "scheduler", "scheduler_config.json"), "utf8")) as Record<string, unknown>;
}

export async function replicas(): Promise<Replica[]> {
  return [
    {
      repo: "onnx-community/stable-diffusion-v1-5-ONNX",
      from: "tiny-sd",
      weights: "weights.pb",
      partConfigs: false,
      float16: false,
      scheduler: SD15_SCHEDULER,
      pipeline: "OnnxStableDiffusionPipeline",
      gaps: [],
    },
    {
      // An SD 1.5 export by Optimum (optimum-cli export onnx), as most community ONNX repos are.
      repo: "underpaint-replicas/optimum-sd-1.5",
      from: "tiny-sd",
      weights: "model.onnx_data",
      partConfigs: true,
      float16: false,
      scheduler: SD15_SCHEDULER,
      pipeline: "ORTStableDiffusionPipeline",
      gaps: ["input_ids are int32 (Optimum exports int64)", "the VAE encoder gives latent_sample (newer Optimum: latent_parameters)"],
    },
    {
      repo: "RanaLLC/stable-diffusion-v1-5-inpainting-onnx-fp16",
      from: "tiny-sd-inpaint",
      weights: "embedded",
      partConfigs: false,
      float16: true,
      scheduler: SD15_SCHEDULER,
      pipeline: "OnnxStableDiffusionInpaintPipeline",
      gaps: [],
    },
    {
      repo: "TensorStack/SD-Turbo-onnx",
      from: "tiny-sd-turbo-config",
      weights: "weights.pb",
      partConfigs: false,
      float16: true,
      scheduler: await fixtureScheduler("tiny-sd-turbo-config"),
      pipeline: "OnnxStableDiffusionPipeline",
      gaps: [],
    },
    {
      repo: "TheyCallMeHex/LCM-Dreamshaper-V7-ONNX",
      from: "tiny-lcm",
      weights: "model.onnx_data",
      partConfigs: false,
      float16: false,
      scheduler: await fixtureScheduler("tiny-lcm"),
      pipeline: "LatentConsistencyModelPipeline",
      gaps: [],
    },
  ];
}

const PARTS = ["text_encoder", "unet", "vae_encoder", "vae_decoder"] as const;

async function makeWritable(p: string): Promise<void> {
  const s = await stat(p);
  await chmod(p, s.isDirectory() ? 0o755 : 0o644);
  if (s.isDirectory()) for (const entry of await readdir(p)) await makeWritable(path.join(p, entry));
}

/** Moves a part's external weights to `target` (a new file name, or into model.onnx itself). */
async function placeWeights(partDir: string, target: Replica["weights"]): Promise<void> {
  const file = path.join(partDir, "model.onnx");
  const model = onnx.ModelProto.decode(await readFile(file));
  const external = (model.graph?.initializer ?? []).filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
  if (external.length === 0 || target === "weights.pb") return;
  const sources = new Map<string, Buffer>();
  for (const tensor of external) {
    const entry = (key: string) => (tensor.externalData ?? []).find((e) => e.key === key)?.value ?? undefined;
    const location = entry("location")!;
    if (!sources.has(location)) sources.set(location, await readFile(path.join(partDir, location)));
    if (target === "embedded") {
      const offset = Number(entry("offset") ?? 0);
      const length = Number(entry("length") ?? sources.get(location)!.length - offset);
      tensor.rawData = sources.get(location)!.subarray(offset, offset + length);
      tensor.externalData = [];
      tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
    } else {
      for (const e of tensor.externalData ?? []) if (e.key === "location") e.value = target;
    }
  }
  const [only] = [...sources.keys()];
  if (sources.size !== 1 || only === undefined) throw new Error(`${file}: expected one external weights file`);
  if (target === "model.onnx_data") await writeFile(path.join(partDir, target), sources.get(only)!);
  await rm(path.join(partDir, only));
  await writeFile(file, onnx.ModelProto.encode(model).finish());
}

/** Rewrites a part as a float16 export (weights, inputs and outputs in float16), its weights kept where they were. */
export async function toFloat16(partDir: string): Promise<void> {
  const file = path.join(partDir, "model.onnx");
  const model = onnx.ModelProto.decode(await readFile(file));
  const external = new Set((model.graph?.initializer ?? []).flatMap((t) => (t.externalData ?? []).filter((e) => e.key === "location").map((e) => e.value ?? "")));
  const reader = initializerReader(partDir);
  try {
    convertModelFloats(model, FLOAT, FLOAT16, reader);
  } finally {
    reader.close();
  }
  const [location] = [...external];
  if (location) {
    const chunks: Uint8Array[] = [];
    await externalizeInitializers(model, location, async (chunk) => {
      chunks.push(chunk);
    });
    await writeFile(path.join(partDir, location), Buffer.concat(chunks));
  }
  await writeFile(file, onnx.ModelProto.encode(model).finish());
}

/** The diffusers configs Optimum writes per part (what the loader reads of them). */
function partConfig(part: (typeof PARTS)[number], replica: Replica): Record<string, unknown> | null {
  switch (part) {
    case "unet":
      return {
        _class_name: "UNet2DConditionModel",
        in_channels: replica.from === "tiny-sd-inpaint" ? 9 : 4,
        out_channels: 4,
        sample_size: 32,
        block_out_channels: [32, 64],
        cross_attention_dim: 32,
        ...(replica.from === "tiny-lcm" ? { time_cond_proj_dim: 256 } : {}),
      };
    case "vae_decoder":
    case "vae_encoder":
      return { _class_name: "AutoencoderKL", block_out_channels: [32, 32, 32, 32], latent_channels: 4, sample_size: 64, scaling_factor: 0.18215 };
    case "text_encoder":
      return { architectures: ["CLIPTextModel"], hidden_size: 32, max_position_embeddings: 77, model_type: "clip_text_model" };
  }
}

/** Writes one replica folder at `dest` (replacing what is there). */
export async function writeReplica(replica: Replica, dest: string): Promise<void> {
  await rm(dest, { recursive: true, force: true });
  await cp(path.join(FIXTURES_DIR, replica.from), dest, { recursive: true });
  await makeWritable(dest);
  for (const part of PARTS) {
    await placeWeights(path.join(dest, part), replica.weights);
    if (replica.float16) await toFloat16(path.join(dest, part));
    const config = replica.partConfigs ? partConfig(part, replica) : null;
    if (config) await writeFile(path.join(dest, part, "config.json"), JSON.stringify(config, null, 2));
  }
  await writeFile(path.join(dest, "scheduler", "scheduler_config.json"), JSON.stringify(replica.scheduler, null, 2));
  const index = JSON.parse(await readFile(path.join(dest, "model_index.json"), "utf8")) as Record<string, unknown>;
  const scheduler = String(replica.scheduler._class_name);
  await writeFile(path.join(dest, "model_index.json"), JSON.stringify({ ...index, _class_name: replica.pipeline, scheduler: ["diffusers", scheduler] }, null, 2));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: npx tsx scripts/replicas.ts OUT_DIR");
    process.exit(2);
  }
  await mkdir(out, { recursive: true });
  for (const replica of await replicas()) {
    const dest = path.join(out, replica.repo.replace("/", "--"));
    await writeReplica(replica, dest);
    console.log(`${replica.repo} -> ${dest}${replica.gaps.length ? ` (not replicated: ${replica.gaps.join("; ")})` : ""}`);
  }
}
