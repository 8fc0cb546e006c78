/**
 * ControlNet (diffusers' ControlNetModel, lllyasviel's ControlNet 1.0 / 1.1 for SD 1.5, and SDXL's
 * with its added conditions) with random weights, with the inputs and outputs of OnnxStack's
 * ControlNet exports (OnnxStack.Converter/ControlNet and ControlNetXL: TensorStack/ControlNet-onnx,
 * ControlNet-amuse): the UNet's encoder half (time embedding, conv_in, down blocks, mid block; built
 * by sd15.ts's own functions, so its weights carry the UNet's names) plus the conditioning
 * embedding (3-channel control image -> 16, 32, 96, 256 channels, three stride-2 convs down to the
 * latent size, then to the first block's width) added after conv_in, and a 1x1 "zero conv" per
 * residual, each residual multiplied by conditioning_scale.
 *
 *   sample [batch, 4, h, w], timestep [batch], encoder_hidden_states [batch, sequence, dim],
 *   (SDXL: text_embeds [batch, pooled], time_ids [batch, 6],)
 *   controlnet_cond [batch, 3, 8h, 8w] (RGB in [0, 1]), conditioning_scale float64 [1]
 *   -> down_block_{0..N-1}_additional_residual, mid_block_additional_residual
 *
 * The zero convs are zero only before training: here they get random weights like every other
 * layer, so the residuals are not zero and the tests can see them.
 */
import { FLOAT, Graph, type Value } from "./graph";
import { add, conv, silu } from "./layers";
import { downAndMid, downResidualName, MID_RESIDUAL, REFERENCE, timeEmbedding, type ReferenceShapes, type Sd15Config } from "./sd15";

export const DOUBLE = 11;

/** diffusers' ControlNetConditioningEmbedding default block_out_channels. */
export const CONDITIONING_CHANNELS = [16, 32, 96, 256];

/** ControlNet 1.1 for SD 1.5 (diffusers ControlNetModel, lllyasviel/control_v11p_sd15_*): 361,279,120 parameters. */
export const CONTROLNET_SD15_PARAMS = 361_279_120;

/**
 * An SDXL ControlNet (diffusers/controlnet-canny-sdxl-1.0, the ControlNets of TensorStack/ControlNet-amuse's
 * StableDiffusionXL/): about 1.25 B parameters, from its published float16 weights of 2.5 GB (the
 * hub rounds the size: 2.45 to 2.55 GB, 1.225 B to 1.275 B parameters). No exact count was found.
 */
export const CONTROLNET_SDXL_PARAMS_APPROX = 1.25e9;

/** ControlNetConditioningEmbedding: conv_in, pairs of (3x3 conv, 3x3 stride-2 conv) with SiLU, conv_out to the UNet's first width. */
function conditioningEmbedding(g: Graph, image: Value, outChannels: number): Value {
  return g.scope("controlnet_cond_embedding", () => {
    let h = silu(g, conv(g, image, "conv_in", 3, CONDITIONING_CHANNELS[0]!, 3));
    let block = 0;
    for (let i = 0; i < CONDITIONING_CHANNELS.length - 1; i++) {
      const cin = CONDITIONING_CHANNELS[i]!;
      const cout = CONDITIONING_CHANNELS[i + 1]!;
      h = silu(g, conv(g, h, `blocks.${block++}`, cin, cin, 3));
      h = silu(g, conv(g, h, `blocks.${block++}`, cin, cout, 3, { stride: 2, pad: 1 }));
    }
    return conv(g, h, "conv_out", CONDITIONING_CHANNELS[CONDITIONING_CHANNELS.length - 1]!, outChannels, 3);
  });
}

export function controlNet(config: Sd15Config, ref: ReferenceShapes = REFERENCE): Graph {
  const u = config.unet;
  const g = new Graph("controlnet");
  const [B, L] = [ref.unetBatch, ref.latent];
  const scale = 2 ** (CONDITIONING_CHANNELS.length - 1);
  const sample = g.input("sample", FLOAT, ["unet_sample_batch", "unet_sample_channels", "unet_sample_height", "unet_sample_width"], [B, 4, L, L]);
  const timestep = g.input("timestep", FLOAT, ["unet_time_batch"], [B]);
  const context = g.input("encoder_hidden_states", FLOAT, ["unet_hidden_batch", "unet_hidden_sequence", u.crossAttentionDim], [B, ref.sequence, u.crossAttentionDim]);
  // SDXL (OnnxStack.Converter/ControlNetXL): the UNet's added conditions, between the text and the control image.
  const addition = u.addition
    ? {
        textEmbeds: g.input("text_embeds", FLOAT, ["unet_text_embeds_batch", u.addition.textEmbedsDim], [B, u.addition.textEmbedsDim]),
        timeIds: g.input("time_ids", FLOAT, ["unet_time_ids_batch", u.addition.timeIds], [B, u.addition.timeIds]),
      }
    : null;
  const image = g.input("controlnet_cond", FLOAT, ["controlnet_sample_batch", "controlnet_sample_channels", "controlnet_sample_height", "controlnet_sample_width"], [B, 3, L * scale, L * scale]);
  const conditioningScale = g.input("conditioning_scale", DOUBLE, [1], [1]);
  const c0 = u.blocks[0]!;
  const tembAct = timeEmbedding(g, sample, timestep, u, B, { addition });
  const h = add(g, conv(g, sample, "conv_in", 4, c0, 3), conditioningEmbedding(g, image, c0));
  const { skips, mid, channels } = downAndMid(g, h, tembAct, context, u);
  const factor = g.node("Cast", [conditioningScale], { to: FLOAT }, [1]);
  skips.forEach((skip, i) => {
    const zero = conv(g, skip.value, `controlnet_down_blocks.${i}`, skip.channels, skip.channels, 1);
    const scaled = g.node("Mul", [zero, factor], {}, zero.shape);
    g.output(scaled, downResidualName(i), ["unet_sample_batch", skip.channels, `Muldown_block_${i}_dim_2`, `Muldown_block_${i}_dim_3`]);
  });
  const zeroMid = conv(g, mid, "controlnet_mid_block", channels, channels, 1);
  g.output(g.node("Mul", [zeroMid, factor], {}, zeroMid.shape), MID_RESIDUAL, ["unet_sample_batch", channels, "Mulmid_dim_2", "Mulmid_dim_3"]);
  return g;
}
