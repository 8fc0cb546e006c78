/**
 * The builder's ControlNet (scripts/onnx-builder/controlnet.ts) and its UNet with residual inputs:
 * full-size counts against ControlNet 1.1's published 361 M, and, in tiny-sd's configuration, what
 * onnxruntime computes with them (the residuals' names and shapes, conditioning_scale as a factor,
 * zero residuals giving the plain UNet's output).
 */
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlNet, CONTROLNET_SD15_PARAMS } from "../../scripts/onnx-builder/controlnet";
import { writeControlNetFolder, writeControlUnet } from "../../scripts/onnx-builder/control-folder";
import { fillRandom } from "../../scripts/onnx-builder/graph";
import { downResidualName, downResidualShapes, MID_RESIDUAL, sd15Config, tinySdConfig, unet } from "../../scripts/onnx-builder/sd15";
import { makeTempDir, type TempDir } from "../helpers/model-fixtures";

let tmp: TempDir;
let cn: InferenceSession;
let plain: InferenceSession;
let withResiduals: InferenceSession;
const config = tinySdConfig();
const shapes = downResidualShapes(config.unet);

const random = (n: number, name: string, std = 1) => {
  const out = new Float32Array(n);
  fillRandom(out, name, std);
  return out;
};
const t = (data: Float32Array, dims: number[]) => new Tensor("float32", data, dims);
const maxAbs = (a: Float32Array, b?: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b?.[i] ?? 0))), 0);

function unetFeeds(batch: number, side: number) {
  return {
    sample: t(random(batch * 4 * side * side, "sample"), [batch, 4, side, side]),
    timestep: t(new Float32Array([500]), [1]),
    encoder_hidden_states: t(random(batch * 77 * 32, "context"), [batch, 77, 32]),
  };
}

function controlFeeds(batch: number, side: number, scale: number) {
  return {
    ...unetFeeds(batch, side),
    controlnet_cond: t(random(batch * 3 * 64 * side * side, "image", 0.3).map((v) => v + 0.5), [batch, 3, 8 * side, 8 * side]),
    conditioning_scale: new Tensor("float64", new Float64Array([scale]), [1]),
  };
}

beforeAll(async () => {
  tmp = await makeTempDir("underpaint-controlnet-builder-");
  await writeControlNetFolder(path.join(tmp.dir, "cn"));
  await writeControlUnet(tmp.dir);
  cn = await InferenceSession.create(path.join(tmp.dir, "cn", "model.onnx"));
  plain = await InferenceSession.create(path.join(tmp.dir, "unet", "model.onnx"));
  withResiduals = await InferenceSession.create(path.join(tmp.dir, "controlnet", "model.onnx"));
}, 60_000);
afterAll(async () => {
  for (const s of [cn, plain, withResiduals]) await s?.release();
  await tmp.cleanup();
});

describe("the builder's ControlNet", () => {
  it("at full size has ControlNet 1.1's parameters (361,279,120) and takes 12 down residuals, as SD 1.5's UNet", () => {
    const counts = controlNet(sd15Config(1)).counts();
    expect(Math.abs(counts.params / CONTROLNET_SD15_PARAMS - 1)).toBeLessThan(0.01);
    expect(downResidualShapes(sd15Config(1).unet)).toHaveLength(12);
    expect(downResidualShapes(sd15Config(1).unet).map((s) => s.channels)).toEqual([320, 320, 320, 320, 640, 640, 640, 1280, 1280, 1280, 1280, 1280]);
    // The residual inputs add no weights.
    expect(unet(sd15Config(1), undefined, { residualInputs: true }).counts().params).toBe(unet(sd15Config(1)).counts().params);
  });

  it("has OnnxStack's inputs and outputs, and gives each residual at its skip's shape", async () => {
    expect(cn.inputNames).toEqual(["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale"]);
    expect(cn.outputNames).toEqual([...shapes.map((_, i) => downResidualName(i)), MID_RESIDUAL]);
    expect(withResiduals.inputNames).toEqual(["sample", "timestep", "encoder_hidden_states", ...shapes.map((_, i) => downResidualName(i)), MID_RESIDUAL]);
    const out = await cn.run(controlFeeds(2, 8, 1));
    shapes.forEach((s, i) => expect(out[downResidualName(i)]!.dims).toEqual([2, s.channels, 8 / s.factor, 8 / s.factor]));
    expect(out[MID_RESIDUAL]!.dims).toEqual([2, 64, 4, 4]);
    expect(maxAbs(out[downResidualName(0)]!.data as Float32Array)).toBeGreaterThan(1e-3);
  });

  it("multiplies every residual by conditioning_scale", async () => {
    const one = await cn.run(controlFeeds(1, 8, 1));
    const half = await cn.run(controlFeeds(1, 8, 0.5));
    const zero = await cn.run(controlFeeds(1, 8, 0));
    for (const name of cn.outputNames) {
      const a = one[name]!.data as Float32Array;
      const b = half[name]!.data as Float32Array;
      expect(maxAbs(b, a.map((v) => v / 2)), name).toBeLessThanOrEqual(1e-6 * Math.max(1, maxAbs(a)));
      expect(maxAbs(zero[name]!.data as Float32Array), name).toBe(0);
    }
  });

  it("feeds the UNet: zero residuals give the plain UNet's output, the ControlNet's change it", async () => {
    const feeds = unetFeeds(1, 8);
    const reference = (await plain.run(feeds)).out_sample!.data as Float32Array;
    const zeros = Object.fromEntries([...shapes.map((s, i) => [downResidualName(i), t(new Float32Array(s.channels * (64 / s.factor ** 2)), [1, s.channels, 8 / s.factor, 8 / s.factor])] as const), [MID_RESIDUAL, t(new Float32Array(64 * 16), [1, 64, 4, 4])] as const]);
    const same = (await withResiduals.run({ ...feeds, ...zeros })).out_sample!.data as Float32Array;
    expect(maxAbs(same, reference)).toBeLessThanOrEqual(2e-5 * Math.max(1, maxAbs(reference)));
    const residuals = await cn.run({ ...controlFeeds(1, 8, 1), sample: feeds.sample, encoder_hidden_states: feeds.encoder_hidden_states });
    const controlled = (await withResiduals.run({ ...feeds, ...residuals })).out_sample!.data as Float32Array;
    expect(maxAbs(controlled, reference)).toBeGreaterThan(1e-3);
  });
});
