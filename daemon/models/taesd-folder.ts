/**
 * A preview decoder in the models folder: a tiny autoencoder for SD 1.x / 2.x latents (TAESD) in
 * the diffusers ONNX layout, beside the models but not one of them (never in the model menu):
 *
 *   vae_decoder/model.onnx   latent_sample [batch, 4, h, w] -> sample [batch, 3, 8h, 8w]
 *   vae_encoder/model.onnx   the inverse (optional)
 *   <part>/config.json       diffusers' AutoencoderTiny config (optional)
 *
 * A folder is one when its manifest names a preview decoder of the registry, or when it holds a VAE
 * and nothing else (no model_index.json, unet/ or text_encoder/). Its files are checked as a model
 * folder's are (zod, onnx-inspect, operators, external weights, I/O), and it must be tiny: a full
 * SD VAE (49.5 M weights) in such a folder is refused rather than run after every step.
 *
 * TAESD's latents are at scale factor 1 (AutoencoderTiny's scaling_factor is 1.0): the latents the
 * UNet denoises, which are the SD VAE's posterior x 0.18215, go in as they are.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import { ModelFolderError } from "./errors";
import { createSession, silentLog, type Device, type ModelLog, type SessionFactory } from "./execution-provider";
import { describeVaeDecoder, describeVaeEncoder, type IoValue, type VaeDecoderIO, type VaeEncoderIO } from "./io-spec";
import { readManifest } from "./manifest";
import { checkDevices, checkExternalData, defaultDevices, fileSize, inspectPart, invalid, missing, readOptionalJson } from "./model-folder";
import type { PartSession } from "./model-sessions";
import type { OnnxInfo } from "./onnx-inspect";
import { previewDecoderEntryForSource, type PreviewDecoderEntry } from "./registry";
import { describeVaeDecoderSession, describeVaeEncoderSession } from "./session-io";

export type ImageRange = PreviewDecoderEntry["imageRange"];

/** Weights per part above which a folder is not a tiny autoencoder: TAESD has 1.22 M, SD's VAE decoder 49.5 M. */
export const MAX_TINY_PARAMETERS = 5_000_000;

/** diffusers' AutoencoderTiny config.json, what is read of it. */
export const TinyAutoencoderConfigSchema = z.looseObject({
  _class_name: z.string().optional(),
  latent_channels: z.number().int().positive().optional(),
  scaling_factor: z.number().positive().optional(),
});

export interface PreviewDecoderFolder {
  /** The folder's name. */
  id: string;
  dir: string;
  paths: { decoder: string; encoder: string | null; externalData: string[] };
  io: { decoder: VaeDecoderIO; encoder: VaeEncoderIO | null };
  /** What its image ends hold: [-1, 1] (diffusers' AutoencoderTiny export) or [0, 1] (taesd.py's nets). */
  imageRange: ImageRange;
  /** Weight elements of the decoder and the encoder together. */
  parameters: number;
  /** Bytes of its ONNX files and their external weights. */
  weightsBytes: number;
  /** The registry entry it was installed as; null for a folder added by hand. */
  registryId: string | null;
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

/** Whether a folder in the models folder is a preview decoder (see the module comment), not a model. */
export async function isPreviewDecoderFolder(dir: string): Promise<boolean> {
  if (previewDecoderEntryForSource((await readManifest(dir))?.source)) return true;
  if ((await fileSize(join(dir, "vae_decoder", "model.onnx"))) === null || (await fileSize(join(dir, "model_index.json"))) !== null) return false;
  return !(await isDir(join(dir, "unet"))) && !(await isDir(join(dir, "text_encoder")));
}

const unsupported = (file: string, why: string) => new ModelFolderError("model_unsupported", file, `Preview decoder unsupported: ${file} ${why}.`);

function parametersOf(info: OnnxInfo): number {
  let count = 0;
  for (const { dims } of info.initializers.values()) count += dims.reduce((a, b) => a * b, 1);
  return count;
}

/** A value's channel count (axis 1) when the graph fixes it. */
const channelsOf = (v: IoValue | undefined) => (typeof v?.shape?.[1] === "number" ? v.shape[1] : null);

function checkChannels(file: string, v: IoValue | undefined, expected: number, what: string): void {
  const channels = channelsOf(v);
  if (v?.shape && v.shape.length !== 4) throw unsupported(file, `takes ${what} of rank ${v.shape.length}, not [batch, channels, height, width]`);
  if (channels !== null && channels !== expected) throw unsupported(file, `has ${channels}-channel ${what}; an SD 1.x / 2.x tiny autoencoder has ${expected}`);
}

/** A part's config.json: AutoencoderTiny's, with SD's 4 latent channels at scale factor 1, where it says. */
async function checkConfig(dir: string, partDir: string): Promise<void> {
  const file = join(partDir, "config.json");
  const config = await readOptionalJson(dir, file, TinyAutoencoderConfigSchema);
  if (!config) return;
  if (config._class_name !== undefined && config._class_name !== "AutoencoderTiny") throw unsupported(file, `describes a ${config._class_name}, not a tiny autoencoder (AutoencoderTiny)`);
  if (config.latent_channels !== undefined && config.latent_channels !== 4) throw unsupported(file, `has ${config.latent_channels} latent channels; SD 1.x / 2.x latents have 4`);
  if (config.scaling_factor !== undefined && config.scaling_factor !== 1) throw unsupported(file, `scales its latents by ${config.scaling_factor}; TAESD takes the UNet's latents as they are (scaling_factor 1)`);
}

async function checkPart(dir: string, file: string, devices: readonly Device[]): Promise<{ info: OnnxInfo; external: { paths: string[]; bytes: number } }> {
  const info = await inspectPart(dir, file);
  checkDevices(dir, info, devices);
  const external = await checkExternalData(dir, info);
  const parameters = parametersOf(info);
  if (parameters > MAX_TINY_PARAMETERS) {
    throw unsupported(file, `has ${(parameters / 1e6).toFixed(1)} M weights: not a tiny autoencoder (TAESD has 1.2 M per part), and a full VAE is too slow to decode every step`);
  }
  await checkConfig(dir, resolve(file, ".."));
  return { info, external };
}

/**
 * Reads and checks a preview decoder's folder. Throws ModelFolderError: model_file_missing (no
 * vae_decoder/model.onnx), model_file_invalid (a damaged file), model_unsupported (not a tiny SD
 * autoencoder, I/O it cannot be fed with, operators none of the devices has).
 */
export async function loadPreviewDecoderFolder(folder: string, options: { devices?: readonly Device[] } = {}): Promise<PreviewDecoderFolder> {
  const dir = resolve(folder);
  const decoderPath = join(dir, "vae_decoder", "model.onnx");
  const encoderPath = join(dir, "vae_encoder", "model.onnx");
  if ((await fileSize(decoderPath)) === null) throw missing(dir, decoderPath, "a preview decoder is its vae_decoder");
  const hasEncoder = (await fileSize(encoderPath)) !== null;
  const devices = options.devices ?? (await defaultDevices());
  const decoder = await checkPart(dir, decoderPath, devices);
  const encoder = hasEncoder ? await checkPart(dir, encoderPath, devices) : null;

  const decoderIo = describeVaeDecoder(decoderPath, decoder.info.inputs, decoder.info.outputs);
  checkChannels(decoderPath, decoder.info.inputs.find((v) => v.name === decoderIo.latent), 4, "latents");
  checkChannels(decoderPath, decoder.info.outputs.find((v) => v.name === decoderIo.output), 3, "pictures");
  let encoderIo: VaeEncoderIO | null = null;
  if (encoder) {
    encoderIo = describeVaeEncoder(encoderPath, encoder.info.inputs, encoder.info.outputs);
    if (encoderIo.outputKind !== "latent_sample") throw unsupported(encoderPath, "gives a posterior's parameters; a tiny autoencoder gives the latents themselves");
    checkChannels(encoderPath, encoder.info.inputs.find((v) => v.name === encoderIo!.sample), 3, "pictures");
    checkChannels(encoderPath, encoder.info.outputs.find((v) => v.name === encoderIo!.output), 4, "latents");
  }
  const entry = previewDecoderEntryForSource((await readManifest(dir))?.source);
  const parts = [decoder, ...(encoder ? [encoder] : [])];
  return {
    id: basename(dir),
    dir,
    paths: { decoder: decoderPath, encoder: hasEncoder ? encoderPath : null, externalData: parts.flatMap((p) => p.external.paths) },
    io: { decoder: decoderIo, encoder: encoderIo },
    // The diffusers layout holds diffusers' AutoencoderTiny export unless the registry says otherwise.
    imageRange: entry?.imageRange ?? "minus-one-to-one",
    parameters: parts.reduce((n, p) => n + parametersOf(p.info), 0),
    weightsBytes: parts.reduce((n, p) => n + p.info.fileBytes + p.external.bytes, 0),
    registryId: entry?.id ?? null,
  };
}

export interface FoundPreviewDecoders {
  /** The one the engine uses: the first that loads, registry installs before folders added by hand, then by name. */
  found: PreviewDecoderFolder | null;
  /** Preview decoder folders that cannot be used, each with why. */
  broken: { id: string; dir: string; error: ModelFolderError }[];
}

/** The preview decoders in a models folder (one that does not exist has none). */
export async function findPreviewDecoders(modelsDir: string, options: { devices?: readonly Device[] } = {}): Promise<FoundPreviewDecoders> {
  const root = resolve(modelsDir);
  const names = await readdir(root).catch(() => [] as string[]);
  const loaded: PreviewDecoderFolder[] = [];
  const broken: FoundPreviewDecoders["broken"] = [];
  for (const id of names.filter((n) => !n.startsWith(".")).sort()) {
    const dir = join(root, id);
    if (!(await isDir(dir)) || !(await isPreviewDecoderFolder(dir))) continue;
    try {
      loaded.push(await loadPreviewDecoderFolder(dir, options));
    } catch (error) {
      const wrapped = error instanceof ModelFolderError ? error : invalid(dir, `unreadable (${(error as Error).message})`, error);
      broken.push({ id, dir, error: wrapped });
    }
  }
  const found = loaded.find((f) => f.registryId !== null) ?? loaded[0] ?? null;
  return { found, broken };
}

export interface PreviewDecoderSessionsOptions {
  /** Devices in order of preference. */
  devices: readonly Device[];
  log?: ModelLog;
  threads?: number;
  /** How a session is made from a model file (default onnxruntime's own, as model-sessions'). */
  factory?: SessionFactory;
  compiled?: () => readonly string[];
}

type TinyPart = "decoder" | "encoder";

/**
 * The preview decoder's onnxruntime sessions, created when first asked for by createSession, as a
 * model's parts are. DirectML sessions are made for one shape (free-dimension overrides by the
 * Optimum export's axis names), and made again when the shape changes.
 */
export class PreviewDecoderSessions {
  private readonly parts = new Map<TinyPart, { shape: string; created: Promise<PartSession<VaeDecoderIO | VaeEncoderIO>> }>();
  private isReleased = false;

  constructor(
    readonly folder: PreviewDecoderFolder,
    private readonly options: PreviewDecoderSessionsOptions,
  ) {}

  decoder(latentHeight: number, latentWidth: number): Promise<PartSession<VaeDecoderIO>> {
    return this.part("decoder", latentHeight, latentWidth) as Promise<PartSession<VaeDecoderIO>>;
  }

  /** Rejects with model_file_missing for a preview decoder without vae_encoder/. */
  encoder(latentHeight: number, latentWidth: number): Promise<PartSession<VaeEncoderIO>> {
    return this.part("encoder", latentHeight, latentWidth) as Promise<PartSession<VaeEncoderIO>>;
  }

  async release(): Promise<void> {
    this.isReleased = true;
    const all = [...this.parts.values()];
    this.parts.clear();
    for (const r of await Promise.allSettled(all.map((p) => p.created))) if (r.status === "fulfilled") await r.value.session.release().catch(() => {});
  }

  private async part(part: TinyPart, latentHeight: number, latentWidth: number): Promise<PartSession<VaeDecoderIO | VaeEncoderIO>> {
    if (this.isReleased) throw new Error(`the sessions of preview decoder "${this.folder.id}" were released`);
    const shape = `${latentHeight}x${latentWidth}`;
    const known = this.parts.get(part);
    if (known) {
      // A failed creation is tried again; a DirectML session made for another shape is made again.
      const created = await known.created.catch(() => null);
      if (created && (created.device !== "dml" || known.shape === shape)) return created;
      if (this.parts.get(part) === known) this.parts.delete(part);
      await created?.session.release().catch(() => {});
    }
    let entry = this.parts.get(part);
    if (!entry) {
      entry = { shape, created: this.create(part, latentHeight, latentWidth) };
      this.parts.set(part, entry);
    }
    return entry.created;
  }

  private async create(part: TinyPart, latentHeight: number, latentWidth: number): Promise<PartSession<VaeDecoderIO | VaeEncoderIO>> {
    const path = part === "decoder" ? this.folder.paths.decoder : this.folder.paths.encoder;
    if (!path) {
      const expected = join(this.folder.dir, "vae_encoder", "model.onnx");
      throw new ModelFolderError("model_file_missing", expected, `Model file missing: ${expected}; preview decoder "${this.folder.id}" has no encoder.`);
    }
    const log = this.options.log ?? silentLog;
    const created = await createSession(path, this.options.devices, log, {
      ...(this.options.threads !== undefined ? { threads: this.options.threads } : {}),
      ...(this.options.factory ? { factory: this.options.factory } : {}),
      ...(this.options.compiled ? { compiled: this.options.compiled } : {}),
      freeDimensions: { batch_size: 1, height_latent: latentHeight, width_latent: latentWidth, height: 8 * latentHeight, width: 8 * latentWidth },
    });
    try {
      const io = part === "decoder" ? describeVaeDecoderSession(created.session, path) : describeVaeEncoderSession(created.session, path);
      log("info", `preview decoder "${this.folder.id}": ${part} loaded on ${created.device}`);
      return { ...created, io, path };
    } catch (error) {
      await created.session.release().catch(() => {});
      throw error;
    }
  }
}
