/**
 * Reads the structure of a model.onnx (graph inputs/outputs, initializer dims, Conv nodes,
 * external-data references) WITHOUT loading its weights: a minimal protobuf wire-format
 * reader over a file handle that seeks past every raw_data payload. A 1.7 GB UNet with
 * embedded weights costs a few MB of reads.
 *
 * protobufjs and friends decode from one in-memory buffer, so they cannot skip cheaply.
 * Only the ONNX field numbers below are interpreted (onnx/onnx.proto); everything else is
 * skipped by wire type. Lengths are bounds-checked against the enclosing message and the
 * file size, so a truncated file is reported as such instead of crashing or hanging.
 */
import { open, type FileHandle } from "node:fs/promises";

// ---- ONNX field numbers (onnx.proto) ----
const MODEL = { irVersion: 1, producerName: 2, producerVersion: 3, graph: 7, opsetImport: 8 } as const;
const OPSET = { domain: 1, version: 2 } as const;
const GRAPH = { node: 1, initializer: 5, input: 11, output: 12 } as const;
const NODE = { input: 1, output: 2, opType: 4, attribute: 5, domain: 7 } as const;
const ATTRIBUTE = { t: 5 } as const;
const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9, externalData: 13, dataLocation: 14 } as const;
const ENTRY = { key: 1, value: 2 } as const;
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensorType: 1 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIMENSION = { value: 1, param: 2 } as const;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** TensorProto.DataType -> onnxruntime-common's Tensor.Type name (or a descriptive name). */
export const ONNX_ELEM_TYPES: Readonly<Record<number, string>> = {
  0: "undefined",
  1: "float32",
  2: "uint8",
  3: "int8",
  4: "uint16",
  5: "int16",
  6: "int32",
  7: "int64",
  8: "string",
  9: "bool",
  10: "float16",
  11: "float64",
  12: "uint32",
  13: "uint64",
  14: "complex64",
  15: "complex128",
  16: "bfloat16",
  17: "float8e4m3fn",
  18: "float8e4m3fnuz",
  19: "float8e5m2",
  20: "float8e5m2fnuz",
  21: "uint4",
  22: "int4",
};

/** Bytes per element, for sizing external data whose `length` key is absent. */
const ELEM_BYTES: Readonly<Record<number, number>> = {
  1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
};

export type OnnxParseErrorReason = "truncated" | "invalid" | "unreadable";

export class OnnxParseError extends Error {
  override readonly name = "OnnxParseError";
  constructor(
    readonly reason: OnnxParseErrorReason,
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface OnnxValueInfo {
  name: string;
  /** onnxruntime's name for the element type ("float32", "int64", ...). */
  type: string;
  /** Dims: numbers, symbolic names, or "?" for an unnamed dynamic dim. null when the shape is unknown. */
  shape: (number | string)[] | null;
}

export interface OnnxInitializer {
  dims: number[];
  /** onnxruntime's element type name. */
  type: string;
  /** Stored in another file (TensorProto.data_location = EXTERNAL). */
  external: boolean;
}

export interface OnnxNodeSummary {
  opType: string;
  inputs: string[];
  outputs: string[];
}

export interface OnnxExternalFile {
  /** The `location` key, relative to the model file's folder. */
  location: string;
  /** The file must be at least this long (max offset + length over its tensors). */
  requiredBytes: number;
}

export interface OnnxInfo {
  path: string;
  fileBytes: number;
  irVersion: number | null;
  producerName: string | null;
  producerVersion: string | null;
  opsets: { domain: string; version: number }[];
  /** Graph inputs that are not initializers (IR < 4 lists initializers among the inputs). */
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers: Map<string, OnnxInitializer>;
  /** Conv nodes, and single-input nodes that may carry a Conv weight (Cast, Identity, Constant, DequantizeLinear). */
  convNodes: OnnxNodeSummary[];
  nodeCount: number;
  /** The top-level graph's op types by operator domain ("" is the default ai.onnx domain), in node order. */
  opTypesByDomain: Map<string, Set<string>>;
  externalFiles: OnnxExternalFile[];
  /** Bytes of raw_data stored inside this file. */
  embeddedDataBytes: number;
}

/** Nodes through which a Conv weight may pass on its way from an initializer. */
const WEIGHT_PASSTHROUGH_OPS = new Set(["Cast", "Identity", "DequantizeLinear"]);

const PAGE_BYTES = 1 << 16;
const MAX_STRING_BYTES = 1 << 20;
/** Pages kept between steps; pages a step touches are never evicted while it parses. */
const KEEP_PAGES = 32;

/** Thrown by the sync parser when it needs a page that is not loaded yet; the driver loads it and retries. */
class NeedPage {
  constructor(readonly page: number) {}
}

/**
 * Sync protobuf cursor over a file held as a sparse set of 64 KiB pages. Parsing is
 * synchronous; a read that hits an unloaded page throws NeedPage, and `steps()` loads the
 * page and re-runs that step (one node, one initializer, ...) from its start. Skipping a
 * length-delimited value is just arithmetic, so raw_data payloads are never read.
 */
class Cursor {
  pos = 0;
  private pages = new Map<number, Buffer>();

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
    readonly path: string,
  ) {}

  truncated(what: string, end: number): OnnxParseError {
    return new OnnxParseError(
      "truncated",
      this.path,
      `${this.path} is truncated: ${what} needs the file to reach byte ${end}, but it has ${this.size} bytes`,
    );
  }

  invalid(what: string): OnnxParseError {
    return new OnnxParseError("invalid", this.path, `${this.path} is not a valid ONNX file: ${what} at byte ${this.pos}`);
  }

  /**
   * Runs sync parse steps from the current position until `end` (or a step returns true),
   * each step parsing one field.
   * A step that hits an unloaded page is re-run from its start once the page is loaded, so
   * a step must only mutate its caller's state after all of its reads (or be idempotent).
   */
  async steps(end: number, step: () => boolean | void): Promise<void> {
    let start = this.pos;
    while (this.pos < end) {
      try {
        const stop = step();
        start = this.pos;
        this.evict();
        if (stop === true) return;
      } catch (error) {
        if (!(error instanceof NeedPage)) throw error;
        await this.load(error.page);
        this.pos = start;
      }
    }
  }

  private async load(page: number): Promise<void> {
    const offset = page * PAGE_BYTES;
    const want = Math.min(PAGE_BYTES, this.size - offset);
    const buf = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.fh.read(buf, got, want - got, offset + got);
      if (bytesRead === 0) throw new OnnxParseError("truncated", this.path, `${this.path} shrank while being read`);
      got += bytesRead;
    }
    this.pages.set(page, buf);
  }

  private evict(): void {
    if (this.pages.size <= KEEP_PAGES) return;
    for (const key of this.pages.keys()) {
      this.pages.delete(key);
      if (this.pages.size <= KEEP_PAGES) return;
    }
  }

  private byteAt(pos: number): number {
    const page = this.pages.get(Math.floor(pos / PAGE_BYTES));
    if (!page) throw new NeedPage(Math.floor(pos / PAGE_BYTES));
    return page[pos % PAGE_BYTES] as number;
  }

  varint(end: number): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) {
        if (end >= this.size) throw this.truncated("a varint", this.pos + 1);
        throw this.invalid("a varint crosses the end of its message");
      }
      const b = this.byteAt(this.pos);
      this.pos++;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw this.invalid("a varint longer than 10 bytes");
  }

  /** Reads a length prefix and returns the end offset of the value, bounds-checked. */
  lengthEnd(end: number, what: string): number {
    const len = this.varint(end);
    const valueEnd = this.pos + len;
    if (valueEnd > this.size) throw this.truncated(what, valueEnd);
    if (valueEnd > end) throw this.invalid(`${what} overruns its enclosing message`);
    return valueEnd;
  }

  string(end: number, what: string): string {
    const valueEnd = this.lengthEnd(end, what);
    // Names are short; a huge one is corruption, and reading it would load it all.
    if (valueEnd - this.pos > MAX_STRING_BYTES) throw this.invalid(`${what} of ${valueEnd - this.pos} bytes`);
    const pageIndex = Math.floor(this.pos / PAGE_BYTES);
    const page = this.pages.get(pageIndex);
    if (page && valueEnd <= (pageIndex + 1) * PAGE_BYTES) {
      const text = page.toString("utf8", this.pos % PAGE_BYTES, this.pos % PAGE_BYTES + (valueEnd - this.pos));
      this.pos = valueEnd;
      return text;
    }
    const bytes = Buffer.allocUnsafe(valueEnd - this.pos);
    for (let i = 0; this.pos < valueEnd; i++, this.pos++) bytes[i] = this.byteAt(this.pos);
    return bytes.toString("utf8");
  }

  skip(wire: number, end: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint(end);
        return;
      case WIRE_FIXED64:
      case WIRE_FIXED32: {
        const valueEnd = this.pos + (wire === WIRE_FIXED64 ? 8 : 4);
        if (valueEnd > this.size) throw this.truncated("a fixed-size field", valueEnd);
        if (valueEnd > end) throw this.invalid("a fixed-size field overruns its message");
        this.pos = valueEnd;
        return;
      }
      case WIRE_LEN:
        this.pos = this.lengthEnd(end, "a field");
        return;
      default:
        throw this.invalid(`unsupported wire type ${wire}`);
    }
  }

  /** Reads a tag; returns [field, wire]. */
  tag(end: number): [number, number] {
    const key = this.varint(end);
    const field = Math.floor(key / 8);
    if (field === 0) throw this.invalid("field number 0");
    return [field, key % 8];
  }

  /** Repeated int64: unpacked (proto2, one varint per tag) or packed (length-delimited). */
  int64s(wire: number, end: number, into: number[]): void {
    if (wire === WIRE_VARINT) {
      into.push(toSigned(this.varint(end)));
    } else if (wire === WIRE_LEN) {
      const valueEnd = this.lengthEnd(end, "packed dims");
      while (this.pos < valueEnd) into.push(toSigned(this.varint(valueEnd)));
    } else {
      this.skip(wire, end);
    }
  }
}

/** int64 varints of negative numbers come out as 2^64 - n; dims are never that large. */
function toSigned(n: number): number {
  return n >= 2 ** 63 ? n - 2 ** 64 : n;
}

interface TensorHeader {
  name: string;
  dims: number[];
  dataType: number;
  external: boolean;
  externalEntries: Map<string, string>;
  rawBytes: number;
}

function readTensor(c: Cursor, end: number): TensorHeader {
  const t: TensorHeader = { name: "", dims: [], dataType: 0, external: false, externalEntries: new Map(), rawBytes: 0 };
  while (c.pos < end) {
    const [field, wire] = c.tag(end);
    if (field === TENSOR.dims) {
      c.int64s(wire, end, t.dims);
    } else if (field === TENSOR.dataType && wire === WIRE_VARINT) {
      t.dataType = c.varint(end);
    } else if (field === TENSOR.name && wire === WIRE_LEN) {
      t.name = c.string(end, "a tensor name");
    } else if (field === TENSOR.rawData && wire === WIRE_LEN) {
      // The weights themselves: step over them without reading.
      const valueEnd = c.lengthEnd(end, `raw_data of tensor "${t.name}"`);
      t.rawBytes += valueEnd - c.pos;
      c.pos = valueEnd;
    } else if (field === TENSOR.externalData && wire === WIRE_LEN) {
      const entryEnd = c.lengthEnd(end, "an external_data entry");
      let key = "";
      let value = "";
      while (c.pos < entryEnd) {
        const [f, w] = c.tag(entryEnd);
        if (f === ENTRY.key && w === WIRE_LEN) key = c.string(entryEnd, "a key");
        else if (f === ENTRY.value && w === WIRE_LEN) value = c.string(entryEnd, "a value");
        else c.skip(w, entryEnd);
      }
      t.externalEntries.set(key, value);
    } else if (field === TENSOR.dataLocation && wire === WIRE_VARINT) {
      t.external = c.varint(end) === 1;
    } else {
      c.skip(wire, end);
    }
  }
  return t;
}

function readShape(c: Cursor, end: number): (number | string)[] {
  const dims: (number | string)[] = [];
  while (c.pos < end) {
    const [field, wire] = c.tag(end);
    if (field !== SHAPE.dim || wire !== WIRE_LEN) {
      c.skip(wire, end);
      continue;
    }
    const dimEnd = c.lengthEnd(end, "a dim");
    let dim: number | string = "?";
    while (c.pos < dimEnd) {
      const [f, w] = c.tag(dimEnd);
      if (f === DIMENSION.value && w === WIRE_VARINT) dim = toSigned(c.varint(dimEnd));
      else if (f === DIMENSION.param && w === WIRE_LEN) dim = c.string(dimEnd, "a dim name");
      else c.skip(w, dimEnd);
    }
    dims.push(dim);
  }
  return dims;
}

function readValueInfo(c: Cursor, end: number): OnnxValueInfo {
  const info: OnnxValueInfo = { name: "", type: "unknown", shape: null };
  while (c.pos < end) {
    const [field, wire] = c.tag(end);
    if (field === VALUE_INFO.name && wire === WIRE_LEN) {
      info.name = c.string(end, "a value name");
    } else if (field === VALUE_INFO.type && wire === WIRE_LEN) {
      const typeEnd = c.lengthEnd(end, "a type");
      while (c.pos < typeEnd) {
        const [tf, tw] = c.tag(typeEnd);
        if (tf !== TYPE.tensorType || tw !== WIRE_LEN) {
          // Sequence, map, optional and sparse types: not a dense tensor.
          if (tw === WIRE_LEN && info.type === "unknown") info.type = "non-tensor";
          c.skip(tw, typeEnd);
          continue;
        }
        const ttEnd = c.lengthEnd(typeEnd, "a tensor type");
        while (c.pos < ttEnd) {
          const [f, w] = c.tag(ttEnd);
          if (f === TENSOR_TYPE.elemType && w === WIRE_VARINT) {
            const elem = c.varint(ttEnd);
            info.type = ONNX_ELEM_TYPES[elem] ?? `onnx_type_${elem}`;
          } else if (f === TENSOR_TYPE.shape && w === WIRE_LEN) {
            info.shape = readShape(c, c.lengthEnd(ttEnd, "a shape"));
          } else {
            c.skip(w, ttEnd);
          }
        }
      }
    } else {
      c.skip(wire, end);
    }
  }
  return info;
}

interface NodeRead {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  /** For Constant nodes: the `value` tensor's header. */
  constant: TensorHeader | null;
}

function readNode(c: Cursor, end: number): NodeRead {
  const node: NodeRead = { opType: "", domain: "", inputs: [], outputs: [], constant: null };
  while (c.pos < end) {
    const [field, wire] = c.tag(end);
    if (field === NODE.input && wire === WIRE_LEN) node.inputs.push(c.string(end, "a node input"));
    else if (field === NODE.output && wire === WIRE_LEN) node.outputs.push(c.string(end, "a node output"));
    else if (field === NODE.opType && wire === WIRE_LEN) node.opType = c.string(end, "an op type");
    else if (field === NODE.domain && wire === WIRE_LEN) node.domain = c.string(end, "an op domain");
    else if (field === NODE.attribute && wire === WIRE_LEN) {
      const attrEnd = c.lengthEnd(end, "an attribute");
      while (c.pos < attrEnd) {
        const [f, w] = c.tag(attrEnd);
        if (f === ATTRIBUTE.t && w === WIRE_LEN) node.constant = readTensor(c, c.lengthEnd(attrEnd, "an attribute tensor"));
        else c.skip(w, attrEnd);
      }
    } else c.skip(wire, end);
  }
  return node;
}

/**
 * Reads a model.onnx's structure. Throws OnnxParseError ("truncated" | "invalid" |
 * "unreadable") naming the file.
 */
export async function inspectOnnx(path: string): Promise<OnnxInfo> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (error) {
    throw new OnnxParseError("unreadable", path, `${path} cannot be opened: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(Math.min(64, size));
    await fh.read(head, 0, head.length, 0);
    if (head.toString("latin1").startsWith("version https://git-lfs")) {
      throw new OnnxParseError("invalid", path, `${path} is a Git LFS pointer, not the model: fetch the real file (git lfs pull)`);
    }
    return await readModel(new Cursor(fh, size, path));
  } catch (error) {
    if (error instanceof OnnxParseError) throw error;
    throw new OnnxParseError("unreadable", path, `${path} cannot be read: ${(error as Error).message}`, { cause: error });
  } finally {
    await fh.close();
  }
}

async function readModel(c: Cursor): Promise<OnnxInfo> {
  const info: OnnxInfo = {
    path: c.path,
    fileBytes: c.size,
    irVersion: null,
    producerName: null,
    producerVersion: null,
    opsets: [],
    inputs: [],
    outputs: [],
    initializers: new Map(),
    convNodes: [],
    nodeCount: 0,
    opTypesByDomain: new Map(),
    externalFiles: [],
    embeddedDataBytes: 0,
  };
  const external = new Map<string, number>();
  let sawGraph = false;
  const end = c.size;
  const graphEnds: number[] = [];
  while (c.pos < end) {
    await c.steps(end, () => {
      const [field, wire] = c.tag(end);
      if (field === MODEL.graph && wire === WIRE_LEN) {
        graphEnds.push(c.lengthEnd(end, "the graph"));
        // Leave these steps: the graph is parsed by its own.
        return true;
      }
      if (field === MODEL.irVersion && wire === WIRE_VARINT) info.irVersion = c.varint(end);
      else if (field === MODEL.producerName && wire === WIRE_LEN) info.producerName = c.string(end, "producer_name");
      else if (field === MODEL.producerVersion && wire === WIRE_LEN)
        info.producerVersion = c.string(end, "producer_version");
      else if (field === MODEL.opsetImport && wire === WIRE_LEN) {
        const opEnd = c.lengthEnd(end, "an opset import");
        const opset = { domain: "", version: 0 };
        while (c.pos < opEnd) {
          const [f, w] = c.tag(opEnd);
          if (f === OPSET.domain && w === WIRE_LEN) opset.domain = c.string(opEnd, "an opset domain");
          else if (f === OPSET.version && w === WIRE_VARINT) opset.version = c.varint(opEnd);
          else c.skip(w, opEnd);
        }
        info.opsets.push(opset);
      } else if (field > 100_000) {
        // ONNX uses small field numbers; a huge one means this is not protobuf at all.
        throw c.invalid(`unexpected field number ${field}`);
      } else c.skip(wire, end);
      return false;
    });
    const graphEnd = graphEnds.pop();
    if (graphEnd !== undefined) {
      sawGraph = true;
      await readGraph(c, graphEnd, info, external);
    }
  }
  if (!sawGraph) throw new OnnxParseError("invalid", c.path, `${c.path} is not a valid ONNX file: it has no graph`);
  info.inputs = info.inputs.filter((v) => !info.initializers.has(v.name));
  info.externalFiles = [...external].map(([location, requiredBytes]) => ({ location, requiredBytes }));
  return info;
}

async function readGraph(c: Cursor, end: number, info: OnnxInfo, external: Map<string, number>): Promise<void> {
  // One step per graph field: a retry after a page load re-parses only that field.
  await c.steps(end, () => {
    const [field, wire] = c.tag(end);
    if (field === GRAPH.node && wire === WIRE_LEN) {
      const node = readNode(c, c.lengthEnd(end, "a node"));
      info.nodeCount++;
      const domain = node.domain === "ai.onnx" ? "" : node.domain;
      let ops = info.opTypesByDomain.get(domain);
      if (!ops) info.opTypesByDomain.set(domain, (ops = new Set()));
      ops.add(node.opType);
      if (node.opType === "Conv" || (WEIGHT_PASSTHROUGH_OPS.has(node.opType) && node.inputs.length > 0)) {
        info.convNodes.push({ opType: node.opType, inputs: node.inputs, outputs: node.outputs });
      } else if (node.opType === "Constant" && node.constant && node.outputs[0] !== undefined) {
        // A weight stored as a Constant node: record it as if it were an initializer.
        info.initializers.set(node.outputs[0], tensorToInitializer(node.constant));
        info.embeddedDataBytes += node.constant.rawBytes;
      }
    } else if (field === GRAPH.initializer && wire === WIRE_LEN) {
      const t = readTensor(c, c.lengthEnd(end, "an initializer"));
      if (t.external) addExternal(c, t, external);
      info.initializers.set(t.name, tensorToInitializer(t));
      info.embeddedDataBytes += t.rawBytes;
    } else if (field === GRAPH.input && wire === WIRE_LEN) {
      info.inputs.push(readValueInfo(c, c.lengthEnd(end, "a graph input")));
    } else if (field === GRAPH.output && wire === WIRE_LEN) {
      info.outputs.push(readValueInfo(c, c.lengthEnd(end, "a graph output")));
    } else {
      c.skip(wire, end);
    }
  });
}

function addExternal(c: Cursor, t: TensorHeader, external: Map<string, number>): void {
  const location = t.externalEntries.get("location");
  if (!location) throw c.invalid(`external tensor "${t.name}" has no location`);
  const offset = Number(t.externalEntries.get("offset") ?? 0);
  const lengthKey = t.externalEntries.get("length");
  const length =
    lengthKey !== undefined ? Number(lengthKey) : t.dims.reduce((a, b) => a * b, 1) * (ELEM_BYTES[t.dataType] ?? 0);
  if (!Number.isFinite(offset) || !Number.isFinite(length)) {
    throw c.invalid(`external tensor "${t.name}" has a bad offset or length`);
  }
  external.set(location, Math.max(external.get(location) ?? 0, offset + length));
}

function tensorToInitializer(t: TensorHeader): OnnxInitializer {
  return { dims: t.dims, type: ONNX_ELEM_TYPES[t.dataType] ?? `onnx_type_${t.dataType}`, external: t.external };
}

/**
 * The dims of the weight of the model's input convolution: the Conv fed by the first graph
 * input (the UNet's `sample`), else the first Conv in node order. Follows a weight through
 * Cast / Identity / DequantizeLinear to its initializer. null when not found.
 */
export function findInputConvWeightDims(info: OnnxInfo): number[] | null {
  const convs = info.convNodes.filter((n) => n.opType === "Conv" && n.inputs.length >= 2);
  const firstInput = info.inputs[0]?.name;
  const conv = convs.find((n) => n.inputs[0] === firstInput) ?? convs[0];
  if (!conv) return null;
  const producers = new Map<string, OnnxNodeSummary>();
  for (const n of info.convNodes) if (n.opType !== "Conv") for (const o of n.outputs) producers.set(o, n);
  let name = conv.inputs[1];
  for (let hops = 0; name !== undefined && hops < 4; hops++) {
    const init = info.initializers.get(name);
    if (init) return init.dims;
    name = producers.get(name)?.inputs[0];
  }
  return null;
}

/** The dims of a named initializer, or null. */
export function initializerDims(info: OnnxInfo, name: string): number[] | null {
  return info.initializers.get(name)?.dims ?? null;
}

/** Convenience: the UNet's conv_in weight dims [out, in, kh, kw] straight from a file. */
export async function readInputConvWeightDims(path: string): Promise<number[] | null> {
  return findInputConvWeightDims(await inspectOnnx(path));
}
