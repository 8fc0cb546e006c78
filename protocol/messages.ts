/**
 * Every JSON message that crosses the socket, as zod schemas. Both sides parse what they
 * receive with these; nothing else is trusted.
 */
import { z } from "zod";
import type * as geometry from "../geometry";

const u32 = z.number().int().min(0).max(0xffffffff);

export const MODES = ["txt2img", "img2img", "inpaint", "outpaint"] as const;
export const Mode = z.enum(MODES);
export type Mode = z.infer<typeof Mode>;

export const SCHEDULERS = ["pndm", "ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm"] as const;
export const SchedulerName = z.enum(SCHEDULERS);
export type SchedulerName = z.infer<typeof SchedulerName>;

export const ERROR_CODES = [
  "handshake_required",
  "handshake_timeout",
  "bad_token",
  "protocol_mismatch",
  "origin_refused",
  "malformed_json",
  "unknown_message",
  "invalid_message",
  "message_too_large",
  "frame_invalid",
  "frame_too_large",
  "unknown_job",
  "duplicate_job",
  "queue_full",
  "model_not_found",
  "model_unavailable",
  "unsupported_mode",
  "invalid_job",
  "job_failed",
  "shutting_down",
  "internal",
] as const;
export const ErrorCode = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCode>;

/** Declares an image or mask that the client sends as a binary frame right after the message. */
export const FrameRef = z.object({
  frameId: u32,
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  channels: z.union([z.literal(1), z.literal(3), z.literal(4)]),
  bitsPerChannel: z.union([z.literal(8), z.literal(16)]).default(8),
});
export type FrameRef = z.infer<typeof FrameRef>;

const side = z.number().int().positive();

/**
 * What a ControlNet follows: edges found in the picture (canny, computed by the daemon), the
 * layer's own lines (scribble, lineart: dark lines on light, or light on dark), or a depth or pose
 * map the layer already holds (depth, pose).
 */
export const CONTROL_KINDS = ["canny", "scribble", "lineart", "depth", "pose"] as const;
export const ControlKind = z.enum(CONTROL_KINDS);
export type ControlKind = z.infer<typeof ControlKind>;

/** A job's structural control: the control image (a binary frame of kind "control") and how strongly and when it steers. */
export const ControlRequest = z
  .object({
    kind: ControlKind,
    image: FrameRef,
    /** The ControlNet's conditioning scale: 0 ignores the control image, 1 follows it as trained. */
    strength: z.number().min(0).max(2).default(1),
    /** The fraction of the steps where control begins and ends (diffusers' control_guidance_start / end). */
    start: z.number().min(0).max(1).default(0),
    end: z.number().min(0).max(1).default(1),
    /** Which installed ControlNet (its id); default: the installed one of this kind. */
    controlNet: z.string().min(1).max(256).optional(),
  })
  .superRefine((control, ctx) => {
    if (control.start >= control.end) ctx.addIssue({ code: "custom", path: ["end"], message: "control must end after it starts" });
  });
export type ControlRequest = z.infer<typeof ControlRequest>;

/** A width and height in pixels. */
export const Size = z.object({ width: side, height: side }) satisfies z.ZodType<geometry.Size>;
export type Size = geometry.Size;

/** A rectangle in document pixels. */
export const Region = z.object({
  x: z.number().int(),
  y: z.number().int(),
  width: side,
  height: side,
}) satisfies z.ZodType<geometry.Region>;
export type Region = geometry.Region;

/** Canvas extension per side, in pixels, for outpainting. */
export const Expansion = z.object({
  left: z.number().int().min(0),
  top: z.number().int().min(0),
  right: z.number().int().min(0),
  bottom: z.number().int().min(0),
}) satisfies z.ZodType<geometry.Expansion>;
export type Expansion = geometry.Expansion;

export const JobRequest = z
  .object({
    /** Chosen by the client, unique on its connection; frames carry it in their header. */
    jobId: u32,
    mode: Mode,
    model: z.string().min(1).max(256),
    prompt: z.string().max(10_000),
    negativePrompt: z.string().max(10_000).default(""),
    /** The first variation's seed; variation i uses seed + i, so any one can be re-made alone. */
    seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    steps: z.number().int().min(1).max(200),
    guidance: z.number().min(0).max(50),
    /** How much of the init image is repainted (img2img, inpaint): 0 keeps it, 1 ignores it. */
    strength: z.number().min(0).max(1).default(1),
    scheduler: SchedulerName,
    variations: z.number().int().min(1).max(8).default(1),
    /** Cut the prompt at the model's token limit as diffusers does, instead of 75-token windows. */
    truncatePrompt: z.boolean().default(false),
    /** Stream a small preview after each step. */
    previews: z.boolean().default(true),
    /**
     * A draft: the final picture is decoded by the daemon's preview decoder (TAESD) when one is
     * installed (a fraction of the VAE's time, less detail), else by the VAE. Default false: the VAE.
     */
    draft: z.boolean().default(false),
    /** The document's size in pixels, before any growth: results are placed in it. */
    canvas: Size,
    /** txt2img / img2img: the picture's size in pixels (default: the canvas). */
    output: Size.optional(),
    /** txt2img / img2img: the size the model works at, multiples of 8 (default: the daemon picks it from the model). */
    size: Size.optional(),
    /** inpaint / outpaint: the most pixels the model works on (default: 1.5 x the model's native area). */
    budget: z.number().int().min(64 * 64).optional(),
    /**
     * Inpaint: what the model sees around the selection. "automatic" pads the selection by a margin
     * that grows with its size; "selection" is the selection's bounds alone; "image" is the whole picture.
     */
    context: z.enum(["automatic", "selection", "image"]).default("automatic"),
    image: FrameRef.optional(),
    mask: FrameRef.optional(),
    /**
     * inpaint / outpaint: the document rectangle the image and mask cover (default: the whole
     * canvas). Inpainting frames may be smaller than it (read scaled down); outpainting frames are
     * at document resolution.
     */
    region: Region.optional(),
    /** Outpaint: how far to extend the canvas on each side. */
    expand: Expansion.optional(),
    /**
     * Steer the picture by a control image through a ControlNet (models whose info says `control`).
     * txt2img / img2img: the control image is fitted to the picture; inpaint: it covers `region`, as
     * the image does; outpaint: the document after growth (each in that area's proportions).
     */
    control: ControlRequest.optional(),
  })
  .superRefine((job, ctx) => {
    if (job.mode !== "txt2img" && !job.image) {
      ctx.addIssue({ code: "custom", path: ["image"], message: `${job.mode} needs an image` });
    }
    if (job.mode === "inpaint" && !job.mask) {
      ctx.addIssue({ code: "custom", path: ["mask"], message: "inpaint needs a mask" });
    }
    if (job.mode === "outpaint" && !job.expand) {
      ctx.addIssue({ code: "custom", path: ["expand"], message: "outpaint needs an expansion" });
    }
    if (job.mask && job.mask.channels !== 1) {
      ctx.addIssue({ code: "custom", path: ["mask", "channels"], message: "a mask has 1 channel" });
    }
    if (job.image && job.mask && job.image.frameId === job.mask.frameId) {
      ctx.addIssue({ code: "custom", path: ["mask", "frameId"], message: "image and mask need different frame ids" });
    }
    const control = job.control?.image.frameId;
    if (control !== undefined && (control === job.image?.frameId || control === job.mask?.frameId)) {
      ctx.addIssue({ code: "custom", path: ["control", "image", "frameId"], message: "the control image needs its own frame id" });
    }
    const r = job.region;
    if (r && (r.x < 0 || r.y < 0 || r.x + r.width > job.canvas.width || r.y + r.height > job.canvas.height)) {
      ctx.addIssue({ code: "custom", path: ["region"], message: "the region must lie inside the canvas" });
    }
  });
export type JobRequest = z.infer<typeof JobRequest>;
export type JobRequestInput = z.input<typeof JobRequest>;

// ---- client -> daemon ----

export const Hello = z.object({
  type: z.literal("hello"),
  protocol: z.number().int(),
  client: z.object({ name: z.string().max(100), version: z.string().max(50) }),
  /** Missing counts as wrong, so the client hears "bad token" rather than "invalid message". */
  token: z.string().max(200).default(""),
});

export const Submit = z.object({ type: z.literal("submit"), job: JobRequest });
export const Cancel = z.object({ type: z.literal("cancel"), jobId: u32 });
export const ListModels = z.object({ type: z.literal("list-models") });
/** Installs a model from the Hugging Face Hub: a registry id ("sd-turbo") or an owner/name repo id. */
export const PullModel = z.object({
  type: z.literal("pull-model"),
  model: z.string().min(1).max(200),
  revision: z.string().min(1).max(200).optional(),
});
/** Stops a pull (by what was asked for, or the model id); what is on disk is kept for resuming. */
export const CancelPull = z.object({ type: z.literal("cancel-pull"), model: z.string().min(1).max(200) });

/**
 * Asks for the control image a ControlNet of `kind` would follow, made from the image (a frame of
 * kind "control" sent right after, carrying `requestId` as its job id): canny edges found in it,
 * lines made white on black, depth and pose maps as they are. The answer is a control-preview
 * message and a "control" frame of the same size (or an error with this id). The id shares the
 * connection's job ids: it must not be the id of an active job.
 */
export const ControlPreviewRequest = z.object({
  type: z.literal("control-preview"),
  requestId: u32,
  kind: ControlKind,
  image: FrameRef,
});
export type ControlPreviewRequest = z.infer<typeof ControlPreviewRequest>;

export const ClientMessage = z.discriminatedUnion("type", [Hello, Submit, Cancel, ListModels, PullModel, CancelPull, ControlPreviewRequest]);
export type ClientMessage = z.infer<typeof ClientMessage>;
export type ClientMessageInput = z.input<typeof ClientMessage>;
export const CLIENT_MESSAGE_TYPES = ClientMessage.options.map((o) => o.shape.type.value);

// ---- daemon -> client ----

/** The settings a model makes good pictures with; the panel applies them when the model is chosen. */
export const RecommendedSettings = z.object({
  steps: z.number().int().min(1).max(200),
  guidance: z.number().min(0).max(50),
  scheduler: SchedulerName,
});
export type RecommendedSettings = z.infer<typeof RecommendedSettings>;

/**
 * What guidance does for a model: "classifier-free" (a second, unconditioned pass: the usual),
 * "embedded" (LCM models that take the guidance as an input: one pass, the value still matters),
 * "none" (distilled few-step models such as SD-Turbo: guidance is off, and a negative prompt does nothing).
 */
export const GuidanceKind = z.enum(["classifier-free", "embedded", "none"]);
export type GuidanceKind = z.infer<typeof GuidanceKind>;

export const ModelInfo = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.enum(["txt2img", "inpainting"]),
  modes: z.array(Mode),
  nativeResolution: z.number().int().positive(),
  turbo: z.boolean(),
  recommended: RecommendedSettings,
  guidance: GuidanceKind,
  /** The registry entry it was installed as, when it was. */
  registryId: z.string().optional(),
  /** It can be steered by a ControlNet (its folder has a UNet that takes a ControlNet's residuals). */
  control: z.boolean().optional(),
  /** An SDXL model (present only then): it follows SDXL ControlNets, not SD 1.x / 2.x ones. */
  sdxl: z.literal(true).optional(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

/** An installed ControlNet: what jobs name in control.controlNet, and what it follows. */
export const ControlNetInfo = z.object({
  id: z.string(),
  name: z.string(),
  kind: ControlKind,
  /** The registry entry it was installed as, when it was. */
  registryId: z.string().optional(),
  /** Made for SDXL models (present only then); otherwise for SD 1.x / 2.x. */
  sdxl: z.literal(true).optional(),
});
export type ControlNetInfo = z.infer<typeof ControlNetInfo>;


/** A model the registry offers (installed or not): what the panel's model setup lists. */
export const RegistryModel = z.object({
  id: z.string(),
  name: z.string(),
  repo: z.string(),
  kind: z.enum(["txt2img", "inpainting"]),
  nativeResolution: z.number().int().positive(),
  turbo: z.boolean(),
  precision: z.enum(["fp32", "fp16"]),
  /** About how much a pull downloads (from the architecture's parameter count and the precision). */
  approximateBytes: z.number().int().positive(),
  license: z.string(),
  /** What it is for, in a sentence or two. */
  description: z.string(),
  recommended: RecommendedSettings,
});
export type RegistryModel = z.infer<typeof RegistryModel>;

/** The preview decoder (TAESD, a tiny autoencoder) the daemon decodes previews and drafts with. */
export const PreviewDecoderInfo = z.object({
  id: z.string(),
  /** The registry entry it was installed as, when it was. */
  registryId: z.string().optional(),
});
export type PreviewDecoderInfo = z.infer<typeof PreviewDecoderInfo>;

/**
 * A network the registry offers beside the models (pull-model with its id): a preview decoder, a
 * depth or pose estimator. Not a model, never in the model menu.
 */
const RegistryHelperNetwork = z.object({
  id: z.string(),
  name: z.string(),
  repo: z.string(),
  precision: z.enum(["fp32", "fp16"]),
  approximateBytes: z.number().int().positive(),
  license: z.string(),
  description: z.string(),
});

/** An installed helper network (the preview decoder, the depth or pose estimator), null when there is none; absent from daemons that do not say. */
const InstalledHelperNetwork = PreviewDecoderInfo.nullable().optional();
const InstalledDepthEstimator = InstalledHelperNetwork;
const InstalledPoseEstimator = InstalledHelperNetwork;

/** A depth estimator the registry offers. */
export const RegistryDepthEstimator = RegistryHelperNetwork;
export type RegistryDepthEstimator = z.infer<typeof RegistryDepthEstimator>;

/** A pose estimator the registry offers. */
export const RegistryPoseEstimator = RegistryHelperNetwork;
export type RegistryPoseEstimator = z.infer<typeof RegistryPoseEstimator>;

/** A preview decoder (TAESD) the registry offers. */
export const RegistryPreviewDecoder = RegistryHelperNetwork;
export type RegistryPreviewDecoder = z.infer<typeof RegistryPreviewDecoder>;

/** A ControlNet the registry offers (pull-model with its id): what it follows, not a model of the model menu. */
export const RegistryControlNet = z.object({
  id: z.string(),
  name: z.string(),
  repo: z.string(),
  kind: ControlKind,
  precision: z.enum(["fp32", "fp16"]),
  approximateBytes: z.number().int().positive(),
  license: z.string(),
  description: z.string(),
  /** Made for SDXL models (present only then). */
  sdxl: z.literal(true).optional(),
});
export type RegistryControlNet = z.infer<typeof RegistryControlNet>;

/**
 * The installed preview decoder, null when there is none; absent from daemons that do not say
 * (an additive field: older panels ignore it).
 */
const InstalledPreviewDecoder = InstalledHelperNetwork;

/**
 * A folder in the models folder that cannot run here (a part missing or damaged, or a graph only a
 * GPU provider can run), listed so it does not just vanish: the artist reads why.
 */
export const UnavailableModel = z.object({
  id: z.string(),
  code: z.string(),
  /** One sentence for the artist: what is wrong and what to do. */
  message: z.string(),
});
export type UnavailableModel = z.infer<typeof UnavailableModel>;

/** The models folder as the panel shows it: what can run, and what cannot and why. */
export const ModelList = z.object({
  models: z.array(ModelInfo),
  unavailable: z.array(UnavailableModel),
  previewDecoder: InstalledPreviewDecoder,
  /** The installed ControlNets (absent from daemons without control). */
  controlNets: z.array(ControlNetInfo).optional(),
  depthEstimator: InstalledDepthEstimator,
  poseEstimator: InstalledPoseEstimator,
});
export type ModelList = z.infer<typeof ModelList>;

export const Limits = z.object({
  maxMessageBytes: z.number().int().positive(),
  maxImagePixels: z.number().int().positive(),
  maxQueuedJobsPerClient: z.number().int().positive(),
  maxVariations: z.number().int().positive(),
  chunkBytes: z.number().int().positive(),
});
export type Limits = z.infer<typeof Limits>;

export const DOWNLOAD_STAGES = ["listing", "downloading", "verifying", "installing", "done", "failed", "cancelled"] as const;
export const DownloadStage = z.enum(DOWNLOAD_STAGES);
export type DownloadStage = z.infer<typeof DownloadStage>;

/** Where a model's install stands: a model-download message's fields, and an entry of Capabilities.downloads. */
export const DownloadStatus = z.object({
  /** The id the model will have in the models list. */
  model: z.string(),
  /** What was asked for: a registry id or an owner/name repo id. */
  request: z.string().optional(),
  /** owner/name@commit, once known. */
  source: z.string().optional(),
  stage: DownloadStage,
  file: z.string().optional(),
  bytes: z.number().int().min(0),
  total: z.number().int().min(0),
  bytesPerSecond: z.number().min(0).optional(),
  etaSeconds: z.number().min(0).optional(),
  /** stage failed / cancelled: why, as a sentence for the artist. */
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type DownloadStatus = z.infer<typeof DownloadStatus>;

export const Capabilities = z.object({
  models: z.array(ModelInfo),
  unavailable: z.array(UnavailableModel),
  /** The models the daemon can pull (pull-model with their id). */
  registry: z.array(RegistryModel),
  /** The preview decoders the daemon can pull (pull-model with their id); absent from daemons that do not say. */
  registryPreviewDecoders: z.array(RegistryPreviewDecoder).optional(),
  /** The ControlNets the daemon can pull (pull-model with their id); absent from daemons that do not say. */
  registryControlNets: z.array(RegistryControlNet).optional(),
  /** The depth estimators the daemon can pull (pull-model with their id); absent from daemons that do not say. */
  registryDepthEstimators: z.array(RegistryDepthEstimator).optional(),
  depthEstimator: InstalledDepthEstimator,
  /** The pose estimators the daemon can pull (pull-model with their id); absent from daemons that do not say. */
  registryPoseEstimators: z.array(RegistryPoseEstimator).optional(),
  poseEstimator: InstalledPoseEstimator,
  /** The daemon answers control-preview (absent: it does not). */
  controlPreview: z.boolean().optional(),
  previewDecoder: InstalledPreviewDecoder,
  /**
   * The pulls the daemon knows of: running ones with their latest progress, and ones stopped part-way
   * (stage failed or cancelled) whose downloaded bytes are kept on disk; pull-model with their request resumes them.
   */
  downloads: z.array(DownloadStatus),
  schedulers: z.array(SchedulerName),
  modes: z.array(Mode),
  limits: Limits,
  device: z.object({ name: z.string(), description: z.string() }),
  /** The installed ControlNets (absent from daemons without control). */
  controlNets: z.array(ControlNetInfo).optional(),
});
export type Capabilities = z.infer<typeof Capabilities>;

export const Welcome = z.object({
  type: z.literal("welcome"),
  protocol: z.number().int(),
  daemon: z.object({ name: z.string(), version: z.string() }),
  capabilities: Capabilities,
});

export const ErrorMessage = z.object({
  type: z.literal("error"),
  code: ErrorCode,
  message: z.string(),
  jobId: u32.optional(),
});
export type ErrorMessage = z.infer<typeof ErrorMessage>;

export const Accepted = z.object({
  type: z.literal("accepted"),
  jobId: u32,
  /** Jobs ahead of this one on the device; 0 = it runs next (or now). */
  position: z.number().int().min(0),
});

export const QueueUpdate = z.object({ type: z.literal("queue"), jobId: u32, position: z.number().int().min(0) });

export const STAGES = ["loading", "encoding", "denoising", "decoding", "compositing"] as const;
export const Stage = z.enum(STAGES);
export type Stage = z.infer<typeof Stage>;

export const Progress = z.object({
  type: z.literal("progress"),
  jobId: u32,
  /** Which variation (0-based) this is about. */
  variation: z.number().int().min(0),
  stage: Stage,
  step: z.number().int().min(0),
  total: z.number().int().min(0),
  /** A preview frame with this id follows the message. */
  previewFrameId: u32.optional(),
});

export const Result = z.object({
  type: z.literal("result"),
  jobId: u32,
  variation: z.number().int().min(0),
  seed: z.number().int().min(0),
  /** The result frame with this id follows the message. */
  frame: FrameRef,
  /**
   * Where the layer goes, in document pixels after any canvas growth: the frame's exact size. Whole
   * pictures cover the output; edits are cut to where they show (alpha > 0).
   */
  region: Region,
});

export const Done = z.object({
  type: z.literal("done"),
  jobId: u32,
  status: z.enum(["completed", "cancelled", "failed"]),
  error: z.object({ code: ErrorCode, message: z.string() }).optional(),
  /** Things the artist should know about a finished job, as sentences (e.g. words cut from a long prompt). */
  notices: z.array(z.string()).optional(),
});

export const ModelsList = ModelList.extend({ type: z.literal("models") });

/** A model being installed (by a panel's pull-model or by `npx underpaint models pull`), sent to every panel. */
export const ModelDownload = DownloadStatus.extend({ type: z.literal("model-download") });
export type ModelDownload = z.infer<typeof ModelDownload>;

/** The processed control image of a control-preview request: an 8-bit RGB "control" frame with this id follows. */
export const ControlPreview = z.object({
  type: z.literal("control-preview"),
  requestId: u32,
  kind: ControlKind,
  frame: FrameRef,
});
export type ControlPreview = z.infer<typeof ControlPreview>;

export const DaemonMessage = z.discriminatedUnion("type", [
  Welcome,
  ErrorMessage,
  Accepted,
  QueueUpdate,
  Progress,
  Result,
  Done,
  ModelsList,
  ModelDownload,
  ControlPreview,
]);
export type DaemonMessage = z.infer<typeof DaemonMessage>;
export type DaemonMessageInput = z.input<typeof DaemonMessage>;

export type MessageOf<U extends { type: string }, T extends U["type"]> = Extract<U, { type: T }>;
