/**
 * The panel's side of the protocol: one WebSocket to the daemon, paired with the token,
 * reconnected with backoff when it drops; jobs submitted with their pixels as chunked binary
 * frames (built in one reused buffer), their progress, previews and results routed back, and
 * every wait bounded by a timeout so that nothing hangs.
 */
import { LIMITS, type Pixels } from "../../../geometry";
import {
  BufferPool,
  DEFAULT_CHUNK_BYTES,
  FrameAssembler,
  FrameChunkReader,
  PROTOCOL_VERSION,
  frameChunks,
  parseDaemonMessage,
  type Capabilities,
  type ClientMessageInput,
  type ControlKind,
  type DaemonMessage,
  type DownloadStatus,
  type ErrorCode,
  type ImageFrame,
  type JobRequestInput,
  type ModelList,
  type Region,
  type Stage,
} from "../../../protocol";
import { PanelError } from "../errors";
import { bytesOf, SOCKET_OPEN, type SocketFactory, type WebSocketLike } from "./socket";

export type ConnectionState =
  /** No token yet: the artist must paste one. */
  | "unpaired"
  | "connecting"
  | "ready"
  /** Disconnected; the next try is scheduled. */
  | "retrying"
  /** The daemon said no (wrong token, other protocol version): retrying would not help. */
  | "refused"
  | "stopped";

export interface ConnectionStatus {
  state: ConnectionState;
  /** A sentence for the artist. */
  message: string;
  retryInMs?: number;
  daemon?: { version: string; device: string };
}

export interface ClientTimeouts {
  /** The socket must open within this. */
  connectMs: number;
  /** welcome must follow hello within this. */
  welcomeMs: number;
  /** Replies to list-models. */
  requestMs: number;
  /** accepted (or an error) must follow a job's pixels within this. */
  acceptMs: number;
  /** A running job must say something (progress, a frame) at least this often. */
  jobIdleMs: number;
  /** done must follow cancel within this; after it the job counts as cancelled anyway. */
  cancelMs: number;
}

export const DEFAULT_TIMEOUTS: ClientTimeouts = {
  connectMs: 5_000,
  welcomeMs: 10_000,
  requestMs: 10_000,
  acceptMs: 60_000,
  // Loading a large model on a slow disk reports nothing for a while.
  jobIdleMs: 300_000,
  cancelMs: 10_000,
};

export interface ClientOptions {
  url: string;
  socketFactory: SocketFactory;
  token?: string;
  clientName?: string;
  clientVersion?: string;
  timeouts?: Partial<ClientTimeouts>;
  backoff?: { initialMs: number; maxMs: number };
}

export interface JobProgress {
  /** Which variation (0-based) this is about. */
  variation: number;
  stage: Stage;
  step: number;
  total: number;
}

export interface JobResult {
  variation: number;
  seed: number;
  /** Where the layer goes, in document pixels after any canvas growth (the image's exact size). */
  region: Region;
  image: ImageFrame;
}

export interface JobOutcome {
  status: "completed" | "cancelled" | "failed";
  error?: { code: ErrorCode | "connection_lost" | "timeout" | "interrupted"; message: string };
  results: JobResult[];
  /** Sentences the artist should read about a finished job (a prompt cut short…). */
  notices?: string[];
}

export interface JobCallbacks {
  onAccepted?(position: number): void;
  onQueue?(position: number): void;
  onProgress?(progress: JobProgress): void;
  onPreview?(preview: ImageFrame): void;
  onResult?(result: JobResult): void;
}

/** What the daemon says about any of this connection's jobs, for views that follow all of them (the queue). */
export type JobEvent =
  | { jobId: number; type: "position"; position: number }
  | { jobId: number; type: "progress"; progress: JobProgress };

export interface JobHandle {
  readonly jobId: number;
  readonly done: Promise<JobOutcome>;
  cancel(): void;
}

/** A job as the panel describes it; its control (when any) without the frame, which submit declares. */
export type JobSettings = Omit<JobRequestInput, "jobId" | "image" | "mask" | "control"> & {
  control?: Omit<NonNullable<JobRequestInput["control"]>, "image">;
};

/** The pixels a job sends: its image, mask and control image, as it needs. */
export interface JobPixels {
  image?: Pixels;
  mask?: Pixels;
  /** The control image (control jobs only). */
  control?: Pixels;
}

interface PendingPreview {
  resolve(image: ImageFrame): void;
  reject(error: PanelError): void;
  frameId?: number;
  timer: ReturnType<typeof setTimeout>;
}

interface ActiveJob {
  jobId: number;
  callbacks: JobCallbacks;
  accepted: boolean;
  cancelRequested: boolean;
  results: JobResult[];
  pendingResults: Map<number, { variation: number; seed: number; region: Region }>;
  timer?: ReturnType<typeof setTimeout>;
  finish(outcome: JobOutcome): void;
}

type Listener<T> = (value: T) => void;

export class ProtocolClient {
  private socket: WebSocketLike | undefined;
  private token: string | undefined;
  private statusValue: ConnectionStatus;
  private capabilitiesValue: Capabilities | undefined;
  private readonly timeouts: ClientTimeouts;
  private readonly backoff: { initialMs: number; maxMs: number };
  private nextDelayMs: number;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private stepTimer: ReturnType<typeof setTimeout> | undefined;
  private lastRefusal: { code: ErrorCode; message: string } | undefined;
  private nextJobId = 1;
  private nextFrameId = 1;
  private readonly jobs = new Map<number, ActiveJob>();
  /** control-preview requests waiting for their answer, by request id (from the job ids). */
  private readonly previews = new Map<number, PendingPreview>();
  private readonly modelWaiters: Array<(list: ModelList) => void> = [];
  /** Result buffers given back by release(), for the next results of the same size. */
  private readonly pool = new BufferPool();
  private assembler = newAssembler(this.pool);
  private chunks = new FrameChunkReader();
  private readonly listeners = {
    status: new Set<Listener<ConnectionStatus>>(),
    models: new Set<Listener<ModelList>>(),
    jobs: new Set<Listener<JobEvent>>(),
    downloads: new Set<Listener<DownloadStatus>>(),
    errors: new Set<Listener<{ code: ErrorCode; message: string }>>(),
  };
  /** The latest word on each model's install, by model id. */
  private readonly downloadsByModel = new Map<string, DownloadStatus>();

  constructor(private readonly options: ClientOptions) {
    this.token = options.token || undefined;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.backoff = options.backoff ?? { initialMs: 500, maxMs: 10_000 };
    this.nextDelayMs = this.backoff.initialMs;
    this.statusValue = this.token
      ? { state: "connecting", message: "Connecting to the Underpaint daemon…" }
      : { state: "unpaired", message: UNPAIRED_MESSAGE };
  }

  get url(): string {
    return this.options.url;
  }

  get status(): ConnectionStatus {
    return this.statusValue;
  }

  get capabilities(): Capabilities | undefined {
    return this.statusValue.state === "ready" ? this.capabilitiesValue : undefined;
  }

  onStatus(listener: Listener<ConnectionStatus>): () => void {
    this.listeners.status.add(listener);
    return () => this.listeners.status.delete(listener);
  }

  /** The models that can run, and the folders that cannot with why; again whenever the daemon's folder changes. */
  onModels(listener: Listener<ModelList>): () => void {
    this.listeners.models.add(listener);
    return () => this.listeners.models.delete(listener);
  }

  /** Positions and progress of every job, as they come (each job's own callbacks get them too). */
  onJobEvent(listener: Listener<JobEvent>): () => void {
    this.listeners.jobs.add(listener);
    return () => this.listeners.jobs.delete(listener);
  }

  /**
   * Model installs as they go (model-download), and on each welcome the pulls the daemon already
   * knows of: running ones and ones stopped part-way that a pull resumes.
   */
  onDownload(listener: Listener<DownloadStatus>): () => void {
    this.listeners.downloads.add(listener);
    return () => this.listeners.downloads.delete(listener);
  }

  /** The latest report of every install heard of on this connection. */
  get downloads(): DownloadStatus[] {
    return [...this.downloadsByModel.values()];
  }

  /** Sentences the daemon sends about no job in particular (a cancel-pull for no running pull…). */
  onDaemonError(listener: Listener<{ code: ErrorCode; message: string }>): () => void {
    this.listeners.errors.add(listener);
    return () => this.listeners.errors.delete(listener);
  }

  /** Installs a model (a registry id, or an owner/name repo); a stopped pull of it resumes. Progress comes to onDownload. */
  pullModel(model: string, revision?: string): void {
    this.requireReady();
    this.send({ type: "pull-model", model, ...(revision ? { revision } : {}) });
  }

  /** Stops a pull (what was downloaded is kept for resuming). */
  cancelPull(model: string): void {
    this.requireReady();
    this.send({ type: "cancel-pull", model });
  }

  /** Starts connecting (when there is a token) and keeps reconnecting until stop(). */
  start(): void {
    if (this.statusValue.state === "stopped") this.statusValue = { state: "connecting", message: "" };
    if (!this.token) return this.setStatus({ state: "unpaired", message: UNPAIRED_MESSAGE });
    if (this.socket || this.retryTimer) return;
    this.connect();
  }

  /** A new token (pasted by the artist): reconnects with it at once. */
  setToken(token: string): void {
    this.token = token.trim() || undefined;
    this.lastRefusal = undefined;
    this.dropSocket();
    this.clearRetry();
    this.nextDelayMs = this.backoff.initialMs;
    if (this.statusValue.state === "stopped") return;
    this.start();
  }

  stop(): void {
    this.clearRetry();
    this.dropSocket();
    this.failAll("connection_lost", "The panel closed its connection to the daemon.");
    this.setStatus({ state: "stopped", message: "Disconnected." });
  }

  /** Resolves once paired; rejects with the status sentence if that does not happen in time. */
  whenReady(timeoutMs = this.timeouts.connectMs + this.timeouts.welcomeMs): Promise<Capabilities> {
    if (this.capabilities) return Promise.resolve(this.capabilities);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new PanelError(this.statusValue.message || "The daemon did not answer in time.", "not_connected"));
      }, timeoutMs);
      const off = this.onStatus((status) => {
        if (status.state === "ready" && this.capabilitiesValue) {
          clearTimeout(timer);
          off();
          resolve(this.capabilitiesValue);
        } else if (status.state === "refused" || status.state === "unpaired" || status.state === "stopped") {
          clearTimeout(timer);
          off();
          reject(new PanelError(status.message, "not_connected"));
        }
      });
    });
  }

  /** Asks the daemon for its models again (it also pushes them when the folder changes). */
  listModels(): Promise<ModelList> {
    this.requireReady();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.modelWaiters.indexOf(waiter);
        if (index >= 0) this.modelWaiters.splice(index, 1);
        reject(new PanelError("The daemon did not send its model list in time.", "timeout"));
      }, this.timeouts.requestMs);
      const waiter = (list: ModelList) => {
        clearTimeout(timer);
        resolve(list);
      };
      this.modelWaiters.push(waiter);
      this.send({ type: "list-models" });
    });
  }

  /**
   * The control image a ControlNet of `kind` would follow, made by the daemon from `image` (the
   * layer's pixels) exactly as a job's is: RGB at the image's size. Rejects when the daemon cannot
   * make one (an older daemon: code "unsupported").
   */
  controlPreview(kind: ControlKind, image: Pixels): Promise<ImageFrame> {
    const capabilities = this.requireReady();
    if (!capabilities.controlPreview) {
      return Promise.reject(new PanelError("This daemon cannot show control images; update it.", "unsupported"));
    }
    const requestId = this.takeJobId();
    const ref = this.refOf(image);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.previews.delete(requestId);
        this.assembler.discard(requestId);
        reject(new PanelError("The daemon did not send the control image in time.", "timeout"));
      }, this.timeouts.requestMs);
      this.previews.set(requestId, { resolve, reject, timer });
      this.send({ type: "control-preview", requestId, kind, image: ref });
      this.sendFrame({ kind: "control", jobId: requestId, ...ref, data: image.data }, capabilities.limits.chunkBytes || DEFAULT_CHUNK_BYTES);
    });
  }

  private takeJobId(): number {
    const jobId = this.nextJobId;
    this.nextJobId = this.nextJobId >= 0xffffffff ? 1 : this.nextJobId + 1;
    return jobId;
  }

  private refOf(p: Pixels): { frameId: number; width: number; height: number; channels: 1 | 3 | 4; bitsPerChannel: 8 } {
    return { frameId: this.nextFrameId++, width: p.width, height: p.height, channels: p.channels, bitsPerChannel: 8 };
  }

  /** Sends a job and its pixels; the handle's promise settles with exactly one outcome. */
  submit(settings: JobSettings, pixels: JobPixels, callbacks: JobCallbacks = {}): JobHandle {
    const capabilities = this.requireReady();
    const jobId = this.takeJobId();
    const imageRef = pixels.image ? this.refOf(pixels.image) : undefined;
    const maskRef = pixels.mask ? this.refOf(pixels.mask) : undefined;
    if (settings.control && !pixels.control) throw new PanelError("A control job needs its control image.", "invalid_job");
    const controlRef = settings.control && pixels.control ? this.refOf(pixels.control) : undefined;

    let finish!: (outcome: JobOutcome) => void;
    const done = new Promise<JobOutcome>((resolve) => {
      finish = resolve;
    });
    const job: ActiveJob = {
      jobId,
      callbacks,
      accepted: false,
      cancelRequested: false,
      results: [],
      pendingResults: new Map(),
      finish: (outcome) => {
        if (!this.jobs.has(jobId)) return;
        clearTimeout(job.timer);
        this.jobs.delete(jobId);
        this.assembler.discard(jobId);
        finish(outcome);
      },
    };
    this.jobs.set(jobId, job);

    const { control, ...plain } = settings;
    this.send({
      type: "submit",
      job: {
        ...plain,
        jobId,
        ...(imageRef ? { image: imageRef } : {}),
        ...(maskRef ? { mask: maskRef } : {}),
        ...(control && controlRef ? { control: { ...control, image: controlRef } } : {}),
      },
    });
    const chunkBytes = capabilities.limits.chunkBytes || DEFAULT_CHUNK_BYTES;
    if (pixels.image && imageRef) this.sendFrame({ kind: "image", jobId, ...imageRef, data: pixels.image.data }, chunkBytes);
    if (pixels.mask && maskRef) this.sendFrame({ kind: "mask", jobId, ...maskRef, data: pixels.mask.data }, chunkBytes);
    if (pixels.control && controlRef) this.sendFrame({ kind: "control", jobId, ...controlRef, data: pixels.control.data }, chunkBytes);
    this.watch(job, this.timeouts.acceptMs, "The daemon did not take the job in time; it may be overloaded. Try again.");

    return {
      jobId,
      done,
      cancel: () => this.cancel(jobId),
    };
  }

  /** Stops a job in any state; its outcome becomes "cancelled" (or whatever came first). */
  cancel(jobId: number): void {
    const job = this.jobs.get(jobId);
    if (!job || job.cancelRequested) return;
    job.cancelRequested = true;
    if (this.socket?.readyState === SOCKET_OPEN && this.statusValue.state === "ready") {
      this.send({ type: "cancel", jobId });
      clearTimeout(job.timer);
      job.timer = setTimeout(() => job.finish({ status: "cancelled", results: [] }), this.timeouts.cancelMs);
    } else {
      job.finish({ status: "cancelled", results: [] });
    }
  }

  /**
   * Gives results' pixels back once nothing reads them any more (the layers are placed): later
   * results of the same size arrive in memory already touched, not fresh pages. Results are
   * never reused before this; giving the same result twice changes nothing.
   */
  release(results: readonly JobResult[]): void {
    for (const result of results) this.pool.give(result.image.data);
  }

  get activeJobs(): number {
    return this.jobs.size;
  }

  // ---- connection ----

  private connect(): void {
    this.clearRetry();
    const token = this.token;
    if (!token) return this.setStatus({ state: "unpaired", message: UNPAIRED_MESSAGE });
    this.setStatus({ state: "connecting", message: `Connecting to the Underpaint daemon at ${this.options.url}…` });
    let socket: WebSocketLike;
    try {
      socket = this.options.socketFactory(this.options.url);
    } catch (error) {
      return this.scheduleRetry(unreachable(this.options.url, error));
    }
    this.socket = socket;
    this.assembler = newAssembler(this.pool);
    this.chunks = new FrameChunkReader();
    socket.binaryType = "arraybuffer";
    let opened = false;
    this.stepTimer = setTimeout(() => {
      if (this.socket !== socket) return;
      this.dropSocket();
      this.scheduleRetry(opened ? "The daemon accepted the connection but did not answer the pairing in time." : unreachable(this.options.url));
    }, this.timeouts.connectMs);

    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      clearTimeout(this.stepTimer);
      this.stepTimer = setTimeout(() => {
        if (this.socket !== socket) return;
        this.dropSocket();
        this.scheduleRetry("The daemon accepted the connection but did not answer the pairing in time.");
      }, this.timeouts.welcomeMs);
      this.send({ type: "hello", protocol: PROTOCOL_VERSION, client: { name: this.options.clientName ?? "underpaint-panel", version: this.options.clientVersion ?? "0.0.0" }, token });
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      if (typeof event.data === "string") this.receiveText(event.data);
      else {
        const bytes = bytesOf(event.data);
        if (bytes) this.receiveBinary(bytes);
      }
    };
    socket.onerror = () => {
      // onclose follows with the code; nothing to add here.
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      clearTimeout(this.stepTimer);
      this.closed(event.code, opened);
    };
  }

  private closed(code: number, opened: boolean): void {
    const wasReady = this.statusValue.state === "ready";
    this.failAll("connection_lost", "The connection to the daemon was lost during the generation; nothing was changed in your document.");
    if (code === 4001 || this.lastRefusal?.code === "bad_token") {
      return this.setStatus({
        state: "refused",
        message: this.lastRefusal?.message ?? "The pairing token is wrong: run `npx underpaint token` and paste it here.",
      });
    }
    if (code === 4002 || this.lastRefusal?.code === "protocol_mismatch") {
      return this.setStatus({ state: "refused", message: this.lastRefusal?.message ?? "The panel and the daemon speak different protocol versions: update whichever is older." });
    }
    if (code === 1001 && wasReady) return this.scheduleRetry("The daemon is shutting down.");
    if (wasReady) return this.scheduleRetry("The connection to the daemon was lost.");
    if (!opened) return this.scheduleRetry(unreachable(this.options.url));
    this.scheduleRetry(this.lastRefusal?.message ?? "The daemon closed the connection.");
  }

  private scheduleRetry(reason: string): void {
    if (this.statusValue.state === "stopped") return;
    this.clearRetry();
    const delay = this.nextDelayMs;
    this.nextDelayMs = Math.min(this.backoff.maxMs, this.nextDelayMs * 2);
    const seconds = Math.max(1, Math.round(delay / 1000));
    this.setStatus({ state: "retrying", message: `${reason} Trying again in ${seconds} s.`, retryInMs: delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, delay);
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private dropSocket(): void {
    const socket = this.socket;
    this.socket = undefined;
    clearTimeout(this.stepTimer);
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
    try {
      socket.close(1000, "panel closing");
    } catch {
      // already closed
    }
    this.failAll("connection_lost", "The connection to the daemon was lost during the generation; nothing was changed in your document.");
  }

  private setStatus(status: ConnectionStatus): void {
    this.statusValue = status;
    for (const listener of [...this.listeners.status]) listener(status);
  }

  private requireReady(): Capabilities {
    const capabilities = this.capabilities;
    if (!capabilities || this.socket?.readyState !== SOCKET_OPEN) {
      throw new PanelError(this.statusValue.state === "ready" ? "Not connected to the daemon." : this.statusValue.message, "not_connected");
    }
    return capabilities;
  }

  private send(message: ClientMessageInput): void {
    this.socket?.send(JSON.stringify(message));
  }

  /**
   * Each chunk goes as two messages, its 40-byte header and then a view of its pixels, which the
   * daemon pairs (and unmasks straight into the image): the pixels are never copied here.
   */
  private sendFrame(frame: ImageFrame, chunkBytes: number): void {
    const socket = this.socket;
    if (!socket) return;
    for (const { header, payload } of frameChunks(frame, chunkBytes)) {
      socket.send(header);
      if (payload.byteLength > 0) socket.send(payload);
    }
  }

  // ---- receiving ----

  private receiveText(text: string): void {
    const announced = this.chunks.awaiting;
    if (announced) {
      this.chunks.reset();
      this.jobs.get(announced.jobId)?.finish({ status: "failed", error: { code: "frame_invalid", message: "The daemon sent broken pixels: a message came between a chunk header and its pixels." }, results: [] });
    }
    const parsed = parseDaemonMessage(text);
    if (!parsed.ok) {
      console.warn(`underpaint: ignored a message from the daemon: ${parsed.message}`);
      return;
    }
    this.dispatch(parsed.message);
  }

  private dispatch(message: DaemonMessage): void {
    switch (message.type) {
      case "welcome": {
        clearTimeout(this.stepTimer);
        this.capabilitiesValue = message.capabilities;
        this.nextDelayMs = this.backoff.initialMs;
        this.lastRefusal = undefined;
        const { device } = message.capabilities;
        this.setStatus({
          state: "ready",
          message: `Connected to the Underpaint daemon ${message.daemon.version} on ${device.description}.`,
          daemon: { version: message.daemon.version, device: device.description },
        });
        this.emitModels({ models: message.capabilities.models, unavailable: message.capabilities.unavailable });
        this.downloadsByModel.clear();
        for (const download of message.capabilities.downloads) this.emitDownload(download);
        return;
      }
      case "model-download": {
        const { type: _type, ...status } = message;
        this.emitDownload(status);
        return;
      }
      case "models": {
        const list = {
          models: message.models,
          unavailable: message.unavailable,
          ...(message.previewDecoder !== undefined ? { previewDecoder: message.previewDecoder } : {}),
          ...(message.controlNets !== undefined ? { controlNets: message.controlNets } : {}),
          ...(message.depthEstimator !== undefined ? { depthEstimator: message.depthEstimator } : {}),
          ...(message.poseEstimator !== undefined ? { poseEstimator: message.poseEstimator } : {}),
        };
        if (this.capabilitiesValue) this.capabilitiesValue = { ...this.capabilitiesValue, ...list };
        for (const waiter of this.modelWaiters.splice(0)) waiter(list);
        this.emitModels(list);
        return;
      }
      case "control-preview": {
        const pending = this.previews.get(message.requestId);
        if (pending) pending.frameId = message.frame.frameId;
        return;
      }
      case "error": {
        const preview = message.jobId !== undefined ? this.previews.get(message.jobId) : undefined;
        if (preview) {
          this.previews.delete(message.jobId!);
          clearTimeout(preview.timer);
          preview.reject(new PanelError(message.message, message.code));
          return;
        }
        if (message.jobId !== undefined && this.jobs.has(message.jobId)) {
          const job = this.jobs.get(message.jobId)!;
          if (job.cancelRequested) job.finish({ status: "cancelled", results: [] });
          else job.finish({ status: "failed", error: { code: message.code, message: message.message }, results: [] });
          return;
        }
        if (this.statusValue.state !== "ready") this.lastRefusal = { code: message.code, message: message.message };
        else if (this.listeners.errors.size > 0) for (const listener of [...this.listeners.errors]) listener({ code: message.code, message: message.message });
        else console.warn(`underpaint: the daemon said: ${message.message}`);
        return;
      }
      case "accepted": {
        const job = this.jobs.get(message.jobId);
        if (!job) return;
        job.accepted = true;
        if (!job.cancelRequested) this.watch(job, this.timeouts.jobIdleMs, IDLE_MESSAGE);
        job.callbacks.onAccepted?.(message.position);
        this.emitJobEvent({ jobId: job.jobId, type: "position", position: message.position });
        return;
      }
      case "queue": {
        const job = this.jobs.get(message.jobId);
        if (!job) return;
        this.touch(job);
        job.callbacks.onQueue?.(message.position);
        this.emitJobEvent({ jobId: job.jobId, type: "position", position: message.position });
        return;
      }
      case "progress": {
        const job = this.jobs.get(message.jobId);
        if (!job) return;
        this.touch(job);
        const progress = { variation: message.variation, stage: message.stage, step: message.step, total: message.total };
        job.callbacks.onProgress?.(progress);
        this.emitJobEvent({ jobId: job.jobId, type: "progress", progress });
        return;
      }
      case "result": {
        const job = this.jobs.get(message.jobId);
        if (!job) return;
        this.touch(job);
        job.pendingResults.set(message.frame.frameId, { variation: message.variation, seed: message.seed, region: message.region });
        return;
      }
      case "done": {
        const job = this.jobs.get(message.jobId);
        if (!job) return;
        if (message.status === "completed" && job.pendingResults.size > 0) {
          job.finish({ status: "failed", error: { code: "frame_invalid", message: "The daemon finished before sending every result's pixels." }, results: [] });
          return;
        }
        if (message.status === "cancelled" && !job.cancelRequested) {
          // Cancelled by the daemon itself (shutting down): for the artist, a failure.
          job.finish({ status: "failed", error: { code: "interrupted", message: "The daemon stopped this generation before it finished (was it shut down?); nothing was changed in your document." }, results: [] });
          return;
        }
        job.finish({
          status: message.status,
          ...(message.error ? { error: message.error } : {}),
          ...(message.notices?.length ? { notices: message.notices } : {}),
          results: message.status === "completed" ? job.results.sort((a, b) => a.variation - b.variation) : [],
        });
        return;
      }
    }
  }

  private receiveBinary(bytes: Uint8Array): void {
    let frame: ImageFrame | undefined;
    let jobId = this.chunks.awaiting?.jobId;
    try {
      const chunk = this.chunks.read(bytes);
      if (!chunk) return;
      const { header, payload } = chunk;
      jobId = header.jobId;
      if (!this.jobs.has(jobId) && !this.previews.has(jobId)) return;
      frame = this.assembler.add(header, payload);
    } catch (error) {
      const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
      const message = error instanceof Error ? error.message : String(error);
      if (job) job.finish({ status: "failed", error: { code: "frame_invalid", message: `The daemon sent broken pixels: ${message}` }, results: [] });
      return;
    }
    const preview = this.previews.get(jobId);
    if (preview) {
      if (!frame) return;
      if (frame.kind !== "control" || frame.frameId !== preview.frameId) return;
      this.previews.delete(jobId);
      clearTimeout(preview.timer);
      // Its own copy: the assembler's buffers are pooled for results.
      preview.resolve({ ...frame, data: frame.data.slice() });
      return;
    }
    const job = this.jobs.get(jobId);
    if (!job) return;
    this.touch(job);
    if (!frame) return;
    if (frame.kind === "preview") {
      job.callbacks.onPreview?.(frame);
    } else if (frame.kind === "result") {
      const meta = job.pendingResults.get(frame.frameId);
      if (!meta) return;
      job.pendingResults.delete(frame.frameId);
      // A frame is a view of its own socket message (one chunk) or a pooled buffer no one else holds until release().
      const result: JobResult = { ...meta, image: frame };
      job.results.push(result);
      job.callbacks.onResult?.(result);
    }
  }

  private emitModels(list: ModelList): void {
    for (const listener of [...this.listeners.models]) listener(list);
  }

  private emitDownload(status: DownloadStatus): void {
    this.downloadsByModel.set(status.model, status);
    for (const listener of [...this.listeners.downloads]) listener(status);
  }

  private emitJobEvent(event: JobEvent): void {
    for (const listener of [...this.listeners.jobs]) listener(event);
  }

  /** (Re)arms a job's timeout: when it fires the job fails with `message` and is cancelled. */
  private watch(job: ActiveJob, ms: number, message: string): void {
    clearTimeout(job.timer);
    job.timer = setTimeout(() => {
      if (this.socket?.readyState === SOCKET_OPEN) this.send({ type: "cancel", jobId: job.jobId });
      job.finish({ status: "failed", error: { code: "timeout", message }, results: [] });
    }, ms);
  }

  private touch(job: ActiveJob): void {
    if (job.accepted && !job.cancelRequested) this.watch(job, this.timeouts.jobIdleMs, IDLE_MESSAGE);
  }

  private failAll(code: "connection_lost", message: string): void {
    for (const [id, preview] of [...this.previews]) {
      this.previews.delete(id);
      clearTimeout(preview.timer);
      preview.reject(new PanelError(message.replace(" during the generation; nothing was changed in your document", ""), code));
    }
    for (const job of [...this.jobs.values()]) {
      job.finish(job.cancelRequested ? { status: "cancelled", results: [] } : { status: "failed", error: { code, message }, results: [] });
    }
  }
}

const UNPAIRED_MESSAGE = "Paste the pairing token: run `npx underpaint token` in a terminal and copy what it prints.";
const IDLE_MESSAGE = "The daemon stopped reporting on this generation; it was cancelled. Check the daemon's window for errors.";

function unreachable(url: string, error?: unknown): string {
  const detail = error instanceof Error && error.message ? ` (${error.message})` : "";
  return `Cannot reach the Underpaint daemon at ${url}${detail}. Start it with \`npx underpaint serve\` (or \`npm start\`).`;
}

function newAssembler(pool: BufferPool): FrameAssembler {
  // Results are RGBA at the document's size; the daemon's own limits bound them.
  return new FrameAssembler({ maxFrameBytes: LIMITS.maxImagePixels * 4, maxPendingFrames: 16 }, pool);
}
