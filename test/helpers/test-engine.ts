/**
 * A deterministic engine for server tests (never used by product code): runs `steps` steps of
 * `stepMs` each, honours the abort signal between steps, and returns the init image unchanged
 * (so frames can be checked byte for byte) or a gradient for txt2img.
 */
import type { Engine, EngineCapabilities, EngineJob, EngineResult, Raster, RunContext } from "../../daemon/engine/engine";
import { CancelledError } from "../../daemon/engine/engine";
import type { ModelInfo, ModelList, UnavailableModel } from "../../protocol";

export interface TestEngineOptions {
  stepMs?: number;
  models?: ModelInfo[];
  /** Throws this from run() instead of producing images. */
  failWith?: Error;
  /** Holds the main thread this long in every step, as onnxruntime-node's session.run does. */
  blockMs?: number;
}

export const TEST_MODEL: ModelInfo = {
  id: "test-model",
  name: "Test model",
  kind: "inpainting",
  modes: ["txt2img", "img2img", "inpaint", "outpaint"],
  nativeResolution: 64,
  turbo: false,
};

export class TestEngine implements Engine {
  /** Steps actually executed, per job id, so tests can see where a cancel landed. */
  readonly stepsRun = new Map<number, number>();
  readonly started: number[] = [];
  private listeners = new Set<(list: ModelList) => void>();
  models: ModelInfo[];
  unavailable: UnavailableModel[] = [];

  constructor(private readonly options: TestEngineOptions = {}) {
    this.models = options.models ?? [TEST_MODEL];
  }

  async capabilities(): Promise<EngineCapabilities> {
    return {
      models: this.models,
      unavailable: this.unavailable,
      schedulers: ["euler", "ddim"],
      modes: ["txt2img", "img2img", "inpaint", "outpaint"],
      device: { name: "cpu", description: "test engine" },
    };
  }

  setModels(models: ModelInfo[], unavailable: UnavailableModel[] = []): void {
    this.models = models;
    this.unavailable = unavailable;
    for (const listener of this.listeners) listener({ models, unavailable });
  }

  onModelsChanged(listener: (list: ModelList) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async run(job: EngineJob, { signal, onProgress }: RunContext): Promise<EngineResult[]> {
    this.started.push(job.jobId);
    if (this.options.failWith) throw this.options.failWith;
    const stepMs = this.options.stepMs ?? 5;
    for (let step = 1; step <= job.steps; step++) {
      if (signal.aborted) throw new CancelledError();
      await new Promise((resolve) => setTimeout(resolve, stepMs));
      const until = Date.now() + (this.options.blockMs ?? 0);
      while (Date.now() < until) {
        // busy: nothing else runs, as during a model call
      }
      this.stepsRun.set(job.jobId, step);
      onProgress({ stage: "denoising", step, total: job.steps, preview: gradient(8, 8, step) });
    }
    if (signal.aborted) throw new CancelledError();
    return Array.from({ length: job.variations }, (_, variation) => ({
      variation,
      seed: job.seed + variation,
      image: job.image ?? gradient(job.width, job.height, variation),
    }));
  }
}

export function gradient(width: number, height: number, salt: number): Raster {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    data[i * 3] = (i + salt) & 255;
    data[i * 3 + 1] = (i >> 8) & 255;
    data[i * 3 + 2] = salt & 255;
  }
  return { width, height, channels: 3, bitsPerChannel: 8, data };
}
