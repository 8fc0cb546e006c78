/**
 * The layers of diffusers' UNet2DConditionModel / AutoencoderKL and transformers' CLIPTextModel,
 * laid out as diffusers 0.27's own ONNX script (torch 1.13, opset 14) exports them, so that the
 * same Transposes and Reshapes appear and onnxruntime's fusions apply as they do to the export:
 * GroupNorm as Reshape -> InstanceNormalization -> Reshape -> Mul/Add, attention as plain
 * MatMul + Softmax (unfused) with the heads in the batch axis, shapes read at run time where the
 * export reads them, linear layers as MatMul against a [in, out] weight + Add (Gemm on 2-D rows).
 * Weights are random, scaled by 1/sqrt(fan_in) so activations stay O(1).
 */
import { FLOAT, type Graph, type Value } from "./graph";

export function conv(g: Graph, x: Value, name: string, cin: number, cout: number, k: number, options: { stride?: number; pad?: number; std?: number } = {}): Value {
  const stride = options.stride ?? 1;
  const pad = options.pad ?? Math.floor(k / 2);
  return g.scope(name, () => {
    const w = g.weight("weight", [cout, cin, k, k], options.std ?? 1 / Math.sqrt(cin * k * k));
    const b = g.fixedWeight("bias", [cout], 0);
    const [n, , h, wd] = x.shape as [number, number, number, number];
    const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
    const ow = Math.floor((wd + 2 * pad - k) / stride) + 1;
    return g.node("Conv", [x, w, b], { kernel_shape: [k, k], pads: [pad, pad, pad, pad], strides: [stride, stride], dilations: [1, 1], group: 1 }, [n, cout, oh, ow]);
  });
}

/** x [..., in] @ W [in, out] (+ bias). */
export function linear(g: Graph, x: Value, name: string, cin: number, cout: number, options: { bias?: boolean; std?: number } = {}): Value {
  return g.scope(name, () => {
    const w = g.weight("weight", [cin, cout], options.std ?? 1 / Math.sqrt(cin));
    const shape = [...x.shape.slice(0, -1), cout];
    const y = g.node("MatMul", [x, w], {}, shape);
    if (options.bias === false) return y;
    return g.node("Add", [g.fixedWeight("bias", [cout], 0), y], {}, shape);
  });
}

/** A linear layer on [B, in] rows as torch exports it: Gemm against its [out, in] weight (transB). */
export function gemm(g: Graph, x: Value, name: string, cin: number, cout: number): Value {
  return g.scope(name, () => {
    const w = g.weight("weight", [cout, cin], 1 / Math.sqrt(cin));
    return g.node("Gemm", [x, w, g.fixedWeight("bias", [cout], 0)], { alpha: { float: 1 }, beta: { float: 1 }, transB: 1 }, [x.shape[0]!, cout]);
  });
}

export function silu(g: Graph, x: Value): Value {
  return g.node("Mul", [x, g.node("Sigmoid", [x], {}, x.shape)], {}, x.shape);
}

/** torch.nn.GroupNorm on [B, C, ...] as the exporter writes it (InstanceNormalization over groups). */
export function groupNorm(g: Graph, x: Value, name: string, channels: number, groups: number, eps: number): Value {
  return g.scope(name, () => {
    const [n] = x.shape as [number];
    const grouped = g.node("Reshape", [x, g.constInt64([0, groups, -1])], {}, [n, groups, x.shape.slice(1).reduce((a, b) => a * b, 1) / groups]);
    const normed = g.node("InstanceNormalization", [grouped, g.constFloat(new Array<number>(groups).fill(1), [groups]), g.constFloat(new Array<number>(groups).fill(0), [groups])], { epsilon: { float: eps } }, grouped.shape);
    const back = g.node("Reshape", [normed, g.node("Shape", [x], {}, [x.shape.length])], {}, x.shape);
    const perChannel = [channels, ...x.shape.slice(2).map(() => 1)];
    const gamma = g.fixedWeight("weight", perChannel, 1);
    const beta = g.fixedWeight("bias", perChannel, 0);
    return g.node("Add", [g.node("Mul", [back, gamma], {}, x.shape), beta], {}, x.shape);
  });
}

export function layerNorm(g: Graph, x: Value, name: string, dim: number, eps: number): Value {
  return g.scope(name, () => g.node("LayerNormalization", [x, g.fixedWeight("weight", [dim], 1), g.fixedWeight("bias", [dim], 0)], { axis: -1, epsilon: { float: eps } }, x.shape));
}

export interface AttentionSpec {
  dim: number;
  heads: number;
  dimHead: number;
  /** Key/value source width (cross-attention); the query's own width when absent. */
  contextDim?: number;
  /** Biases on q, k, v (CLIP and the VAE have them; the UNet does not). */
  qkvBias: boolean;
}

/**
 * transformers' CLIPAttention on [B, N, dim] tokens as 4.37 exports it: q scaled before its
 * heads are split, heads in the batch axis ([B·H, N, D], 3-D bmm), the scores viewed as
 * [B, H, N, N] to add the mask and back, Softmax, bmm with v, heads merged, out_proj.
 */
export function clipAttention(g: Graph, x: Value, name: string, spec: AttentionSpec & { mask: Value }): Value {
  return g.scope(name, () => {
    const { heads, dimHead: d } = spec;
    const inner = heads * d;
    const [b, n] = x.shape as [number, number];
    const [batch, tokens, width] = dims(g, x, [0, 1, 2]) as [Value, Value, Value];
    const q = linear(g, x, "q_proj", spec.dim, inner, { bias: spec.qkvBias });
    const scaled = g.node("Mul", [q, g.constFloat([1 / Math.sqrt(d)], [])], {}, q.shape);
    const k = linear(g, x, "k_proj", spec.dim, inner, { bias: spec.qkvBias });
    const v = linear(g, x, "v_proj", spec.dim, inner, { bias: spec.qkvBias });
    const rows = dimOp(g, "Mul", batch, heads);
    const toBatch = (t: Value, length: Value | number) => {
      const split = g.node("Reshape", [t, shapeOf(g, [batch, length, heads, d])], {}, [b, n, heads, d]);
      const swapped = g.node("Transpose", [split], { perm: [0, 2, 1, 3] }, [b, heads, n, d]);
      return g.node("Reshape", [swapped, shapeOf(g, [rows, -1, d])], {}, [b * heads, n, d]);
    };
    const [q3, k3, v3] = [toBatch(scaled, tokens), toBatch(k, -1), toBatch(v, -1)] as [Value, Value, Value];
    const [keys] = dims(g, k3, [1]) as [Value];
    const scores = g.node("MatMul", [q3, g.node("Transpose", [k3], { perm: [0, 2, 1] }, [b * heads, d, n])], {}, [b * heads, n, n]);
    const masked = g.node("Add", [g.node("Reshape", [scores, shapeOf(g, [batch, heads, tokens, keys])], {}, [b, heads, n, n]), spec.mask], {}, [b, heads, n, n]);
    const probs = g.node("Softmax", [g.node("Reshape", [masked, shapeOf(g, [rows, tokens, keys])], {}, scores.shape)], { axis: -1 }, scores.shape);
    const mixed = g.node("MatMul", [probs, v3], {}, [b * heads, n, d]);
    const split = g.node("Reshape", [mixed, shapeOf(g, [batch, heads, tokens, d])], {}, [b, heads, n, d]);
    const swapped = g.node("Transpose", [split], { perm: [0, 2, 1, 3] }, [b, n, heads, d]);
    const merged = g.node("Reshape", [swapped, shapeOf(g, [batch, tokens, width])], {}, [b, n, inner]);
    return linear(g, merged, "out_proj", inner, spec.dim);
  });
}

/** Dimensions `axes` of `x`, each a 1-D int64 [1] tensor read from its shape at run time (as torch traces x.shape[i]). */
export function dims(g: Graph, x: Value, axes: number[]): Value[] {
  const shape = g.node("Shape", [x], {}, [x.shape.length]);
  return axes.map((axis) => g.node("Gather", [shape, g.constInt64([axis])], { axis: 0 }, [1]));
}

/** A shape tensor from run-time dimensions and constants. */
export function shapeOf(g: Graph, parts: (Value | number)[]): Value {
  return g.node("Concat", parts.map((p) => (typeof p === "number" ? g.constInt64([p]) : p)), { axis: 0 }, [parts.length]);
}

/** Integer arithmetic on 1-D int64 dimensions (shape math). */
export const dimOp = (g: Graph, op: "Mul" | "Div" | "Add", a: Value, b: Value | number): Value => g.node(op, [a, typeof b === "number" ? g.constInt64([b]) : b], {}, [1]);

/** torch.chunk(x, 2, axis) as the export traces it: two Slices at (size + 1) / 2 read from the shape. */
export function chunk2(g: Graph, x: Value, axis: number): [Value, Value] {
  const half = dimOp(g, "Div", dimOp(g, "Add", dims(g, x, [axis])[0]!, 1), 2);
  const at = axis < 0 ? x.shape.length + axis : axis;
  const shape = x.shape.map((n, i) => (i === at ? n / 2 : n));
  const axes = g.constInt64([axis]);
  return [g.node("Slice", [x, g.constInt64([0]), half, axes], {}, shape), g.node("Slice", [x, half, dimOp(g, "Mul", half, 2), axes], {}, shape)];
}

/**
 * diffusers' Attention with its default AttnProcessor (torch < 2, as SD exports are made), on
 * [B, N, dim] tokens: head_to_batch_dim (Reshape [B, N, H, D] -> Transpose -> Reshape [B·H, N, D]),
 * scores by baddbmm (the key's last two axes transposed, the scale as a Mul, plus beta = 0
 * times an empty tensor), Softmax, Cast, bmm with v, batch_to_head_dim, to_out, then the
 * division by rescale_output_factor (1), after `beforeRescale` (the VAE's way back to a feature
 * map and its residual) when given.
 */
export function diffusersAttention(g: Graph, x: Value, context: Value | null, name: string, spec: AttentionSpec, beforeRescale?: (out: Value) => Value): Value {
  return g.scope(name, () => {
    const { heads, dimHead: d } = spec;
    const inner = heads * d;
    const ctx = context ?? x;
    const [b, n] = x.shape as [number, number];
    const m = ctx.shape[1]!;
    const q = linear(g, x, "to_q", spec.dim, inner, { bias: spec.qkvBias });
    const k = linear(g, ctx, "to_k", spec.contextDim ?? spec.dim, inner, { bias: spec.qkvBias });
    const v = linear(g, ctx, "to_v", spec.contextDim ?? spec.dim, inner, { bias: spec.qkvBias });
    const headToBatch = (t: Value): Value => {
      const [batch, tokens] = dims(g, t, [0, 1]) as [Value, Value];
      const len = t.shape[1]!;
      const split = g.node("Reshape", [t, shapeOf(g, [batch, tokens, heads, d])], {}, [b, len, heads, d]);
      const swapped = g.node("Transpose", [split], { perm: [0, 2, 1, 3] }, [b, heads, len, d]);
      return g.node("Reshape", [swapped, shapeOf(g, [dimOp(g, "Mul", batch, heads), tokens, d])], {}, [b * heads, len, d]);
    };
    const [q3, k3, v3] = [headToBatch(q), headToBatch(k), headToBatch(v)] as [Value, Value, Value];
    const [bh, queries] = dims(g, q3, [0, 1]) as [Value, Value];
    const [keys] = dims(g, k3, [1]) as [Value];
    const empty = g.node("ConstantOfShape", [shapeOf(g, [bh, queries, keys])], {}, [b * heads, n, m]);
    const kT = g.node("Transpose", [k3], { perm: [0, 2, 1] }, [b * heads, d, m]);
    const scores = g.node("MatMul", [q3, kT], {}, [b * heads, n, m]);
    const scaled = g.node("Mul", [scores, g.constFloat([1 / Math.sqrt(d)], [])], {}, scores.shape);
    const withBeta = g.node("Add", [scaled, g.node("Mul", [empty, g.constFloat([0], [])], {}, empty.shape)], {}, scores.shape);
    const probs = g.node("Cast", [g.node("Softmax", [withBeta], { axis: -1 }, scores.shape)], { to: FLOAT }, scores.shape);
    const mixed = g.node("MatMul", [probs, v3], {}, [b * heads, n, d]);
    const [rows, tokens, width] = dims(g, mixed, [0, 1, 2]) as [Value, Value, Value];
    const batch = dimOp(g, "Div", rows, heads);
    const split = g.node("Reshape", [mixed, shapeOf(g, [batch, heads, tokens, width])], {}, [b, heads, n, d]);
    const swapped = g.node("Transpose", [split], { perm: [0, 2, 1, 3] }, [b, n, heads, d]);
    const merged = g.node("Reshape", [swapped, shapeOf(g, [batch, tokens, dimOp(g, "Mul", width, heads)])], {}, [b, n, inner]);
    const projected = linear(g, merged, "to_out.0", inner, spec.dim);
    const out = beforeRescale ? beforeRescale(projected) : projected;
    return g.node("Div", [out, g.constFloat([1], [])], {}, out.shape);
  });
}

export const add = (g: Graph, a: Value, b: Value): Value => g.node("Add", [a, b], {}, a.shape.length >= b.shape.length ? a.shape : b.shape);

/** diffusers ResnetBlock2D (time embedding optional, as in the VAE), ending in the division by output_scale_factor (1). */
export function resnet(g: Graph, x: Value, temb: Value | null, name: string, cin: number, cout: number, groups: number, eps: number): Value {
  return g.scope(name, () => {
    let h = silu(g, groupNorm(g, x, "norm1", cin, groups, eps));
    h = conv(g, h, "conv1", cin, cout, 3);
    if (temb) {
      const t = gemm(g, temb, "time_emb_proj", temb.shape[1]!, cout);
      const t3 = g.node("Unsqueeze", [t, g.constInt64([2])], {}, [t.shape[0]!, cout, 1]);
      h = add(g, h, g.node("Unsqueeze", [t3, g.constInt64([3])], {}, [t.shape[0]!, cout, 1, 1]));
    }
    h = silu(g, groupNorm(g, h, "norm2", cout, groups, eps));
    h = conv(g, h, "conv2", cout, cout, 3);
    const shortcut = cin !== cout ? conv(g, x, "conv_shortcut", cin, cout, 1) : x;
    const sum = add(g, shortcut, h);
    return g.node("Div", [sum, g.constFloat([1], [])], {}, sum.shape);
  });
}

/** Nearest 2x up-sampling, then a 3x3 conv (Upsample2D). */
export function upsample(g: Graph, x: Value, name: string, channels: number): Value {
  return g.scope(name, () => {
    const [b, c, h, w] = x.shape as [number, number, number, number];
    const up = g.node("Resize", [x, "", g.constFloat([1, 1, 2, 2], [4])], { mode: "nearest", coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" }, [b, c, 2 * h, 2 * w]);
    return conv(g, up, "conv", channels, channels, 3);
  });
}
