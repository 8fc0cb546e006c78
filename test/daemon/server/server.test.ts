import { afterEach, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { FrameAssembler, PROTOCOL_VERSION, encodeFrame, type ImageFrame } from "../../../protocol";
import { startServer, type DaemonServer, type ServerOptions } from "../../../daemon/server/server";
import { loadRegistry } from "../../../daemon/models/registry";
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
    // The registry is the daemon's, whatever the engine: every entry, with its download size.
    const registry = welcome.capabilities.registry;
    expect(registry.map((m) => m.id)).toEqual(loadRegistry().models.map((m) => m.id));
    const gb = Object.fromEntries(registry.map((m) => [m.id, m.approximateBytes / 1e9]));
    expect(gb["sd-1.5"]).toBeCloseTo(4.3, 1); // SD 1.5's 1.07 billion weights at 4 bytes
    expect(gb["sd-1.5-inpainting"]! / gb["sd-1.5"]!, "fp16 is half").toBeCloseTo(0.5, 3);
    expect(gb["sd-turbo"]).toBeCloseTo(2.6, 1); // SD 2.1's 1.29 billion at 2 bytes
    expect(gb["lcm-dreamshaper-v7"]).toEqual(gb["sd-1.5"]);
    expect(registry.find((m) => m.id === "sd-turbo")).toMatchObject({ turbo: true, precision: "fp16", recommended: { steps: 1, guidance: 0, scheduler: "euler_a" } });
    for (const m of registry) expect(m.description.length, m.id).toBeGreaterThan(20);
    // Preview decoders are offered apart from the models: TAESD's two 1.2 M-weight parts at fp32.
    expect(welcome.capabilities.registryPreviewDecoders).toEqual([expect.objectContaining({ id: "taesd", repo: "deinferno/taesd-onnx", precision: "fp32", license: "MIT" })]);
    expect(welcome.capabilities.registryPreviewDecoders![0]!.approximateBytes / 1e6).toBeCloseTo(9.8, 1);
    // An engine that does not say whether one is installed leaves the field out.
    expect(welcome.capabilities).not.toHaveProperty("previewDecoder");
    // No installer, no pulls.
    expect(welcome.capabilities.downloads).toEqual([]);
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

  it("refuses a picture, or a working size, over the pixel limit before running anything", async () => {
    const { server, engine } = await serve(undefined, { limits: { maxImagePixels: 64 * 64 } });
    const client = await pair(server);
    // The output defaults to the canvas.
    client.submit(txt2imgJob(1, { canvas: { width: 65, height: 64 } }));
    expect(await client.next("error", (e) => e.jobId === 1)).toMatchObject({ code: "invalid_job", message: "The output 65x64 is over the 4096-pixel limit." });
    client.submit(txt2imgJob(2, { output: { width: 64, height: 65 } }));
    expect(await client.next("error", (e) => e.jobId === 2)).toMatchObject({ code: "invalid_job", message: "The output 64x65 is over the 4096-pixel limit." });
    client.submit(txt2imgJob(3, { size: { width: 72, height: 64 } }));
    expect(await client.next("error", (e) => e.jobId === 3)).toMatchObject({ code: "invalid_job", message: "The working size 72x64 is over the 4096-pixel limit." });
    client.submit(txt2imgJob(4, { output: { width: 32, height: 32 } }));
    expect((await client.next("done", (d) => d.jobId === 4)).status).toBe("completed");
    expect(engine.started).toEqual(["job 4"]);
  });

  it("takes an edit in a document larger than the pixel limit: only the context travels", async () => {
    const { server, engine } = await serve(undefined, { limits: { maxImagePixels: 64 * 64 } });
    const client = await pair(server);
    const mask = new Uint8Array(32 * 32).fill(255);
    client.submit({
      ...txt2imgJob(1), mode: "inpaint", canvas: { width: 10_000, height: 8_000 }, region: { x: 5000, y: 4000, width: 32, height: 32 },
      image: { frameId: 1, width: 32, height: 32, channels: 4 }, mask: { frameId: 2, width: 32, height: 32, channels: 1 },
    });
    client.sendImage(rgbaImage(32, 32, 1, 1));
    client.sendImage({ kind: "mask", jobId: 1, frameId: 2, width: 32, height: 32, channels: 1, bitsPerChannel: 8, data: mask });
    expect((await client.next("done")).status).toBe("completed");
    expect(client.ofType("error")).toEqual([]);
    expect(engine.jobs).toHaveLength(1);
    expect(client.ofType("result")[0]!.region).toMatchObject({ x: 5000, y: 4000 });
  });

  it("refuses a region outside the canvas as an invalid message", async () => {
    const { server, engine } = await serve();
    const client = await pair(server);
    client.submit({
      ...txt2imgJob(1), mode: "inpaint", region: { x: 40, y: 0, width: 32, height: 32 },
      image: { frameId: 1, width: 32, height: 32, channels: 4 }, mask: { frameId: 2, width: 32, height: 32, channels: 1 },
    });
    const error = await client.next("error");
    expect(error.code).toBe("invalid_message");
    expect(error.message).toMatch(/region must lie inside the canvas/);
    expect(engine.jobs).toEqual([]);
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
  it("forgets frames that arrive for no job, so they never use up the images being received", async () => {
    const { server } = await serve();
    const client = await pair(server);
    // First chunks (64 KiB, taken straight off the socket) of frames for jobs never submitted: more than maxPendingFrames (4).
    for (let jobId = 11; jobId <= 16; jobId++) client.sendRaw([...encodeFrame(rgbaImage(256, 256, jobId, 1), 64 * 1024)][0]!);
    for (let jobId = 11; jobId <= 16; jobId++) expect((await client.next("error", (e) => e.jobId === jobId)).code).toBe("unknown_job");
    // A chunk that says another length than it carries is refused with a code, not written anywhere.
    const job = { ...txt2imgJob(1), mode: "img2img", steps: 1, canvas: { width: 256, height: 256 }, image: { frameId: 1, width: 256, height: 256, channels: 4 } } as const;
    client.submit(job);
    const wrong = Buffer.from([...encodeFrame(rgbaImage(256, 256, 1, 1), 64 * 1024)][0]!);
    wrong.writeUInt32LE(1000, 28);
    client.sendRaw(wrong);
    expect((await client.next("error", (e) => e.code === "frame_invalid")).message).toMatch(/1000 payload bytes/);
    // A job sent properly after all that is received whole.
    const image = rgbaImage(256, 256, 2, 1);
    client.submit({ ...job, jobId: 2 });
    client.sendImage(image, 64 * 1024);
    await client.next("accepted", (m) => m.jobId === 2);
    expect(await client.next("done", (m) => m.jobId === 2)).toMatchObject({ status: "completed" });
  });

  it.each(["one-message", "pairs"] as const)("round-trips a 4096x4096 RGBA frame byte-exact, its chunks (%s) unmasked straight into the image", async (form) => {
    const { server } = await serve();
    const client = await pair(server);
    const image = rgbaImage(4096, 4096, 1, 1);
    const placed = vi.spyOn(FrameAssembler.prototype, "place");
    client.submit({ ...txt2imgJob(1), mode: "img2img", steps: 1, canvas: { width: 4096, height: 4096 }, image: { frameId: 1, width: 4096, height: 4096, channels: 4 } });
    client.sendImage(image, undefined, form);
    await client.next("accepted", undefined, 30_000);
    // Every 4 MiB chunk was taken off the socket by the daemon's filter (bulk-frames.ts), none left to ws.
    expect(placed.mock.calls.map(([header]) => header.offset)).toEqual(Array.from({ length: 16 }, (_, i) => i * 4 * 2 ** 20));
    placed.mockRestore();
    const result = await client.next("result", undefined, 30_000);
    await client.next("done", undefined, 30_000);
    // A whole picture covers the document.
    expect(result.region).toEqual({ x: 0, y: 0, width: 4096, height: 4096 });
    expect(result.frame).toMatchObject({ width: 4096, height: 4096, channels: 4, bitsPerChannel: 8 });
    const back = client.frames.get(`1:${result.frame.frameId}`);
    expect(back).toBeDefined();
    expect(back!.kind).toBe("result");
    expect([back!.width, back!.height, back!.channels]).toEqual([4096, 4096, 4]);
    expect(Buffer.compare(Buffer.from(back!.data.buffer, back!.data.byteOffset, back!.data.byteLength), Buffer.from(image.data))).toBe(0);
  });

  it("streams progress with previews, each saying its variation, then one result per variation with seed + i and its region", async () => {
    const { server } = await serve();
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 3, variations: 3, seed: 100, canvas: { width: 64, height: 48 } }));
    await client.next("done");
    const progress = client.ofType("progress");
    expect(progress.map((p) => [p.variation, p.step])).toEqual([[0, 1], [0, 2], [0, 3], [1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]);
    for (const p of progress) expect(client.frames.get(`1:${p.previewFrameId}`)?.kind).toBe("preview");
    const results = client.ofType("result");
    expect(results.map((r) => [r.variation, r.seed])).toEqual([[0, 100], [1, 101], [2, 102]]);
    for (const r of results) {
      expect(r.region).toEqual({ x: 0, y: 0, width: 64, height: 48 });
      const frame = client.frames.get(`1:${r.frame.frameId}`)!;
      expect([frame.width, frame.height]).toEqual([r.region.width, r.region.height]);
    }
    const types = client.messages.map((m) => m.type);
    expect(types.indexOf("accepted")).toBeLessThan(types.indexOf("progress"));
    expect(types.at(-1)).toBe("done");
  });

  it("hands the engine the job as the protocol defines it: the output and the region default to the canvas", async () => {
    const { server, engine } = await serve();
    const client = await pair(server);
    client.submit(txt2imgJob(1, { canvas: { width: 40, height: 24 } }));
    client.submit(txt2imgJob(2, { canvas: { width: 40, height: 24 }, output: { width: 20, height: 12 }, size: { width: 64, height: 48 } }));
    client.submit({ ...txt2imgJob(3), mode: "outpaint", canvas: { width: 32, height: 32 }, image: { frameId: 1, width: 32, height: 32, channels: 3 }, expand: { left: 16, top: 0, right: 0, bottom: 0 } });
    client.sendImage({ ...rgbaImage(32, 32, 3, 1), channels: 3, data: new Uint8Array(32 * 32 * 3).fill(9) });
    await client.next("done", (d) => d.jobId === 3);
    expect(client.ofType("done").map((d) => d.status)).toEqual(["completed", "completed", "completed"]);
    const [first, second, third] = engine.jobs;
    expect(first).toMatchObject({ mode: "txt2img", output: { width: 40, height: 24 } });
    expect(first).not.toHaveProperty("size");
    expect(first).not.toHaveProperty("canvas");
    expect(second).toMatchObject({ mode: "txt2img", output: { width: 20, height: 12 }, size: { width: 64, height: 48 } });
    expect(third).toMatchObject({ mode: "outpaint", canvas: { width: 32, height: 32 }, region: { x: 0, y: 0, width: 32, height: 32 }, expand: { left: 16, top: 0, right: 0, bottom: 0 } });
    expect(third).not.toHaveProperty("budget");
    const regions = client.ofType("result").map((r) => [r.jobId, r.region]);
    expect(regions).toEqual([
      [1, { x: 0, y: 0, width: 40, height: 24 }],
      [2, { x: 0, y: 0, width: 20, height: 12 }],
      // The new strip on the left, in the grown canvas's pixels.
      [3, { x: 0, y: 0, width: 16, height: 32 }],
    ]);
  });

  it("inpaints a scaled-down read of a region: the engine gets the region, the budget and 8-bit pixels; the result comes back where it shows", async () => {
    const { server, engine } = await serve();
    const client = await pair(server);
    // The region 32x32 at 16,8 of a 64x64 document, read at 16x16 and sent as 16-bit.
    const words = new Uint16Array(16 * 16 * 4);
    for (let i = 0; i < words.length; i++) words[i] = [65535, 128 * 257, 128, 100 * 257 + 128][i % 4]!;
    const mask = new Uint8Array(16 * 16);
    for (let y = 2; y < 6; y++) for (let x = 4; x < 8; x++) mask[y * 16 + x] = 255;
    client.submit({
      ...txt2imgJob(1), mode: "inpaint", context: "selection", budget: 96 * 96, region: { x: 16, y: 8, width: 32, height: 32 },
      image: { frameId: 1, width: 16, height: 16, channels: 4, bitsPerChannel: 16 }, mask: { frameId: 2, width: 16, height: 16, channels: 1 },
    });
    client.sendImage({ kind: "image", jobId: 1, frameId: 1, width: 16, height: 16, channels: 4, bitsPerChannel: 16, data: new Uint8Array(words.buffer) });
    client.sendImage({ kind: "mask", jobId: 1, frameId: 2, width: 16, height: 16, channels: 1, bitsPerChannel: 8, data: mask });
    expect((await client.next("done")).status).toBe("completed");
    expect(client.ofType("error")).toEqual([]);
    const [job] = engine.jobs;
    expect(job).toMatchObject({ mode: "inpaint", canvas: { width: 64, height: 64 }, region: { x: 16, y: 8, width: 32, height: 32 }, budget: 96 * 96, context: "selection", strength: 1 });
    if (job?.mode !== "inpaint") throw new Error("not an inpaint job");
    expect([job.image.width, job.image.height, job.image.channels, job.image.data.length]).toEqual([16, 16, 4, 16 * 16 * 4]);
    // 16-bit samples become v / 257, rounded.
    expect([...job.image.data.subarray(0, 8)]).toEqual([255, 128, 0, 100, 255, 128, 0, 100]);
    expect(Buffer.from(job.mask.data).equals(Buffer.from(mask))).toBe(true);
    // The selected 4x4 of the 16x16 read is 8x8 document pixels at 16 + 8, 8 + 4.
    const [result] = client.ofType("result");
    expect(result!.region).toEqual({ x: 24, y: 12, width: 8, height: 8 });
    const frame = client.frames.get(`1:${result!.frame.frameId}`)!;
    expect([frame.width, frame.height, frame.channels]).toEqual([8, 8, 4]);
  });

  it("gives 8 clients correct queue positions and updates them as jobs finish", async () => {
    const { server, engine } = await serve(new TestEngine({ stepMs: 20 }));
    const many = await Promise.all(Array.from({ length: 8 }, () => pair(server)));
    for (const [i, client] of many.entries()) {
      client.submit(txt2imgJob(i + 1, { steps: 2 }));
      expect((await client.next("accepted")).position).toBe(i);
    }
    await Promise.all(many.map((c) => c.next("done", undefined, 20_000)));
    expect(engine.started).toEqual(["job 1", "job 2", "job 3", "job 4", "job 5", "job 6", "job 7", "job 8"]);
    // The last client saw its position count down to 0 one job at a time.
    expect(many[7]!.ofType("queue").map((q) => q.position)).toEqual([6, 5, 4, 3, 2, 1, 0]);
  });

  it("cancels a running job within one step", async () => {
    const { server, engine } = await serve(new TestEngine({ stepMs: 30 }));
    const client = await pair(server);
    client.submit(txt2imgJob(1, { steps: 50 }));
    await client.next("progress", (p) => p.step === 2);
    const stepAtCancel = engine.stepsRun.get("job 1")!;
    client.send({ type: "cancel", jobId: 1 });
    const done = await client.next("done");
    expect(done.status).toBe("cancelled");
    expect(engine.stepsRun.get("job 1")! - stepAtCancel).toBeLessThanOrEqual(1);
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
    expect(engine.started).toEqual(["job 1"]);
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
    expect(engine.stepsRun.get("job 1")!).toBeLessThan(200);
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
