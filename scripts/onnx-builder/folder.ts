/**
 * Writes SD-1.5-architecture (or SD 2.1's) model folders in the diffusers ONNX layout (model_index.json,
 * scheduler/, tokenizer/, text_encoder/, unet/ + weights.pb, vae_encoder/, vae_decoder/), built
 * once into a cache folder outside git and reused while the build stamp matches.
 */
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Graph, GraphCounts } from "./graph";
import { REFERENCE, sd15Config, sd21Config, textEncoder, unet, vaeDecoder, vaeEncoder, type ReferenceShapes, type Sd15Config } from "./sd15";

/** Bumped whenever the graphs change, so stale cached folders are rebuilt. */
export const BUILDER_VERSION = 2;

export type PartName = "text_encoder" | "unet" | "vae_encoder" | "vae_decoder";

export interface BuiltModel {
  dir: string;
  config: Sd15Config;
  /** Per part, for the reference inputs (see REFERENCE). */
  counts: Record<PartName, GraphCounts>;
  /** True when this call wrote the folder (false: taken from the cache). */
  built: boolean;
}

/** SD 1.5's PNDM scheduler config as its model repository ships it. */
export const SD15_SCHEDULER = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.27.2",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
};

function modelIndex(inpainting: boolean) {
  const onnx = ["diffusers", "OnnxRuntimeModel"];
  return {
    _class_name: inpainting ? "OnnxStableDiffusionInpaintPipeline" : "OnnxStableDiffusionPipeline",
    _diffusers_version: "0.27.2",
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ["diffusers", "PNDMScheduler"],
    text_encoder: onnx,
    tokenizer: ["transformers", "CLIPTokenizer"],
    unet: onnx,
    vae_decoder: onnx,
    vae_encoder: onnx,
  };
}

const TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];

/** The published network layouts the builder writes: SD 1.5's, or SD 2.1's (SD-Turbo's). */
export type BuiltArchitecture = "sd15" | "sd21";

export interface BuildOptions {
  /** Channel width multiplier (1 = SD 1.5). */
  width: number;
  /** Default sd15. */
  architecture?: BuiltArchitecture;
  inChannels?: 4 | 9;
  /** Where tokenizer/ is copied from (a diffusers folder's tokenizer/). */
  tokenizerDir: string;
  log?: (line: string) => void;
}

/** Builds the graphs (cheap: no weights are drawn) and counts them without writing anything. */
export function buildGraphs(width: number, inChannels: 4 | 9 = 4, ref: ReferenceShapes = REFERENCE, architecture: BuiltArchitecture = "sd15"): { config: Sd15Config; graphs: Record<PartName, Graph> } {
  const config = architecture === "sd21" ? sd21Config(width, inChannels) : sd15Config(width, inChannels);
  return { config, graphs: graphsFor(config, ref) };
}

/** The four graphs of any configuration (e.g. tinySdConfig(), the fixtures' export). */
export function graphsFor(config: Sd15Config, ref: ReferenceShapes = REFERENCE): Record<PartName, Graph> {
  return { text_encoder: textEncoder(config, ref), unet: unet(config, ref), vae_encoder: vaeEncoder(config, ref), vae_decoder: vaeDecoder(config, ref) };
}

/** Per-part counts for other input shapes (the bench's own image size and batch). */
export function countGraphs(width: number, ref: ReferenceShapes, inChannels: 4 | 9 = 4): Record<PartName, GraphCounts> {
  const { graphs } = buildGraphs(width, inChannels, ref);
  return Object.fromEntries(Object.entries(graphs).map(([k, g]) => [k, g.counts()])) as Record<PartName, GraphCounts>;
}

/** The folder name for a width: sd15-w1 (full size), sd15-w0.125, sd15-inpaint-w1, sd21-w1, ... */
export function folderName(width: number, inChannels: 4 | 9 = 4, architecture: BuiltArchitecture = "sd15"): string {
  return `${architecture}${inChannels === 9 ? "-inpaint" : ""}-w${width}`;
}

/** Returns the model folder under `cacheDir`, writing it first when missing or stale. */
export async function ensureModelFolder(cacheDir: string, options: BuildOptions): Promise<BuiltModel> {
  const inChannels = options.inChannels ?? 4;
  const dir = path.join(cacheDir, folderName(options.width, inChannels, options.architecture));
  const stampFile = path.join(dir, "underpaint-build.json");
  const { config, graphs } = buildGraphs(options.width, inChannels, REFERENCE, options.architecture);
  const counts = Object.fromEntries(Object.entries(graphs).map(([k, g]) => [k, g.counts()])) as Record<PartName, GraphCounts>;
  const stamp = JSON.stringify({ version: BUILDER_VERSION, config });
  const existing = await readFile(stampFile, "utf8").catch(() => null);
  if (existing !== null && JSON.parse(existing).stamp === stamp) return { dir, config, counts, built: false };

  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const log = options.log ?? (() => {});
  for (const part of ["text_encoder", "vae_encoder", "vae_decoder", "unet"] as const) {
    const start = Date.now();
    await graphs[part].write(path.join(dir, part, "model.onnx"), part === "unet" ? { externalData: "weights.pb" } : {});
    log(`  wrote ${part} (${(counts[part].weightBytes / 2 ** 20).toFixed(0)} MiB) in ${((Date.now() - start) / 1000).toFixed(1)} s`);
  }
  await writeFile(path.join(dir, "model_index.json"), JSON.stringify(modelIndex(inChannels === 9), null, 2) + "\n");
  await mkdir(path.join(dir, "scheduler"), { recursive: true });
  await writeFile(path.join(dir, "scheduler", "scheduler_config.json"), JSON.stringify(SD15_SCHEDULER, null, 2) + "\n");
  await mkdir(path.join(dir, "tokenizer"), { recursive: true });
  for (const file of TOKENIZER_FILES) await copyFile(path.join(options.tokenizerDir, file), path.join(dir, "tokenizer", file));
  // The stamp goes last: a half-written folder is rebuilt next time.
  await writeFile(stampFile, JSON.stringify({ stamp, counts }, null, 2) + "\n");
  return { dir, config, counts, built: true };
}
