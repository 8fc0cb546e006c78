import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { startServer, type DaemonServer } from "../../../daemon/server/server";
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

const job = { mode: "txt2img", model: "tiny-sd", prompt: "a lighthouse at night", seed: 5, guidance: 7.5, scheduler: "euler_a", width: 64, height: 64 } as const;

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
    const preview = client.frames.get(`1:${steps[0]!.previewFrameId}`)!;
    expect([preview.kind, preview.width, preview.height, preview.channels]).toEqual(["preview", 8, 8, 3]);
    const results = client.ofType("result");
    expect(results.map((r) => r.seed)).toEqual([5, 6]);
    const images = results.map((r) => client.frames.get(`1:${r.frame.frameId}`)!);
    expect(images.map((f) => [f.width, f.height, f.channels])).toEqual([[64, 64, 3], [64, 64, 3]]);
    expect(Buffer.from(images[0]!.data).equals(Buffer.from(images[1]!.data))).toBe(false);
    client.close();
  });

  it("cancels a running generation between steps", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    client.submit({ ...job, jobId: 2, steps: 150, width: 128, height: 128 });
    await client.next("progress", (p) => p.stage === "denoising" && p.step === 2, 30_000);
    client.send({ type: "cancel", jobId: 2 });
    expect((await client.next("done", undefined, 30_000)).status).toBe("cancelled");
    const last = client.ofType("progress").at(-1)!;
    expect(last.step).toBeLessThan(10);
    client.close();
  });

  it("runs img2img on pixels sent as a frame, and explains a strength that leaves nothing to do", async () => {
    const { data, info } = await sharp(path.join(FIXTURES_DIR, "images", "chelsea.png")).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const client = await RawClient.paired(server.url, TOKEN);
    const image = { frameId: 1, width: info.width, height: info.height, channels: 4 as const };
    client.submit({ ...job, jobId: 3, mode: "img2img", steps: 4, strength: 0.5, image });
    client.sendImage({ kind: "image", jobId: 3, ...image, bitsPerChannel: 8, data: new Uint8Array(data) });
    expect((await client.next("done", (d) => d.jobId === 3, 30_000)).status).toBe("completed");
    // 4 steps at strength 0.5 run 2 steps, from the middle of the schedule
    expect(client.ofType("progress").filter((p) => p.jobId === 3 && p.stage === "denoising").map((p) => `${p.step}/${p.total}`)).toEqual(["1/2", "2/2"]);
    client.submit({ ...job, jobId: 4, mode: "img2img", steps: 4, strength: 0.1, image });
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

  it("refuses a size that is not a multiple of 8", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    client.submit({ ...job, jobId: 5, steps: 2, width: 100 });
    const done = await client.next("done", undefined, 30_000);
    expect(done.error).toMatchObject({ code: "invalid_job" });
    expect(done.error!.message).toMatch(/multiple of 8/);
    client.close();
  });
});
