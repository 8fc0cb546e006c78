/**
 * Stable Diffusion 1.5's four networks with random weights, with the diffusers ONNX export's
 * tensor names, dtypes and dynamic axes. `sd15Config(width)` scales every channel count by
 * `width` (full size at 1), keeping the depth and the structure.
 */
import { FLOAT, Graph, INT32, INT64, type Value } from "./graph";
import { add, attention, conv, fromTokens, groupNorm, layerNorm, linear, resnet, silu, toTokens, upsample } from "./layers";

export interface Sd15Config {
  text: { hidden: number; intermediate: number; layers: number; heads: number; vocab: number; positions: number };
  unet: { blocks: number[]; layersPerBlock: number; heads: number; groups: number; crossAttentionDim: number; inChannels: 4 | 9 };
  vae: { blocks: number[]; layersPerBlock: number; groups: number; latentChannels: number };
}

const round = (c: number, step: number) => Math.max(step, Math.round(c / step) * step);

/** The SD 1.5 configuration, every width times `width` (channels stay multiples of 32 for GroupNorm). */
export function sd15Config(width = 1, inChannels: 4 | 9 = 4): Sd15Config {
  const hidden = round(768 * width, 64);
  return {
    text: { hidden, intermediate: 4 * hidden, layers: 12, heads: hidden / 64, vocab: 49408, positions: 77 },
    unet: { blocks: [320, 640, 1280, 1280].map((c) => round(c * width, 32)), layersPerBlock: 2, heads: 8, groups: 32, crossAttentionDim: hidden, inChannels },
    vae: { blocks: [128, 256, 512, 512].map((c) => round(c * width, 32)), layersPerBlock: 2, groups: 32, latentChannels: 4 },
  };
}

/** Reference inputs the counts are for: the (text [2, 77], UNet batch 1 at 64x64, VAE at 64x64 latents). */
export interface ReferenceShapes {
  textBatch: number;
  sequence: number;
  unetBatch: number;
  /** Latent side (pixels / 8): UNet, VAE decoder input, VAE encoder output. */
  latent: number;
}
export const REFERENCE: ReferenceShapes = { textBatch: 2, sequence: 77, unetBatch: 1, latent: 64 };

// ---- CLIP text encoder ----

export function textEncoder(config: Sd15Config, ref: ReferenceShapes = REFERENCE): Graph {
  const { hidden: d, intermediate, layers, heads, vocab, positions } = config.text;
  const g = new Graph("text_encoder");
  const [B, S] = [ref.textBatch, ref.sequence];
  const ids = g.input("input_ids", INT32, ["batch", "sequence"], [B, S]);
  let h = g.scope("text_model.embeddings", () => {
    const tok = g.node("Gather", [g.weight("token_embedding.weight", [vocab, d], 0.02 * 50), ids], {}, [B, S, d]);
    return tok;
  });
  const idsShape = g.node("Shape", [ids], {}, [2]);
  const seq = g.node("Gather", [idsShape, g.constInt64([1], [])], { axis: 0 }, []);
  const batch = g.node("Gather", [idsShape, g.constInt64([0], [])], { axis: 0 }, []);
  const zero = g.constInt64([0], []);
  const one = g.constInt64([1], []);
  const positionIds = g.node("Range", [zero, seq, one], {}, [S]);
  const pos = g.scope("text_model.embeddings", () => g.node("Gather", [g.weight("position_embedding.weight", [positions, d], 1), positionIds], {}, [S, d]));
  h = add(g, h, pos);
  // Causal mask [S, S]: a large negative number above the diagonal.
  const rows = g.node("Unsqueeze", [positionIds, g.constInt64([1])], {}, [S, 1]);
  const cols = g.node("Unsqueeze", [positionIds, g.constInt64([0])], {}, [1, S]);
  const future = g.node("Less", [rows, cols], {}, [S, S]);
  const mask = g.node("Where", [future, g.constFloat([-3.4028234663852886e38], []), g.constFloat([0], [])], {}, [S, S]);
  for (let i = 0; i < layers; i++) {
    h = g.scope(`text_model.encoder.layers.${i}`, () => {
      const a = attention(g, layerNorm(g, h, "layer_norm1", d, 1e-5), null, "self_attn", { dim: d, heads, dimHead: d / heads, qkvBias: true, mask });
      let x = add(g, h, a);
      const n = layerNorm(g, x, "layer_norm2", d, 1e-5);
      const m = linear(g, n, "mlp.fc1", d, intermediate);
      const gelu = g.node("Mul", [m, g.node("Sigmoid", [g.node("Mul", [m, g.constFloat([1.702], [])], {}, m.shape)], {}, m.shape)], {}, m.shape);
      x = add(g, x, linear(g, gelu, "mlp.fc2", intermediate, d, { std: 1 / Math.sqrt(intermediate * layers) }));
      return x;
    });
  }
  const last = layerNorm(g, h, "text_model.final_layer_norm", d, 1e-5);
  g.output(last, "last_hidden_state", ["batch", "sequence", d]);
  // pooler_output: the hidden state at each row's end-of-text token (the largest id).
  const eos = g.node("ArgMax", [ids], { axis: -1, keepdims: 0 }, [B]);
  const flat = g.node("Reshape", [last, g.constInt64([-1, d])], {}, [B * S, d]);
  const rowStart = g.node("Mul", [g.node("Range", [zero, batch, one], {}, [B]), seq], {}, [B]);
  const pooled = g.node("Gather", [flat, g.node("Add", [rowStart, eos], {}, [B])], { axis: 0 }, [B, d]);
  g.output(pooled, "pooler_output", ["batch", d]);
  return g;
}

// ---- UNet ----

function transformer(g: Graph, x: Value, context: Value, name: string, channels: number, config: Sd15Config["unet"]): Value {
  return g.scope(name, () => {
    const dimHead = channels / config.heads;
    let h = groupNorm(g, x, "norm", channels, config.groups, 1e-6);
    h = conv(g, h, "proj_in", channels, channels, 1);
    let t = toTokens(g, h);
    t = g.scope("transformer_blocks.0", () => {
      let y = add(g, t, attention(g, layerNorm(g, t, "norm1", channels, 1e-5), null, "attn1", { dim: channels, heads: config.heads, dimHead, qkvBias: false }));
      y = add(g, y, attention(g, layerNorm(g, y, "norm2", channels, 1e-5), context, "attn2", { dim: channels, heads: config.heads, dimHead, contextDim: config.crossAttentionDim, qkvBias: false }));
      const n = layerNorm(g, y, "norm3", channels, 1e-5);
      const proj = linear(g, n, "ff.net.0.proj", channels, 8 * channels);
      const [value, gate] = g.nodeN("Split", [proj, g.constInt64([4 * channels, 4 * channels])], { axis: -1 }, [
        [...n.shape.slice(0, -1), 4 * channels],
        [...n.shape.slice(0, -1), 4 * channels],
      ]);
      // GELU(gate) = 0.5 * gate * (1 + erf(gate / sqrt 2))
      const erf = g.node("Erf", [g.node("Div", [gate!, g.constFloat([Math.SQRT2], [])], {}, gate!.shape)], {}, gate!.shape);
      const gelu = g.node("Mul", [g.node("Mul", [gate!, g.node("Add", [erf, g.constFloat([1], [])], {}, gate!.shape)], {}, gate!.shape), g.constFloat([0.5], [])], {}, gate!.shape);
      const gated = g.node("Mul", [value!, gelu], {}, value!.shape);
      return add(g, y, linear(g, gated, "ff.net.2", 4 * channels, channels));
    });
    h = fromTokens(g, t, x);
    return add(g, conv(g, h, "proj_out", channels, channels, 1), x);
  });
}

export function unet(config: Sd15Config, ref: ReferenceShapes = REFERENCE): Graph {
  const u = config.unet;
  const g = new Graph("unet");
  const [B, L] = [ref.unetBatch, ref.latent];
  const sample = g.input("sample", FLOAT, ["batch", "channels", "height", "width"], [B, u.inChannels, L, L]);
  const timestep = g.input("timestep", FLOAT, ["batch"], [B]);
  const context = g.input("encoder_hidden_states", FLOAT, ["batch", "sequence", u.crossAttentionDim], [B, ref.sequence, u.crossAttentionDim]);
  const c0 = u.blocks[0]!;
  const tembDim = 4 * c0;

  // Sinusoidal timestep embedding (flip_sin_to_cos, freq_shift 0), broadcast to the sample's batch.
  const half = c0 / 2;
  const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const batchShape = g.node("Slice", [g.node("Shape", [sample], {}, [4]), g.constInt64([0]), g.constInt64([1])], {}, [1]);
  const t = g.node("Unsqueeze", [g.node("Expand", [timestep, batchShape], {}, [B]), g.constInt64([1])], {}, [B, 1]);
  const args = g.node("Mul", [t, g.constFloat(freqs, [1, half])], {}, [B, half]);
  const tproj = g.node("Concat", [g.node("Cos", [args], {}, [B, half]), g.node("Sin", [args], {}, [B, half])], { axis: 1 }, [B, c0]);
  const temb = g.scope("time_embedding", () => linear(g, silu(g, linear(g, tproj, "linear_1", c0, tembDim)), "linear_2", tembDim, tembDim));
  const tembAct = silu(g, temb);

  let h = conv(g, sample, "conv_in", u.inChannels, c0, 3);
  const skips: { value: Value; channels: number }[] = [{ value: h, channels: c0 }];
  let channels = c0;
  const last = u.blocks.length - 1;
  u.blocks.forEach((out, i) => {
    g.scope(`down_blocks.${i}`, () => {
      for (let j = 0; j < u.layersPerBlock; j++) {
        h = resnet(g, h, tembAct, `resnets.${j}`, channels, out, u.groups, 1e-5);
        channels = out;
        if (i < last) h = transformer(g, h, context, `attentions.${j}`, out, u);
        skips.push({ value: h, channels });
      }
      if (i < last) {
        h = conv(g, h, "downsamplers.0.conv", out, out, 3, { stride: 2, pad: 1 });
        skips.push({ value: h, channels });
      }
    });
  });
  g.scope("mid_block", () => {
    h = resnet(g, h, tembAct, "resnets.0", channels, channels, u.groups, 1e-5);
    h = transformer(g, h, context, "attentions.0", channels, u);
    h = resnet(g, h, tembAct, "resnets.1", channels, channels, u.groups, 1e-5);
  });
  const reversed = [...u.blocks].reverse();
  reversed.forEach((out, i) => {
    g.scope(`up_blocks.${i}`, () => {
      for (let j = 0; j <= u.layersPerBlock; j++) {
        const skip = skips.pop()!;
        const [b, , hh, ww] = h.shape as [number, number, number, number];
        h = g.node("Concat", [h, skip.value], { axis: 1 }, [b, channels + skip.channels, hh, ww]);
        h = resnet(g, h, tembAct, `resnets.${j}`, channels + skip.channels, out, u.groups, 1e-5);
        channels = out;
        if (i > 0) h = transformer(g, h, context, `attentions.${j}`, out, u);
      }
      if (i < last) h = upsample(g, h, "upsamplers.0", out);
    });
  });
  h = silu(g, groupNorm(g, h, "conv_norm_out", channels, u.groups, 1e-5));
  h = conv(g, h, "conv_out", channels, 4, 3, { std: 0.3 / Math.sqrt(channels * 9) });
  g.output(h, "out_sample", ["batch", 4, "height", "width"]);
  return g;
}

// ---- VAE ----

function vaeAttention(g: Graph, x: Value, name: string, channels: number, groups: number): Value {
  return g.scope(name, () => {
    const t = toTokens(g, groupNorm(g, x, "group_norm", channels, groups, 1e-6));
    const a = attention(g, t, null, "attn", { dim: channels, heads: 1, dimHead: channels, qkvBias: true });
    return add(g, fromTokens(g, a, x), x);
  });
}

function vaeMid(g: Graph, h: Value, channels: number, groups: number): Value {
  return g.scope("mid_block", () => {
    h = resnet(g, h, null, "resnets.0", channels, channels, groups, 1e-6);
    h = vaeAttention(g, h, "attentions.0", channels, groups);
    return resnet(g, h, null, "resnets.1", channels, channels, groups, 1e-6);
  });
}

export function vaeDecoder(config: Sd15Config, ref: ReferenceShapes = REFERENCE): Graph {
  const v = config.vae;
  const g = new Graph("vae_decoder");
  const [B, L] = [1, ref.latent];
  const z = g.input("latent_sample", FLOAT, ["batch", "channels", "height", "width"], [B, v.latentChannels, L, L]);
  let h = conv(g, z, "post_quant_conv", v.latentChannels, v.latentChannels, 1);
  const reversed = [...v.blocks].reverse();
  let channels = reversed[0]!;
  h = g.scope("decoder", () => {
    let x = conv(g, h, "conv_in", v.latentChannels, channels, 3);
    x = vaeMid(g, x, channels, v.groups);
    reversed.forEach((out, i) => {
      g.scope(`up_blocks.${i}`, () => {
        for (let j = 0; j <= v.layersPerBlock; j++) {
          x = resnet(g, x, null, `resnets.${j}`, channels, out, v.groups, 1e-6);
          channels = out;
        }
        if (i < reversed.length - 1) x = upsample(g, x, "upsamplers.0", out);
      });
    });
    x = silu(g, groupNorm(g, x, "conv_norm_out", channels, v.groups, 1e-6));
    return conv(g, x, "conv_out", channels, 3, 3, { std: 0.5 / Math.sqrt(channels * 9) });
  });
  g.output(h, "sample", ["batch", 3, "height", "width"]);
  return g;
}

export function vaeEncoder(config: Sd15Config, ref: ReferenceShapes = REFERENCE): Graph {
  const v = config.vae;
  const g = new Graph("vae_encoder");
  const scale = 2 ** (v.blocks.length - 1);
  const [B, P] = [1, ref.latent * scale];
  const image = g.input("sample", FLOAT, ["batch", "channels", "height", "width"], [B, 3, P, P]);
  let channels = v.blocks[0]!;
  let h = g.scope("encoder", () => {
    let x = conv(g, image, "conv_in", 3, channels, 3);
    v.blocks.forEach((out, i) => {
      g.scope(`down_blocks.${i}`, () => {
        for (let j = 0; j < v.layersPerBlock; j++) {
          x = resnet(g, x, null, `resnets.${j}`, channels, out, v.groups, 1e-6);
          channels = out;
        }
        if (i < v.blocks.length - 1) {
          // Downsample2D in the VAE pads right and bottom by one, then a 3x3 stride-2 conv without padding.
          const [b, c, hh, ww] = x.shape as [number, number, number, number];
          const padded = g.node("Pad", [x, g.constInt64([0, 0, 0, 0, 0, 0, 1, 1])], { mode: "constant" }, [b, c, hh + 1, ww + 1]);
          x = conv(g, padded, "downsamplers.0.conv", out, out, 3, { stride: 2, pad: 0 });
        }
      });
    });
    x = vaeMid(g, x, channels, v.groups);
    x = silu(g, groupNorm(g, x, "conv_norm_out", channels, v.groups, 1e-6));
    return conv(g, x, "conv_out", channels, 2 * v.latentChannels, 3);
  });
  h = conv(g, h, "quant_conv", 2 * v.latentChannels, 2 * v.latentChannels, 1);
  const half = [B, v.latentChannels, h.shape[2]!, h.shape[3]!];
  const [mean, logvar] = g.nodeN("Split", [h, g.constInt64([v.latentChannels, v.latentChannels])], { axis: 1 }, [half, half]);
  const clamped = g.node("Clip", [logvar!, g.constFloat([-30], []), g.constFloat([20], [])], {}, half);
  const std = g.node("Exp", [g.node("Mul", [clamped, g.constFloat([0.5], [])], {}, half)], {}, half);
  const eps = g.node("RandomNormalLike", [mean!], { mean: { float: 0 }, scale: { float: 1 } }, half);
  const latent = g.node("Add", [mean!, g.node("Mul", [std, eps], {}, half)], {}, half);
  g.output(latent, "latent_sample", ["batch", v.latentChannels, "height_latent", "width_latent"]);
  return g;
}

// ---- the roofline's yardstick ----

/** One [n, n] x [n, n] MatMul, the rate the UNet is compared with. */
export function matmul(n: number): Graph {
  const g = new Graph("matmul");
  const a = g.input("a", FLOAT, [n, n], [n, n]);
  const b = g.weight("b", [n, n], 1 / Math.sqrt(n));
  g.output(g.node("MatMul", [a, b], {}, [n, n]), "c", [n, n]);
  return g;
}

export { INT64 };
