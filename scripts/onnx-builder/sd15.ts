/**
 * Stable Diffusion 1.5's four networks with random weights, with the diffusers ONNX export's
 * tensor names, dtypes and dynamic axes. `sd15Config(width)` scales every channel count by
 * `width` (full size at 1), keeping the depth and the structure.
 */
import { FLOAT, Graph, INT32, INT64, type Value } from "./graph";
import { add, chunk2, clipAttention, conv, diffusersAttention, dimOp, dims, gemm, groupNorm, layerNorm, linear, resnet, shapeOf, silu, upsample } from "./layers";

export interface TextConfig {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  vocab: number;
  positions: number;
  /** transformers' hidden_act: CLIP ViT-L's quick_gelu (the default) or OpenCLIP bigG's exact gelu. */
  act?: "quick_gelu" | "gelu";
  /** CLIPTextModelWithProjection: pooled output through text_projection (no bias), output as text_embeds. */
  projection?: number;
  /** Optimum's output_hidden_states: hidden_states.0 (embeddings) .. hidden_states.<layers> as outputs. */
  hiddenStates?: boolean;
  /** input_ids' dtype: int32 (diffusers' script, the default) or int64 (Optimum). */
  idsType?: typeof INT32 | typeof INT64;
}

export interface Sd15Config {
  text: TextConfig;
  unet: {
    blocks: number[];
    /** Per level of the down path (the up path mirrors it): CrossAttnDownBlock2D (true) or DownBlock2D (false). */
    crossAttention: boolean[];
    layersPerBlock: number;
    heads: number;
    /** Heads per level (SDXL's attention_head_dim list, which diffusers reads as head counts); `heads` everywhere when absent. */
    headsPerLevel?: number[];
    /** BasicTransformerBlocks per level (transformer_layers_per_block; the mid block takes the last); 1 when absent. */
    transformerDepth?: number[];
    /** use_linear_projection: proj_in / proj_out as Linear on the tokens (SD 2.x, SDXL) instead of 1x1 convs. */
    linearProjection?: boolean;
    /** addition_embed_type "text_time" (SDXL): text_embeds [B, textEmbedsDim] and time_ids [B, 6] inputs. */
    addition?: { timeEmbedDim: number; textEmbedsDim: number; timeIds: number };
    groups: number;
    crossAttentionDim: number;
    inChannels: 4 | 9;
  };
  vae: { blocks: number[]; layersPerBlock: number; groups: number; latentChannels: number };
}

const round = (c: number, step: number) => Math.max(step, Math.round(c / step) * step);

/** The SD 1.5 configuration, every width times `width` (channels stay multiples of 32 for GroupNorm). */
export function sd15Config(width = 1, inChannels: 4 | 9 = 4): Sd15Config {
  const hidden = round(768 * width, 64);
  return {
    text: { hidden, intermediate: 4 * hidden, layers: 12, heads: hidden / 64, vocab: 49408, positions: 77 },
    unet: { blocks: [320, 640, 1280, 1280].map((c) => round(c * width, 32)), crossAttention: [true, true, true, false], layersPerBlock: 2, heads: 8, groups: 32, crossAttentionDim: hidden, inChannels },
    vae: { blocks: [128, 256, 512, 512].map((c) => round(c * width, 32)), layersPerBlock: 2, groups: 32, latentChannels: 4 },
  };
}

/**
 * SD 2.1's configuration (SD-Turbo's too), every width times `width`: OpenCLIP ViT-H/14's text
 * tower as diffusers ships it (1024 wide, 23 layers), 1024-wide cross-attention, 64-wide attention
 * heads (its attention_head_dim [5, 10, 20, 20], which diffusers reads as head counts) and linear
 * proj_in / proj_out; the rest is SD 1.5's.
 */
export function sd21Config(width = 1, inChannels: 4 | 9 = 4): Sd15Config {
  const base = sd15Config(width, inChannels);
  const hidden = round(1024 * width, 64);
  return {
    ...base,
    text: { ...base.text, hidden, intermediate: 4 * hidden, layers: 23, heads: hidden / 64, act: "gelu" },
    unet: {
      ...base.unet,
      crossAttentionDim: hidden,
      headsPerLevel: base.unet.blocks.map((c) => (c % 64 === 0 ? c / 64 : c / 32)),
      linearProjection: true,
    },
  };
}

/**
 * The configuration of the tiny diffusers export in the fixtures (tiny-sd, see its README and
 * reference/models.json): the builder's graphs at this configuration have the export's nodes.
 */
export function tinySdConfig(): Sd15Config {
  return {
    text: { hidden: 32, intermediate: 37, layers: 5, heads: 4, vocab: 49408, positions: 77 },
    unet: { blocks: [32, 64], crossAttention: [false, true], layersPerBlock: 2, heads: 8, groups: 32, crossAttentionDim: 32, inChannels: 4 },
    vae: { blocks: [32, 32, 32, 32], layersPerBlock: 1, groups: 32, latentChannels: 4 },
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
  const idsType = config.text.idsType ?? INT32;
  const optimum = idsType === INT64;
  const input = g.input("input_ids", idsType, optimum ? ["batch_size", "sequence_length"] : ["batch", "sequence"], [B, S]);
  const [batch, seq] = dims(g, input, [0, 1]) as [Value, Value];
  const ids = g.scope("text_model", () => g.node("Reshape", [input, shapeOf(g, [-1, seq])], {}, [B, S]));
  let h = g.scope("text_model.embeddings", () => {
    const tok = g.scope("token_embedding", () => g.node("Gather", [g.weight("weight", [vocab, d], 0.02 * 50), ids], {}, [B, S, d]));
    // position_ids: the model's registered buffer [1, positions], sliced to the sequence.
    const positionIds = g.node("Slice", [g.constInt64(Array.from({ length: positions }, (_, i) => i), [1, positions]), g.constInt64([0]), seq, g.constInt64([1]), g.constInt64([1])], {}, [1, S]);
    const pos = g.scope("position_embedding", () => g.node("Gather", [g.weight("weight", [positions, d], 1), positionIds], {}, [1, S, d]));
    return add(g, tok, pos);
  });
  // The causal mask [B, 1, S, S] (_create_4d_causal_attention_mask): the float minimum above the diagonal, 0 elsewhere.
  const mask = g.scope("text_model", () => {
    const full = g.node("ConstantOfShape", [shapeOf(g, [seq, seq])], { value: { tensor: { dataType: FLOAT, values: [-3.4028234663852886e38] } } }, [S, S]);
    const steps = g.node("Range", [g.constInt64([0], []), g.node("Squeeze", [seq, g.constInt64([0])], {}, []), g.constInt64([1], [])], {}, [S]);
    const below = g.node("Less", [steps, g.node("Reshape", [g.node("Add", [steps, g.constInt64([1], [])], {}, [S]), shapeOf(g, [seq, 1])], {}, [S, 1])], {}, [S, S]);
    const square = g.node("Where", [below, g.constFloat([0], []), full], {}, [S, S]);
    const four = g.node("Unsqueeze", [g.node("Unsqueeze", [square, g.constInt64([0])], {}, [1, S, S]), g.constInt64([0])], {}, [1, 1, S, S]);
    return g.node("Expand", [four, shapeOf(g, [batch, 1, seq, seq])], {}, [B, 1, S, S]);
  });
  const hiddenStates: Value[] = [h];
  const act = config.text.act ?? "quick_gelu";
  for (let i = 0; i < layers; i++) {
    h = g.scope(`text_model.encoder.layers.${i}`, () => {
      const a = clipAttention(g, layerNorm(g, h, "layer_norm1", d, 1e-5), "self_attn", { dim: d, heads, dimHead: d / heads, qkvBias: true, mask });
      let x = add(g, h, a);
      const n = layerNorm(g, x, "layer_norm2", d, 1e-5);
      const m = linear(g, n, "mlp.fc1", d, intermediate);
      const gelu = act === "gelu" ? exactGelu(g, m) : g.node("Mul", [m, g.node("Sigmoid", [g.node("Mul", [m, g.constFloat([1.702], [])], {}, m.shape)], {}, m.shape)], {}, m.shape);
      x = add(g, x, linear(g, gelu, "mlp.fc2", intermediate, d, { std: 1 / Math.sqrt(intermediate * layers) }));
      return x;
    });
    hiddenStates.push(h);
  }
  const axes = optimum ? ["batch_size", "sequence_length"] : ["batch", "sequence"];
  const finalNorm = layerNorm(g, h, "text_model.final_layer_norm", d, 1e-5);
  // CLIPTextModelWithProjection's export lists text_embeds first (Optimum's CLIPTextWithProjectionOnnxConfig).
  const projectedName = config.text.projection ? "text_embeds" : null;
  const last = { name: finalNorm.name, shape: finalNorm.shape };
  // pooler_output: each row's hidden state at its first end-of-text token (transformers 4.37 with eos_token_id 49407).
  const pooled = g.scope("text_model", () => {
    const isEos = g.node("Cast", [g.node("Equal", [g.node("Cast", [ids], { to: INT64 }, [B, S]), g.constInt64([49407], [])], {}, [B, S])], { to: INT32 }, [B, S]);
    const eos = g.node("ArgMax", [isEos], { axis: -1, keepdims: 0 }, [B]);
    const rows = g.node("Range", [g.constInt64([0], []), g.node("Squeeze", [batch, g.constInt64([0])], {}, []), g.constInt64([1], [])], {}, [B]);
    const flat = g.node("Flatten", [last], { axis: 2 }, [B * S, d]);
    const at = g.node("Add", [eos, g.node("Mul", [rows, g.node("Squeeze", [seq, g.constInt64([0])], {}, [])], {}, [B])], {}, [B]);
    const [width] = dims(g, last, [2]) as [Value];
    const picked = g.node("Reshape", [g.node("Gather", [flat, at], { axis: 0 }, [B, d]), shapeOf(g, [-1, width])], {}, [B, d]);
    return g.node("Reshape", [picked, g.node("Concat", [g.node("Shape", [at], {}, [1]), width], { axis: 0 }, [2])], {}, [B, d]);
  });
  if (projectedName && config.text.projection) {
    const projected = linear(g, pooled, "text_projection", d, config.text.projection, { bias: false });
    g.output(projected, projectedName, [axes[0]!, config.text.projection]);
    g.output(last, "last_hidden_state", [...axes, d]);
  } else {
    g.output(last, "last_hidden_state", [...axes, d]);
    g.output(pooled, "pooler_output", [axes[0]!, d]);
  }
  if (config.text.hiddenStates) hiddenStates.forEach((value, i) => g.output(value, `hidden_states.${i}`, [...axes, d]));
  return g;
}

/** GELU(x) = x · (1 + erf(x / √2)) / 2, as torch exports nn.GELU(). */
function exactGelu(g: Graph, x: Value): Value {
  const erf = g.node("Erf", [g.node("Div", [x, g.constFloat([Math.SQRT2], [])], {}, x.shape)], {}, x.shape);
  return g.node("Mul", [g.node("Mul", [x, g.node("Add", [erf, g.constFloat([1], [])], {}, x.shape)], {}, x.shape), g.constFloat([0.5], [])], {}, x.shape);
}

// ---- UNet ----

/** One BasicTransformerBlock on [B, N, C] tokens: self-attention, cross-attention, GEGLU feed-forward. */
function transformerBlock(g: Graph, t: Value, context: Value, name: string, channels: number, heads: number, config: Sd15Config["unet"]): Value {
  const dimHead = channels / heads;
  return g.scope(name, () => {
    let y = add(g, diffusersAttention(g, layerNorm(g, t, "norm1", channels, 1e-5), null, "attn1", { dim: channels, heads, dimHead, qkvBias: false }), t);
    y = add(g, diffusersAttention(g, layerNorm(g, y, "norm2", channels, 1e-5), context, "attn2", { dim: channels, heads, dimHead, contextDim: config.crossAttentionDim, qkvBias: false }), y);
    const n = layerNorm(g, y, "norm3", channels, 1e-5);
    const ff = g.scope("ff", () => {
      // GEGLU: the projection chunked in two, value * GELU(gate).
      const [value, gate] = chunk2(g, linear(g, n, "net.0.proj", channels, 8 * channels), -1);
      const halfShape = value.shape;
      // GELU(gate) = gate * (1 + erf(gate / sqrt 2)) * 0.5
      const erf = g.node("Erf", [g.node("Div", [gate, g.constFloat([Math.SQRT2], [])], {}, halfShape)], {}, halfShape);
      const gelu = g.node("Mul", [g.node("Mul", [gate, g.node("Add", [erf, g.constFloat([1], [])], {}, halfShape)], {}, halfShape), g.constFloat([0.5], [])], {}, halfShape);
      return linear(g, g.node("Mul", [value, gelu], {}, halfShape), "net.2", 4 * channels, channels);
    });
    return add(g, ff, y);
  });
}

/**
 * Transformer2DModel with `depth` BasicTransformerBlocks. With 1x1-conv projections (SD 1.x) the
 * tokens leave the feature map by Transpose(0,2,3,1) straight after proj_in and return by
 * Transpose(0,3,1,2) straight before proj_out; with linear projections (SDXL) the map is
 * transposed to tokens first and proj_in / proj_out are Linear layers on them. Sizes are read
 * from the shapes as the export does.
 */
function transformer(g: Graph, x: Value, context: Value, name: string, channels: number, level: number, config: Sd15Config["unet"]): Value {
  return g.scope(name, () => {
    const heads = config.headsPerLevel?.[level] ?? config.heads;
    const depth = config.transformerDepth?.[level] ?? 1;
    const [b, , hh, ww] = x.shape as [number, number, number, number];
    const [batch, height, width] = dims(g, x, [0, 2, 3]) as [Value, Value, Value];
    const normed = groupNorm(g, x, "norm", channels, config.groups, 1e-6);
    let t: Value;
    let inner: Value;
    if (config.linearProjection) {
      [inner] = dims(g, normed, [1]) as [Value];
      const nhwc = g.node("Transpose", [normed], { perm: [0, 2, 3, 1] }, [b, hh, ww, channels]);
      t = linear(g, g.node("Reshape", [nhwc, shapeOf(g, [batch, dimOp(g, "Mul", height, width), inner])], {}, [b, hh * ww, channels]), "proj_in", channels, channels);
    } else {
      const p = conv(g, normed, "proj_in", channels, channels, 1);
      [inner] = dims(g, p, [1]) as [Value];
      const nhwc = g.node("Transpose", [p], { perm: [0, 2, 3, 1] }, [b, hh, ww, channels]);
      t = g.node("Reshape", [nhwc, shapeOf(g, [batch, dimOp(g, "Mul", height, width), inner])], {}, [b, hh * ww, channels]);
    }
    for (let i = 0; i < depth; i++) t = transformerBlock(g, t, context, `transformer_blocks.${i}`, channels, heads, config);
    if (config.linearProjection) t = linear(g, t, "proj_out", channels, channels);
    const map = g.node("Reshape", [t, shapeOf(g, [batch, height, width, inner])], {}, [b, hh, ww, channels]);
    const nchw = g.node("Transpose", [map], { perm: [0, 3, 1, 2] }, [b, channels, hh, ww]);
    return add(g, config.linearProjection ? nchw : conv(g, nchw, "proj_out", channels, channels, 1), x);
  });
}

/** diffusers' Timesteps (flip_sin_to_cos, freq_shift 0) on [N, 1] values: [N, dim] = [cos, sin] of value · exp(−ln(10000)·k / (dim/2)). */
function sinusoidal(g: Graph, t: Value, dim: number): Value {
  const n = t.shape[0]!;
  const half = dim / 2;
  const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const args = g.node("Mul", [t, g.constFloat(freqs, [1, half])], {}, [n, half]);
  const sinCos = g.node("Concat", [g.node("Sin", [args], {}, [n, half]), g.node("Cos", [args], {}, [n, half])], { axis: -1 }, [n, dim]);
  // flip_sin_to_cos: the halves swapped, by two Slices as the export has them.
  const cos = g.node("Slice", [sinCos, g.constInt64([half]), g.constInt64([dim]), g.constInt64([1])], {}, [n, half]);
  const sin = g.node("Slice", [sinCos, g.constInt64([0]), g.constInt64([half]), g.constInt64([1])], {}, [n, half]);
  return g.node("Concat", [cos, sin], { axis: -1 }, [n, dim]);
}

/** Options of the UNet's graph I/O that differ between exporters. */
export interface UnetIoOptions {
  /** The timestep input: float32 [batch] (diffusers' script) or int64 [steps] (Optimum before Nov 2024). */
  timestep?: "float32" | "int64";
  /** Optimum's axis names (batch_size, height, width; channels fixed). */
  optimumAxes?: boolean;
}

/** SDXL's time_ids and text_embeds inputs, for the time embedding's add_embedding. */
export interface AdditionInputs {
  textEmbeds: Value;
  timeIds: Value;
}

/**
 * The UNet's time embedding (sinusoidal, flip_sin_to_cos, two Gemms; with SDXL's add_embedding of
 * time_ids and text_embeds added), activated: what every resnet's time projection reads.
 */
export function timeEmbedding(
  g: Graph,
  sample: Value,
  timestep: Value,
  u: Sd15Config["unet"],
  batch: number,
  options: { int64Timestep?: boolean; addition?: AdditionInputs | null } = {},
): Value {
  const addition = options.addition ?? null;
  const B = batch;
  const c0 = u.blocks[0]!;
  const tembDim = 4 * c0;
  // Sinusoidal timestep embedding (flip_sin_to_cos, freq_shift 0), broadcast to the sample's batch.
  // timesteps.expand(sample.shape[0]) as torch traces it: the size, with -1 entries replaced by 1.
  const size = g.node("Reshape", [shapeOf(g, [dims(g, sample, [0])[0]!]), g.constInt64([-1])], {}, [1]);
  const ones = g.node("ConstantOfShape", [g.node("Shape", [size], {}, [1])], { value: { tensor: { dataType: INT64, values: [1] } } }, [1]);
  const wanted = g.node("Where", [g.node("Equal", [size, g.node("Mul", [ones, g.constInt64([-1])], {}, [1])], {}, [1]), ones, size], {}, [1]);
  const expanded = g.node("Unsqueeze", [g.node("Expand", [timestep, wanted], {}, [B]), g.constInt64([1])], {}, [B, 1]);
  // Integer timesteps become floats inside time_proj (timesteps[:, None].float()).
  const t = options.int64Timestep ? g.node("Cast", [expanded], { to: FLOAT }, [B, 1]) : expanded;
  const tproj = g.scope("time_proj", () => sinusoidal(g, t, c0));
  let temb = g.scope("time_embedding", () => gemm(g, silu(g, gemm(g, tproj, "linear_1", c0, tembDim)), "linear_2", tembDim, tembDim));
  if (addition && u.addition) {
    // SDXL's add_embedding: Timesteps(addition_time_embed_dim) of each time id, flattened per row,
    // beside text_embeds, through a TimestepEmbedding, added to the time embedding.
    const { timeEmbedDim, textEmbedsDim, timeIds } = u.addition;
    const ids = g.node("Reshape", [addition.timeIds, g.constInt64([-1, 1])], {}, [B * timeIds, 1]);
    const idEmb = g.scope("add_time_proj", () => sinusoidal(g, ids, timeEmbedDim));
    const perRow = g.node("Reshape", [idEmb, shapeOf(g, [dims(g, addition.textEmbeds, [0])[0]!, -1])], {}, [B, timeIds * timeEmbedDim]);
    const addInput = g.node("Concat", [addition.textEmbeds, perRow], { axis: -1 }, [B, textEmbedsDim + timeIds * timeEmbedDim]);
    const inDim = textEmbedsDim + timeIds * timeEmbedDim;
    const aug = g.scope("add_embedding", () => gemm(g, silu(g, gemm(g, addInput, "linear_1", inDim, tembDim)), "linear_2", tembDim, tembDim));
    temb = add(g, temb, aug);
  }
  return silu(g, temb);
}

export interface Skip {
  value: Value;
  channels: number;
}

/**
 * The UNet's encoder half after conv_in: the down blocks (each resnet's and attention's output and
 * each downsampler's kept as a skip) and the mid block. A ControlNet is this same half; its skips
 * and mid-block output are what it gives the UNet (down_block_res_samples, mid_block_res_sample).
 */
export function downAndMid(g: Graph, convIn: Value, tembAct: Value, context: Value, u: Sd15Config["unet"]): { skips: Skip[]; mid: Value; channels: number } {
  let h = convIn;
  const c0 = u.blocks[0]!;
  const skips: Skip[] = [{ value: h, channels: c0 }];
  let channels = c0;
  const last = u.blocks.length - 1;
  u.blocks.forEach((out, i) => {
    g.scope(`down_blocks.${i}`, () => {
      for (let j = 0; j < u.layersPerBlock; j++) {
        h = resnet(g, h, tembAct, `resnets.${j}`, channels, out, u.groups, 1e-5);
        channels = out;
        if (u.crossAttention[i]) h = transformer(g, h, context, `attentions.${j}`, out, i, u);
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
    h = transformer(g, h, context, "attentions.0", channels, last, u);
    h = resnet(g, h, tembAct, "resnets.1", channels, channels, u.groups, 1e-5);
  });
  return { skips, mid: h, channels };
}

/** How many residuals a ControlNet gives this UNet's down path (12 for SD 1.5: conv_in, 2 per level, a downsampler per level but the last). */
export function downResidualCount(u: Sd15Config["unet"]): number {
  return 1 + u.blocks.length * u.layersPerBlock + (u.blocks.length - 1);
}

/** Channels and downsampling of each down residual, in order: [channels, latent side / factor]. */
export function downResidualShapes(u: Sd15Config["unet"]): { channels: number; factor: number }[] {
  const shapes = [{ channels: u.blocks[0]!, factor: 1 }];
  u.blocks.forEach((out, i) => {
    for (let j = 0; j < u.layersPerBlock; j++) shapes.push({ channels: out, factor: 2 ** i });
    if (i < u.blocks.length - 1) shapes.push({ channels: out, factor: 2 ** (i + 1) });
  });
  return shapes;
}

/** The residual input/output names of OnnxStack's ControlNet exports (its ControlNet's outputs, its ControlNet UNet's inputs). */
export const downResidualName = (i: number) => `down_block_${i}_additional_residual`;
export const MID_RESIDUAL = "mid_block_additional_residual";

/** Options of the UNet's graph I/O that differ between exporters. */
export interface UnetOptions {
  /** The timestep input: float32 [batch] (diffusers' script) or int64 [steps] (Optimum before Nov 2024). */
  timestep?: "float32" | "int64";
  /** Optimum's axis names (batch_size, height, width; channels fixed). */
  optimumAxes?: boolean;
  /**
   * OnnxStack's ControlNet UNet (the base repo's controlnet/model.onnx): the ControlNet's residuals
   * come in as inputs, each added to its skip (down_block_additional_residuals) and to the mid
   * block's output (mid_block_additional_residual), as diffusers' UNet2DConditionModel adds them.
   */
  residualInputs?: boolean;
}

export function unet(config: Sd15Config, ref: ReferenceShapes = REFERENCE, options: UnetOptions = {}): Graph {
  const u = config.unet;
  const g = new Graph("unet");
  const [B, L] = [ref.unetBatch, ref.latent];
  const optimum = options.optimumAxes === true;
  const batchAxis = optimum ? "batch_size" : "batch";
  const sample = g.input("sample", FLOAT, optimum ? [batchAxis, u.inChannels, "height", "width"] : ["batch", "channels", "height", "width"], [B, u.inChannels, L, L]);
  const int64Timestep = options.timestep === "int64";
  const timestep = g.input("timestep", int64Timestep ? INT64 : FLOAT, [int64Timestep ? "steps" : "batch"], [B]);
  const context = g.input("encoder_hidden_states", FLOAT, optimum ? [batchAxis, "sequence_length", u.crossAttentionDim] : ["batch", "sequence", u.crossAttentionDim], [B, ref.sequence, u.crossAttentionDim]);
  const addition = u.addition
    ? {
        textEmbeds: g.input("text_embeds", FLOAT, [batchAxis, u.addition.textEmbedsDim], [B, u.addition.textEmbedsDim]),
        timeIds: g.input("time_ids", FLOAT, [batchAxis, u.addition.timeIds], [B, u.addition.timeIds]),
      }
    : null;
  const residuals = options.residualInputs
    ? {
        down: downResidualShapes(u).map((s, i) => g.input(downResidualName(i), FLOAT, [batchAxis, s.channels, `height_${s.factor}`, `width_${s.factor}`], [B, s.channels, L / s.factor, L / s.factor])),
        mid: (() => {
          const f = 2 ** (u.blocks.length - 1);
          const c = u.blocks[u.blocks.length - 1]!;
          return g.input(MID_RESIDUAL, FLOAT, [batchAxis, c, `height_${f}`, `width_${f}`], [B, c, L / f, L / f]);
        })(),
      }
    : null;
  const c0 = u.blocks[0]!;
  const tembAct = timeEmbedding(g, sample, timestep, u, B, { int64Timestep, addition });

  const encoded = downAndMid(g, conv(g, sample, "conv_in", u.inChannels, c0, 3), tembAct, context, u);
  // diffusers adds each residual to its skip after the whole down path, and the mid residual after the mid block.
  const skips = residuals ? encoded.skips.map((s, i) => ({ value: add(g, s.value, residuals.down[i]!), channels: s.channels })) : encoded.skips;
  let h = residuals ? add(g, encoded.mid, residuals.mid) : encoded.mid;
  let channels = encoded.channels;
  const last = u.blocks.length - 1;
  const reversed = [...u.blocks].reverse();
  reversed.forEach((out, i) => {
    g.scope(`up_blocks.${i}`, () => {
      for (let j = 0; j <= u.layersPerBlock; j++) {
        const skip = skips.pop()!;
        const [b, , hh, ww] = h.shape as [number, number, number, number];
        h = g.node("Concat", [h, skip.value], { axis: 1 }, [b, channels + skip.channels, hh, ww]);
        h = resnet(g, h, tembAct, `resnets.${j}`, channels + skip.channels, out, u.groups, 1e-5);
        channels = out;
        if (u.crossAttention[last - i]) h = transformer(g, h, context, `attentions.${j}`, out, last - i, u);
      }
      if (i < last) h = upsample(g, h, "upsamplers.0", out);
    });
  });
  h = silu(g, groupNorm(g, h, "conv_norm_out", channels, u.groups, 1e-5));
  h = conv(g, h, "conv_out", channels, 4, 3, { std: 0.3 / Math.sqrt(channels * 9) });
  g.output(h, "out_sample", [batchAxis, 4, "height", "width"]);
  return g;
}

// ---- VAE ----

/** The VAE's mid-block Attention: GroupNorm on [B, C, H·W], tokens by Transpose, the residual added inside, as diffusers exports it. */
function vaeAttention(g: Graph, x: Value, name: string, channels: number, groups: number): Value {
  return g.scope(name, () => {
    const [b, c, hh, ww] = x.shape as [number, number, number, number];
    const [batch, chans, height, width] = dims(g, x, [0, 1, 2, 3]) as [Value, Value, Value, Value];
    const flat = g.node("Reshape", [x, shapeOf(g, [batch, chans, dimOp(g, "Mul", height, width)])], {}, [b, c, hh * ww]);
    const tokens = g.node("Transpose", [groupNorm(g, flat, "group_norm", channels, groups, 1e-6)], { perm: [0, 2, 1] }, [b, hh * ww, c]);
    // Back to [B, C, H, W] and the residual added (residual_connection) before the rescale.
    return diffusersAttention(g, tokens, null, "", { dim: channels, heads: 1, dimHead: channels, qkvBias: true }, (out) => {
      const back = g.node("Transpose", [out], { perm: [0, 2, 1] }, [b, c, hh * ww]);
      return add(g, g.node("Reshape", [back, shapeOf(g, [batch, chans, height, width])], {}, x.shape), x);
    });
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
  // DiagonalGaussianDistribution: moments chunked into mean and log-variance; the sample drawn in-graph (randn over mean's shape).
  const [mean, logvar] = chunk2(g, h, 1);
  const clamped = g.node("Clip", [logvar, g.constFloat([-30], []), g.constFloat([20], [])], {}, half);
  const std = g.node("Exp", [g.node("Mul", [clamped, g.constFloat([0.5], [])], {}, half)], {}, half);
  const zeros = g.node("ConstantOfShape", [shapeOf(g, dims(g, mean, [0, 1, 2, 3]))], {}, half);
  const eps = g.node("Cast", [g.node("RandomNormalLike", [zeros], { dtype: FLOAT, mean: { float: 0 }, scale: { float: 1 } }, half)], { to: FLOAT }, half);
  const latent = g.node("Add", [mean, g.node("Mul", [std, eps], {}, half)], {}, half);
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
