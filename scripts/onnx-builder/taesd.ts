/**
 * TAESD, madebyollin's Tiny AutoEncoder for Stable Diffusion (taesd.py), with random weights, as an
 * ONNX export of diffusers' AutoencoderTiny writes it (Optimum's VaeDecoderOnnxConfig /
 * VaeEncoderOnnxConfig, opset 14): vae_decoder/model.onnx `latent_sample` [batch, 4, h, w] ->
 * `sample` [batch, 3, 8h, 8w], vae_encoder/model.onnx `sample` -> `latent_sample`.
 *
 * Inside, the networks are taesd.py's: 64-channel 3x3 convolutions, Blocks of conv-ReLU-conv-ReLU-conv
 * plus the (identity) skip then ReLU, nearest 2x up-sampling and stride-2 convolutions without bias;
 * the decoder's input soft-clamped by tanh(x / 3) * 3, its output not clamped; images in [0, 1];
 * latents at scale factor 1, i.e. the latents the SD UNet works on (the VAE posterior x 0.18215).
 * AutoencoderTiny wraps them in diffusers' image convention: the encoder takes [-1, 1] and maps it
 * by (x + 1) / 2, the decoder's output is mapped by 2y - 1. `imageRange: "zero-to-one"` leaves the
 * wrappers out (taesd.py's own nets), with the same weights.
 *
 * Weights are named as AutoencoderTiny's state dict (decoder.layers.2.conv.0.weight, ...): 1,222,531
 * in the decoder and 1,222,532 in the encoder, the counts madebyollin publishes.
 */
import path from "node:path";
import { Graph, type GraphCounts, type Value } from "./graph";

export type TaesdImageRange = "minus-one-to-one" | "zero-to-one";

export interface TaesdOptions {
  /** What the graphs' image ends hold (default diffusers' "minus-one-to-one"). */
  imageRange?: TaesdImageRange;
  /** Latent side of the reference input the FLOP are counted for (default 64: a 512x512 picture). */
  latent?: number;
}

const WIDTH = 64;
const LATENT_CHANNELS = 4;
/** Optimum's default opset for the VAE parts. */
export const TAESD_OPSET = 14;

/** A 3x3 convolution, padding 1, as nn.Conv2d(cin, cout, 3, padding=1, stride, bias). */
function conv3(g: Graph, x: Value, name: string, cin: number, cout: number, options: { stride?: number; bias?: boolean | number; std?: number } = {}): Value {
  const stride = options.stride ?? 1;
  return g.scope(name, () => {
    const w = g.weight("weight", [cout, cin, 3, 3], options.std ?? Math.sqrt(2 / (cin * 9)));
    const [n, , h, wd] = x.shape as [number, number, number, number];
    const out = [n, cout, Math.floor((h + 2 - 3) / stride) + 1, Math.floor((wd + 2 - 3) / stride) + 1];
    const bias = options.bias ?? true;
    const inputs = bias === false ? [x, w] : [x, w, g.fixedWeight("bias", [cout], bias === true ? 0 : bias)];
    return g.node("Conv", inputs, { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [stride, stride], dilations: [1, 1], group: 1 }, out);
  });
}

const relu = (g: Graph, x: Value) => g.node("Relu", [x], {}, x.shape);

/** Block(64, 64): fuse(conv(x) + skip(x)), skip the identity at equal widths; the last conv scaled down so the residual stream stays O(1). */
function block(g: Graph, x: Value, name: string): Value {
  return g.scope(name, () => {
    let h = relu(g, conv3(g, x, "conv.0", WIDTH, WIDTH));
    h = relu(g, conv3(g, h, "conv.2", WIDTH, WIDTH));
    h = conv3(g, h, "conv.4", WIDTH, WIDTH, { std: 0.5 / Math.sqrt(WIDTH * 9) });
    return relu(g, g.node("Add", [h, x], {}, x.shape));
  });
}

function upsample(g: Graph, x: Value, name: string): Value {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  return g.scope(name, () =>
    g.node("Resize", [x, "", g.constFloat([1, 1, 2, 2], [4])], { mode: "nearest", coordinate_transformation_mode: "asymmetric", nearest_mode: "floor" }, [n, c, 2 * h, 2 * w]),
  );
}

/** Decoder: tanh(x / 3) * 3, conv(4, 64), ReLU, 3 x (3 Blocks, up-sample, conv without bias), Block, conv(64, 3). */
export function taesdDecoder(options: TaesdOptions = {}): Graph {
  const latent = options.latent ?? 64;
  const g = new Graph("taesd_decoder");
  const input = g.input("latent_sample", 1, ["batch_size", LATENT_CHANNELS, "height_latent", "width_latent"], [1, LATENT_CHANNELS, latent, latent]);
  const image = g.scope("decoder", () => {
    const three = g.constFloat([3], []);
    let x = g.node("Mul", [g.node("Tanh", [g.node("Div", [input, three], {}, input.shape)], {}, input.shape), three], {}, input.shape);
    x = relu(g, conv3(g, x, "layers.0", LATENT_CHANNELS, WIDTH));
    let layer = 2;
    for (let stage = 0; stage < 3; stage++) {
      for (let b = 0; b < 3; b++) x = block(g, x, `layers.${layer++}`);
      x = upsample(g, x, `layers.${layer++}`);
      x = conv3(g, x, `layers.${layer++}`, WIDTH, WIDTH, { bias: false });
    }
    x = block(g, x, `layers.${layer++}`);
    // Mid-grey pictures of modest contrast from random weights: bias 0.5, small weights.
    x = conv3(g, x, `layers.${layer}`, WIDTH, 3, { bias: 0.5, std: 0.15 / Math.sqrt(WIDTH * 9) });
    if (options.imageRange === "zero-to-one") return x;
    // diffusers' convention: [0, 1] -> [-1, 1], not clamped.
    return g.node("Sub", [g.node("Mul", [x, g.constFloat([2], [])], {}, x.shape), g.constFloat([1], [])], {}, x.shape);
  });
  g.output(image, "sample", ["batch_size", 3, "height", "width"]);
  return g;
}

/** Encoder: conv(3, 64), Block, 3 x (conv stride 2 without bias, 3 Blocks), conv(64, 4). */
export function taesdEncoder(options: TaesdOptions = {}): Graph {
  const side = 8 * (options.latent ?? 64);
  const g = new Graph("taesd_encoder");
  const input = g.input("sample", 1, ["batch_size", 3, "height", "width"], [1, 3, side, side]);
  const latents = g.scope("encoder", () => {
    // diffusers' convention: [-1, 1] -> [0, 1].
    let x = options.imageRange === "zero-to-one" ? input : g.node("Div", [g.node("Add", [input, g.constFloat([1], [])], {}, input.shape), g.constFloat([2], [])], {}, input.shape);
    x = conv3(g, x, "layers.0", 3, WIDTH);
    x = block(g, x, "layers.1");
    let layer = 2;
    for (let stage = 0; stage < 3; stage++) {
      x = conv3(g, x, `layers.${layer++}`, WIDTH, WIDTH, { stride: 2, bias: false });
      for (let b = 0; b < 3; b++) x = block(g, x, `layers.${layer++}`);
    }
    return conv3(g, x, `layers.${layer}`, WIDTH, LATENT_CHANNELS, { std: 1 / Math.sqrt(WIDTH * 9) });
  });
  g.output(latents, "latent_sample", ["batch_size", LATENT_CHANNELS, "height_latent", "width_latent"]);
  return g;
}

/** The folders as the ONNX repo holds them. */
export const TAESD_PARTS = { decoder: "vae_decoder", encoder: "vae_encoder" } as const;

/** Writes vae_decoder/model.onnx and vae_encoder/model.onnx (weights inside, about 4.9 MB each) under `dir`. */
export async function writeTaesdFolder(dir: string, options: TaesdOptions = {}): Promise<{ decoder: GraphCounts; encoder: GraphCounts }> {
  const decoder = taesdDecoder(options);
  const encoder = taesdEncoder(options);
  await decoder.write(path.join(dir, TAESD_PARTS.decoder, "model.onnx"), { opset: TAESD_OPSET });
  await encoder.write(path.join(dir, TAESD_PARTS.encoder, "model.onnx"), { opset: TAESD_OPSET });
  return { decoder: decoder.counts(), encoder: encoder.counts() };
}
