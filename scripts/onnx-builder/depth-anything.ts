/**
 * Depth Anything V2 as onnx-community/depth-anything-v2-small publishes it (Transformers.js layout):
 * onnx/model.onnx `pixel_values` float32 [batch_size, 3, height, width] -> `predicted_depth` float32
 * [batch_size, height, width] (relative inverse depth, >= 0), beside config.json
 * ({"model_type": "depth_anything"}) and preprocessor_config.json (DPTImageProcessor), with random
 * weights. The network is transformers' DepthAnythingForDepthEstimation (see depthAnything below);
 * DEPTH_ANYTHING_V2_SMALL's sizes give 24,713,153 weights (98.9 MB in float32, the hub's ~99 MB; the
 * PyTorch model's 24.8 M also counts DINOv2's mask_token and the first fusion layer's unused
 * residual unit, which an ONNX export drops). The replicas use TINY_DEPTH_ANYTHING, the same
 * structure at test sizes. Not replicated: the trained weights, and the exporter's exact node
 * layout (e.g. how torch traces the position-embedding interpolation).
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { Graph, type GraphCounts, type Value } from "./graph";
import { conv, dimOp, dims, layerNorm, linear, shapeOf } from "./layers";

/** DINOv2's patch size. */
export const DEPTH_PATCH = 14;

/** The preprocessor_config.json onnx-community/depth-anything-v2-small publishes (transformers' DPTImageProcessor). */
export const DEPTH_ANYTHING_PREPROCESSOR = {
  do_normalize: true,
  do_pad: false,
  do_rescale: true,
  do_resize: true,
  ensure_multiple_of: 14,
  image_mean: [0.485, 0.456, 0.406],
  image_processor_type: "DPTImageProcessor",
  image_std: [0.229, 0.224, 0.225],
  keep_aspect_ratio: true,
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { height: 518, width: 518 },
  size_divisor: null,
};

/** The part of its config.json the loader reads, plus the architecture's names. */
export const DEPTH_ANYTHING_CONFIG = {
  _name_or_path: "depth-anything/Depth-Anything-V2-Small-hf",
  architectures: ["DepthAnythingForDepthEstimation"],
  model_type: "depth_anything",
  depth_estimation_type: "relative",
  patch_size: 14,
  reassemble_hidden_size: 384,
};

/** Writes config.json, preprocessor_config.json and onnx/model.onnx (weights inside) under `dir`; the tiny configuration unless told otherwise. */
export async function writeDepthAnythingFolder(dir: string, config: DepthAnythingConfig = TINY_DEPTH_ANYTHING): Promise<GraphCounts> {
  const graph = depthAnything(config);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "config.json"), JSON.stringify(DEPTH_ANYTHING_CONFIG, null, 2));
  await writeFile(path.join(dir, "preprocessor_config.json"), JSON.stringify(DEPTH_ANYTHING_PREPROCESSOR, null, 2));
  await graph.write(path.join(dir, "onnx", "model.onnx"));
  return graph.counts();
}

/**
 * Depth Anything V2's own structure (transformers' DepthAnythingForDepthEstimation): a DINOv2 ViT
 * backbone (14x14 patch embedding, CLS token, position embeddings resized bicubically to the patch
 * grid, pre-norm blocks with LayerScale, GELU MLPs), four of its layers' normed outputs reassembled
 * by the DPT neck (1x1 projections, ConvTranspose up / strided conv down by 4, 2, 1, 1/2, 3x3 convs
 * to the fusion width), fused coarse to fine by pre-activation residual units with 2x bilinear
 * (align_corners) up-sampling, and the depth head (conv, up-sampling to the input size, conv, ReLU,
 * 1x1 conv, ReLU). Random weights. Small's sizes: 384 wide, 12 layers, 6 heads, neck [48, 96, 192, 384], fusion 64.
 */
export interface DepthAnythingConfig {
  hidden: number;
  layers: number;
  heads: number;
  mlp: number;
  /** Backbone layers (1-based) the neck reads. */
  outIndices: readonly [number, number, number, number];
  neck: readonly [number, number, number, number];
  fusion: number;
  headHidden: number;
  /** Patches per side of the position embeddings (518 / 14 = 37). */
  grid: number;
}

export const DEPTH_ANYTHING_V2_SMALL: DepthAnythingConfig = { hidden: 384, layers: 12, heads: 6, mlp: 1536, outIndices: [3, 6, 9, 12], neck: [48, 96, 192, 384], fusion: 64, headHidden: 32, grid: 37 };

/** A tiny configuration of the same structure for tests. */
export const TINY_DEPTH_ANYTHING: DepthAnythingConfig = { hidden: 32, layers: 4, heads: 2, mlp: 64, outIndices: [1, 2, 3, 4], neck: [8, 16, 32, 32], fusion: 16, headHidden: 8, grid: 4 };

function convT(g: Graph, x: Value, name: string, c: number, k: number): Value {
  return g.scope(name, () => {
    const w = g.weight("weight", [c, c, k, k], 1 / Math.sqrt(c * k * k));
    const [n, , h, wd] = x.shape as [number, number, number, number];
    return g.node("ConvTranspose", [x, w, g.fixedWeight("bias", [c], 0)], { kernel_shape: [k, k], strides: [k, k] }, [n, c, h * k, wd * k]);
  });
}

function convNoBias(g: Graph, x: Value, name: string, cin: number, cout: number): Value {
  return g.scope(name, () => {
    const w = g.weight("weight", [cout, cin, 3, 3], 1 / Math.sqrt(cin * 9));
    const [n, , h, wd] = x.shape as [number, number, number, number];
    return g.node("Conv", [x, w], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] }, [n, cout, h, wd]);
  });
}

function gelu(g: Graph, x: Value): Value {
  const erf = g.node("Erf", [g.node("Div", [x, g.constFloat([Math.SQRT2], [])], {}, x.shape)], {}, x.shape);
  return g.node("Mul", [g.node("Mul", [x, g.node("Add", [erf, g.constFloat([1], [])], {}, x.shape)], {}, x.shape), g.constFloat([0.5], [])], {}, x.shape);
}

/** Bilinear resize (align_corners) of [n, c, h, w] to the sizes tensor [n, c, H, W]. */
function resizeTo4(g: Graph, x: Value, sizes: Value, shape: number[], mode: "linear" | "cubic", align = true): Value {
  return g.node("Resize", [x, "", "", sizes], { mode, coordinate_transformation_mode: align ? "align_corners" : "half_pixel", ...(mode === "cubic" ? { cubic_coeff_a: { float: -0.75 } } : {}) }, shape);
}

export function depthAnything(config: DepthAnythingConfig = TINY_DEPTH_ANYTHING, ref: [number, number] = [56, 70]): Graph {
  const { hidden: d, heads } = config;
  const g = new Graph("depth_anything");
  const [rh, rw] = ref;
  const input = g.input("pixel_values", 1, ["batch_size", 3, "height", "width"], [1, 3, rh, rw]);
  const [ph, pw] = [rh / DEPTH_PATCH, rw / DEPTH_PATCH];
  const n = ph * pw;
  // Embeddings.
  const patches = g.scope("backbone.embeddings.patch_embeddings", () => conv(g, input, "projection", 3, d, DEPTH_PATCH, { stride: DEPTH_PATCH, pad: 0 }));
  const [batch, gh, gw] = dims(g, patches, [0, 2, 3]);
  const flat = g.node("Transpose", [g.node("Reshape", [patches, g.constInt64([0, d, -1])], {}, [1, d, n])], { perm: [0, 2, 1] }, [1, n, d]);
  let x = g.scope("backbone.embeddings", () => {
    const cls = g.node("Expand", [g.weight("cls_token", [1, 1, d], 0.02), shapeOf(g, [batch!, 1, d])], {}, [1, 1, d]);
    const tokens = g.node("Concat", [cls, flat], { axis: 1 }, [1, n + 1, d]);
    const pos = g.weight("position_embeddings", [1, config.grid * config.grid + 1, d], 0.02);
    const posCls = g.node("Slice", [pos, g.constInt64([0]), g.constInt64([1]), g.constInt64([1])], {}, [1, 1, d]);
    const posGrid = g.node("Slice", [pos, g.constInt64([1]), g.constInt64([1 << 30]), g.constInt64([1])], {}, [1, config.grid ** 2, d]);
    const square = g.node("Transpose", [g.node("Reshape", [posGrid, g.constInt64([1, config.grid, config.grid, d])], {}, [1, config.grid, config.grid, d])], { perm: [0, 3, 1, 2] }, [1, d, config.grid, config.grid]);
    const resized = resizeTo4(g, square, shapeOf(g, [1, d, gh!, gw!]), [1, d, ph, pw], "cubic", false);
    const back = g.node("Transpose", [g.node("Reshape", [resized, g.constInt64([1, d, -1])], {}, [1, d, n])], { perm: [0, 2, 1] }, [1, n, d]);
    return g.node("Add", [tokens, g.node("Concat", [posCls, back], { axis: 1 }, [1, n + 1, d])], {}, [1, n + 1, d]);
  });
  const features: Value[] = [];
  const headDim = d / heads;
  for (let i = 0; i < config.layers; i++) {
    x = g.scope(`backbone.encoder.layer.${i}`, () => {
      const h = layerNorm(g, x, "norm1", d, 1e-6);
      const attn = g.scope("attention", () => {
        const split = (v: Value) => g.node("Transpose", [g.node("Reshape", [v, g.constInt64([0, -1, heads, headDim])], {}, [1, n + 1, heads, headDim])], { perm: [0, 2, 1, 3] }, [1, heads, n + 1, headDim]);
        const q = split(linear(g, h, "attention.query", d, d));
        const k = split(linear(g, h, "attention.key", d, d));
        const v = split(linear(g, h, "attention.value", d, d));
        const kt = g.node("Transpose", [k], { perm: [0, 1, 3, 2] }, [1, heads, headDim, n + 1]);
        const scores = g.node("Mul", [g.node("MatMul", [q, kt], {}, [1, heads, n + 1, n + 1]), g.constFloat([1 / Math.sqrt(headDim)], [])], {}, [1, heads, n + 1, n + 1]);
        const ctx = g.node("MatMul", [g.node("Softmax", [scores], { axis: -1 }, scores.shape), v], {}, [1, heads, n + 1, headDim]);
        const merged = g.node("Reshape", [g.node("Transpose", [ctx], { perm: [0, 2, 1, 3] }, [1, n + 1, heads, headDim]), g.constInt64([0, -1, d])], {}, [1, n + 1, d]);
        return linear(g, merged, "output.dense", d, d);
      });
      const scale1 = g.fixedWeight("layer_scale1.lambda1", [d], 1);
      const x1 = g.node("Add", [x, g.node("Mul", [attn, scale1], {}, attn.shape)], {}, x.shape);
      const m = linear(g, gelu(g, linear(g, layerNorm(g, x1, "norm2", d, 1e-6), "mlp.fc1", d, config.mlp)), "mlp.fc2", config.mlp, d);
      const scale2 = g.fixedWeight("layer_scale2.lambda1", [d], 1);
      return g.node("Add", [x1, g.node("Mul", [m, scale2], {}, m.shape)], {}, x.shape);
    });
    if (config.outIndices.includes(i + 1)) features.push(x);
  }
  // The backbone's layernorm on each feature, the CLS token dropped, tokens back to a grid.
  const maps = features.map((f) => {
    const normed = g.scope("backbone", () => layerNorm(g, f, "layernorm", d, 1e-6));
    const tokens = g.node("Slice", [normed, g.constInt64([1]), g.constInt64([1 << 30]), g.constInt64([1])], {}, [1, n, d]);
    return g.node("Reshape", [g.node("Transpose", [tokens], { perm: [0, 2, 1] }, [1, d, n]), shapeOf(g, [batch!, d, gh!, gw!])], {}, [1, d, ph, pw]);
  });
  // Neck: reassemble (project, resize by 4, 2, 1, 1/2), then 3x3 convs to the fusion width.
  const reassembled = maps.map((m, i) =>
    g.scope(`neck.reassemble_stage.layers.${i}`, () => {
      const c = config.neck[i]!;
      const p = conv(g, m, "projection", d, c, 1, { pad: 0 });
      if (i === 0) return convT(g, p, "resize", c, 4);
      if (i === 1) return convT(g, p, "resize", c, 2);
      if (i === 2) return p;
      return conv(g, p, "resize", c, c, 3, { stride: 2, pad: 1 });
    }),
  );
  const projected = reassembled.map((r, i) => convNoBias(g, r, `neck.convs.${i}`, config.neck[i]!, config.fusion));
  const unit = (v: Value, name: string) =>
    g.scope(name, () => {
      const a = conv(g, g.node("Relu", [v], {}, v.shape), "convolution1", config.fusion, config.fusion, 3);
      const b = conv(g, g.node("Relu", [a], {}, a.shape), "convolution2", config.fusion, config.fusion, 3);
      return g.node("Add", [b, v], {}, v.shape);
    });
  // Fusion, coarse to fine: each stage up-sampled 2x to the next finer one's size (the last by 2x).
  let fused: Value | null = null;
  for (let j = 0; j < 4; j++) {
    const level = projected[3 - j]!;
    fused = g.scope(`neck.fusion_stage.layers.${j}`, () => {
      let h = level;
      if (fused) h = g.node("Add", [fused, unit(level, "residual_layer1")], {}, level.shape);
      h = unit(h, "residual_layer2");
      const target = j < 3 ? projected[2 - j]! : null;
      const [, c, hh, ww] = h.shape as [number, number, number, number];
      const [tb] = dims(g, h, [0]);
      const sizes = target ? shapeOf(g, [tb!, config.fusion, ...dims(g, target, [2, 3])]) : shapeOf(g, [tb!, config.fusion, dimOp(g, "Mul", dims(g, h, [2])[0]!, 2), dimOp(g, "Mul", dims(g, h, [3])[0]!, 2)]);
      const up = resizeTo4(g, h, sizes, target ? target.shape : [1, c, 2 * hh, 2 * ww], "linear");
      return conv(g, up, "projection", config.fusion, config.fusion, 1, { pad: 0 });
    });
  }
  // Head: conv to half the width, up-sampled to the input's size, conv, ReLU, 1x1 conv, ReLU.
  const depth = g.scope("head", () => {
    let h = conv(g, fused!, "conv1", config.fusion, config.fusion / 2, 3);
    const [hb] = dims(g, h, [0]);
    const [ih, iw] = dims(g, input, [2, 3]);
    h = resizeTo4(g, h, shapeOf(g, [hb!, config.fusion / 2, ih!, iw!]), [1, config.fusion / 2, rh, rw], "linear");
    h = g.node("Relu", [conv(g, h, "conv2", config.fusion / 2, config.headHidden, 3)], {}, [1, config.headHidden, rh, rw]);
    h = g.node("Relu", [conv(g, h, "conv3", config.headHidden, 1, 1, { pad: 0 })], {}, [1, 1, rh, rw]);
    return g.node("Squeeze", [h, g.constInt64([1])], {}, [1, rh, rw]);
  });
  g.output(depth, "predicted_depth", ["batch_size", "height", "width"]);
  return g;
}
