import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { InferenceSession } from "onnxruntime-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEVICE_ONLY_OPERATORS, deviceOnlyMessage, deviceOnlyOperators } from "../../../daemon/models/device-ops";
import type { Device } from "../../../daemon/models/execution-provider";
import { loadModelFolder, ModelFolderError } from "../../../daemon/models/model-folder";
import { inspectOnnx } from "../../../daemon/models/onnx-inspect";
import { MS, useContribOp } from "../../helpers/contrib-op";
import { copyFixtureModel, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

const { onnx } = onnxProto;

async function loadError(dir: string, devices: Device | readonly Device[]): Promise<ModelFolderError> {
  const error = await loadModelFolder(dir, { devices }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelFolderError);
  return error as ModelFolderError;
}

describe("deviceOnlyOperators", () => {
  const ops = (entries: [string, string[]][]) => new Map(entries.map(([d, o]) => [d, new Set(o)]));

  it("finds GPU-only contrib operators for the CPU, none for a device that has them", () => {
    const graph = ops([
      ["", ["Conv", "Softmax"]],
      [MS, ["MultiHeadAttention", "NhwcConv", "GroupNorm"]],
    ]);
    expect(deviceOnlyOperators(graph, "cpu")).toEqual([
      { domain: MS, opType: "NhwcConv", devices: ["dml", "cuda"] },
      { domain: MS, opType: "GroupNorm", devices: ["dml", "cuda"] },
    ]);
    expect(deviceOnlyOperators(graph, ["cuda", "cpu"])).toEqual([]);
    expect(deviceOnlyOperators(graph, ["dml", "cpu"])).toEqual([]);
    expect(deviceOnlyOperators(graph, ["coreml", "cpu"]).map((o) => o.opType)).toEqual(["NhwcConv", "GroupNorm"]);
  });

  it("knows SkipGroupNorm is CUDA's only; ignores default-domain ops and ops it does not list", () => {
    expect(deviceOnlyOperators(ops([[MS, ["SkipGroupNorm"]]]), ["dml", "cpu"])).toEqual([
      { domain: MS, opType: "SkipGroupNorm", devices: ["cuda"] },
    ]);
    expect(deviceOnlyOperators(ops([["", ["GroupNorm", "NhwcConv"]], [MS, ["FastGelu", "toString"]]]), "cpu")).toEqual([]);
  });

  it("says it in one sentence naming the file, the devices and the operator", () => {
    const op = { domain: MS, opType: "NhwcConv", devices: ["dml", "cuda"] as const };
    expect(deviceOnlyMessage("unet/model.onnx", op, ["cpu"])).toBe(
      "unet/model.onnx needs a DirectML or CUDA GPU: it uses the operator com.microsoft.NhwcConv, which onnxruntime's CPU provider does not have.",
    );
    expect(deviceOnlyMessage("unet/model.onnx", { ...op, opType: "SkipGroupNorm", devices: ["cuda"] }, ["dml", "cpu"])).toBe(
      "unet/model.onnx needs a CUDA GPU: it uses the operator com.microsoft.SkipGroupNorm, which onnxruntime's DirectML and CPU providers do not have.",
    );
  });

  it("agrees with this onnxruntime-node's CPU provider: it has none of the listed operators, but has MultiHeadAttention", async () => {
    const attrs: Record<string, Record<string, number>> = {
      GroupNorm: { groups: 1, activation: 0 },
      SkipGroupNorm: { groups: 1, activation: 0 },
      MultiHeadAttention: { num_heads: 1 },
    };
    const arity: Record<string, number> = { NhwcConv: 2, GroupNorm: 3, BiasSplitGelu: 2, BiasAdd: 3, SkipGroupNorm: 4, MultiHeadAttention: 3 };
    const oneNode = (op: string): Uint8Array => {
      const names = Array.from({ length: arity[op] ?? 1 }, (_, i) => `x${i}`);
      const attribute = Object.entries(attrs[op] ?? {}).map(([name, i]) => ({ name, i, type: onnx.AttributeProto.AttributeType.INT }));
      const model = onnx.ModelProto.create({
        irVersion: 8,
        opsetImport: [{ domain: "", version: 17 }, { domain: MS, version: 1 }],
        graph: {
          name: "one",
          node: [{ opType: op, domain: MS, input: names, output: ["y"], attribute }],
          input: names.map((name) => ({ name, type: { tensorType: { elemType: 1 } } })),
          output: [{ name: "y", type: { tensorType: { elemType: 1 } } }],
        },
      });
      return onnx.ModelProto.encode(model).finish();
    };
    const listed = Object.keys(DEVICE_ONLY_OPERATORS[MS] ?? {});
    expect(listed.length).toBeGreaterThan(0);
    for (const op of listed) {
      await expect(InferenceSession.create(oneNode(op), { executionProviders: ["cpu"] })).rejects.toThrow(
        new RegExp(`Could not find an implementation for ${op}\\(1\\)`),
      );
    }
    const mha = await InferenceSession.create(oneNode("MultiHeadAttention"), { executionProviders: ["cpu"] });
    await mha.release();
  });
});

describe("loadModelFolder with GPU-only operators", () => {
  let tmp: TempDir;
  beforeEach(async () => {
    tmp = await makeTempDir();
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  it("inspectOnnx reads the op types by domain", async () => {
    const dir = await copyFixtureModel("tiny-sd", tmp.dir);
    const unet = path.join(dir, "unet", "model.onnx");
    expect([...((await inspectOnnx(unet)).opTypesByDomain.get(MS) ?? [])]).toEqual([]);
    await useContribOp(unet, "NhwcConv");
    const info = await inspectOnnx(unet);
    expect([...(info.opTypesByDomain.get(MS) ?? [])]).toEqual(["NhwcConv"]);
    expect(info.opTypesByDomain.get("")?.has("Conv")).toBe(true);
  });

  it("refuses a UNet with com.microsoft.NhwcConv on the CPU in one sentence, loads it for CUDA and DirectML", async () => {
    const dir = await copyFixtureModel("tiny-sd", tmp.dir);
    const unet = path.join(dir, "unet", "model.onnx");
    await useContribOp(unet, "NhwcConv");

    const error = await loadError(dir, ["cpu"]);
    expect(error.code).toBe("model_unsupported");
    expect(error.file).toBe(unet);
    expect(error.message).toBe(
      "unet/model.onnx needs a DirectML or CUDA GPU: it uses the operator com.microsoft.NhwcConv, which onnxruntime's CPU provider does not have.",
    );
    expect(error.message).not.toMatch(/\n|\s at /);

    for (const devices of [["cuda", "cpu"], ["dml", "cpu"]] as const) {
      const model = await loadModelFolder(dir, { devices });
      expect(model.unetInChannels).toBe(4);
    }
  });

  it("refuses GroupNorm on CoreML + CPU, naming both providers", async () => {
    const dir = await copyFixtureModel("tiny-sd", tmp.dir);
    await useContribOp(path.join(dir, "unet", "model.onnx"), "GroupNorm");
    const error = await loadError(dir, ["coreml", "cpu"]);
    expect(error.code).toBe("model_unsupported");
    expect(error.message).toBe(
      "unet/model.onnx needs a DirectML or CUDA GPU: it uses the operator com.microsoft.GroupNorm, which onnxruntime's CoreML and CPU providers do not have.",
    );
  });

  it("loads MultiHeadAttention on the CPU, and the untouched fixture with the default devices", async () => {
    const dir = await copyFixtureModel("tiny-sd", tmp.dir);
    await expect(loadModelFolder(dir)).resolves.toMatchObject({ id: "tiny-sd" });
    await useContribOp(path.join(dir, "unet", "model.onnx"), "MultiHeadAttention");
    await expect(loadModelFolder(dir, { devices: "cpu" })).resolves.toMatchObject({ id: "tiny-sd" });
  });
});
