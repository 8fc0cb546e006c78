/**
 * The daemon's engine: finds the models in the models folder, keeps one model's sessions loaded,
 * and runs txt2img, img2img, inpaint and outpaint jobs, one variation after another (variation i
 * uses seed + i, so any one of them can be re-made alone, as in Automatic1111). A preview decoder
 * (TAESD) found beside the models pictures every step and decodes drafts; without one, previews
 * are the cheap latent-to-RGB approximation and drafts are decoded by the VAE.
 */
import { SCHEDULERS, type ControlKind, type Mode, type ModelInfo, type ModelList, type PreviewDecoderInfo, type UnavailableModel } from "../../protocol";
import { discoverModels } from "../models/discover";
import type { Device, ModelLog } from "../models/execution-provider";
import { loadModelFolder, toModelInfo, type ModelFolder } from "../models/model-folder";
import { SessionCache } from "../models/model-sessions";
import type { Int8Unets } from "../models/int8-unets";
import type { Float32Copies } from "../models/float32-copies";
import type { OptimizedModelCache } from "../models/optimized-models";
import { findPreviewDecoders, PreviewDecoderSessions, type PreviewDecoderFolder } from "../models/taesd-folder";
import { findControlNets, type ControlNetFolder } from "../models/controlnet-folder";
import { folderFingerprint, ModelsWatcher } from "../models/watcher";
import { grownSize, regionOf, sameSize, wholePictureSize, type Pixels } from "../../geometry";
import { resizeTo, rgbAt } from "../imaging/resample";
import { CancelledError, EngineError, unsupportedModeMessage, type Engine, type EngineCapabilities, type EngineResult, type GenerationJob, type RunContext } from "./engine";
import { asEngineError, controlForContext, finishMaskedEdit, planInpaint, planOutpaint } from "./masked-edit";
import { checkSize, generate, type GenerateParams, type LoadedModel } from "./pipeline/generate";
import { latentPreview } from "./preview";
import type { ControlRun } from "./pipeline/control";
import { controlImage, type ControlImageOptions } from "../imaging/control-image";
import { findDepthEstimators, type DepthEstimatorFolder } from "../models/depth-estimator-folder";
import { depthRunner } from "./depth-estimator";
import { findPoseEstimators, type PoseEstimatorFolder } from "../models/pose-estimator-folder";
import { poseRunner } from "./pose-estimator";
import { residualMismatch } from "../models/control-io";
import type { ModelSessions } from "../models/model-sessions";
import type { Size } from "../../geometry";
import { TorchGenerator } from "./rng";
import { IdleTask } from "./idle-task";
import { TinyDecoder } from "./tiny-decoder";
import { ClipTokenizer } from "./tokenizer";

const ENGINE_MODES: readonly Mode[] = ["txt2img", "img2img", "inpaint", "outpaint"];

/** After a job on the CPU, how long before its model's text encoders are loaded again (its results leave first). */
export const TEXT_ENCODER_RELOAD_DELAY_MS = 250;

export interface DiffusionEngineOptions {
  modelsDir: string;
  log?: ModelLog;
  /** For tests: pin the devices (default: the platform's best, CPU last). */
  devices?: readonly Device[];
  /** Where CPU sessions keep onnxruntime-optimized model copies (default null: none). */
  optimizedModels?: OptimizedModelCache | null;
  /** Runs the UNet on the CPU from int8 copies kept here (default null: float32). */
  unetInt8?: Int8Unets | null;
  /** Where float32 copies of float16 parts are kept for the CPU (default: beside optimizedModels' copies, none without them). */
  float32Copies?: Float32Copies | null;
}

export class DiffusionEngine implements Engine {
  private readonly sessions: SessionCache;
  private readonly tokenizers = new Map<string, Promise<ClipTokenizer>>();
  private models: ModelFolder[] = [];
  private discovered:
    | {
        fingerprint: string;
        models: ModelFolder[];
        unavailable: UnavailableModel[];
        previewDecoder: PreviewDecoderFolder | null;
        controlNets: ControlNetFolder[];
        depthEstimator: DepthEstimatorFolder | null;
        poseEstimator: PoseEstimatorFolder | null;
      }
    | undefined;
  /** The installed preview decoder's sessions (created when first used), or null. */
  private tiny: TinyDecoder | null = null;
  /** Folders used by path (the CLI's --model DIR), listed beside the models folder's. */
  private readonly extraFolders = new Map<string, ModelFolder>();
  private readonly log: ModelLog;
  /** Started by the first onModelsChanged listener. */
  private watcher: ModelsWatcher | undefined;

  constructor(private readonly options: DiffusionEngineOptions) {
    this.log = options.log ?? (() => {});
    this.sessions = new SessionCache({
      log: this.log,
      optimizedModels: options.optimizedModels ?? null,
      unetInt8: options.unetInt8 ?? null,
      ...(options.float32Copies !== undefined ? { float32Copies: options.float32Copies } : {}),
      ...(options.devices ? { devices: options.devices } : {}),
    });
  }

  /**
   * The models folder's models, read again only when its names, sizes or times changed (loading a
   * folder parses its tokenizer: too slow to repeat for every panel message). A broken model is
   * logged, not fatal.
   */
  async refresh(): Promise<ModelFolder[]> {
    const fingerprint = await folderFingerprint(this.options.modelsDir);
    if (fingerprint !== this.discovered?.fingerprint) {
      const found = await discoverModels(this.options.modelsDir, this.folderOptions());
      for (const broken of found.broken) this.log("warn", `skipping model "${broken.id}": ${broken.error.message}`);
      const unavailable = found.broken.map((b) => ({ id: b.id, code: b.error.code, message: b.error.message }));
      // Preview decoders are no models: never in the list, a broken one only logged.
      const previews = await findPreviewDecoders(this.options.modelsDir, this.folderOptions());
      for (const broken of previews.broken) this.log("warn", `skipping preview decoder "${broken.id}": ${broken.error.message}`);
      // ControlNets are no models either: listed apart, a broken one only logged.
      const controlNets = await findControlNets(this.options.modelsDir, this.folderOptions());
      for (const broken of controlNets.broken) this.log("warn", `skipping ControlNet "${broken.id}": ${broken.error.message}`);
      // A depth estimator makes depth maps from pictures for depth ControlNets; a broken one is only logged.
      const depth = await findDepthEstimators(this.options.modelsDir, this.folderOptions());
      for (const broken of depth.broken) this.log("warn", `skipping depth estimator "${broken.id}": ${broken.error.message}`);
      // So does a pose estimator, for pose ControlNets.
      const pose = await findPoseEstimators(this.options.modelsDir, this.folderOptions());
      for (const broken of pose.broken) this.log("warn", `skipping pose estimator "${broken.id}": ${broken.error.message}`);
      this.discovered = { fingerprint, models: found.models, unavailable, previewDecoder: previews.found, controlNets: controlNets.found, depthEstimator: depth.found, poseEstimator: pose.found };
      await this.usePreviewDecoder(previews.found);
    }
    const ids = new Set(this.discovered.models.map((m) => m.id));
    this.models = [...this.discovered.models, ...[...this.extraFolders.values()].filter((m) => !ids.has(m.id))];
    return this.models;
  }

  /** Keeps the sessions of the preview decoder in use, making new ones when another is installed. */
  private async usePreviewDecoder(folder: PreviewDecoderFolder | null): Promise<void> {
    const current = this.tiny?.folder;
    if (current && folder && current.dir === folder.dir && current.weightsBytes === folder.weightsBytes) return;
    const old = this.tiny;
    this.tiny = folder ? new TinyDecoder(new PreviewDecoderSessions(folder, { devices: this.sessions.devices, log: this.log }), this.log) : null;
    if (folder) this.log("info", `preview decoder "${folder.id}" decodes previews${old ? " now" : ""} and drafts`);
    await old?.release();
  }

  /** The preview decoder in use, when it can decode this model's latents. */
  previewDecoder(folder: ModelFolder): TinyDecoder | null {
    return this.tiny?.suits(folder) ? this.tiny : null;
  }

  /** Uses a model folder by its path; returns its id for jobs. */
  async useFolder(dir: string): Promise<string> {
    const folder = await loadModelFolder(dir, this.folderOptions());
    this.extraFolders.set(folder.id, folder);
    await this.refresh();
    return folder.id;
  }

  /** The devices models are read for: a graph none of them can run is refused when its folder is read. */
  private folderOptions(): { devices: readonly Device[] } {
    return { devices: this.sessions.devices };
  }

  async capabilities(): Promise<EngineCapabilities> {
    // While a job runs, its steps hold the event loop between them: walking the models folder then
    // takes as long as the job. The watcher refreshes the list when the folder changes anyway.
    const models = this.running > 0 && this.discovered ? this.models : await this.refresh();
    const preferred = this.sessions.device ?? this.sessions.devices[0] ?? "cpu";
    return {
      models: models.map(modelInfo).filter((m) => m.modes.length > 0),
      unavailable: this.discovered?.unavailable ?? [],
      previewDecoder: installedInfo(this.discovered?.previewDecoder ?? null),
      schedulers: [...SCHEDULERS],
      modes: [...ENGINE_MODES],
      device: { name: preferred, description: describeDevice(preferred) },
      controlNets: (this.discovered?.controlNets ?? []).map((c) => ({ id: c.id, name: c.name, kind: c.kind, ...(c.registryId ? { registryId: c.registryId } : {}), ...(c.io.unet.added !== null ? { sdxl: true as const } : {}) })),
      depthEstimator: installedInfo(this.discovered?.depthEstimator ?? null),
      poseEstimator: installedInfo(this.discovered?.poseEstimator ?? null),
    };
  }

  private running = 0;
  /** Loads the text encoders again once a CPU job is over (see reloadTextEncoders). */
  private readonly afterJob = new IdleTask(TEXT_ENCODER_RELOAD_DELAY_MS);

  async run(job: GenerationJob, context: RunContext): Promise<EngineResult[]> {
    this.running++;
    this.afterJob.cancel();
    try {
      return await this.runJob(job, context);
    } finally {
      this.running--;
      if (this.running === 0) this.afterJob.schedule(() => this.reloadTextEncoders());
    }
  }

  /**
   * On the CPU a job releases its text encoders once the prompt is read, so that they never share
   * the machine's memory with the UNet's and the VAE's work; between jobs they are loaded again,
   * so that the next prompt is read at once (SD-Turbo's encoder takes about a second to load).
   * The memory at its highest is the same: a job holds them while it reads its prompt.
   */
  private async reloadTextEncoders(): Promise<void> {
    const sessions = this.sessions.current();
    if (!sessions || sessions.released || sessions.device !== "cpu" || this.running > 0) return;
    await sessions.textEncoder();
    if (sessions.model.paths.textEncoder2 && this.running === 0) await sessions.textEncoder2();
  }

  /** The parts of the model in use whose sessions are made (for the log and tests). */
  loadedParts(): readonly string[] {
    return this.sessions.current()?.loaded() ?? [];
  }

  /** Resolves when the work the engine does between jobs (loading the text encoders again) is over. */
  idle(): Promise<void> {
    return this.afterJob.idle();
  }

  private async runJob(job: GenerationJob, context: RunContext): Promise<EngineResult[]> {
    const folder = this.models.find((m) => m.id === job.model) ?? (await this.refresh()).find((m) => m.id === job.model);
    if (!folder) {
      const unavailable = this.discovered?.unavailable.find((m) => m.id === job.model);
      if (unavailable) throw new EngineError("model_unavailable", `The model "${job.model}" cannot run here: ${unavailable.message}`);
      throw new EngineError("model_not_found", `There is no model "${job.model}" in ${this.options.modelsDir}.`);
    }
    const { modes } = modelInfo(folder);
    if (!modes.includes(job.mode)) throw new EngineError("unsupported_mode", unsupportedModeMessage(folder.name, job.mode, modes));
    try {
      switch (job.mode) {
        case "txt2img":
        case "img2img":
          return await this.runWhole(job, folder, context);
        case "inpaint":
        case "outpaint":
          return await this.runMasked(job, folder, context);
      }
    } catch (error) {
      throw asEngineError(error);
    }
  }

  /** txt2img and img2img: the whole picture, made at the model's working size and resampled to the output. */
  private async runWhole(job: Extract<GenerationJob, { mode: "txt2img" | "img2img" }>, folder: ModelFolder, context: RunContext): Promise<EngineResult[]> {
    const size = job.size ?? wholePictureSize(job.output, folder.nativeResolution);
    checkSize(size.width, size.height);
    const init = job.mode === "img2img" ? { rgb: await rgbAt(job.image, size), strength: job.strength } : undefined;
    const controlNet = job.control ? await this.controlNetFor(folder, job.control) : null;
    const model = await this.load(folder, job, context);
    const control = controlNet && job.control ? await this.controlRun(model.sessions, controlNet, job.control, size) : null;
    // On the CPU the UNets share the machine's memory: keep only the one this job runs.
    if (model.sessions.device === "cpu") await (control ? model.sessions.releasePart("unet") : model.sessions.releaseControl());
    const output = job.output;
    return this.variations(job, model, context, { ...size, ...(init ? { init } : {}), ...(control ? { control } : {}) }, async (rgb, seed, variation) => {
      const made: Pixels = { ...size, channels: 3, data: rgb };
      return { variation, seed, region: regionOf(output), image: sameSize(size, output) ? made : await resizeTo(made, output) };
    });
  }

  /**
   * Inpaint and outpaint: the model works on the context region at about its native resolution;
   * each result is an RGBA layer (alpha = the blend mask) at document resolution, cut to where it
   * shows, with its place in the document after any growth.
   */
  private async runMasked(job: Extract<GenerationJob, { mode: "inpaint" | "outpaint" }>, folder: ModelFolder, context: RunContext): Promise<EngineResult[]> {
    const controlNet = job.control ? await this.controlNetFor(folder, job.control) : null;
    const options = { nativeResolution: folder.nativeResolution, strength: job.mode === "inpaint" ? job.strength : 1, ...(job.budget !== undefined ? { budget: job.budget } : {}) };
    const placement = { canvas: job.canvas, region: job.region };
    const plan =
      job.mode === "outpaint"
        ? await planOutpaint(job.image, job.expand, placement, options)
        : await planInpaint(job.image, job.mask, placement, { ...options, context: job.context });
    const model = await this.load(folder, job, context);
    // As diffusers' StableDiffusionControlNetInpaintPipeline: the ControlNet steers every step of
    // the inpainting loop (a 4-channel UNet blends the original back outside the mask after each).
    const covers = job.mode === "outpaint" ? regionOf(grownSize(job.canvas, job.expand)) : job.region;
    const control =
      controlNet && job.control ? await this.controlRun(model.sessions, controlNet, { ...job.control, image: controlForContext(job.control.image, covers, plan) }, plan.size) : null;
    if (model.sessions.device === "cpu") await (control ? model.sessions.releasePart("unet") : model.sessions.releaseControl());
    const inpaint = { rgb: plan.modelImage.data, mask: plan.modelMask.data, strength: options.strength, variant: "blend" as const };
    return this.variations(job, model, context, { ...plan.size, inpaint, ...(control ? { control } : {}) }, async (rgb, seed, variation) => {
      context.onProgress({ variation, stage: "compositing", step: 0, total: 0 });
      const { layer, region } = await finishMaskedEdit(plan, rgb, { compositing: "seamless" });
      return { variation, seed, region, image: layer };
    });
  }

  /** The ControlNet a job names (else the installed one of its kind that fits the model), checked against the model's control UNet. */
  async controlNetFor(folder: ModelFolder, control: NonNullable<GenerationJob["control"]>): Promise<ControlNetFolder> {
    if (!folder.controlUnet) {
      throw new EngineError("unsupported_mode", `The model "${folder.name}" cannot follow a control image${folder.controlUnetProblem ? `: ${folder.controlUnetProblem}` : ": it has no control UNet (controlnet/model.onnx)"}.`);
    }
    if (!this.discovered) await this.refresh();
    const installed = this.discovered?.controlNets ?? [];
    // Unnamed: the installed one of the kind made for this model's family (SD or SDXL), else any of the kind (refused below in a sentence).
    const fits = (c: ControlNetFolder) => (c.io.unet.added !== null) === Boolean(folder.sdxl) && residualMismatch(c.io.residuals, folder.controlUnet!.io.residuals) === null;
    const ofKind = installed.filter((c) => c.kind === control.kind);
    const found = control.controlNet !== undefined ? installed.find((c) => c.id === control.controlNet) : (ofKind.find(fits) ?? ofKind[0]);
    if (!found) {
      throw new EngineError(
        "model_not_found",
        control.controlNet !== undefined
          ? `There is no ControlNet "${control.controlNet}" in ${this.options.modelsDir}.`
          : `No ${control.kind} ControlNet is installed: pull one (npx underpaint models pull controlnet-${control.kind}).`,
      );
    }
    if (found.kind !== control.kind) throw new EngineError("invalid_job", `The ControlNet "${found.id}" follows ${found.kind}, not ${control.kind}.`);
    // An SDXL ControlNet reads the added conditions (text_embeds, time_ids) that only SDXL models make.
    const forSdxl = found.io.unet.added !== null;
    if (forSdxl !== Boolean(folder.sdxl)) {
      throw new EngineError(
        "invalid_job",
        `The ControlNet "${found.id}" is for ${forSdxl ? "SDXL models" : "SD 1.x and 2.x models"} and "${folder.name}" is ${folder.sdxl ? "an SDXL model" : "not an SDXL model"}: use a ControlNet made for it.`,
      );
    }
    const mismatch = residualMismatch(found.io.residuals, folder.controlUnet.io.residuals);
    if (mismatch) throw new EngineError("invalid_job", `The ControlNet "${found.id}" does not fit the model "${folder.name}": ${mismatch}.`);
    return found;
  }

  /** The installed depth estimator for a depth control image, else null (controlImage runs it only on a picture, not on a grey depth map). */
  private depthFor(kind: ControlKind) {
    const folder = this.discovered?.depthEstimator ?? null;
    return folder && kind === "depth" ? depthRunner(folder, this.sessions.devices, this.log) : null;
  }

  /** The installed pose estimator for a pose control image, else null (controlImage runs it only on a picture, not on a pose map). */
  private poseFor(kind: ControlKind) {
    const folder = this.discovered?.poseEstimator ?? null;
    return folder && kind === "pose" ? poseRunner(folder, this.sessions.devices, this.log) : null;
  }

  controlImageOptions(kind: ControlKind): ControlImageOptions {
    return { depth: this.depthFor(kind), pose: this.poseFor(kind) };
  }

  private async controlRun(sessions: ModelSessions, net: ControlNetFolder, control: NonNullable<GenerationJob["control"]>, size: Size): Promise<ControlRun> {
    return {
      unet: await sessions.controlUnet(),
      net: await sessions.controlNet(net),
      image: await controlImage(control.kind, control.image, size, this.controlImageOptions(control.kind)),
      strength: control.strength,
      start: control.start,
      end: control.end,
    };
  }

  private async load(folder: ModelFolder, job: GenerationJob, { onProgress }: RunContext): Promise<LoadedModel> {
    onProgress({ variation: 0, stage: "loading", step: 0, total: job.steps });
    const sessions = await this.sessions.get(folder);
    const tokenizer2 = folder.paths.tokenizer2 ? await this.tokenizer(folder.paths.tokenizer2.dir) : null;
    return { folder, sessions, tokenizer: await this.tokenizer(folder.paths.tokenizer.dir), ...(tokenizer2 ? { tokenizer2 } : {}) };
  }

  /** One generation per variation, seed + i each, reporting steps and previews. */
  private async variations(
    job: GenerationJob,
    model: LoadedModel,
    { signal, onProgress, onNotice }: RunContext,
    settings: Pick<GenerateParams, "width" | "height" | "init" | "inpaint" | "control">,
    finish: (rgb: Uint8Array, seed: number, variation: number) => Promise<EngineResult>,
  ): Promise<EngineResult[]> {
    const results: EngineResult[] = [];
    const latentWidth = settings.width / 8;
    const latentHeight = settings.height / 8;
    const tiny = this.previewDecoder(model.folder);
    if (job.draft && !tiny) {
      onNotice?.(
        this.tiny
          ? `This draft was decoded by the VAE: the preview decoder "${this.tiny.folder.id}" cannot decode this model's latents.`
          : "This draft was decoded by the VAE: install the preview decoder for fast drafts (npx underpaint models pull taesd).",
      );
    }
    /** A preview of one image's latents: TAESD's when it works, else the cheap approximation. `last`: the run's last step. */
    const preview = async (latents: Float32Array, last: boolean) => {
      const item = latents.subarray(0, 4 * latentWidth * latentHeight);
      if (tiny?.suits(model.folder)) {
        try {
          // A draft's last step decodes at full size: its final picture is that decode.
          return await tiny.preview(item, latentWidth, latentHeight, job.draft && last);
        } catch (error) {
          tiny.fail(error);
        }
      }
      return latentPreview(item, latentWidth, latentHeight);
    };
    /** A draft's final decode through TAESD; null (the VAE decodes) when it fails. */
    const draftDecode = async (latents: Float32Array, width: number, height: number) => {
      if (!tiny?.suits(model.folder)) return null;
      try {
        return await tiny.decode(latents, width, height);
      } catch (error) {
        tiny.fail(error);
        return null;
      }
    };
    for (let variation = 0; variation < job.variations; variation++) {
      if (signal.aborted) throw new CancelledError();
      const seed = job.seed + variation;
      let stepsInRun = job.steps;
      const [image] = await generate(
        model,
        {
          prompts: [job.prompt],
          negativePrompts: [job.negativePrompt],
          steps: job.steps,
          guidance: job.guidance,
          scheduler: job.scheduler,
          truncatePrompt: job.truncatePrompt,
          ...settings,
        },
        new TorchGenerator(seed),
        {
          signal,
          ...(job.draft && tiny ? { decode: draftDecode } : {}),
          onStage: (stage) => {
            if (stage !== "denoising") onProgress({ variation, stage, step: 0, total: stepsInRun });
          },
          trace: {
            prompt: (positive, negative) => {
              if (variation > 0) return;
              for (const [which, encoding] of [["prompt", positive], ["negative prompt", negative]] as const) {
                const dropped = encoding?.dropped.find((d) => d.length > 0);
                if (dropped) onNotice?.(`The ${which} is longer than the model reads (77 tokens); left out: "${dropped}".`);
              }
            },
            step: async (index, total, latents) => {
              stepsInRun = total;
              onProgress({ variation, stage: "denoising", step: index + 1, total, ...(job.previews ? { preview: await preview(latents, index + 1 === total) } : {}) });
            },
          },
        },
      );
      results.push(await finish(image!.rgb, seed, variation));
    }
    return results;
  }

  /** Tells `listener` the new list whenever models are added to, removed from or changed in the models folder. */
  onModelsChanged(listener: (list: ModelList) => void): () => void {
    this.watcher ??= new ModelsWatcher({
      dir: this.options.modelsDir,
      scan: async () => {
        const { models, unavailable, previewDecoder, controlNets, depthEstimator, poseEstimator } = await this.capabilities();
        return { models, unavailable, previewDecoder: previewDecoder ?? null, controlNets: controlNets ?? [], depthEstimator: depthEstimator ?? null, poseEstimator: poseEstimator ?? null };
      },
      log: (line) => this.log("warn", line),
    });
    return this.watcher.subscribe(listener);
  }

  async dispose(): Promise<void> {
    this.watcher?.close();
    this.afterJob.cancel();
    await this.afterJob.idle();
    await this.sessions.release();
    await this.tiny?.release();
    this.tiny = null;
  }

  /** A tokenizer folder's tokenizer, parsed once (SDXL has two: tokenizer/ and tokenizer_2/). */
  private tokenizer(dir: string): Promise<ClipTokenizer> {
    let tokenizer = this.tokenizers.get(dir);
    if (!tokenizer) {
      tokenizer = ClipTokenizer.fromFolder(dir);
      this.tokenizers.set(dir, tokenizer);
      tokenizer.catch(() => this.tokenizers.delete(dir));
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

/** An installed helper network (the preview decoder, the depth or pose estimator) as the panel is told of it. */
function installedInfo(folder: { id: string; registryId: string | null } | null): PreviewDecoderInfo | null {
  return folder ? { id: folder.id, ...(folder.registryId ? { registryId: folder.registryId } : {}) } : null;
}
