/**
 * Inpainting a selection and extending the canvas through the engine, on real photographs whose
 * sizes are not multiples of 8, with the tiny fixture models (their images are noise: only the
 * geometry and the compositing guarantees are judged here). Results are layers at document
 * resolution, cut to where they show, placed by their region.
 */
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { planInpaint, planOutpaint, type MaskedEditPlan } from "../../../daemon/engine/masked-edit";
import type { EngineResult, GenerationJob, GenerationSettings } from "../../../daemon/engine/engine";
import { cropImage } from "../../../daemon/imaging/image";
import { maskBounds } from "../../../daemon/imaging/mask";
import {
  contains,
  grownSize,
  inpaintContext,
  intersect,
  LIMITS,
  oldCanvasIn,
  outpaintContext,
  regionOf,
  translate,
  type Pixels,
  type Region,
  type Size,
} from "../../../geometry";
import { ellipseSelection } from "../../../scripts/bench/compositing";
import { FIXTURES_DIR } from "../../helpers/paths";

let work: string;
let engine: DiffusionEngine;
let cat: Pixels;
let coffee: Pixels;

async function load(name: string, size?: Size): Promise<Pixels> {
  let image = sharp(path.join(FIXTURES_DIR, "images", name)).removeAlpha();
  if (size) image = image.resize(size.width, size.height, { fit: "fill", kernel: "lanczos3" });
  const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data) };
}

const settings: GenerationSettings = {
  model: "tiny-sd",
  prompt: "a cat wearing a hat",
  negativePrompt: "",
  seed: 11,
  steps: 3,
  guidance: 7.5,
  scheduler: "euler_a",
  variations: 1,
  truncatePrompt: false,
  previews: false,
};
/** The model works on at most 128x128 pixels: the tiny models are fast there. */
const BUDGET = 128 * 128;

type InpaintJob = Extract<GenerationJob, { mode: "inpaint" }>;
type OutpaintJob = Extract<GenerationJob, { mode: "outpaint" }>;

function run(job: GenerationJob): Promise<EngineResult[]> {
  return engine.run(job, { signal: new AbortController().signal, onProgress: () => {} });
}

const sizeOf = (image: Pixels): Size => ({ width: image.width, height: image.height });

/** An inpaint with the image as the whole document, unless `job` places it elsewhere. */
async function inpaint(job: Pick<InpaintJob, "image" | "mask"> & Partial<InpaintJob>): Promise<EngineResult> {
  const [result] = await run({ ...settings, mode: "inpaint", strength: 1, context: "automatic", budget: BUDGET, canvas: sizeOf(job.image), region: regionOf(job.image), ...job });
  return result!;
}

/** An outpaint with the image as the whole document, unless `job` places it elsewhere. */
async function outpaint(job: Pick<OutpaintJob, "image" | "expand"> & Partial<OutpaintJob>): Promise<EngineResult> {
  const [result] = await run({ ...settings, mode: "outpaint", budget: BUDGET, canvas: sizeOf(job.image), region: regionOf(job.image), ...job });
  return result!;
}

/** The layer's alpha at a document pixel (0 outside the layer). */
function alphaAt(result: EngineResult, x: number, y: number): number {
  const { image, region } = result;
  const lx = x - region.x;
  const ly = y - region.y;
  if (lx < 0 || ly < 0 || lx >= image.width || ly >= image.height) return 0;
  return image.data[(ly * image.width + lx) * 4 + 3]!;
}

/** Checks the result is an RGBA layer of its region's exact size, cut tight to where alpha > 0. */
function expectTightLayer(result: EngineResult): void {
  const { image, region } = result;
  expect([image.width, image.height, image.channels]).toEqual([region.width, region.height, 4]);
  const alpha: Pixels = { width: image.width, height: image.height, channels: 1, data: image.data.filter((_, i) => i % 4 === 3) };
  expect(maskBounds(alpha)).toEqual({ x: 0, y: 0, width: region.width, height: region.height });
}

/** Two plans that feed the model the same pixels and put its output in the same place. */
function expectSamePlan(a: MaskedEditPlan, b: MaskedEditPlan): void {
  expect(a.region).toEqual(b.region);
  expect(a.size).toEqual(b.size);
  for (const part of ["canvas", "selection", "denoise", "blend", "modelImage", "modelMask"] as const) {
    expect([a[part].width, a[part].height, a[part].channels], part).toEqual([b[part].width, b[part].height, b[part].channels]);
    expect(Buffer.from(a[part].data).equals(Buffer.from(b[part].data)), part).toBe(true);
  }
}

/**
 * The same layer at the same place. Pixels may differ by a level or two: onnxruntime's CPU kernels
 * do not promise the same last bit from one run to the next (now and then a byte of the model's
 * output flips by one, which resampling and colour matching spread a little).
 */
function expectSameLayer(a: EngineResult, b: EngineResult): void {
  expect(a.region).toEqual(b.region);
  expect([a.image.width, a.image.height, a.image.channels]).toEqual([b.image.width, b.image.height, b.image.channels]);
  let worst = 0;
  for (let i = 0; i < a.image.data.length; i++) worst = Math.max(worst, Math.abs(a.image.data[i]! - b.image.data[i]!));
  expect(worst).toBeLessThanOrEqual(2);
}

function scaled(region: Region, by: number): Region {
  return { x: region.x * by, y: region.y * by, width: region.width * by, height: region.height * by };
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
  it.each(["tiny-sd", "tiny-sd-inpaint"])("returns an RGBA layer in document pixels, within the selection, whose alpha stays inside it (%s)", async (model) => {
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 70, 50);
    // The photograph is a region of a larger document.
    const at = { x: 40, y: 25, width: cat.width, height: cat.height };
    const result = await inpaint({ model, image: cat, mask, canvas: { width: 600, height: 400 }, region: at });
    expectTightLayer(result);
    const { image, region } = result;
    // The layer is in document pixels: inside the selection's bounds, moved to where the photograph lies.
    expect(contains(translate(maskBounds(mask)!, at.x, at.y), region)).toBe(true);
    let inside = 0;
    for (let y = 0; y < region.height; y++) {
      for (let x = 0; x < region.width; x++) {
        const alpha = image.data[(y * region.width + x) * 4 + 3]!;
        const selected = mask.data[(region.y + y - at.y) * mask.width + (region.x + x - at.x)]!;
        expect(alpha).toBeLessThanOrEqual(selected);
        if (alpha === 255) inside++;
      }
    }
    // ...and it covers the selection: every fully selected pixel shows some of the result.
    for (let y = 0; y < mask.height; y++) {
      for (let x = 0; x < mask.width; x++) if (mask.data[y * mask.width + x] === 255) expect(alphaAt(result, at.x + x, at.y + y)).toBeGreaterThan(0);
    }
    expect(inside).toBeGreaterThan(3000); // the middle of the selection (about 11,000 px) is fully generated; its feathered rim fades
    expect(alphaAt(result, at.x + 230, at.y + 120)).toBe(255);
  });

  it("refuses a mask of another size and an empty selection, and repaints everything when everything is selected", async () => {
    const wrong = ellipseSelection(cat.width - 1, cat.height, 100, 100, 40, 40);
    await expect(inpaint({ image: cat, mask: wrong })).rejects.toMatchObject({ code: "invalid_job", message: expect.stringMatching(/must be the size of the image/) });
    const empty: Pixels = { width: cat.width, height: cat.height, channels: 1, data: new Uint8Array(cat.width * cat.height) };
    await expect(inpaint({ image: cat, mask: empty })).rejects.toMatchObject({ code: "invalid_job", message: expect.stringMatching(/selection is empty/) });
    const all: Pixels = { ...empty, data: new Uint8Array(cat.width * cat.height).fill(255) };
    const result = await inpaint({ image: cat, mask: all });
    expectTightLayer(result);
    // the canvas edge does not erode a selection that touches it: the layer is the whole image
    expect(result.region).toEqual(regionOf(cat));
    // the middle of a whole-image selection is fully generated
    expect(alphaAt(result, 225, 150)).toBe(255);
  });

  it("refuses pixels placed outside the document, larger than the region they cover, or not in its proportions", async () => {
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 70, 50);
    const canvas = { width: 600, height: 400 };
    await expect(inpaint({ image: cat, mask, canvas, region: { x: 200, y: 0, width: cat.width, height: cat.height } })).rejects.toMatchObject({
      code: "invalid_job",
      message: "The region 451x300 at 200,0 is not inside the 600x400 document.",
    });
    await expect(inpaint({ image: cat, mask, canvas, region: { x: 0, y: 0, width: 300, height: 200 } })).rejects.toMatchObject({
      code: "invalid_job",
      message: expect.stringMatching(/^The image \(451x300\) is larger than the document region it covers \(300x200\)\.$/),
    });
    await expect(inpaint({ image: cat, mask, canvas, region: { x: 0, y: 0, width: 600, height: 300 } })).rejects.toMatchObject({
      code: "invalid_job",
      message: expect.stringMatching(/^The image \(451x300\) does not have the proportions of the region it covers \(600x300\)\.$/),
    });
  });

  it("takes the image and mask read scaled down, and returns the layer at document resolution", async () => {
    // The photograph at twice its size is a region of a bigger document; the panel sent it at half resolution.
    const canvas = { width: 1200, height: 800 };
    const at = { x: 200, y: 100, width: 2 * cat.width, height: 2 * cat.height };
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 70, 50);
    const half = await inpaint({ image: cat, mask, canvas, region: at });
    expectTightLayer(half);
    const selection = translate(scaled(maskBounds(mask)!, 2), at.x, at.y);
    expect(contains(regionOf(canvas), half.region)).toBe(true);
    // The layer covers the selection at document resolution, not the frame's: about twice the frame's
    // size, and inside the selection there (the blend keeps off the read's outermost selected pixels,
    // so scaled up it does not spill past them).
    expect(contains(selection, half.region)).toBe(true);
    expect(half.region.width).toBeGreaterThan(0.8 * selection.width);
    expect(half.region.height).toBeGreaterThan(0.8 * selection.height);
    expect(alphaAt(half, at.x + 2 * 230, at.y + 2 * 120)).toBe(255);
    // Every fully selected pixel shows some of the result, at its place in the document.
    let uncovered = 0;
    for (let y = 0; y < mask.height; y++) {
      for (let x = 0; x < mask.width; x++) if (mask.data[y * mask.width + x] === 255 && alphaAt(half, at.x + 2 * x, at.y + 2 * y) === 0) uncovered++;
    }
    expect(uncovered).toBe(0);
    // The same edit sent at full resolution gives (nearly) the same layer: its place depends on the document, not on the read.
    const full = await inpaint({
      image: await load("chelsea.png", at),
      mask: ellipseSelection(at.width, at.height, 2 * 230, 2 * 120, 2 * 70, 2 * 50, 12),
      canvas,
      region: at,
    });
    expectTightLayer(full);
    // Each edge within a few frame pixels (the masks are made at each read's resolution).
    const edges = (r: Region) => ({ left: r.x, top: r.y, right: r.x + r.width, bottom: r.y + r.height });
    const [fromHalf, fromFull] = [edges(half.region), edges(full.region)];
    for (const edge of ["left", "top", "right", "bottom"] as const) expect(Math.abs(fromHalf[edge] - fromFull[edge]), edge).toBeLessThanOrEqual(6);
  });

  it("gives the same layer when only the selection's context is sent as when the whole document is", async () => {
    // A big document, a small selection: the panel reads only what the model sees around it.
    const canvas = { width: 1804, height: 1200 };
    const document = await load("chelsea.png", canvas);
    const mask = ellipseSelection(canvas.width, canvas.height, 920, 480, 60, 40);
    const context = inpaintContext(maskBounds(mask)!, canvas, "automatic");
    expect(context.width * context.height).toBeLessThan((canvas.width * canvas.height) / 4);
    const sent = { image: cropImage(document, context), mask: cropImage(mask, context) };
    // The model gets the very same inputs either way...
    const options = { nativeResolution: 512, budget: BUDGET, strength: 1 };
    expectSamePlan(await planInpaint(sent.image, sent.mask, { canvas, region: context }, options), await planInpaint(document, mask, { canvas, region: regionOf(canvas) }, options));
    // ...and the layer goes to the same place.
    const whole = await inpaint({ image: document, mask, canvas, region: regionOf(canvas) });
    const part = await inpaint({ ...sent, canvas, region: context });
    expectTightLayer(part);
    expect(contains(context, part.region)).toBe(true);
    expectSameLayer(part, whole);
  });
});

describe("context around the selection", () => {
  it("shows the model more than the selection by default, the selection alone or the whole image on request", async () => {
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 40, 30);
    const plan = (context: "automatic" | "selection" | "image") =>
      planInpaint(cat, mask, { canvas: sizeOf(cat), region: regionOf(cat) }, { nativeResolution: 512, budget: BUDGET, strength: 1, context });
    const [automatic, selection, image] = await Promise.all([plan("automatic"), plan("selection"), plan("image")]);
    const area = (b: { width: number; height: number }) => b.width * b.height;
    expect(area(selection.region)).toBeLessThan(area(automatic.region));
    expect(image.region).toEqual({ x: 0, y: 0, width: 451, height: 300 });
    for (const [mode, p] of [["automatic", automatic], ["selection", selection], ["image", image]] as const) {
      // the panel's rule: what it reads for a selection is what the model sees
      expect(p.region, mode).toEqual(inpaintContext(maskBounds(mask)!, sizeOf(cat), mode));
      // the region contains the whole denoise mask
      expect(p.region.x).toBeLessThanOrEqual(230 - 40);
      expect(p.region.x + p.region.width).toBeGreaterThanOrEqual(230 + 40);
      expect([p.canvas.width, p.canvas.height]).toEqual([p.region.width, p.region.height]);
      expect(maskBounds(p.denoise)).not.toBeNull();
      expect(p.size.width % 64).toBe(0);
      expect(p.size.height % 64).toBe(0);
    }
  });

  it("cuts the context from a scaled-down read, and plans at the read's resolution", async () => {
    const mask = ellipseSelection(cat.width, cat.height, 230, 120, 40, 30);
    const canvas = { width: 2 * cat.width, height: 2 * cat.height };
    const p = await planInpaint(cat, mask, { canvas, region: regionOf(canvas) }, { nativeResolution: 512, budget: BUDGET, strength: 1 });
    const expected = inpaintContext(scaled(maskBounds(mask)!, 2), canvas, "automatic");
    expect(p.region).toEqual(expected);
    // the plan's pixels are the frame's: about half the region's size
    expect(Math.abs(p.canvas.width - expected.width / 2)).toBeLessThanOrEqual(1);
    expect(Math.abs(p.canvas.height - expected.height / 2)).toBeLessThanOrEqual(1);
    expect([p.selection.width, p.selection.height, p.blend.width, p.blend.height]).toEqual([p.canvas.width, p.canvas.height, p.canvas.width, p.canvas.height]);
  });
});

describe("extending the canvas", () => {
  const left = { left: 128, top: 0, right: 0, bottom: 0 };

  it("covers the new area fully and reaches into the old pixels only on the extended side", async () => {
    const result = await outpaint({ image: coffee, expand: left });
    expectTightLayer(result);
    // In the grown canvas (728x400): the layer starts at its left edge, not at x = -128.
    expect(result.region).toMatchObject({ x: 0, y: 0, height: 400 });
    expect(contains(regionOf(grownSize(coffee, left)), result.region)).toBe(true);
    for (const y of [0, 200, 399]) {
      expect(alphaAt(result, 0, y)).toBe(255);
      expect(alphaAt(result, 127, y)).toBe(255);
      expect(alphaAt(result, 128 + 8, y)).toBeGreaterThan(0); // the overlap band fades into the old pixels
      expect(alphaAt(result, 128 + 64, y)).toBe(0); // beyond the overlap band the old pixels stay
      expect(alphaAt(result, 727, y)).toBe(0);
    }
    expect(result.region.x + result.region.width).toBeLessThanOrEqual(128 + 64);
  });

  it("needs only the strip of the old picture the model sees, and refuses one that misses part of it in one sentence", async () => {
    const old = oldCanvasIn(coffee, left);
    const seen = intersect(outpaintContext(coffee, left)!, old)!;
    const strip = translate(seen, -old.x, -old.y);
    expect(strip.width).toBeLessThan(coffee.width);
    const sent = cropImage(coffee, strip);
    const options = { nativeResolution: 512, budget: BUDGET, strength: 1 };
    expectSamePlan(await planOutpaint(sent, left, { canvas: sizeOf(coffee), region: strip }, options), await planOutpaint(coffee, left, { canvas: sizeOf(coffee), region: regionOf(coffee) }, options));
    const whole = await outpaint({ image: coffee, expand: left });
    const part = await outpaint({ image: sent, expand: left, canvas: sizeOf(coffee), region: strip });
    expectTightLayer(part);
    expectSameLayer(part, whole);

    const short = { ...strip, width: strip.width - 16 };
    const refused = await outpaint({ image: cropImage(coffee, short), expand: left, canvas: sizeOf(coffee), region: short }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toMatchObject({ code: "invalid_job" });
    const { message } = refused as Error;
    expect(message).toBe(
      `Expanding the canvas needs the document's pixels in ${strip.width}x${strip.height} at ${strip.x},${strip.y}; the image sent covers ${short.width}x${short.height} at ${short.x},${short.y}.`,
    );
    expect(message.match(/\.(\s|$)/g)).toHaveLength(1);
  });

  it("refuses pixels read scaled down: the old pixels it keeps must be the document's", async () => {
    const half = await load("coffee.png", { width: coffee.width / 2, height: coffee.height / 2 });
    await expect(outpaint({ image: half, expand: left, canvas: sizeOf(coffee), region: regionOf(coffee) })).rejects.toMatchObject({
      code: "invalid_job",
      message: "Expanding the canvas needs the document's pixels at full resolution (got 300x200 for 600x400).",
    });
  });

  it("refuses an extension of 0 and one beyond the limits", async () => {
    await expect(outpaint({ image: coffee, expand: { left: 0, top: 0, right: 0, bottom: 0 } })).rejects.toMatchObject({ code: "invalid_job" });
    await expect(outpaint({ image: coffee, expand: { left: 5000, top: 0, right: 0, bottom: 0 } })).rejects.toMatchObject({ code: "invalid_job", message: expect.stringMatching(/at most 2048/) });
    // A document already at the pixel limit cannot grow (only the strip next to the growth is sent).
    const canvas = { width: 8192, height: 8192 };
    await expect(outpaint({ image: coffee, expand: { left: 8, top: 0, right: 0, bottom: 0 }, canvas, region: regionOf(coffee) })).rejects.toMatchObject({
      code: "invalid_job",
      message: `The extended canvas (8200x8192) would be over the ${LIMITS.maxImagePixels}-pixel limit.`,
    });
  });
});
