/**
 * Inpainting a selection and extending the canvas through the engine, on real photographs whose
 * sizes are not multiples of 8, with the tiny fixture models (their images are noise: only the
 * geometry and the compositing guarantees are judged here).
 */
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { planInpaint } from "../../../daemon/engine/masked-edit";
import type { EngineJob, EngineResult, Raster } from "../../../daemon/engine/engine";
import { ellipseSelection } from "../../../scripts/bench/compositing";
import { FIXTURES_DIR } from "../../helpers/paths";

let work: string;
let engine: DiffusionEngine;
let cat: Raster;
let coffee: Raster;

async function load(name: string): Promise<Raster> {
  const { data, info } = await sharp(path.join(FIXTURES_DIR, "images", name)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, bitsPerChannel: 8, data: new Uint8Array(data) };
}

const base = { jobId: 1, prompt: "a cat wearing a hat", negativePrompt: "", seed: 11, steps: 3, guidance: 7.5, strength: 1, scheduler: "euler_a", width: 128, height: 128, variations: 1, truncatePrompt: false, previews: false } as const;

async function run(job: Partial<EngineJob> & Pick<EngineJob, "mode" | "model">): Promise<EngineResult[]> {
  return engine.run({ ...base, ...job } as EngineJob, { signal: new AbortController().signal, onProgress: () => {} });
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-masked-"));
  await mkdir(path.join(work, "models"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(work, "models", "tiny-sd"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd-inpaint"), path.join(work, "models", "tiny-sd-inpaint"));
  engine = new DiffusionEngine({ modelsDir: path.join(work, "models"), devices: ["cpu"] });
  cat = await load("chelsea.png");
  coffee = await load("coffee.png");
});
afterAll(async () => {
  await engine.dispose();
  await rm(work, { recursive: true, force: true });
});

describe("inpainting a selection", () => {
  it.each(["tiny-sd", "tiny-sd-inpaint"])("returns an RGBA layer of the image's exact size whose alpha stays inside the selection (%s)", async (model) => {
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 70, 50);
    const [result] = await run({ mode: "inpaint", model, image: cat, mask, region: { x: 40, y: 25, width: cat.width, height: cat.height } });
    const { image, region } = result!;
    expect([image.width, image.height, image.channels]).toEqual([451, 300, 4]);
    expect(region).toEqual({ x: 40, y: 25, width: 451, height: 300 });
    let inside = 0;
    for (let i = 0; i < mask.data.length; i++) {
      const alpha = image.data[i * 4 + 3]!;
      expect(alpha).toBeLessThanOrEqual(mask.data[i]!);
      if (alpha === 255) inside++;
    }
    expect(inside).toBeGreaterThan(3000); // the middle of the selection (about 11,000 px) is fully generated; its feathered rim fades
  });

  it("refuses a mask of another size and an empty selection, and repaints everything when everything is selected", async () => {
    const wrong = ellipseSelection(cat.width - 1, cat.height, 100, 100, 40, 40);
    await expect(run({ mode: "inpaint", model: "tiny-sd", image: cat, mask: wrong })).rejects.toMatchObject({ code: "invalid_job", message: expect.stringMatching(/must be the size of the image/) });
    const empty: Raster = { width: cat.width, height: cat.height, channels: 1, bitsPerChannel: 8, data: new Uint8Array(cat.width * cat.height) };
    await expect(run({ mode: "inpaint", model: "tiny-sd", image: cat, mask: empty })).rejects.toMatchObject({ code: "invalid_job", message: expect.stringMatching(/selection is empty/) });
    const all: Raster = { ...empty, data: new Uint8Array(cat.width * cat.height).fill(255) };
    const [result] = await run({ mode: "inpaint", model: "tiny-sd", image: cat, mask: all });
    expect([result!.image.width, result!.image.height]).toEqual([451, 300]);
    // the middle of a whole-image selection is fully generated
    expect(result!.image.data[(150 * 451 + 225) * 4 + 3]).toBe(255);
  });
});

describe("context around the selection", () => {
  it("shows the model more than the selection by default, the selection alone or the whole image on request", async () => {
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 40, 30);
    const plan = (context: "automatic" | "selection" | "image") => planInpaint(cat, mask, { nativeResolution: 512, budget: 128 * 128, strength: 1, context });
    const [automatic, selection, image] = await Promise.all([plan("automatic"), plan("selection"), plan("image")]);
    const area = (b: { width: number; height: number }) => b.width * b.height;
    expect(area(selection.region)).toBeLessThan(area(automatic.region));
    expect(image.region).toEqual({ x: 0, y: 0, width: 451, height: 300 });
    for (const p of [automatic, selection]) {
      // the region contains the whole denoise mask
      expect(p.region.x).toBeLessThanOrEqual(230 - 40);
      expect(p.region.x + p.region.width).toBeGreaterThanOrEqual(230 + 40);
      expect(p.size.width % 64).toBe(0);
      expect(p.size.height % 64).toBe(0);
    }
  });
});

describe("extending the canvas", () => {
  it("covers the new area fully and reaches into the old pixels only on the extended side", async () => {
    const [result] = await run({ mode: "outpaint", model: "tiny-sd", image: coffee, expand: { left: 128, top: 0, right: 0, bottom: 0 } });
    const { image, region } = result!;
    expect([image.width, image.height]).toEqual([728, 400]);
    expect(region).toEqual({ x: -128, y: 0, width: 728, height: 400 });
    const alpha = (x: number, y: number) => image.data[(y * 728 + x) * 4 + 3]!;
    for (const y of [0, 200, 399]) {
      expect(alpha(0, y)).toBe(255);
      expect(alpha(127, y)).toBe(255);
      expect(alpha(128 + 64, y)).toBe(0); // beyond the overlap band the old pixels stay
      expect(alpha(727, y)).toBe(0);
    }
  });

  it("refuses an extension of 0 and one beyond the limits", async () => {
    await expect(run({ mode: "outpaint", model: "tiny-sd", image: coffee, expand: { left: 0, top: 0, right: 0, bottom: 0 } })).rejects.toMatchObject({ code: "invalid_job" });
    await expect(run({ mode: "outpaint", model: "tiny-sd", image: coffee, expand: { left: 5000, top: 0, right: 0, bottom: 0 } })).rejects.toMatchObject({ code: "invalid_job", message: expect.stringMatching(/at most 2048/) });
  });
});
