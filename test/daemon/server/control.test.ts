/**
 * A control job over a real WebSocket, on the daemon's own engine with the replicas of
 * TensorStack/stable-diffusion-v1-5-onnx (control UNet) and TensorStack/ControlNet-onnx pulled
 * through the hub imitation: the control frame is accepted and steers the result; a job the
 * model or the installed ControlNets cannot do is refused in one sentence.
 */
import { cp } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { startServer, type DaemonServer } from "../../../daemon/server/server";
import type { ImageFrame } from "../../../protocol";
import { pullControlModels, type ControlModels } from "../../helpers/control-models";
import { FIXTURES_DIR } from "../../helpers/paths";
import { RawClient, txt2imgJob } from "../../helpers/raw-client";
import { TEST_MODEL, TestEngine } from "../../helpers/test-engine";

const TOKEN = "control-token";
let models: ControlModels;
let engine: DiffusionEngine;
let server: DaemonServer;

beforeAll(async () => {
  models = await pullControlModels("underpaint-control-server-", ["sd-1.5-control", "controlnet-canny"]);
  await cp(path.join(FIXTURES_DIR, "tiny-sd"), path.join(models.modelsDir, "tiny-sd"), { recursive: true });
  engine = new DiffusionEngine({ modelsDir: models.modelsDir, devices: ["cpu"] });
  server = await startServer({ token: TOKEN, engine, port: 0 });
}, 180_000);
afterAll(async () => {
  await server?.close();
  await engine?.dispose();
  await models?.close();
});

/** A layer with a dark square on white, as a control frame. */
function squareFrame(jobId: number, frameId: number): ImageFrame {
  const data = new Uint8Array(64 * 64 * 4).fill(255);
  for (let y = 16; y < 48; y++) for (let x = 16; x < 48; x++) data.fill(0, (y * 64 + x) * 4, (y * 64 + x) * 4 + 3);
  return { kind: "control", jobId, frameId, width: 64, height: 64, channels: 4, bitsPerChannel: 8, data };
}

const control = (frameId: number, overrides: Record<string, unknown> = {}) => ({ kind: "canny" as const, image: { frameId, width: 64, height: 64, channels: 4 as const, bitsPerChannel: 8 as const }, ...overrides });

describe("a control job over the WebSocket", { timeout: 120_000 }, () => {
  it("sends its control frame, is accepted, and gets a picture that the control image changed", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    try {
      const job = { model: "sd-1.5-control", size: { width: 64, height: 64 }, steps: 3 };
      client.submit(txt2imgJob(1, { ...job, control: control(7) }));
      client.sendImage(squareFrame(1, 7));
      expect((await client.next("done", (d) => d.jobId === 1)).status).toBe("completed");
      client.submit(txt2imgJob(2, { ...job, control: control(8, { strength: 0 }) }));
      client.sendImage(squareFrame(2, 8));
      expect((await client.next("done", (d) => d.jobId === 2)).status).toBe("completed");
      const results = client.ofType("result");
      expect(results.map((r) => r.jobId)).toEqual([1, 2]);
      expect(client.ofType("error")).toEqual([]);
      const [steered, plain] = results.map((r) => client.frames.get(`${r.jobId}:${r.frame.frameId}`)!.data);
      expect(steered!.length).toBe(64 * 64 * 3);
      expect(Buffer.from(steered!).equals(Buffer.from(plain!))).toBe(false);
    } finally {
      client.socket.terminate();
    }
  });

  it("steers inpaint and outpaint: their control frames are accepted, the result differs from strength 0 and keeps the document outside the selection", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    try {
      // A picture of horizontal bands; the middle 32x32 selected.
      const picture = new Uint8Array(64 * 64 * 3).map((_, i) => (Math.floor(i / (64 * 3 * 8)) % 2 ? 200 : 60) + (i % 3) * 20);
      const mask = new Uint8Array(64 * 64);
      for (let y = 16; y < 48; y++) mask.fill(255, y * 64 + 16, y * 64 + 48);
      const image = { frameId: 1, width: 64, height: 64, channels: 3 as const };
      const inpaint = (jobId: number, strength: number) => {
        client.submit(
          txt2imgJob(jobId, {
            mode: "inpaint", model: "sd-1.5-control", context: "image", budget: 64 * 64, image, mask: { frameId: 2, width: 64, height: 64, channels: 1 }, control: control(3, { strength }),
          }),
        );
        client.sendImage({ kind: "image", jobId, frameId: 1, width: 64, height: 64, channels: 3, bitsPerChannel: 8, data: picture });
        client.sendImage({ kind: "mask", jobId, frameId: 2, width: 64, height: 64, channels: 1, bitsPerChannel: 8, data: mask });
        client.sendImage(squareFrame(jobId, 3));
      };
      inpaint(1, 1);
      expect((await client.next("done", (d) => d.jobId === 1)).status).toBe("completed");
      inpaint(2, 0);
      expect((await client.next("done", (d) => d.jobId === 2)).status).toBe("completed");
      // Outpaint: 32 pixels more on the right; the control frame covers the grown 96x64 document.
      const guide = new Uint8Array(96 * 64 * 4).fill(255);
      for (let y = 20; y < 44; y++) for (let x = 68; x < 90; x++) guide.fill(0, (y * 96 + x) * 4, (y * 96 + x) * 4 + 3);
      const outpaint = (jobId: number, strength: number) => {
        client.submit(
          txt2imgJob(jobId, {
            mode: "outpaint", model: "sd-1.5-control", budget: 96 * 64, image, expand: { left: 0, top: 0, right: 32, bottom: 0 },
            control: { kind: "canny", image: { frameId: 4, width: 96, height: 64, channels: 4, bitsPerChannel: 8 }, strength },
          }),
        );
        client.sendImage({ kind: "image", jobId, frameId: 1, width: 64, height: 64, channels: 3, bitsPerChannel: 8, data: picture });
        client.sendImage({ kind: "control", jobId, frameId: 4, width: 96, height: 64, channels: 4, bitsPerChannel: 8, data: guide });
      };
      outpaint(3, 1);
      expect((await client.next("done", (d) => d.jobId === 3)).status).toBe("completed");
      outpaint(4, 0);
      expect((await client.next("done", (d) => d.jobId === 4)).status).toBe("completed");
      expect(client.ofType("error")).toEqual([]);
      const results = client.ofType("result");
      expect(results.map((r) => r.jobId)).toEqual([1, 2, 3, 4]);
      const layer = (jobId: number) => client.frames.get(`${jobId}:${results.find((r) => r.jobId === jobId)!.frame.frameId}`)!;
      for (const [steered, plain] of [[1, 2], [3, 4]] as const) {
        expect(results.find((r) => r.jobId === steered)!.region).toEqual(results.find((r) => r.jobId === plain)!.region);
        expect(Buffer.from(layer(steered).data).equals(Buffer.from(layer(plain).data))).toBe(false);
      }
      // The inpainted layer shows only inside the selection: every pixel outside it stays the document's.
      for (const jobId of [1, 2]) {
        const { region } = results.find((r) => r.jobId === jobId)!;
        const frame = layer(jobId);
        for (let y = 0; y < frame.height; y++) {
          for (let x = 0; x < frame.width; x++) {
            if (!mask[(region.y + y) * 64 + region.x + x]) expect(frame.data[(y * frame.width + x) * 4 + 3], `alpha at ${region.x + x},${region.y + y}`).toBe(0);
          }
        }
      }
    } finally {
      client.socket.terminate();
    }
  });

  it("is refused in one sentence when the model is not control-capable, or the ControlNet is missing or of another kind", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    try {
      client.submit(txt2imgJob(6, { model: "tiny-sd", control: control(12) }));
      expect(await client.next("error", (e) => e.jobId === 6)).toMatchObject({ code: "unsupported_mode", message: 'The model "tiny-sd" cannot follow a control image: use a control-capable model (npx underpaint models pull sd-1.5-control).' });
      client.submit(txt2imgJob(3, { model: "sd-1.5-control", control: control(9, { kind: "depth" }) }));
      expect(await client.next("error", (e) => e.jobId === 3)).toMatchObject({ code: "model_not_found", message: "No depth ControlNet is installed: pull one (npx underpaint models pull controlnet-depth)." });
      client.submit(txt2imgJob(4, { model: "sd-1.5-control", control: control(10, { controlNet: "controlnet-canny", kind: "pose" }) }));
      expect(await client.next("error", (e) => e.jobId === 4)).toMatchObject({ code: "invalid_job", message: 'The ControlNet "controlnet-canny" follows canny, not pose.' });
      client.submit(txt2imgJob(5, { model: "sd-1.5-control", control: control(11, { controlNet: "nope" }) }));
      expect(await client.next("error", (e) => e.jobId === 5)).toMatchObject({ code: "model_not_found", message: 'There is no ControlNet "nope" (installed: controlnet-canny).' });
    } finally {
      client.socket.terminate();
    }
  });
});

describe("a control job for an SDXL model that cannot follow one", () => {
  it("is told to pull SDXL's control model, of its own family", async () => {
    const sdxl = { ...TEST_MODEL, id: "sdxl-turbo", name: "SDXL Turbo", sdxl: true as const };
    const other = await startServer({ token: TOKEN, engine: new TestEngine({ models: [sdxl] }), port: 0 });
    const client = await RawClient.paired(other.url, TOKEN);
    try {
      client.submit(txt2imgJob(1, { model: "sdxl-turbo", control: control(2) }));
      expect(await client.next("error", (e) => e.jobId === 1)).toMatchObject({ code: "unsupported_mode", message: 'The model "SDXL Turbo" cannot follow a control image: use a control-capable model (npx underpaint models pull sdxl-control).' });
    } finally {
      client.socket.terminate();
      await other.close();
    }
  });
});
