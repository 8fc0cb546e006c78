/**
 * Dynamic int8 quantization of a graph's weight MatMuls and Convs, the method of onnxruntime's
 * quantize_dynamic: weights are quantized once here (symmetric, one scale per output channel),
 * activations at run time by DynamicQuantizeLinear (uint8, asymmetric, one scale per tensor).
 *
 *   MatMul(x, W)     -> DynamicQuantizeLinear(x) -> MatMulInteger(xq, Wq int8, xz, 0) -> Cast float
 *                       -> Mul(xs · ws[N]); onnxruntime fuses the chain into DynamicQuantizeMatMul,
 *                       whose uint8 x int8 kernel uses VNNI (vpdpbusd) where the CPU has it.
 *   Conv(x, W, b)    -> DynamicQuantizeLinear(x) -> ConvInteger(xq, Wq uint8, xz, 128) -> Cast float
 *                       -> Mul(xs · ws[M,1,1]) -> Add(b[M,1,1]). onnxruntime 1.30's CPU ConvInteger
 *                       takes one weight zero point only and is fast only with uint8 weights, so the
 *                       weights are symmetric around 128 with per-channel scales.
 *
 * Convs are quantized only when asked (QuantizeOptions.convs). Only MatMuls whose second input is a float32 initializer are touched (weights), never attention's
 * Q·Kᵀ or ·V products, whose both sides are activations. Initializers are read and written one at
 * a time (`read`, `write`), so a 3.4 GB UNet never sits in memory whole.
 */
import onnxProto from "onnx-proto";
import type { TensorBytes } from "./float-precision";

const { onnx } = onnxProto;
type Model = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;

/** Bump when the rewrite changes: cached int8 copies (and their optimized copies) are keyed by it. */
export const INT8_QUANTIZE_VERSION = 1;

const T = onnx.TensorProto.DataType;
const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL;
const INT_ATTRIBUTE = onnx.AttributeProto.AttributeType.INT;
/** Tensors from this size go to the weights file; smaller ones stay in the graph. */
const EXTERNAL_MIN_BYTES = 1024;

export interface QuantizeOptions {
  /**
   * Quantize Convs too; MatMuls always. Default false: onnxruntime 1.30's uint8 x uint8 ConvInteger
   * (no VNNI path, no NCHWc layout) measured no faster than its float32 Conv here, at twice the error.
   */
  convs?: boolean;
}

export interface QuantizeReport {
  matmuls: number;
  convs: number;
  /** Float weight bytes replaced by int8 ones. */
  floatBytes: number;
  int8Bytes: number;
}

/** Where each tensor's bytes went in the weights file: its offset (the caller writes them in order). */
export type WeightsWriter = (bytes: Uint8Array) => Promise<number>;

const dimsOf = (t: TensorProto): number[] => (t.dims ?? []).map(Number);

function floats(bytes: Uint8Array): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(bytes); // Buffer views may be unaligned
  return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
}

/** Per-column (last axis of [K, N]) symmetric int8: q = round(w / s), s = max|w| / 127. */
export function quantizeColumns(w: Float32Array, k: number, n: number): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(n);
  for (let r = 0; r < k; r++) {
    const row = r * n;
    for (let c = 0; c < n; c++) scales[c] = Math.max(scales[c]!, Math.abs(w[row + c]!));
  }
  for (let c = 0; c < n; c++) scales[c] = scales[c]! > 0 ? scales[c]! / 127 : 1;
  const q = new Int8Array(k * n);
  for (let r = 0; r < k; r++) {
    const row = r * n;
    for (let c = 0; c < n; c++) q[row + c] = Math.max(-127, Math.min(127, Math.round(w[row + c]! / scales[c]!)));
  }
  return { q, scales };
}

/** Per-output-channel (first axis of [M, ...]) symmetric around 128 in uint8: q = round(w / s) + 128. */
export function quantizeFilters(w: Float32Array, m: number): { q: Uint8Array; scales: Float32Array } {
  const size = w.length / m;
  const scales = new Float32Array(m);
  const q = new Uint8Array(w.length);
  for (let f = 0; f < m; f++) {
    let max = 0;
    for (let i = f * size; i < (f + 1) * size; i++) max = Math.max(max, Math.abs(w[i]!));
    const s = max > 0 ? max / 127 : 1;
    scales[f] = s;
    for (let i = f * size; i < (f + 1) * size; i++) q[i] = 128 + Math.max(-127, Math.min(127, Math.round(w[i]! / s)));
  }
  return { q, scales };
}

/** Rewrites `model` in place; every initializer of EXTERNAL_MIN_BYTES or more ends up in the weights file. */
export async function quantizeDynamic(model: Model, read: TensorBytes, write: WeightsWriter, location: string, options: QuantizeOptions = {}): Promise<QuantizeReport> {
  const graph = model.graph;
  if (!graph) throw new Error("the model has no graph");
  const convs = options.convs ?? false;
  const initializers = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) initializers.set(t.name ?? "", t);
  const uses = new Map<string, number>();
  const use = (name: string) => uses.set(name, (uses.get(name) ?? 0) + 1);
  for (const node of graph.node ?? []) for (const input of node.input ?? []) use(input);
  for (const output of graph.output ?? []) use(output.name ?? "");

  const report: QuantizeReport = { matmuls: 0, convs: 0, floatBytes: 0, int8Bytes: 0 };
  const added: TensorProto[] = [];
  const replaced = new Map<string, number>();
  const names = new Set<string>([...initializers.keys(), ...(graph.node ?? []).flatMap((n) => n.output ?? [])]);
  const fresh = (base: string): string => {
    let name = base;
    for (let i = 1; names.has(name); i++) name = `${base}_${i}`;
    names.add(name);
    return name;
  };
  // Written at once: the int8 weights of a full UNet (about 0.9 GB) are never all held.
  const tensor = async (name: string, dataType: number, dims: number[], bytes: Uint8Array): Promise<TensorProto> => {
    const t: TensorProto = { name, dataType, dims, rawData: bytes };
    await place(t, read, write, location);
    added.push(t);
    return t;
  };
  const scalar = (name: string, dataType: number, value: number) => tensor(name, dataType, [], dataType === T.INT8 ? new Uint8Array(Int8Array.of(value).buffer) : Uint8Array.of(value));

  const out: NodeProto[] = [];
  for (const node of graph.node ?? []) {
    const weight = initializers.get(node.input?.[1] ?? "");
    const dims = weight ? dimsOf(weight) : [];
    const isMatMul = node.opType === "MatMul" && (node.domain ?? "") === "" && weight?.dataType === T.FLOAT && dims.length === 2;
    const isConv = convs && node.opType === "Conv" && (node.domain ?? "") === "" && weight?.dataType === T.FLOAT && dims.length === 4 && (node.input?.length ?? 0) <= 3;
    const bytes = weight && (isMatMul || isConv) ? read(weight) : null;
    // Weights kept as float_data rather than raw bytes are left as they are (exports write raw bytes).
    if (!weight || !bytes || bytes.byteLength !== dims.reduce((a, b) => a * b, 4)) {
      out.push(node);
      continue;
    }
    const x = node.input![0]!;
    const y = node.output![0]!;
    const base = fresh(`${node.name || y}_int8`);
    const w = floats(bytes);
    report.floatBytes += w.byteLength;
    const [xq, xs, xz, yi, yf, scale] = ["x_q", "x_scale", "x_zero", "int32", "float", "scale"].map((s) => fresh(`${base}/${s}`)) as [string, string, string, string, string, string];
    out.push({ name: `${base}/quantize`, opType: "DynamicQuantizeLinear", input: [x], output: [xq, xs, xz] });
    if (isMatMul) {
      const [k, n] = dims as [number, number];
      const { q, scales } = quantizeColumns(w, k, n);
      const wq = await tensor(`${base}/W`, T.INT8, [k, n], new Uint8Array(q.buffer));
      const wz = await scalar(`${base}/W_zero`, T.INT8, 0);
      const ws = await tensor(`${base}/W_scale`, T.FLOAT, [n], new Uint8Array(scales.buffer));
      out.push({ name: `${base}/matmul`, opType: "MatMulInteger", input: [xq, wq.name!, xz, wz.name!], output: [yi] });
      out.push({ name: `${base}/cast`, opType: "Cast", input: [yi], output: [yf], attribute: [{ name: "to", type: INT_ATTRIBUTE, i: T.FLOAT }] });
      out.push({ name: `${base}/scale`, opType: "Mul", input: [xs, ws.name!], output: [scale] });
      out.push({ name: `${base}/dequantize`, opType: "Mul", input: [yf, scale], output: [y] });
      report.matmuls++;
      report.int8Bytes += q.byteLength;
    } else {
      const m = dims[0]!;
      const { q, scales } = quantizeFilters(w, m);
      const wq = await tensor(`${base}/W`, T.UINT8, dims, q);
      const wz = await scalar(`${base}/W_zero`, T.UINT8, 128);
      const ws = await tensor(`${base}/W_scale`, T.FLOAT, [m, 1, 1], new Uint8Array(scales.buffer));
      out.push({ name: `${base}/conv`, opType: "ConvInteger", input: [xq, wq.name!, xz, wz.name!], output: [yi], attribute: node.attribute ?? [] });
      out.push({ name: `${base}/cast`, opType: "Cast", input: [yi], output: [yf], attribute: [{ name: "to", type: INT_ATTRIBUTE, i: T.FLOAT }] });
      out.push({ name: `${base}/scale`, opType: "Mul", input: [xs, ws.name!], output: [scale] });
      const biasName = node.input?.[2];
      if (biasName) {
        const bias = initializers.get(biasName);
        const scaled = fresh(`${base}/scaled`);
        out.push({ name: `${base}/dequantize`, opType: "Mul", input: [yf, scale], output: [scaled] });
        // A bias initializer broadcasts over H and W as [M, 1, 1]; any other bias tensor is reshaped at run time.
        if (bias && dimsOf(bias).length === 1) {
          const b = await tensor(`${base}/B`, bias.dataType ?? T.FLOAT, [m, 1, 1], new Uint8Array(read(bias)));
          replaced.set(biasName, (replaced.get(biasName) ?? 0) + 1);
          out.push({ name: `${base}/bias`, opType: "Add", input: [scaled, b.name!], output: [y] });
        } else {
          const shape = await tensor(`${base}/B_shape`, T.INT64, [3], new Uint8Array(BigInt64Array.of(BigInt(m), 1n, 1n).buffer));
          const reshaped = fresh(`${base}/B_reshaped`);
          out.push({ name: `${base}/bias_shape`, opType: "Reshape", input: [biasName, shape.name!], output: [reshaped] });
          out.push({ name: `${base}/bias`, opType: "Add", input: [scaled, reshaped], output: [y] });
        }
      } else {
        out.push({ name: `${base}/dequantize`, opType: "Mul", input: [yf, scale], output: [y] });
      }
      report.convs++;
      report.int8Bytes += q.byteLength;
    }
    replaced.set(weight.name!, (replaced.get(weight.name!) ?? 0) + 1);
  }
  graph.node = out;
  // A float weight goes when every node that read it now reads its int8 copy.
  const kept = (graph.initializer ?? []).filter((t) => (replaced.get(t.name ?? "") ?? 0) < (uses.get(t.name ?? "") ?? 0));
  for (const t of kept) await place(t, read, write, location);
  graph.initializer = [...kept, ...added];
  return report;
}

/** Moves a tensor's bytes into the weights file (from the source's external file, or inline), or keeps a small one inline. */
async function place(t: TensorProto, read: TensorBytes, write: WeightsWriter, location: string): Promise<void> {
  const bytes = read(t);
  if (bytes.byteLength < EXTERNAL_MIN_BYTES) {
    if (t.dataLocation === EXTERNAL) {
      t.rawData = new Uint8Array(bytes);
      t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
      t.externalData = [];
    }
    return;
  }
  const offset = await write(bytes);
  t.rawData = new Uint8Array(0);
  t.floatData = [];
  t.int32Data = [];
  t.int64Data = [];
  t.dataLocation = EXTERNAL;
  t.externalData = [
    { key: "location", value: location },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(bytes.byteLength) },
  ];
}
