/**
 * The builder's ControlNet (scripts/onnx-builder/controlnet.ts) and its UNet with residual inputs:
 * full-size counts against ControlNet 1.1's published 361 M, and, in tiny-sd's configuration, what
 * onnxruntime computes with them (the residuals' names and shapes, conditioning_scale as a factor,
 * zero residuals giving the plain UNet's output).
 */
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlNet, CONTROLNET_SD15_PARAMS, CONTROLNET_SDXL_PARAMS_APPROX } from "../../scripts/onnx-builder/controlnet";
import { tinySdxlAsSd15, writeControlNetFolder, writeControlUnet } from "../../scripts/onnx-builder/control-folder";
import { SDXL_REFERENCE, sdxlConfig, sdxlUnetGraphs, tinySdxlConfig } from "../../scripts/onnx-builder/sdxl";
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

describe("the builder's SDXL ControlNet", () => {
  const sdxl = sdxlConfig(1);
  const full = { text: sdxl.text, unet: sdxl.unet, vae: sdxl.vae };

  it("at full size has about an SDXL ControlNet's 1.25 B parameters (its 2.5 GB of float16 weights), and 9 down residuals as SDXL's UNet takes", () => {
    const counts = controlNet(full, SDXL_REFERENCE).counts();
    console.log(`SDXL ControlNet: ${counts.params.toLocaleString("en")} parameters`);
    expect(Math.abs(counts.params / CONTROLNET_SDXL_PARAMS_APPROX - 1)).toBeLessThan(0.02);
    // The encoder half of SDXL's UNet (its published 2,567,463,684 weights less the up path) plus the conditioning embedding and the zero convs.
    const u = unet(full, SDXL_REFERENCE).counts().params;
    expect(u).toBe(2_567_463_684);
    expect(counts.params).toBeLessThan(u / 2);
    expect(downResidualShapes(sdxl.unet).map((s) => s.channels)).toEqual([320, 320, 320, 320, 640, 640, 640, 1280, 1280]);
    expect(unet(full, SDXL_REFERENCE, { residualInputs: true }).counts().params).toBe(u);
  });

  it("has OnnxStack.Converter/ControlNetXL's inputs, and its residuals drive the control UNet (zeros give the plain UNet's output)", async () => {
    const tmpDir = path.join(tmp.dir, "sdxl");
    const config = tinySdxlAsSd15();
    await writeControlNetFolder(path.join(tmpDir, "cn"), config, { externalData: "model.onnx.data" });
    const graphs = sdxlUnetGraphs(tinySdxlConfig(), { ...SDXL_REFERENCE, latent: 8 }, { controlUnet: true, timestep: "float32" });
    await graphs.unet.write(path.join(tmpDir, "unet", "model.onnx"));
    await graphs.controlnet!.write(path.join(tmpDir, "controlnet", "model.onnx"));
    const sessions = await Promise.all(["cn", "unet", "controlnet"].map((d) => InferenceSession.create(path.join(tmpDir, d, "model.onnx"))));
    const [net, base, control] = sessions as [InferenceSession, InferenceSession, InferenceSession];
    try {
      const xlShapes = downResidualShapes(config.unet);
      expect(net.inputNames).toEqual(["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids", "controlnet_cond", "conditioning_scale"]);
      expect(net.outputNames).toEqual([...xlShapes.map((_, i) => downResidualName(i)), MID_RESIDUAL]);
      const feeds = {
        sample: t(random(4 * 64, "xl-sample"), [1, 4, 8, 8]),
        timestep: t(new Float32Array([500]), [1]),
        encoder_hidden_states: t(random(77 * 64, "xl-context"), [1, 77, 64]),
        text_embeds: t(random(32, "xl-pooled"), [1, 32]),
        time_ids: t(new Float32Array([64, 64, 0, 0, 64, 64]), [1, 6]),
      };
      const condition = { controlnet_cond: t(random(3 * 64 * 64, "xl-image", 0.3).map((v) => v + 0.5), [1, 3, 64, 64]), conditioning_scale: new Tensor("float64", new Float64Array([1]), [1]) };
      const residuals = await net.run({ ...feeds, ...condition });
      xlShapes.forEach((s, i) => expect(residuals[downResidualName(i)]!.dims).toEqual([1, s.channels, 8 / s.factor, 8 / s.factor]));
      // The added conditions matter to the ControlNet as to the UNet.
      const otherIds = await net.run({ ...feeds, ...condition, time_ids: t(new Float32Array([128, 128, 0, 0, 128, 128]), [1, 6]) });
      expect(maxAbs(otherIds[MID_RESIDUAL]!.data as Float32Array, residuals[MID_RESIDUAL]!.data as Float32Array)).toBeGreaterThan(1e-4);
      const reference = (await base.run(feeds)).out_sample!.data as Float32Array;
      const zeros = Object.fromEntries(Object.entries(residuals).map(([name, r]) => [name, t(new Float32Array(r.data.length), [...r.dims])]));
      expect(maxAbs((await control.run({ ...feeds, ...zeros })).out_sample!.data as Float32Array, reference)).toBeLessThanOrEqual(2e-5 * Math.max(1, maxAbs(reference)));
      expect(maxAbs((await control.run({ ...feeds, ...residuals })).out_sample!.data as Float32Array, reference)).toBeGreaterThan(1e-3);
    } finally {
      for (const s of sessions) await s.release();
    }
  });
});
