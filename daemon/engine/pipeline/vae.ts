/**
 * Pixels <-> latents: image conversion as diffusers' VaeImageProcessor does it, the VAE encoder
 * (posterior sample, drawn from the pipeline's generator) and the decoder, and a tiny
 * autoencoder's decoder (TAESD) for previews and drafts.
 */
import type { PartSession } from "../../models/model-sessions";
import { makeTensor, tensorToFloat32, type VaeDecoderIO, type VaeEncoderIO } from "../../models/session-io";
import type { ImageRange } from "../../models/taesd-folder";
import type { NoiseSource } from "../schedulers";

/** 8-bit RGB (HWC) -> [1, 3, H, W] in [-1, 1]: x / 255 * 2 - 1, in float32. */
export function imageToTensor(rgb: Uint8Array, width: number, height: number): Float32Array {
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const unit = Math.fround(rgb[i * 3 + c]! / 255);
      out[c * plane + i] = Math.fround(unit * 2) - 1;
    }
  }
  return out;
}

/** Decoder output [3, H, W] in [-1, 1] -> clamp(x / 2 + 0.5, 0, 1), still CHW. */
export function decodedToUnit(decoded: Float32Array): Float32Array {
  const out = new Float32Array(decoded.length);
  for (let i = 0; i < decoded.length; i++) {
    const v = Math.fround(decoded[i]! / 2) + 0.5;
    out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return out;
}

/** [3, H, W] in [0, 1] -> 8-bit RGB (HWC), rounded as numpy_to_pil does ((x * 255).round()). */
export function unitToRgb8(unit: Float32Array, width: number, height: number): Uint8Array {
  const plane = width * height;
  const out = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(Math.fround(unit[c * plane + i]! * 255));
  }
  return out;
}

/**
 * Encodes one image to scaled latents [1, 4, H/8, W/8]. diffusers samples the posterior with the
 * pipeline's generator (one draw); exports that sample inside the graph (latent_sample) get the
 * draw made anyway so that every later draw matches diffusers'.
 */
export async function encodeImage(
  encoder: PartSession<VaeEncoderIO>,
  image: Float32Array,
  width: number,
  height: number,
  scalingFactor: number,
  noise: NoiseSource,
): Promise<{ latents: Float32Array; mean: Float32Array }> {
  const { io } = encoder;
  const outputs = await encoder.session.run({ [io.sample]: makeTensor(io.sampleType, image, [1, 3, height, width]) }, [io.output]);
  const out = tensorToFloat32(outputs[io.output]!);
  const latentShape = [1, 4, height / 8, width / 8] as const;
  const size = out.length / (io.outputKind === "latent_parameters" ? 2 : 1);
  const draw = noise.randn(latentShape);
  let sample: Float32Array;
  let mean: Float32Array;
  if (io.outputKind === "latent_parameters") {
    mean = out.subarray(0, size);
    sample = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const logvar = Math.min(Math.max(out[size + i]!, -30), 20);
      sample[i] = mean[i]! + Math.fround(Math.exp(0.5 * logvar)) * draw[i]!;
    }
  } else {
    mean = out;
    sample = out;
  }
  const f = Math.fround(scalingFactor);
  const latents = new Float32Array(size);
  for (let i = 0; i < size; i++) latents[i] = f * sample[i]!;
  return { latents, mean };
}

/** Scaled latents of one image [1, 4, h, w] -> decoder output [3, 8h, 8w] in [-1, 1]. */
export async function decodeLatents(
  decoder: PartSession<VaeDecoderIO>,
  latents: Float32Array,
  latentWidth: number,
  latentHeight: number,
  scalingFactor: number,
): Promise<Float32Array> {
  const { io } = decoder;
  const input = new Float32Array(latents.length);
  const f = Math.fround(scalingFactor);
  for (let i = 0; i < latents.length; i++) input[i] = latents[i]! / f;
  const outputs = await decoder.session.run({ [io.latent]: makeTensor(io.latentType, input, [1, 4, latentHeight, latentWidth]) }, [io.output]);
  return tensorToFloat32(outputs[io.output]!);
}

/**
 * Latents of one image [1, 4, h, w] as the UNet makes them -> [3, 8h, 8w] in [-1, 1], as
 * decodeLatents gives, by a tiny autoencoder (TAESD). Its latents are at scale factor 1
 * (AutoencoderTiny's scaling_factor is 1.0; diffusers divides by it, i.e. by nothing): the UNet's
 * latents are already the SD VAE's posterior x 0.18215, and go in as they are. A decoder whose
 * pictures are in [0, 1] (taesd.py's own nets) is mapped to [-1, 1] by 2y - 1.
 */
export async function decodeTinyLatents(
  decoder: PartSession<VaeDecoderIO>,
  latents: Float32Array,
  latentWidth: number,
  latentHeight: number,
  imageRange: ImageRange,
): Promise<Float32Array> {
  const { io } = decoder;
  const outputs = await decoder.session.run({ [io.latent]: makeTensor(io.latentType, latents, [1, 4, latentHeight, latentWidth]) }, [io.output]);
  const out = tensorToFloat32(outputs[io.output]!);
  if (imageRange === "zero-to-one") for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i]! * 2) - 1;
  return out;
}
