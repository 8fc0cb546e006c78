/**
 * The diffusion loop as diffusers' StableDiffusionPipeline, Img2ImgPipeline, InpaintPipeline
 * (9-channel UNet, or a 4-channel one with latent blending) and the legacy InpaintPipeline run
 * it: text embeddings, initial latents (noise, or the encoded image noised to the start step),
 * one UNet call per step on the whole batch with [uncond; cond] guidance, scheduler steps,
 * VAE decode. Every random draw comes from `noise`, in diffusers' order.
 */
import type { ModelFolder } from "../../models/model-folder";
import type { ModelSessions } from "../../models/model-sessions";
import { makeTensor, makeTimestep, tensorToFloat32 } from "../../models/session-io";
import { CancelledError, EngineError } from "../engine";
import { createScheduler, SchedulerConfigSchema, type NoiseSource, type Scheduler, type SchedulerName } from "../schedulers";
import type { ClipTokenizer } from "../tokenizer";
import { ControlResiduals, type ControlRun } from "./control";
import { binaryLatentMask, binaryPixelMask, legacyKeepMask, maskedImage } from "./inpaint-masks";
import { guidanceEmbeddingBatch } from "./guidance-embedding";
import { concatBatch, guide, scale } from "./tensor";
import { encodePrompts, type PromptEncoding } from "./text";
import { addedConditionFeeds, defaultSizeConditions, encodeSdxlPrompts } from "./sdxl-conditioning";
import { decodedToUnit, decodeLatents, encodeImage, imageToTensor, unitToRgb8 } from "./vae";

export interface LoadedModel {
  folder: ModelFolder;
  sessions: ModelSessions;
  tokenizer: ClipTokenizer;
  /** SDXL's tokenizer_2 (pads with "!"). */
  tokenizer2?: ClipTokenizer;
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
  /** Inpainting: the image, its mask (one 8-bit channel, 255 = repaint), the strength. */
  inpaint?: InpaintInput;
  /** A ControlNet steering the picture: the control UNet runs instead of the UNet. */
  control?: ControlRun;
}

export interface InpaintInput {
  rgb: Uint8Array;
  mask: Uint8Array;
  strength: number;
  /**
   * With a 4-channel UNet: "blend" re-noises the original to the NEXT step's level after every
   * step, as diffusers' StableDiffusionInpaintPipeline does (the latents after step i are at
   * timestep i + 1); "legacy" re-noises to the current step with a soft mask, as the deprecated
   * legacy pipeline did. 9-channel inpainting models ignore it.
   */
  variant: "blend" | "legacy";
}

/** Observers for parity runs and previews; none changes the computation. */
export interface GenerateTrace {
  prompt?(positive: PromptEncoding, negative: PromptEncoding | null): void;
  initialLatents?(latents: Float32Array): void;
  /** img2img: the VAE posterior mean of the init image (unscaled). */
  encoded?(mean: Float32Array): void;
  /** After each step, with the latents as the scheduler holds them; the next step waits for a returned promise (a decoded preview). */
  step?(index: number, total: number, latents: Float32Array): unknown;
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
  /**
   * A faster final decode (a draft through TAESD): one image's latents as the UNet makes them ->
   * [3, 8h, 8w] in [-1, 1], as the VAE decoder gives; null decodes with the VAE after all.
   */
  decode?(latents: Float32Array, latentWidth: number, latentHeight: number): Promise<Float32Array | null>;
}

export interface GeneratedImage {
  /** 8-bit RGB, width x height */
  rgb: Uint8Array;
}

function check(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/**
 * onnxruntime-node runs a session on the main thread: while a UNet call runs, no socket is read.
 * Letting the event loop turn once before each step reads a cancel that arrived meanwhile, so
 * the next call is not started for nothing.
 */
async function checkAfterPendingMessages(signal: AbortSignal | undefined): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  check(signal);
}

/** ONNX exports fix the UNet's up-sampling factors: sizes that do not halve cleanly fail in a Concat. */
function explainRunError(error: unknown, width: number, height: number): unknown {
  const message = error instanceof Error ? error.message : String(error);
  if (/Concat/.test(message) && /mismatched dimensions/.test(message)) {
    return new EngineError("invalid_job", `This model cannot work at ${width}x${height}: use a width and height that are multiples of 64.`);
  }
  return error;
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
  // A UNet with a guidance embedding (LCM) has the guidance distilled in: one batch, no negative prompt.
  const embedsGuidance = folder.io.unet.timestepCond !== null;
  const cfg = params.guidance > 1 && !embedsGuidance;
  const inpaint = params.inpaint;
  const conditioned = folder.unetInChannels === 9;
  if (conditioned && !inpaint) {
    throw new EngineError("unsupported_mode", `"${folder.name}" is an inpainting model: use it to inpaint a selection or expand the canvas.`);
  }

  const unetBatch = cfg ? 2 * batch : batch;
  await sessions.useShape({ unetBatch, latentHeight, latentWidth, unetChannels: folder.unetInChannels, vaeScaleFactor: 8 });
  options.onStage?.("encoding");
  const sdxlText = folder.sdxl ? await encodeSdxl(model, params, cfg) : null;
  const text = sdxlText ?? (await encodePrompts(tokenizer, sessions, params.prompts, cfg ? params.negativePrompts : null, params.truncatePrompt));
  // On the CPU the models share the machine's memory: the text encoder is not needed again
  // until a new prompt comes (it then loads in a fraction of a second from its optimized copy).
  if (sessions.device === "cpu") {
    await sessions.releasePart("textEncoder");
    await sessions.releasePart("textEncoder2");
  }
  trace?.prompt?.(text.positive, text.negative);
  check(signal);

  const scheduler = schedulerFor(folder, params.scheduler, params.eta, options.schedulerConfig);
  scheduler.setTimesteps(params.steps);
  let timesteps = Array.from(scheduler.timesteps);
  const strength = params.init?.strength ?? inpaint?.strength ?? 1;
  if (params.init || inpaint) {
    const begin = startIndex(params.steps, strength, scheduler.order);
    timesteps = timesteps.slice(begin);
    if (timesteps.length === 0) {
      throw new EngineError("invalid_job", `With strength ${strength} and ${params.steps} steps no step would run: raise the strength or the steps.`);
    }
    scheduler.setBeginIndex(begin);
  }
  const latents = await initialLatents(model, params, scheduler, timesteps[0]!, noise, options, latentShape);
  trace?.initialLatents?.(latents.start);
  check(signal);

  options.onStage?.("denoising");
  const unet = params.control ? params.control.unet : await sessions.unet();
  const control = params.control ? new ControlResiduals(params.control) : null;
  const { io } = unet;
  const channels = folder.unetInChannels;
  const hidden = makeTensor(io.encoderHiddenStatesType, text.hidden, [unetBatch, text.sequence, text.dim]);
  const guidanceFeed =
    io.timestepCond && io.timestepCondType && io.timestepCondWidth
      ? { [io.timestepCond]: makeTensor(io.timestepCondType, guidanceEmbeddingBatch(params.guidance, io.timestepCondWidth, unetBatch), [unetBatch, io.timestepCondWidth]) }
      : {};
  // SDXL: the pooled text embeddings and the size conditions, the same every step.
  const sizeConditions = defaultSizeConditions(params.width, params.height);
  const addedFeeds = io.added && sdxlText ? addedConditionFeeds(io.added, sdxlText, sizeConditions, unetBatch) : {};
  const controlAdded = sdxlText ? { added: { pooled: sdxlText.pooled, pooledWidth: sdxlText.pooledWidth, size: sizeConditions } } : {};
  let current = latents.start;
  for (let i = 0; i < timesteps.length; i++) {
    await checkAfterPendingMessages(signal);
    const t = timesteps[i]!;
    const scaled = scheduler.scaleModelInput(current, t);
    const doubled = cfg ? concatBatch([scaled, scaled]) : scaled;
    // 9-channel UNets get [latents, mask, masked-image latents] on the channel axis, after scaling.
    const sample = latents.conditioning ? withConditioning(doubled, latents.conditioning, unetBatch, latentWidth * latentHeight) : doubled;
    const residuals = control
      ? await control.feeds({ index: i, steps: timesteps.length, sample: doubled, timestep: t, hidden: text.hidden, rows: unetBatch, sequence: text.sequence, width: text.dim, latentHeight, latentWidth, ...controlAdded })
      : {};
    const outputs = await unet.session
      .run(
        {
          [io.sample]: makeTensor(io.sampleType, sample, [unetBatch, channels, latentHeight, latentWidth]),
          [io.timestep]: makeTimestep(io, t, unetBatch),
          [io.encoderHiddenStates]: hidden,
          ...guidanceFeed,
          ...addedFeeds,
          ...residuals,
        },
        [io.output],
      )
      .catch((error: unknown) => {
        throw explainRunError(error, params.width, params.height);
      });
    const predicted = tensorToFloat32(outputs[io.output]!);
    const noisePrediction = cfg ? guide(predicted, params.guidance) : predicted;
    current = scheduler.step(noisePrediction, t, current, latentShape, noise);
    if (latents.afterStep) current = latents.afterStep(current, i, timesteps, scheduler);
    await trace?.step?.(i, timesteps.length, current);
  }
  if (latents.final) current = latents.final(current);
  await checkAfterPendingMessages(signal);

  options.onStage?.("decoding");
  const images: GeneratedImage[] = [];
  const itemSize = current.length / batch;
  for (let b = 0; b < batch; b++) {
    check(signal);
    const item = current.subarray(b * itemSize, (b + 1) * itemSize);
    // The VAE's session is made only when it decodes: a draft through TAESD never loads it.
    const decoded =
      (await options.decode?.(item, latentWidth, latentHeight)) ??
      (await decodeLatents(await sessions.vaeDecoder(), item, latentWidth, latentHeight, folder.vaeScalingFactor));
    const unit = decodedToUnit(decoded);
    trace?.decoded?.(b, unit);
    images.push({ rgb: unitToRgb8(unit, params.width, params.height) });
  }
  return images;
}

/** SDXL's prompt encoding: both tokenizers and text encoders (sdxl-conditioning.ts). */
function encodeSdxl(model: LoadedModel, params: GenerateParams, cfg: boolean) {
  if (!model.tokenizer2 || !model.folder.sdxl) throw new EngineError("model_unavailable", `"${model.folder.name}" is an SDXL model and its second tokenizer was not loaded.`);
  return encodeSdxlPrompts({ first: model.tokenizer, second: model.tokenizer2 }, model.sessions, params.prompts, cfg ? params.negativePrompts : null, {
    truncate: params.truncatePrompt,
    forceZerosForEmptyPrompt: model.folder.sdxl.forceZerosForEmptyPrompt,
  });
}

interface StartingLatents {
  start: Float32Array;
  /** 9-channel UNets: [mask (1 channel); masked-image latents (4 channels)] per UNet batch row. */
  conditioning?: { mask: Float32Array; maskedLatents: Float32Array };
  /** 4-channel inpainting: blends the original back outside the mask after each step. */
  afterStep?(latents: Float32Array, index: number, timesteps: number[], scheduler: Scheduler): Float32Array;
  /** The legacy pipeline's last blend after the loop. */
  final?(latents: Float32Array): Float32Array;
}

function repeatItems(item: Float32Array, count: number): Float32Array {
  return concatBatch(Array.from({ length: count }, () => item));
}

/** The latents the loop starts from, with each pipeline's draws in diffusers' order. */
async function initialLatents(
  model: LoadedModel,
  params: GenerateParams,
  scheduler: Scheduler,
  firstTimestep: number,
  noise: NoiseSource,
  options: GenerateOptions,
  shape: readonly [number, number, number, number],
): Promise<StartingLatents> {
  const { folder, sessions } = model;
  const [batch, , latentHeight, latentWidth] = shape;
  const { width, height } = params;
  const encode = async (image: Float32Array) => {
    const encoder = await sessions.vaeEncoder();
    const encoded = await encodeImage(encoder, image, width, height, folder.vaeScalingFactor, noise);
    options.trace?.encoded?.(encoded.mean);
    return repeatItems(encoded.latents, batch);
  };

  if (params.init) {
    const initLatents = await encode(imageToTensor(params.init.rgb, width, height));
    return { start: scheduler.addNoise(initLatents, noise.randn(shape), firstTimestep) };
  }
  const inpaint = params.inpaint;
  if (!inpaint) return { start: scale(options.latents ?? noise.randn(shape), scheduler.initNoiseSigma) };

  const image = imageToTensor(inpaint.rgb, width, height);
  const isStrengthMax = inpaint.strength === 1;
  const plane = latentWidth * latentHeight;

  if (inpaint.variant === "legacy" && folder.unetInChannels === 4) {
    const original = await encode(image);
    const legacyNoise = noise.randn(shape);
    const keep = legacyKeepMask(inpaint.mask, width, height);
    const blend = (target: Float32Array, latents: Float32Array) => {
      const out = new Float32Array(latents.length);
      for (let i = 0; i < latents.length; i++) {
        const m = keep[i % plane]!;
        out[i] = Math.fround(target[i]! * m) + Math.fround(latents[i]! * Math.fround(1 - m));
      }
      return out;
    };
    return {
      start: scheduler.addNoise(original, legacyNoise, firstTimestep),
      afterStep: (latents, index, timesteps, s) => blend(s.addNoise(original, legacyNoise, timesteps[index]!), latents),
      final: (latents) => blend(original, latents),
    };
  }

  // StableDiffusionInpaintPipeline.prepare_latents: the image is encoded first when the 4-channel
  // blend needs it or when the strength starts from the image, then the noise is drawn.
  const needsImageLatents = folder.unetInChannels === 4 || (!options.latents && !isStrengthMax);
  const imageLatents = needsImageLatents ? await encode(image) : undefined;
  const startNoise = options.latents ?? noise.randn(shape);
  const start = options.latents || isStrengthMax ? scale(startNoise, scheduler.initNoiseSigma) : scheduler.addNoise(imageLatents!, startNoise, firstTimestep);

  // prepare_mask_latents: the masked image is encoded even for 4-channel UNets (one more draw).
  const binary = binaryPixelMask(inpaint.mask);
  const maskedLatents = await encode(maskedImage(image, binary));
  const latentMask = binaryLatentMask(inpaint.mask, width, height);

  if (folder.unetInChannels === 9) {
    return { start, conditioning: { mask: repeatItems(latentMask, batch), maskedLatents } };
  }
  return {
    start,
    afterStep: (latents, index, timesteps, s) => {
      const proper = index < timesteps.length - 1 ? s.addNoise(imageLatents!, startNoise, timesteps[index + 1]!) : imageLatents!;
      const out = new Float32Array(latents.length);
      for (let i = 0; i < latents.length; i++) out[i] = latentMask[i % plane] ? latents[i]! : proper[i]!;
      return out;
    },
  };
}

/** [rows, 4, h, w] latents + per-item mask and masked latents -> [rows, 9, h, w]. */
function withConditioning(latents: Float32Array, conditioning: { mask: Float32Array; maskedLatents: Float32Array }, rows: number, plane: number): Float32Array {
  const items = conditioning.mask.length / plane;
  const out = new Float32Array(rows * 9 * plane);
  for (let r = 0; r < rows; r++) {
    const item = r % items;
    const base = r * 9 * plane;
    out.set(latents.subarray(r * 4 * plane, (r + 1) * 4 * plane), base);
    out.set(conditioning.mask.subarray(item * plane, (item + 1) * plane), base + 4 * plane);
    out.set(conditioning.maskedLatents.subarray(item * 4 * plane, (item + 1) * 4 * plane), base + 5 * plane);
  }
  return out;
}
