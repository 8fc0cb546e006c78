import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  findInputConvWeightDims,
  initializerDims,
  inspectOnnx,
  OnnxParseError,
  readInputConvWeightDims,
} from "../../../daemon/models/onnx-inspect";
import { fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

// ---- a minimal protobuf writer, to build ONNX files with the variants real exports have ----

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const key = (field: number, wire: number) => varint(field * 8 + wire);
const int = (field: number, n: number) => [...key(field, 0), ...varint(n)];
const bytes = (field: number, b: ArrayLike<number>) => [...key(field, 2), ...varint(b.length), ...Array.from(b)];
const str = (field: number, s: string) => bytes(field, Buffer.from(s, "utf8"));
const msg = (field: number, ...parts: number[][]) => bytes(field, parts.flat());

const FLOAT = 1;
const FLOAT16 = 10;
const INT64 = 7;

function valueInfo(field: number, name: string, elemType: number, dims: (number | string)[]): number[] {
  const shape = dims.map((d) => msg(1, typeof d === "number" ? int(1, d) : str(2, d)));
  return msg(field, str(1, name), msg(2, msg(1, int(1, elemType), msg(2, ...shape))));
}

function node(op: string, inputs: string[], outputs: string[], ...attributes: number[][]): number[] {
  return msg(1, ...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(4, op), ...attributes);
}

/** Graph: x (fp16) -> Conv(x, Cast(w16)) -> y, w16 an fp16 initializer with PACKED dims [8, 5, 3, 3]. */
function castWeightModel(): Buffer {
  const packedDims = bytes(1, [8, 5, 3, 3].flatMap((d) => varint(d)));
  const raw = new Array(8 * 5 * 3 * 3 * 2).fill(7);
  const graph = [
    node("Cast", ["w16"], ["w32"]),
    node("Conv", ["x", "w32"], ["y"]),
    str(2, "g"),
    msg(5, packedDims, int(2, FLOAT16), str(8, "w16"), bytes(9, raw)),
    valueInfo(11, "x", FLOAT16, [1, "channels", 8, 8]),
    valueInfo(12, "y", FLOAT16, [1, 8, 6, 6]),
  ];
  return Buffer.from([...int(1, 8), str(2, "test"), msg(8, int(2, 17)), msg(7, ...graph)].flat());
}

/** IR 3 style: the initializer is listed among the graph inputs; the Conv weight is a Constant node; external data without length. */
function constantWeightModel(): Buffer {
  const constTensor = [int(1, 4), int(1, 9), int(1, 3), int(1, 3), int(2, FLOAT), bytes(9, new Array(4 * 9 * 9 * 4).fill(0))];
  const graph = [
    node("Constant", [], ["w"], msg(5, str(1, "value"), msg(5, ...constTensor), int(20, 4))),
    node("Conv", ["sample", "w", "b"], ["out"]),
    msg(5, int(1, 4), int(2, FLOAT), str(8, "b"), msg(13, str(1, "location"), str(2, "weights.pb")), msg(13, str(1, "offset"), str(2, "64")), int(14, 1)),
    valueInfo(11, "sample", FLOAT, ["batch", "channels", "h", "w"]),
    valueInfo(11, "b", FLOAT, [4]),
    valueInfo(11, "timestep", INT64, []),
    valueInfo(12, "out", FLOAT, ["batch", 4, "h", "w"]),
  ];
  return Buffer.from([...int(1, 3), msg(7, ...graph)].flat());
}

let tmp: TempDir;
beforeAll(async () => {
  tmp = await makeTempDir();
});
afterAll(async () => {
  await tmp.cleanup();
});

async function write(name: string, data: Uint8Array | string): Promise<string> {
  const file = path.join(tmp.dir, name);
  await writeFile(file, data);
  return file;
}

async function parseError(file: string): Promise<OnnxParseError> {
  const error = await inspectOnnx(file).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OnnxParseError);
  return error as OnnxParseError;
}

describe("inspectOnnx on the fixture models", () => {
  it("reads conv_in dims of the UNet: 4 channels for tiny-sd, 9 for tiny-sd-inpaint", async () => {
    expect(await readInputConvWeightDims(path.join(fixtureModelDir("tiny-sd"), "unet/model.onnx"))).toEqual([32, 4, 3, 3]);
    expect(await readInputConvWeightDims(path.join(fixtureModelDir("tiny-sd-inpaint"), "unet/model.onnx"))).toEqual([
      32, 9, 3, 3,
    ]);
  });

  it("reads graph inputs and outputs with dtypes and symbolic dims", async () => {
    const unet = await inspectOnnx(path.join(fixtureModelDir("tiny-sd"), "unet/model.onnx"));
    expect(unet.inputs).toEqual([
      { name: "sample", type: "float32", shape: ["batch", "channels", "height", "width"] },
      { name: "timestep", type: "float32", shape: ["batch"] },
      { name: "encoder_hidden_states", type: "float32", shape: ["batch", "sequence", 32] },
    ]);
    expect(unet.outputs.map((o) => o.name)).toEqual(["out_sample"]);
    expect(unet.opsets).toEqual([{ domain: "", version: 14 }]);
    expect(unet.irVersion).toBe(7);
    const text = await inspectOnnx(path.join(fixtureModelDir("tiny-sd"), "text_encoder/model.onnx"));
    expect(text.inputs).toEqual([{ name: "input_ids", type: "int32", shape: ["batch", "sequence"] }]);
    expect(text.outputs.map((o) => o.name)).toEqual(["last_hidden_state", "pooler_output"]);
  });

  it("reports the UNet's external weights file and how much of it the graph needs", async () => {
    const unet = await inspectOnnx(path.join(fixtureModelDir("tiny-sd"), "unet/model.onnx"));
    expect(unet.externalFiles).toEqual([{ location: "weights.pb", requiredBytes: 5665792 }]);
    const text = await inspectOnnx(path.join(fixtureModelDir("tiny-sd"), "text_encoder/model.onnx"));
    expect(text.externalFiles).toEqual([]);
    // Embedded weights are skipped, but counted.
    expect(text.embeddedDataBytes).toBeGreaterThan(6_000_000);
    expect(text.embeddedDataBytes).toBeLessThan(text.fileBytes);
  });

  it("reports a model.onnx truncated to half its size as truncated, naming the file", async () => {
    const original = await readFile(path.join(fixtureModelDir("tiny-sd"), "unet/model.onnx"));
    const file = await write("half.onnx", original.subarray(0, original.length >> 1));
    const error = await parseError(file);
    expect(error.reason).toBe("truncated");
    expect(error.message).toContain(file);
  });

  it("reports a text encoder with embedded weights cut short as truncated", async () => {
    const original = await readFile(path.join(fixtureModelDir("tiny-sd"), "text_encoder/model.onnx"));
    const file = await write("text-cut.onnx", original.subarray(0, original.length - 1000));
    expect((await parseError(file)).reason).toBe("truncated");
  });
});

describe("inspectOnnx on hand-built models", () => {
  it("follows a Conv weight through Cast to a float16 initializer with packed dims", async () => {
    const info = await inspectOnnx(await write("cast.onnx", castWeightModel()));
    expect(findInputConvWeightDims(info)).toEqual([8, 5, 3, 3]);
    expect(initializerDims(info, "w16")).toEqual([8, 5, 3, 3]);
    expect(info.initializers.get("w16")?.type).toBe("float16");
    expect(info.inputs).toEqual([{ name: "x", type: "float16", shape: [1, "channels", 8, 8] }]);
    expect(info.embeddedDataBytes).toBe(8 * 5 * 3 * 3 * 2);
    expect(info.producerName).toBe("test");
    expect(info.opsets).toEqual([{ domain: "", version: 17 }]);
  });

  it("reads a Constant-node weight, drops initializers from the inputs, sizes external data", async () => {
    const info = await inspectOnnx(await write("const.onnx", constantWeightModel()));
    expect(findInputConvWeightDims(info)).toEqual([4, 9, 3, 3]);
    expect(info.inputs.map((i) => i.name)).toEqual(["sample", "timestep"]);
    expect(info.inputs[1]).toEqual({ name: "timestep", type: "int64", shape: [] });
    // No length key: 4 float32 = 16 bytes at offset 64.
    expect(info.externalFiles).toEqual([{ location: "weights.pb", requiredBytes: 80 }]);
  });

  it("never crashes or hangs on a cut file: every prefix is a truncated or invalid OnnxParseError", async () => {
    const full = castWeightModel();
    for (let cut = 1; cut < full.length; cut += cut < 64 ? 1 : 7) {
      const file = await write("cut.onnx", full.subarray(0, cut));
      const error = await parseError(file);
      expect(["truncated", "invalid"]).toContain(error.reason);
    }
  });

  it("rejects files that are not ONNX", async () => {
    expect((await parseError(await write("empty.onnx", ""))).reason).toBe("invalid");
    expect((await parseError(await write("ff.onnx", Buffer.alloc(64, 0xff)))).reason).toBe("invalid");
    const lfs = await parseError(
      await write("lfs.onnx", "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"),
    );
    expect(lfs.reason).toBe("invalid");
    expect(lfs.message).toMatch(/Git LFS pointer/);
    const html = await parseError(await write("page.onnx", "<!DOCTYPE html><html><body>Not found</body></html>"));
    expect(["invalid", "truncated"]).toContain(html.reason);
    expect((await parseError(path.join(tmp.dir, "absent.onnx"))).reason).toBe("unreadable");
  });
});
