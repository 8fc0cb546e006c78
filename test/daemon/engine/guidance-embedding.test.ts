/**
 * LCM with a guidance embedding (tiny-lcm: a UNet with time_cond_proj_dim 256, as LCM Dreamshaper
 * v7's export takes `timestep_cond`): our embedding and the UNet call against diffusers' goldens
 * (reference/model-io/tiny-lcm), and a whole generation that feeds it without a guidance batch.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { generate, type LoadedModel } from "../../../daemon/engine/pipeline/generate";
import { expFloat32, guidanceEmbedding, guidanceEmbeddingBatch } from "../../../daemon/engine/pipeline/guidance-embedding";
import { TorchGenerator } from "../../../daemon/engine/rng";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { makeTensor, makeTimestep, tensorToFloat32 } from "../../../daemon/models/session-io";
import { fixtureModelDir, FIXTURES_DIR } from "../../helpers/model-fixtures";

const GOLDENS = path.join(FIXTURES_DIR, "reference", "model-io", "tiny-lcm");
const Value = z.object({ file: z.string(), shape: z.array(z.number().int()), dtype: z.literal("float32") });
const Manifest = z.object({
  entries: z.array(z.object({ id: z.string(), note: z.string(), inputs: z.record(z.string(), Value), outputs: z.record(z.string(), Value) })),
});
const manifest = Manifest.parse(JSON.parse(readFileSync(path.join(GOLDENS, "manifest.json"), "utf8")));

function floats(file: string): Float32Array {
  const buf = readFileSync(path.join(GOLDENS, file));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/** guidance_scale of an entry: its note says w = guidance - 1. */
function guidanceOf(note: string): number {
  const w = /w=([0-9.]+)/.exec(note)?.[1];
  if (w === undefined) throw new Error(`no w in ${note}`);
  return Number(w) + 1;
}

let model: LoadedModel | undefined;
async function lcm(): Promise<LoadedModel> {
  if (!model) {
    const folder = await loadModelFolder(fixtureModelDir("tiny-lcm"));
    model = { folder, sessions: new ModelSessions(folder, { devices: ["cpu"] }), tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) };
  }
  return model;
}

afterAll(async () => {
  await model?.sessions.release();
});

describe("LCM guidance embedding", () => {
  it("the folder's UNet declares timestep_cond 256 wide", async () => {
    const { folder } = await lcm();
    expect(folder.io.unet.timestepCond).toBe("timestep_cond");
    expect(folder.io.unet.timestepCondWidth).toBe(256);
  });

  for (const entry of manifest.entries) {
    it(`matches diffusers' get_guidance_scale_embedding and UNet output (${entry.id})`, async () => {
      const guidance = guidanceOf(entry.note);
      const cond = entry.inputs.timestep_cond!;
      const [rows, width] = cond.shape as [number, number];
      const ours = guidanceEmbeddingBatch(guidance, width, rows);
      const embeddingError = maxAbsDiff(ours, floats(cond.file));
      expect(embeddingError).toBeLessThanOrEqual(1e-6);

      const { sessions } = await lcm();
      const unet = await sessions.unet();
      const { io } = unet;
      const sample = entry.inputs.sample!;
      const hidden = entry.inputs.encoder_hidden_states!;
      const t = floats(entry.inputs.timestep!.file)[0]!;
      const out = await unet.session.run({
        [io.sample]: makeTensor(io.sampleType, floats(sample.file), sample.shape),
        [io.timestep]: makeTimestep(io, t, rows),
        [io.encoderHiddenStates]: makeTensor(io.encoderHiddenStatesType, floats(hidden.file), hidden.shape),
        [io.timestepCond!]: makeTensor(io.timestepCondType!, ours, cond.shape),
      });
      const want = floats(entry.outputs.out_sample!.file);
      const scale = Math.max(1, ...Array.from(want, Math.abs));
      expect(maxAbsDiff(tensorToFloat32(out[io.output]!), want)).toBeLessThanOrEqual(2e-5 * scale);
    });
  }

  it("computes exp in float32 within one ulp of the exact value", () => {
    for (let d = -20; d <= 20; d += 0.0137) {
      const want = Math.exp(Math.fround(d));
      expect(Math.abs(expFloat32(Math.fround(d)) - want)).toBeLessThanOrEqual(want * 2 ** -23);
    }
  });

  it("is sin/cos of 1000 (guidance - 1) times the frequencies, zero-padded to an odd width", () => {
    const e = guidanceEmbedding(1, 8);
    expect(Array.from(e)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    const odd = guidanceEmbedding(2, 5);
    expect(odd[4]).toBe(0);
    expect(odd[0]).toBeCloseTo(Math.sin(1000), 4);
    expect(odd[2]).toBeCloseTo(Math.cos(1000), 4);
  });

  it("a generation feeds it and runs one batch row per image: no negative prompt, no guidance batch", async () => {
    const loaded = await lcm();
    let negativeEncoded: unknown = "not called";
    let rows = 0;
    const images = await generate(
      loaded,
      { prompts: ["a lighthouse at dusk"], negativePrompts: ["blurry"], width: 64, height: 64, steps: 4, guidance: 8, scheduler: "lcm", truncatePrompt: true },
      new TorchGenerator(7),
      { trace: { prompt: (_p, negative) => (negativeEncoded = negative), step: (_i, _n, latents) => (rows = latents.length / (4 * 8 * 8)) } },
    );
    expect(negativeEncoded).toBeNull();
    expect(rows).toBe(1);
    expect(images).toHaveLength(1);
    expect(images[0]!.rgb.length).toBe(64 * 64 * 3);
    // The guidance reaches the UNet: another guidance gives another picture from the same seed.
    const other = await generate(
      loaded,
      { prompts: ["a lighthouse at dusk"], negativePrompts: [""], width: 64, height: 64, steps: 4, guidance: 2, scheduler: "lcm", truncatePrompt: true },
      new TorchGenerator(7),
    );
    expect(Buffer.from(other[0]!.rgb).equals(Buffer.from(images[0]!.rgb))).toBe(false);
  });
});
