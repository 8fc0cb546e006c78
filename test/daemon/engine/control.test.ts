/**
 * ControlNet in the engine (daemon/engine/pipeline/control.ts) on replicas of
 * TensorStack/stable-diffusion-v1-5-onnx (with its control UNet) and TensorStack/ControlNet-onnx,
 * pulled through the hub imitation as an artist's `models pull` pulls them.
 */
import path from "node:path";
import { Tensor } from "onnxruntime-node";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../../daemon/engine/engine";
import { controlForContext, planInpaint } from "../../../daemon/engine/masked-edit";
import { controlKeep, controlScale } from "../../../daemon/engine/pipeline/control";
import { generate } from "../../../daemon/engine/pipeline/generate";
import { TorchGenerator } from "../../../daemon/engine/rng";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer";
import { cropImage } from "../../../daemon/imaging/image";
import { resizeTo } from "../../../daemon/imaging/resample";
import { loadControlNetFolder } from "../../../daemon/models/controlnet-folder";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { makeTensor } from "../../../daemon/models/session-io";
import type { Pixels } from "../../../geometry";
import { pullControlModels, type ControlModels } from "../../helpers/control-models";

let models: ControlModels;
let engine: DiffusionEngine;
let square: Pixels;
const modelsDir = () => models.modelsDir;

/** An SVG drawing as 8-bit RGB pixels. */
async function drawing(width: number, height: number, shapes: string): Promise<Pixels> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${shapes}</svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

beforeAll(async () => {
  models = await pullControlModels("underpaint-control-engine-", ["sd-1.5-control", "controlnet-canny", "controlnet-scribble"]);
  engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"] });
  square = await drawing(64, 64, `<rect width="64" height="64" fill="white"/><rect x="16" y="16" width="32" height="32" fill="black"/>`);
}, 180_000);
afterAll(async () => {
  await engine?.dispose();
  await models?.close();
});

const base = {
  mode: "txt2img",
  model: "sd-1.5-control",
  prompt: "a house",
  negativePrompt: "",
  seed: 3,
  steps: 4,
  guidance: 7.5,
  scheduler: "euler",
  variations: 1,
  truncatePrompt: false,
  previews: false,
  output: { width: 64, height: 64 },
  size: { width: 64, height: 64 },
} as const satisfies GenerationJob;

async function picture(control?: Partial<NonNullable<GenerationJob["control"]>>): Promise<Uint8Array> {
  const job: GenerationJob = control ? { ...base, control: { kind: "canny", image: square, strength: 1, start: 0, end: 1, ...control } } : base;
  const [result] = await engine.run(job, { signal: new AbortController().signal, onProgress: () => {} });
  return result!.image.data;
}

const meanDifference = (a: Uint8Array, b: Uint8Array) => a.reduce((sum, v, i) => sum + Math.abs(v - b[i]!), 0) / a.length;

describe("the control schedule", () => {
  it("keeps the steps diffusers' controlnet_keep keeps: 1.0 - float(i / n < s or (i + 1) / n > e)", () => {
    for (const n of [1, 4, 10, 25]) {
      for (const [s, e] of [[0, 1], [0.2, 0.8], [0.5, 1], [0, 0.3], [0.25, 0.75]] as const) {
        for (let i = 0; i < n; i++) {
          const python = 1.0 - (i / n < s || (i + 1) / n > e ? 1 : 0);
          expect(controlKeep(i, n, s, e), `${i}/${n} in [${s}, ${e}]`).toBe(python);
          expect(controlScale({ strength: 0.7, start: s, end: e }, i, n)).toBe(0.7 * python);
        }
      }
    }
    // Ten steps, control over the middle half: steps 3..6 (0.3 >= 0.25 and 0.7 <= 0.75).
    expect(Array.from({ length: 10 }, (_, i) => controlKeep(i, 10, 0.25, 0.75))).toEqual([0, 0, 0, 1, 1, 1, 1, 0, 0, 0]);
  });
});

describe("a txt2img job with a control image", { timeout: 120_000 }, () => {
  it("at strength 0 is exactly the same job on the control UNet with zero residuals", async () => {
    const controlled = await picture({ strength: 0 });
    // The same job made by hand: the control UNet in the UNet's place, zero residuals of the ControlNet's shapes.
    const folder = await loadModelFolder(path.join(modelsDir(), "sd-1.5-control"), { devices: ["cpu"] });
    const sessions = new ModelSessions(folder, { devices: ["cpu"] });
    try {
      const controlUnet = await sessions.controlUnet();
      const net = await sessions.controlNet(await loadControlNetFolder(path.join(modelsDir(), "controlnet-canny"), { devices: ["cpu"] }));
      const probe = await net.session.run({
        [net.io.unet.sample]: makeTensor("float32", new Float32Array(2 * 4 * 64), [2, 4, 8, 8]),
        [net.io.unet.timestep]: makeTensor(net.io.unet.timestepType, [1], net.io.unet.timestepRank === 0 ? [] : [1]),
        [net.io.unet.encoderHiddenStates]: makeTensor(net.io.unet.encoderHiddenStatesType, new Float32Array(2 * 77 * 32), [2, 77, 32]),
        [net.io.cond]: makeTensor(net.io.condType, new Float32Array(2 * 3 * 64 * 64), [2, 3, 64, 64]),
        ...(net.io.scale ? { [net.io.scale.name]: new Tensor("float64", Float64Array.from([1]), [1]) } : {}),
      });
      const zeros = Object.fromEntries(
        [...controlUnet.io.residuals.down, controlUnet.io.residuals.mid].map((r) => {
          const dims = probe[r.name]!.dims;
          return [r.name, makeTensor(r.type, new Float32Array(dims.reduce((a, b) => a * b, 1)), dims)];
        }),
      );
      const unet = { ...controlUnet, session: { run: (feeds: Record<string, unknown>, outputs: string[]) => controlUnet.session.run({ ...(feeds as object), ...zeros } as never, outputs) } };
      const byHand = Object.create(sessions, { unet: { value: async () => unet } }) as ModelSessions;
      const [image] = await generate(
        { folder, sessions: byHand, tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) },
        { prompts: [base.prompt], negativePrompts: [""], width: 64, height: 64, steps: 4, guidance: 7.5, scheduler: "euler", truncatePrompt: false },
        new TorchGenerator(base.seed),
      );
      expect(Buffer.from(controlled).equals(Buffer.from(image!.rgb))).toBe(true);
    } finally {
      await sessions.release();
    }
  });

  it("follows the control image: a canny square changes the picture, more at strength 1 than at 0.3; a scribble of it differs again", async () => {
    const none = await picture({ strength: 0 });
    const full = await picture({ strength: 1 });
    const weak = await picture({ strength: 0.3 });
    const late = await picture({ strength: 1, start: 0.5, end: 1 });
    const scribble = await picture({ kind: "scribble", strength: 1 });
    const strong = meanDifference(full, none);
    const slight = meanDifference(weak, none);
    console.log(`mean |difference| from strength 0: strength 1 ${strong.toFixed(2)}, 0.3 ${slight.toFixed(2)}, second half only ${meanDifference(late, none).toFixed(2)}`);
    expect(slight).toBeGreaterThan(0);
    expect(strong).toBeGreaterThan(slight);
    expect(meanDifference(late, full)).toBeGreaterThan(0);
    expect(meanDifference(scribble, full)).toBeGreaterThan(0);
  });

  it("steers img2img too: the same init image and seed give another picture with control than at strength 0", async () => {
    const job = (strength: number): GenerationJob => ({ ...base, mode: "img2img", image: square, strength: 0.8, control: { kind: "canny", image: square, strength, start: 0, end: 1 } });
    const [steered, plain] = await Promise.all([1, 0].map(async (s) => (await engine.run(job(s), { signal: new AbortController().signal, onProgress: () => {} }))[0]!.image.data));
    expect(meanDifference(steered!, plain!)).toBeGreaterThan(0);
  });

  it("is refused in one sentence with a ControlNet of another kind, or one not installed", async () => {
    await expect(picture({ kind: "depth" })).rejects.toMatchObject({ code: "model_not_found", message: "No depth ControlNet is installed: pull one (npx underpaint models pull controlnet-depth)." });
    await expect(picture({ kind: "canny", controlNet: "controlnet-scribble" })).rejects.toMatchObject({ code: "invalid_job", message: 'The ControlNet "controlnet-scribble" follows scribble, not canny.' });
    await expect(picture({ controlNet: "nope" })).rejects.toMatchObject({ code: "model_not_found" });
  });
});

describe("inpaint and outpaint with a control image", { timeout: 120_000 }, () => {
  const run = async (job: GenerationJob) => (await engine.run(job, { signal: new AbortController().signal, onProgress: () => {} }))[0]!;
  /** A landscape: sky over a field, a sun to the left. */
  const scene = () => drawing(64, 64, `<rect width="64" height="64" fill="#7ab"/><rect y="40" width="64" height="24" fill="#5a3"/><circle cx="12" cy="12" r="6" fill="#fd4"/>`);
  /** The middle of the picture selected. */
  const mask = (): Pixels => {
    const data = new Uint8Array(64 * 64);
    for (let y = 16; y < 48; y++) data.fill(255, y * 64 + 16, y * 64 + 48);
    return { width: 64, height: 64, channels: 1, data };
  };
  /** A circle's outline inside the selection, for canny to find. */
  const ring = () => drawing(64, 64, `<rect width="64" height="64" fill="white"/><circle cx="32" cy="32" r="10" fill="none" stroke="black" stroke-width="3"/>`);
  const { output: _output, size: _size, mode: _mode, ...whole } = base;
  const settings = { ...whole, steps: 3 };
  const inpaintJob = async (control?: Partial<NonNullable<GenerationJob["control"]>>): Promise<GenerationJob> => ({
    ...settings,
    mode: "inpaint",
    image: await scene(),
    mask: mask(),
    strength: 1,
    context: "image",
    canvas: { width: 64, height: 64 },
    region: { x: 0, y: 0, width: 64, height: 64 },
    budget: 64 * 64,
    ...(control ? { control: { kind: "canny", image: await ring(), strength: 1, start: 0, end: 1, ...control } } : {}),
  });
  /** The result layer over `under` (RGB, the layer's region inside it). */
  const over = (under: Pixels, result: Awaited<ReturnType<typeof run>>): Uint8Array => {
    const out = Uint8Array.from(under.data);
    const { image: layer, region } = result;
    for (let y = 0; y < layer.height; y++) {
      for (let x = 0; x < layer.width; x++) {
        const s = (y * layer.width + x) * 4;
        const d = ((region.y + y) * under.width + region.x + x) * 3;
        const a = layer.data[s + 3]! / 255;
        for (let c = 0; c < 3; c++) out[d + c] = Math.round(layer.data[s + c]! * a + under.data[d + c]! * (1 - a));
      }
    }
    return out;
  };
  // The same layer: onnxruntime's CPU kernels now and then differ by a level between identical runs on a busy machine.
  const same = (a: { image: Pixels; region: unknown }, b: { image: Pixels; region: unknown }) => {
    expect(a.region).toEqual(b.region);
    expect(a.image.data.length).toBe(b.image.data.length);
    expect(a.image.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.image.data[i]!)), 0)).toBeLessThanOrEqual(2);
  };

  it("inpaint keeps every pixel outside the selection, repaints inside it otherwise than without control, and at strength 0 is the job without control", async () => {
    const original = await scene();
    const selection = mask();
    const plain = await run(await inpaintJob());
    const steered = await run(await inpaintJob({ strength: 1 }));
    const zero = await run(await inpaintJob({ strength: 0 }));
    const inside = (picture: Uint8Array) => picture.filter((_, i) => selection.data[Math.floor(i / 3)]! > 0);
    for (const result of [steered, plain]) {
      const picture = over(original, result);
      for (let p = 0; p < 64 * 64; p++) {
        if (selection.data[p]) continue;
        expect([0, 1, 2].map((c) => picture[p * 3 + c]), `pixel ${p % 64},${Math.floor(p / 64)}`).toEqual([0, 1, 2].map((c) => original.data[p * 3 + c]));
      }
    }
    const difference = meanDifference(inside(over(original, steered)), inside(over(original, plain)));
    console.log(`inpaint: mean |difference| inside the selection with control vs without: ${difference.toFixed(2)}`);
    expect(difference).toBeGreaterThan(0);
    same(zero, plain);
  });

  it("inpaint cuts the model's context out of the control image: a job on the context alone with the control image cut to it makes the same layer", async () => {
    // A small selection in a larger picture: the model sees only the selection's surroundings.
    const original = await drawing(128, 128, `<rect width="128" height="128" fill="#7ab"/><rect y="80" width="128" height="48" fill="#5a3"/>`);
    const selection = new Uint8Array(128 * 128);
    for (let y = 56; y < 72; y++) selection.fill(255, y * 128 + 56, y * 128 + 72);
    // Strokes on the selection and a heavy frame far outside the model's context: cut to the context only the strokes remain.
    const control = await drawing(128, 128, `<rect width="128" height="128" fill="white"/><circle cx="64" cy="64" r="7" fill="none" stroke="black" stroke-width="2"/><rect x="6" y="6" width="116" height="116" fill="none" stroke="black" stroke-width="12"/>`);
    const job: Extract<GenerationJob, { mode: "inpaint" }> = {
      ...(await inpaintJob({ strength: 1, image: control })),
      image: original,
      mask: { width: 128, height: 128, channels: 1, data: selection },
      canvas: { width: 128, height: 128 },
      region: { x: 0, y: 0, width: 128, height: 128 },
      context: "selection",
    } as Extract<GenerationJob, { mode: "inpaint" }>;
    const plan = await planInpaint(job.image, job.mask, job, { nativeResolution: 256, strength: 1, budget: 64 * 64, context: "selection" });
    expect(plan.region.width).toBeLessThan(128);
    expect(plan.region.height).toBeLessThan(128);
    const cut = (p: Pixels) => cropImage(p, plan.region);
    const onContext = (controlImage: Pixels): GenerationJob => ({ ...job, image: cut(original), mask: cut(job.mask), region: plan.region, control: { ...job.control!, image: controlImage } });
    const whole = await run(job);
    same(await run(onContext(cut(job.control!.image))), whole);
    // What the ControlNet is given is the control image cut to the context, not the whole image squeezed into it.
    const given = controlForContext(job.control!.image, job.region, plan);
    expect([given.width, given.height]).toEqual([plan.region.width, plan.region.height]);
    expect(Buffer.from(given.data).equals(Buffer.from(cut(job.control!.image).data))).toBe(true);
    expect(Buffer.from(given.data).equals(Buffer.from((await resizeTo(job.control!.image, plan.region)).data))).toBe(false);
  });

  it("outpaint: the control image covers the grown document and steers the new area; at strength 0 it is the job without control", async () => {
    const original = await scene();
    const guide = await drawing(128, 64, `<rect width="128" height="64" fill="white"/><circle cx="96" cy="32" r="14" fill="none" stroke="black" stroke-width="3"/>`);
    const job = (strength?: number): GenerationJob => ({
      ...settings,
      mode: "outpaint",
      image: original,
      expand: { left: 0, top: 0, right: 64, bottom: 0 },
      canvas: { width: 64, height: 64 },
      region: { x: 0, y: 0, width: 64, height: 64 },
      budget: 128 * 64,
      ...(strength !== undefined ? { control: { kind: "canny", image: guide, strength, start: 0, end: 1 } } : {}),
    });
    const plain = await run(job());
    const steered = await run(job(1));
    same(await run(job(0)), plain);
    expect(steered.region).toEqual(plain.region);
    const difference = meanDifference(steered.image.data, plain.image.data);
    console.log(`outpaint: mean |difference| of the new area's layer with control vs without: ${difference.toFixed(2)}`);
    expect(difference).toBeGreaterThan(0);
    // A control image in the old document's proportions does not cover the grown one.
    await expect(run({ ...job(1), control: { kind: "canny", image: square, strength: 1, start: 0, end: 1 } })).rejects.toMatchObject({
      code: "invalid_job",
      message: "The control image (64x64) does not have the proportions of the 128x64 document area it covers.",
    });
  });
});
