/**
 * Writes the builder's ControlNet graphs as OnnxStack lays them out: a ControlNet's model.onnx (its
 * weights inside the file) in a folder of its own, and a base model's controlnet/model.onnx (the
 * UNet with the residual inputs) beside its unet/, which this replaces with the builder's UNet of
 * the same configuration so that the two share their weights (the builder seeds weights by name).
 */
import { rm } from "node:fs/promises";
import path from "node:path";
import { controlNet } from "./controlnet";
import { REFERENCE, tinySdConfig, unet, type Sd15Config } from "./sd15";
import { tinySdxlConfig } from "./sdxl";

/**
 * A ControlNet folder: `dir`/model.onnx, its weights inside or in `externalData` beside it (SDXL's
 * 2.5 GB of float16 weights are over protobuf's 2 GB: ControlNet-amuse's StableDiffusionXL/ ships
 * model.onnx.data). tiny-sd's configuration unless told otherwise; an SDXL configuration (with its
 * added conditions) gives an SDXL ControlNet.
 */
export async function writeControlNetFolder(dir: string, config: Sd15Config = tinySdConfig(), options: { externalData?: string } = {}): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await controlNet(config, { ...REFERENCE, latent: 8 }).write(path.join(dir, "model.onnx"), options.externalData ? { externalData: options.externalData } : {});
}

/** The tiny SDXL (sdxl.ts) as the SD 1.5 builder functions take a configuration. */
export function tinySdxlAsSd15(): Sd15Config {
  const c = tinySdxlConfig();
  return { text: c.text, unet: c.unet, vae: c.vae };
}

/** unet/ (weights in unet/weights.pb, as the diffusers export) and controlnet/ (weights inside) of a model folder at `dir`. */
export async function writeControlUnet(dir: string, config: Sd15Config = tinySdConfig()): Promise<void> {
  const ref = { ...REFERENCE, latent: 8 };
  await rm(path.join(dir, "unet"), { recursive: true, force: true });
  await unet(config, ref).write(path.join(dir, "unet", "model.onnx"), { externalData: "weights.pb" });
  await rm(path.join(dir, "controlnet"), { recursive: true, force: true });
  await unet(config, ref, { residualInputs: true }).write(path.join(dir, "controlnet", "model.onnx"));
}
