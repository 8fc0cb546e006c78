/**
 * scripts/onnx-builder/taesd.ts: taesd.py's networks at full size (the published parameter counts),
 * with diffusers' AutoencoderTiny wrappers at the image ends, run on onnxruntime.
 */
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fillRandom } from "../../scripts/onnx-builder/graph";
import { TAESD_OPSET, taesdDecoder, taesdEncoder, writeTaesdFolder } from "../../scripts/onnx-builder/taesd";
import { makeTempDir, type TempDir } from "../helpers/model-fixtures";

let tmp: TempDir;
const sessions: Record<"decoder" | "encoder" | "rawDecoder" | "rawEncoder", InferenceSession> = {} as never;

beforeAll(async () => {
  tmp = await makeTempDir("underpaint-taesd-builder-");
  await writeTaesdFolder(path.join(tmp.dir, "diffusers"));
  await writeTaesdFolder(path.join(tmp.dir, "raw"), { imageRange: "zero-to-one" });
  sessions.decoder = await InferenceSession.create(path.join(tmp.dir, "diffusers", "vae_decoder", "model.onnx"));
  sessions.encoder = await InferenceSession.create(path.join(tmp.dir, "diffusers", "vae_encoder", "model.onnx"));
  sessions.rawDecoder = await InferenceSession.create(path.join(tmp.dir, "raw", "vae_decoder", "model.onnx"));
  sessions.rawEncoder = await InferenceSession.create(path.join(tmp.dir, "raw", "vae_encoder", "model.onnx"));
}, 60_000);
afterAll(async () => {
  for (const s of Object.values(sessions)) await s.release();
  await tmp.cleanup();
});

const random = (n: number, name: string, std = 1) => {
  const a = new Float32Array(n);
  fillRandom(a, name, std);
  return a;
};
const decode = async (session: InferenceSession, z: Float32Array, h: number, w: number) => {
  const out = (await session.run({ latent_sample: new Tensor("float32", z, [1, 4, h, w]) })).sample!;
  return { dims: out.dims, data: out.data as Float32Array };
};
const encode = async (session: InferenceSession, x: Float32Array, h: number, w: number) => {
  const out = (await session.run({ sample: new Tensor("float32", x, [1, 3, h, w]) })).latent_sample!;
  return { dims: out.dims, data: out.data as Float32Array };
};
const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe("the TAESD builder", () => {
  it("has taesd.py's parameter counts (1,222,531 in the decoder, 1,222,532 in the encoder)", () => {
    expect(taesdDecoder().counts().params).toBe(1_222_531);
    expect(taesdEncoder().counts().params).toBe(1_222_532);
    // About 141 GFLOP to decode 64x64 latents into a 512x512 picture: some 3% of an SD 1.5 VAE decoder's.
    expect(taesdDecoder().counts().flop / 1e9).toBeCloseTo(141.4, 0);
  });

  it("writes the graphs with AutoencoderTiny's ONNX inputs and outputs at opset 14", async () => {
    const model = onnxProto.onnx.ModelProto.decode(await readFile(path.join(tmp.dir, "diffusers", "vae_decoder", "model.onnx")));
    expect(Number(model.opsetImport?.[0]?.version)).toBe(TAESD_OPSET);
    const dims = (v: onnxProto.onnx.IValueInfoProto) => v.type!.tensorType!.shape!.dim!.map((d) => d.dimParam || Number(d.dimValue));
    expect(model.graph!.input!.map((v) => [v.name, dims(v)])).toEqual([["latent_sample", ["batch_size", 4, "height_latent", "width_latent"]]]);
    expect(model.graph!.output!.map((v) => [v.name, dims(v)])).toEqual([["sample", ["batch_size", 3, "height", "width"]]]);
    expect(sessions.encoder.inputNames).toEqual(["sample"]);
    expect(sessions.encoder.outputNames).toEqual(["latent_sample"]);
  });

  it("decodes [1, 4, h, w] into [1, 3, 8h, 8w] and encodes back to [1, 4, h, w]", async () => {
    const decoded = await decode(sessions.decoder, random(4 * 5 * 7, "z"), 5, 7);
    expect(decoded.dims).toEqual([1, 3, 40, 56]);
    const encoded = await encode(sessions.encoder, decoded.data, 40, 56);
    expect(encoded.dims).toEqual([1, 4, 5, 7]);
  });

  it("wraps taesd.py's nets (images in [0, 1]) in diffusers' convention: decoder 2y - 1 unclamped, encoder of (x + 1) / 2", async () => {
    const z = random(4 * 6 * 6, "latents", 1.5);
    const [wrapped, raw] = [await decode(sessions.decoder, z, 6, 6), await decode(sessions.rawDecoder, z, 6, 6)];
    expect(maxAbsDiff(wrapped.data, raw.data.map((y) => 2 * y - 1))).toBeLessThan(1e-5);
    // Not clamped to the image range: random weights overshoot [-1, 1] somewhere.
    expect(Math.max(...wrapped.data.map(Math.abs))).toBeGreaterThan(1);
    const unit = random(3 * 48 * 48, "image", 0.25).map((v) => v + 0.5);
    const [viaWrapper, direct] = [await encode(sessions.encoder, unit.map((v) => 2 * v - 1), 48, 48), await encode(sessions.rawEncoder, unit, 48, 48)];
    expect(maxAbsDiff(viaWrapper.data, direct.data)).toBeLessThan(1e-5);
  });

  it("soft-clamps the decoder's input by tanh(x / 3) * 3: a large latent and ten times it decode almost alike, small ones do not", async () => {
    const plane = 6 * 6;
    const big = random(4 * plane, "big", 1).map((v) => (v < 0 ? -12 : 12) + v);
    const small = random(4 * plane, "small", 0.05);
    const times = (a: Float32Array, k: number) => a.map((v) => v * k);
    const bigDiff = maxAbsDiff((await decode(sessions.decoder, big, 6, 6)).data, (await decode(sessions.decoder, times(big, 10), 6, 6)).data);
    const smallDiff = maxAbsDiff((await decode(sessions.decoder, small, 6, 6)).data, (await decode(sessions.decoder, times(small, 10), 6, 6)).data);
    // tanh(4) * 3 = 2.998 and tanh(40) * 3 = 3: what the network sees moves by < 0.002.
    expect(bigDiff).toBeLessThan(0.01);
    expect(smallDiff).toBeGreaterThan(10 * bigDiff);
  });
});
