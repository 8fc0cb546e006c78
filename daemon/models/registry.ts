/**
 * The registry of known models (registry.json, checked with zod when loaded): Stable Diffusion
 * checkpoints published on the Hugging Face Hub in the diffusers ONNX layout, each with the
 * revision to pull and the settings that suit it, and preview decoders (TAESD): small autoencoders
 * that are no generation model (never in the panel's model menu) but are pulled like one, as are
 * ControlNets, depth estimators (Depth Anything: depth maps from pictures) and pose estimators
 * (DWPose: OpenPose maps from pictures). Anything
 * else on the hub in those layouts can be pulled by its owner/name id; `pullTarget` turns what the
 * artist typed into one or the other.
 */
import { z } from "zod";
import { ControlKind, RecommendedSettings, type RegistryControlNet, type RegistryDepthEstimator, type RegistryModel, type RegistryPoseEstimator, type RegistryPreviewDecoder } from "../../protocol";
import registryJson from "./registry.json";
import { ModelInstallError } from "./install-errors";
import type { ModelManifest } from "./manifest";

const COMMIT = /^[0-9a-f]{40}$/;

/** A model folder's name: what jobs and the CLI call it. No leading dot (those are ours), no separators. */
export const ModelId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, "letters, digits, '.', '_' and '-' only, starting with a letter or digit");

/** owner/name, as the hub spells repo ids. */
export const RepoId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, "expected owner/name");

/** Where an entry comes from, whatever it is. */
const HubSource = {
  id: ModelId,
  name: z.string().min(1),
  repo: RepoId,
  /** A full commit when pinned; a branch otherwise (then `note` says why it is not pinned). */
  revision: z.string().min(1),
  pinned: z.boolean(),
  /** What is and is not verified about the entry (required when it is not pinned). */
  note: z.string().optional(),
};

function checkPinning(entry: { pinned: boolean; revision: string; note?: string | undefined }, ctx: z.RefinementCtx): void {
  if (entry.pinned && !COMMIT.test(entry.revision)) {
    ctx.addIssue({ code: "custom", path: ["revision"], message: "a pinned revision is a full 40-character commit hash" });
  }
  if (!entry.pinned && !entry.note) {
    ctx.addIssue({ code: "custom", path: ["note"], message: "an unpinned entry says why in `note`" });
  }
}

export const RegistryEntry = z
  .object({
    ...HubSource,
    kind: z.enum(["txt2img", "inpainting"]),
    nativeResolution: z.number().int().positive(),
    turbo: z.boolean(),
    /** The network layout its weights fill: what its download size is computed from (see approximateBytes). */
    architecture: z.enum(["sd15", "sd21", "sdxl"]),
    precision: z.enum(["fp32", "fp16"]),
    recommended: RecommendedSettings,
    license: z.string().min(1),
    description: z.string().min(1),
    /** The repo has a control UNet (controlnet/model.onnx, OnnxStack's layout): a pull fetches it, and ControlNets can steer the model. */
    control: z.boolean().default(false),
  })
  .superRefine(checkPinning);
export type RegistryEntry = z.infer<typeof RegistryEntry>;

/**
 * A ControlNet: one model.onnx in a subfolder of a repo that holds several (TensorStack/ControlNet-onnx's
 * SD/Canny/, ...), with OnnxStack's inputs and outputs; it steers models of its architecture whose
 * entries (or folders) have a control UNet.
 */
export const ControlNetEntry = z
  .object({
    ...HubSource,
    kind: z.literal("controlnet"),
    /** What it follows. */
    control: ControlKind,
    /** The base models it was trained for. */
    architecture: z.enum(["sd15", "sd21", "sdxl"]),
    /** The repo folder holding its model.onnx; a pull fetches only that folder's ONNX files. */
    subfolder: z.string().regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/, "a relative folder path"),
    precision: z.enum(["fp32", "fp16"]),
    license: z.string().min(1),
    description: z.string().min(1),
  })
  .superRefine(checkPinning);
export type ControlNetEntry = z.infer<typeof ControlNetEntry>;

/**
 * A preview decoder: a tiny autoencoder for SD 1.x / 2.x latents (TAESD) in the diffusers ONNX layout
 * (vae_decoder/, optionally vae_encoder/). The engine decodes previews with it, and drafts when asked.
 */
export const PreviewDecoderEntry = z
  .object({
    ...HubSource,
    kind: z.literal("preview-decoder"),
    /** What the graphs' image ends hold: diffusers' AutoencoderTiny export [-1, 1], or taesd.py's own nets [0, 1]. */
    imageRange: z.enum(["minus-one-to-one", "zero-to-one"]),
    /** Weights of its decoder and encoder together (what its download size is computed from). */
    parameters: z.number().int().positive(),
    precision: z.enum(["fp32", "fp16"]),
    license: z.string().min(1),
    description: z.string().min(1),
  })
  .superRefine(checkPinning);
export type PreviewDecoderEntry = z.infer<typeof PreviewDecoderEntry>;

/** A helper network beside the models (a depth or pose estimator): pulled like one, sized by its own weight count. */
function helperEntry<K extends string>(kind: K) {
  return z
    .object({
      ...HubSource,
      kind: z.literal(kind),
      /** Its weights (what its download size is computed from). */
      parameters: z.number().int().positive(),
      precision: z.enum(["fp32", "fp16"]),
      license: z.string().min(1),
      description: z.string().min(1),
    })
    .superRefine(checkPinning);
}

/**
 * A depth estimator: a network that makes a depth map from a picture (Depth Anything), for depth
 * ControlNets when the artist's layer is a picture rather than a depth map. Transformers.js layout:
 * config.json, preprocessor_config.json (DPTImageProcessor) and onnx/model.onnx; a pull fetches those
 * three only (the repo's other precisions stay on the hub).
 */
export const DepthEstimatorEntry = helperEntry("depth-estimator");
export type DepthEstimatorEntry = z.infer<typeof DepthEstimatorEntry>;

/**
 * A pose estimator: networks that find people and their keypoints in a picture (DWPose: a YOLOX
 * person detector and an RTMPose whole-body model), drawn as an OpenPose map for pose ControlNets
 * when the artist's layer is a picture rather than a pose map. A pull fetches the two ONNX files
 * only (yolox_l.onnx, dw-ll_ucoco_384.onnx; the repo's other files stay on the hub).
 */
export const PoseEstimatorEntry = helperEntry("pose-estimator");
export type PoseEstimatorEntry = z.infer<typeof PoseEstimatorEntry>;

export const Registry = z
  .object({
    version: z.literal(1),
    models: z.array(RegistryEntry).min(1),
    previewDecoders: z.array(PreviewDecoderEntry).default([]),
    controlNets: z.array(ControlNetEntry).default([]),
    depthEstimators: z.array(DepthEstimatorEntry).default([]),
    poseEstimators: z.array(PoseEstimatorEntry).default([]),
  })
  .superRefine((registry, ctx) => {
    const seen = new Set<string>();
    const check = (list: "models" | "previewDecoders" | "controlNets" | "depthEstimators" | "poseEstimators") =>
      registry[list].forEach((m, i) => {
        if (seen.has(m.id)) ctx.addIssue({ code: "custom", path: [list, i, "id"], message: `duplicate id ${m.id}` });
        seen.add(m.id);
      });
    check("models");
    check("previewDecoders");
    check("controlNets");
    check("depthEstimators");
    check("poseEstimators");
  });
export type Registry = z.infer<typeof Registry>;

export type Architecture = RegistryEntry["architecture"];

/**
 * Weights per part of each architecture, exact element counts of the diffusers networks. SD 1.5:
 * CLIP ViT-L/14 text encoder (768 wide, 12 layers), UNet with 768-wide cross-attention. SD 2.1 (and
 * SD-Turbo, distilled from it): OpenCLIP ViT-H/14 text encoder as diffusers ships it (1024 wide,
 * 4096 MLP, 23 layers, 49408-token vocabulary, 77 positions), the same UNet with 1024-wide
 * cross-attention (+512 weights per transformer channel in to_k/to_v), the same VAE. Both match
 * scripts/onnx-builder's graphs built with these configs (test/daemon/models/registry.test.ts),
 * and SD 1.5's the published counts (scripts/onnx-builder/counts.ts). SDXL base 1.0 (and
 * SDXL-Turbo, distilled from it): CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 with its projection
 * (text_encoder_2), a 2.57 B UNet with 2048-wide cross-attention, SD's VAE; the published
 * counts, which the builder's sdxl.ts graphs match (test/scripts/sdxl-builder.test.ts).
 */
export const ARCHITECTURE_PARAMETERS: Record<Architecture, Record<"text_encoder" | "unet" | "vae_decoder" | "vae_encoder", number> & { text_encoder_2?: number }> = {
  sd15: { text_encoder: 123_060_480, unet: 859_520_964, vae_decoder: 49_490_199, vae_encoder: 34_163_664 },
  sd21: { text_encoder: 340_387_840, unet: 865_910_724, vae_decoder: 49_490_199, vae_encoder: 34_163_664 },
  sdxl: { text_encoder: 123_060_480, text_encoder_2: 694_659_840, unet: 2_567_463_684, vae_decoder: 49_490_199, vae_encoder: 34_163_664 },
};

/**
 * ControlNet's weights: SD 1.5's (diffusers ControlNetModel, ControlNet 1.0 and 1.1 alike;
 * scripts/onnx-builder/controlnet.ts builds exactly this many); SD 2.1's adds, as its UNet does,
 * 2 x 256 to_k / to_v weights per transformer channel (1024-wide context instead of 768) in its 7
 * transformers (320, 320, 640, 640, 1280, 1280 and the mid block's 1280 channels). SDXL's: the
 * builder's (scripts/onnx-builder/controlnet.ts with sdxl.ts's configuration; about the 2.5 GB of float16
 * weights its ONNX exports hold: no exact published count was found).
 */
export const CONTROLNET_PARAMETERS: Record<ControlNetEntry["architecture"], number> = { sd15: 361_279_120, sd21: 361_279_120 + 2 * 256 * 5760, sdxl: 1_251_014_160 };

const BYTES_PER_PARAMETER: Record<RegistryEntry["precision"], number> = { fp32: 4, fp16: 2 };

/**
 * About how many bytes a pull of `entry` downloads: its architecture's weights (a preview decoder's
 * own count) times the bytes per weight of its precision. Approximate: an inpainting UNet's 5 more
 * input channels (14,400 weights), LCM's guidance embedding (81,920), the ONNX graphs, tokenizer
 * and configs are left out, and a repo may ship a part more or less (a VAE encoder); the hub's
 * listing gives the exact total when the pull starts.
 */
export function approximateBytes(entry: RegistryEntry | PreviewDecoderEntry | ControlNetEntry | DepthEstimatorEntry | PoseEstimatorEntry): number {
  const parameters =
    entry.kind === "preview-decoder" || entry.kind === "depth-estimator" || entry.kind === "pose-estimator"
      ? entry.parameters
      : entry.kind === "controlnet"
        ? CONTROLNET_PARAMETERS[entry.architecture]
        : Object.values(ARCHITECTURE_PARAMETERS[entry.architecture]).reduce((a, b) => a + b, 0) + (entry.control ? ARCHITECTURE_PARAMETERS[entry.architecture].unet : 0);
  return parameters * BYTES_PER_PARAMETER[entry.precision];
}

/** What the panel's model setup lists: every generation model's entry, without the pull's pinning details. */
export function registryModels(registry: Registry = loadRegistry()): RegistryModel[] {
  return registry.models.map((m) => ({
    id: m.id,
    name: m.name,
    repo: m.repo,
    kind: m.kind,
    nativeResolution: m.nativeResolution,
    turbo: m.turbo,
    precision: m.precision,
    approximateBytes: approximateBytes(m),
    license: m.license,
    description: m.description,
    recommended: { ...m.recommended },
  }));
}

/** A pull the panel's model setup offers beside the models (a preview decoder, a depth or pose estimator), without the pull's pinning details. */
type SideEntry = PreviewDecoderEntry | DepthEstimatorEntry | PoseEstimatorEntry;
function sideEntry(m: SideEntry): RegistryPreviewDecoder & RegistryDepthEstimator & RegistryPoseEstimator {
  return {
    id: m.id,
    name: m.name,
    repo: m.repo,
    precision: m.precision,
    approximateBytes: approximateBytes(m),
    license: m.license,
    description: m.description,
  };
}

/** What the panel's model setup offers beside the models: the preview decoders (TAESD). */
export function registryPreviewDecoders(registry: Registry = loadRegistry()): RegistryPreviewDecoder[] {
  return registry.previewDecoders.map(sideEntry);
}

/** The depth estimators the panel's model setup offers (depth control from a picture). */
export function registryDepthEstimators(registry: Registry = loadRegistry()): RegistryDepthEstimator[] {
  return registry.depthEstimators.map(sideEntry);
}

/** The pose estimators the panel's model setup offers (pose control from a picture). */
export function registryPoseEstimators(registry: Registry = loadRegistry()): RegistryPoseEstimator[] {
  return registry.poseEstimators.map(sideEntry);
}

/** The ControlNets the panel's model setup offers, without the pull's pinning details. */
export function registryControlNets(registry: Registry = loadRegistry()): RegistryControlNet[] {
  return registry.controlNets.map((m) => ({
    id: m.id,
    name: m.name,
    repo: m.repo,
    kind: m.control,
    precision: m.precision,
    approximateBytes: approximateBytes(m),
    license: m.license,
    description: m.description,
    ...(m.architecture === "sdxl" ? { sdxl: true as const } : {}),
  }));
}

let cached: Registry | undefined;

/** The registry shipped with the daemon. Throws (a bug, caught by the tests) if the JSON is invalid. */
export function loadRegistry(): Registry {
  cached ??= Registry.parse(registryJson);
  return cached;
}

/** A generation model's entry by id (preview decoders are not among them: see findPreviewDecoderEntry). */
export function findRegistryEntry(id: string, registry: Registry = loadRegistry()): RegistryEntry | undefined {
  return registry.models.find((m) => m.id === id);
}

export function findPreviewDecoderEntry(id: string, registry: Registry = loadRegistry()): PreviewDecoderEntry | undefined {
  return registry.previewDecoders.find((m) => m.id === id);
}

/** The preview decoder's entry a folder was installed as: its manifest's registryId, or the entry whose repo it came from. */
export function previewDecoderEntryForSource(source: ModelManifest["source"] | undefined, registry: Registry = loadRegistry()): PreviewDecoderEntry | undefined {
  return sideEntryForSource(registry.previewDecoders, source);
}

export function findControlNetEntry(id: string, registry: Registry = loadRegistry()): ControlNetEntry | undefined {
  return registry.controlNets.find((m) => m.id === id);
}

/** The ControlNet entry a folder was installed as: its manifest's registryId (a repo holds several, so the repo alone does not say). */
export function controlNetEntryForSource(source: ModelManifest["source"] | undefined, registry: Registry = loadRegistry()): ControlNetEntry | undefined {
  if (source?.kind !== "hub" || !source.registryId) return undefined;
  return findControlNetEntry(source.registryId, registry);
}

export function findDepthEstimatorEntry(id: string, registry: Registry = loadRegistry()): DepthEstimatorEntry | undefined {
  return registry.depthEstimators.find((m) => m.id === id);
}

/** The entry of `list` a helper folder was installed as: its manifest's registryId, or the entry whose repo it came from. */
function sideEntryForSource<T extends { id: string; repo: string }>(list: readonly T[], source: ModelManifest["source"] | undefined): T | undefined {
  if (source?.kind !== "hub") return undefined;
  if (source.registryId) return list.find((m) => m.id === source.registryId);
  const repo = source.repo.toLowerCase();
  return list.find((m) => m.repo.toLowerCase() === repo);
}

/** The depth estimator's entry a folder was installed as. */
export function depthEstimatorEntryForSource(source: ModelManifest["source"] | undefined, registry: Registry = loadRegistry()): DepthEstimatorEntry | undefined {
  return sideEntryForSource(registry.depthEstimators, source);
}

export function findPoseEstimatorEntry(id: string, registry: Registry = loadRegistry()): PoseEstimatorEntry | undefined {
  return registry.poseEstimators.find((m) => m.id === id);
}

/** The pose estimator's entry a folder was installed as. */
export function poseEstimatorEntryForSource(source: ModelManifest["source"] | undefined, registry: Registry = loadRegistry()): PoseEstimatorEntry | undefined {
  return sideEntryForSource(registry.poseEstimators, source);
}

/** The entry a model folder was installed as: its manifest's registryId, or the entry whose repo it came from. */
export function registryEntryForSource(source: ModelManifest["source"] | undefined, registry: Registry = loadRegistry()): RegistryEntry | undefined {
  if (source?.kind !== "hub") return undefined;
  if (source.registryId) return findRegistryEntry(source.registryId, registry);
  const repo = source.repo.toLowerCase();
  return registry.models.find((m) => m.repo.toLowerCase() === repo);
}

/** What a pull fetches: a hub repo at a revision, installed as the folder `id`. */
export interface PullTarget {
  id: string;
  repo: string;
  revision: string;
  /** The registry entry, when the request named one. */
  entry?: RegistryEntry | PreviewDecoderEntry | ControlNetEntry | DepthEstimatorEntry | PoseEstimatorEntry;
}

/**
 * A registry id ("sd-turbo") or a hub repo id ("owner/name"). A repo installs under its name
 * unless `as` says otherwise; `revision` overrides the registry's pin or the default "main".
 */
export function pullTarget(request: string, options: { revision?: string; as?: string } = {}, registry = loadRegistry()): PullTarget {
  const entries = [...registry.models, ...registry.previewDecoders, ...registry.controlNets, ...registry.depthEstimators, ...registry.poseEstimators];
  const entry = entries.find((m) => m.id === request);
  let target: PullTarget;
  if (entry) {
    target = { id: entry.id, repo: entry.repo, revision: entry.revision, entry };
  } else if (RepoId.safeParse(request).success) {
    const known = entries.find((m) => m.repo.toLowerCase() === request.toLowerCase());
    target = known
      ? { id: known.id, repo: known.repo, revision: known.revision, entry: known }
      : { id: request.split("/")[1]!, repo: request, revision: "main" };
  } else {
    const ids = entries.map((m) => m.id).join(", ");
    throw new ModelInstallError(
      "unknown_model",
      `There is no model "${request}" in the registry (known: ${ids}); to pull another model from the Hugging Face Hub, give its repo id as owner/name.`,
    );
  }
  if (options.revision) target = { ...target, revision: options.revision };
  if (options.as) target = { ...target, id: checkModelId(options.as) };
  return target;
}

export function checkModelId(id: string): string {
  const parsed = ModelId.safeParse(id);
  if (!parsed.success) {
    throw new ModelInstallError("invalid_request", `"${id}" cannot name a model folder: ${parsed.error.issues[0]?.message ?? "invalid"}.`);
  }
  return parsed.data;
}
