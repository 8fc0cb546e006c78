/**
 * The layers of diffusers' UNet2DConditionModel / AutoencoderKL and transformers' CLIPTextModel,
 * written the way torch.onnx exports them at opset 14-17: GroupNorm as Reshape ->
 * InstanceNormalization -> Reshape -> Mul/Add, attention as plain MatMul + Softmax (unfused),
 * linear layers as MatMul against a [in, out] weight + Add. Weights are random, scaled by
 * 1/sqrt(fan_in) so activations stay O(1).
 */
import { type Graph, type Value } from "./graph";

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
    return g.node("Add", [y, g.fixedWeight("bias", [cout], 0)], {}, shape);
  });
}

export function silu(g: Graph, x: Value): Value {
  return g.node("Mul", [x, g.node("Sigmoid", [x], {}, x.shape)], {}, x.shape);
}

/** torch.nn.GroupNorm on [B, C, H, W] as the exporter writes it (InstanceNormalization over groups). */
export function groupNorm(g: Graph, x: Value, name: string, channels: number, groups: number, eps: number): Value {
  return g.scope(name, () => {
    const [n] = x.shape as [number];
    const grouped = g.node("Reshape", [x, g.constInt64([0, groups, -1])], {}, [n, groups, x.shape.slice(1).reduce((a, b) => a * b, 1) / groups]);
    const normed = g.node("InstanceNormalization", [grouped, g.constFloat(new Array<number>(groups).fill(1), [groups]), g.constFloat(new Array<number>(groups).fill(0), [groups])], { epsilon: { float: eps } }, grouped.shape);
    const back = g.node("Reshape", [normed, g.node("Shape", [x], {}, [x.shape.length])], {}, x.shape);
    const gamma = g.fixedWeight("weight", [channels, 1, 1], 1);
    const beta = g.fixedWeight("bias", [channels, 1, 1], 0);
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
  /** Added to the scores (CLIP's causal mask), broadcast over batch and heads. */
  mask?: Value;
}

/** Multi-head attention on [B, N, dim] tokens (context [B, M, contextDim]), unfused. */
export function attention(g: Graph, x: Value, context: Value | null, name: string, spec: AttentionSpec): Value {
  return g.scope(name, () => {
    const inner = spec.heads * spec.dimHead;
    const ctx = context ?? x;
    const ctxDim = spec.contextDim ?? spec.dim;
    const [b, n] = x.shape as [number, number];
    const m = ctx.shape[1]!;
    const q = linear(g, x, "to_q", spec.dim, inner, { bias: spec.qkvBias });
    const k = linear(g, ctx, "to_k", ctxDim, inner, { bias: spec.qkvBias });
    const v = linear(g, ctx, "to_v", ctxDim, inner, { bias: spec.qkvBias });
    const split = g.constInt64([0, 0, spec.heads, spec.dimHead]);
    const qh = g.node("Transpose", [g.node("Reshape", [q, split], {}, [b, n, spec.heads, spec.dimHead])], { perm: [0, 2, 1, 3] }, [b, spec.heads, n, spec.dimHead]);
    const kh = g.node("Transpose", [g.node("Reshape", [k, split], {}, [b, m, spec.heads, spec.dimHead])], { perm: [0, 2, 3, 1] }, [b, spec.heads, spec.dimHead, m]);
    const vh = g.node("Transpose", [g.node("Reshape", [v, split], {}, [b, m, spec.heads, spec.dimHead])], { perm: [0, 2, 1, 3] }, [b, spec.heads, m, spec.dimHead]);
    let scores = g.node("MatMul", [qh, kh], {}, [b, spec.heads, n, m]);
    scores = g.node("Mul", [scores, g.constFloat([1 / Math.sqrt(spec.dimHead)], [])], {}, scores.shape);
    if (spec.mask) scores = g.node("Add", [scores, spec.mask], {}, scores.shape);
    const probs = g.node("Softmax", [scores], { axis: -1 }, scores.shape);
    const mixed = g.node("MatMul", [probs, vh], {}, [b, spec.heads, n, spec.dimHead]);
    const merged = g.node("Reshape", [g.node("Transpose", [mixed], { perm: [0, 2, 1, 3] }, [b, n, spec.heads, spec.dimHead]), g.constInt64([0, 0, inner])], {}, [b, n, inner]);
    return linear(g, merged, "to_out.0", inner, spec.dim);
  });
}

/** [B, C, H, W] -> [B, H*W, C] tokens, and back to the shape of `like`. */
export function toTokens(g: Graph, x: Value): Value {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const flat = g.node("Reshape", [x, g.constInt64([0, 0, -1])], {}, [b, c, h * w]);
  return g.node("Transpose", [flat], { perm: [0, 2, 1] }, [b, h * w, c]);
}

export function fromTokens(g: Graph, tokens: Value, like: Value): Value {
  const [b, n, c] = tokens.shape as [number, number, number];
  const t = g.node("Transpose", [tokens], { perm: [0, 2, 1] }, [b, c, n]);
  return g.node("Reshape", [t, g.node("Shape", [like], {}, [4])], {}, like.shape);
}

export const add = (g: Graph, a: Value, b: Value): Value => g.node("Add", [a, b], {}, a.shape.length >= b.shape.length ? a.shape : b.shape);

/** diffusers ResnetBlock2D (time embedding optional, as in the VAE). */
export function resnet(g: Graph, x: Value, temb: Value | null, name: string, cin: number, cout: number, groups: number, eps: number): Value {
  return g.scope(name, () => {
    let h = silu(g, groupNorm(g, x, "norm1", cin, groups, eps));
    h = conv(g, h, "conv1", cin, cout, 3);
    if (temb) {
      const t = linear(g, temb, "time_emb_proj", temb.shape[1]!, cout);
      const t4 = g.node("Unsqueeze", [t, g.constInt64([2, 3])], {}, [t.shape[0]!, cout, 1, 1]);
      h = add(g, h, t4);
    }
    h = silu(g, groupNorm(g, h, "norm2", cout, groups, eps));
    h = conv(g, h, "conv2", cout, cout, 3);
    const shortcut = cin !== cout ? conv(g, x, "conv_shortcut", cin, cout, 1) : x;
    return add(g, shortcut, h);
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
