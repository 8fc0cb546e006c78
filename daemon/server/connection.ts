/**
 * One client connection: handshake, message dispatch, frame reassembly, its jobs' lifecycle
 * (awaiting frames -> queued -> running -> done) and what goes back to the client.
 */
import type { WebSocket, RawData } from "ws";
import {
  BufferPool,
  FrameAssembler,
  FrameChunkReader,
  FrameError,
  PROTOCOL_VERSION,
  frameChunks,
  parseClientMessage,
  type ClientMessage,
  type ControlNetInfo,
  type ModelInfo,
  type DaemonMessageInput,
  type ErrorCode,
  type FrameChunkHeader,
  type FrameRef,
  type ImageFrame,
  type JobRequest,
  type MessageOf,
  type ModelList,
  type RegistryModel,
  type RegistryControlNet,
  type RegistryDepthEstimator,
  type RegistryPoseEstimator,
  type RegistryPreviewDecoder,
} from "../../protocol";
import type { Pixels } from "../../geometry";
import { CancelledError, EngineError, unsupportedModeMessage, type Engine, type EngineProgress } from "../engine/engine";
import { toGenerationJob } from "./generation-job";
import { controlPreview } from "./control-preview";
import type { ModelInstaller } from "../models/downloads";
import type { JobQueue } from "./queue";
import type { ServerLimits } from "./limits";
import { tokensMatch } from "./token";
import type { BulkSink } from "./bulk-frames";

export interface ConnectionSettings {
  id: string;
  /** Image buffers shared by all connections, reused from job to job. */
  pool: BufferPool;
  token: string;
  engine: Engine;
  queue: JobQueue;
  limits: ServerLimits;
  daemonVersion: string;
  handshakeTimeoutMs: number;
  frameTimeoutMs: number;
  log(line: string): void;
  /** Installs models for pull-model / cancel-pull; absent, the daemon refuses them. */
  installer?: ModelInstaller;
  /** The models the daemon can pull, told in the welcome. */
  registry: readonly RegistryModel[];
  /** The preview decoders (TAESD) the daemon can pull, told in the welcome. */
  registryPreviewDecoders: readonly RegistryPreviewDecoder[];
  /** The ControlNets the daemon can pull, told in the welcome. */
  registryControlNets: readonly RegistryControlNet[];
  /** The depth estimators the daemon can pull. */
  registryDepthEstimators: readonly RegistryDepthEstimator[];
  /** The pose estimators the daemon can pull. */
  registryPoseEstimators: readonly RegistryPoseEstimator[];
}

/** A control-preview request waiting for its frame. */
interface PreviewRequest {
  request: MessageOf<ClientMessage, "control-preview">;
  frameTimer: ReturnType<typeof setTimeout>;
}

type Phase = "awaiting-frames" | "queued" | "running";

interface ConnectionJob {
  request: JobRequest;
  key: string;
  phase: Phase;
  received: { image?: ImageFrame; mask?: ImageFrame; control?: ImageFrame };
  frameTimer?: ReturnType<typeof setTimeout>;
}

/** A models message's lists (the preview decoder where the engine tells it). */
export function modelsMessage(list: ModelList): ModelList {
  return {
    models: list.models,
    unavailable: list.unavailable,
    ...(list.previewDecoder !== undefined ? { previewDecoder: list.previewDecoder } : {}),
    ...(list.controlNets !== undefined ? { controlNets: list.controlNets } : {}),
    ...(list.depthEstimator !== undefined ? { depthEstimator: list.depthEstimator } : {}),
    ...(list.poseEstimator !== undefined ? { poseEstimator: list.poseEstimator } : {}),
  };
}

/** Close codes in the private range, so a client can tell why without parsing text. */
export const CloseCode = {
  handshake: 4000,
  badToken: 4001,
  protocolMismatch: 4002,
  shuttingDown: 1001,
} as const;

/** Previews are dropped rather than queued behind a slow reader. */
const PREVIEW_BACKLOG_BYTES = 8 * 1024 * 1024;

export class Connection {
  private state: "handshake" | "ready" | "closed" = "handshake";
  /** A valid hello arrived; the welcome may still be on its way. */
  private helloAccepted = false;
  private readonly jobs = new Map<number, ConnectionJob>();
  private readonly previewRequests = new Map<number, PreviewRequest>();
  private readonly frames: FrameAssembler;
  private readonly chunks = new FrameChunkReader();
  private readonly handshakeTimer: ReturnType<typeof setTimeout>;
  private nextFrameId = 1;
  private inbox: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: WebSocket,
    private readonly settings: ConnectionSettings,
  ) {
    this.frames = new FrameAssembler(
      { maxFrameBytes: settings.limits.maxImagePixels * 4 * 2, maxPendingFrames: settings.limits.maxPendingFrames },
      settings.pool,
    );
    this.handshakeTimer = setTimeout(
      afterPendingMessages(() => {
        if (this.state === "handshake" && !this.helloAccepted) {
          this.refuse("handshake_timeout", "No hello arrived in time: send hello with the pairing token first.", CloseCode.handshake);
        }
      }),
      settings.handshakeTimeoutMs,
    );
    socket.on("message", (data, isBinary) => this.inOrder(() => this.receive(data, isBinary)));
    socket.on("close", () => this.closed());
    socket.on("error", (error) => settings.log(`connection ${settings.id}: socket error: ${error.message}`));
  }

  get ready(): boolean {
    return this.state === "ready";
  }

  /**
   * Where the socket's filter (bulk-frames.ts) puts the pixels of the panel's chunk messages,
   * straight into their image; undefined (ws reads everything) until the handshake is done.
   */
  get bulkSink(): BulkSink | undefined {
    return this.state === "ready" ? this.sink : undefined;
  }

  private readonly sink: BulkSink = {
    place: (header) => this.frames.place(header),
    landed: (header, spot) => {
      this.frames.written(spot);
      this.inOrder(() => this.receiveChunk(header, spot));
    },
    abandoned: (_header, spot) => this.frames.written(spot),
  };

  /** One message at a time, in order: a submit must be registered before its frames are read. */
  private inOrder(step: () => void | Promise<void>): void {
    this.inbox = this.inbox.then(step).catch((error: unknown) => {
      this.settings.log(`connection ${this.settings.id}: ${String(error)}`);
      this.sendError("internal", "The daemon failed to handle a message; it is still running.");
    });
  }

  /** Pushes a message to this client if it has completed the handshake. */
  notify(message: DaemonMessageInput, sent?: () => void): void {
    if (this.state === "ready") this.send(message, sent);
  }

  close(code: number, reason: string): void {
    if (this.state !== "closed") this.socket.close(code, reason);
  }

  private async receive(data: RawData, isBinary: boolean): Promise<void> {
    if (this.state === "closed") return;
    const bytes = toBytes(data);
    if (bytes.byteLength > this.settings.limits.maxMessageBytes) {
      this.sendError("message_too_large", `A message of ${bytes.byteLength} bytes is over the ${this.settings.limits.maxMessageBytes}-byte limit; send pixels in chunks.`);
      return;
    }
    if (this.state === "handshake") {
      if (isBinary) return this.refuse("handshake_required", "Send hello with the pairing token before anything else.", CloseCode.handshake);
      return this.handshake(bytes);
    }
    if (isBinary) return this.receiveFrameChunk(bytes);
    const announced = this.chunks.awaiting;
    if (announced) {
      this.chunks.reset();
      this.failJobFrames(announced.jobId, "frame_invalid", `A text message came between a chunk header of job ${announced.jobId} and its pixels.`);
    }
    const parsed = parseClientMessage(new TextDecoder().decode(bytes));
    if (!parsed.ok) return this.sendError(parsed.code, parsed.message);
    await this.dispatch(parsed.message);
  }

  private async handshake(bytes: Uint8Array): Promise<void> {
    const parsed = parseClientMessage(new TextDecoder().decode(bytes));
    if (!parsed.ok || parsed.message.type !== "hello") {
      return this.refuse("handshake_required", "Send hello with the pairing token before anything else.", CloseCode.handshake);
    }
    const hello = parsed.message;
    if (hello.protocol !== PROTOCOL_VERSION) {
      return this.refuse(
        "protocol_mismatch",
        `The panel speaks protocol ${hello.protocol} but this daemon speaks ${PROTOCOL_VERSION}: update whichever is older.`,
        CloseCode.protocolMismatch,
      );
    }
    if (!tokensMatch(this.settings.token, hello.token)) {
      return this.refuse("bad_token", "The pairing token is wrong: run `npx underpaint token` and paste it into the panel.", CloseCode.badToken);
    }
    clearTimeout(this.handshakeTimer);
    this.helloAccepted = true;
    const [capabilities, downloads] = await Promise.all([this.settings.engine.capabilities(), this.settings.installer?.downloads() ?? []]);
    if (this.state !== "handshake") return;
    this.state = "ready";
    const { maxPendingFrames: _internal, ...limits } = this.settings.limits;
    this.send({
      type: "welcome",
      protocol: PROTOCOL_VERSION,
      daemon: { name: "underpaint", version: this.settings.daemonVersion },
      capabilities: { ...capabilities, registry: [...this.settings.registry], registryPreviewDecoders: [...this.settings.registryPreviewDecoders], registryControlNets: [...this.settings.registryControlNets], registryDepthEstimators: [...this.settings.registryDepthEstimators], registryPoseEstimators: [...this.settings.registryPoseEstimators], controlPreview: true, downloads, limits },
    });
    this.settings.log(`connection ${this.settings.id}: ${hello.client.name} ${hello.client.version} paired`);
  }

  private async dispatch(message: ClientMessage): Promise<void> {
    switch (message.type) {
      case "hello":
        return this.sendError("invalid_message", "The connection is already paired; hello is sent once.");
      case "submit":
        return this.submit(message.job);
      case "cancel":
        return this.cancel(message);
      case "pull-model":
        if (!this.settings.installer) return this.sendError("invalid_message", "This daemon does not install models.");
        return this.settings.installer.start(message.model, message.revision);
      case "cancel-pull":
        if (!this.settings.installer?.cancel(message.model)) {
          this.sendError("invalid_message", `No download of "${message.model}" runs in this daemon.`);
        }
        return;
      case "control-preview":
        return this.requestPreview(message);
      case "list-models": {
        return this.send({ type: "models", ...modelsMessage(await this.settings.engine.capabilities()) });
      }
    }
  }

  private async submit(request: JobRequest): Promise<void> {
    const { limits, queue, engine } = this.settings;
    const jobId = request.jobId;
    const problem = await this.checkJob(request, engine);
    if (problem) return this.sendError(problem.code, problem.message, jobId);
    if (this.jobs.has(jobId)) return this.sendError("duplicate_job", `Job ${jobId} is already active on this connection.`, jobId);
    if (this.jobs.size >= limits.maxQueuedJobsPerClient || queue.countOwnedBy(this.settings.id) >= limits.maxQueuedJobsPerClient) {
      return this.sendError("queue_full", `You already have ${limits.maxQueuedJobsPerClient} jobs waiting; wait for one to finish or cancel one.`, jobId);
    }
    const job: ConnectionJob = { request, key: `${this.settings.id}/${jobId}`, phase: "awaiting-frames", received: {} };
    this.jobs.set(jobId, job);
    if (request.image || request.mask || request.control) {
      job.frameTimer = setTimeout(
        afterPendingMessages(() => {
          if (job.phase !== "awaiting-frames" || this.jobs.get(jobId) !== job) return;
          this.dropJob(jobId);
          this.sendError("frame_invalid", `The pixels of job ${jobId} did not arrive within ${this.settings.frameTimeoutMs / 1000} s.`, jobId);
        }),
        this.settings.frameTimeoutMs,
      );
    } else {
      this.enqueue(job);
    }
  }

  private async checkJob(request: JobRequest, engine: Engine): Promise<{ code: ErrorCode; message: string } | undefined> {
    const { limits } = this.settings;
    if (request.variations > limits.maxVariations) {
      return { code: "invalid_job", message: `At most ${limits.maxVariations} variations per job.` };
    }
    for (const [name, ref] of [["image", request.image], ["mask", request.mask], ["control image", request.control?.image]] as const) {
      if (ref && ref.width * ref.height > limits.maxImagePixels) {
        return { code: "frame_too_large", message: `The ${name} (${ref.width}x${ref.height}) is over the ${limits.maxImagePixels}-pixel limit.` };
      }
    }
    // A whole picture comes back at its output size; an edit only as large as the context it was sent.
    const whole = request.mode === "txt2img" || request.mode === "img2img";
    for (const [name, size] of [["output", whole ? (request.output ?? request.canvas) : undefined], ["working size", whole ? request.size : undefined]] as const) {
      if (size && size.width * size.height > limits.maxImagePixels) {
        return { code: "invalid_job", message: `The ${name} ${size.width}x${size.height} is over the ${limits.maxImagePixels}-pixel limit.` };
      }
    }
    if (request.image && request.mask && (request.image.width !== request.mask.width || request.image.height !== request.mask.height)) {
      return {
        code: "invalid_job",
        message: `The mask (${request.mask.width}x${request.mask.height}) must be the size of the image (${request.image.width}x${request.image.height}).`,
      };
    }
    const { models, unavailable, controlNets } = await engine.capabilities();
    const model = models.find((m) => m.id === request.model);
    const refused = unavailable.find((m) => m.id === request.model);
    if (!model && refused) return { code: "model_unavailable", message: `The model "${request.model}" cannot run here: ${refused.message}` };
    if (!model) {
      const known = models.map((m) => m.id).join(", ") || "none installed";
      return { code: "model_not_found", message: `There is no model "${request.model}" (available: ${known}).` };
    }
    if (!model.modes.includes(request.mode)) {
      return { code: "unsupported_mode", message: unsupportedModeMessage(model.name, request.mode, model.modes) };
    }
    return request.control ? checkControl(request.control, model, controlNets ?? []) : undefined;
  }

  private requestPreview(request: MessageOf<ClientMessage, "control-preview">): void {
    const id = request.requestId;
    const { image } = request;
    if (this.jobs.has(id) || this.previewRequests.has(id)) return this.sendError("duplicate_job", `Id ${id} is already in use on this connection.`, id);
    if (image.width * image.height > this.settings.limits.maxImagePixels) {
      return this.sendError("frame_too_large", `The control image (${image.width}x${image.height}) is over the ${this.settings.limits.maxImagePixels}-pixel limit.`, id);
    }
    if (image.bitsPerChannel !== 8) return this.sendError("invalid_message", "A control preview is made from 8-bit pixels.", id);
    if (this.previewRequests.size >= this.settings.limits.maxQueuedJobsPerClient) {
      return this.sendError("queue_full", `You already have ${this.settings.limits.maxQueuedJobsPerClient} control previews waiting.`, id);
    }
    const frameTimer = setTimeout(
      afterPendingMessages(() => {
        if (!this.previewRequests.delete(id)) return;
        this.frames.discard(id);
        this.sendError("frame_invalid", `The pixels of control preview ${id} did not arrive within ${this.settings.frameTimeoutMs / 1000} s.`, id);
      }),
      this.settings.frameTimeoutMs,
    );
    this.previewRequests.set(id, { request, frameTimer });
  }

  /** A control-preview's frame arrived whole: its control image goes back at once (pixel math, or one run of an estimator such as depth: never the job queue's UNet). */
  private async answerPreview(pending: PreviewRequest, frame: ImageFrame): Promise<void> {
    const { request } = pending;
    const id = request.requestId;
    try {
      const layer = { width: frame.width, height: frame.height, channels: frame.channels, data: frame.data };
      const image = await controlPreview(request.kind, layer, this.settings.engine.controlImageOptions?.(request.kind) ?? {});
      const frameId = this.nextFrameId++;
      this.notify({ type: "control-preview", requestId: id, kind: request.kind, frame: { frameId, width: image.width, height: image.height, channels: 3, bitsPerChannel: 8 } });
      this.sendFrame("control", id, frameId, image);
    } catch (error) {
      this.settings.log(`control preview ${id} failed: ${error instanceof Error ? error.message : String(error)}`);
      this.sendError("internal", `The control image could not be made: ${error instanceof Error ? error.message : String(error)}`, id);
    } finally {
      this.settings.pool.give(frame.data);
    }
  }

  /** A chunk of a control-preview's frame; true when the chunk was one. */
  private receivePreviewChunk(header: FrameChunkHeader, payload: Uint8Array): Promise<void> | undefined {
    const pending = this.previewRequests.get(header.jobId);
    if (!pending) return undefined;
    const ref = pending.request.image;
    const drop = (message: string) => {
      clearTimeout(pending.frameTimer);
      this.previewRequests.delete(header.jobId);
      this.frames.discard(header.jobId);
      this.sendError("frame_invalid", message, header.jobId);
    };
    if (header.kind !== "control" || header.frameId !== ref.frameId) {
      drop(`Control preview ${header.jobId} expects its control frame ${ref.frameId}, not frame ${header.frameId} of kind ${header.kind}.`);
      return Promise.resolve();
    }
    if (ref.width !== header.width || ref.height !== header.height || ref.channels !== header.channels || ref.bitsPerChannel !== header.bitsPerChannel) {
      drop(`The control image arrived as ${header.width}x${header.height}x${header.channels} at ${header.bitsPerChannel} bits, not as declared (${ref.width}x${ref.height}x${ref.channels} at ${ref.bitsPerChannel} bits).`);
      return Promise.resolve();
    }
    let frame;
    try {
      frame = this.frames.add(header, payload);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      drop(error.message);
      return Promise.resolve();
    }
    if (!frame) return Promise.resolve();
    clearTimeout(pending.frameTimer);
    this.previewRequests.delete(header.jobId);
    return this.answerPreview(pending, frame);
  }

  private async receiveFrameChunk(bytes: Uint8Array): Promise<void> {
    let chunk;
    const announced = this.chunks.awaiting;
    try {
      chunk = this.chunks.read(bytes);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      if (announced && this.jobs.has(announced.jobId)) return this.failJobFrames(announced.jobId, error.code, error.message);
      return this.sendError(error.code, error.message);
    }
    if (!chunk) return;
    return this.receiveChunk(chunk.header, chunk.payload);
  }

  /** A chunk read whole, from a message or straight off the socket into its spot in the image. */
  private receiveChunk(header: FrameChunkHeader, payload: Uint8Array): void | Promise<void> {
    if (this.state === "closed") return;
    const announced = this.chunks.awaiting;
    if (announced) {
      // Not sent by the filter, which leaves the message after a lone header to ws; refused as the reader would.
      this.chunks.reset();
      this.frames.discard(header.jobId);
      return this.failJobFrames(announced.jobId, "frame_invalid", `A chunk header of job ${announced.jobId} was not followed by its pixels.`);
    }
    const preview = this.receivePreviewChunk(header, payload);
    if (preview) return preview;
    const job = this.jobs.get(header.jobId);
    if (!job || job.phase !== "awaiting-frames") {
      // A frame placed straight off the socket is pending already: no one will complete it.
      this.frames.discard(header.jobId);
      return this.sendError("unknown_job", `A frame arrived for job ${header.jobId}, which is not waiting for pixels.`, header.jobId);
    }
    const slot = expectedSlot(job.request, header);
    if (!slot.ok) return this.failJobFrames(header.jobId, "frame_invalid", slot.message);
    let frame;
    try {
      frame = this.frames.add(header, payload);
    } catch (error) {
      if (error instanceof FrameError) return this.failJobFrames(header.jobId, error.code, error.message);
      throw error;
    }
    if (!frame) return;
    job.received[slot.name] = frame;
    const complete = (!job.request.image || job.received.image) && (!job.request.mask || job.received.mask) && (!job.request.control || job.received.control);
    if (complete) {
      clearTimeout(job.frameTimer);
      this.enqueue(job);
    }
  }

  private failJobFrames(jobId: number, code: ErrorCode, message: string): void {
    this.dropJob(jobId);
    this.sendError(code, message, jobId);
  }

  private dropJob(jobId: number): void {
    const job = this.jobs.get(jobId);
    if (job) clearTimeout(job.frameTimer);
    this.jobs.delete(jobId);
    this.frames.discard(jobId);
  }

  private enqueue(job: ConnectionJob): void {
    job.phase = "queued";
    const jobId = job.request.jobId;
    const position = this.settings.queue.enqueue({
      key: job.key,
      owner: this.settings.id,
      run: (signal) => this.run(job, signal),
      onPosition: (position) => this.notify({ type: "queue", jobId, position }),
      onCancelledWhileQueued: () => {
        this.jobs.delete(jobId);
        this.notify({ type: "done", jobId, status: "cancelled" });
      },
    });
    this.send({ type: "accepted", jobId, position });
  }

  private cancel(message: MessageOf<ClientMessage, "cancel">): void {
    const job = this.jobs.get(message.jobId);
    if (!job) return this.sendError("unknown_job", `There is no job ${message.jobId} to cancel.`, message.jobId);
    if (job.phase === "awaiting-frames") {
      this.dropJob(message.jobId);
      return this.send({ type: "done", jobId: message.jobId, status: "cancelled" });
    }
    this.settings.queue.cancel(job.key);
  }

  private async run(job: ConnectionJob, signal: AbortSignal): Promise<void> {
    const { request } = job;
    const jobId = request.jobId;
    job.phase = "running";
    const notices: string[] = [];
    try {
      const results = await this.settings.engine.run(toGenerationJob(request, job.received), {
        signal, onProgress: (progress) => this.progress(jobId, progress), onNotice: (notice) => notices.push(notice) },
      );
      if (signal.aborted) throw new CancelledError();
      for (const result of results) {
        const frameId = this.nextFrameId++;
        const { image } = result;
        this.notify({
          type: "result",
          jobId,
          variation: result.variation,
          seed: result.seed,
          frame: { frameId, width: image.width, height: image.height, channels: image.channels, bitsPerChannel: 8 },
          region: result.region,
        });
        this.sendFrame("result", jobId, frameId, image);
      }
      this.notify({ type: "done", jobId, status: "completed", ...(notices.length ? { notices } : {}) }, () => this.recycle(job));
    } catch (error) {
      if (error instanceof CancelledError || signal.aborted) {
        this.notify({ type: "done", jobId, status: "cancelled" });
      } else if (error instanceof EngineError) {
        this.notify({ type: "done", jobId, status: "failed", error: { code: error.code, message: error.message } });
      } else {
        this.settings.log(`job ${job.key} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        const detail = error instanceof Error ? error.message : String(error);
        this.notify({ type: "done", jobId, status: "failed", error: { code: "job_failed", message: `The generation failed: ${detail}` } });
      }
    } finally {
      this.jobs.delete(jobId);
    }
  }

  /** Returns a finished job's pixels to the pool, once everything sent from them has left. */
  private recycle(job: ConnectionJob): void {
    if (job.received.image) this.settings.pool.give(job.received.image.data);
    if (job.received.mask) this.settings.pool.give(job.received.mask.data);
    if (job.received.control) this.settings.pool.give(job.received.control.data);
    job.received = {};
  }

  private progress(jobId: number, progress: EngineProgress): void {
    if (this.state !== "ready") return;
    const base = { type: "progress", jobId, variation: progress.variation, stage: progress.stage, step: progress.step, total: progress.total } as const;
    if (progress.preview && this.socket.bufferedAmount < PREVIEW_BACKLOG_BYTES) {
      const frameId = this.nextFrameId++;
      this.send({ ...base, previewFrameId: frameId });
      this.sendFrame("preview", jobId, frameId, progress.preview);
    } else {
      this.send(base);
    }
  }

  private sendFrame(kind: "result" | "preview" | "control", jobId: number, frameId: number, image: Pixels): void {
    if (this.state !== "ready") return;
    for (const { header, payload } of frameChunks({ kind, jobId, frameId, ...image, bitsPerChannel: 8 }, this.settings.limits.chunkBytes)) {
      // Two messages, the header alone then the pixels: no copy here, and none at the panel to
      // join fragments (which one message of two fragments costs it).
      this.socket.send(header, { binary: true });
      this.socket.send(payload, { binary: true });
    }
  }

  /** `sent` runs once the message, and so everything queued before it, has been written out. */
  private send(message: DaemonMessageInput, sent?: () => void): void {
    if (this.state === "closed") return;
    this.socket.send(JSON.stringify(message), sent && ((error) => !error && sent()));
  }

  private sendError(code: ErrorCode, message: string, jobId?: number): void {
    this.send({ type: "error", code, message, ...(jobId !== undefined ? { jobId } : {}) });
  }

  private refuse(code: ErrorCode, message: string, closeCode: number): void {
    clearTimeout(this.handshakeTimer);
    this.sendError(code, message);
    this.state = "closed";
    this.socket.close(closeCode, code);
  }

  private closed(): void {
    clearTimeout(this.handshakeTimer);
    this.state = "closed";
    for (const pending of this.previewRequests.values()) clearTimeout(pending.frameTimer);
    this.previewRequests.clear();
    for (const jobId of [...this.jobs.keys()]) {
      const job = this.jobs.get(jobId)!;
      if (job.phase === "awaiting-frames") this.dropJob(jobId);
    }
    // Whatever is queued or running for a client that left is wasted work.
    this.settings.queue.cancelOwnedBy(this.settings.id);
    this.frames.discard();
  }
}

/**
 * A timeout that fires after a model call held the main thread may find the awaited message
 * still unread in the socket: decide only after the event loop has read what is pending.
 */
function afterPendingMessages(decide: () => void): () => void {
  return () => setImmediate(decide);
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

type Slot = { ok: true; name: "image" | "mask" | "control" } | { ok: false; message: string };

/** Why a job's control cannot run on this model with the installed ControlNets, in one sentence. */
function checkControl(control: NonNullable<JobRequest["control"]>, model: ModelInfo, controlNets: readonly ControlNetInfo[]): { code: ErrorCode; message: string } | undefined {
  if (!model.control) return { code: "unsupported_mode", message: `The model "${model.name}" cannot follow a control image: use a control-capable model (npx underpaint models pull ${model.sdxl ? "sdxl-control" : "sd-1.5-control"}).` };
  const named = control.controlNet;
  // Unnamed: one of the kind made for the model's family (SD 1.x / 2.x or SDXL).
  const net = named !== undefined ? controlNets.find((c) => c.id === named) : controlNets.find((c) => c.kind === control.kind && Boolean(c.sdxl) === Boolean(model.sdxl));
  if (!net) {
    return named !== undefined
      ? { code: "model_not_found", message: `There is no ControlNet "${named}" (installed: ${controlNets.map((c) => c.id).join(", ") || "none"}).` }
      : { code: "model_not_found", message: `No ${control.kind} ControlNet${model.sdxl ? " for SDXL" : ""} is installed: pull one (npx underpaint models pull controlnet-${model.sdxl ? "sdxl-" : ""}${control.kind}).` };
  }
  if (net.kind !== control.kind) return { code: "invalid_job", message: `The ControlNet "${net.id}" follows ${net.kind}, not ${control.kind}.` };
  return undefined;
}

function expectedSlot(request: JobRequest, header: { frameId: number; kind: string; width: number; height: number; channels: number; bitsPerChannel: number }): Slot {
  const candidates: Array<["image" | "mask" | "control", FrameRef | undefined]> = [["image", request.image], ["mask", request.mask], ["control", request.control?.image]];
  for (const [name, ref] of candidates) {
    if (!ref || ref.frameId !== header.frameId) continue;
    if (header.kind !== name) return { ok: false, message: `Frame ${header.frameId} was declared as the ${name} but arrived as a ${header.kind} frame.` };
    if (ref.width !== header.width || ref.height !== header.height || ref.channels !== header.channels || ref.bitsPerChannel !== header.bitsPerChannel) {
      return {
        ok: false,
        message: `The ${name} arrived as ${header.width}x${header.height}x${header.channels} at ${header.bitsPerChannel} bits, not as declared (${ref.width}x${ref.height}x${ref.channels} at ${ref.bitsPerChannel} bits).`,
      };
    }
    return { ok: true, name };
  }
  return { ok: false, message: `Job ${request.jobId} declared no frame ${header.frameId}.` };
}

