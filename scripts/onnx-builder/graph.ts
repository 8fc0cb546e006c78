/**
 * A small ONNX graph builder: nodes, random-weight initializers and graph I/O, serialised with
 * onnx-proto (static protobufjs code for onnx.proto, so the ModelProto is typed and we need no
 * protoc step). Every value carries its shape for one reference input (e.g. batch 1 at 64x64
 * latents), so parameters and FLOP are counted from the graph's own nodes as it is built.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

export const FLOAT = 1;
export const INT32 = 6;
export const INT64 = 7;
export const BOOL = 9;

/** A tensor in the graph and its shape for the reference input. */
export interface Value {
  name: string;
  shape: number[];
}

/** Attribute values: integers are INT(S), strings STRING, `{ float }` FLOAT, `{ floats }` FLOATS, `{ tensor }` a 1-D FLOAT or INT64 TENSOR. */
export type Attr = number | number[] | string | { float: number } | { floats: number[] } | { tensor: { dataType: typeof FLOAT | typeof INT64; values: number[] } };

interface Initializer {
  name: string;
  dims: number[];
  dataType: number;
  /** Random weights are drawn when written, so a full-size UNet never sits in memory whole. */
  data: { kind: "random"; std: number; mean: number } | { kind: "float"; values: Float32Array } | { kind: "int64"; values: bigint[] };
  param: boolean;
}

export interface GraphCounts {
  /** Elements of the trainable weights (not the shape constants). */
  params: number;
  /** 2 x multiply-adds of Conv, MatMul and Gemm for the reference input. */
  flop: number;
  /** Bytes of all initializers. */
  weightBytes: number;
  nodes: number;
}

/** Deterministic pseudo-random numbers: a string hash seeds xorshift32 per initializer. */
function seedOf(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0 || 1;
}

/** Uniform values with the given mean and standard deviation (uniform on ±std·√3). */
export function fillRandom(out: Float32Array, name: string, std: number, mean = 0): void {
  let s = seedOf(name);
  const a = (std * Math.sqrt(3) * 2) / 4294967296;
  const b = mean - std * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) * a + b;
  }
}

const prod = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

export class Graph {
  readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly inits: Initializer[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly used = new Set<string>();
  private readonly constants = new Map<string, Value>();
  private counter = 0;
  flop = 0;
  private scopes: string[] = [];

  constructor(readonly name: string) {}

  /** Names nodes and weights under a module path, like the exporter's "/down_blocks.0/resnets.1/..." ("" adds no level). */
  scope<T>(name: string, body: () => T): T {
    if (name === "") return body();
    this.scopes.push(name);
    try {
      return body();
    } finally {
      this.scopes.pop();
    }
  }

  private prefix(): string {
    return this.scopes.join(".");
  }

  private unique(base: string): string {
    let name = base;
    while (this.used.has(name)) name = `${base}_${++this.counter}`;
    this.used.add(name);
    return name;
  }

  input(name: string, elemType: number, dims: (number | string)[], ref: number[]): Value {
    this.used.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return { name, shape: ref };
  }

  /**
   * Exposes `value` as a graph output named `name` and returns it under that name: the node that
   * made it is renamed (as the exporter names its outputs), a graph input gets an Identity node.
   */
  output(value: Value, name: string, dims: (number | string)[], elemType = FLOAT): Value {
    const producer = this.nodes.find((n) => n.output.includes(value.name));
    if (value.name !== name && producer) {
      this.used.add(name);
      for (const n of this.nodes) {
        n.input = n.input.map((i) => (i === value.name ? name : i));
        n.output = n.output.map((o) => (o === value.name ? name : o));
      }
    } else if (value.name !== name) {
      this.node("Identity", [value], {}, value.shape, name);
    }
    this.outputs.push(valueInfo(name, elemType, dims));
    return { name, shape: value.shape };
  }

  /**
   * Replaces the graph output `output` by another value, chosen from the nodes, renamed, and drops
   * what only the old output read (e.g. a VAE encoder made to end before its in-graph sampling).
   */
  retarget(output: string, choose: (nodes: readonly { opType: string; input: string[]; output: string[] }[]) => { value: string; name: string; dims: (number | string)[] }): void {
    const at = this.outputs.findIndex((o) => o.name === output);
    if (at < 0) throw new Error(`${this.name}: no output ${output}`);
    const nodes = this.nodes.map((n) => ({ opType: n.opType ?? "", input: n.input ?? [], output: n.output ?? [] }));
    const target = choose(nodes);
    for (const n of this.nodes) {
      n.input = n.input.map((i) => (i === target.value ? target.name : i));
      n.output = n.output.map((o) => (o === target.value ? target.name : o));
    }
    this.outputs[at] = valueInfo(target.name, FLOAT, target.dims);
    const read = new Set(this.outputs.map((o) => o.name));
    const kept = [...this.nodes].reverse().filter((n) => {
      if (!n.output.some((o) => read.has(o))) return false;
      for (const i of n.input) read.add(i);
      return true;
    });
    this.nodes.splice(0, this.nodes.length, ...kept.reverse());
    const inits = this.inits.filter((i) => read.has(i.name));
    this.inits.splice(0, this.inits.length, ...inits);
  }

  /** A trainable weight, uniform random with std (fan-in scaled by the caller). */
  weight(name: string, dims: number[], std: number, mean = 0): Value {
    const full = this.unique(this.prefix() ? `${this.prefix()}.${name}` : name);
    this.inits.push({ name: full, dims, dataType: FLOAT, data: { kind: "random", std, mean }, param: true });
    return { name: full, shape: dims };
  }

  /** A trainable weight with fixed values (norm scales of 1, biases of 0). */
  fixedWeight(name: string, dims: number[], value: number): Value {
    const full = this.unique(this.prefix() ? `${this.prefix()}.${name}` : name);
    this.inits.push({ name: full, dims, dataType: FLOAT, data: { kind: "float", values: new Float32Array(prod(dims)).fill(value) }, param: true });
    return { name: full, shape: dims };
  }

  /** A constant (not a parameter), shared by value. */
  constFloat(values: number[] | Float32Array, dims: number[]): Value {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    const key = `f:${dims.join("x")}:${data.length <= 16 ? Array.from(data).join(",") : `${this.counter++}`}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.unique(`const_f${this.constants.size}`);
    this.inits.push({ name, dims, dataType: FLOAT, data: { kind: "float", values: data }, param: false });
    const value = { name, shape: dims };
    this.constants.set(key, value);
    return value;
  }

  constInt64(values: number[], dims: number[] = [values.length]): Value {
    const key = `i:${dims.join("x")}:${values.join(",")}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.unique(`const_i${this.constants.size}`);
    this.inits.push({ name, dims, dataType: INT64, data: { kind: "int64", values: values.map(BigInt) }, param: false });
    const value = { name, shape: dims };
    this.constants.set(key, value);
    return value;
  }

  /** Adds a node; `shapes` are its outputs' reference shapes. Conv/MatMul/Gemm add to the FLOP count. */
  node(op: string, inputs: (Value | "")[], attrs: Record<string, Attr>, shape: number[], outName?: string): Value {
    return this.nodeN(op, inputs, attrs, [shape], outName ? [outName] : undefined)[0]!;
  }

  nodeN(op: string, inputs: (Value | "")[], attrs: Record<string, Attr>, shapes: number[][], outNames?: string[]): Value[] {
    const base = this.scopes.length ? `/${this.scopes.join("/")}/${op}` : `/${op}`;
    const nodeName = this.unique(base);
    const outs = shapes.map((shape, i) => ({ name: outNames?.[i] ?? this.unique(`${nodeName}_output_${i}`), shape }));
    for (const o of outs) this.used.add(o.name);
    this.nodes.push(
      onnx.NodeProto.create({
        name: nodeName,
        opType: op,
        input: inputs.map((v) => (v === "" ? "" : v.name)),
        output: outs.map((o) => o.name),
        attribute: Object.entries(attrs).map(([name, value]) => attribute(name, value)),
      }),
    );
    this.flop += flopOf(op, inputs, outs[0]!.shape);
    return outs;
  }

  counts(): GraphCounts {
    let params = 0;
    let weightBytes = 0;
    for (const init of this.inits) {
      const n = prod(init.dims);
      if (init.param) params += n;
      weightBytes += n * (init.dataType === INT64 ? 8 : 4);
    }
    return { params, flop: this.flop, weightBytes, nodes: this.nodes.length };
  }

  /**
   * Writes `file` (model.onnx). With `externalData` (a file name beside it, e.g. "weights.pb"),
   * every float weight goes there, as the diffusers export does for the UNet.
   */
  async write(file: string, options: { externalData?: string; opset?: number } = {}): Promise<void> {
    await mkdir(path.dirname(file), { recursive: true });
    const initializer: InstanceType<typeof onnx.TensorProto>[] = [];
    let fd: number | null = null;
    let offset = 0;
    if (options.externalData) fd = openSync(path.join(path.dirname(file), options.externalData), "w");
    try {
      for (const init of this.inits) {
        const bytes = initializerBytes(init);
        if (fd !== null && init.param) {
          writeSync(fd, bytes);
          initializer.push(
            onnx.TensorProto.create({
              name: init.name,
              dims: init.dims,
              dataType: init.dataType,
              dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
              externalData: [
                { key: "location", value: options.externalData },
                { key: "offset", value: String(offset) },
                { key: "length", value: String(bytes.length) },
              ],
            }),
          );
          offset += bytes.length;
        } else {
          initializer.push(onnx.TensorProto.create({ name: init.name, dims: init.dims, dataType: init.dataType, rawData: bytes }));
        }
      }
    } finally {
      if (fd !== null) closeSync(fd);
    }
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: "underpaint-onnx-builder",
      producerVersion: "1",
      opsetImport: [{ domain: "", version: options.opset ?? 17 }],
      graph: onnx.GraphProto.create({ name: this.name, node: this.nodes, initializer, input: this.inputs, output: this.outputs }),
    });
    await writeFile(file, onnx.ModelProto.encode(model).finish());
  }
}

function initializerBytes(init: Initializer): Uint8Array {
  const n = prod(init.dims);
  if (init.data.kind === "int64") {
    const out = new BigInt64Array(init.data.values);
    return new Uint8Array(out.buffer);
  }
  if (init.data.kind === "float") return new Uint8Array(init.data.values.buffer, init.data.values.byteOffset, init.data.values.byteLength);
  const out = new Float32Array(n);
  fillRandom(out, init.name, init.data.std, init.data.mean);
  return new Uint8Array(out.buffer);
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute(name: string, value: Attr) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === "number") return onnx.AttributeProto.create({ name, type: T.INT, i: value });
  if (typeof value === "string") return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(value) });
  if (Array.isArray(value)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: value });
  if ("float" in value) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: value.float });
  if ("tensor" in value) {
    const { dataType, values } = value.tensor;
    const data = dataType === INT64 ? new BigInt64Array(values.map(BigInt)) : Float32Array.from(values);
    return onnx.AttributeProto.create({ name, type: T.TENSOR, t: { dims: [values.length], dataType, rawData: new Uint8Array(data.buffer) } });
  }
  return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: value.floats });
}

/** 2 x multiply-adds of one node for the reference shapes. */
function flopOf(op: string, inputs: (Value | "")[], out: number[]): number {
  if (op === "Conv") {
    // Weight [out, in / group, kh, kw]: each output element is in/group x kh x kw multiply-adds.
    const w = (inputs[1] as Value).shape;
    return 2 * prod(out) * prod(w.slice(1));
  }
  if (op === "MatMul" || op === "Gemm") {
    const a = (inputs[0] as Value).shape;
    return 2 * prod(out) * a[a.length - 1]!;
  }
  return 0;
}
