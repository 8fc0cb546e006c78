/**
 * Depth control from a picture: replicas of TensorStack/stable-diffusion-v1-5-onnx (control UNet),
 * TensorStack/ControlNet-onnx (SD/Depth) and onnx-community/depth-anything-v2-small (I/O-faithful
 * stand-in graph) pulled through the hub imitation; a depth job on a colour picture must steer the
 * ControlNet with exactly the depth map the estimator makes of it (run here by hand with onnxruntime),
 * and a grey layer must pass through as the depth map it is. The panel's control preview (over a real
 * WebSocket to the real server) shows that same depth map.
 */
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { Pixels } from "../../../geometry";
import { colourPicture as pictureOf, expectFollowsEstimatedMap, helperEngines, previewOver, runControlled, type HelperEngines } from "../../helpers/control-models";

const REPOS = ["TensorStack/stable-diffusion-v1-5-onnx", "TensorStack/ControlNet-onnx", "onnx-community/depth-anything-v2-small"];
/** With the depth estimator installed, and a models folder of the same model and ControlNet without it. */
let engines: HelperEngines;
const modelsDir = () => engines.models.modelsDir;
const SIZE = { width: 64, height: 64 };

beforeAll(async () => {
  engines = await helperEngines("underpaint-control-depth-", REPOS, "controlnet-depth", "depth-anything-v2-small");
}, 180_000);
afterAll(() => engines?.close());

const run = (engine: DiffusionEngine, image: Pixels) => runControlled(engine, "depth", image, "a room");

/** A colour picture, 96x72 (not the generation size): a red disc on a blue-green gradient. */
const colourPicture = () => pictureOf((x, y) => (x - 40) ** 2 + (y - 30) ** 2 < 15 ** 2, [220, 40, 30]);

/**
 * The estimator run by hand, as transformers' DPTImageProcessor does it: 96x72 at keep_aspect_ratio
 * 518 -> the width's scale (5.40) is closer to 1 than the height's (7.19), so 518 wide and
 * 72 x 5.40 = 388.5 -> 392 high (28 patches of 14), bicubic; /255, ImageNet mean and std; predicted_depth min-max to 0..255, then
 * bicubic to the generation size.
 */
async function depthByHand(layer: Pixels, size: { width: number; height: number } = SIZE): Promise<Pixels> {
  const w = 518;
  const h = 392;
  const rgb = await sharp(layer.data, { raw: { width: layer.width, height: layer.height, channels: 3 } }).resize(w, h, { fit: "fill", kernel: "cubic" }).raw().toBuffer();
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const values = new Float32Array(3 * w * h);
  for (let c = 0; c < 3; c++) for (let i = 0; i < w * h; i++) values[c * w * h + i] = (rgb[3 * i + c]! / 255 - mean[c]!) / std[c]!;
  const session = await InferenceSession.create(path.join(modelsDir(), "depth-anything-v2-small", "onnx", "model.onnx"));
  try {
    const out = (await session.run({ pixel_values: new Tensor("float32", values, [1, 3, h, w]) })).predicted_depth!;
    expect(out.dims).toEqual([1, h, w]);
    const depth = out.data as Float32Array;
    let min = Infinity;
    let max = -Infinity;
    for (const v of depth) [min, max] = [Math.min(min, v), Math.max(max, v)];
    expect(max).toBeGreaterThan(min);
    const grey = Uint8Array.from(depth, (v) => Math.round((255 * (v - min)) / (max - min)));
    const resized = await sharp(grey, { raw: { width: w, height: h, channels: 1 } }).resize(size.width, size.height, { fit: "fill", kernel: "cubic" }).toColourspace("b-w").raw().toBuffer();
    return { ...size, channels: 1, data: new Uint8Array(resized) };
  } finally {
    await session.release();
  }
}

describe("a depth job on a colour picture with a depth estimator installed", { timeout: 120_000 }, () => {
  it("steers the ControlNet with the estimator's normalised depth map: the same picture as the job given that map", async () => {
    const picture = colourPicture();
    const map = await depthByHand(picture);
    // The job on the picture is the job on that map; without the estimator the picture itself is the "depth map" (as before) and steers otherwise.
    await expectFollowsEstimatedMap(engines, run, picture, map, /depth estimator "depth-anything-v2-small" makes the depth map from the control layer/);
  });

  it("tells the panel which depth estimator is installed, and that there is none where it is not", async () => {
    expect((await engines.withIt.capabilities()).depthEstimator).toEqual({ id: "depth-anything-v2-small", registryId: "depth-anything-v2-small" });
    expect((await engines.without.capabilities()).depthEstimator).toBeNull();
  });

  it("shows the panel's control preview of a picture as the estimated depth map the job follows, and the picture itself without an estimator", async () => {
    const picture = colourPicture();
    const preview = (engine: DiffusionEngine) => previewOver(engine, "depth", picture);
    const map = await depthByHand(picture, picture);
    const shown = await preview(engines.withIt);
    expect([shown.width, shown.height, shown.channels]).toEqual([picture.width, picture.height, 3]);
    expect(Array.from(shown.data.filter((_, i) => i % 3 === 0))).toEqual(Array.from(map.data));
    expect(Array.from((await preview(engines.without)).data)).toEqual(Array.from(picture.data));
  });

  it("passes a grey layer through as the depth map it is, estimator or not", async () => {
    const grey: Pixels = { ...SIZE, channels: 3, data: new Uint8Array(64 * 64 * 3).map((_, i) => Math.floor(i / 3) % 64 * 4) };
    engines.lines.length = 0;
    const a = await run(engines.withIt, grey);
    expect(engines.lines.some((l) => /makes the depth map/.test(l))).toBe(false);
    const b = await run(engines.without, grey);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });
});
