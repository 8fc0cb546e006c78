/**
 * A model folder's control UNet: in OnnxStack's layout (TensorStack's repos) controlnet/model.onnx
 * beside unet/, a copy of the UNet whose inputs also take a ControlNet's residuals. A model is
 * control-capable when it has one; a controlnet/ that is something else, or that cannot be read,
 * leaves the model as it is (it still generates, only without control), with the reason kept.
 */
import { join } from "node:path";
import { describeControlUnet, hasResiduals, type ControlUnetIO } from "./control-io";
import { ModelFolderError } from "./errors";
import type { Device } from "./execution-provider";
import { checkDevices, checkExternalData, fileSize, inspectPart } from "./model-folder";

export const CONTROL_UNET_DIR = "controlnet";

export interface ControlUnet {
  path: string;
  io: ControlUnetIO;
  externalData: string[];
  /** Bytes of the file and its external weights. */
  bytes: number;
}

export type ControlUnetRead = { unet: ControlUnet; problem: null } | { unet: null; problem: string | null };

/** The folder's control UNet, or why it has none usable (null: no controlnet/model.onnx at all). */
export async function readControlUnet(dir: string, devices: Device | readonly Device[]): Promise<ControlUnetRead> {
  const path = join(dir, CONTROL_UNET_DIR, "model.onnx");
  if ((await fileSize(path)) === null) return { unet: null, problem: null };
  try {
    const info = await inspectPart(dir, path);
    if (!hasResiduals(info.inputs)) return { unet: null, problem: `${CONTROL_UNET_DIR}/model.onnx does not take a ControlNet's residuals` };
    checkDevices(dir, info, devices);
    const external = await checkExternalData(dir, info);
    return { unet: { path, io: describeControlUnet(path, info.inputs, info.outputs), externalData: external.paths, bytes: info.fileBytes + external.bytes }, problem: null };
  } catch (error) {
    if (error instanceof ModelFolderError) return { unet: null, problem: error.message };
    throw error;
  }
}
