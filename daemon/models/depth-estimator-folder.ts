/**
 * A depth estimator in the models folder (Depth Anything in the Transformers.js layout), beside the
 * models but not one of them (never in the model menu):
 *
 *   config.json               {"model_type": "depth_anything", ...}
 *   preprocessor_config.json  transformers' DPTImageProcessor: how pictures are resized and normalised
 *   onnx/model.onnx           pixel_values float32 [batch, 3, height, width] -> predicted_depth float32 [batch, height, width]
 *
 * (model.onnx at the top of the folder is read too, for a folder copied in by hand.) A folder is one
 * when its manifest names a depth estimator of the registry, or when its config.json says
 * model_type "depth_anything". Its files are checked as a model folder's are (zod, onnx-inspect,
 * operators, external weights, I/O).
 */
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import { ModelFolderError } from "./errors";
import type { Device, ModelLog } from "./execution-provider";
import { createHelperSession, findHelperFolders, type FoundHelpers } from "./helper-folders";
import type { IoValue } from "./io-spec";
import { readManifest } from "./manifest";
import { checkDevices, checkExternalData, defaultDevices, fileSize, inspectPart, missing, readJson } from "./model-folder";
import type { PartSession } from "./model-sessions";
import { depthEstimatorEntryForSource } from "./registry";

/** config.json, what is read of it. */
export const DepthConfigSchema = z.looseObject({ model_type: z.string() });

/** preprocessor_config.json (transformers' DPTImageProcessor), what the preprocessing uses; defaults are DPTImageProcessor's. */
export const DptPreprocessorSchema = z.looseObject({
  image_processor_type: z.string().optional(),
  do_resize: z.boolean().default(true),
  size: z.object({ height: z.number().int().positive(), width: z.number().int().positive() }).default({ height: 384, width: 384 }),
  keep_aspect_ratio: z.boolean().default(false),
  ensure_multiple_of: z.number().int().positive().default(1),
  resample: z.number().int().min(0).max(5).default(3),
  do_rescale: z.boolean().default(true),
  rescale_factor: z.number().positive().default(1 / 255),
  do_normalize: z.boolean().default(true),
  image_mean: z.tuple([z.number(), z.number(), z.number()]).default([0.5, 0.5, 0.5]),
  image_std: z.tuple([z.number().positive(), z.number().positive(), z.number().positive()]).default([0.5, 0.5, 0.5]),
  do_pad: z.boolean().default(false),
});
export type DptPreprocessor = z.infer<typeof DptPreprocessorSchema>;

/** The model types read as a depth estimator of this layout. */
const DEPTH_MODEL_TYPES = new Set(["depth_anything"]);

export interface DepthEstimatorIO {
  /** pixel_values: float32 [batch, 3, height, width]. */
  input: string;
  /** predicted_depth: float32 [batch, height, width], larger = nearer. */
  output: string;
}

export interface DepthEstimatorFolder {
  id: string;
  dir: string;
  /** Its model.onnx. */
  path: string;
  externalData: string[];
  io: DepthEstimatorIO;
  preprocessor: DptPreprocessor;
  weightsBytes: number;
  registryId: string | null;
}

const unsupported = (file: string, why: string) => new ModelFolderError("model_unsupported", file, `Depth estimator unsupported: ${file} ${why}.`);

/**
 * The estimator's inputs and outputs, from the graph (onnx-inspect) or a session: one float32 input
 * pixel_values of rank 4 with 3 channels where fixed, one float32 output predicted_depth of rank 3.
 */
export function describeDepthEstimator(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): DepthEstimatorIO {
  const input = inputs.find((v) => v.name === "pixel_values");
  const output = outputs.find((v) => v.name === "predicted_depth");
  if (!input) throw unsupported(file, `has no input pixel_values (it has ${inputs.map((v) => v.name).join(", ") || "none"})`);
  if (!output) throw unsupported(file, `has no output predicted_depth (it has ${outputs.map((v) => v.name).join(", ") || "none"})`);
  if (inputs.length !== 1) throw unsupported(file, `takes ${inputs.length} inputs; a depth estimator takes pixel_values alone`);
  // "unknown": an onnxruntime without session metadata; the graph's types were checked when the folder was read.
  if (input.type !== "float32" && input.type !== "unknown") throw unsupported(file, `takes pixel_values as ${input.type}, not float32`);
  if (output.type !== "float32" && output.type !== "unknown") throw unsupported(file, `gives predicted_depth as ${output.type}, not float32`);
  if (input.shape && input.shape.length !== 4) throw unsupported(file, `takes pixel_values of rank ${input.shape.length}, not [batch, 3, height, width]`);
  if (input.shape && typeof input.shape[1] === "number" && input.shape[1] !== 3) throw unsupported(file, `takes ${input.shape[1]}-channel pictures, not RGB`);
  if (output.shape && output.shape.length !== 3) throw unsupported(file, `gives predicted_depth of rank ${output.shape.length}, not [batch, height, width]`);
  return { input: input.name, output: output.name };
}

async function modelTypeOf(dir: string): Promise<string | null> {
  try {
    return (await readJson(dir, join(dir, "config.json"), DepthConfigSchema)).model_type;
  } catch {
    return null;
  }
}

/** Whether a folder in the models folder is a depth estimator (see the module comment), not a model. */
export async function isDepthEstimatorFolder(dir: string): Promise<boolean> {
  if (depthEstimatorEntryForSource((await readManifest(dir))?.source)) return true;
  const type = await modelTypeOf(dir);
  return type !== null && DEPTH_MODEL_TYPES.has(type);
}

/**
 * Reads and checks a depth estimator's folder. Throws ModelFolderError: model_file_missing (no
 * config.json, preprocessor_config.json or onnx/model.onnx), model_file_invalid (a damaged file),
 * model_unsupported (another model type, preprocessing it does not do, I/O it cannot be fed with,
 * operators none of the devices has).
 */
export async function loadDepthEstimatorFolder(folder: string, options: { devices?: readonly Device[] } = {}): Promise<DepthEstimatorFolder> {
  const dir = resolve(folder);
  const configPath = join(dir, "config.json");
  const preprocessorPath = join(dir, "preprocessor_config.json");
  if ((await fileSize(configPath)) === null) throw missing(dir, configPath, "a depth estimator's config.json says what it is");
  const config = await readJson(dir, configPath, DepthConfigSchema);
  if (!DEPTH_MODEL_TYPES.has(config.model_type)) throw unsupported(configPath, `describes a ${config.model_type} model; the depth estimators Underpaint runs are depth_anything`);
  if ((await fileSize(preprocessorPath)) === null) throw missing(dir, preprocessorPath, "it says how pictures are prepared for the depth estimator");
  const preprocessor = await readJson(dir, preprocessorPath, DptPreprocessorSchema);
  if (preprocessor.image_processor_type !== undefined && preprocessor.image_processor_type !== "DPTImageProcessor") {
    throw unsupported(preprocessorPath, `names ${preprocessor.image_processor_type}; Underpaint prepares pictures as DPTImageProcessor does`);
  }
  if (preprocessor.do_pad) throw unsupported(preprocessorPath, "pads pictures (do_pad), which Underpaint does not do");
  const places = [join(dir, "onnx", "model.onnx"), join(dir, "model.onnx")];
  let path: string | undefined;
  for (const file of places) if (path === undefined && (await fileSize(file)) !== null) path = file;
  if (!path) throw missing(dir, places[0]!, "a depth estimator is its onnx/model.onnx");
  const info = await inspectPart(dir, path);
  checkDevices(dir, info, options.devices ?? (await defaultDevices()));
  const external = await checkExternalData(dir, info);
  const io = describeDepthEstimator(path, info.inputs, info.outputs);
  const entry = depthEstimatorEntryForSource((await readManifest(dir))?.source);
  return { id: basename(dir), dir, path, externalData: external.paths, io, preprocessor, weightsBytes: info.fileBytes + external.bytes, registryId: entry?.id ?? null };
}

export type FoundDepthEstimators = FoundHelpers<DepthEstimatorFolder>;

/** The depth estimators in a models folder (one that does not exist has none). */
export async function findDepthEstimators(modelsDir: string, options: { devices?: readonly Device[] } = {}): Promise<FoundDepthEstimators> {
  return findHelperFolders(modelsDir, isDepthEstimatorFolder, (dir) => loadDepthEstimatorFolder(dir, options));
}

/** The estimator's session on `devices` (the first that loads it; the CPU last), its I/O checked again on the session. */
export async function createDepthEstimatorSession(
  folder: DepthEstimatorFolder,
  devices: readonly Device[],
  options: { log?: ModelLog; threads?: number } = {},
): Promise<PartSession<DepthEstimatorIO>> {
  return createHelperSession(folder.path, devices, (inputs, outputs) => describeDepthEstimator(folder.path, inputs, outputs), (device) => `depth estimator "${folder.id}" loaded on ${device}`, options);
}
