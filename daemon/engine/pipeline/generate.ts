/**
 * The diffusion loop as diffusers' StableDiffusionPipeline / Img2ImgPipeline run it: text
 * embeddings, initial latents (noise, or the encoded init image noised to the start step),
 * one UNet call per step on the whole batch with [uncond; cond] guidance, scheduler steps,
 * VAE decode. Every random draw comes from `noise`, in diffusers' order.
 */
import type { ModelFolder } from "../../models/model-folder";
import type { ModelSessions } from "../../models/model-sessions";
import { makeTensor, makeTimestep, tensorToFloat32 } from "../../models/session-io";
import { CancelledError, EngineError } from "../engine";
import { createScheduler, SchedulerConfigSchema, type NoiseSource, type Scheduler, type SchedulerName } from "../schedulers";
import type { ClipTokenizer } from "../tokenizer";
import { concatBatch, guide } from "./tensor";
import { encodePrompts, type PromptEncoding } from "./text";
import { decodedToUnit, decodeLatents, encodeImage, imageToTensor, unitToRgb8 } from "./vae";

export interface LoadedModel {
  folder: ModelFolder;
  sessions: ModelSessions;
  tokenizer: ClipTokenizer;
}

export interface GenerateParams {
  /** One prompt per batch item. */
  prompts: readonly string[];
  /** One per batch item; used only with guidance > 1. */
  negativePrompts: readonly string[];
  width: number;
  height: number;
  steps: number;
  guidance: number;
  scheduler: SchedulerName;
  /** DDIM's eta. */
  eta?: number;
  truncatePrompt: boolean;
  /** img2img: the init image, 8-bit RGB at width x height, and how much of it to repaint. */
  init?: { rgb: Uint8Array; strength: number };
}

/** Observers for parity runs and previews; none changes the computation. */
export interface GenerateTrace {
  prompt?(positive: PromptEncoding, negative: PromptEncoding | null): void;
  initialLatents?(latents: Float32Array): void;
  /** img2img: the VAE posterior mean of the init image (unscaled). */
  encoded?(mean: Float32Array): void;
  step?(index: number, total: number, latents: Float32Array): void;
  decoded?(index: number, unit: Float32Array): void;
}

export interface GenerateOptions {
  signal?: AbortSignal;
  trace?: GenerateTrace;
  /** diffusers' `latents=`: the starting noise instead of a draw (txt2img). */
  latents?: Float32Array;
  /** A scheduler config to use instead of the model folder's (parity runs replay the recorded one). */
  schedulerConfig?: Record<string, unknown>;
  onStage?(stage: "encoding" | "denoising" | "decoding"): void;
}

export interface GeneratedImage {
  /** 8-bit RGB, width x height */
  rgb: Uint8Array;
}

function check(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

export function checkSize(width: number, height: number): void {
  if (width % 8 !== 0 || height % 8 !== 0 || width < 64 || height < 64) {
    throw new EngineError("invalid_job", `The size ${width}x${height} must be at least 64x64 and a multiple of 8 on each side.`);
  }
}

export function schedulerFor(model: ModelFolder, name: SchedulerName, eta?: number, configOverride?: Record<string, unknown>): Scheduler {
  const config = SchedulerConfigSchema.parse(configOverride ?? model.schedulerConfig);
  return createScheduler(name, config, eta !== undefined ? { eta } : {});
}

/** diffusers' get_timesteps: how many of the schedule's steps img2img runs for a strength. */
export function startIndex(steps: number, strength: number, order: number): number {
  const initTimestep = Math.min(Math.floor(steps * strength), steps);
  return Math.max(steps - initTimestep, 0) * order;
}

export async function generate(model: LoadedModel, params: GenerateParams, noise: NoiseSource, options: GenerateOptions = {}): Promise<GeneratedImage[]> {
  const { folder, sessions, tokenizer } = model;
  const { signal, trace } = options;
  const batch = params.prompts.length;
  const latentWidth = params.width / 8;
  const latentHeight = params.height / 8;
  const latentShape = [batch, 4, latentHeight, latentWidth] as const;
  const cfg = params.guidance > 1;
  if (folder.unetInChannels !== 4) {
    throw new EngineError("unsupported_mode", `"${folder.name}" is an inpainting model: use it to inpaint a selection or expand the canvas.`);
  }

  options.onStage?.("encoding");
  const textEncoder = await sessions.textEncoder();
  check(signal);
  const text = await encodePrompts(tokenizer, textEncoder, params.prompts, cfg ? params.negativePrompts : null, params.truncatePrompt);
  trace?.prompt?.(text.positive, text.negative);
  check(signal);

  const scheduler = schedulerFor(folder, params.scheduler, params.eta, options.schedulerConfig);
  scheduler.setTimesteps(params.steps);
  let timesteps = Array.from(scheduler.timesteps);
  let latents: Float32Array;
  if (params.init) {
    const begin = startIndex(params.steps, params.init.strength, scheduler.order);
    timesteps = timesteps.slice(begin);
    if (timesteps.length === 0) {
      throw new EngineError(
        "invalid_job",
        `With strength ${params.init.strength} and ${params.steps} steps no step would run: raise the strength or the steps.`,
      );
    }
    scheduler.setBeginIndex(begin);
    const encoder = await sessions.vaeEncoder();
    const image = imageToTensor(params.init.rgb, params.width, params.height);
    const encoded = await encodeImage(encoder, image, params.width, params.height, folder.vaeScalingFactor, noise);
    trace?.encoded?.(encoded.mean);
    // One init image serves every prompt of the batch.
    const initLatents = concatBatch(Array.from({ length: batch }, () => encoded.latents));
    latents = scheduler.addNoise(initLatents, noise.randn(latentShape), timesteps[0]!);
  } else {
    const start = options.latents ?? noise.randn(latentShape);
    latents = new Float32Array(start.length);
    const sigma = Math.fround(scheduler.initNoiseSigma);
    for (let i = 0; i < start.length; i++) latents[i] = start[i]! * sigma;
  }
  trace?.initialLatents?.(latents);
  check(signal);

  options.onStage?.("denoising");
  const unet = await sessions.unet();
  const { io } = unet;
  const unetBatch = cfg ? 2 * batch : batch;
  const hidden = makeTensor(io.encoderHiddenStatesType, text.hidden, [unetBatch, text.sequence, text.dim]);
  for (let i = 0; i < timesteps.length; i++) {
    check(signal);
    const t = timesteps[i]!;
    const scaled = scheduler.scaleModelInput(latents, t);
    const sample = cfg ? concatBatch([scaled, scaled]) : scaled;
    const outputs = await unet.session.run(
      {
        [io.sample]: makeTensor(io.sampleType, sample, [unetBatch, 4, latentHeight, latentWidth]),
        [io.timestep]: makeTimestep(io, t, unetBatch),
        [io.encoderHiddenStates]: hidden,
      },
      [io.output],
    );
    const predicted = tensorToFloat32(outputs[io.output]!);
    const noisePrediction = cfg ? guide(predicted, params.guidance) : predicted;
    latents = scheduler.step(noisePrediction, t, latents, latentShape, noise);
    trace?.step?.(i, timesteps.length, latents);
  }
  check(signal);

  options.onStage?.("decoding");
  const decoder = await sessions.vaeDecoder();
  const images: GeneratedImage[] = [];
  const itemSize = latents.length / batch;
  for (let b = 0; b < batch; b++) {
    check(signal);
    const decoded = await decodeLatents(decoder, latents.subarray(b * itemSize, (b + 1) * itemSize), latentWidth, latentHeight, folder.vaeScalingFactor);
    const unit = decodedToUnit(decoded);
    trace?.decoded?.(b, unit);
    images.push({ rgb: unitToRgb8(unit, params.width, params.height) });
  }
  return images;
}
