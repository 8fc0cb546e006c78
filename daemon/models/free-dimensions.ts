/**
 * DirectML plans its memory once per session for fixed shapes: the DML exports (Olive's
 * examples/directml/stable_diffusion, amd/*_io16_amdgpu) leave batch, height, width and sequence
 * free and expect the app to pin them with free-dimension overrides (by the axis names of the
 * export), as Olive's own DML pipeline does. The names below cover Olive's UNet axes and the plain
 * names the other parts use; a name a graph does not have is ignored by onnxruntime.
 */
import type { ModelPart } from "./model-sessions";

/** The shape a job runs at: what the overrides pin. */
export interface JobShape {
  /** Rows of one UNet call (twice the images with classifier-free guidance). */
  unetBatch: number;
  latentHeight: number;
  latentWidth: number;
  unetChannels: number;
  /** Latents per VAE pixel side (8 for SD). */
  vaeScaleFactor: number;
}

/** Token sequence length of every SD text encoder (CLIP's 77). */
const SEQUENCE = 77;

export function freeDimensionOverrides(part: ModelPart, shape: JobShape): Record<string, number> {
  switch (part) {
    case "textEncoder":
    case "textEncoder2":
      return { sequence: SEQUENCE, text_encoder_sequence: SEQUENCE };
    case "unet":
      return {
        unet_sample_batch: shape.unetBatch,
        unet_sample_channels: shape.unetChannels,
        unet_sample_height: shape.latentHeight,
        unet_sample_width: shape.latentWidth,
        unet_time_batch: 1,
        unet_hidden_batch: shape.unetBatch,
        unet_hidden_sequence: SEQUENCE,
      };
    case "vaeDecoder":
      // decoded one image at a time
      return { batch: 1, channels: 4, height: shape.latentHeight, width: shape.latentWidth, decoder_batch: 1, decoder_height: shape.latentHeight, decoder_width: shape.latentWidth };
    case "vaeEncoder": {
      const height = shape.latentHeight * shape.vaeScaleFactor;
      const width = shape.latentWidth * shape.vaeScaleFactor;
      return { batch: 1, channels: 3, height, width, encoder_batch: 1, encoder_height: height, encoder_width: width };
    }
  }
}

export function sameShape(a: JobShape | null, b: JobShape): boolean {
  return a !== null && a.unetBatch === b.unetBatch && a.latentHeight === b.latentHeight && a.latentWidth === b.latentWidth && a.unetChannels === b.unetChannels && a.vaeScaleFactor === b.vaeScaleFactor;
}
