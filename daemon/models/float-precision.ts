/**
 * float16 <-> float32 for whole ONNX graphs. onnxruntime's CPU provider has few float16 kernels:
 * an fp16 export runs there slowly, wrapped in casts, and attention fusion skips it. On the CPU
 * the daemon runs a float32 copy instead (./float32-copies); scripts/replicas.ts uses the other
 * direction to make float16 replicas of the fp16 repos.
 *
 * What changes: every initializer of the one type, every declared input, output and value type,
 * Cast's `to`, the random ops' `dtype`, Constant's and ConstantOfShape's tensors, in subgraphs too.
 */
import { closeSync, openSync, readSync } from "node:fs";
import path from "node:path";
import onnxProto from "onnx-proto";
import { float16ToFloat32, float32ToFloat16 } from "./session-io";

const { onnx } = onnxProto;
type Model = onnxProto.onnx.ModelProto;
type Graph = onnxProto.onnx.IGraphProto;
type TensorProto = onnxProto.onnx.ITensorProto;

export const FLOAT = onnx.TensorProto.DataType.FLOAT;
export const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;
export type FloatDataType = typeof FLOAT | typeof FLOAT16;

/** The tensor's values as bytes in little-endian order, read from wherever the proto keeps them. */
export type TensorBytes = (tensor: TensorProto) => Uint8Array;

function inlineBytes(tensor: TensorProto): Uint8Array {
  if (tensor.rawData && tensor.rawData.length > 0) return tensor.rawData;
  if (tensor.dataType === FLOAT && tensor.floatData?.length) return new Uint8Array(Float32Array.from(tensor.floatData).buffer);
  if (tensor.dataType === FLOAT16 && tensor.int32Data?.length) return new Uint8Array(Uint16Array.from(tensor.int32Data).buffer);
  return new Uint8Array(0);
}

/** Reads initializers inline or from their external file (relative to the model's folder). */
export function initializerReader(dir: string): TensorBytes & { close(): void } {
  const files = new Map<string, number>();
  const read = ((tensor) => {
    if (tensor.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return tensor.rawData ?? new Uint8Array(0);
    const entry = (key: string) => (tensor.externalData ?? []).find((e) => e.key === key)?.value ?? undefined;
    const location = entry("location");
    if (!location) throw new Error(`initializer ${tensor.name} has external data without a location`);
    let fd = files.get(location);
    if (fd === undefined) {
      fd = openSync(path.join(dir, location), "r");
      files.set(location, fd);
    }
    const length = Number(entry("length"));
    const out = new Uint8Array(length);
    readSync(fd, out, 0, length, Number(entry("offset") ?? 0));
    return out;
  }) as TensorBytes & { close(): void };
  read.close = () => {
    for (const fd of files.values()) closeSync(fd);
  };
  return read;
}

/** Values of a float tensor converted to the other float type, as little-endian bytes. */
export function convertValues(bytes: Uint8Array, from: FloatDataType): Uint8Array {
  const aligned = bytes.byteOffset % 4 === 0 && bytes.byteLength % 4 === 0 ? bytes : new Uint8Array(bytes); // a copy: Buffer.slice is a view
  if (from === FLOAT16) {
    return new Uint8Array(float16ToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2)).buffer);
  }
  return new Uint8Array(float32ToFloat16(new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4)).buffer);
}

function convertTensor(tensor: TensorProto, from: FloatDataType, to: FloatDataType, read: TensorBytes): void {
  if (tensor.dataType !== from) return;
  tensor.rawData = convertValues(read(tensor), from);
  tensor.floatData = [];
  tensor.int32Data = [];
  tensor.externalData = [];
  tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
  tensor.dataType = to;
}

const TYPED_ATTRIBUTES: Record<string, string> = { Cast: "to", RandomNormalLike: "dtype", RandomUniformLike: "dtype", RandomNormal: "dtype", RandomUniform: "dtype", EyeLike: "dtype" };

/** Inputs whose type the operator fixes to float32 whatever the data's: Resize's roi and scales. */
function float32Inputs(graph: Graph): Set<string> {
  const names = new Set<string>();
  for (const node of graph.node ?? []) if (node.opType === "Resize" || node.opType === "Upsample") for (const name of (node.input ?? []).slice(1, 3)) if (name) names.add(name);
  return names;
}

function convertGraph(graph: Graph, from: FloatDataType, to: FloatDataType, read: TensorBytes): void {
  const keep = from === FLOAT ? float32Inputs(graph) : new Set<string>();
  for (const tensor of graph.initializer ?? []) if (!keep.has(tensor.name ?? "")) convertTensor(tensor, from, to, read);
  for (const value of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) {
    const tensorType = value.type?.tensorType;
    if (tensorType && tensorType.elemType === from) tensorType.elemType = to;
  }
  for (const node of graph.node ?? []) {
    // ConstantOfShape without a value makes float32 zeros: give it zeros of the new type.
    if (node.opType === "ConstantOfShape" && from === FLOAT && !(node.attribute ?? []).some((a) => a.name === "value")) {
      const zero = onnx.TensorProto.create({ dataType: to, dims: [1], rawData: new Uint8Array(to === FLOAT16 ? 2 : 4) });
      node.attribute = [...(node.attribute ?? []), onnx.AttributeProto.create({ name: "value", type: onnx.AttributeProto.AttributeType.TENSOR, t: zero })];
    }
    const typed = TYPED_ATTRIBUTES[node.opType ?? ""];
    for (const attribute of node.attribute ?? []) {
      if (attribute.name === typed && Number(attribute.i) === from) attribute.i = to;
      if (attribute.t && !(node.opType === "Constant" && (node.output ?? []).some((o) => keep.has(o)))) convertTensor(attribute.t, from, to, inlineBytes);
      if (attribute.g) convertGraph(attribute.g, from, to, read);
      for (const sub of attribute.graphs ?? []) convertGraph(sub, from, to, read);
    }
  }
}

/** Converts `model` in place; `read` gives each initializer's bytes (external ones from their file). */
export function convertModelFloats(model: Model, from: FloatDataType, to: FloatDataType, read: TensorBytes = inlineBytes): void {
  if (model.graph) convertGraph(model.graph, from, to, read);
}

/** Does the graph keep any weights in float16? */
export function hasFloat16Weights(model: Model): boolean {
  return (model.graph?.initializer ?? []).some((t) => t.dataType === FLOAT16);
}

/**
 * Moves every initializer of at least `minBytes` into one external data file (written by
 * `write(chunk)` in order), as onnxruntime reads them: location, offset, length.
 */
export async function externalizeInitializers(model: Model, location: string, write: (chunk: Uint8Array) => Promise<void>, minBytes = 1024): Promise<number> {
  let offset = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    const bytes = inlineBytes(tensor);
    if (bytes.length < minBytes || tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) continue;
    // onnxruntime memory-maps the file: keep each tensor 64-byte aligned, as onnx's own writer does.
    const pad = (64 - (offset % 64)) % 64;
    if (pad) await write(new Uint8Array(pad));
    offset += pad;
    await write(bytes);
    tensor.rawData = new Uint8Array(0);
    tensor.floatData = [];
    tensor.int32Data = [];
    tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    tensor.externalData = [
      { key: "location", value: location },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(bytes.length) },
    ];
    offset += bytes.length;
  }
  return offset;
}
