import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeUnet } from "../../../daemon/models/io-spec";
import { loadModelFolder, ModelFolderError } from "../../../daemon/models/model-folder";
import {
  describeTextEncoderSession,
  describeUnetSession,
  describeVaeDecoderSession,
  describeVaeEncoderSession,
  float16ToFloat32,
  float32ToFloat16,
  fromHalfBits,
  makeTensor,
  makeTimestep,
  sessionValues,
  tensorToFloat32,
  toHalfBits,
  type UnetIO,
} from "../../../daemon/models/session-io";
import { fixtureModelDir } from "../../helpers/model-fixtures";

const dir = fixtureModelDir("tiny-sd");
const file = (part: string) => path.join(dir, part, "model.onnx");
const sessions: Record<string, InferenceSession> = {};

beforeAll(async () => {
  for (const part of ["text_encoder", "unet", "vae_encoder", "vae_decoder"]) {
    sessions[part] = await InferenceSession.create(file(part), { executionProviders: ["cpu"], intraOpNumThreads: 1 });
  }
});
afterAll(async () => {
  for (const s of Object.values(sessions)) await s.release();
});

const session = (part: string) => sessions[part] as InferenceSession;

describe("describing real sessions of tiny-sd", () => {
  it("text encoder: input_ids int32", () => {
    expect(describeTextEncoderSession(session("text_encoder"), file("text_encoder"))).toEqual({
      inputIds: "input_ids",
      inputIdsType: "int32",
      hiddenState: "last_hidden_state",
      hiddenStateType: "float32",
      pooled: "pooler_output",
      hiddenStates: [],
    });
  });

  it("UNet: timestep float32 of rank 1, float32 sample", () => {
    expect(describeUnetSession(session("unet"), file("unet"))).toEqual({
      sample: "sample",
      sampleType: "float32",
      timestep: "timestep",
      timestepType: "float32",
      timestepRank: 1,
      timestepLength: null,
      encoderHiddenStates: "encoder_hidden_states",
      encoderHiddenStatesType: "float32",
      timestepCond: null,
      timestepCondType: null,
      timestepCondWidth: null,
      added: null,
      output: "out_sample",
      outputType: "float32",
    });
  });

  it("VAE encoder: latent_sample; VAE decoder: latent_sample -> sample", () => {
    expect(describeVaeEncoderSession(session("vae_encoder"), file("vae_encoder"))).toEqual({
      sample: "sample",
      sampleType: "float32",
      output: "latent_sample",
      outputType: "float32",
      outputKind: "latent_sample",
    });
    expect(describeVaeDecoderSession(session("vae_decoder"), file("vae_decoder"))).toEqual({
      latent: "latent_sample",
      latentType: "float32",
      output: "sample",
      outputType: "float32",
    });
  });

  it("agrees with what loadModelFolder read from the ONNX files without onnxruntime", async () => {
    const model = await loadModelFolder(dir);
    expect(model.io.textEncoder).toEqual(describeTextEncoderSession(session("text_encoder"), file("text_encoder")));
    expect(model.io.unet).toEqual(describeUnetSession(session("unet"), file("unet")));
    expect(model.io.vaeEncoder).toEqual(describeVaeEncoderSession(session("vae_encoder"), file("vae_encoder")));
    expect(model.io.vaeDecoder).toEqual(describeVaeDecoderSession(session("vae_decoder"), file("vae_decoder")));
    expect(sessionValues(session("unet")).inputs[0]).toEqual({
      name: "sample",
      type: "float32",
      shape: ["batch", "channels", "height", "width"],
    });
  });

  it("the built feeds run: token ids, a [1] timestep with batch 2, latents", async () => {
    const model = await loadModelFolder(dir);
    const te = model.io.textEncoder;
    const ids = makeTensor(te.inputIdsType, [49406, 320, 49407, ...new Array(74).fill(49407)], [1, 77]);
    const text = await session("text_encoder").run({ [te.inputIds]: ids });
    const hidden = text[te.hiddenState] as Tensor;
    expect(hidden.dims).toEqual([1, 77, 32]);
    const u = model.io.unet;
    const ehs = new Float32Array(2 * 77 * 32);
    ehs.set(tensorToFloat32(hidden), 0);
    ehs.set(tensorToFloat32(hidden), 77 * 32);
    const out = await session("unet").run({
      [u.sample]: makeTensor(u.sampleType, new Float32Array(2 * 4 * 8 * 8).fill(0.5), [2, 4, 8, 8]),
      [u.timestep]: makeTimestep({ ...u, timestepLength: 1 }, 981, 2),
      [u.encoderHiddenStates]: makeTensor(u.encoderHiddenStatesType, ehs, [2, 77, 32]),
    });
    const sample = out[u.output] as Tensor;
    expect(sample.dims).toEqual([2, 4, 8, 8]);
    expect(Number.isFinite(tensorToFloat32(sample)[0])).toBe(true);
  });
});

describe("io rules", () => {
  const f = "/m/unet/model.onnx";
  const inputs = (timestep: { type: string; shape: (number | string)[] | null }) => [
    { name: "sample", type: "float16", shape: ["b", 4, "h", "w"] },
    { name: "timestep", ...timestep },
    { name: "encoder_hidden_states", type: "float16", shape: ["b", 77, 768] },
  ];
  const outputs = [{ name: "out_sample", type: "float16", shape: null }];

  it("reads Optimum's int64 timestep, a scalar float timestep, fp16 exports", () => {
    expect(describeUnet(f, inputs({ type: "int64", shape: ["steps"] }), outputs)).toMatchObject({
      timestepType: "int64",
      timestepRank: 1,
      sampleType: "float16",
      outputType: "float16",
    });
    expect(describeUnet(f, inputs({ type: "float32", shape: [] }), outputs)).toMatchObject({ timestepRank: 0 });
    expect(describeUnet(f, inputs({ type: "int64", shape: [1] }), outputs)).toMatchObject({ timestepLength: 1 });
  });

  it("refuses what it cannot feed: text_embeds without time_ids, an int32 timestep", () => {
    const sdxl = [...inputs({ type: "float32", shape: [1] }), { name: "text_embeds", type: "float16", shape: ["b", 1280] }];
    expect(() => describeUnet(f, sdxl, outputs)).toThrow(ModelFolderError);
    expect(() => describeUnet(f, inputs({ type: "int32", shape: [1] }), outputs)).toThrow(/timestep is int32/);
  });

  it("reads LCM's timestep_cond width, and refuses one whose width is not fixed in one sentence", () => {
    const lcm = (shape: (number | string)[] | null) => [...inputs({ type: "float32", shape: [1] }), { name: "timestep_cond", type: "float32", shape }];
    expect(describeUnet(f, lcm(["batch", 256]), outputs)).toMatchObject({ timestepCond: "timestep_cond", timestepCondType: "float32", timestepCondWidth: 256 });
    expect(() => describeUnet(f, lcm(["batch", "cond_dim"]), outputs)).toThrow(/timestep_cond input has no fixed width .* the size of the guidance embedding it takes is unknown$/);
    expect(() => describeUnet(f, lcm(null), outputs)).toThrow(ModelFolderError);
    const extra = [...inputs({ type: "float32", shape: [1] }), { name: "mystery", type: "float32", shape: [1] }];
    expect(() => describeUnet(f, extra, outputs)).toThrow(/unsupported UNet inputs mystery \(float32\)/);
  });
});

describe("tensors", () => {
  it("makeTensor builds each declared dtype", () => {
    const i32 = makeTensor("int32", [1, 2.7, -3.2], [3]);
    expect(i32.type).toBe("int32");
    expect(Array.from(i32.data as Int32Array)).toEqual([1, 2, -3]);
    const i64 = makeTensor("int64", [981, 856.2857], [2]);
    expect(i64.type).toBe("int64");
    expect(Array.from(i64.data as BigInt64Array)).toEqual([981n, 856n]);
    const f32 = new Float32Array([0.5, 1.5]);
    expect(makeTensor("float32", f32, [1, 2]).data).toBe(f32);
    const f16 = makeTensor("float16", [1, -2, 0.5], [3]);
    expect(f16.type).toBe("float16");
    expect(Array.from(f16.data as Uint16Array)).toEqual([0x3c00, 0xc000, 0x3800]);
    expect(Array.from(tensorToFloat32(f16))).toEqual([1, -2, 0.5]);
    expect(() => makeTensor("float32", [1, 2, 3], [2, 2])).toThrow(RangeError);
    expect(makeTensor("float32", [7], []).dims).toEqual([]);
  });

  it("makeTimestep follows the declared dtype and rank", () => {
    const io = { timestepType: "int64", timestepRank: 1, timestepLength: null } as UnetIO;
    const t = makeTimestep(io, 999, 2);
    expect(t.dims).toEqual([2]);
    expect(Array.from(t.data as BigInt64Array)).toEqual([999n, 999n]);
    expect(makeTimestep({ ...io, timestepLength: 1 }, 999, 2).dims).toEqual([1]);
    const scalar = makeTimestep({ ...io, timestepType: "float32", timestepRank: 0 }, 856.25, 2);
    expect(scalar.dims).toEqual([]);
    expect(Array.from(scalar.data as Float32Array)).toEqual([856.25]);
  });

  it("float16 conversion rounds to nearest even and keeps subnormals, infinities and NaN", () => {
    expect(toHalfBits(1)).toBe(0x3c00);
    expect(toHalfBits(65504)).toBe(0x7bff);
    expect(toHalfBits(65520)).toBe(0x7c00); // rounds up to infinity
    expect(toHalfBits(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(fromHalfBits(toHalfBits(Number.NaN)))).toBe(true);
    expect(toHalfBits(2 ** -24)).toBe(0x0001);
    expect(toHalfBits(2 ** -25)).toBe(0x0000); // a tie rounds to even (0)
    expect(toHalfBits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(toHalfBits(-0)).toBe(0x8000);
    expect(toHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(toHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(fromHalfBits(0x3555)).toBeCloseTo(0.33325, 5);
    // Every finite half survives the round trip.
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToFloat16(float16ToFloat32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!isNaN && back[h] !== h) throw new Error(`half ${h.toString(16)} came back as ${back[h]?.toString(16)}`);
    }
  });
});
