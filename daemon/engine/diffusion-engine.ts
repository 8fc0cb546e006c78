/**
 * The daemon's engine: finds the models in the models folder, keeps one model's sessions loaded,
 * and runs txt2img / img2img jobs, one variation after another (variation i uses seed + i, so
 * any one of them can be re-made alone, as in Automatic1111).
 */
import { SCHEDULERS, type Mode, type ModelInfo } from "../../protocol";
import { discoverModels } from "../models/discover";
import type { Device, ModelLog } from "../models/execution-provider";
import { loadModelFolder, toModelInfo, type ModelFolder } from "../models/model-folder";
import { SessionCache } from "../models/model-sessions";
import { CancelledError, EngineError, type Engine, type EngineCapabilities, type EngineJob, type EngineResult, type RunContext } from "./engine";
import { checkSize, generate } from "./pipeline/generate";
import { latentPreview } from "./preview";
import { toRgbAt } from "./raster-input";
import { TorchGenerator } from "./rng";
import { ClipTokenizer } from "./tokenizer";

/** What this engine can run today; masked editing adds inpaint and outpaint. */
const ENGINE_MODES: readonly Mode[] = ["txt2img", "img2img"];

export interface DiffusionEngineOptions {
  modelsDir: string;
  log?: ModelLog;
  /** For tests: pin the devices (default: the platform's best, CPU last). */
  devices?: readonly Device[];
}

export class DiffusionEngine implements Engine {
  private readonly sessions: SessionCache;
  private readonly tokenizers = new Map<string, Promise<ClipTokenizer>>();
  private models: ModelFolder[] = [];
  /** Folders used by path (the CLI's --model DIR), listed beside the models folder's. */
  private readonly extraFolders = new Map<string, ModelFolder>();
  private readonly log: ModelLog;

  constructor(private readonly options: DiffusionEngineOptions) {
    this.log = options.log ?? (() => {});
    this.sessions = new SessionCache({ log: this.log, ...(options.devices ? { devices: options.devices } : {}) });
  }

  /** Re-reads the models folder; a broken model is logged, not fatal. */
  async refresh(): Promise<ModelFolder[]> {
    const found = await discoverModels(this.options.modelsDir);
    for (const broken of found.broken) this.log("warn", `skipping model "${broken.id}": ${broken.error.message}`);
    const ids = new Set(found.models.map((m) => m.id));
    this.models = [...found.models, ...[...this.extraFolders.values()].filter((m) => !ids.has(m.id))];
    return this.models;
  }

  /** Uses a model folder by its path; returns its id for jobs. */
  async useFolder(dir: string): Promise<string> {
    const folder = await loadModelFolder(dir);
    this.extraFolders.set(folder.id, folder);
    await this.refresh();
    return folder.id;
  }

  async capabilities(): Promise<EngineCapabilities> {
    const models = await this.refresh();
    const preferred = this.sessions.device ?? this.sessions.devices[0] ?? "cpu";
    return {
      models: models.map(modelInfo).filter((m) => m.modes.length > 0),
      schedulers: [...SCHEDULERS],
      modes: [...ENGINE_MODES],
      device: { name: preferred, description: describeDevice(preferred) },
    };
  }

  async run(job: EngineJob, { signal, onProgress }: RunContext): Promise<EngineResult[]> {
    const folder = this.models.find((m) => m.id === job.model) ?? (await this.refresh()).find((m) => m.id === job.model);
    if (!folder) throw new EngineError("model_not_found", `There is no model "${job.model}" in ${this.options.modelsDir}.`);
    if (!ENGINE_MODES.includes(job.mode)) throw new EngineError("unsupported_mode", `This daemon cannot do ${job.mode} yet.`);
    checkSize(job.width, job.height);
    if (job.mode === "img2img" && !job.image) throw new EngineError("invalid_job", "img2img needs an init image.");

    onProgress({ stage: "loading", step: 0, total: job.steps });
    const sessions = await this.sessions.get(folder);
    const tokenizer = await this.tokenizer(folder);
    const init = job.mode === "img2img" && job.image ? { rgb: await toRgbAt(job.image, job.width, job.height), strength: job.strength } : undefined;

    const results: EngineResult[] = [];
    for (let variation = 0; variation < job.variations; variation++) {
      if (signal.aborted) throw new CancelledError();
      const seed = job.seed + variation;
      let stepsInRun = job.steps;
      const [image] = await generate(
        { folder, sessions, tokenizer },
        {
          prompts: [job.prompt],
          negativePrompts: [job.negativePrompt],
          width: job.width,
          height: job.height,
          steps: job.steps,
          guidance: job.guidance,
          scheduler: job.scheduler,
          truncatePrompt: job.truncatePrompt,
          ...(init ? { init } : {}),
        },
        new TorchGenerator(seed),
        {
          signal,
          onStage: (stage) => {
            if (stage !== "denoising") onProgress({ stage, step: 0, total: stepsInRun });
          },
          trace: {
            step: (index, total, latents) => {
              stepsInRun = total;
              onProgress({
                stage: "denoising",
                step: index + 1,
                total,
                ...(job.previews ? { preview: latentPreview(latents, job.width / 8, job.height / 8) } : {}),
              });
            },
          },
        },
      );
      results.push({ variation, seed, image: { width: job.width, height: job.height, channels: 3, bitsPerChannel: 8, data: image!.rgb } });
    }
    return results;
  }

  async dispose(): Promise<void> {
    await this.sessions.release();
  }

  private tokenizer(folder: ModelFolder): Promise<ClipTokenizer> {
    let tokenizer = this.tokenizers.get(folder.dir);
    if (!tokenizer) {
      tokenizer = ClipTokenizer.fromFolder(folder.paths.tokenizer.dir);
      this.tokenizers.set(folder.dir, tokenizer);
      tokenizer.catch(() => this.tokenizers.delete(folder.dir));
    }
    return tokenizer;
  }
}

function modelInfo(folder: ModelFolder): ModelInfo {
  const info = toModelInfo(folder);
  return { ...info, modes: info.modes.filter((m) => ENGINE_MODES.includes(m)) };
}

function describeDevice(device: string): string {
  switch (device) {
    case "cuda":
      return "NVIDIA GPU (CUDA)";
    case "dml":
      return "GPU (DirectML)";
    case "coreml":
      return "Apple Neural Engine / GPU (CoreML)";
    default:
      return "CPU";
  }
}

