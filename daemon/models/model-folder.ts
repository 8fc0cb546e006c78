/**
 * A model folder in the diffusers / Optimum ONNX layout, checked file by file:
 *
 *   model_index.json                   (SDXL adds text_encoder_2/ and tokenizer_2/: sdxl-parts.ts)
 *   text_encoder/model.onnx            unet/model.onnx (+ weights.pb | model.onnx_data)
 *   vae_encoder/model.onnx (optional)  vae_decoder/model.onnx
 *   tokenizer/{vocab.json, merges.txt, tokenizer_config.json}   (or tokenizer.json for vocab.json and merges.txt)
 *   scheduler/scheduler_config.json
 *   <part>/config.json                 Optimum's per-folder configs, where present
 *
 * Every JSON is parsed with zod; every ONNX file is walked (onnx-inspect, weights skipped)
 * so a truncated download, a missing weights.pb or an unsupported export is reported here,
 * as a ModelFolderError naming the file, and not later as a crash inside onnxruntime.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { z } from "zod";
import type { GuidanceKind, Mode, ModelInfo, RecommendedSettings } from "../../protocol";
import { deviceOnlyMessage, deviceOnlyOperators } from "./device-ops";
import { ModelFolderError } from "./errors";
import type { Device } from "./execution-provider";
import {
  describeTextEncoder,
  describeUnet,
  describeVaeDecoder,
  describeVaeEncoder,
  type ModelIO,
} from "./io-spec";
import { readManifest } from "./manifest";
import { readControlUnet, type ControlUnet } from "./control-unet";
import { findInputConvWeightDims, inspectOnnx, OnnxParseError, type OnnxInfo } from "./onnx-inspect";
import { findRegistryEntry, registryEntryForSource } from "./registry";
import { checkNoAddedConditions, checkNotRefiner, isSdxlFolder, loadSdxlParts, SDXL_VAE_SCALING_FACTOR } from "./sdxl-parts";
import { TokenizerJsonSchema } from "./tokenizer-json";

export { ModelFolderError, isModelFolderError, type ModelFolderErrorCode } from "./errors";

/** diffusers' default (SD 1.x / 2.x); SDXL uses 0.13025. */
export const DEFAULT_VAE_SCALING_FACTOR = 0.18215;

// ---- JSON schemas (unknown keys pass through) ----

const ComponentRef = z.tuple([z.string().nullable(), z.string().nullable()]);

export const ModelIndexSchema = z.looseObject({
  _class_name: z.string(),
  _diffusers_version: z.string().optional(),
  _name_or_path: z.string().optional(),
  text_encoder: ComponentRef.optional(),
  text_encoder_2: ComponentRef.optional(),
  unet: ComponentRef.optional(),
  vae_encoder: ComponentRef.optional(),
  vae_decoder: ComponentRef.optional(),
  tokenizer: ComponentRef.optional(),
  tokenizer_2: ComponentRef.optional(),
  scheduler: ComponentRef.optional(),
  /** SDXL: no negative prompt means zero uncond embeddings (diffusers' default true). */
  force_zeros_for_empty_prompt: z.boolean().optional(),
  /** SDXL's refiner conditions on an aesthetic score. */
  requires_aesthetics_score: z.boolean().optional(),
});
export type ModelIndex = z.infer<typeof ModelIndexSchema>;

/** Only what this module reads; the schedulers module validates the rest. */
export const SchedulerConfigSchema = z.looseObject({
  _class_name: z.string().optional(),
  num_train_timesteps: z.number().int().positive().optional(),
  prediction_type: z.string().optional(),
});

const TokenRef = z.union([z.string(), z.looseObject({ content: z.string() })]).nullable();

export const TokenizerConfigSchema = z.looseObject({
  model_max_length: z.number().positive().optional(),
  bos_token: TokenRef.optional(),
  eos_token: TokenRef.optional(),
  pad_token: TokenRef.optional(),
  unk_token: TokenRef.optional(),
  do_lower_case: z.boolean().optional(),
});
export type TokenizerConfig = z.infer<typeof TokenizerConfigSchema>;

/** token -> id. A hand loop inside zod: z.record over 49k entries costs ~100 ms per folder. */
export const VocabSchema = z.custom<Record<string, number>>(
  (value) => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
    let count = 0;
    for (const id of Object.values(value)) {
      if (!Number.isInteger(id) || (id as number) < 0) return false;
      count++;
    }
    return count > 0;
  },
  { message: "expected a non-empty object of token -> non-negative integer id" },
);

const SampleSize = z.union([z.number().int().positive(), z.array(z.number().int().positive()).min(1)]);

/** Optimum's unet/config.json (a copy of diffusers' UNet config). */
export const UnetConfigSchema = z.looseObject({
  sample_size: SampleSize.optional(),
  in_channels: z.number().int().positive().optional(),
});

/** Optimum's vae_decoder/config.json and vae_encoder/config.json. */
export const VaeConfigSchema = z.looseObject({
  scaling_factor: z.number().positive().optional(),
  sample_size: SampleSize.optional(),
  block_out_channels: z.array(z.number().int().positive()).min(1).optional(),
});

// ---- the folder ----

export type ModelKind = "txt2img" | "inpainting";
export type PredictionType = "epsilon" | "v_prediction" | "sample";
const PREDICTION_TYPES: readonly PredictionType[] = ["epsilon", "v_prediction", "sample"];

export interface ModelFolderPaths {
  modelIndex: string;
  textEncoder: string;
  /** SDXL's second text encoder (text_encoder_2/model.onnx); null for SD 1.x / 2.x. */
  textEncoder2: string | null;
  /** SDXL's tokenizer_2/; null for SD 1.x / 2.x. */
  tokenizer2: { dir: string; vocab: string; merges: string; config: string } | null;
  unet: string;
  /** null: no vae_encoder/, the model can only do txt2img. */
  vaeEncoder: string | null;
  vaeDecoder: string;
  /** External weight files referenced by the ONNX files (unet/weights.pb, <part>/model.onnx_data). */
  externalData: string[];
  tokenizer: { dir: string; vocab: string; merges: string; config: string; specialTokensMap: string | null };
  schedulerConfig: string;
  /** Optimum's per-folder config.json files, where present. */
  configs: { unet: string | null; vaeDecoder: string | null; vaeEncoder: string | null };
}

export interface ModelFolder {
  /** The folder's name: what jobs name the model by. */
  id: string;
  /** Display name (the folder's name for now). */
  name: string;
  /** Absolute path. */
  dir: string;
  paths: ModelFolderPaths;
  modelIndex: ModelIndex;
  /** scheduler_config.json as parsed, unknown keys kept; the schedulers module validates it. */
  schedulerConfig: Record<string, unknown>;
  tokenizerConfig: TokenizerConfig;
  /** SDXL (two text encoders, text_embeds and time_ids): what its conditioning needs to know; null for SD 1.x / 2.x. */
  sdxl: { forceZerosForEmptyPrompt: boolean } | null;
  /** Latents = scaling_factor · VAE posterior. vae_decoder/config.json, else 0.18215 (SDXL: 0.13025). */
  vaeScalingFactor: number;
  /** Pixels per latent: 2^(len(block_out_channels) − 1) from the VAE config, else 8. */
  vaeScaleFactor: number;
  /** Read from the UNet's conv_in weight dims in unet/model.onnx, not from model_index.json. */
  unetInChannels: 4 | 9;
  unetInChannelsSource: "onnx_conv_in" | "onnx_input_shape" | "unet_config";
  kind: ModelKind;
  /** What the panel may ask of it. */
  modes: Mode[];
  hasVaeEncoder: boolean;
  /** scheduler_config.json prediction_type, "epsilon" when absent. */
  predictionType: PredictionType;
  /** Side in pixels the model was trained at; see nativeResolutionOf. */
  nativeResolution: number;
  nativeResolutionSource: "unet_config" | "vae_config" | "heuristic";
  /** A few-step distilled model (SD-Turbo / SDXL-Turbo style); see isTurbo. */
  turbo: boolean;
  /** The UNet takes float16 inputs (Olive / --fp16 exports): feeds need conversion. */
  float16: boolean;
  /**
   * The float type most of each part's weights are stored in. float16 weights behind float32
   * inputs and outputs (onnxconverter's keep_io_types) are float16 models too, on the CPU.
   */
  weightTypes: { textEncoder: WeightType; textEncoder2: WeightType | null; unet: WeightType; vaeEncoder: WeightType | null; vaeDecoder: WeightType };
  /** Input/output names and dtypes of each ONNX file, read from the files. */
  io: ModelIO;
  /** Bytes of all ONNX files and their external weights. */
  weightsBytes: number;
  /** The registry entry it was installed as (its manifest says so, or names the entry's repo); null for folders added by hand. */
  registryId: string | null;
  /** The UNet that takes a ControlNet's residuals (controlnet/model.onnx, OnnxStack's layout): the model is control-capable. */
  controlUnet?: ControlUnet | null;
  /** Why a controlnet/ the folder has cannot be used, when it cannot. */
  controlUnetProblem?: string | null;
}

// ---- helpers ----

function rel(dir: string, file: string): string {
  return relative(dir, file).split(sep).join("/");
}

export async function fileSize(path: string): Promise<number | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : null;
  } catch {
    return null;
  }
}

export function missing(dir: string, file: string, why = "every model folder needs it"): ModelFolderError {
  return new ModelFolderError(
    "model_file_missing",
    file,
    `Model file missing: ${file} (${rel(dir, file)}; ${why}).`,
  );
}

export function invalid(file: string, why: string, cause?: unknown): ModelFolderError {
  return new ModelFolderError("model_file_invalid", file, `Model file invalid: ${file}: ${why}.`, { cause });
}

async function requireFile(dir: string, file: string, why?: string): Promise<number> {
  const size = await fileSize(file);
  if (size === null) throw missing(dir, file, why);
  return size;
}

async function readText(dir: string, file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw missing(dir, file);
    throw invalid(file, `cannot be read (${(error as Error).message})`, error);
  }
}

function zodSummary(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join(".") : "(root)"}: ${i.message}`)
    .join("; ");
}

export async function readJson<S extends z.ZodType>(dir: string, file: string, schema: S): Promise<z.infer<S>> {
  const text = await readText(dir, file);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw invalid(file, `not valid JSON (${(error as Error).message})`, error);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw invalid(file, zodSummary(parsed.error), parsed.error);
  return parsed.data;
}

export async function readOptionalJson<S extends z.ZodType>(dir: string, file: string, schema: S): Promise<z.infer<S> | null> {
  if ((await fileSize(file)) === null) return null;
  return readJson(dir, file, schema);
}

/** Where a tokenizer folder's BPE is: vocab.json and merges.txt, or a fast tokenizer's tokenizer.json in their stead. */
export type TokenizerBpe = { vocab: string; merges: string } | { tokenizerJson: string };

/**
 * The tokenizer folder's BPE files: vocab.json and merges.txt when both are there, else its
 * tokenizer.json (what a fast tokenizer's save_pretrained writes; Transformers.js-style exports may
 * ship nothing else); model_file_missing naming vocab.json or merges.txt when neither is.
 */
export async function requireTokenizerBpe(dir: string, tokenizer: { dir: string; vocab: string; merges: string }, why?: string): Promise<TokenizerBpe> {
  const [vocab, merges] = await Promise.all([fileSize(tokenizer.vocab), fileSize(tokenizer.merges)]);
  if (vocab !== null && merges !== null) return { vocab: tokenizer.vocab, merges: tokenizer.merges };
  const tokenizerJson = join(tokenizer.dir, "tokenizer.json");
  if ((await fileSize(tokenizerJson)) !== null) return { tokenizerJson };
  throw missing(dir, vocab === null ? tokenizer.vocab : tokenizer.merges, why ?? "every model folder needs its tokenizer's vocab.json and merges.txt, or a tokenizer.json");
}

/** Checks the BPE files' contents: a token -> id vocab and merge pairs (tokenizer.json: its BPE model's). */
export async function checkTokenizerBpe(dir: string, bpe: TokenizerBpe): Promise<void> {
  if ("tokenizerJson" in bpe) {
    await readJson(dir, bpe.tokenizerJson, TokenizerJsonSchema);
    return;
  }
  await readJson(dir, bpe.vocab, VocabSchema);
  await checkMerges(dir, bpe.merges);
}

async function checkMerges(dir: string, file: string): Promise<void> {
  const lines = (await readText(dir, file)).split("\n");
  const first = lines.findIndex((l) => l.trim() !== "" && !l.startsWith("#version"));
  const line = first >= 0 ? lines[first] : undefined;
  if (line === undefined || line.trim().split(" ").length !== 2) {
    throw invalid(file, "no BPE merges (expected lines of two space-separated symbols)");
  }
}

/** A part's ONNX structure (weights skipped); a file onnx-inspect cannot read is model_file_invalid. */
export async function inspectPart(dir: string, file: string): Promise<OnnxInfo> {
  try {
    return await inspectOnnx(file);
  } catch (error) {
    if (error instanceof OnnxParseError) {
      throw new ModelFolderError("model_file_invalid", file, `Model file invalid: ${error.message}.`, { cause: error });
    }
    throw error;
  }
}

/** Checks that the external weight files an ONNX file names exist, inside the folder, and are long enough. */
export async function checkExternalData(dir: string, info: OnnxInfo): Promise<{ paths: string[]; bytes: number }> {
  const paths: string[] = [];
  let bytes = 0;
  for (const ext of info.externalFiles) {
    const path = resolve(dirname(info.path), ext.location);
    if (!path.startsWith(dir + sep)) {
      throw invalid(info.path, `its weights point outside the model folder (${ext.location})`);
    }
    const size = await fileSize(path);
    if (size === null) throw missing(dir, path, `${rel(dir, info.path)} keeps its weights there`);
    if (size < ext.requiredBytes) {
      throw invalid(path, `truncated: ${rel(dir, info.path)} needs ${ext.requiredBytes} bytes of it, it has ${size}`);
    }
    paths.push(path);
    bytes += size;
  }
  return { paths, bytes };
}

/** Refuses a part (model_unsupported, in one sentence) that uses an operator none of `devices` runs. */
export function checkDevices(dir: string, info: OnnxInfo, devices: Device | readonly Device[]): void {
  const op = deviceOnlyOperators(info.opTypesByDomain, devices)[0];
  if (op) throw new ModelFolderError("model_unsupported", info.path, deviceOnlyMessage(rel(dir, info.path), op, devices));
}

function describe<T>(fn: (file: string, i: OnnxInfo["inputs"], o: OnnxInfo["outputs"]) => T, info: OnnxInfo): T {
  return fn(info.path, info.inputs, info.outputs);
}

function firstSize(size: z.infer<typeof SampleSize> | undefined): number | null {
  if (size === undefined) return null;
  return typeof size === "number" ? size : Math.min(...size);
}

/**
 * Native resolution, in order: unet/config.json sample_size × vaeScaleFactor (Optimum
 * exports carry it); the VAE config's sample_size (pixels); else a heuristic, since the
 * diffusers script writes no configs: 768 for v_prediction models that are not turbo
 * (SD 2.x 768-v), 512 otherwise (SD 1.x, SD 2.x base, SD-Turbo).
 */
export function nativeResolutionOf(input: {
  unetSampleSize: number | null;
  vaeSampleSize: number | null;
  vaeScaleFactor: number;
  predictionType: PredictionType;
  turbo: boolean;
  /** SDXL is trained at 1024 px (SDXL-Turbo at 512). */
  sdxl?: boolean;
}): { resolution: number; source: ModelFolder["nativeResolutionSource"] } {
  if (input.unetSampleSize !== null) {
    return { resolution: input.unetSampleSize * input.vaeScaleFactor, source: "unet_config" };
  }
  if (input.vaeSampleSize !== null) return { resolution: input.vaeSampleSize, source: "vae_config" };
  if (input.sdxl) return { resolution: input.turbo ? 512 : 1024, source: "heuristic" };
  return { resolution: input.predictionType === "v_prediction" && !input.turbo ? 768 : 512, source: "heuristic" };
}

/**
 * Turbo (few-step, no-CFG) heuristic: "turbo" or "lightning" in the folder name or in
 * model_index.json's _name_or_path (e.g. "stabilityai/sd-turbo", "ByteDance/SDXL-Lightning").
 * Nothing in the ONNX files says so; a registry entry's `turbo` says so of the folders pulled from it.
 */
export function isTurbo(id: string, modelIndex: ModelIndex): boolean {
  return /turbo|lightning/i.test(id) || /turbo|lightning/i.test(modelIndex._name_or_path ?? "");
}

/**
 * SDXL-Lightning (ByteDance's progressive adversarial distillation of SDXL base): "lightning" in the
 * folder name or _name_or_path. Its checkpoints are made for a number of steps each (1, 2, 4 or 8,
 * named "Nstep"), run with Euler on trailing timesteps and no guidance; the number, 4 when the name
 * does not say it. null: not a Lightning model.
 */
export function lightningSteps(id: string, modelIndex: ModelIndex): number | null {
  const names = [id, modelIndex._name_or_path ?? ""].filter((n) => /lightning/i.test(n));
  if (names.length === 0) return null;
  for (const name of names) {
    const steps = /(?:^|[^0-9])([1248])[-_ ]?steps?(?![a-z])/i.exec(name)?.[1];
    if (steps) return Number(steps);
  }
  return 4;
}

function modesOf(kind: ModelKind, hasVaeEncoder: boolean): Mode[] {
  if (kind === "inpainting") return ["inpaint", "outpaint"];
  return hasVaeEncoder ? ["txt2img", "img2img", "inpaint", "outpaint"] : ["txt2img"];
}

function listed(ref: z.infer<typeof ComponentRef> | undefined): boolean {
  return ref !== undefined && (ref[0] !== null || ref[1] !== null);
}

export interface LoadModelFolderOptions {
  /**
   * The devices the models will run on, in order of preference (a session's provider chain).
   * Default: chooseDevices() (execution-provider.ts), as the daemon's sessions do.
   */
  devices?: Device | readonly Device[];
}

/** chooseDevices(), imported when needed: execution-provider.ts loads onnxruntime-node. */
export async function defaultDevices(): Promise<readonly Device[]> {
  const { chooseDevices } = await import("./execution-provider");
  return chooseDevices().devices;
}

/**
 * model_index.json for a folder that has none (Amuse / OnnxStack exports ship none): an ONNX
 * Stable Diffusion pipeline of the parts that are there. Without a UNet and a text encoder it is
 * not a model folder, and the missing index is the error.
 */
async function indexFromParts(dir: string, modelIndexPath: string): Promise<ModelIndex> {
  const has = async (...parts: string[]) => (await fileSize(join(dir, ...parts))) !== null;
  if (!(await has("unet", "model.onnx")) || !(await has("text_encoder", "model.onnx"))) {
    throw new ModelFolderError("model_file_missing", modelIndexPath, `Model file missing: ${modelIndexPath} (model_index.json; every model folder needs it, or at least unet/ and text_encoder/).`);
  }
  const onnx: [string, string] = ["diffusers", "OnnxRuntimeModel"];
  return {
    _class_name: "OnnxStableDiffusionPipeline",
    text_encoder: onnx,
    unet: onnx,
    vae_decoder: onnx,
    ...((await has("vae_encoder", "model.onnx")) ? { vae_encoder: onnx } : {}),
    tokenizer: ["transformers", "CLIPTokenizer"],
    scheduler: ["diffusers", "PNDMScheduler"],
  };
}

/**
 * Reads and checks a model folder. Throws ModelFolderError: model_file_missing,
 * model_file_invalid (corrupt JSON, truncated ONNX or weights) or model_unsupported
 * (SDXL's refiner, an unknown prediction type, a UNet that is neither 4- nor 9-channel, I/O the
 * engine cannot feed, operators that none of the devices' providers has).
 */
export async function loadModelFolder(folder: string, options: LoadModelFolderOptions = {}): Promise<ModelFolder> {
  const dir = resolve(folder);
  const id = basename(dir);
  const p = (...parts: string[]) => join(dir, ...parts);

  const modelIndexPath = p("model_index.json");
  const modelIndex = (await fileSize(modelIndexPath)) === null ? await indexFromParts(dir, modelIndexPath) : await readJson(dir, modelIndexPath, ModelIndexSchema);
  const sdxl = await isSdxlFolder(dir, modelIndex);
  if (sdxl) checkNotRefiner(modelIndexPath, modelIndex, listed(modelIndex.text_encoder) || (await fileSize(p("text_encoder", "model.onnx"))) !== null);

  const paths: ModelFolderPaths = {
    modelIndex: modelIndexPath,
    textEncoder: p("text_encoder", "model.onnx"),
    textEncoder2: null,
    tokenizer2: null,
    unet: p("unet", "model.onnx"),
    vaeEncoder: p("vae_encoder", "model.onnx"),
    vaeDecoder: p("vae_decoder", "model.onnx"),
    externalData: [],
    tokenizer: {
      dir: p("tokenizer"),
      vocab: p("tokenizer", "vocab.json"),
      merges: p("tokenizer", "merges.txt"),
      config: p("tokenizer", "tokenizer_config.json"),
      specialTokensMap: p("tokenizer", "special_tokens_map.json"),
    },
    schedulerConfig: p("scheduler", "scheduler_config.json"),
    configs: { unet: p("unet", "config.json"), vaeDecoder: p("vae_decoder", "config.json"), vaeEncoder: p("vae_encoder", "config.json") },
  };

  // Presence first, so the first error names the first missing file.
  let onnxBytes = 0;
  for (const file of [paths.textEncoder, paths.unet, paths.vaeDecoder]) onnxBytes += await requireFile(dir, file);
  const vaeEncoderSize = await fileSize(paths.vaeEncoder as string);
  if (vaeEncoderSize === null) {
    if (listed(modelIndex.vae_encoder)) throw missing(dir, paths.vaeEncoder as string, "model_index.json lists a vae_encoder");
    paths.vaeEncoder = null;
  } else onnxBytes += vaeEncoderSize;
  const bpe = await requireTokenizerBpe(dir, paths.tokenizer);
  for (const file of [paths.tokenizer.config, paths.schedulerConfig]) {
    await requireFile(dir, file);
  }
  if ((await fileSize(paths.tokenizer.specialTokensMap as string)) === null) paths.tokenizer.specialTokensMap = null;

  // JSON contents.
  const schedulerConfig = await readJson(dir, paths.schedulerConfig, SchedulerConfigSchema);
  const tokenizerConfig = await readJson(dir, paths.tokenizer.config, TokenizerConfigSchema);
  await checkTokenizerBpe(dir, bpe);
  if (paths.tokenizer.specialTokensMap) await readJson(dir, paths.tokenizer.specialTokensMap, z.looseObject({}));
  const unetConfig = await readOptionalJson(dir, paths.configs.unet as string, UnetConfigSchema);
  const vaeDecoderConfig = await readOptionalJson(dir, paths.configs.vaeDecoder as string, VaeConfigSchema);
  const vaeEncoderConfig = paths.vaeEncoder
    ? await readOptionalJson(dir, paths.configs.vaeEncoder as string, VaeConfigSchema)
    : null;
  if (!unetConfig) paths.configs.unet = null;
  if (!vaeDecoderConfig) paths.configs.vaeDecoder = null;
  if (!vaeEncoderConfig) paths.configs.vaeEncoder = null;

  const predictionType = schedulerConfig.prediction_type ?? "epsilon";
  if (!(PREDICTION_TYPES as readonly string[]).includes(predictionType)) {
    throw new ModelFolderError(
      "model_unsupported",
      paths.schedulerConfig,
      `Model unsupported: ${paths.schedulerConfig} has prediction_type "${predictionType}"; supported: ${PREDICTION_TYPES.join(", ")}.`,
    );
  }

  // ONNX structure (weights skipped), external weights, I/O.
  const [textInfo, unetInfo, decoderInfo, encoderInfo] = await Promise.all([
    inspectPart(dir, paths.textEncoder),
    inspectPart(dir, paths.unet),
    inspectPart(dir, paths.vaeDecoder),
    paths.vaeEncoder ? inspectPart(dir, paths.vaeEncoder) : Promise.resolve(null),
  ]);
  // Operators only GPU providers have (Olive / CUDA-optimized exports), before anything else
  // in the ONNX files is checked: no other fix helps while the device lacks them.
  const devices = options.devices ?? (await defaultDevices());
  for (const info of [textInfo, unetInfo, decoderInfo, encoderInfo]) if (info) checkDevices(dir, info, devices);
  let externalBytes = 0;
  for (const info of [textInfo, unetInfo, decoderInfo, encoderInfo]) {
    if (!info) continue;
    const ext = await checkExternalData(dir, info);
    paths.externalData.push(...ext.paths);
    externalBytes += ext.bytes;
  }
  const io: ModelIO = {
    textEncoder: describe(describeTextEncoder, textInfo),
    textEncoder2: null,
    unet: describe(describeUnet, unetInfo),
    vaeEncoder: encoderInfo ? describe(describeVaeEncoder, encoderInfo) : null,
    vaeDecoder: describe(describeVaeDecoder, decoderInfo),
  };
  const sdxlParts = sdxl ? await loadSdxlParts(dir, modelIndex, { textEncoder: io.textEncoder, unet: io.unet, unetFile: paths.unet, textEncoderFile: paths.textEncoder }, devices) : null;
  if (sdxlParts) {
    paths.textEncoder2 = sdxlParts.textEncoder2;
    paths.tokenizer2 = sdxlParts.tokenizer2;
    paths.externalData.push(...sdxlParts.externalData);
    io.textEncoder2 = sdxlParts.textEncoder2Io;
  } else checkNoAddedConditions(paths.unet, io.unet);

  // UNet input channels: conv_in's weight [out, in, kh, kw] is the ground truth.
  const convIn = findInputConvWeightDims(unetInfo);
  const sampleShape = unetInfo.inputs.find((v) => v.name === io.unet.sample)?.shape;
  let unetInChannels: number;
  let unetInChannelsSource: ModelFolder["unetInChannelsSource"];
  if (convIn && convIn.length === 4 && typeof convIn[1] === "number") {
    unetInChannels = convIn[1];
    unetInChannelsSource = "onnx_conv_in";
  } else if (typeof sampleShape?.[1] === "number") {
    unetInChannels = sampleShape[1];
    unetInChannelsSource = "onnx_input_shape";
  } else if (unetConfig?.in_channels !== undefined) {
    unetInChannels = unetConfig.in_channels;
    unetInChannelsSource = "unet_config";
  } else {
    throw new ModelFolderError(
      "model_unsupported",
      paths.unet,
      `Model unsupported: cannot tell the UNet's input channels from ${paths.unet} (no input convolution weight found).`,
    );
  }
  if (unetInChannels !== 4 && unetInChannels !== 9) {
    throw new ModelFolderError(
      "model_unsupported",
      paths.unet,
      `Model unsupported: ${paths.unet} takes ${unetInChannels} input channels; only 4 (txt2img) and 9 (inpainting) are supported.`,
    );
  }
  const kind: ModelKind = unetInChannels === 9 ? "inpainting" : "txt2img";
  if (kind === "inpainting" && !paths.vaeEncoder) {
    throw missing(dir, p("vae_encoder", "model.onnx"), "an inpainting model encodes the masked image with it");
  }

  const vaeConfig = vaeDecoderConfig ?? vaeEncoderConfig;
  const vaeScalingFactor = vaeDecoderConfig?.scaling_factor ?? vaeEncoderConfig?.scaling_factor ?? (sdxl ? SDXL_VAE_SCALING_FACTOR : DEFAULT_VAE_SCALING_FACTOR);
  const blocks = vaeConfig?.block_out_channels?.length;
  const vaeScaleFactor = blocks ? 2 ** (blocks - 1) : 8;
  const registryId = registryEntryForSource((await readManifest(dir))?.source)?.id ?? null;
  const turbo = (registryId ? findRegistryEntry(registryId)?.turbo : undefined) ?? isTurbo(id, modelIndex);
  const native = nativeResolutionOf({
    unetSampleSize: firstSize(unetConfig?.sample_size),
    vaeSampleSize: firstSize(vaeConfig?.sample_size),
    vaeScaleFactor,
    predictionType: predictionType as PredictionType,
    turbo,
    sdxl,
  });

  const control = await readControlUnet(dir, devices);
  return {
    id,
    name: id,
    dir,
    paths,
    modelIndex,
    schedulerConfig: schedulerConfig as Record<string, unknown>,
    tokenizerConfig,
    sdxl: sdxlParts ? { forceZerosForEmptyPrompt: sdxlParts.forceZerosForEmptyPrompt } : null,
    vaeScalingFactor,
    vaeScaleFactor,
    unetInChannels,
    unetInChannelsSource,
    kind,
    modes: modesOf(kind, paths.vaeEncoder !== null),
    hasVaeEncoder: paths.vaeEncoder !== null,
    predictionType: predictionType as PredictionType,
    nativeResolution: native.resolution,
    nativeResolutionSource: native.source,
    turbo,
    float16: io.unet.sampleType === "float16",
    weightTypes: {
      textEncoder: weightTypeOf(textInfo),
      textEncoder2: sdxlParts ? weightTypeOf(sdxlParts.textEncoder2Info) : null,
      unet: weightTypeOf(unetInfo),
      vaeEncoder: encoderInfo ? weightTypeOf(encoderInfo) : null,
      vaeDecoder: weightTypeOf(decoderInfo),
    },
    io,
    weightsBytes: onnxBytes + externalBytes + (sdxlParts?.bytes ?? 0),
    registryId,
    controlUnet: control.unet,
    controlUnetProblem: control.problem,
  };
}

export type WeightType = "float32" | "float16" | "other";

/** The float type holding most of a graph's weight elements (integer-only or empty graphs: "other"). */
export function weightTypeOf(info: OnnxInfo): WeightType {
  const elements: Record<WeightType, number> = { float32: 0, float16: 0, other: 0 };
  for (const { type, dims } of info.initializers.values()) {
    const count = dims.reduce((a, b) => a * b, 1);
    elements[type === "float32" || type === "float16" ? type : "other"] += count;
  }
  if (elements.float16 === 0 && elements.float32 === 0) return "other";
  return elements.float16 > elements.float32 ? "float16" : "float32";
}

/** What guidance does for the model: LCM's UNet takes it as an input, turbo models run without it. */
export function guidanceKindOf(model: ModelFolder): GuidanceKind {
  if (model.io.unet.timestepCond) return "embedded";
  return model.turbo ? "none" : "classifier-free";
}

/** A Latent Consistency Model: its scheduler says so, or its UNet takes LCM's guidance embedding. */
export function isLcm(model: ModelFolder): boolean {
  return model.schedulerConfig._class_name === "LCMScheduler" || model.io.unet.timestepCond !== null;
}

/** The settings the model makes good pictures with: its registry entry's when it was installed from the registry, else derivedSettings. */
export function recommendedSettings(model: ModelFolder): RecommendedSettings {
  const entry = model.registryId ? findRegistryEntry(model.registryId) : undefined;
  return entry ? { ...entry.recommended } : derivedSettings(model);
}

/** What suits the model by what it is (the registry's entries say the same of theirs: its tests check). */
export function derivedSettings(model: ModelFolder): RecommendedSettings {
  // SDXL-Lightning: the steps its checkpoint was distilled for, Euler (its README's EulerDiscreteScheduler on trailing timesteps), no guidance.
  const lightning = lightningSteps(model.id, model.modelIndex);
  if (lightning !== null) return { steps: lightning, guidance: 0, scheduler: "euler" };
  if (model.turbo) return { steps: 1, guidance: 0, scheduler: "euler_a" };
  if (isLcm(model)) return { steps: 4, guidance: model.io.unet.timestepCond ? 8 : 1, scheduler: "lcm" };
  // SDXL is trained to follow its prompt at lower guidance than SD 1.x (diffusers' SDXL pipelines default to 5).
  if (model.sdxl) return { steps: 25, guidance: 5, scheduler: "dpmpp_2m_karras" };
  return { steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" };
}

/** The protocol's view of a model. */
export function toModelInfo(model: ModelFolder): ModelInfo {
  return {
    id: model.id,
    name: model.name,
    kind: model.kind,
    modes: [...model.modes],
    nativeResolution: model.nativeResolution,
    turbo: model.turbo,
    recommended: recommendedSettings(model),
    guidance: guidanceKindOf(model),
    ...(model.registryId ? { registryId: model.registryId } : {}),
    ...(model.controlUnet ? { control: true } : {}),
    ...(model.sdxl ? { sdxl: true as const } : {}),
  };
}
