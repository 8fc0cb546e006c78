import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { PROTOCOL_VERSION, type ImageFrame } from "../../../protocol";
import { startServer, type DaemonServer, type ServerOptions } from "../../../daemon/server/server";
import { RawClient, txt2imgJob } from "../../helpers/raw-client";
import { TestEngine, TEST_MODEL } from "../../helpers/test-engine";

const TOKEN = "t".repeat(40);
const servers: DaemonServer[] = [];
const clients: RawClient[] = [];

async function serve(engine = new TestEngine(), options: Partial<ServerOptions> = {}) {
  const server = await startServer({ token: TOKEN, engine, port: 0, ...options });
  servers.push(server);
  return { server, engine };
}

async function pair(server: DaemonServer) {
  const client = await RawClient.paired(server.url, TOKEN);
  clients.push(client);
  return client;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.socket.terminate();
  for (const s of servers.splice(0)) await s.close();
});

function rgbaImage(width: number, height: number, jobId: number, frameId: number): ImageFrame {
  const data = new Uint8Array(width * height * 4);
  let x = 12345;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    data[i] = x >>> 24;
  }
  return { kind: "image", jobId, frameId, width, height, channels: 4, bitsPerChannel: 8, data };
}

describe("handshake", () => {
  it("welcomes a client with the right token and lists capabilities", async () => {
    const { server } = await serve();
    expect(server.host).toBe("127.0.0.1");
    const client = await pair(server);
    const welcome = await client.next("welcome");
    expect(welcome.protocol).toBe(PROTOCOL_VERSION);
    expect(welcome.capabilities.models).toEqual([TEST_MODEL]);
    expect(welcome.capabilities.device.name).toBe("cpu");
    expect(welcome.capabilities.limits.maxVariations).toBe(8);
  });

  it.each([
    ["a wrong token", "x".repeat(40), "bad_token", 4001],
    ["a missing token", undefined, "bad_token", 4001],
  ])("refuses %s", async (_name, token, code, closeCode) => {
    const { server } = await serve();
    const client = await RawClient.open(server.url);
    clients.push(client);
    client.send({ type: "hello", protocol: PROTOCOL_VERSION, client: { name: "t", version: "1" }, ...(token ? { token } : {}) });
    const error = await client.next("error");
    expect(error.code).toBe(code);
    expect(error.message).toMatch(/npx underpaint token/);
    expect(await client.closed()).toBe(closeCode);
  });

  it("refuses another protocol version, saying which to update", async () => {
    const { server } = await serve();
    const client = await RawClient.open(server.url);
    clients.push(client);
    client.hello(TOKEN, PROTOCOL_VERSION + 1);
    const error = await client.next("error");
    expect(error.code).toBe("protocol_mismatch");
    expect(error.message).toMatch(/update/);
    expect(await client.closed()).toBe(4002);
  });

  it("refuses anything before hello", async () => {
    const { server } = await serve();
    const client = await RawClient.open(server.url);
    clients.push(client);
    client.send({ type: "list-models" });
    expect((await client.next("error")).code).toBe("handshake_required");
    expect(await client.closed()).toBe(4000);
  });

  it("drops a client that never says hello", async () => {
    const { server } = await serve(undefined, { handshakeTimeoutMs: 100 });
    const client = await RawClient.open(server.url);
    clients.push(client);
    expect((await client.next("error")).code).toBe("handshake_timeout");
  });

  it.each(["https://evil.example", "http://localhost:3000", "null"])("refuses the browser origin %s at the upgrade", async (origin) => {
    const { server } = await serve();
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(server.url, { origin });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("open", () => reject(new Error("a web page was let in")));
      ws.on("error", () => {});
    });
    expect(status).toBe(403);
  });
});

describe("bad input keeps the daemon serving", () => {
  it("answers malformed, unknown and invalid messages with errors and keeps the connection", async () => {
    const { server } = await serve();
    const client = await pair(server);
    const bystander = await pair(server);
    client.sendRaw("{not json");
    client.send({ type: "do-something" });
    client.submit({ ...txt2imgJob(1), steps: -3 });
    client.sendRaw(new Uint8Array([1, 2, 3]));
    await client.next("error", (e) => e.code === "frame_invalid");
    expect(client.ofType("error").map((e) => e.code)).toEqual(["malformed_json", "unknown_message", "invalid_message", "frame_invalid"]);
    expect(client.ofType("error")[2]!.message).toMatch(/steps/);
    client.send({ type: "list-models" });
    expect((await client.next("models")).models).toEqual([TEST_MODEL]);
    bystander.submit(txt2imgJob(5));
    expect((await bystander.next("done")).status).toBe("completed");
  });

  it("answers a frame for an unknown job", async () => {
    const { server } = await serve();
    const client = await pair(server);
    client.sendImage(rgbaImage(4, 4, 99, 1));
    const error = await client.next("error");
    expect(error).toMatchObject({ code: "unknown_job", jobId: 99 });
  });

  it("refuses an image over the pixel limit, and a message over the size limit, and keeps going", async () => {
    const { server } = await serve(undefined, { limits: { maxImagePixels: 64 * 64, maxMessageBytes: 64 * 1024 } });
    const client = await pair(server);
    client.submit({ ...txt2imgJob(1), mode: "img2img", image: { frameId: 1, width: 65, height: 64, channels: 4 } });
    expect((await client.next("error")).code).toBe("frame_too_large");
    client.sendRaw(new Uint8Array(100 * 1024));
    expect((await client.next("error", (e) => e.code === "message_too_large")).message).toMatch(/chunks/);
    client.submit(txt2imgJob(2));
    expect((await client.next("done")).status).toBe("completed");
  });

  it("closes only the connection that sends a message past the hard limit", async () => {
    const { server } = await serve(undefined, { limits: { maxMessageBytes: 1024 } });
    const client = await pair(server);
    const bystander = await pair(server);
    client.sendRaw(new Uint8Array(64 * 1024));
    expect(await client.closed()).toBe(1009);
    bystander.submit(txt2imgJob(1));
    expect((await bystander.next("done")).status).toBe("completed");
  });

  it("refuses unknown models, modes the model lacks, masks of the wrong size, duplicate ids and a full queue", async () => {
    const engine = new TestEngine({ stepMs: 50, models: [{ ...TEST_MODEL, modes: ["txt2img", "img2img", "inpaint"] }] });
    const { server } = await serve(engine, { limits: { maxQueuedJobsPerClient: 2 } });
    const client = await pair(server);
    client.submit({ ...txt2imgJob(1), model: "nope" });
    expect((await client.next("error", (e) => e.jobId === 1)).message).toMatch(/no model "nope".*test-model/);
    client.submit({ ...txt2imgJob(2), mode: "outpaint", image: { frameId: 1, width: 8, height: 8, channels: 3 }, expand: { left: 8, top: 0, right: 0, bottom: 0 } });
    expect((await client.next("error", (e) => e.jobId === 2)).code).toBe("unsupported_mode");
    client.submit({
      ...txt2imgJob(3), mode: "inpaint", image: { frameId: 1, width: 8, height: 8, channels: 3 }, mask: { frameId: 2, width: 8, height: 9, channels: 1 },
    });
    expect((await client.next("error", (e) => e.jobId === 3)).message).toMatch(/mask \(8x9\) must be the size of the image \(8x8\)/);
    client.submit(txt2imgJob(4, { steps: 20 }));
    client.submit(txt2imgJob(4));
    expect((await client.next("error", (e) => e.jobId === 4)).code).toBe("duplicate_job");
    client.submit(txt2imgJob(5, { steps: 20 }));
    client.submit(txt2imgJob(6));
    expect((await client.next("error", (e) => e.jobId === 6)).code).toBe("queue_full");
  });

  it("reports an engine failure as a failed job with a sentence", async () => {
    const { server } = await serve(new TestEngine({ failWith: new Error("out of memory") }));
    const client = await pair(server);
    client.submit(txt2imgJob(1));
    const done = await client.next("done");
    expect(done).toMatchObject({ status: "failed", error: { code: "job_failed" } });
    expect(done.error!.message).toMatch(/out of memory/);
  });
});

describe("jobs", () => {
  it("round-trips a 4096x4096 RGBA frame byte-exact", async () => {
    const { server } = await serve();
    const client = await pair(server);
    const image = rgbaImage(4096, 4096, 1, 1);
    client.submit({ ...txt2imgJob(1), mode: "img2img", steps: 1, image: { frameId: 1, width: 4096, height: 4096, channels: 4 } });
    client.sendImage(image);
    const result = await client.next("result", undefined, 30_000);
    await client.next("done", undefined, 30_000);
    const back = client.frames.get(`1:${result.frame.frameId}`);
    expect(back).toBeDefined();
    expect(back!.kind).toBe("result");
    expect([back!.width, back!.height, back!.channels]).toEqual([4096, 4096, 4]);
    expect(Buffer.compare(Buffer.from(back!.data.buffer, back!.data.byteOffset, back!.data.byteLength), Buffer.from(image.data))).toBe(0);
  });

  it("streams progress with previews, then one result per variation with seed + i", async () => {
    const { server } = await serve();
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 3, variations: 3, seed: 100 }));
    await client.next("done");
    const progress = client.ofType("progress");
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3]);
    for (const p of progress) expect(client.frames.get(`1:${p.previewFrameId}`)?.kind).toBe("preview");
    expect(client.ofType("result").map((r) => [r.variation, r.seed])).toEqual([[0, 100], [1, 101], [2, 102]]);
    const types = client.messages.map((m) => m.type);
    expect(types.indexOf("accepted")).toBeLessThan(types.indexOf("progress"));
    expect(types.at(-1)).toBe("done");
  });

  it("gives 8 clients correct queue positions and updates them as jobs finish", async () => {
    const { server, engine } = await serve(new TestEngine({ stepMs: 20 }));
    const many = await Promise.all(Array.from({ length: 8 }, () => pair(server)));
    for (const [i, client] of many.entries()) {
      client.submit(txt2imgJob(i + 1, { steps: 2 }));
      expect((await client.next("accepted")).position).toBe(i);
    }
    await Promise.all(many.map((c) => c.next("done", undefined, 20_000)));
    expect(engine.started).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // The last client saw its position count down to 0 one job at a time.
    expect(many[7]!.ofType("queue").map((q) => q.position)).toEqual([6, 5, 4, 3, 2, 1, 0]);
  });

  it("cancels a running job within one step", async () => {
    const { server, engine } = await serve(new TestEngine({ stepMs: 30 }));
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 50 }));
    await client.next("progress", (p) => p.step === 2);
    const stepAtCancel = engine.stepsRun.get(1)!;
    client.send({ type: "cancel", jobId: 1 });
    const done = await client.next("done");
    expect(done.status).toBe("cancelled");
    expect(engine.stepsRun.get(1)! - stepAtCancel).toBeLessThanOrEqual(1);
    expect(client.ofType("result")).toHaveLength(0);
  });

  it("cancels a queued job without running it", async () => {
    const { server, engine } = await serve(new TestEngine({ stepMs: 20 }));
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 5 }));
    client.submit(txt2imgJob(2, { steps: 5 }));
    await client.next("accepted", (a) => a.jobId === 2);
    client.send({ type: "cancel", jobId: 2 });
    expect((await client.next("done", (d) => d.jobId === 2)).status).toBe("cancelled");
    expect((await client.next("done", (d) => d.jobId === 1)).status).toBe("completed");
    expect(engine.started).toEqual([1]);
  });

  it("frees the queue when a client drops mid-job", async () => {
    const { server, engine } = await serve(new TestEngine({ stepMs: 20 }));
    const leaver = await pair(server);
    const stayer = await pair(server);
    leaver.submit(txt2imgJob(1, { steps: 200 }));
    await leaver.next("progress");
    stayer.submit(txt2imgJob(2, { steps: 2 }));
    expect((await stayer.next("accepted")).position).toBe(1);
    leaver.socket.terminate();
    expect((await stayer.next("done", undefined, 5000)).status).toBe("completed");
    expect(engine.stepsRun.get(1)!).toBeLessThan(200);
  });

  it("drops a connection that stops answering pings", async () => {
    const { server } = await serve(undefined, { heartbeatMs: 50 });
    const silent = await RawClient.open(server.url, { autoPong: false });
    clients.push(silent);
    silent.hello(TOKEN);
    await silent.next("welcome");
    expect(await silent.closed(3000)).toBe(1006);
    await expect.poll(() => server.connectionCount).toBe(0);
  });

  it("keeps clients whose pongs wait behind a model call that holds the main thread", async () => {
    const { server } = await serve(new TestEngine({ stepMs: 1, blockMs: 300 }), { heartbeatMs: 50 });
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 4 }));
    expect((await client.next("done", undefined, 10_000)).status).toBe("completed");
    expect(client.closeCode).toBeUndefined();
    expect(server.connectionCount).toBe(1);
  });

  it("pairs a client whose hello waited behind a model call longer than the handshake timeout", async () => {
    const { server } = await serve(undefined, { handshakeTimeoutMs: 100 });
    const late = await RawClient.open(server.url);
    clients.push(late);
    late.hello(TOKEN);
    // The main thread is held (as by a UNet call) past the timeout, with the hello unread.
    const until = Date.now() + 300;
    while (Date.now() < until) {
      // busy
    }
    expect((await late.next("welcome", undefined, 10_000)).protocol).toBe(PROTOCOL_VERSION);
  });

  it("pushes a new model list to paired clients", async () => {
    const { server, engine } = await serve();
    const client = await pair(server);
    engine.setModels([TEST_MODEL, { ...TEST_MODEL, id: "second", name: "Second" }]);
    expect((await client.next("models")).models.map((m) => m.id)).toEqual(["test-model", "second"]);
  });

  it("tells running clients it is shutting down and cancels their jobs", async () => {
    const { server } = await serve(new TestEngine({ stepMs: 20 }));
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 200 }));
    await client.next("progress");
    await server.close();
    expect((await client.next("done")).status).toBe("cancelled");
    expect(await client.closed()).toBe(1001);
  });
});
