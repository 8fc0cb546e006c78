/**
 * Pose from a picture (daemon/imaging/pose.ts), on hand-made tensors whose answers are worked out
 * here: DWPose's letterbox, YOLOX's grid decoding and NMS, RTMPose's crop and SimCC decoding, the
 * 133 -> OpenPose-18 conversion with its neck, OpenPose's drawing, and which layers are pose maps already.
 */
import { describe, expect, it } from "vitest";
import {
  cropGeometry,
  decodeSimcc,
  drawBody,
  drawPoseMap,
  isPoseMapLayer,
  letterbox,
  letterboxGeometry,
  nms,
  openposeBody,
  personBoxes,
  poseCrop,
  POSE_MEAN,
  POSE_STD,
  type Box,
  type Keypoint,
} from "../../../daemon/imaging/pose";
import type { Pixels } from "../../../geometry";

function rgb(width: number, height: number, fill: (x: number, y: number) => [number, number, number]): { data: Uint8Array; width: number; height: number } {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(fill(x, y), (y * width + x) * 3);
  return { data, width, height };
}

const at = (img: Pixels, x: number, y: number) => Array.from(img.data.slice(3 * (y * img.width + x), 3 * (y * img.width + x) + 3));

describe("the detector's letterbox", () => {
  it("scales by min(640 / h, 640 / w), truncates the size, and places the picture top-left on 114", () => {
    expect(letterboxGeometry({ width: 96, height: 72 }, { width: 640, height: 640 })).toEqual({ ratio: 640 / 96, width: 640, height: 480 });
    expect(letterboxGeometry({ width: 300, height: 700 }, { width: 640, height: 640 })).toEqual({ ratio: 640 / 700, width: 274, height: 640 });
    const { data, ratio } = letterbox(rgb(4, 2, () => [10, 20, 30]), { width: 8, height: 8 });
    expect(ratio).toBe(2);
    const plane = 64;
    // Rows 0..3 the picture (8 x 4), rows 4..7 the ground; channels first, no normalisation.
    expect(Array.from(data.slice(0, 32))).toEqual(new Array(32).fill(10));
    expect(Array.from(data.slice(plane, plane + 32))).toEqual(new Array(32).fill(20));
    expect(Array.from(data.slice(2 * plane, 2 * plane + 32))).toEqual(new Array(32).fill(30));
    expect(Array.from(data.slice(32, 64))).toEqual(new Array(32).fill(114));
    expect(Array.from(data.slice(2 * plane + 32))).toEqual(new Array(32).fill(114));
  });

  it("resamples bilinearly with half-pixel centres and clamped edges (cv2.resize INTER_LINEAR)", () => {
    // 2 x 1 -> 4 x 2: source x = (x + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (the last pixel).
    const { data } = letterbox(rgb(2, 1, (x) => [x * 100, 0, 255]), { width: 4, height: 4 });
    expect(Array.from(data.slice(0, 8))).toEqual([0, 25, 75, 100, 0, 25, 75, 100]);
    expect(Array.from(data.slice(8, 16))).toEqual(new Array(8).fill(114));
  });
});

describe("YOLOX's decoding and NMS", () => {
  /** A 64 x 64 detector's output: 8x8 + 4x4 + 2x2 = 84 anchors of 6 values (box, objectness, one class). */
  function detections(rows: Record<number, [number, number, number, number, number, number]>) {
    const data = new Float32Array(84 * 6);
    for (const [row, values] of Object.entries(rows)) data.set(values, Number(row) * 6);
    return { data, anchors: 84, values: 6 };
  }

  it("decodes a box from its grid cell and stride, scores it objectness x class, scales it back by the letterbox's ratio", () => {
    // Row 73: the stride-16 grid (rows 64..79), row 2, column 1. Centre (0.5 + 1, 0.5 + 2) x 16 = (24, 40), size (2, 3) x 16.
    const found = personBoxes(detections({ 73: [0.5, 0.5, Math.log(2), Math.log(3), 0.9, 0.8] }), { width: 64, height: 64 }, 0.5);
    expect(found).toHaveLength(1);
    const [box] = found as [Box];
    expect([box.x1, box.y1, box.x2, box.y2]).toEqual([16, 32, 80, 128].map((v) => expect.closeTo(v, 4)));
    expect(box.score).toBeCloseTo(0.72, 6);
  });

  it("suppresses a weaker box overlapping a kept one by more than 0.45 and keeps only people scoring above 0.3", () => {
    const found = personBoxes(
      detections({
        73: [0.5, 0.5, Math.log(2), Math.log(3), 0.9, 0.8],
        // The same box from the next cell (dx -0.5): IoU 1, weaker: suppressed.
        74: [-0.5, 0.5, Math.log(2), Math.log(3), 0.5, 0.8],
        // A box of the stride-8 grid elsewhere, scoring 0.35: kept.
        0: [0.5, 0.5, 0, 0, 0.7, 0.5],
        // One scoring 0.2: considered by NMS (> 0.1) but not a person (<= 0.3).
        63: [0.5, 0.5, 0, 0, 0.4, 0.5],
      }),
      { width: 64, height: 64 },
      1,
    );
    expect(found.map((b) => [b.x1, b.y1, b.score].map((v) => Number(v.toFixed(4))))).toEqual([
      [8, 16, 0.72],
      [0, 0, 0.35],
    ]);
  });

  it("counts areas and overlaps with DWPose's +1 (pixel-inclusive boxes)", () => {
    // Boxes 0..9 and 5..14 (10 x 10 each with +1): overlap 5 x 10 = 50, union 150, IoU 1/3: both kept at 0.45, one at 0.3.
    const a = { x1: 0, y1: 0, x2: 9, y2: 9, score: 0.9 };
    const b = { x1: 5, y1: 0, x2: 14, y2: 9, score: 0.8 };
    expect(nms([b, a], 0.45)).toEqual([a, b]);
    expect(nms([b, a], 0.3)).toEqual([a]);
  });

  it("refuses an output of the wrong size for the input", () => {
    expect(() => personBoxes({ data: new Float32Array(85 * 10), anchors: 10, values: 85 }, { width: 640, height: 640 }, 1)).toThrow(/gives 8400 rows/);
  });
});

describe("RTMPose's crop and SimCC decoding", () => {
  it("pads the box by 1.25 and widens or heightens it to the model's 288 / 384", () => {
    expect(cropGeometry({ x1: 0, y1: 0, x2: 100, y2: 100, score: 1 }, { width: 288, height: 384 })).toEqual({ centre: { x: 50, y: 50 }, scale: { width: 125, height: 125 / 0.75 } });
    expect(cropGeometry({ x1: 10, y1: 20, x2: 30, y2: 220, score: 1 }, { width: 288, height: 384 })).toEqual({ centre: { x: 20, y: 120 }, scale: { width: 250 * 0.75, height: 250 } });
  });

  it("warps the box's region to the input by the centre-and-scale affine, bilinear, black outside, mean/std normalised", () => {
    // Box 0..8 -> scale 10 x 10 for a 4 x 4 input: k = 0.4, crop pixel u samples x = (u - 2) / 0.4 + 4 = -1, 1.5, 4, 6.5.
    const picture = rgb(8, 8, (x) => [20 * x, 100, 0]);
    const crop = poseCrop(picture, { x1: 0, y1: 0, x2: 8, y2: 8, score: 1 }, { width: 4, height: 4 });
    expect(crop.centre).toEqual({ x: 4, y: 4 });
    const red = (v: number) => Array.from(crop.data.slice(v * 4, v * 4 + 4)).map((n) => Math.round(n * POSE_STD[0] + POSE_MEAN[0]) + 0);
    expect(red(2)).toEqual([0, 30, 80, 130]);
    // Row 0 samples y = -1: outside, black.
    expect(red(0)).toEqual([0, 0, 0, 0]);
    const green = Array.from(crop.data.slice(16 + 8, 16 + 12)).map((n) => Math.round(n * POSE_STD[1] + POSE_MEAN[1]) + 0);
    expect(green).toEqual([0, 100, 100, 100]);
  });

  it("takes each keypoint's argmax in x and y, scores it by the smaller maximum, halves the bins and maps back through the crop", () => {
    const x = new Float32Array(2 * 8).fill(-0.5);
    const y = new Float32Array(2 * 8).fill(-0.5);
    x[3] = 0.9;
    y[5] = 0.6;
    x[8 + 1] = -0.1;
    const [k0, k1] = decodeSimcc({ x, y, keypoints: 2, binsX: 8, binsY: 8 }, { width: 4, height: 4 }, { x: 50, y: 60 }, { width: 40, height: 40 }) as [Keypoint, Keypoint];
    // Bins (3, 5) / 2 = (1.5, 2.5) of a 4 x 4 input: 1.5 / 4 x 40 + 50 - 20 = 45, 2.5 / 4 x 40 + 60 - 20 = 65.
    expect(k0).toEqual({ x: 45, y: 65, score: expect.closeTo(0.6, 6) });
    // A keypoint scoring <= 0 is put at -1 before the mapping back.
    expect(k1).toEqual({ x: -1 / 4 * 40 + 30, y: -1 / 4 * 40 + 40, score: -0.5 });
  });
});

describe("the OpenPose body of a whole-body pose", () => {
  const wholebody = (edit: (k: Keypoint[]) => void) => {
    const k = Array.from({ length: 133 }, (_, i) => ({ x: i, y: 1000 + i, score: 0.9 }));
    edit(k);
    return k;
  };

  it("puts the neck at the shoulders' mean, scored 1, and reorders COCO's points into OpenPose's", () => {
    const body = openposeBody(wholebody((k) => {
      k[5] = { x: 10, y: 20, score: 0.9 };
      k[6] = { x: 30, y: 40, score: 0.8 };
    }));
    expect(body).toHaveLength(18);
    expect(body[1]).toEqual({ x: 20, y: 30, score: 1 });
    // OpenPose: nose, neck, right shoulder/elbow/wrist (COCO 6, 8, 10), left (5, 7, 9), right hip/knee/ankle (12, 14, 16), left (11, 13, 15), eyes (2, 1), ears (4, 3).
    expect(body.map((p, i) => (i === 1 ? "neck" : p!.x))).toEqual([0, "neck", 30, 8, 10, 10, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]);
  });

  it("leaves out points scoring under 0.3, and the neck unless both shoulders score above 0.3", () => {
    const body = openposeBody(wholebody((k) => {
      k[0]!.score = 0.29;
      k[5]!.score = 0.3;
    }));
    expect(body[0]).toBeNull();
    // The left shoulder at exactly 0.3 is drawn (>= 0.3), but the neck needs both above 0.3.
    expect(body[5]).toMatchObject({ score: 0.3 });
    expect(body[1]).toBeNull();
  });
});

describe("the OpenPose drawing", () => {
  const empty = (): Pixels => ({ width: 80, height: 100, channels: 3, data: new Uint8Array(80 * 100 * 3) });
  const body = (points: Record<number, [number, number]>) => Array.from({ length: 18 }, (_, i) => (points[i] ? { x: points[i]![0], y: points[i]![1], score: 1 } : null));

  it("draws a limb as an ellipse stick width 4 wide in 0.6 of its colour, and the joints in theirs, radius 4, on black", () => {
    const canvas = empty();
    // Limb 0 (neck -> right shoulder) is OpenPose's red: 0.6 x 255 = 153.
    drawBody(canvas, body({ 1: [20, 50], 2: [60, 50] }));
    expect(at(canvas, 40, 50)).toEqual([153, 0, 0]);
    expect(at(canvas, 40, 54)).toEqual([153, 0, 0]);
    expect(at(canvas, 40, 55)).toEqual([0, 0, 0]);
    // The joints over the limb: the neck orange (255, 85, 0), the right shoulder (255, 170, 0), radius 4.
    expect(at(canvas, 20, 50)).toEqual([255, 85, 0]);
    expect(at(canvas, 24, 50)).toEqual([255, 85, 0]);
    expect(at(canvas, 60, 46)).toEqual([255, 170, 0]);
    expect(at(canvas, 25, 50)).toEqual([153, 0, 0]);
    expect(at(canvas, 20, 60)).toEqual([0, 0, 0]);
  });

  it("turns a limb along its direction and draws only limbs with both ends", () => {
    const canvas = empty();
    // Limb 6 (neck -> right hip, 1 -> 8) straight down: colour (0, 255, 0) x 0.6; limb 12 (neck -> nose) across: (0, 0, 255) x 0.6.
    drawBody(canvas, body({ 1: [40, 10], 8: [40, 90], 0: [70, 10] }));
    expect(at(canvas, 40, 50)).toEqual([0, 153, 0]);
    expect(at(canvas, 44, 50)).toEqual([0, 153, 0]);
    expect(at(canvas, 45, 50)).toEqual([0, 0, 0]);
    expect(at(canvas, 55, 10)).toEqual([0, 0, 153]);
    expect(at(canvas, 70, 10)).toEqual([255, 0, 0]);
    // No limb without both ends: the right elbow (3) has none, so nothing from the right shoulder's side.
    expect(at(canvas, 20, 50)).toEqual([0, 0, 0]);
  });

  it("draws a picture's points at the generation size, scaled to it", () => {
    const map = drawPoseMap([body({ 0: [100, 50] })], { width: 200, height: 100 }, { width: 64, height: 32 });
    expect([map.width, map.height, map.channels]).toEqual([64, 32, 3]);
    expect(at(map, 32, 16)).toEqual([255, 0, 0]);
    expect(at(map, 0, 0)).toEqual([0, 0, 0]);
  });
});

describe("which layers are pose maps already", () => {
  it("takes OpenPose drawings (mostly black, saturated colour) and black for pose maps, pictures not", () => {
    const map = drawPoseMap([openposeBody(Array.from({ length: 133 }, (_, i) => ({ x: 20 + (i % 7) * 8, y: 10 + (i % 11) * 7, score: 0.9 })))], { width: 100, height: 100 }, { width: 100, height: 100 });
    expect(isPoseMapLayer(map)).toBe(true);
    expect(isPoseMapLayer({ width: 4, height: 4, channels: 3, data: new Uint8Array(48) })).toBe(true);
    const gradient: Pixels = { width: 16, height: 16, channels: 3, data: new Uint8Array(16 * 16 * 3).map((_, i) => (i * 7) % 256) };
    expect(isPoseMapLayer(gradient)).toBe(false);
    // A dim photo-like picture: skin tones and greys on a dark ground are not OpenPose's colours.
    const dim: Pixels = { width: 10, height: 10, channels: 3, data: new Uint8Array(300).map((_, i) => (Math.floor(i / 3) < 60 ? 5 : [200, 150, 120][i % 3]!)) };
    expect(isPoseMapLayer(dim)).toBe(false);
    expect(isPoseMapLayer({ width: 2, height: 2, channels: 1, data: new Uint8Array(4) })).toBe(false);
  });
});
