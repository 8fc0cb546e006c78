/**
 * Which files of a hub repo a pull fetches: the ONNX parts in the diffusers / Optimum layout,
 * the tokenizer(s: SDXL has tokenizer_2/ and text_encoder_2/), the scheduler config and model_index.json (optional: Amuse / OnnxStack exports
 * ship none, and the parts tell what they are). Everything else (safety checker,
 * PyTorch / safetensors weights, sample images, controlnets) stays on the hub. A preview decoder
 * (TAESD) is only its vae_decoder/ and vae_encoder/. A control-capable model's pull also fetches its
 * control UNet (controlnet/, OnnxStack's layout); a ControlNet's is its one subfolder's graph.
 */
import { ModelInstallError } from "./install-errors";
import type { HubFile } from "./hub";

/** Folders holding an ONNX graph, its external weights and Optimum's config.json. */
export const ONNX_PARTS = ["text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder"] as const;

/** Tokenizer folders: SDXL has a second (tokenizer_2/, padding with "!"). */
const TOKENIZER_FOLDERS = new Set(["tokenizer", "tokenizer_2"]);

const TOKENIZER_FILES = new Set(["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]);

/**
 * In an ONNX part folder: the graph, its external weights (weights.pb, model.onnx_data,
 * model.onnx.data, *.data) and config.json. Weights in other formats are not ours.
 */
function isOnnxPartFile(name: string): boolean {
  return name === "config.json" || /\.(onnx|pb|onnx_data|data)$/.test(name);
}

/** What a folder without model_index.json must hold besides the ONNX parts for its model to be known (tokenizer.json does not stand in here). */
const WITHOUT_INDEX = ["tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"];

export interface EngineFileOptions {
  /** Also the control UNet (controlnet/model.onnx beside unet/, OnnxStack's layout). */
  controlUnet?: boolean;
}

/** Whether the engine needs this repo file. */
export function isEngineFile(path: string, options: EngineFileOptions = {}): boolean {
  const parts = path.split("/");
  if (parts.length === 1) return path === "model_index.json";
  if (parts.length !== 2) return false;
  const [folder, name] = parts as [string, string];
  if ((ONNX_PARTS as readonly string[]).includes(folder) || (options.controlUnet && folder === "controlnet")) return isOnnxPartFile(name);
  if (TOKENIZER_FOLDERS.has(folder)) return TOKENIZER_FILES.has(name);
  if (folder === "scheduler") return name === "scheduler_config.json";
  return false;
}

/**
 * The files to fetch, or an error that says why this repo is not a model Underpaint can run,
 * before a byte of weights is downloaded.
 */
export function selectEngineFiles(repo: string, files: readonly HubFile[], options: EngineFileOptions = {}): HubFile[] {
  const paths = new Set(files.map((f) => f.path));
  if (paths.has("text_encoder_2/model.onnx") && !paths.has("text_encoder/model.onnx")) {
    throw new ModelInstallError(
      "unsupported",
      `${repo} is an SDXL refiner (a second text encoder only, conditioned on an aesthetic score), which Underpaint does not run; pull an SDXL base or turbo model.`,
    );
  }
  // SDXL (Optimum's layout): its second text encoder and tokenizer are needed as much as the first.
  const sdxl = [...paths].some((p) => p.startsWith("text_encoder_2/") || p.startsWith("tokenizer_2/"));
  const sdxlMissing = sdxl
    ? ["text_encoder_2/model.onnx", ...(paths.has("tokenizer_2/tokenizer.json") ? [] : ["tokenizer_2/vocab.json", "tokenizer_2/merges.txt"])].filter((p) => !paths.has(p))
    : [];
  // Exports without model_index.json (Amuse / OnnxStack's layout) load when the parts say what they are.
  const index = paths.has("model_index.json") ? ["model_index.json"] : [];
  const missing = [...index, "unet/model.onnx", "text_encoder/model.onnx", "vae_decoder/model.onnx"].filter((p) => !paths.has(p));
  if (missing.length === 0 && index.length === 0) {
    const notFound = WITHOUT_INDEX.filter((p) => !paths.has(p));
    if (notFound.length) {
      const onnxTokenizer = paths.has("tokenizer/model.onnx") && notFound.some((p) => p.startsWith("tokenizer/"));
      throw new ModelInstallError(
        "unsupported",
        `${repo} has no model_index.json and lacks ${notFound.join(", ")}` +
          (onnxTokenizer
            ? "; its tokenizer is an onnxruntime-extensions graph (tokenizer/model.onnx), and Underpaint reads CLIP's vocab.json and merges.txt."
            : "; without model_index.json Underpaint needs the tokenizer's files and the scheduler's config to know what the model is."),
      );
    }
  }
  if (missing.length === 0 && sdxlMissing.length) {
    throw new ModelInstallError("not_onnx", `${repo} is an SDXL model without all of its ONNX parts (it lacks ${sdxlMissing.join(", ")}).`);
  }
  if (missing.length) {
    const hasTorch = [...paths].some((p) => /\.(safetensors|bin|ckpt)$/.test(p));
    throw new ModelInstallError(
      "not_onnx",
      `${repo} is not an ONNX model in the diffusers layout (it lacks ${missing.join(", ")})` +
        (hasTorch ? "; it holds PyTorch weights, which Underpaint cannot run: look for an ONNX export of it." : "."),
    );
  }
  // A fast tokenizer's tokenizer.json, fetched where it stands in for vocab.json and merges.txt (a folder without them).
  const tokenizerJson = (f: HubFile) => {
    const [folder, name, ...rest] = f.path.split("/");
    return rest.length === 0 && name === "tokenizer.json" && TOKENIZER_FOLDERS.has(folder!) && !(paths.has(`${folder}/vocab.json`) && paths.has(`${folder}/merges.txt`));
  };
  return files.filter((f) => isEngineFile(f.path, options) || tokenizerJson(f)).sort((a, b) => a.path.localeCompare(b.path));
}

/** The parts of a preview decoder (a tiny autoencoder), in the same layout. */
export const PREVIEW_DECODER_PARTS = ["vae_decoder", "vae_encoder"] as const;

/**
 * A repo that is a VAE and nothing else (vae_decoder/model.onnx, no UNet, text encoder or
 * model_index.json): an autoencoder on its own, such as an ONNX TAESD.
 */
export function isAutoencoderOnly(paths: ReadonlySet<string>): boolean {
  return paths.has("vae_decoder/model.onnx") && !paths.has("model_index.json") && ![...paths].some((p) => p.startsWith("unet/") || p.startsWith("text_encoder/"));
}

/** The files a preview decoder's pull fetches: its two ONNX parts (README, conversion scripts and the rest stay on the hub). */
export function selectPreviewDecoderFiles(repo: string, files: readonly HubFile[]): HubFile[] {
  if (!files.some((f) => f.path === "vae_decoder/model.onnx")) {
    throw new ModelInstallError("not_onnx", `${repo} is not an ONNX tiny autoencoder in the diffusers layout (it lacks vae_decoder/model.onnx).`);
  }
  const wanted = (path: string) => {
    const [folder, name, ...rest] = path.split("/");
    return rest.length === 0 && name !== undefined && (PREVIEW_DECODER_PARTS as readonly string[]).includes(folder!) && isOnnxPartFile(name);
  };
  return files.filter((f) => wanted(f.path)).sort((a, b) => a.path.localeCompare(b.path));
}

/** The files a ControlNet's pull fetches: its subfolder's graph and external weights (icons, samples and templates stay on the hub). */
export function selectControlNetFiles(repo: string, files: readonly HubFile[], subfolder: string): HubFile[] {
  const prefix = `${subfolder}/`;
  if (!files.some((f) => f.path === `${prefix}model.onnx`)) {
    throw new ModelInstallError("not_onnx", `${repo} has no ONNX ControlNet at ${prefix}model.onnx.`);
  }
  const wanted = (path: string) => path.startsWith(prefix) && !path.slice(prefix.length).includes("/") && /\.(onnx|pb|onnx_data|data)$/.test(path);
  return files.filter((f) => wanted(f.path)).sort((a, b) => a.path.localeCompare(b.path));
}

/** What a depth estimator's pull fetches (Transformers.js layout): config.json, preprocessor_config.json and the float32 onnx/model.onnx with its external weights; the other precisions stay on the hub. */
export function selectDepthEstimatorFiles(repo: string, files: readonly HubFile[]): HubFile[] {
  const paths = new Set(files.map((f) => f.path));
  const lacking = ["config.json", "preprocessor_config.json", "onnx/model.onnx"].filter((p) => !paths.has(p));
  if (lacking.length) throw new ModelInstallError("not_onnx", `${repo} is not an ONNX depth estimator in the Transformers.js layout (it lacks ${lacking.join(", ")}).`);
  const wanted = (path: string) => path === "config.json" || path === "preprocessor_config.json" || path === "onnx/model.onnx" || /^onnx\/model\.onnx(_data|\.data)(_\d+)?$/.test(path);
  return files.filter((f) => wanted(f.path)).sort((a, b) => a.path.localeCompare(b.path));
}

/** What a pose estimator's pull fetches (DWPose as yzd-v/DWPose publishes it): the two ONNX files at the top of the repo; its PyTorch checkpoints and the rest stay on the hub. */
export function selectPoseEstimatorFiles(repo: string, files: readonly HubFile[]): HubFile[] {
  const wanted = ["yolox_l.onnx", "dw-ll_ucoco_384.onnx"];
  const paths = new Set(files.map((f) => f.path));
  const lacking = wanted.filter((p) => !paths.has(p));
  if (lacking.length) throw new ModelInstallError("not_onnx", `${repo} is not DWPose in ONNX (it lacks ${lacking.join(", ")}).`);
  return files.filter((f) => wanted.includes(f.path)).sort((a, b) => a.path.localeCompare(b.path));
}
