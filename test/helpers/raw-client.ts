/**
 * A bare protocol client for daemon tests: a real ws connection that records every message and
 * reassembles frames, with helpers to wait for what a test expects.
 */
import WebSocket from "ws";
import {
  FrameAssembler,
  FrameChunkReader,
  PROTOCOL_VERSION,
  encodeFrame,
  frameChunks,
  parseDaemonMessage,
  type ClientMessageInput,
  type DaemonMessage,
  type ImageFrame,
  type JobRequestInput,
} from "../../protocol";

export class RawClient {
  readonly messages: DaemonMessage[] = [];
  readonly frames = new Map<string, ImageFrame>();
  closeCode: number | undefined;
  private readonly assembler = new FrameAssembler({ maxFrameBytes: 2 ** 31, maxPendingFrames: 64 });
  private readonly chunks = new FrameChunkReader();
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: WebSocket) {
    socket.on("message", (data, isBinary) => {
      const bytes = data instanceof Buffer ? data : Buffer.concat(data as Buffer[]);
      if (isBinary) {
        const chunk = this.chunks.read(bytes);
        const frame = chunk && this.assembler.add(chunk.header, chunk.payload);
        if (frame) this.frames.set(`${frame.jobId}:${frame.frameId}`, frame);
      } else {
        const parsed = parseDaemonMessage(bytes.toString("utf8"));
        if (!parsed.ok) throw new Error(`daemon sent an invalid message: ${parsed.message}`);
        this.messages.push(parsed.message);
      }
      this.wake();
    });
    socket.on("close", (code) => {
      this.closeCode = code;
      this.wake();
    });
  }

  static async open(url: string, options: WebSocket.ClientOptions = {}): Promise<RawClient> {
    const socket = new WebSocket(url, { perMessageDeflate: false, ...options });
    const client = new RawClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    return client;
  }

  static async paired(url: string, token: string): Promise<RawClient> {
    const client = await RawClient.open(url);
    client.hello(token);
    await client.next("welcome");
    return client;
  }

  hello(token: string, protocol = PROTOCOL_VERSION): void {
    this.send({ type: "hello", protocol, client: { name: "test", version: "1" }, token });
  }

  send(message: ClientMessageInput | Record<string, unknown>): void {
    this.socket.send(JSON.stringify(message));
  }

  sendRaw(data: string | Uint8Array): void {
    this.socket.send(data);
  }

  submit(job: JobRequestInput): void {
    this.send({ type: "submit", job });
  }

  /** In one-message chunks, or (`pairs`) as the panel sends them: each header alone, then its pixels. */
  sendImage(frame: ImageFrame, chunkBytes?: number, form: "one-message" | "pairs" = "one-message"): void {
    if (form === "one-message") {
      for (const chunk of encodeFrame(frame, chunkBytes)) this.socket.send(chunk);
      return;
    }
    for (const { header, payload } of frameChunks(frame, chunkBytes)) {
      this.socket.send(header);
      this.socket.send(payload);
    }
  }

  /** Resolves with the first recorded message (from `from` on) that matches. */
  async next<T extends DaemonMessage["type"]>(
    type: T,
    match: (m: Extract<DaemonMessage, { type: T }>) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<Extract<DaemonMessage, { type: T }>> {
    const found = () =>
      this.messages.find((m): m is Extract<DaemonMessage, { type: T }> => m.type === type && match(m as Extract<DaemonMessage, { type: T }>));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = found();
      if (message) return message;
      if (this.closeCode !== undefined) throw new Error(`connection closed (${this.closeCode}) while waiting for ${type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${type}; got ${this.messages.map((m) => m.type).join(", ")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async closed(timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.closeCode === undefined) {
      if (Date.now() > deadline) throw new Error("connection did not close");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.closeCode;
  }

  ofType<T extends DaemonMessage["type"]>(type: T): Array<Extract<DaemonMessage, { type: T }>> {
    return this.messages.filter((m): m is Extract<DaemonMessage, { type: T }> => m.type === type);
  }

  close(): void {
    this.socket.close();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** A small txt2img job on a 64x64 canvas; its prompt names the job, as the engine never sees job ids. */
export function txt2imgJob(jobId: number, overrides: Partial<JobRequestInput> = {}): JobRequestInput {
  return {
    jobId,
    mode: "txt2img",
    model: "test-model",
    prompt: `job ${jobId}`,
    seed: 42,
    steps: 3,
    guidance: 7.5,
    scheduler: "euler",
    canvas: { width: 64, height: 64 },
    ...overrides,
  };
}
