/**
 * The panel's protocol client against the real daemon server (with the deterministic test
 * engine): pairing, chunked frames out and in, progress and previews, cancel, timeouts,
 * reconnecting with backoff, and a wrong token.
 */
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { startServer, type DaemonServer } from "../../daemon/server/server";
import { ProtocolClient, type ClientOptions } from "../../plugin/src/client/client";
import type { WebSocketLike } from "../../plugin/src/client/socket";
import { PanelError } from "../../plugin/src/errors";
import { FRAME_HEADER_BYTES, FrameChunkReader, type ModelList } from "../../protocol";
import { TestEngine } from "../helpers/test-engine";

const TOKEN = "t".repeat(40);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** ws in the browser's shape, recording every message the client sends (binary: a copy, and the view sent). */
function recordingFactory(sent: Array<string | Uint8Array>, views: Uint8Array[] = []) {
  return (url: string) => {
    const socket = new WebSocket(url, { perMessageDeflate: false });
    const send = socket.send.bind(socket);
    (socket as unknown as { send(data: string | Uint8Array): void }).send = (data) => {
      sent.push(typeof data === "string" ? data : data.slice());
      if (typeof data !== "string") views.push(data);
      send(data);
    };
    return socket as unknown as WebSocketLike;
  };
}

async function daemon(engine = new TestEngine(), options: { port?: number; limits?: { chunkBytes: number } } = {}): Promise<DaemonServer> {
  const server = await startServer({ token: TOKEN, engine, port: options.port ?? 0, ...(options.limits ? { limits: options.limits } : {}) });
  cleanups.push(() => server.close());
  return server;
}

function client(options: Partial<ClientOptions> & { url: string }, sent: Array<string | Uint8Array> = [], views: Uint8Array[] = []): ProtocolClient {
  const c = new ProtocolClient({ socketFactory: recordingFactory(sent, views), token: TOKEN, backoff: { initialMs: 50, maxMs: 200 }, ...options });
  cleanups.push(() => c.stop());
  return c;
}

/** A ready client of a daemon on the test engine, recording every model list it hears. */
async function readyHearingModels(): Promise<{ engine: TestEngine; c: ProtocolClient; heard: ModelList[] }> {
  const engine = new TestEngine();
  const server = await daemon(engine);
  const c = client({ url: server.url });
  const heard: ModelList[] = [];
  c.onModels((list) => heard.push(list));
  c.start();
  await c.whenReady();
  return { engine, c, heard };
}

describe("the panel's protocol client", () => {
  it("pairs, sends an image in chunks without copying its pixels, and gets progress, previews and results", async () => {
    const server = await daemon(new TestEngine({ stepMs: 2 }), { limits: { chunkBytes: 1000 } });
    const sent: Array<string | Uint8Array> = [];
    const views: Uint8Array[] = [];
    const c = client({ url: server.url }, sent, views);
    c.start();
    const capabilities = await c.whenReady();
    expect(capabilities.models[0]!.id).toBe("test-model");
    expect(c.status).toMatchObject({ state: "ready", message: "Connected to the Underpaint daemon 0.0.0 on test engine." });

    const image = { width: 30, height: 20, channels: 4 as const, data: Uint8Array.from({ length: 30 * 20 * 4 }, (_, i) => i % 251) };
    const progress: Array<[number, number]> = [];
    let previews = 0;
    const handle = c.submit(
      { mode: "img2img", model: "test-model", prompt: "p", seed: 3, steps: 4, guidance: 7, scheduler: "euler", canvas: { width: 30, height: 20 }, variations: 2 },
      { image },
      { onProgress: (p) => progress.push([p.variation, p.step]), onPreview: () => previews++ },
    );
    const outcome = await handle.done;
    expect(outcome.status).toBe("completed");
    expect(progress).toEqual([[0, 1], [0, 2], [0, 3], [0, 4], [1, 1], [1, 2], [1, 3], [1, 4]]);
    expect(previews).toBe(8);
    expect(outcome.results.map((r) => [r.variation, r.seed])).toEqual([
      [0, 3],
      [1, 4],
    ]);
    // Each result says where it goes: a whole picture covers the canvas.
    for (const r of outcome.results) expect(r.region).toEqual({ x: 0, y: 0, width: 30, height: 20 });
    // The test engine hands the init image back: it arrived whole, chunk by chunk.
    expect(Buffer.from(outcome.results[0]!.image.data).equals(Buffer.from(image.data))).toBe(true);

    // Each chunk went as its 40-byte header, then a view of the image's own pixels (no copy).
    const messages = sent.filter((m): m is Uint8Array => typeof m !== "string");
    const chunkCount = Math.ceil(image.data.byteLength / 1000);
    expect(messages).toHaveLength(2 * chunkCount);
    const reader = new FrameChunkReader();
    let offset = 0;
    for (let i = 0; i < chunkCount; i++) {
      expect(messages[2 * i]!.byteLength).toBe(FRAME_HEADER_BYTES);
      expect(reader.read(messages[2 * i]!)).toBeUndefined();
      const chunk = reader.read(messages[2 * i + 1]!)!;
      expect(chunk.header).toMatchObject({ kind: "image", offset, totalLength: image.data.byteLength });
      expect(views[2 * i + 1]!.buffer).toBe(image.data.buffer);
      expect(views[2 * i + 1]!.byteOffset).toBe(offset);
      offset += chunk.payload.byteLength;
    }
    expect(offset).toBe(image.data.byteLength);
  });

  it("reuses a result's buffer for a later result only once it is released, each result holding its own pixels", async () => {
    const server = await daemon(new TestEngine(), { limits: { chunkBytes: 64 * 1024 } });
    const c = client({ url: server.url });
    c.start();
    await c.whenReady();
    // 512x512 RGBA: 1 MiB, the smallest the pool keeps; sent and brought back in 16 chunks.
    const run = async (value: number) => {
      const image = { width: 512, height: 512, channels: 4 as const, data: new Uint8Array(512 * 512 * 4).fill(value) };
      const outcome = await c.submit({ mode: "img2img", model: "test-model", prompt: "p", seed: 1, steps: 1, guidance: 7, scheduler: "euler", canvas: { width: 512, height: 512 } }, { image }).done;
      expect(outcome.status).toBe("completed");
      return outcome.results;
    };
    const first = await run(11);
    const second = await run(22);
    // The first is still held: the second came into memory of its own, and the first kept its pixels.
    expect(second[0]!.image.data.buffer).not.toBe(first[0]!.image.data.buffer);
    expect(first[0]!.image.data.every((v) => v === 11)).toBe(true);
    c.release(first);
    const third = await run(33);
    expect(third[0]!.image.data.buffer).toBe(first[0]!.image.data.buffer);
    expect(third[0]!.image.data.every((v) => v === 33)).toBe(true);
    expect(second[0]!.image.data.every((v) => v === 22)).toBe(true);
    // Released twice (a bug in the caller): the buffer, now the third's, is not lent again.
    c.release(first);
    const fourth = await run(44);
    expect(fourth[0]!.image.data.buffer).not.toBe(third[0]!.image.data.buffer);
    expect(third[0]!.image.data.every((v) => v === 33)).toBe(true);
  });

  it("cancels a running job, and the outcome says so", async () => {
    const engine = new TestEngine({ stepMs: 20 });
    const server = await daemon(engine);
    const c = client({ url: server.url });
    c.start();
    await c.whenReady();
    let handleSteps = 0;
    const handle = c.submit(
      { mode: "txt2img", model: "test-model", prompt: "p", seed: 1, steps: 200, guidance: 7, scheduler: "euler", canvas: { width: 64, height: 64 } },
      {},
      {
        onProgress: () => {
          if (++handleSteps === 2) handle.cancel();
        },
      },
    );
    expect((await handle.done).status).toBe("cancelled");
    expect(engine.stepsRun.get("p")).toBeLessThan(10);
    expect(c.activeJobs).toBe(0);
  });

  it("turns a refused job into a failed outcome with the daemon's sentence", async () => {
    const server = await daemon();
    const c = client({ url: server.url });
    c.start();
    await c.whenReady();
    const outcome = await c.submit({ mode: "txt2img", model: "nope", prompt: "p", seed: 1, steps: 2, guidance: 7, scheduler: "euler", canvas: { width: 64, height: 64 } }, {}).done;
    expect(outcome).toMatchObject({ status: "failed", error: { code: "model_not_found", message: 'There is no model "nope" (available: test-model).' } });
  });

  it("hears which model folders cannot run and why, and a job for one fails with that sentence", async () => {
    const { engine, c, heard } = await readyHearingModels();
    const unavailable = [{ id: "olive", code: "model_unsupported", message: "unet/model.onnx uses NhwcConv, which only CUDA has." }];
    engine.setModels(engine.models, unavailable);
    await expect.poll(() => heard.length).toBe(2);
    expect(heard[1]).toEqual({ models: engine.models, unavailable });
    expect(c.capabilities?.unavailable).toEqual(unavailable);
    expect(await c.listModels()).toEqual({ models: engine.models, unavailable });
    const outcome = await c.submit({ mode: "txt2img", model: "olive", prompt: "p", seed: 1, steps: 2, guidance: 7, scheduler: "euler", canvas: { width: 64, height: 64 } }, {}).done;
    expect(outcome).toMatchObject({ status: "failed", error: { code: "model_unavailable", message: 'The model "olive" cannot run here: unet/model.onnx uses NhwcConv, which only CUDA has.' } });
  });

  it("hears which depth and pose estimators are installed in models messages, and keeps them in its capabilities", async () => {
    const { engine, c, heard } = await readyHearingModels();
    // The welcome names what can be pulled.
    expect(c.capabilities?.registryPoseEstimators?.map((p) => p.id)).toEqual(["dwpose"]);
    engine.announce({ models: engine.models, unavailable: [], depthEstimator: null, poseEstimator: { id: "dwpose", registryId: "dwpose" } });
    await expect.poll(() => heard.length).toBe(2);
    expect(heard[1]).toEqual({ models: engine.models, unavailable: [], depthEstimator: null, poseEstimator: { id: "dwpose", registryId: "dwpose" } });
    expect(c.capabilities).toMatchObject({ depthEstimator: null, poseEstimator: { id: "dwpose", registryId: "dwpose" } });
  });

  it("fails a job whose daemon goes quiet, after the idle timeout", async () => {
    const server = await daemon(new TestEngine({ stepMs: 1_000 }));
    const c = client({ url: server.url, timeouts: { jobIdleMs: 300 } });
    c.start();
    await c.whenReady();
    const outcome = await c.submit({ mode: "txt2img", model: "test-model", prompt: "p", seed: 1, steps: 3, guidance: 7, scheduler: "euler", canvas: { width: 64, height: 64 } }, {}).done;
    // The daemon would have finished after 3 s of steps; the client gave up first, by its own timer.
    expect(outcome).toMatchObject({ status: "failed", error: { code: "timeout" } });
    expect(outcome.error!.message).toMatch(/stopped reporting/);
  });

  it("says the token is wrong, stops retrying, and pairs once the right token is pasted", async () => {
    const server = await daemon();
    const c = client({ url: server.url, token: "wrong" });
    const states: string[] = [];
    c.onStatus((s) => states.push(s.state));
    c.start();
    await expect(c.whenReady()).rejects.toThrow("The pairing token is wrong: run `npx underpaint token` and paste it into the panel.");
    expect(c.status.state).toBe("refused");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(states.filter((s) => s === "connecting")).toHaveLength(1);
    c.setToken(TOKEN);
    await c.whenReady();
    expect(c.status.state).toBe("ready");
  });

  it("asks for a token before connecting when it has none", () => {
    const c = client({ url: "ws://127.0.0.1:1", token: "" });
    c.start();
    expect(c.status).toEqual({ state: "unpaired", message: "Paste the pairing token: run `npx underpaint token` in a terminal and copy what it prints." });
    expect(() => c.submit({ mode: "txt2img", model: "m", prompt: "", seed: 1, steps: 1, guidance: 1, scheduler: "euler", canvas: { width: 64, height: 64 } }, {})).toThrow(PanelError);
  });

  it("retries with growing delays while the daemon is away, and fails running jobs when it drops", async () => {
    const engine = new TestEngine({ stepMs: 50 });
    const first = await startServer({ token: TOKEN, engine, port: 0 });
    const port = first.port;
    const c = client({ url: first.url, backoff: { initialMs: 40, maxMs: 160 } });
    const delays: number[] = [];
    c.onStatus((s) => s.retryInMs !== undefined && delays.push(s.retryInMs));
    c.start();
    await c.whenReady();
    const running = c.submit({ mode: "txt2img", model: "test-model", prompt: "p", seed: 1, steps: 100, guidance: 7, scheduler: "euler", canvas: { width: 64, height: 64 } }, {});
    await new Promise((resolve) => setTimeout(resolve, 100));
    await first.close();
    const outcome = await running.done;
    // The daemon cancels its jobs as it shuts down, or the connection drops first: a failure either way.
    expect(outcome.status).toBe("failed");
    expect(outcome.error!.message).toMatch(/nothing was changed in your document/);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(delays.slice(0, 4)).toEqual([40, 80, 160, 160]);
    expect(c.status.message).toMatch(/^Cannot reach the Underpaint daemon at ws:\/\/127\.0\.0\.1:\d+\./);
    await daemon(engine, { port });
    await c.whenReady(5_000);
    expect(c.status.state).toBe("ready");
  });

  it("gives up on a daemon that accepts the connection but never answers the hello", async () => {
    const silent = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    await new Promise<void>((resolve) => silent.once("listening", () => resolve()));
    const port = (silent.address() as { port: number }).port;
    const c = client({ url: `ws://127.0.0.1:${port}`, timeouts: { welcomeMs: 150 } });
    c.start();
    await expect.poll(() => c.status.state, { timeout: 3_000 }).toBe("retrying");
    expect(c.status.message).toMatch(/^The daemon accepted the connection but did not answer the pairing in time\./);
  });
});
