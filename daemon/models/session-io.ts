/**
 * What a live onnxruntime session expects and returns, read from `session.inputMetadata` /
 * `outputMetadata` (onnxruntime-node >= 1.22), and tensors built to match: token ids as
 * int32 or int64, timesteps as float32 / float16 / int64 of rank 0 or 1, float16 feeds for
 * fp16 exports.
 *
 * float16: Node 20 has no Float16Array, so onnxruntime-node stores float16 tensors as
 * Uint16Array bit patterns (it also accepts Uint16Array when a Float16Array exists). The
 * helpers below convert with round-to-nearest-even.
 */
import { InferenceSession, Tensor } from "onnxruntime-node";
import {
  describeTextEncoder,
  describeUnet,
  describeVaeDecoder,
  describeVaeEncoder,
  type IoValue,
  type TextEncoderIO,
  type UnetIO,
  type VaeDecoderIO,
  type VaeEncoderIO,
} from "./io-spec";

export type {
  AddedConditionIO,
  FloatType,
  IoValue,
  ModelIO,
  TextEncoderIO,
  TimestepType,
  TokenIdType,
  UnetIO,
  VaeDecoderIO,
  VaeEncoderIO,
} from "./io-spec";

/** The dtypes the pipeline feeds. */
export type FeedType = "float32" | "float16" | "int32" | "int64";

type SessionLike = Pick<InferenceSession, "inputNames" | "outputNames" | "inputMetadata" | "outputMetadata">;

function toIoValues(names: readonly string[], metadata: readonly InferenceSession.ValueMetadata[] | undefined): IoValue[] {
  if (!metadata) {
    // onnxruntime-node < 1.22: names only.
    return names.map((name) => ({ name, type: "unknown", shape: null }));
  }
  return metadata.map((m) =>
    m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : { name: m.name, type: "non-tensor", shape: null },
  );
}

/** A session's inputs and outputs as plain values. */
export function sessionValues(session: SessionLike): { inputs: IoValue[]; outputs: IoValue[] } {
  return {
    inputs: toIoValues(session.inputNames, session.inputMetadata),
    outputs: toIoValues(session.outputNames, session.outputMetadata),
  };
}

/** Each throws ModelFolderError "model_unsupported" naming `file` when the session cannot be fed. */
export function describeTextEncoderSession(session: SessionLike, file: string): TextEncoderIO {
  const { inputs, outputs } = sessionValues(session);
  return describeTextEncoder(file, inputs, outputs);
}

export function describeUnetSession(session: SessionLike, file: string): UnetIO {
  const { inputs, outputs } = sessionValues(session);
  return describeUnet(file, inputs, outputs);
}

export function describeVaeEncoderSession(session: SessionLike, file: string): VaeEncoderIO {
  const { inputs, outputs } = sessionValues(session);
  return describeVaeEncoder(file, inputs, outputs);
}

export function describeVaeDecoderSession(session: SessionLike, file: string): VaeDecoderIO {
  const { inputs, outputs } = sessionValues(session);
  return describeVaeDecoder(file, inputs, outputs);
}

// ---- float16 ----

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One float32 value -> IEEE half bits, round-to-nearest-even, with subnormals, inf and NaN. */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** IEEE half bits -> number. */
export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

export function float32ToFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toHalfBits(values[i] as number);
  return out;
}

let halfTable: Float32Array | null = null;

export function float16ToFloat32(bits: ArrayLike<number>): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = fromHalfBits(h);
  }
  const table = halfTable;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i] as number] as number;
  return out;
}

// ---- tensors ----

function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/**
 * A tensor of the declared dtype from numbers or typed arrays. Conversions: to int32 /
 * int64 by truncation toward zero (numpy's astype, which diffusers' and Optimum's ONNX
 * pipelines use for timesteps); to float16 with round-to-nearest-even. A Uint16Array
 * given for float16 is taken as half bits; typed arrays of the target type are used
 * without copying.
 */
export function makeTensor(
  type: FeedType,
  data: ArrayLike<number> | BigInt64Array,
  dims: readonly number[],
): Tensor {
  if (data.length !== elementCount(dims)) {
    throw new RangeError(`makeTensor: ${data.length} values for dims [${dims.join(", ")}]`);
  }
  const shape = [...dims];
  if (data instanceof BigInt64Array) {
    if (type === "int64") return new Tensor("int64", data, shape);
    data = Array.from(data, Number);
  }
  const values = data as ArrayLike<number>;
  switch (type) {
    case "float32":
      return new Tensor("float32", values instanceof Float32Array ? values : Float32Array.from(values), shape);
    case "float16":
      return new Tensor("float16", values instanceof Uint16Array ? values : float32ToFloat16(values), shape);
    case "int32":
      return new Tensor("int32", values instanceof Int32Array ? values : Int32Array.from(values, (v) => Math.trunc(v)), shape);
    case "int64":
      return new Tensor("int64", BigInt64Array.from(values as ArrayLike<number>, (v) => BigInt(Math.trunc(v))), shape);
  }
}

/** A float output as Float32Array (float16 outputs are converted; float32 ones returned as is). */
export function tensorToFloat32(tensor: Tensor): Float32Array {
  if (tensor.type === "float32") return tensor.data as Float32Array;
  if (tensor.type === "float16") {
    const data = tensor.data as unknown as ArrayLike<number>;
    // With a native Float16Array the values are already numbers.
    return data instanceof Uint16Array ? float16ToFloat32(data) : Float32Array.from(data);
  }
  throw new TypeError(`tensorToFloat32: a ${tensor.type} tensor is not a float tensor`);
}

/**
 * The UNet's timestep feed for one step, dtype and rank as declared: a scalar, the declared
 * fixed length (e.g. [1]), or one value per batch item.
 */
export function makeTimestep(io: UnetIO, timestep: number, batch: number): Tensor {
  if (io.timestepRank === 0) return makeTensor(io.timestepType, [timestep], []);
  const n = io.timestepLength ?? batch;
  return makeTensor(io.timestepType, new Array<number>(n).fill(timestep), [n]);
}
