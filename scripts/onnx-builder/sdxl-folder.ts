/**
 * Writes an SDXL model folder in the layout Optimum exports and the hub's SDXL repos ship:
 * model_index.json (StableDiffusionXLPipeline, force_zeros_for_empty_prompt), scheduler/,
 * tokenizer/ and tokenizer_2/ (the second pads with "!"), text_encoder/, text_encoder_2/,
 * unet/, vae_encoder/, vae_decoder/, each part's config.json, and the weights of parts over
 * Optimum's 2 GB protobuf limit at full size (unet, text_encoder_2) in model.onnx_data.
 */
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { GraphCounts } from "./graph";
import { sdxlConfig, sdxlGraphs, sdxlUnetGraphs, SDXL_REFERENCE, type SdxlConfig, type SdxlPartName } from "./sdxl";

/** SDXL base 1.0's scheduler/scheduler_config.json. */
export const SDXL_BASE_SCHEDULER = {
  _class_name: "EulerDiscreteScheduler",
  _diffusers_version: "0.19.0.dev0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  interpolation_type: "linear",
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  sample_max_value: 1.0,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
  use_karras_sigmas: false,
};

/** sdxl-turbo's scheduler/scheduler_config.json: Euler ancestral, trailing spacing (one step lands on t = 999). */
export const SDXL_TURBO_SCHEDULER = {
  ...SDXL_BASE_SCHEDULER,
  _class_name: "EulerAncestralDiscreteScheduler",
  _diffusers_version: "0.24.0.dev0",
  timestep_spacing: "trailing",
};

export interface SdxlFolderOptions {
  config: SdxlConfig;
  scheduler: Record<string, unknown>;
  /** Where tokenizer/ is copied from (CLIP's vocab.json, merges.txt, ...); tokenizer_2/ is the same BPE padding with "!". */
  tokenizerDir: string;
  /** unet/config.json sample_size (latents): 128 for SDXL base (1024 px), 64 for sdxl-turbo (512 px). */
  sampleSize: number;
  /** The repo's _name_or_path in model_index.json. */
  nameOrPath?: string;
  /** The VAE encoder's output: Optimum's latent_parameters (mean ‖ logvar), or a posterior sample drawn in the graph. */
  vaeEncoderOutput?: "latent_parameters" | "latent_sample";
  log?: (line: string) => void;
  /** OnnxStack's layout (TensorStack's SDXL repos): controlnet/model.onnx, the UNet taking a ControlNet's residuals, beside unet/. */
  controlUnet?: boolean;
  /** The file the weights of parts over 2 GB go to: Optimum's model.onnx_data (default), OnnxStack's model.onnx.data. */
  weightsFile?: string;
  /** Which parts keep their weights in `weightsFile`: those over 2 GB at fp32 (Optimum's, default), or every part (as onnx.save(save_as_external_data=True) writes after an fp16 conversion). */
  externalParts?: "over-2gb" | "every-part";
  /** Write vae_encoder/ (default); text-to-image-only exports drop it. */
  vaeEncoder?: boolean;
  /** Also each tokenizer's tokenizer.json (a fast tokenizer's save_pretrained writes it beside vocab.json and merges.txt). */
  tokenizerJson?: boolean;
}

const PARTS: SdxlPartName[] = ["text_encoder", "text_encoder_2", "vae_encoder", "vae_decoder", "unet"];
/** Optimum moves a part's weights to model.onnx_data when the protobuf would pass 2 GB: SDXL's UNet and text_encoder_2 at fp32. */
const EXTERNAL: ReadonlySet<SdxlPartName> = new Set(["unet", "text_encoder_2"]);
const TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"];

function modelIndex(options: SdxlFolderOptions) {
  return {
    _class_name: "StableDiffusionXLPipeline",
    _diffusers_version: "0.24.0.dev0",
    ...(options.nameOrPath ? { _name_or_path: options.nameOrPath } : {}),
    feature_extractor: [null, null],
    force_zeros_for_empty_prompt: true,
    image_encoder: [null, null],
    scheduler: ["diffusers", String(options.scheduler._class_name)],
    text_encoder: ["transformers", "CLIPTextModel"],
    text_encoder_2: ["transformers", "CLIPTextModelWithProjection"],
    tokenizer: ["transformers", "CLIPTokenizer"],
    tokenizer_2: ["transformers", "CLIPTokenizer"],
    unet: ["diffusers", "UNet2DConditionModel"],
    vae: ["diffusers", "AutoencoderKL"],
  };
}

/** The diffusers / transformers configs Optimum writes beside each part (the builder's sizes, the repo's sample size and VAE scaling). */
function partConfig(part: SdxlPartName, options: SdxlFolderOptions): Record<string, unknown> {
  const { config } = options;
  const text = (t: SdxlConfig["text"], arch: string) => ({
    architectures: [arch],
    hidden_act: t.act ?? "quick_gelu",
    hidden_size: t.hidden,
    intermediate_size: t.intermediate,
    max_position_embeddings: t.positions,
    model_type: "clip_text_model",
    num_attention_heads: t.heads,
    num_hidden_layers: t.layers,
    ...(t.projection ? { projection_dim: t.projection } : {}),
    vocab_size: t.vocab,
  });
  const vae = {
    _class_name: "AutoencoderKL",
    block_out_channels: config.vae.blocks,
    force_upcast: true,
    latent_channels: config.vae.latentChannels,
    layers_per_block: config.vae.layersPerBlock,
    norm_num_groups: config.vae.groups,
    sample_size: options.sampleSize * 8,
    scaling_factor: 0.13025,
  };
  const u = config.unet;
  switch (part) {
    case "text_encoder":
      return text(config.text, "CLIPTextModel");
    case "text_encoder_2":
      return text(config.text2, "CLIPTextModelWithProjection");
    case "vae_encoder":
    case "vae_decoder":
      return vae;
    case "unet":
      return {
        _class_name: "UNet2DConditionModel",
        addition_embed_type: "text_time",
        addition_time_embed_dim: u.addition.timeEmbedDim,
        attention_head_dim: u.headsPerLevel,
        block_out_channels: u.blocks,
        cross_attention_dim: u.crossAttentionDim,
        down_block_types: u.crossAttention.map((x) => (x ? "CrossAttnDownBlock2D" : "DownBlock2D")),
        in_channels: u.inChannels,
        layers_per_block: u.layersPerBlock,
        norm_num_groups: u.groups,
        out_channels: 4,
        projection_class_embeddings_input_dim: u.addition.textEmbedsDim + u.addition.timeIds * u.addition.timeEmbedDim,
        sample_size: options.sampleSize,
        transformer_layers_per_block: u.transformerDepth,
        up_block_types: [...u.crossAttention].reverse().map((x) => (x ? "CrossAttnUpBlock2D" : "UpBlock2D")),
        use_linear_projection: true,
      };
  }
}

/** tokenizer_2's pad token: SDXL's second tokenizer pads with "!" (id 0), not <|endoftext|>. */
async function writeTokenizer2(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const file of ["vocab.json", "merges.txt"]) await copyFile(path.join(from, file), path.join(to, file));
  const config = JSON.parse(await readFile(path.join(from, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
  await writeFile(path.join(to, "tokenizer_config.json"), JSON.stringify({ ...config, pad_token: "!" }, null, 2));
  const special = JSON.parse(await readFile(path.join(from, "special_tokens_map.json"), "utf8")) as Record<string, unknown>;
  await writeFile(path.join(to, "special_tokens_map.json"), JSON.stringify({ ...special, pad_token: "!" }, null, 2));
}

/** Writes the folder at `dest` (which should be empty) and returns each part's counts at SDXL's reference shapes. */
export async function writeSdxlFolder(dest: string, options: SdxlFolderOptions): Promise<Record<SdxlPartName, GraphCounts>> {
  const log = options.log ?? (() => {});
  await mkdir(dest, { recursive: true });
  const graphs = sdxlGraphs(options.config, SDXL_REFERENCE);
  const weightsFile = options.weightsFile ?? "model.onnx_data";
  if ((options.vaeEncoderOutput ?? "latent_parameters") === "latent_parameters") posteriorParameters(graphs.vae_encoder);
  const counts = {} as Record<SdxlPartName, GraphCounts>;
  for (const part of PARTS) {
    const start = Date.now();
    const graph = graphs[part];
    counts[part] = graph.counts();
    if (part === "vae_encoder" && options.vaeEncoder === false) continue;
    const external = options.externalParts === "every-part" || EXTERNAL.has(part);
    await graph.write(path.join(dest, part, "model.onnx"), external ? { externalData: weightsFile } : {});
    await writeFile(path.join(dest, part, "config.json"), JSON.stringify(partConfig(part, options), null, 2));
    log(`  wrote ${part} (${(counts[part].weightBytes / 2 ** 20).toFixed(0)} MiB) in ${((Date.now() - start) / 1000).toFixed(1)} s`);
  }
  if (options.controlUnet) {
    const control = sdxlUnetGraphs(options.config, SDXL_REFERENCE, { controlUnet: true }).controlnet!;
    await control.write(path.join(dest, "controlnet", "model.onnx"), { externalData: weightsFile });
    await writeFile(path.join(dest, "controlnet", "config.json"), JSON.stringify(partConfig("unet", options), null, 2));
  }
  await writeFile(path.join(dest, "model_index.json"), JSON.stringify(modelIndex(options), null, 2));
  await mkdir(path.join(dest, "scheduler"), { recursive: true });
  await writeFile(path.join(dest, "scheduler", "scheduler_config.json"), JSON.stringify(options.scheduler, null, 2));
  await mkdir(path.join(dest, "tokenizer"), { recursive: true });
  for (const file of TOKENIZER_FILES) await copyFile(path.join(options.tokenizerDir, file), path.join(dest, "tokenizer", file));
  await writeTokenizer2(options.tokenizerDir, path.join(dest, "tokenizer_2"));
  if (options.tokenizerJson) for (const folder of ["tokenizer", "tokenizer_2"]) await writeTokenizerJson(path.join(dest, folder));
  return counts;
}

/**
 * A fast tokenizer's tokenizer.json for the BPE in `dir` (vocab.json, merges.txt): the `tokenizers`
 * library's layout (version, model { type BPE, vocab, merges }, added_tokens), enough to stand in
 * for the file; Underpaint reads vocab.json and merges.txt.
 */
async function writeTokenizerJson(dir: string): Promise<void> {
  const vocab = JSON.parse(await readFile(path.join(dir, "vocab.json"), "utf8")) as Record<string, number>;
  const merges = (await readFile(path.join(dir, "merges.txt"), "utf8")).split("\n").filter((line) => line && !line.startsWith("#version"));
  const special = ["<|startoftext|>", "<|endoftext|>"].filter((t) => t in vocab);
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special.map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true })),
    normalizer: { type: "Sequence", normalizers: [{ type: "NFC" }, { type: "Replace", pattern: { Regex: "\\s+" }, content: " " }, { type: "Lowercase" }] },
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: "<|endoftext|>", continuing_subword_prefix: "", end_of_word_suffix: "</w>", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  await writeFile(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
}

/**
 * Optimum's VAE encoder (since d3c56cd5) ends at quant_conv: latent_parameters = mean ‖ logvar
 * [B, 8, h, w]; the pipeline samples. The builder's graph samples in-graph, so its output is moved.
 */
function posteriorParameters(graph: ReturnType<typeof sdxlGraphs>["vae_encoder"]): void {
  graph.retarget("latent_sample", (nodes) => {
    // latent_sample = Add(Slice(moments) = mean, std · noise): the Slice's data input is the moments.
    const producer = (value: string | undefined) => nodes.find((n) => n.output.includes(value ?? ""));
    const slice = producer(producer("latent_sample")?.input[0]);
    if (slice?.opType !== "Slice" || !slice.input[0]) throw new Error("vae_encoder: latent_sample is not Add(Slice(moments), ·)");
    return { value: slice.input[0], name: "latent_parameters", dims: ["batch_size", 8, "height_latent", "width_latent"] };
  });
}

/** A built SDXL folder in a cache: where it is, its configuration, each part's counts at SDXL's reference shapes, and whether it was written now. */
export interface BuiltSdxl {
  dir: string;
  config: SdxlConfig;
  counts: Record<SdxlPartName, GraphCounts>;
  built: boolean;
}

/** Bump when what ensureSdxlFolder writes changes: folders stamped otherwise are rebuilt. */
export const SDXL_FOLDER_VERSION = 1;

/**
 * The SDXL base 1.0 architecture at channel width `width` (1: full size, about 13 GiB of float32
 * weights) in `cacheDir`/sdxl-w<width>/, built on first use and kept: a stamp file written last
 * says what configuration it holds, so a half-written or outdated folder is built again.
 */
export async function ensureSdxlFolder(cacheDir: string, options: { width: number; tokenizerDir: string; log?: (line: string) => void }): Promise<BuiltSdxl> {
  const config = sdxlConfig(options.width);
  const dir = path.join(cacheDir, `sdxl-w${options.width}`);
  const stampFile = path.join(dir, "underpaint-build.json");
  const stamp = JSON.stringify({ version: SDXL_FOLDER_VERSION, config, scheduler: SDXL_BASE_SCHEDULER });
  const existing = await readFile(stampFile, "utf8").catch(() => null);
  if (existing !== null) {
    const parsed = JSON.parse(existing) as { stamp?: string; counts?: Record<SdxlPartName, GraphCounts> };
    if (parsed.stamp === stamp && parsed.counts) return { dir, config, counts: parsed.counts, built: false };
  }
  await rm(dir, { recursive: true, force: true });
  const counts = await writeSdxlFolder(dir, {
    config,
    scheduler: SDXL_BASE_SCHEDULER,
    tokenizerDir: options.tokenizerDir,
    sampleSize: SDXL_REFERENCE.latent,
    nameOrPath: "stabilityai/stable-diffusion-xl-base-1.0",
    ...(options.log ? { log: options.log } : {}),
  });
  await writeFile(stampFile, JSON.stringify({ stamp, counts }, null, 2) + "\n");
  return { dir, config, counts, built: true };
}
