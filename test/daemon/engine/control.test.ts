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
import { controlKeep, controlScale } from "../../../daemon/engine/pipeline/control";
import { generate } from "../../../daemon/engine/pipeline/generate";
import { TorchGenerator } from "../../../daemon/engine/rng";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer";
import { loadControlNetFolder } from "../../../daemon/models/controlnet-folder";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { pullModel } from "../../../daemon/models/pull";
import { loadRegistry } from "../../../daemon/models/registry";
import { makeTensor } from "../../../daemon/models/session-io";
import type { Pixels } from "../../../geometry";
import { replicas, writeReplica } from "../../../scripts/replicas";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { FakeHub } from "../models/fake-hub";

let hub: FakeHub;
let tmp: TempDir;
let engine: DiffusionEngine;
let square: Pixels;
const modelsDir = () => path.join(tmp.dir, "models");

beforeAll(async () => {
  hub = await FakeHub.start();
  tmp = await makeTempDir("underpaint-control-engine-");
  const registry = loadRegistry();
  for (const replica of await replicas()) {
    if (replica.repo !== "TensorStack/stable-diffusion-v1-5-onnx" && replica.repo !== "TensorStack/ControlNet-onnx") continue;
    const dir = path.join(tmp.dir, "hub", replica.repo.replace("/", "--"));
    await writeReplica(replica, dir);
    const pin = [...registry.models, ...registry.controlNets].find((e) => e.repo === replica.repo)?.revision;
    await hub.addRepo(replica.repo, { dir, ...(pin ? { commit: pin } : {}) });
  }
  const env = { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" };
  for (const id of ["sd-1.5-control", "controlnet-canny", "controlnet-scribble"]) await pullModel(id, { modelsDir: modelsDir(), env });
  engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"] });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="white"/><rect x="16" y="16" width="32" height="32" fill="black"/></svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  square = { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}, 180_000);
afterAll(async () => {
  await engine?.dispose();
  await hub?.close();
  await tmp?.cleanup();
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
