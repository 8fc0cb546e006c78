/**
 * onnxruntime sessions of one model, created lazily part by part, and a cache that keeps
 * ONE model loaded: switching models releases the old sessions first, because two SD
 * models do not fit in most machines' memory.
 *
 * The cache does not count users: the daemon runs one job at a time and must not switch
 * models while a job still runs on the old sessions.
 */
import path, { join } from "node:path";
import type { InferenceSession } from "onnxruntime-node";
import { ModelFolderError } from "./errors";
import {
  chooseDevices,
  createSession,
  defaultSessionFactory,
  silentLog,
  withSessionEntries,
  type Device,
  type ModelLog,
  type SessionFactory,
} from "./execution-provider";
import type { ModelFolder } from "./model-folder";
import { describeControlNet, describeControlUnet, type ControlNetIO, type ControlUnetIO } from "./control-io";
import type { ControlNetFolder } from "./controlnet-folder";
import { Float32Copies, withFloat32Copies } from "./float32-copies";
import { INT8_SESSION_CONFIG, int8RewriteName, withInt8Unet, type Int8Unets } from "./int8-unets";
import { freeDimensionOverrides, sameShape, type JobShape } from "./free-dimensions";
import { ATTENTION_FUSION_VERSION } from "./attention-fusion";
import { withFusedAttention } from "./fused-attention-sessions";
import type { OptimizedModelCache } from "./optimized-models";
import {
  describeTextEncoderSession,
  describeUnetSession,
  describeVaeDecoderSession,
  describeVaeEncoderSession,
  type TextEncoderIO,
  type UnetIO,
  type VaeDecoderIO,
  type VaeEncoderIO,
  sessionValues,
} from "./session-io";

export const MODEL_PARTS = ["textEncoder", "textEncoder2", "unet", "vaeEncoder", "vaeDecoder"] as const;
export type ModelPart = (typeof MODEL_PARTS)[number];

/** What the default loading does to a part's graph, as named in the optimized-model cache's key. */
export function graphRewriteOf(part: ModelPart): string {
  // CLIP's attention is causal and short (77 tokens): only the UNet's and the VAE's are fused.
  return part === "textEncoder" || part === "textEncoder2" ? "" : `attention-fusion-${ATTENTION_FUSION_VERSION}`;
}

interface PartIO {
  textEncoder: TextEncoderIO;
  textEncoder2: TextEncoderIO;
  unet: UnetIO;
  vaeEncoder: VaeEncoderIO;
  vaeDecoder: VaeDecoderIO;
}

export interface PartSession<IO> {
  session: InferenceSession;
  /** Where it runs. */
  device: Device;
  /** Input/output names and dtypes, from the session's own metadata. */
  io: IO;
  path: string;
  /** Why a preferred device was skipped, when one was. */
  fallbackReason: string | null;
}

export interface ModelSessionsOptions {
  /** Devices in order of preference (default: chooseDevices()). */
  devices?: readonly Device[];
  log?: ModelLog;
  /** intraOpNumThreads (default: physical cores). */
  threads?: number;
  /**
   * For tests: how a session is made from a model file. The default also fuses the UNet's and
   * the VAE's attention (./fused-attention-sessions); a factory given here is used as it is.
   */
  factory?: SessionFactory;
  /** For tests: the providers this onnxruntime build has (default: onnxruntime's own list). */
  compiled?: () => readonly string[];
  /** Where float32 copies of float16 parts are kept for the CPU (default: beside optimizedModels' copies; null: none). */
  float32Copies?: Float32Copies | null;
  /** Loads CPU sessions from onnxruntime-optimized copies, writing them on first use (default null: none, nothing written). */
  optimizedModels?: OptimizedModelCache | null;
  /** Run the UNet on the CPU from an int8 copy kept here (default null: float32, as exported). */
  unetInt8?: Int8Unets | null;
}

const DESCRIBE: { [P in ModelPart]: (session: InferenceSession, file: string) => PartIO[P] } = {
  textEncoder: describeTextEncoderSession,
  textEncoder2: describeTextEncoderSession,
  unet: describeUnetSession,
  vaeEncoder: describeVaeEncoderSession,
  vaeDecoder: describeVaeDecoderSession,
};

/** Is this part of the model float16: its inputs or outputs (an fp16 export), or most of its weights (fp16 behind float32 io)? */
function float16Part(model: ModelFolder, part: ModelPart): boolean {
  const io = model.io;
  if (model.weightTypes[part] === "float16") return true;
  switch (part) {
    case "textEncoder":
      return io.textEncoder.hiddenStateType === "float16";
    case "textEncoder2":
      return io.textEncoder2?.hiddenStateType === "float16";
    case "unet":
      return io.unet.sampleType === "float16" || io.unet.outputType === "float16";
    case "vaeEncoder":
      return io.vaeEncoder?.sampleType === "float16" || io.vaeEncoder?.outputType === "float16";
    case "vaeDecoder":
      return io.vaeDecoder.latentType === "float16" || io.vaeDecoder.outputType === "float16";
  }
}

export class ModelSessions {
  private readonly pending = new Map<ModelPart, Promise<PartSession<unknown>>>();
  private readonly ready = new Map<ModelPart, PartSession<unknown>>();
  private readonly devicesWanted: readonly Device[];
  private shape: JobShape | null = null;
  private readonly log: ModelLog;
  private readonly factories: Record<ModelPart, SessionFactory>;
  /** The control UNet's and the ControlNet's sessions (one ControlNet at a time), by file. */
  private readonly control = new Map<string, Promise<PartSession<unknown>>>();
  private readonly controlFactory: SessionFactory;
  private isReleased = false;

  constructor(
    readonly model: ModelFolder,
    private readonly options: ModelSessionsOptions = {},
  ) {
    this.log = options.log ?? silentLog;
    this.devicesWanted = options.devices ?? chooseDevices().devices;
    const fusing = withFusedAttention(defaultSessionFactory, { log: this.log });
    // float16 parts run on the CPU from a float32 copy kept beside the optimized ones.
    const copies =
      options.float32Copies !== undefined
        ? options.float32Copies
        : options.optimizedModels
          ? new Float32Copies(path.join(path.dirname(options.optimizedModels.root), "float32"), this.log)
          : null;
    const factoryOf = (part: ModelPart): SessionFactory => {
      const rewrite = options.factory ? "" : graphRewriteOf(part);
      let factory = options.factory ?? (rewrite ? fusing : defaultSessionFactory);
      const int8 = part === "unet" ? (options.unetInt8 ?? null) : null;
      // Quantized from the float32 file: a float16 UNet's float32 copy, made first.
      if (int8) factory = withInt8Unet(factory, int8, this.log);
      if (copies && float16Part(model, part)) factory = withFloat32Copies(factory, copies, this.log);
      const named = int8 ? [rewrite, int8RewriteName(int8.options)].filter(Boolean).join("+") : rewrite;
      if (options.optimizedModels) factory = options.optimizedModels.wrap(factory, named);
      // Outermost, so that the optimized copy is written with it and keyed by it.
      return int8 ? withSessionEntries(factory, INT8_SESSION_CONFIG) : factory;
    };
    this.factories = { textEncoder: factoryOf("textEncoder"), textEncoder2: factoryOf("textEncoder2"), unet: factoryOf("unet"), vaeEncoder: factoryOf("vaeEncoder"), vaeDecoder: factoryOf("vaeDecoder") };
    // Control graphs are UNet-like: float16 weights get a float32 copy (copyOf skips float32 graphs), then
    // attention is fused; without copies they load as they are (the fusion does not type-check float16 graphs).
    let control = options.factory ?? (copies ? fusing : defaultSessionFactory);
    if (copies) control = withFloat32Copies(control, copies, this.log);
    this.controlFactory = options.optimizedModels ? options.optimizedModels.wrap(control, options.factory ? "" : graphRewriteOf("unet")) : control;
  }

  /** The UNet that takes a ControlNet's residuals (controlnet/model.onnx); rejects for a model without one. */
  controlUnet(): Promise<PartSession<ControlUnetIO>> {
    const unet = this.model.controlUnet;
    if (!unet) {
      return Promise.reject(new ModelFolderError("model_file_missing", join(this.model.dir, "controlnet", "model.onnx"), `Model "${this.model.id}" has no control UNet (controlnet/model.onnx) and cannot follow a control image.`));
    }
    return this.controlSession(unet.path, (session, file) => describeControlUnet(file, sessionValues(session).inputs, sessionValues(session).outputs));
  }

  /** A ControlNet's session; asking for another ControlNet releases the previous one. */
  async controlNet(folder: ControlNetFolder): Promise<PartSession<ControlNetIO>> {
    const unetPath = this.model.controlUnet?.path;
    for (const [file, pending] of [...this.control]) {
      if (file === unetPath || file === folder.path) continue;
      this.control.delete(file);
      await (await pending.catch(() => null))?.session.release().catch(() => {});
    }
    return this.controlSession(folder.path, (session, file) => describeControlNet(file, sessionValues(session).inputs, sessionValues(session).outputs));
  }

  /** Releases the control UNet's and the ControlNet's sessions (made again when next asked for). */
  async releaseControl(): Promise<void> {
    const all = [...this.control.values()];
    this.control.clear();
    for (const created of await Promise.allSettled(all)) if (created.status === "fulfilled") await created.value.session.release().catch(() => {});
  }

  private controlSession<IO>(file: string, describe: (session: InferenceSession, file: string) => IO): Promise<PartSession<IO>> {
    if (this.isReleased) return Promise.reject(new Error(`the sessions of model "${this.model.id}" were released`));
    let p = this.control.get(file);
    if (!p) {
      const made = (async (): Promise<PartSession<IO>> => {
        const created = await createSession(file, this.devicesWanted, this.log, {
          threads: this.options.threads,
          factory: this.controlFactory,
          ...(this.options.compiled ? { compiled: this.options.compiled } : {}),
        });
        try {
          return { ...created, io: describe(created.session, file), path: file };
        } catch (error) {
          await created.session.release().catch(() => {});
          throw error;
        }
      })();
      p = made;
      this.control.set(file, made);
      made.catch(() => {
        if (this.control.get(file) === made) this.control.delete(file);
      });
    }
    return p as Promise<PartSession<IO>>;
  }

  textEncoder(): Promise<PartSession<TextEncoderIO>> {
    return this.part("textEncoder");
  }

  /** SDXL's second text encoder; rejects with model_file_missing for SD 1.x / 2.x models. */
  textEncoder2(): Promise<PartSession<TextEncoderIO>> {
    return this.part("textEncoder2");
  }

  unet(): Promise<PartSession<UnetIO>> {
    return this.part("unet");
  }

  /** Rejects with ModelFolderError "model_file_missing" for a model without vae_encoder/ (txt2img only). */
  vaeEncoder(): Promise<PartSession<VaeEncoderIO>> {
    return this.part("vaeEncoder");
  }

  vaeDecoder(): Promise<PartSession<VaeDecoderIO>> {
    return this.part("vaeDecoder");
  }

  /**
   * The shape the next calls run at. DirectML sessions are created for one shape (free-dimension
   * overrides): a new shape releases those it changes, so that they are created again for it. Other devices
   * run any shape and keep their sessions.
   */
  async useShape(shape: JobShape): Promise<void> {
    const before = this.shape;
    if (sameShape(before, shape)) return;
    this.shape = shape;
    const changed = (part: ModelPart) =>
      !before || JSON.stringify(freeDimensionOverrides(part, before)) !== JSON.stringify(freeDimensionOverrides(part, shape));
    for (const [part, created] of [...this.ready]) if (created.device === "dml" && changed(part)) await this.releasePart(part);
  }

  /** Creates every session the model has, one after the other. */
  async loadAll(): Promise<void> {
    for (const part of MODEL_PARTS) {
      if ((part === "vaeEncoder" || part === "textEncoder2") && !this.model.paths[part]) continue;
      await this.part(part);
    }
  }

  /** Parts whose session is created. */
  loaded(): ModelPart[] {
    return MODEL_PARTS.filter((p) => this.ready.has(p));
  }

  /** Device of each created session. */
  devices(): Partial<Record<ModelPart, Device>> {
    const out: Partial<Record<ModelPart, Device>> = {};
    for (const [part, s] of this.ready) out[part] = s.device;
    return out;
  }

  /** The UNet's device (where the time goes), else the first created session's, else null. */
  get device(): Device | null {
    return this.ready.get("unet")?.device ?? this.ready.values().next().value?.device ?? null;
  }

  get released(): boolean {
    return this.isReleased;
  }

  /** Releases one part's session (it is created again when next asked for). */
  async releasePart(part: ModelPart): Promise<void> {
    const pending = this.pending.get(part);
    if (!pending) return;
    this.pending.delete(part);
    this.ready.delete(part);
    const created = await pending.catch(() => null);
    await created?.session.release().catch(() => {});
  }

  /** Releases every session, waiting for any still being created. Idempotent. */
  async release(): Promise<void> {
    this.isReleased = true;
    const all = [...this.pending.values(), ...this.control.values()];
    this.pending.clear();
    this.control.clear();
    this.ready.clear();
    const results = await Promise.allSettled(all);
    for (const r of results) {
      if (r.status === "fulfilled") await r.value.session.release().catch(() => {});
    }
  }

  private part<P extends ModelPart>(part: P): Promise<PartSession<PartIO[P]>> {
    if (this.isReleased) {
      return Promise.reject(new Error(`the sessions of model "${this.model.id}" were released`));
    }
    let p = this.pending.get(part);
    if (!p) {
      p = this.create(part);
      this.pending.set(part, p);
      // A failed creation may be retried by the next call.
      p.catch(() => {
        if (this.pending.get(part) === p) this.pending.delete(part);
      });
    }
    return p as Promise<PartSession<PartIO[P]>>;
  }

  private async create<P extends ModelPart>(part: P): Promise<PartSession<PartIO[P]>> {
    const path = this.model.paths[part];
    if (!path && part === "textEncoder2") {
      const expected = join(this.model.dir, "text_encoder_2", "model.onnx");
      throw new ModelFolderError("model_file_missing", expected, `Model file missing: ${expected}; model "${this.model.id}" is not an SDXL model.`);
    }
    if (!path) {
      const expected = join(this.model.dir, "vae_encoder", "model.onnx");
      throw new ModelFolderError(
        "model_file_missing",
        expected,
        `Model file missing: ${expected}; model "${this.model.id}" has no VAE encoder and can only do txt2img.`,
      );
    }
    const created = await createSession(path, this.devicesWanted, this.log, {
      threads: this.options.threads,
      factory: this.factories[part],
      ...(this.options.compiled ? { compiled: this.options.compiled } : {}),
      ...(this.shape ? { freeDimensions: freeDimensionOverrides(part, this.shape) } : {}),
    });
    let io: PartIO[P];
    try {
      io = DESCRIBE[part](created.session, path);
    } catch (error) {
      await created.session.release().catch(() => {});
      throw error;
    }
    const result: PartSession<PartIO[P]> = { ...created, io, path };
    if (this.isReleased) {
      // Released while this one was being created: release() awaits this promise and frees it.
      return result;
    }
    this.ready.set(part, result);
    this.log("info", `model "${this.model.id}": ${part} loaded on ${created.device}`);
    return result;
  }
}

/** Keeps the sessions of ONE model; asking for another releases the current one first. */
export class SessionCache {
  private currentSessions: ModelSessions | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  readonly devices: readonly Device[];
  private readonly log: ModelLog;

  constructor(private readonly options: ModelSessionsOptions = {}) {
    this.log = options.log ?? silentLog;
    if (options.devices) {
      this.devices = options.devices;
    } else {
      const choice = chooseDevices();
      if (choice.warning) this.log("warn", choice.warning);
      this.devices = choice.devices;
    }
  }

  /** The model's sessions (lazy), releasing another model's first. Calls are serialized. */
  get(model: ModelFolder): Promise<ModelSessions> {
    const next = this.queue.then(async () => {
      const current = this.currentSessions;
      if (current && current.model.dir === model.dir && current.model.weightsBytes === model.weightsBytes) {
        return current;
      }
      if (current) {
        this.currentSessions = null;
        await current.release();
        this.log("info", `released model "${current.model.id}" to load "${model.id}"`);
      }
      const sessions = new ModelSessions(model, { ...this.options, devices: this.devices });
      this.currentSessions = sessions;
      return sessions;
    });
    this.queue = next.catch(() => {});
    return next;
  }

  current(): ModelSessions | null {
    return this.currentSessions;
  }

  /** The device the current model's UNet runs on, or null before it is loaded. */
  get device(): Device | null {
    return this.currentSessions?.device ?? null;
  }

  async release(): Promise<void> {
    const next = this.queue.then(async () => {
      const current = this.currentSessions;
      this.currentSessions = null;
      await current?.release();
    });
    this.queue = next.catch(() => {});
    await next;
  }
}
