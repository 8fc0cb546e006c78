/**
 * The inputs and outputs of a ControlNet and of the UNet that takes its residuals, as OnnxStack
 * exports them (OnnxStack.Converter/ControlNet and StableDiffusion's ControlNet UNet):
 *
 *   ControlNet  sample, timestep, encoder_hidden_states, controlnet_cond [B, 3, H, W] (RGB in [0, 1]),
 *               conditioning_scale (optional; OnnxStack feeds float64 [1])
 *               -> down_block_{0..N-1}_additional_residual, mid_block_additional_residual
 *   UNet        sample, timestep, encoder_hidden_states, the same N + 1 residuals -> out_sample
 *
 * Residuals pair by name, so the order a graph lists them in does not matter; N is the UNet's own
 * (12 for SD 1.5 and 2.x, 9 for SDXL), read from the names.
 */
import { ModelFolderError } from "./errors";
import { describeUnet, type FloatType, type IoValue, type UnetIO } from "./io-spec";

const DOWN = /^down_block_(\d+)_additional_residual$/;
export const MID_RESIDUAL = "mid_block_additional_residual";

export interface Residual {
  name: string;
  type: FloatType;
  /** Fixed channel count (axis 1) when the graph declares it. */
  channels: number | null;
}

export interface ControlResiduals {
  /** down_block_0 ... down_block_{N-1}, in that order. */
  down: Residual[];
  mid: Residual;
}

export interface ControlUnetIO extends UnetIO {
  residuals: ControlResiduals;
}

export type ScaleType = "float64" | "float32" | "float16";

export interface ControlNetIO {
  /** The UNet-like inputs (sample, timestep, encoder_hidden_states) as describeUnet reads them. */
  unet: UnetIO;
  cond: string;
  condType: FloatType;
  /** conditioning_scale, when the export takes it as an input (else the residuals come at scale 1). */
  scale: { name: string; type: ScaleType; rank: 0 | 1 } | null;
  residuals: ControlResiduals;
}

function unsupported(file: string, what: string): ModelFolderError {
  return new ModelFolderError("model_unsupported", file, `${file}: ${what}.`);
}

function floatType(file: string, v: IoValue): FloatType {
  if (v.type === "float32" || v.type === "float16") return v.type;
  throw unsupported(file, `the residual "${v.name}" is ${v.type}; only float32 and float16 are supported`);
}

/** Whether these values include a ControlNet's residuals (a control UNet's inputs, a ControlNet's outputs). */
export function hasResiduals(values: readonly IoValue[]): boolean {
  return values.some((v) => v.name === MID_RESIDUAL) && values.some((v) => DOWN.test(v.name));
}

/** The residuals among `values`: down_block_0 .. N-1 without gaps, and the mid one. */
export function residualsOf(file: string, values: readonly IoValue[], where: string): ControlResiduals {
  const mid = values.find((v) => v.name === MID_RESIDUAL);
  if (!mid) throw unsupported(file, `its ${where} have no ${MID_RESIDUAL}`);
  const down: { index: number; value: IoValue }[] = [];
  for (const v of values) {
    const m = DOWN.exec(v.name);
    if (m) down.push({ index: Number(m[1]), value: v });
  }
  down.sort((a, b) => a.index - b.index);
  if (down.length === 0 || down.some((d, i) => d.index !== i)) {
    throw unsupported(file, `its ${where} are not down_block_0_additional_residual .. down_block_${Math.max(0, down.length - 1)}_additional_residual without gaps`);
  }
  const residual = (v: IoValue): Residual => ({ name: v.name, type: floatType(file, v), channels: typeof v.shape?.[1] === "number" ? v.shape[1] : null });
  return { down: down.map((d) => residual(d.value)), mid: residual(mid) };
}

/** A UNet that takes a ControlNet's residuals as inputs (the base repo's controlnet/model.onnx in OnnxStack's layout). */
export function describeControlUnet(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): ControlUnetIO {
  const residuals = residualsOf(file, inputs, "inputs");
  const names = new Set([...residuals.down.map((r) => r.name), residuals.mid.name]);
  return { ...describeUnet(file, inputs.filter((v) => !names.has(v.name)), outputs), residuals };
}

export function describeControlNet(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): ControlNetIO {
  const cond = inputs.find((v) => v.name === "controlnet_cond");
  if (!cond) throw unsupported(file, `not a ControlNet: no controlnet_cond input (inputs: ${inputs.map((v) => v.name).join(", ") || "none"})`);
  const condType = cond.type === "float32" || cond.type === "float16" ? cond.type : null;
  if (!condType) throw unsupported(file, `its controlnet_cond is ${cond.type}; only float32 and float16 are supported`);
  if (cond.shape && cond.shape.length !== 4) throw unsupported(file, `its controlnet_cond has rank ${cond.shape.length}, not [batch, 3, height, width]`);
  if (typeof cond.shape?.[1] === "number" && cond.shape[1] !== 3) throw unsupported(file, `its controlnet_cond takes ${cond.shape[1]} channels; Underpaint sends RGB control images`);
  const scaleValue = inputs.find((v) => v.name === "conditioning_scale");
  let scale: ControlNetIO["scale"] = null;
  if (scaleValue) {
    const type = scaleValue.type === "float64" || scaleValue.type === "float32" || scaleValue.type === "float16" ? scaleValue.type : null;
    const rank = scaleValue.shape === null ? 1 : scaleValue.shape.length;
    if (!type || rank > 1) throw unsupported(file, `its conditioning_scale is ${scaleValue.type} of rank ${rank}; expected a float scalar or [1]`);
    scale = { name: scaleValue.name, type, rank: rank === 0 ? 0 : 1 };
  }
  const rest = inputs.filter((v) => v !== cond && v !== scaleValue);
  // describeUnet reads the UNet-like inputs; it needs an output to describe, which the residuals are not.
  const unet = describeUnet(file, rest, [{ name: MID_RESIDUAL, type: "float32", shape: null }]);
  return { unet, cond: cond.name, condType, scale, residuals: residualsOf(file, outputs, "outputs") };
}

/** Why a ControlNet cannot feed a control UNet, or null when its residuals pair with the UNet's inputs one for one. */
export function residualMismatch(controlNet: ControlResiduals, unet: ControlResiduals): string | null {
  if (controlNet.down.length !== unet.down.length) {
    return `it gives ${controlNet.down.length} down-block residuals and the model's UNet takes ${unet.down.length}`;
  }
  const pairs: [Residual, Residual][] = [...controlNet.down.map((r, i) => [r, unet.down[i]!] as [Residual, Residual]), [controlNet.mid, unet.mid]];
  for (const [given, taken] of pairs) {
    if (given.channels !== null && taken.channels !== null && given.channels !== taken.channels) {
      return `its ${given.name} has ${given.channels} channels and the model's UNet takes ${taken.channels}`;
    }
  }
  return null;
}
