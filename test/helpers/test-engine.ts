/**
 * A deterministic engine for server tests (never used by product code): runs `steps` steps of
 * `stepMs` each per variation, honours the abort signal between steps, and returns results that
 * keep the Engine's contract (each layer in document pixels, with its region):
 * - txt2img: a gradient at the output's size, at {0, 0, output};
 * - img2img: the init image itself when it is output-sized (so frames can be checked byte for
 *   byte), else the init image scaled (nearest) to the output;
 * - inpaint: the sent image scaled (nearest) to the region it covers, alpha = the mask, cut to
 *   where the mask is above 0;
 * - outpaint: an opaque gradient over the new area's bounds, in grown-canvas pixels.
 * The engine never sees job ids: tests tell jobs apart by their prompt (see txt2imgJob).
 */
import { grownSize, oldCanvasIn, regionOf, sameSize, translate, type Pixels, type Region, type Size } from "../../geometry";
import type { Engine, EngineCapabilities, EngineResult, GenerationJob, RunContext } from "../../daemon/engine/engine";
import { CancelledError } from "../../daemon/engine/engine";
import type { ControlNetInfo, ModelInfo, ModelList, UnavailableModel } from "../../protocol";

export interface TestEngineOptions {
  stepMs?: number;
  models?: ModelInfo[];
  /** Throws this from run() instead of producing images. */
  failWith?: Error;
  /** Holds the main thread this long in every step, as onnxruntime-node's session.run does. */
  blockMs?: number;
  /** The installed ControlNets it says it has (it follows none: control jobs run as plain ones). */
  controlNets?: ControlNetInfo[];
}

export const TEST_MODEL: ModelInfo = {
  id: "test-model",
  name: "Test model",
  kind: "inpainting",
  modes: ["txt2img", "img2img", "inpaint", "outpaint"],
  nativeResolution: 64,
  turbo: false,
  recommended: { steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" },
  guidance: "classifier-free",
};

export class TestEngine implements Engine {
  /** Every job run() was given, in order, as the server mapped it. */
  readonly jobs: GenerationJob[] = [];
  /** The prompts of the jobs started, in order. */
  readonly started: string[] = [];
  /** Steps actually executed (over all variations), per prompt, so tests can see where a cancel landed. */
  readonly stepsRun = new Map<string, number>();
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
      ...(this.options.controlNets ? { controlNets: this.options.controlNets } : {}),
    };
  }

  setModels(models: ModelInfo[], unavailable: UnavailableModel[] = []): void {
    this.models = models;
    this.unavailable = unavailable;
    for (const listener of this.listeners) listener({ models, unavailable });
  }

  /** Tells the listeners of `list` as the real engine's watcher does (with the helper networks' fields). */
  announce(list: ModelList): void {
    this.models = list.models;
    this.unavailable = list.unavailable;
    for (const listener of this.listeners) listener(list);
  }

  onModelsChanged(listener: (list: ModelList) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async run(job: GenerationJob, { signal, onProgress }: RunContext): Promise<EngineResult[]> {
    this.jobs.push(job);
    this.started.push(job.prompt);
    if (this.options.failWith) throw this.options.failWith;
    const stepMs = this.options.stepMs ?? 5;
    let stepsDone = 0;
    const results: EngineResult[] = [];
    for (let variation = 0; variation < job.variations; variation++) {
      for (let step = 1; step <= job.steps; step++) {
        if (signal.aborted) throw new CancelledError();
        await new Promise((resolve) => setTimeout(resolve, stepMs));
        const until = Date.now() + (this.options.blockMs ?? 0);
        while (Date.now() < until) {
          // busy: nothing else runs, as during a model call
        }
        this.stepsRun.set(job.prompt, ++stepsDone);
        onProgress({ variation, stage: "denoising", step, total: job.steps, ...(job.previews ? { preview: gradient(8, 8, step) } : {}) });
      }
      if (signal.aborted) throw new CancelledError();
      results.push({ variation, seed: job.seed + variation, ...resultFor(job, variation) });
    }
    return results;
  }
}

function resultFor(job: GenerationJob, variation: number): { image: Pixels; region: Region } {
  switch (job.mode) {
    case "txt2img":
      return { image: gradient(job.output.width, job.output.height, variation), region: regionOf(job.output) };
    case "img2img":
      return { image: sameSize(job.image, job.output) ? job.image : nearest(job.image, job.output), region: regionOf(job.output) };
    case "inpaint": {
      const image = nearest(job.image, job.region);
      const mask = nearest(job.mask, job.region);
      const layer = new Uint8Array(job.region.width * job.region.height * 4);
      for (let i = 0; i < mask.data.length; i++) {
        for (let k = 0; k < 3; k++) layer[i * 4 + k] = image.data[i * image.channels + (image.channels === 1 ? 0 : k)]!;
        layer[i * 4 + 3] = mask.data[i]!;
      }
      const shown = alphaBounds({ ...job.region, channels: 4, data: layer });
      if (!shown) throw new Error("test engine: the mask is empty");
      return { image: crop({ ...job.region, channels: 4, data: layer }, shown), region: translate(shown, job.region.x, job.region.y) };
    }
    case "outpaint": {
      const grown = grownSize(job.canvas, job.expand);
      const old = oldCanvasIn(job.canvas, job.expand);
      const layer = gradient(grown.width, grown.height, variation);
      const rgba = new Uint8Array(grown.width * grown.height * 4);
      for (let y = 0; y < grown.height; y++) {
        for (let x = 0; x < grown.width; x++) {
          const i = y * grown.width + x;
          for (let k = 0; k < 3; k++) rgba[i * 4 + k] = layer.data[i * 3 + k]!;
          const inOld = x >= old.x && x < old.x + old.width && y >= old.y && y < old.y + old.height;
          rgba[i * 4 + 3] = inOld ? 0 : 255;
        }
      }
      const full: Pixels = { ...grown, channels: 4, data: rgba };
      const shown = alphaBounds(full)!;
      return { image: crop(full, shown), region: shown };
    }
  }
}

export function gradient(width: number, height: number, salt: number): Pixels {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    data[i * 3] = (i + salt) & 255;
    data[i * 3 + 1] = (i >> 8) & 255;
    data[i * 3 + 2] = salt & 255;
  }
  return { width, height, channels: 3, data };
}

/** Nearest-neighbour resampling (exact at the same size). */
function nearest(image: Pixels, to: Size): Pixels {
  if (sameSize(image, to)) return image;
  const { channels } = image;
  const data = new Uint8Array(to.width * to.height * channels);
  for (let y = 0; y < to.height; y++) {
    const sy = Math.min(image.height - 1, Math.floor(((y + 0.5) * image.height) / to.height));
    for (let x = 0; x < to.width; x++) {
      const sx = Math.min(image.width - 1, Math.floor(((x + 0.5) * image.width) / to.width));
      data.set(image.data.subarray((sy * image.width + sx) * channels, (sy * image.width + sx + 1) * channels), (y * to.width + x) * channels);
    }
  }
  return { width: to.width, height: to.height, channels, data };
}

function alphaBounds(image: Pixels): Region | null {
  let [left, top, right, bottom] = [image.width, image.height, -1, -1];
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      if (image.data[(y * image.width + x) * 4 + 3] === 0) continue;
      left = Math.min(left, x);
      right = Math.max(right, x);
      top = Math.min(top, y);
      bottom = y;
    }
  }
  return right < 0 ? null : { x: left, y: top, width: right - left + 1, height: bottom - top + 1 };
}

function crop(image: Pixels, region: Region): Pixels {
  const { channels } = image;
  const data = new Uint8Array(region.width * region.height * channels);
  for (let y = 0; y < region.height; y++) {
    const from = ((region.y + y) * image.width + region.x) * channels;
    data.set(image.data.subarray(from, from + region.width * channels), y * region.width * channels);
  }
  return { width: region.width, height: region.height, channels, data };
}
