/**
 * ControlNet for SDXL on replicas of OnnxStack's SDXL layout: TensorStack/stable-diffusion-xl-base-1.0-onnx
 * (its control UNet at controlnet/model.onnx, weights in model.onnx.data) and a ControlNet of
 * TensorStack/ControlNet-amuse's StableDiffusionXL/ (text_embeds and time_ids beside the SD inputs),
 * copied into the models folder as an artist copies a downloaded repo in.
 */
import { cp } from "node:fs/promises";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../../daemon/engine/engine";
import { loadControlNetFolder } from "../../../daemon/models/controlnet-folder";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import type { Pixels } from "../../../geometry";
import { replicas, writeReplica } from "../../../scripts/replicas";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";

const BASE = "TensorStack/stable-diffusion-xl-base-1.0-onnx";
const NETS = "TensorStack/ControlNet-amuse";
let tmp: TempDir;
let modelsDir: string;
let engine: DiffusionEngine;
let model: string;
let square: Pixels;

async function drawing(width: number, height: number, shapes: string): Promise<Pixels> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes}</svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

beforeAll(async () => {
  // The SDXL entries of the registry (and their pulls of controlnet/) come with the registry's SDXL architecture:
  // until then the repos' files are installed as an artist copies them in (the same folder code reads them).
  tmp = await makeTempDir("underpaint-control-sdxl-");
  modelsDir = path.join(tmp.dir, "models");
  const all = await replicas();
  model = "sdxl-base-onnxstack";
  await writeReplica(all.find((r) => r.repo === BASE)!, path.join(modelsDir, model));
  await writeReplica(all.find((r) => r.repo === "TensorStack/stable-diffusion-v1-5-onnx")!, path.join(tmp.dir, "sd-1.5-control"));
  const repo = path.join(tmp.dir, "ControlNet-amuse");
  await writeReplica(all.find((r) => r.repo === NETS)!, repo);
  await cp(path.join(repo, "StableDiffusionXL", "Canny"), path.join(modelsDir, "sdxl-canny"), { recursive: true });
  await cp(path.join(repo, "StableDiffusion", "Scribble"), path.join(modelsDir, "sd15-scribble"), { recursive: true });
  engine = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
  square = await drawing(64, 64, `<rect width="64" height="64" fill="white"/><rect x="16" y="16" width="32" height="32" fill="black"/>`);
}, 180_000);
afterAll(async () => {
  await engine?.dispose();
  await tmp?.cleanup();
});

const base = {
  mode: "txt2img",
  prompt: "a house",
  negativePrompt: "",
  seed: 5,
  steps: 3,
  guidance: 5,
  scheduler: "euler",
  variations: 1,
  truncatePrompt: false,
  previews: false,
  output: { width: 64, height: 64 },
  size: { width: 64, height: 64 },
} as const;

const run = async (job: GenerationJob) => (await engine.run(job, { signal: new AbortController().signal, onProgress: () => {} }))[0]!;
const control = (strength: number, extra: Partial<NonNullable<GenerationJob["control"]>> = {}): NonNullable<GenerationJob["control"]> => ({ kind: "canny", image: square, strength, start: 0, end: 1, ...extra });
const meanDifference = (a: Uint8Array, b: Uint8Array) => a.reduce((sum, v, i) => sum + Math.abs(v - b[i]!), 0) / a.length;

describe("SDXL with a ControlNet", { timeout: 120_000 }, () => {
  it("reads OnnxStack's SDXL layout: a control UNet taking the down and mid residuals, its weights in model.onnx.data, and a ControlNet with the added conditions", async () => {
    const folder = await loadModelFolder(path.join(modelsDir, model), { devices: ["cpu"] });
    expect(folder.sdxl).not.toBeNull();
    // The tiny SDXL's two levels give 6 down residuals (SDXL's three give 9: test/scripts/controlnet-builder.test.ts).
    expect(folder.controlUnet?.io.residuals.down).toHaveLength(6);
    expect(folder.controlUnet?.io.added).toMatchObject({ textEmbeds: "text_embeds", timeIds: "time_ids" });
    expect(folder.controlUnet?.externalData.map((f) => path.relative(folder.dir, f))).toEqual([path.join("controlnet", "model.onnx.data")]);
    const net = await loadControlNetFolder(path.join(modelsDir, "sdxl-canny"), { devices: ["cpu"] });
    expect(net.kind).toBe("canny");
    expect(net.io.residuals.down).toHaveLength(6);
    expect(net.io.unet.added).toMatchObject({ textEmbeds: "text_embeds", timeIds: "time_ids" });
    expect(net.externalData.map((f) => path.basename(f))).toEqual(["model.onnx.data"]);
    const { models: listed } = await engine.capabilities();
    expect(listed.find((m) => m.id === model)).toMatchObject({ control: true });
  });

  it("txt2img follows the control image (strength 1 differs from 0), and at strength 0 is the job without control", async () => {
    const job = { ...base, model } satisfies GenerationJob;
    const plain = await run(job);
    const zero = await run({ ...job, control: control(0) });
    const steered = await run({ ...job, control: control(1, { controlNet: "sdxl-canny" }) });
    expect(Buffer.from(zero.image.data).equals(Buffer.from(plain.image.data))).toBe(true);
    const difference = meanDifference(steered.image.data, plain.image.data);
    console.log(`SDXL txt2img: mean |difference| with control vs without: ${difference.toFixed(2)}`);
    expect(difference).toBeGreaterThan(0);
  });

  it("inpaint with control keeps every pixel outside the selection and repaints inside otherwise than without", async () => {
    const picture = await drawing(64, 64, `<rect width="64" height="64" fill="#7ab"/><rect y="40" width="64" height="24" fill="#5a3"/>`);
    const mask = new Uint8Array(64 * 64);
    for (let y = 16; y < 48; y++) mask.fill(255, y * 64 + 16, y * 64 + 48);
    const { output: _output, size: _size, mode: _mode, ...settings } = base;
    const job = (strength?: number): GenerationJob => ({
      ...settings,
      model,
      mode: "inpaint",
      image: picture,
      mask: { width: 64, height: 64, channels: 1, data: mask },
      strength: 1,
      context: "image",
      canvas: { width: 64, height: 64 },
      region: { x: 0, y: 0, width: 64, height: 64 },
      budget: 64 * 64,
      ...(strength !== undefined ? { control: control(strength) } : {}),
    });
    const plain = await run(job());
    const steered = await run(job(1));
    for (const result of [plain, steered]) {
      const { image: layer, region } = result;
      for (let y = 0; y < layer.height; y++) {
        for (let x = 0; x < layer.width; x++) if (!mask[(region.y + y) * 64 + region.x + x]) expect(layer.data[(y * layer.width + x) * 4 + 3]).toBe(0);
      }
    }
    expect(steered.region).toEqual(plain.region);
    expect(meanDifference(steered.image.data, plain.image.data)).toBeGreaterThan(0);
  });

  it("refuses an SD 1.5 ControlNet on an SDXL model, and an SDXL ControlNet on an SD 1.5 model, in one sentence each", async () => {
    await expect(run({ ...base, model, control: control(1, { kind: "scribble", controlNet: "sd15-scribble" }) })).rejects.toMatchObject({
      code: "invalid_job",
      message: `The ControlNet "sd15-scribble" is for SD 1.x and 2.x models and "${model}" is an SDXL model: use a ControlNet made for it.`,
    });
    const sd15 = await engine.useFolder(path.join(tmp.dir, "sd-1.5-control"));
    await expect(run({ ...base, model: sd15, control: control(1, { controlNet: "sdxl-canny" }) })).rejects.toMatchObject({
      code: "invalid_job",
      message: `The ControlNet "sdxl-canny" is for SDXL models and "${sd15}" is not an SDXL model: use a ControlNet made for it.`,
    });
  });
});
