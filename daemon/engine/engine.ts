/**
 * What the daemon server needs from a diffusion engine. The engine knows nothing of sockets:
 * it gets a job with its pixels, reports progress, honours the abort signal between steps,
 * and returns one image per variation.
 */
import type { ImageFrame, JobRequest, Mode, ModelInfo, ModelList, Region, SchedulerName, Stage, UnavailableModel } from "../../protocol";

/** Raw interleaved pixels, row-major. */
export interface Raster {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  bitsPerChannel: 8 | 16;
  data: Uint8Array;
}

export function rasterOf(frame: ImageFrame): Raster {
  return { width: frame.width, height: frame.height, channels: frame.channels, bitsPerChannel: frame.bitsPerChannel, data: frame.data };
}

/** A job as the engine sees it: the request's settings and its pixels. */
export type EngineJob = Omit<JobRequest, "image" | "mask" | "context"> & {
  image?: Raster;
  mask?: Raster;
  /** Inpaint: what the model sees around the selection (default "automatic"). */
  context?: JobRequest["context"];
};

export interface EngineProgress {
  stage: Stage;
  step: number;
  total: number;
  /** A small picture of the result so far (8-bit RGB). */
  preview?: Raster;
}

export interface EngineResult {
  variation: number;
  seed: number;
  image: Raster;
  /** Where the image goes in the document, for masked edits. */
  region?: Region;
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
  schedulers: SchedulerName[];
  modes: Mode[];
  device: { name: string; description: string };
}

export interface Engine {
  capabilities(): Promise<EngineCapabilities>;
  /** Resolves with one result per variation; rejects with an AbortError-like error when cancelled. */
  run(job: EngineJob, context: RunContext): Promise<EngineResult[]>;
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
