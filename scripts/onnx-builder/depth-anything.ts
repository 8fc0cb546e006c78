/**
 * A stand-in for Depth Anything V2 Small as onnx-community/depth-anything-v2-small publishes it
 * (Transformers.js layout): onnx/model.onnx `pixel_values` float32 [batch_size, 3, height, width]
 * -> `predicted_depth` float32 [batch_size, height, width] (relative inverse depth, >= 0), beside
 * config.json ({"model_type": "depth_anything"}) and preprocessor_config.json (DPTImageProcessor).
 *
 * I/O-FAITHFUL ONLY: the inputs, outputs, dtypes and dynamic axes are the real export's, the
 * network is not. The real one is DINOv2 ViT-S/14 (patch embedding, 12 transformer blocks) and a
 * DPT head (24.8 M weights); this is a small conv net with random weights: a stride-14 14x14
 * patch embedding (as DINOv2's), two convolutions, a bilinear up-sampling to the input's size
 * (read from its shape at run time, as the DPT head's final interpolation) and a 1-channel
 * convolution ending in ReLU (as the DPT head's), the channel axis squeezed.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { Graph, type GraphCounts, type Value } from "./graph";
import { conv, dims, shapeOf } from "./layers";

/** DINOv2's patch size. */
export const DEPTH_PATCH = 14;
const WIDTH = 32;

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

const relu = (g: Graph, x: Value) => g.node("Relu", [x], {}, x.shape);

/** The graph (reference input 1x3x56x70 for the counts). */
export function depthAnythingStandIn(): Graph {
  const g = new Graph("depth_anything_stand_in");
  const ref = [1, 3, 56, 70];
  const input = g.input("pixel_values", 1, ["batch_size", 3, "height", "width"], ref);
  const [, , h, w] = ref as [number, number, number, number];
  let x = g.scope("backbone.embeddings.patch_embeddings", () => conv(g, input, "projection", 3, WIDTH, DEPTH_PATCH, { stride: DEPTH_PATCH, pad: 0 }));
  x = relu(g, x);
  x = relu(g, conv(g, x, "neck.conv", WIDTH, WIDTH, 3));
  const [batch] = dims(g, x, [0]);
  const [height, width] = dims(g, input, [2, 3]);
  const sizes = shapeOf(g, [batch!, WIDTH, height!, width!]);
  x = g.node("Resize", [x, "", "", sizes], { mode: "linear", coordinate_transformation_mode: "half_pixel" }, [1, WIDTH, h, w]);
  x = relu(g, conv(g, x, "head.conv2", WIDTH, WIDTH, 3));
  // A positive bias keeps most of the random net's output above ReLU's floor.
  x = g.scope("head.conv3", () => {
    const wt = g.weight("weight", [1, WIDTH, 1, 1], 1 / Math.sqrt(WIDTH));
    return g.node("Conv", [x, wt, g.fixedWeight("bias", [1], 1)], { kernel_shape: [1, 1], pads: [0, 0, 0, 0], strides: [1, 1], dilations: [1, 1], group: 1 }, [1, 1, h, w]);
  });
  x = relu(g, x);
  const depth = g.node("Squeeze", [x, g.constInt64([1])], {}, [1, h, w]);
  g.output(depth, "predicted_depth", ["batch_size", "height", "width"]);
  return g;
}

/** Writes config.json, preprocessor_config.json and onnx/model.onnx (weights inside) under `dir`. */
export async function writeDepthAnythingFolder(dir: string): Promise<GraphCounts> {
  const graph = depthAnythingStandIn();
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "config.json"), JSON.stringify(DEPTH_ANYTHING_CONFIG, null, 2));
  await writeFile(path.join(dir, "preprocessor_config.json"), JSON.stringify(DEPTH_ANYTHING_PREPROCESSOR, null, 2));
  await graph.write(path.join(dir, "onnx", "model.onnx"));
  return graph.counts();
}
