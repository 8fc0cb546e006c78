/**
 * Moving a 4096x4096 RGBA layer to the daemon and back over loopback: our binary frames vs the
 * base64-PNG-in-JSON that existing Photoshop SD plugins use, and vs a plain TCP socket (the ceiling),
 * each direction on its own. The frames go through the panel's own client (over ws, in the
 * browser's shape) and the daemon's own server, which runs in another process as it does in use.
 */
import { fork, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import WebSocket from "ws";
import { ProtocolClient } from "../../plugin/src/client/client";
import type { WebSocketLike } from "../../plugin/src/client/socket";
import { PROTOCOL_VERSION, frameChunks } from "../../protocol";
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

/** Plain TCP, the ceiling in each direction: a layer written whole, counted at the far end. */
async function benchTcp(pixels: Uint8Array, runs: number): Promise<{ uploadMs: number; downloadMs: number }> {
  const { port, child } = await startPeer("tcp", String(pixels.byteLength));
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => socket.once("connect", resolve));
  const uploadMs = await bestOf(runs, async () => {
    const ack = new Promise<void>((resolve) => socket.once("data", () => resolve()));
    socket.write(pixels);
    await ack;
  });
  const downloadMs = await bestOf(runs, async () => {
    const whole = new Promise<void>((resolve) => {
      let received = 0;
      const count = (chunk: Buffer) => {
        received += chunk.byteLength;
        if (received < pixels.byteLength) return;
        socket.off("data", count);
        resolve();
      };
      socket.on("data", count);
    });
    socket.write("g");
    await whole;
  });
  socket.destroy();
  child.disconnect();
  return { uploadMs, downloadMs };
}

/** The panel's own client (plugin/src/client) over ws in the browser's shape, as the panel tests use it. */
function panelSocket(url: string): WebSocketLike {
  return new WebSocket(url, { perMessageDeflate: false }) as unknown as WebSocketLike;
}

interface FrameFigures {
  /** Panel to daemon: submit until the daemon says accepted (sent once the layer's last byte is in). */
  uploadMs: number;
  /** Daemon to panel: accepted until the result is whole at the panel (the echo engine costs nothing). */
  downloadMs: number;
  roundTripMs: number;
}

async function benchFrames(pixels: Uint8Array, size: number, runs: number): Promise<FrameFigures> {
  const token = "b".repeat(40);
  const { port, child } = await startPeer("daemon", token);
  const client = new ProtocolClient({ url: `ws://127.0.0.1:${port}`, socketFactory: panelSocket, token, clientName: "bench" });
  client.start();
  await client.whenReady();
  const image = { width: size, height: size, channels: 4 as const, data: pixels };
  const settings = { mode: "img2img", model: "echo", prompt: "", seed: 1, steps: 1, guidance: 1, scheduler: "euler", canvas: { width: size, height: size }, previews: false } as const;
  const oneJob = async () => {
    const start = performance.now();
    let acceptedAt = NaN;
    const handle = client.submit(settings, { image }, { onAccepted: () => (acceptedAt = performance.now()) });
    const outcome = await handle.done;
    const end = performance.now();
    if (outcome.status !== "completed") throw new Error(`the echo job ended ${outcome.status}: ${outcome.error?.message ?? ""}`);
    if (outcome.results[0]?.image.data.byteLength !== pixels.byteLength) throw new Error("the image did not come back whole");
    // As the panel does once the layers are placed (operations/run.ts).
    client.release(outcome.results);
    return { uploadMs: acceptedAt - start, downloadMs: end - acceptedAt, roundTripMs: end - start };
  };
  await oneJob(); // warm-up
  const best: FrameFigures = { uploadMs: Infinity, downloadMs: Infinity, roundTripMs: Infinity };
  for (let i = 0; i < runs; i++) {
    const job = await oneJob();
    for (const key of ["uploadMs", "downloadMs", "roundTripMs"] as const) best[key] = Math.min(best[key], job[key]);
  }
  client.stop();
  child.disconnect();
  return best;
}

/** ws's own frame writer (untyped in @types/ws): masks with a fresh key, as every client must. */
const { Sender } = createRequire(import.meta.url)("ws") as {
  Sender: { frame(data: Buffer, options: { fin: boolean; opcode: number; mask: boolean; readOnly: boolean; rsv1: boolean }): Buffer[] };
};

function maskedFrame(data: Uint8Array | string, opcode: 1 | 2): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : Buffer.from(data); // a copy: ws masks it in place
  return Buffer.concat(Sender.frame(bytes, { fin: true, opcode, mask: true, readOnly: false, rsv1: false }));
}

/**
 * The daemon's side alone: the same submit and header-then-pixels chunks the panel sends, masked
 * beforehand and written at wire speed in one write, as plain TCP writes its layer. What the panel's
 * socket costs (masking every byte into memory of its own, in ws; natively in UXP) is left out, so
 * this is the upload as the daemon makes it, against the same TCP ceiling.
 */
async function benchDaemonReceive(pixels: Uint8Array, size: number, runs: number): Promise<number> {
  const token = "b".repeat(40);
  const { port, child } = await startPeer("daemon", token);
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: 2 ** 30 });
  await new Promise<void>((resolve, reject) => (ws.once("open", () => resolve()), ws.once("error", reject)));
  const waiting: Array<{ type: string; resolve: () => void }> = [];
  ws.on("message", (data, isBinary) => {
    if (isBinary) return; // the echo engine's result, not timed here
    const { type } = JSON.parse(String(data)) as { type: string };
    if (type === "error") throw new Error(`the daemon refused the bench's frames: ${String(data)}`);
    const at = waiting.findIndex((w) => w.type === type);
    if (at >= 0) waiting.splice(at, 1)[0]!.resolve();
  });
  const next = (type: string) => new Promise<void>((resolve) => waiting.push({ type, resolve }));
  const welcome = next("welcome");
  ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, client: { name: "bench", version: "0" }, token }));
  await welcome;
  // ws reads the daemon's replies from this socket; the bench writes its frames under ws's sender, which sends nothing meanwhile.
  const socket = (ws as unknown as { _socket?: unknown })._socket;
  if (!(socket instanceof net.Socket)) throw new Error("ws no longer keeps its socket as _socket: the daemon-side upload bench needs updating");
  let jobId = 0;
  const oneJob = async (): Promise<number> => {
    jobId++;
    const ref = { frameId: jobId, width: size, height: size, channels: 4 as const, bitsPerChannel: 8 as const };
    const job = { mode: "img2img", model: "echo", prompt: "", seed: 1, steps: 1, guidance: 1, scheduler: "euler", canvas: { width: size, height: size }, previews: false, jobId, image: ref };
    const parts = [maskedFrame(JSON.stringify({ type: "submit", job }), 1)];
    for (const { header, payload } of frameChunks({ kind: "image", jobId, ...ref, data: pixels })) parts.push(maskedFrame(header, 2), maskedFrame(payload, 2));
    const wire = Buffer.concat(parts);
    const done = next("done");
    const accepted = next("accepted");
    const start = performance.now();
    socket.write(wire);
    await accepted;
    const ms = performance.now() - start;
    await done;
    return ms;
  };
  await oneJob(); // warm-up: the daemon's image pool
  let best = Infinity;
  for (let i = 0; i < runs; i++) best = Math.min(best, await oneJob());
  ws.close();
  child.disconnect();
  return best;
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
  const tcp = await benchTcp(pixels, runs);
  const frames = await benchFrames(pixels, size, runs);
  const daemonUploadMs = await benchDaemonReceive(pixels, size, runs);
  const pngMs = await benchBase64Png(pixels, size, Math.min(runs, 2));
  const speedup = pngMs / frames.roundTripMs;
  const fractionOfTcp = tcp.uploadMs / frames.uploadMs;
  const resultFractionOfTcp = tcp.downloadMs / frames.downloadMs;
  const daemonFractionOfTcp = tcp.uploadMs / daemonUploadMs;
  printSection(`Protocol: a ${size}x${size} RGBA 8-bit layer (${(bytes / 2 ** 20).toFixed(0)} MiB) over loopback, the panel's client and the daemon's server in two processes`, [
    { what: "plain TCP, panel to daemon", value: `${fmtMs(tcp.uploadMs)}  ${fmtRate(bytes, tcp.uploadMs)}`, note: "the ceiling" },
    { what: "plain TCP, daemon to panel", value: `${fmtMs(tcp.downloadMs)}  ${fmtRate(bytes, tcp.downloadMs)}`, note: "the ceiling" },
    { what: "binary frames, panel to daemon", value: `${fmtMs(frames.uploadMs)}  ${fmtRate(bytes, frames.uploadMs)}` },
    { what: "binary frames, daemon to panel", value: `${fmtMs(frames.downloadMs)}  ${fmtRate(bytes, frames.downloadMs)}` },
    { what: "panel to daemon, daemon's side", value: `${fmtMs(daemonUploadMs)}  ${fmtRate(bytes, daemonUploadMs)}`, note: "frames masked beforehand, one write" },
    { what: "binary frames, round trip", value: fmtMs(frames.roundTripMs) },
    { what: "base64 PNG in JSON, round trip", value: fmtMs(pngMs) },
    { what: "speed-up vs base64 PNG", value: `${speedup.toFixed(1)}x`, note: "target >= 10x" },
    { what: "panel to daemon vs TCP", value: `${(fractionOfTcp * 100).toFixed(0)}%`, note: "target >= 70%" },
    { what: "daemon to panel vs TCP", value: `${(resultFractionOfTcp * 100).toFixed(0)}%`, note: "target >= 70%" },
    { what: "daemon's side of the upload vs TCP", value: `${(daemonFractionOfTcp * 100).toFixed(0)}%`, note: "without the panel's socket's masking" },
  ]);
  return {
    "protocol.imageBytes": bytes,
    "protocol.tcpOneWayMs": tcp.uploadMs,
    "protocol.tcpResultMs": tcp.downloadMs,
    "protocol.binaryOneWayMs": frames.uploadMs,
    "protocol.binaryResultMs": frames.downloadMs,
    "protocol.binaryRoundTripMs": frames.roundTripMs,
    "protocol.base64PngRoundTripMs": pngMs,
    "protocol.speedupVsBase64Png": speedup,
    "protocol.fractionOfTcp": fractionOfTcp,
    "protocol.daemonUploadMs": daemonUploadMs,
    "protocol.daemonFractionOfTcp": daemonFractionOfTcp,
    "protocol.resultFractionOfTcp": resultFractionOfTcp,
  };
}
