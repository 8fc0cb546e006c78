/** Test models that need a GPU: an exported graph edited as Olive / CUDA-optimized exports are. */
import { readFile, writeFile } from "node:fs/promises";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;
export const MS = "com.microsoft";

/**
 * Turns the UNet's last Conv into a com.microsoft `op` node, as Olive / CUDA-optimized
 * exports do (NhwcConv replaces Conv; the node is only read, never run).
 */
export async function useContribOp(file: string, op: string): Promise<void> {
  const model = onnx.ModelProto.decode(await readFile(file));
  const convs = (model.graph?.node ?? []).filter((n) => n.opType === "Conv");
  const last = convs.at(-1);
  if (!last || convs.length < 2) throw new Error("the fixture UNet has fewer than two Conv nodes");
  last.opType = op;
  last.domain = MS;
  last.attribute = [];
  model.opsetImport.push(onnx.OperatorSetIdProto.create({ domain: MS, version: 1 }));
  await writeFile(file, onnx.ModelProto.encode(model).finish());
}
