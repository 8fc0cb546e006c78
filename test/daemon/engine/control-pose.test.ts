/**
 * Pose control from a picture: replicas of TensorStack/stable-diffusion-v1-5-onnx (control UNet),
 * TensorStack/ControlNet-onnx (SD/OpenPose) and yzd-v/DWPose (I/O-faithful stand-in graphs whose
 * detector finds one person) pulled through the hub imitation; a pose job on a colour picture must
 * steer the ControlNet with exactly the pose map made of it through the same two sessions (run here
 * by hand with onnxruntime, decoded and drawn by pose.ts), and a pose map must pass through as it is.
 */
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { decodeSimcc, drawPoseMap, isPoseMapLayer, letterbox, openposeBody, personBoxes, poseCrop } from "../../../daemon/imaging/pose";
import type { Pixels } from "../../../geometry";
import { colourPicture as pictureOf, expectFollowsEstimatedMap, helperEngines, previewOver, runControlled, type HelperEngines } from "../../helpers/control-models";

const REPOS = ["TensorStack/stable-diffusion-v1-5-onnx", "TensorStack/ControlNet-onnx", "yzd-v/DWPose"];
/** With the pose estimator installed, and a models folder of the same model and ControlNet without it. */
let engines: HelperEngines;
const modelsDir = () => engines.models.modelsDir;
const SIZE = { width: 64, height: 64 };

beforeAll(async () => {
  engines = await helperEngines("underpaint-control-pose-", REPOS, "controlnet-pose", "dwpose");
}, 180_000);
afterAll(() => engines?.close());

const run = (engine: DiffusionEngine, image: Pixels) => runControlled(engine, "pose", image, "a dancer");

/** A colour picture, 96x72 (not the generation size): a figure-like warm shape on a blue-green gradient. */
const colourPicture = () => pictureOf((x, y) => Math.abs(x - 45) < 8 && y > 10 && y < 65, [220, 160, 130]);

/**
 * The estimator run by hand: the letterbox (96x72 -> 640x480 top-left of 640x640 on 114) through
 * yolox_l.onnx, the person boxes decoded, each crop through dw-ll_ucoco_384.onnx, SimCC decoded, the
 * OpenPose body drawn at the generation size.
 */
async function poseByHand(layer: Pixels, size: { width: number; height: number } = SIZE): Promise<Pixels> {
  const img = { data: layer.data, width: layer.width, height: layer.height };
  const boxed = letterbox(img, { width: 640, height: 640 });
  expect(boxed.ratio).toBeCloseTo(640 / 96, 10);
  const det = await InferenceSession.create(path.join(modelsDir(), "dwpose", "yolox_l.onnx"));
  const pose = await InferenceSession.create(path.join(modelsDir(), "dwpose", "dw-ll_ucoco_384.onnx"));
  try {
    const out = (await det.run({ images: new Tensor("float32", boxed.data, [1, 3, 640, 640]) })).output!;
    expect(out.dims).toEqual([1, 8400, 85]);
    const people = personBoxes({ data: out.data as Float32Array, anchors: 8400, values: 85 }, { width: 640, height: 640 }, boxed.ratio);
    expect(people).toHaveLength(1);
    const bodies = [];
    for (const box of people) {
      const crop = poseCrop(img, box, { width: 288, height: 384 });
      const simcc = await pose.run({ input: new Tensor("float32", crop.data, [1, 3, 384, 288]) });
      const s = { x: simcc.simcc_x!.data as Float32Array, y: simcc.simcc_y!.data as Float32Array, keypoints: 133, binsX: 576, binsY: 768 };
      bodies.push(openposeBody(decodeSimcc(s, { width: 288, height: 384 }, crop.centre, crop.scale)));
    }
    return drawPoseMap(bodies, layer, size);
  } finally {
    await det.release();
    await pose.release();
  }
}

describe("a pose job on a colour picture with a pose estimator installed", { timeout: 120_000 }, () => {
  it("steers the ControlNet with the estimator's OpenPose map: the same picture as the job given that map", async () => {
    const picture = colourPicture();
    expect(isPoseMapLayer(picture)).toBe(false);
    const map = await poseByHand(picture);
    // A skeleton was drawn (the replica's detector finds its person), and the map reads as a pose map.
    expect(map.data.some((v) => v > 0)).toBe(true);
    expect(isPoseMapLayer(map)).toBe(true);
    // The job on the picture is the job on that map; without the estimator the picture itself is the "pose map" (as before) and steers otherwise.
    await expectFollowsEstimatedMap(engines, run, picture, map, /pose estimator "dwpose" makes the pose map from the control layer/);
  });

  it("tells the panel which pose estimator is installed, and that there is none where it is not", async () => {
    expect((await engines.withIt.capabilities()).poseEstimator).toEqual({ id: "dwpose", registryId: "dwpose" });
    expect((await engines.without.capabilities()).poseEstimator).toBeNull();
  });

  it("shows the panel's control preview of a picture as the pose map the job follows, and the picture itself without an estimator", async () => {
    const picture = colourPicture();
    const map = await poseByHand(picture, picture);
    const shown = await previewOver(engines.withIt, "pose", picture);
    expect([shown.width, shown.height, shown.channels]).toEqual([picture.width, picture.height, 3]);
    expect(Array.from(shown.data)).toEqual(Array.from(map.data));
    expect(Array.from((await previewOver(engines.without, "pose", picture)).data)).toEqual(Array.from(picture.data));
  });

  it("passes a pose map through as it is, estimator or not", async () => {
    const map = await poseByHand(colourPicture());
    engines.lines.length = 0;
    const a = await run(engines.withIt, map);
    expect(engines.lines.some((l) => /makes the pose map/.test(l))).toBe(false);
    const b = await run(engines.without, map);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });
});
