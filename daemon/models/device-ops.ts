/**
 * onnxruntime contrib operators that only GPU execution providers implement. Olive / DirectML
 * and CUDA-optimized Stable Diffusion exports (onnxruntime/sd-turbo, tlwu/*, amd/*_io16_amdgpu)
 * fuse their UNet and VAE into them; on the CPU provider such a session fails with "Could not
 * find an implementation for NhwcConv(1) node", so model-folder.ts refuses the folder first,
 * in one sentence that names the device it needs.
 *
 * The table is onnxruntime's docs/OperatorKernels.md (main branch): each operator below is
 * listed for the CUDAExecutionProvider and/or DmlExecutionProvider and absent from the
 * CPUExecutionProvider's list. Operators the CPU provider does implement are not here,
 * MultiHeadAttention among them (attention-fusion.ts writes it). An operator missing from the
 * table is allowed: onnxruntime itself still reports it when the session is created.
 */
import type { Device } from "./execution-provider";

/** operator domain -> op type -> the devices whose provider implements it. */
export const DEVICE_ONLY_OPERATORS: Readonly<Record<string, Readonly<Record<string, readonly Device[]>>>> = {
  "com.microsoft": {
    BiasAdd: ["dml", "cuda"],
    BiasSplitGelu: ["dml", "cuda"],
    GroupNorm: ["dml", "cuda"],
    NhwcConv: ["dml", "cuda"],
    SkipGroupNorm: ["cuda"],
  },
};

export interface DeviceOnlyOperator {
  domain: string;
  opType: string;
  /** The devices that run it. */
  devices: readonly Device[];
}

const DEVICE_NAMES: Readonly<Record<Device, string>> = { cpu: "CPU", cuda: "CUDA", dml: "DirectML", coreml: "CoreML" };

/**
 * The operators of a graph (op types by domain, as onnx-inspect reads them) that none of
 * `devices` runs. `devices` is a session's provider chain (execution-provider.ts: the
 * preferred device, then "cpu"); onnxruntime gives each node to the first provider that has
 * it, so an operator is fine when any of them does.
 */
export function deviceOnlyOperators(
  opTypesByDomain: ReadonlyMap<string, ReadonlySet<string>>,
  devices: Device | readonly Device[],
): DeviceOnlyOperator[] {
  const chain: readonly Device[] = typeof devices === "string" ? [devices] : devices;
  const found: DeviceOnlyOperator[] = [];
  for (const [domain, opTypes] of opTypesByDomain) {
    const table = DEVICE_ONLY_OPERATORS[domain];
    if (!table) continue;
    for (const opType of opTypes) {
      const runs = Object.hasOwn(table, opType) ? table[opType] : undefined;
      if (runs && !chain.some((d) => runs.includes(d))) found.push({ domain, opType, devices: runs });
    }
  }
  return found;
}

function orList(words: readonly string[]): string {
  return words.length <= 1 ? (words[0] ?? "") : `${words.slice(0, -1).join(", ")} or ${words.at(-1)}`;
}

function andList(words: readonly string[]): string {
  return words.length <= 1 ? (words[0] ?? "") : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`;
}

/**
 * One sentence: `unet/model.onnx needs a DirectML or CUDA GPU: it uses the operator
 * com.microsoft.NhwcConv, which onnxruntime's CPU provider does not have.`
 */
export function deviceOnlyMessage(file: string, op: DeviceOnlyOperator, devices: Device | readonly Device[]): string {
  const chain: readonly Device[] = typeof devices === "string" ? [devices] : devices;
  const providers = [...new Set(chain)].map((d) => DEVICE_NAMES[d]);
  const have = providers.length > 1 ? "providers do" : "provider does";
  return (
    `${file} needs a ${orList(op.devices.map((d) => DEVICE_NAMES[d]))} GPU: it uses the operator ` +
    `${op.domain}.${op.opType}, which onnxruntime's ${andList(providers)} ${have} not have.`
  );
}
