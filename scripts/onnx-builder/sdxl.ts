/**
 * Stable Diffusion XL's five networks with random weights, with Optimum's ONNX export names:
 * text_encoder (CLIP ViT-L, CLIPTextModel) and text_encoder_2 (OpenCLIP ViT-bigG,
 * CLIPTextModelWithProjection) with int64 input_ids and every hidden state as an output
 * (hidden_states.0..N, forced on for SDXL), the UNet with text_embeds and time_ids beside sample,
 * timestep and encoder_hidden_states [B, 77, 2048], and SD's VAE. Built from the same layers and
 * UNet code as SD 1.5 (sd15.ts): only the configuration differs.
 */
import { INT64 } from "./graph";
import type { Graph } from "./graph";
import { REFERENCE, textEncoder, unet, vaeDecoder, vaeEncoder, type ReferenceShapes, type Sd15Config, type TextConfig } from "./sd15";

export interface SdxlConfig {
  text: TextConfig;
  text2: TextConfig & { projection: number };
  unet: Sd15Config["unet"] & { addition: NonNullable<Sd15Config["unet"]["addition"]> };
  vae: Sd15Config["vae"];
}

export type SdxlPartName = "text_encoder" | "text_encoder_2" | "unet" | "vae_encoder" | "vae_decoder";

/** SDXL's 1024 px at 8 pixels a latent. */
export const SDXL_REFERENCE: ReferenceShapes = { ...REFERENCE, latent: 128 };

const round = (c: number, step: number) => Math.max(step, Math.round(c / step) * step);

/** The most heads up to `wanted` that divide `channels` (SDXL's 64-wide heads at full size). */
function headsFor(channels: number, wanted: number): number {
  for (let h = Math.max(1, Math.round(wanted)); h > 1; h--) if (channels % h === 0) return h;
  return 1;
}

/**
 * SDXL base 1.0's configuration (stabilityai/stable-diffusion-xl-base-1.0 unet/config.json,
 * text_encoder{,_2}/config.json), every width times `width`: UNet blocks 320/640/1280 with
 * DownBlock2D then two CrossAttnDownBlock2D, transformer_layers_per_block [1, 2, 10] (the mid
 * block 10), attention_head_dim [5, 10, 20] (head counts: 64 wide), linear projections,
 * cross-attention 2048 = 768 + 1280, addition_time_embed_dim 256 and
 * projection_class_embeddings_input_dim 2816 = 6 x 256 + 1280.
 */
export function sdxlConfig(width = 1, inChannels: 4 | 9 = 4): SdxlConfig {
  const hidden = round(768 * width, 64);
  const hidden2 = round(1280 * width, 64);
  const blocks = [320, 640, 1280].map((c) => round(c * width, 32));
  return {
    text: { hidden, intermediate: 4 * hidden, layers: 12, heads: hidden / 64, vocab: 49408, positions: 77, act: "quick_gelu", hiddenStates: true, idsType: INT64 },
    text2: { hidden: hidden2, intermediate: 4 * hidden2, layers: 32, heads: hidden2 / 64, vocab: 49408, positions: 77, act: "gelu", projection: hidden2, hiddenStates: true, idsType: INT64 },
    unet: {
      blocks,
      crossAttention: [false, true, true],
      layersPerBlock: 2,
      heads: 8,
      headsPerLevel: blocks.map((c) => headsFor(c, c / 64)),
      transformerDepth: [1, 2, 10],
      linearProjection: true,
      addition: { timeEmbedDim: 256, textEmbedsDim: hidden2, timeIds: 6 },
      groups: 32,
      crossAttentionDim: hidden + hidden2,
      inChannels,
    },
    vae: { blocks: [128, 256, 512, 512].map((c) => round(c * width, 32)), layersPerBlock: 2, groups: 32, latentChannels: 4 },
  };
}

/**
 * A tiny SDXL in the shape of diffusers' own SDXL pipeline tests (test_stable_diffusion_xl.py):
 * UNet blocks (32, 64), DownBlock2D + CrossAttnDownBlock2D, attention_head_dim (2, 4),
 * transformer_layers_per_block (1, 2), linear projections, addition_time_embed_dim 8,
 * cross-attention 64 = 32 + 32 and projection_class_embeddings_input_dim 80 = 6 x 8 + 32; both
 * text encoders 32 wide, 5 layers, 4 heads, 37-wide MLP, exact GELU, the second with a 32-wide
 * projection; the fixtures' tiny VAE (four levels, so 8 pixels a latent as in SDXL).
 */
export function tinySdxlConfig(inChannels: 4 | 9 = 4): SdxlConfig {
  const text: TextConfig = { hidden: 32, intermediate: 37, layers: 5, heads: 4, vocab: 49408, positions: 77, act: "gelu", hiddenStates: true, idsType: INT64 };
  return {
    text,
    text2: { ...text, projection: 32 },
    unet: {
      blocks: [32, 64],
      crossAttention: [false, true],
      layersPerBlock: 2,
      heads: 2,
      headsPerLevel: [2, 4],
      transformerDepth: [1, 2],
      linearProjection: true,
      addition: { timeEmbedDim: 8, textEmbedsDim: 32, timeIds: 6 },
      groups: 32,
      crossAttentionDim: 64,
      inChannels,
    },
    vae: { blocks: [32, 32, 32, 32], layersPerBlock: 1, groups: 32, latentChannels: 4 },
  };
}

/**
 * The five graphs. The UNet's timestep is int64 [steps] as Optimum exported it until Nov 2024
 * (the hub's SDXL exports are older), or float32 [batch].
 */
export function sdxlGraphs(config: SdxlConfig, ref: ReferenceShapes = SDXL_REFERENCE, options: { timestep?: "float32" | "int64" } = {}): Record<SdxlPartName, Graph> {
  const as15 = (text: TextConfig): Sd15Config => ({ text, unet: config.unet, vae: config.vae });
  return {
    ...sdxlUnetGraphs(config, ref, options),
    text_encoder: textEncoder(as15(config.text), ref),
    text_encoder_2: textEncoder(as15(config.text2), ref),
    vae_encoder: vaeEncoder(as15(config.text), ref),
    vae_decoder: vaeDecoder(as15(config.text), ref),
  };
}

/**
 * The UNet, and with `controlUnet` OnnxStack's control UNet beside it (a base repo's
 * controlnet/model.onnx: the same UNet taking a ControlNet's 9 down and 1 mid residuals; the
 * builder seeds weights by name, so the two share their weights).
 */
export function sdxlUnetGraphs(config: SdxlConfig, ref: ReferenceShapes = SDXL_REFERENCE, options: { timestep?: "float32" | "int64"; controlUnet?: boolean } = {}): { unet: Graph; controlnet?: Graph } {
  const as15: Sd15Config = { text: config.text, unet: config.unet, vae: config.vae };
  const io = { timestep: options.timestep ?? "int64", optimumAxes: true } as const;
  return { unet: unet(as15, ref, io), ...(options.controlUnet ? { controlnet: unet(as15, ref, { ...io, residualInputs: true }) } : {}) };
}
