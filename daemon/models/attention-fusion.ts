/**
 * Fuses the attention of an exported diffusion model into onnxruntime's MultiHeadAttention
 * (com.microsoft) at load time.
 *
 * Exports write attention as plain operators: the scores Q·Kᵀ of every head are a real
 * [batch, heads, tokens, tokens] tensor (8 x 4096 x 4096 floats per picture in SD 1.5's
 * 64x64 level: 512 MiB, twice for guidance, and 16 times that at twice the picture's width),
 * then Softmax, then ·V. onnxruntime's CPU kernel for MultiHeadAttention works block by block
 * (flash attention) and never holds the scores. Measured on SD 1.5 at 512x512 (scripts/bench):
 * a guidance step needs 3.7 instead of 5.5 GiB; the time is the same as the exported graph's
 * with memory patterns off (execution-provider.ts), and half of it with them on. Nothing else
 * changes: the same weights, the same numbers up to float rounding.
 *
 * Recognised (anything else is left as it is, which is always correct, only slower):
 *   q, k, v: [B, S, H·D] tensors (the to_q / to_k / to_v outputs)
 *   heads:   Reshape(x, [B, S, H, D]) -> Transpose(0,2,1,3), optionally Reshape to [B·H, S, D]
 *            (diffusers' head_to_batch_dim); the key either the same followed by a
 *            Transpose of its last two axes, or Reshape -> Transpose(0,2,3,1)
 *   scores:  MatMul(q, kᵀ), times or divided by a constant scalar (the scale), optionally
 *            plus a zero term (torch's baddbmm with beta = 0 exports as Add(·, Mul(·, 0)));
 *            or torch 2's scaled_dot_product_attention: MatMul(q·√s, kᵀ·√s), s a constant or
 *            the default 1/√D that the export computes from the query's shape
 *   Softmax on the last axis, optionally Cast to float, MatMul with v
 *   out:     optionally Reshape to [B, H, S, D], Transpose(0,2,1,3), Reshape to [B, S, H·D]
 * H is read from the constant in the first Reshape's target shape (a constant tensor, or the
 * constant third input of the Concat that builds it).
 */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

type ModelProto = onnxProto.onnx.IModelProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type IntLike = number | { toNumber(): number };

/** Bump when the rewrite changes: optimized copies of fused graphs are keyed by it. */
export const ATTENTION_FUSION_VERSION = 2;

const MS_DOMAIN = "com.microsoft";
const FLOAT = 1;
const INT64 = 7;
const FLOAT16 = 10;
const DOUBLE = 11;
const BFLOAT16 = 16;

export interface FusionReport {
  /** Attention blocks replaced by MultiHeadAttention. */
  fused: number;
  /** Softmax nodes left as they were (not a recognised attention, e.g. CLIP's causal mask). */
  skipped: number;
}

const toNumber = (v: IntLike | null | undefined): number => (v === null || v === undefined ? NaN : typeof v === "number" ? v : v.toNumber());

/** The graph's producer/consumer index and constant lookup. */
class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly consumers = new Map<string, NodeProto[]>();
  private readonly initializers = new Map<string, TensorProto>();

  constructor(model: ModelProto) {
    const graph = model.graph!;
    for (const t of graph.initializer ?? []) this.initializers.set(t.name ?? "", t);
    for (const node of graph.node ?? []) {
      for (const out of node.output ?? []) this.producer.set(out, node);
      for (const input of node.input ?? []) {
        const list = this.consumers.get(input);
        if (list) list.push(node);
        else this.consumers.set(input, [node]);
      }
    }
  }

  /**
   * The one node reading `value` as its first input, when every other reader is a Shape node
   * (exports compute reshape targets from shapes; those go dead with the attention).
   */
  soleConsumer(value: string): NodeProto | null {
    const list = (this.consumers.get(value) ?? []).filter((n) => n.opType !== "Shape");
    return list.length === 1 && list[0]!.input?.[0] === value ? list[0]! : null;
  }

  /** `value`'s producer when it is an `op` node. */
  from(value: string | undefined, op: string): NodeProto | null {
    const node = value === undefined ? undefined : this.producer.get(value);
    return node && node.opType === op && (node.domain ?? "") === "" ? node : null;
  }

  /** A constant's values (initializer or Constant node), or null when not constant. */
  constant(value: string | undefined): number[] | null {
    if (value === undefined) return null;
    const init = this.initializers.get(value);
    if (init) return tensorValues(init);
    const node = this.from(value, "Constant");
    if (!node) return null;
    const attr = node.attribute?.[0];
    if (!attr) return null;
    if (attr.name === "value" && attr.t) return tensorValues(attr.t);
    if (attr.name === "value_float") return [attr.f ?? NaN];
    if (attr.name === "value_int") return [toNumber(attr.i)];
    if (attr.name === "value_ints") return (attr.ints ?? []).map(toNumber);
    if (attr.name === "value_floats") return [...(attr.floats ?? [])];
    return null;
  }
}

function tensorValues(t: TensorProto): number[] | null {
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (t.dataType === FLOAT) return Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getFloat32(i * 4, true));
    if (t.dataType === INT64) return Array.from({ length: raw.byteLength / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    return null;
  }
  if (t.dataType === FLOAT && t.floatData?.length) return [...t.floatData];
  if (t.dataType === INT64 && t.int64Data?.length) return t.int64Data.map(toNumber);
  return null;
}

function ints(node: NodeProto, name: string): number[] {
  return (node.attribute?.find((a) => a.name === name)?.ints ?? []).map(toNumber);
}

function intAttr(node: NodeProto, name: string): number | null {
  const a = node.attribute?.find((x) => x.name === name);
  return a ? toNumber(a.i) : null;
}

const samePerm = (node: NodeProto, perm: number[]) => ints(node, "perm").join() === perm.join();

/** One side of the attention in heads form, traced back to its [B, S, H·D] tensor. */
interface Heads {
  tokens: string;
  heads: number;
}

/** Reshape(x, [B, S, H, D]) -> Transpose(0,2,1,3) [-> Reshape to [B·H, S, D]] */
function headsOf(index: GraphIndex, value: string): Heads | null {
  let transpose = index.from(value, "Transpose");
  if (!transpose) {
    const merge = index.from(value, "Reshape");
    transpose = merge ? index.from(merge.input?.[0], "Transpose") : null;
  }
  if (!transpose || !samePerm(transpose, [0, 2, 1, 3])) return null;
  return splitOf(index, transpose.input?.[0]);
}

/** Reshape(x, [B, S, H, D]): x and H. */
function splitOf(index: GraphIndex, value: string | undefined): Heads | null {
  const split = index.from(value, "Reshape");
  if (!split) return null;
  const heads = headCount(index, split.input?.[1]);
  const tokens = split.input?.[0];
  return heads !== null && tokens ? { tokens, heads } : null;
}

/** H from a [B, S, H, D] target shape: a constant, or a Concat whose third part is constant. */
function headCount(index: GraphIndex, shape: string | undefined): number | null {
  const constant = index.constant(shape);
  if (constant) return constant.length === 4 && constant[2]! > 0 ? constant[2]! : null;
  const concat = index.from(shape, "Concat");
  if (!concat || concat.input?.length !== 4) return null;
  const part = index.constant(concat.input[2]);
  return part && part.length === 1 && part[0]! > 0 ? part[0]! : null;
}

/** The key: headsOf followed by a swap of the last two axes, or Reshape -> Transpose(0,2,3,1). */
function keyHeadsOf(index: GraphIndex, value: string): Heads | null {
  const transpose = index.from(value, "Transpose");
  if (!transpose) return null;
  if (samePerm(transpose, [0, 2, 3, 1])) return splitOf(index, transpose.input?.[0]);
  if (samePerm(transpose, [0, 2, 1]) || samePerm(transpose, [0, 1, 3, 2])) return headsOf(index, transpose.input![0]!);
  return null;
}

/** Strips the zero term of baddbmm(beta = 0): Add(x, Mul(anything, 0)) -> x. */
function withoutZeroTerm(index: GraphIndex, value: string): string {
  const add = index.from(value, "Add");
  if (!add || add.input?.length !== 2) return value;
  for (const [keep, other] of [[0, 1], [1, 0]] as const) {
    const mul = index.from(add.input[other], "Mul");
    if (!mul) continue;
    if (mul.input?.some((x) => isZero(index.constant(x)))) return add.input[keep]!;
  }
  return value;
}

/** Cast(x, to = float) -> x: a no-op in a float32 graph (exports upcast attention scores). */
function withoutFloatCast(index: GraphIndex, value: string): string {
  const cast = index.from(value, "Cast");
  return cast && intAttr(cast, "to") === FLOAT && cast.input?.[0] ? cast.input[0] : value;
}

const isZero = (values: number[] | null) => values !== null && values.length === 1 && values[0] === 0;

/** MatMul(q, kᵀ) [* c | / c]: the MatMul and the scale. */
function scoresOf(index: GraphIndex, value: string): { matmul: NodeProto; scale: number } | null {
  const plain = index.from(value, "MatMul");
  if (plain) return { matmul: plain, scale: 1 };
  for (const op of ["Mul", "Div"] as const) {
    const node = index.from(value, op);
    if (!node || node.input?.length !== 2) continue;
    const orders = op === "Mul" ? ([[0, 1], [1, 0]] as const) : ([[0, 1]] as const);
    for (const [m, c] of orders) {
      const matmul = index.from(node.input[m], "MatMul");
      const constant = index.constant(node.input[c]);
      if (!matmul || !constant || constant.length !== 1 || !Number.isFinite(constant[0]) || constant[0] === 0) continue;
      return { matmul, scale: op === "Mul" ? constant[0]! : 1 / constant[0]! };
    }
  }
  return null;
}

/** ·V [-> Reshape to [B, H, S, D]] -> Transpose(0,2,1,3) -> Reshape to [B, S, H·D]: the last Reshape. */
function mergeOf(index: GraphIndex, value: string): NodeProto | null {
  let next = index.soleConsumer(value);
  if (next?.opType === "Reshape") next = index.soleConsumer(next.output![0]!);
  if (next?.opType !== "Transpose" || !samePerm(next, [0, 2, 1, 3])) return null;
  const merge = index.soleConsumer(next.output![0]!);
  return merge?.opType === "Reshape" ? merge : null;
}

/**
 * torch 2's SDPA export scales q and kᵀ before their MatMul, each by Sqrt(s): the operand
 * without its factor, and s (a number, "default" for the 1/√D computed from the query's own
 * shape), or null when the operand is not scaled that way.
 */
function sqrtScaled(index: GraphIndex, value: string): { operand: string; scale: string | number } | null {
  const mul = index.from(value, "Mul");
  if (!mul || mul.input?.length !== 2) return null;
  for (const [x, f] of [[0, 1], [1, 0]] as const) {
    const sqrt = index.from(mul.input[f], "Sqrt");
    const s = sqrt?.input?.[0];
    if (!s) continue;
    const constant = index.constant(s);
    if (constant) return constant.length === 1 && constant[0]! > 0 ? { operand: mul.input[x]!, scale: constant[0]! } : null;
    return { operand: mul.input[x]!, scale: s };
  }
  return null;
}

/**
 * Whether `value` is computed from the shape of `query` alone (torch's _attention_scale:
 * 1/√(last dimension)), through shape arithmetic and constants.
 */
function fromShapeOf(index: GraphIndex, value: string, query: string): boolean {
  const stack = [value];
  const seen = new Set<string>();
  let readsQuery = false;
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v) || index.constant(v)) continue;
    seen.add(v);
    const node = index.producer.get(v);
    if (!node || (node.domain ?? "") !== "" || seen.size > 16) return false;
    if (node.opType === "Shape") {
      if (node.input?.[0] !== query) return false;
      readsQuery = true;
      continue;
    }
    if (!SCALE_ARITHMETIC.has(node.opType ?? "")) return false;
    stack.push(...(node.input ?? []).filter(Boolean));
  }
  return readsQuery;
}

const SCALE_ARITHMETIC = new Set(["Slice", "Gather", "Cast", "Sqrt", "Div", "Reciprocal", "Mul", "Squeeze", "Unsqueeze", "Reshape", "Constant"]);

interface Match {
  /** The node whose output the fused node takes over. */
  replaces: NodeProto;
  node: NodeProto;
  softmax: NodeProto;
}

function matchAt(index: GraphIndex, softmax: NodeProto, name: string): Match | null {
  const axis = intAttr(softmax, "axis");
  if (axis !== -1) return null;
  const scores = scoresOf(index, withoutZeroTerm(index, withoutFloatCast(index, softmax.input![0]!)));
  if (!scores) return null;
  let [qValue, kValue] = scores.matmul.input ?? [];
  if (!qValue || !kValue) return null;
  // null: onnxruntime's default, 1/√D.
  let scale: number | null = scores.scale;
  const qs = sqrtScaled(index, qValue);
  const ks = sqrtScaled(index, kValue);
  if (qs || ks) {
    if (!qs || !ks || qs.scale !== ks.scale) return null;
    if (typeof qs.scale === "number") scale *= qs.scale;
    else if (scale === 1 && fromShapeOf(index, qs.scale, qs.operand)) scale = null;
    else return null;
    qValue = qs.operand;
    kValue = ks.operand;
  }
  let probs = softmax.output![0]!;
  let next = index.soleConsumer(probs);
  if (next?.opType === "Cast" && intAttr(next, "to") === FLOAT) {
    probs = next.output![0]!;
    next = index.soleConsumer(probs);
  }
  if (next?.opType !== "MatMul") return null;
  const q = headsOf(index, qValue);
  const k = keyHeadsOf(index, kValue);
  const v = headsOf(index, next.input?.[1] ?? "");
  if (!q || !k || !v || q.heads !== k.heads || q.heads !== v.heads) return null;
  const merge = mergeOf(index, next.output![0]!);
  if (!merge) return null;
  const node = onnx.NodeProto.create({
    name,
    opType: "MultiHeadAttention",
    domain: MS_DOMAIN,
    input: [q.tokens, k.tokens, v.tokens],
    output: [merge.output![0]!],
    attribute: [
      onnx.AttributeProto.create({ name: "num_heads", type: onnx.AttributeProto.AttributeType.INT, i: q.heads }),
      ...(scale === null ? [] : [onnx.AttributeProto.create({ name: "scale", type: onnx.AttributeProto.AttributeType.FLOAT, f: scale })]),
    ],
  });
  return { replaces: merge, node, softmax };
}

/**
 * Rewrites `model` in place: each recognised attention becomes one MultiHeadAttention node,
 * and the nodes and initializers nothing reads any more are dropped.
 */
export function fuseAttention(model: ModelProto): FusionReport {
  const graph = model.graph;
  if (!graph?.node?.length) return { fused: 0, skipped: 0 };
  // Only float32 graphs: there every Cast to float is a no-op, and onnxruntime's CPU kernel is
  // float32. (A float16 export upcasts its scores on purpose.)
  if ((graph.initializer ?? []).some((t) => t.dataType === FLOAT16 || t.dataType === BFLOAT16 || t.dataType === DOUBLE)) {
    return { fused: 0, skipped: graph.node.filter((n) => n.opType === "Softmax").length };
  }
  const index = new GraphIndex(model);
  const matches = new Map<NodeProto, Match>();
  let softmaxes = 0;
  for (const node of graph.node) {
    if (node.opType !== "Softmax" || (node.domain ?? "") !== "") continue;
    softmaxes++;
    const match = matchAt(index, node, `${node.name || "attention"}/MultiHeadAttention`);
    if (match && !matches.has(match.replaces)) matches.set(match.replaces, match);
  }
  // A match whose scores something else still reads would be computed twice: leave it be.
  const original = graph.node;
  let live = liveNodes(graph, original.map((n) => matches.get(n)?.node ?? n));
  for (;;) {
    const stillRead = [...matches.values()].filter((m) => live.has(m.softmax));
    if (stillRead.length === 0) break;
    for (const m of stillRead) matches.delete(m.replaces);
    live = liveNodes(graph, original.map((n) => matches.get(n)?.node ?? n));
  }
  const skipped = softmaxes - matches.size;
  if (matches.size === 0) return { fused: 0, skipped };
  graph.node = original.map((n) => matches.get(n)?.node ?? n).filter((n) => live.has(n));
  const produced = new Set(graph.node.flatMap((n) => n.output ?? []));
  const read = new Set(graph.node.flatMap((n) => [...(n.input ?? []), ...subgraphInputs(n)]));
  for (const o of graph.output ?? []) read.add(o.name ?? "");
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => produced.has(v.name ?? ""));
  graph.initializer = (graph.initializer ?? []).filter((t) => read.has(t.name ?? ""));
  const opsets = model.opsetImport ?? (model.opsetImport = []);
  if (!opsets.some((o) => o.domain === MS_DOMAIN)) opsets.push(onnx.OperatorSetIdProto.create({ domain: MS_DOMAIN, version: 1 }));
  return { fused: matches.size, skipped };
}

/** The nodes the graph's outputs depend on. */
function liveNodes(graph: onnxProto.onnx.IGraphProto, nodes: NodeProto[]): Set<NodeProto> {
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const live = new Set<NodeProto>();
  const seen = new Set<string>();
  const stack = (graph.output ?? []).map((o) => o.name ?? "");
  while (stack.length) {
    const value = stack.pop()!;
    if (seen.has(value)) continue;
    seen.add(value);
    const node = producer.get(value);
    if (!node || live.has(node)) continue;
    live.add(node);
    for (const input of [...(node.input ?? []), ...subgraphInputs(node)]) if (input) stack.push(input);
  }
  return live;
}

/** Values an If/Loop body may read from the outer graph: all its nodes' inputs, conservatively. */
function subgraphInputs(node: NodeProto): string[] {
  const out: string[] = [];
  for (const attr of node.attribute ?? []) {
    for (const sub of attr.g ? [attr.g] : (attr.graphs ?? [])) for (const n of sub.node ?? []) out.push(...(n.input ?? []), ...subgraphInputs(n));
  }
  return out;
}
