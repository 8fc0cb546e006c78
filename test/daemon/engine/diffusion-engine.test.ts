import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { startServer, type DaemonServer } from "../../../daemon/server/server";
import { wholePictureSize } from "../../../geometry";
import { FIXTURES_DIR } from "../../helpers/paths";
import { RawClient } from "../../helpers/raw-client";

const TOKEN = "e".repeat(40);
let work: string;
let engine: DiffusionEngine;
let server: DaemonServer;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-engine-"));
  await mkdir(path.join(work, "models"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(work, "models", "tiny-sd"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd-inpaint"), path.join(work, "models", "tiny-sd-inpaint"));
  engine = new DiffusionEngine({ modelsDir: path.join(work, "models"), devices: ["cpu"] });
  server = await startServer({ token: TOKEN, engine, port: 0 });
});
afterAll(async () => {
  await server.close();
  await engine.dispose();
  await rm(work, { recursive: true, force: true });
});

/** A 64x64 picture made at exactly that size (the tiny model is fast there; by default it would work at its native 512). */
const job = {
  mode: "txt2img",
  model: "tiny-sd",
  prompt: "a lighthouse at night",
  seed: 5,
  guidance: 7.5,
  scheduler: "euler_a",
  canvas: { width: 64, height: 64 },
  size: { width: 64, height: 64 },
} as const;

describe("the diffusion engine behind the daemon", () => {
  it("lists the models with what each can do, and the device", async () => {
    const { models, device } = await engine.capabilities();
    expect(models.find((m) => m.id === "tiny-sd")).toMatchObject({ kind: "txt2img", modes: ["txt2img", "img2img", "inpaint", "outpaint"] });
    // A 9-channel inpainting model only edits what is there.
    expect(models.find((m) => m.id === "tiny-sd-inpaint")).toMatchObject({ kind: "inpainting", modes: ["inpaint", "outpaint"] });
    expect(device.name).toBe("cpu");
  });

  it("streams a preview after every step and returns each variation at the requested size", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    client.submit({ ...job, jobId: 1, steps: 4, variations: 2 });
    await client.next("done", (d) => d.jobId === 1, 30_000);
    const steps = client.ofType("progress").filter((p) => p.stage === "denoising");
    expect(steps.map((p) => p.step)).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
    expect(steps.map((p) => p.variation)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    const preview = client.frames.get(`1:${steps[0]!.previewFrameId}`)!;
    expect([preview.kind, preview.width, preview.height, preview.channels]).toEqual(["preview", 8, 8, 3]);
    const results = client.ofType("result");
    expect(results.map((r) => r.seed)).toEqual([5, 6]);
    expect(results.map((r) => r.region)).toEqual([{ x: 0, y: 0, width: 64, height: 64 }, { x: 0, y: 0, width: 64, height: 64 }]);
    const images = results.map((r) => client.frames.get(`1:${r.frame.frameId}`)!);
    expect(images.map((f) => [f.width, f.height, f.channels])).toEqual([[64, 64, 3], [64, 64, 3]]);
    expect(Buffer.from(images[0]!.data).equals(Buffer.from(images[1]!.data))).toBe(false);
    client.close();
  });

  it("cancels a running generation between steps", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    client.submit({ ...job, jobId: 2, steps: 150, canvas: { width: 128, height: 128 }, size: { width: 128, height: 128 } });
    await client.next("progress", (p) => p.stage === "denoising" && p.step === 2, 30_000);
    client.send({ type: "cancel", jobId: 2 });
    expect((await client.next("done", undefined, 30_000)).status).toBe("cancelled");
    const last = client.ofType("progress").at(-1)!;
    expect(last.step).toBeLessThan(10);
    client.close();
  });

  it("runs img2img on pixels sent as a frame, returns the picture at the document's size, and explains a strength that leaves nothing to do", async () => {
    const { data, info } = await sharp(path.join(FIXTURES_DIR, "images", "chelsea.png")).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const client = await RawClient.paired(server.url, TOKEN);
    const image = { frameId: 1, width: info.width, height: info.height, channels: 4 as const };
    // The model works at 96x64; the picture comes back at the document's 451x300.
    const canvas = { width: info.width, height: info.height };
    client.submit({ ...job, jobId: 3, mode: "img2img", steps: 4, strength: 0.5, image, canvas, size: { width: 96, height: 64 } });
    client.sendImage({ kind: "image", jobId: 3, ...image, bitsPerChannel: 8, data: new Uint8Array(data) });
    expect((await client.next("done", (d) => d.jobId === 3, 30_000)).status).toBe("completed");
    const [result] = client.ofType("result").filter((r) => r.jobId === 3);
    expect(result!.region).toEqual({ x: 0, y: 0, width: 451, height: 300 });
    const frame = client.frames.get(`3:${result!.frame.frameId}`)!;
    expect([frame.width, frame.height, frame.channels]).toEqual([451, 300, 3]);
    // 4 steps at strength 0.5 run 2 steps, from the middle of the schedule
    expect(client.ofType("progress").filter((p) => p.jobId === 3 && p.stage === "denoising").map((p) => `${p.step}/${p.total}`)).toEqual(["1/2", "2/2"]);
    client.submit({ ...job, jobId: 4, mode: "img2img", steps: 4, strength: 0.1, image, canvas, size: { width: 96, height: 64 } });
    client.sendImage({ kind: "image", jobId: 4, ...image, bitsPerChannel: 8, data: new Uint8Array(data) });
    const done = await client.next("done", (d) => d.jobId === 4, 30_000);
    expect(done).toMatchObject({ status: "failed", error: { code: "invalid_job" } });
    expect(done.error!.message).toMatch(/raise the strength or the steps/);
    client.close();
  });

  it("tells the artist which words a truncated prompt lost", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    const long = `${Array.from({ length: 80 }, (_, i) => ["red", "cat", "hat"][i % 3]).join(" ")} lighthouse`;
    client.submit({ ...job, jobId: 6, steps: 1, prompt: long, truncatePrompt: true });
    const done = await client.next("done", (d) => d.jobId === 6, 30_000);
    expect(done.status).toBe("completed");
    expect(done.notices?.[0]).toMatch(/prompt is longer than the model reads \(77 tokens\); left out: "red cat .* lighthouse"\.$/);
    client.submit({ ...job, jobId: 7, steps: 1, prompt: long });
    expect((await client.next("done", (d) => d.jobId === 7, 30_000)).notices).toBeUndefined();
    client.close();
  });

  it("refuses a working size that is not a multiple of 8, and resamples to any output size", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    client.submit({ ...job, jobId: 5, steps: 2, size: { width: 100, height: 64 } });
    const done = await client.next("done", (d) => d.jobId === 5, 30_000);
    expect(done.error).toMatchObject({ code: "invalid_job" });
    expect(done.error!.message).toMatch(/multiple of 8/);
    // The output is the document's size, whatever it is: made at 64x64, returned at 100x60.
    client.submit({ ...job, jobId: 8, steps: 1, canvas: { width: 100, height: 60 } });
    expect((await client.next("done", (d) => d.jobId === 8, 30_000)).status).toBe("completed");
    const [result] = client.ofType("result").filter((r) => r.jobId === 8);
    expect(result!.region).toEqual({ x: 0, y: 0, width: 100, height: 60 });
    const frame = client.frames.get(`8:${result!.frame.frameId}`)!;
    expect([frame.width, frame.height, frame.channels]).toEqual([100, 60, 3]);
    client.close();
  });

  it("makes a whole picture at the model's native area in the output's proportions by default", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    const { size: _size, ...unsized } = job;
    client.submit({ ...unsized, jobId: 9, steps: 1, canvas: { width: 96, height: 64 } });
    expect((await client.next("done", (d) => d.jobId === 9, 60_000)).status).toBe("completed");
    // The preview is one pixel per latent: the model worked at 576x448, the 512 px model's area in about 3:2.
    const made = wholePictureSize({ width: 96, height: 64 }, 512);
    expect(made).toEqual({ width: 576, height: 448 });
    const [step] = client.ofType("progress").filter((p) => p.jobId === 9 && p.stage === "denoising");
    const preview = client.frames.get(`9:${step!.previewFrameId}`)!;
    expect([preview.width * 8, preview.height * 8]).toEqual([made.width, made.height]);
    const [result] = client.ofType("result").filter((r) => r.jobId === 9);
    expect([result!.frame.width, result!.frame.height]).toEqual([96, 64]);
    client.close();
  });
});
