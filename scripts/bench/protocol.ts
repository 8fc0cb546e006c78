/**
 * Moving a 4096x4096 RGBA layer to the daemon and back over loopback: our binary frames vs the
 * base64-PNG-in-JSON that existing Photoshop SD plugins use, and vs a plain TCP socket (the ceiling).
 * The far end runs in another process, as the daemon does.
 */
import { fork, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import WebSocket from "ws";
import { BufferPool, DEFAULT_CHUNK_BYTES, FRAME_HEADER_BYTES, FrameAssembler, PROTOCOL_VERSION, encodeFrame, parseDaemonMessage, readFrameChunk, type DaemonMessage, type ImageFrame } from "../../protocol";
import { bestOf, fmtMs, fmtRate, printSection, timeIt, type Figures } from "./report";

const here = path.dirname(fileURLToPath(import.meta.url));

async function startPeer(...args: string[]): Promise<{ port: number; child: ChildProcess }> {
  const child = fork(path.join(here, "loopback-peer.ts"), args, { execArgv: ["--import", "tsx"], stdio: "inherit" });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m) => resolve((m as { port: number }).port));
    child.once("exit", (code) => reject(new Error(`bench peer exited with ${code}`)));
  });
  return { port, child };
}

async function loadLayer(fixtures: string, size: number): Promise<Uint8Array> {
  const data = await sharp(path.join(fixtures, "images", "coffee.png")).resize(size, size, { fit: "fill" }).ensureAlpha().raw().toBuffer();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

async function benchTcp(pixels: Uint8Array, runs: number): Promise<number> {
  const { port, child } = await startPeer("tcp", String(pixels.byteLength));
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  const ms = await bestOf(runs, async () => {
    const ack = new Promise<void>((resolve) => socket.once("data", () => resolve()));
    socket.write(pixels);
    await ack;
  });
  socket.destroy();
  child.disconnect();
  return ms;
}

class PanelLikeClient {
  private listener: ((m: DaemonMessage) => void) | undefined;
  // The panel reuses its buffers as the daemon does: same-sized documents come back again and again.
  readonly pool = new BufferPool();
  private readonly frames = new FrameAssembler({ maxFrameBytes: 2 ** 31, maxPendingFrames: 4 }, this.pool);
  lastFrame: ImageFrame | undefined;
  private jobId = 0;
  private readonly scratch = new Uint8Array(DEFAULT_CHUNK_BYTES + FRAME_HEADER_BYTES);

  constructor(private readonly ws: WebSocket) {
    ws.on("message", (data, isBinary) => {
      const bytes = data as Buffer;
      if (isBinary) {
        const { header, payload } = readFrameChunk(bytes);
        this.lastFrame = this.frames.add(header, payload) ?? this.lastFrame;
        return;
      }
      const parsed = parseDaemonMessage(bytes.toString("utf8"));
      if (parsed.ok) this.listener?.(parsed.message);
    });
  }

  until(type: DaemonMessage["type"]): Promise<DaemonMessage> {
    return new Promise((resolve, reject) => {
      this.listener = (m) => {
        if (m.type === type) resolve(m);
        else if (m.type === "error" || (m.type === "done" && m.status !== "completed")) reject(new Error(JSON.stringify(m)));
      };
    });
  }

  /** Sends an img2img job and its layer: JSON first, then the pixels in chunks. */
  submit(pixels: Uint8Array, size: number): void {
    const jobId = ++this.jobId;
    const image = { frameId: 1, width: size, height: size, channels: 4 as const };
    this.ws.send(
      JSON.stringify({
        type: "submit",
        job: { jobId, mode: "img2img", model: "echo", prompt: "", seed: 1, steps: 1, guidance: 1, scheduler: "euler", canvas: { width: size, height: size }, previews: false, image },
      }),
    );
    // As the panel sends: one whole message per chunk, built in one reused buffer (the browser-style
    // WebSocket, like ws when it masks, copies the bytes before send returns).
    for (const message of encodeFrame({ kind: "image", jobId, ...image, bitsPerChannel: 8, data: pixels }, DEFAULT_CHUNK_BYTES, this.scratch)) {
      this.ws.send(message);
    }
  }
}

async function benchFrames(pixels: Uint8Array, size: number, runs: number): Promise<{ oneWayMs: number; roundTripMs: number }> {
  const token = "b".repeat(40);
  const { port, child } = await startPeer("daemon", token);
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: 2 ** 30 });
  await new Promise<void>((resolve) => ws.once("open", () => resolve()));
  const client = new PanelLikeClient(ws);
  const welcome = client.until("welcome");
  ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, client: { name: "bench", version: "1" }, token }));
  await welcome;
  const roundTrip = async () => {
    const done = client.until("done");
    client.submit(pixels, size);
    await done;
    if (client.lastFrame?.data.byteLength !== pixels.byteLength) throw new Error("the image did not come back whole");
    client.pool.give(client.lastFrame.data);
  };
  await roundTrip(); // warm-up
  // One way: the daemon answers "accepted" once the last byte of the layer is in.
  let oneWayMs = Infinity;
  for (let i = 0; i < runs; i++) {
    const ms = await timeIt(async () => {
      const accepted = client.until("accepted");
      client.submit(pixels, size);
      await accepted;
    });
    oneWayMs = Math.min(oneWayMs, ms);
    await client.until("done");
  }
  const roundTripMs = await bestOf(runs, roundTrip);
  ws.close();
  child.disconnect();
  return { oneWayMs, roundTripMs };
}

async function benchBase64Png(pixels: Uint8Array, size: number, runs: number): Promise<number> {
  const { port, child } = await startPeer("base64");
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: 2 ** 30 });
  await new Promise<void>((resolve) => ws.once("open", () => resolve()));
  const ms = await bestOf(runs, async () => {
    const png = await sharp(pixels, { raw: { width: size, height: size, channels: 4 } }).png().toBuffer();
    const reply = new Promise<string>((resolve) => ws.once("message", (data) => resolve(data.toString())));
    ws.send(JSON.stringify({ init_images: [png.toString("base64")], width: size, height: size }));
    const { images } = JSON.parse(await reply) as { images: string[] };
    const raw = await sharp(Buffer.from(images[0]!, "base64")).raw().toBuffer();
    if (raw.byteLength !== pixels.byteLength) throw new Error("base64 round trip lost pixels");
  });
  ws.close();
  child.disconnect();
  return ms;
}

export async function benchProtocol(fixtures: string, options: { size: number; runs: number }): Promise<Figures> {
  const { size, runs } = options;
  const pixels = await loadLayer(fixtures, size);
  const bytes = pixels.byteLength;
  const tcpMs = await benchTcp(pixels, runs);
  const frames = await benchFrames(pixels, size, runs);
  const pngMs = await benchBase64Png(pixels, size, Math.min(runs, 2));
  const speedup = pngMs / frames.roundTripMs;
  const fractionOfTcp = tcpMs / frames.oneWayMs;
  printSection(`Protocol: a ${size}x${size} RGBA 8-bit layer (${(bytes / 2 ** 20).toFixed(0)} MiB) over loopback, daemon in another process`, [
    { what: "plain TCP, one way", value: `${fmtMs(tcpMs)}  ${fmtRate(bytes, tcpMs)}`, note: "the ceiling" },
    { what: "binary frames, one way", value: `${fmtMs(frames.oneWayMs)}  ${fmtRate(bytes, frames.oneWayMs)}` },
    { what: "binary frames, round trip", value: fmtMs(frames.roundTripMs) },
    { what: "base64 PNG in JSON, round trip", value: fmtMs(pngMs) },
    { what: "speed-up vs base64 PNG", value: `${speedup.toFixed(1)}x`, note: "target >= 10x" },
    { what: "one-way throughput vs TCP", value: `${(fractionOfTcp * 100).toFixed(0)}%`, note: "target >= 70%" },
  ]);
  return {
    "protocol.imageBytes": bytes,
    "protocol.tcpOneWayMs": tcpMs,
    "protocol.binaryOneWayMs": frames.oneWayMs,
    "protocol.binaryRoundTripMs": frames.roundTripMs,
    "protocol.base64PngRoundTripMs": pngMs,
    "protocol.speedupVsBase64Png": speedup,
    "protocol.fractionOfTcp": fractionOfTcp,
  };
}
