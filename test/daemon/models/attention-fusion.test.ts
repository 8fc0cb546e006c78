import { readFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { fuseAttention } from "../../../daemon/models/attention-fusion";
import type { SessionFactory } from "../../../daemon/models/execution-provider";
import { withFusedAttention, type BytesSessionFactory } from "../../../daemon/models/fused-attention-sessions";
import { fixtureModelDir } from "../../helpers/model-fixtures";

const { onnx } = onnxProto;
const sd = fixtureModelDir("tiny-sd");
const file = (part: string) => path.join(sd, part, "model.onnx");
const decode = async (part: string) => onnx.ModelProto.decode(await readFile(file(part)));
const cpu: InferenceSession.SessionOptions = { executionProviders: ["cpu"], graphOptimizationLevel: "all", logSeverityLevel: 3 };
const opCount = (model: onnxProto.onnx.IModelProto, op: string) => model.graph!.node!.filter((n) => n.opType === op).length;

/** Deterministic inputs in [-1, 1). */
function noise(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 31) - 1);
}

async function maxDifference(a: InferenceSession, b: InferenceSession, feeds: Record<string, Tensor>): Promise<{ diff: number; scale: number }> {
  const [ra, rb] = [await a.run(feeds), await b.run(feeds)];
  let diff = 0;
  let scale = 0;
  for (const name of a.outputNames) {
    const x = ra[name]!.data as Float32Array;
    const y = rb[name]!.data as Float32Array;
    expect(y.length).toBe(x.length);
    for (let i = 0; i < x.length; i++) {
      diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(x[i]!));
    }
  }
  return { diff, scale };
}

const fromBytes = (model: onnxProto.onnx.IModelProto, folder: string) =>
  InferenceSession.create(onnx.ModelProto.encode(model).finish(), { ...cpu, extra: { session: { model_external_initializers_file_folder_path: folder } } });

describe("fuseAttention on diffusers' own ONNX export (the tiny SD fixture)", () => {
  it("replaces every UNet attention (self and cross) by one MultiHeadAttention with the export's heads and scale", async () => {
    const model = await decode("unet");
    const softmaxes = opCount(model, "Softmax");
    const nodes = model.graph!.node!.length;
    const report = fuseAttention(model);
    expect(report).toEqual({ fused: softmaxes, skipped: 0 });
    expect(opCount(model, "Softmax")).toBe(0);
    const mha = model.graph!.node!.filter((n) => n.opType === "MultiHeadAttention");
    expect(mha).toHaveLength(softmaxes);
    expect(mha.every((n) => n.domain === "com.microsoft")).toBe(true);
    // The fixture's attention: 8 heads of 8 (64 channels), scale 1/sqrt(8) as exported.
    const heads = mha[0]!.attribute!.find((a) => a.name === "num_heads")!;
    const scale = mha[0]!.attribute!.find((a) => a.name === "scale")!;
    expect(Number(heads.i)).toBe(8);
    expect(scale.f).toBeCloseTo(1 / Math.sqrt(8), 6);
    expect(model.opsetImport!.some((o) => o.domain === "com.microsoft")).toBe(true);
    // The shape arithmetic of the unfused attention goes too.
    expect(model.graph!.node!.length).toBeLessThan(nodes / 2);
  });

  it("computes what the export computes, for guidance batches and cross-attention", async () => {
    const model = await decode("unet");
    fuseAttention(model);
    const original = await InferenceSession.create(file("unet"), cpu);
    const fused = await fromBytes(model, path.join(sd, "unet"));
    const feeds = {
      sample: new Tensor("float32", noise(2 * 4 * 32 * 32, 1), [2, 4, 32, 32]),
      timestep: new Tensor("float32", new Float32Array([801, 801]), [2]),
      encoder_hidden_states: new Tensor("float32", noise(2 * 77 * 32, 2), [2, 77, 32]),
    };
    const { diff, scale } = await maxDifference(original, fused, feeds);
    expect(scale).toBeGreaterThan(0.1);
    expect(diff).toBeLessThan(1e-5);
    await Promise.all([original.release(), fused.release()]);
  });

  it("fuses the VAE's single-head attention, decoding to the same picture", async () => {
    const model = await decode("vae_decoder");
    expect(fuseAttention(model)).toEqual({ fused: 1, skipped: 0 });
    const original = await InferenceSession.create(file("vae_decoder"), cpu);
    const fused = await fromBytes(model, path.join(sd, "vae_decoder"));
    const mha = model.graph!.node!.find((n) => n.opType === "MultiHeadAttention")!;
    expect(Number(mha.attribute!.find((a) => a.name === "num_heads")!.i)).toBe(1);
    const { diff, scale } = await maxDifference(original, fused, { latent_sample: new Tensor("float32", noise(4 * 32 * 32, 3), [1, 4, 32, 32]) });
    expect(scale).toBeGreaterThan(0.1);
    expect(diff).toBeLessThan(1e-5);
    await Promise.all([original.release(), fused.release()]);
  });

  it("leaves CLIP's causally masked attention alone", async () => {
    const model = await decode("text_encoder");
    const before = onnx.ModelProto.encode(model).finish();
    const report = fuseAttention(model);
    expect(report.fused).toBe(0);
    expect(report.skipped).toBe(opCount(model, "Softmax"));
    expect(Buffer.from(onnx.ModelProto.encode(model).finish()).equals(Buffer.from(before))).toBe(true);
  });

  it("keeps an attention whose scores something else reads (fusing it would compute it twice)", async () => {
    const model = await decode("unet");
    const softmax = model.graph!.node!.find((n) => n.opType === "Softmax")!;
    model.graph!.output!.push(onnx.ValueInfoProto.create({ name: softmax.output![0]! }));
    const total = opCount(model, "Softmax");
    expect(fuseAttention(model)).toEqual({ fused: total - 1, skipped: 1 });
    expect(model.graph!.node!.filter((n) => n.opType === "Softmax").map((n) => n.name)).toEqual([softmax.name]);
  });

  it("leaves float16 graphs alone (their exports upcast the scores on purpose)", async () => {
    const model = await decode("unet");
    model.graph!.initializer!.push(onnx.TensorProto.create({ name: "half", dims: [1], dataType: 10, rawData: new Uint8Array(2) }));
    expect(fuseAttention(model).fused).toBe(0);
    expect(opCount(model, "MultiHeadAttention")).toBe(0);
  });
});

describe("withFusedAttention", () => {
  const recording = () => {
    const files: string[] = [];
    const bytes: InferenceSession.SessionOptions[] = [];
    const inner: SessionFactory = async (p, o) => {
      files.push(p);
      return InferenceSession.create(p, o);
    };
    const fromBytes: BytesSessionFactory = async (b, o) => {
      bytes.push(o);
      return InferenceSession.create(b, o);
    };
    return { files, bytes, inner, fromBytes };
  };

  it("creates the UNet from its fused graph, reading the weights from the model's folder, and says so", async () => {
    const r = recording();
    const logs: string[] = [];
    const factory = withFusedAttention(r.inner, { fromBytes: r.fromBytes, log: (level, m) => logs.push(`${level}: ${m}`) });
    const session = await factory(file("unet"), cpu);
    expect(r.files).toEqual([]);
    expect(r.bytes).toHaveLength(1);
    expect((r.bytes[0]!.extra as { session: Record<string, string> }).session.model_external_initializers_file_folder_path).toBe(path.join(sd, "unet"));
    expect(logs).toEqual([expect.stringMatching(/^info: unet\/model\.onnx: 12 attention blocks fused into MultiHeadAttention/)]);
    expect(session.inputNames).toEqual(["sample", "timestep", "encoder_hidden_states"]);
    await session.release();
  });

  it("loads the file as it is when there is nothing to fuse, when optimisation is off (a prepared copy), or for other providers", async () => {
    const r = recording();
    const factory = withFusedAttention(r.inner, { fromBytes: r.fromBytes });
    await (await factory(file("text_encoder"), cpu)).release();
    await (await factory(file("unet"), { ...cpu, graphOptimizationLevel: "disabled" })).release();
    const dml: SessionFactory = withFusedAttention(async (p) => (r.files.push(`dml:${p}`), InferenceSession.create(p, cpu)), { fromBytes: r.fromBytes });
    await (await dml(file("unet"), { ...cpu, executionProviders: ["dml", "cpu"] })).release();
    expect(r.bytes).toEqual([]);
    expect(r.files).toEqual([file("text_encoder"), file("unet"), `dml:${file("unet")}`]);
  });

  it("falls back to the exported graph, with a warning, when the provider refuses the fused one", async () => {
    const r = recording();
    const logs: string[] = [];
    const factory = withFusedAttention(r.inner, { fromBytes: async () => Promise.reject(new Error("no kernel for MultiHeadAttention\nmore")), log: (level, m) => logs.push(`${level}: ${m}`) });
    const session = await factory(file("unet"), cpu);
    expect(r.files).toEqual([file("unet")]);
    expect(logs.at(-1)).toBe("warn: unet/model.onnx: onnxruntime refused the fused attention (no kernel for MultiHeadAttention); loading the model as exported.");
    await session.release();
  });

  it("leaves graphs over the size limit and unreadable files to the plain loader (whose error names the file)", async () => {
    const r = recording();
    await (await withFusedAttention(r.inner, { fromBytes: r.fromBytes, maxGraphBytes: 1024 })(file("unet"), cpu)).release();
    expect(r.files).toEqual([file("unet")]);
    const missing = path.join(sd, "nope", "model.onnx");
    await expect(withFusedAttention(r.inner, { fromBytes: r.fromBytes })(missing, cpu)).rejects.toThrow();
    expect(r.files.at(-1)).toBe(missing);
    expect(r.bytes).toEqual([]);
  });
});

/**
 * The attention torch 2 exports for F.scaled_dot_product_attention at opset 14 (diffusers'
 * AttnProcessor2_0): heads split by a Reshape whose target is built from the batch size and
 * constants, q and kᵀ each multiplied by Sqrt(scale) before their MatMul, the default scale
 * computed from the query's shape (or a constant when the caller gives one).
 */
function sdpaGraph(channels: number, heads: number, scale: number | "default") {
  const T = onnx.AttributeProto.AttributeType;
  const nodes: onnxProto.onnx.INodeProto[] = [];
  const inits: onnxProto.onnx.ITensorProto[] = [];
  let n = 0;
  const node = (opType: string, input: string[], attrs: onnxProto.onnx.IAttributeProto[] = []) => {
    const out = `v${n++}`;
    nodes.push({ opType, input, output: [out], attribute: attrs, name: `${opType}_${n}` });
    return out;
  };
  const i64 = (values: number[], dims: number[] = [values.length]) => {
    const name = `c${n++}`;
    inits.push({ name, dims, dataType: 7, rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer) });
    return name;
  };
  const f32 = (values: Float32Array, dims: number[]) => {
    const name = `c${n++}`;
    inits.push({ name, dims, dataType: 1, rawData: new Uint8Array(values.buffer.slice(0)) });
    return name;
  };
  const ints = (name: string, v: number[]) => ({ name, type: T.INTS, ints: v });
  const d = channels / heads;
  const weight = (seed: number) => f32(noise(channels * channels, seed).map((x) => x / Math.sqrt(channels)), [channels, channels]);
  const axis0 = [{ name: "axis", type: T.INT, i: 0 }];
  const batch = node("Unsqueeze", [node("Gather", [node("Shape", ["x"]), i64([0], [])], axis0), i64([0])]);
  const split = node("Concat", [batch, i64([-1]), i64([heads]), i64([d])], axis0);
  const headsOf = (w: number) => node("Transpose", [node("Reshape", [node("MatMul", ["x", weight(w)]), split])], [ints("perm", [0, 2, 1, 3])]);
  const q = headsOf(1);
  const k = headsOf(2);
  const v = headsOf(3);
  const kT = node("Transpose", [k], [ints("perm", [0, 1, 3, 2])]);
  let s: string;
  if (scale === "default") {
    const last = node("Slice", [node("Shape", [q]), i64([-1]), i64([2 ** 62])]);
    s = node("Cast", [node("Div", [f32(new Float32Array([1]), []), node("Sqrt", [node("Cast", [last], [{ name: "to", type: T.INT, i: 1 }])])])], [{ name: "to", type: T.INT, i: 1 }]);
  } else {
    s = f32(new Float32Array([scale]), []);
  }
  const scores = node("MatMul", [node("Mul", [q, node("Sqrt", [s])]), node("Mul", [kT, node("Sqrt", [s])])]);
  const mixed = node("MatMul", [node("Softmax", [scores], [{ name: "axis", type: T.INT, i: -1 }]), v]);
  const merged = node("Reshape", [node("Transpose", [mixed], [ints("perm", [0, 2, 1, 3])]), node("Concat", [batch, i64([-1]), i64([channels])], axis0)]);
  nodes.push({ opType: "MatMul", input: [merged, weight(4)], output: ["y"], name: "out" });
  const io = (name: string) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: "b" }, { dimParam: "s" }, { dimValue: channels }] } } } });
  return onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: "", version: 14 }], graph: { name: "sdpa", node: nodes, initializer: inits, input: [io("x")], output: [io("y")] } });
}

describe("fuseAttention on torch 2's scaled_dot_product_attention export", () => {
  for (const scale of ["default", 0.2] as const) {
    it(`fuses it with ${scale === "default" ? "the default scale (from the query's shape)" : "a given scale"} and computes the same`, async () => {
      const model = sdpaGraph(32, 4, scale);
      const original = await InferenceSession.create(onnx.ModelProto.encode(model).finish(), cpu);
      expect(fuseAttention(model)).toEqual({ fused: 1, skipped: 0 });
      const mha = model.graph!.node!.find((n) => n.opType === "MultiHeadAttention")!;
      expect(Number(mha.attribute!.find((a) => a.name === "num_heads")!.i)).toBe(4);
      const attr = mha.attribute!.find((a) => a.name === "scale");
      if (scale === "default") expect(attr).toBeUndefined();
      else expect(attr!.f).toBeCloseTo(0.2, 6);
      expect(model.graph!.node!.map((n) => n.opType).sort()).toEqual(["MatMul", "MatMul", "MatMul", "MatMul", "MultiHeadAttention"]);
      const fused = await InferenceSession.create(onnx.ModelProto.encode(model).finish(), cpu);
      const { diff, scale: magnitude } = await maxDifference(original, fused, { x: new Tensor("float32", noise(2 * 50 * 32, 9), [2, 50, 32]) });
      expect(magnitude).toBeGreaterThan(0.05);
      expect(diff).toBeLessThan(1e-5);
      await Promise.all([original.release(), fused.release()]);
    });
  }

  it("leaves it alone when q and k are scaled by different amounts", async () => {
    const model = sdpaGraph(32, 4, 0.2);
    const kScale = model.graph!.node!.filter((n) => n.opType === "Sqrt")[1]!;
    model.graph!.initializer!.push({ name: "other", dims: [], dataType: 1, rawData: new Uint8Array(new Float32Array([0.3]).buffer) });
    kScale.input = ["other"];
    expect(fuseAttention(model)).toEqual({ fused: 0, skipped: 1 });
  });
});
