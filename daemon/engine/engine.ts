/**
 * What the daemon server needs from a diffusion engine. The engine knows nothing of sockets or of
 * the wire's messages: it gets a GenerationJob (mapped from a job request by the server, built
 * directly by the CLI and the bench), reports progress, honours the abort signal between steps,
 * and returns one layer per variation, already in document pixels.
 */
import type { ContextMode, Expansion, Pixels, Region, Size } from "../../geometry";
import type { ControlKind, ControlNetInfo, Mode, ModelInfo, ModelList, PreviewDecoderInfo, SchedulerName, Stage, UnavailableModel } from "../../protocol";
import type { ControlImageOptions } from "../imaging/control-image";

/** What every generation is made with, whatever its mode. */
export interface GenerationSettings {
  model: string;
  prompt: string;
  negativePrompt: string;
  /** The first variation's seed; variation i uses seed + i. */
  seed: number;
  steps: number;
  guidance: number;
  scheduler: SchedulerName;
  variations: number;
  /** Cut the prompt at the model's token limit as diffusers does, instead of 75-token windows. */
  truncatePrompt: boolean;
  /** Stream a small preview after each step. */
  previews: boolean;
  /**
   * A draft: the final picture is decoded by the preview decoder (TAESD) when one is installed, in
   * a fraction of the VAE's time and with less detail; else by the VAE. Default false: the VAE.
   */
  draft?: boolean;
  /** Steer the picture by a control image through a ControlNet. */
  control?: ControlSettings;
}

/** A job's structural control (every mode). */
export interface ControlSettings {
  kind: ControlKind;
  /**
   * The layer it follows, as sent. txt2img / img2img: any size, fitted to the picture's working
   * size. Inpaint: it covers the job's region (as the image does), outpaint the document after
   * growth, at any resolution in that area's proportions; the model's context is cut from it.
   */
  image: Pixels;
  /** The ControlNet's conditioning scale. */
  strength: number;
  /** Fractions of the steps where control begins and ends. */
  start: number;
  end: number;
  /** The ControlNet's id; default: the installed one of this kind. */
  controlNet?: string;
}

/** Text-to-image and img2img: a whole picture of `output` pixels. */
interface WholePicture {
  /** The picture's size, in pixels (the document's, usually). */
  output: Size;
  /** The size the model works at (multiples of 8); default: the model's native area in the output's proportions. */
  size?: Size;
}

/** The document an edit goes into, and where the pixels sent lie in it. */
export interface Placement {
  /** The document's size (before any growth). */
  canvas: Size;
  /** The document rectangle the image (and mask) cover; they may be smaller, a scaled-down read of it. */
  region: Region;
}

export type GenerationJob = GenerationSettings &
  (
    | ({ mode: "txt2img" } & WholePicture)
    | ({ mode: "img2img"; image: Pixels; strength: number } & WholePicture)
    | ({
        mode: "inpaint";
        image: Pixels;
        /** The selection over the same pixels: 255 = repaint, soft edges kept. */
        mask: Pixels;
        strength: number;
        /** What the model sees around the selection. */
        context: ContextMode;
        /** The most pixels the model works on (default 1.5 x its native area). */
        budget?: number;
      } & Placement)
    | ({
        mode: "outpaint";
        /** At document resolution: at least the part of the document next to the growth that the model sees. */
        image: Pixels;
        expand: Expansion;
        budget?: number;
      } & Placement)
  );

export interface EngineProgress {
  /** Which variation (0-based) this is about. */
  variation: number;
  stage: Stage;
  step: number;
  total: number;
  /** A small picture of the result so far (RGB). */
  preview?: Pixels;
}

export interface EngineResult {
  variation: number;
  seed: number;
  /** A new layer's pixels at document resolution: RGB for whole pictures, RGBA (alpha = how much shows) for edits. */
  image: Pixels;
  /** Where the layer goes, in document pixels after any canvas growth; the image's exact size. */
  region: Region;
}

export interface RunContext {
  signal: AbortSignal;
  onProgress(progress: EngineProgress): void;
  /** A sentence the artist should read when the job is done (e.g. words cut from the prompt). */
  onNotice?(message: string): void;
}

export interface EngineCapabilities {
  models: ModelInfo[];
  /** Folders in the models folder that cannot run here, each with why. */
  unavailable: UnavailableModel[];
  /** The preview decoder (TAESD) previews and drafts are decoded with; null when none is installed. */
  previewDecoder?: PreviewDecoderInfo | null;
  schedulers: SchedulerName[];
  modes: Mode[];
  device: { name: string; description: string };
  /** The installed ControlNets. */
  controlNets?: ControlNetInfo[];
  /** The depth estimator depth control estimates pictures' depth with; null when none is installed. */
  depthEstimator?: PreviewDecoderInfo | null;
  /** The pose estimator pose control finds a picture's pose with; null when none is installed. */
  poseEstimator?: PreviewDecoderInfo | null;
}

export interface Engine {
  capabilities(): Promise<EngineCapabilities>;
  /** Resolves with one result per variation; rejects with an AbortError-like error when cancelled. */
  run(job: GenerationJob, context: RunContext): Promise<EngineResult[]>;
  /**
   * What a control image of `kind` is made with beside pixel math (the installed depth or pose
   * estimator, which controlImage runs on a picture, not on a map): a control preview then shows
   * what the job follows.
   */
  controlImageOptions?(kind: ControlKind): ControlImageOptions;
  /** Called by the server when the models on disk change, if the engine can tell. */
  onModelsChanged?(listener: (list: ModelList) => void): () => void;
  dispose?(): Promise<void>;
}

/** An error the engine raises on purpose: its code and sentence go to the user as they are. */
export class EngineError extends Error {
  constructor(
    readonly code: "model_not_found" | "model_unavailable" | "unsupported_mode" | "invalid_job" | "job_failed",
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}

export class CancelledError extends Error {
  constructor() {
    super("The job was cancelled.");
    this.name = "CancelledError";
  }
}

/**
 * Why a model refuses a mode, in one sentence: a text-to-image-only model (no VAE encoder, such as
 * an SDXL-Lightning export) says it makes pictures from a prompt only.
 */
export function unsupportedModeMessage(modelName: string, mode: Mode, modes: readonly Mode[]): string {
  if (modes.length === 1 && modes[0] === "txt2img") {
    return `The model "${modelName}" cannot do ${mode}: it makes pictures from a prompt only (txt2img), having no VAE encoder to read an image with.`;
  }
  return `The model "${modelName}" cannot do ${mode}${modes.length ? ` (it does ${modes.join(", ")})` : ""}.`;
}
