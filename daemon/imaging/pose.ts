/**
 * An OpenPose map found in a picture by a pose estimator (DWPose: a YOLOX person detector and an
 * RTMPose whole-body model), for pose ControlNets, as comfyui_controlnet_aux's DWPose preprocessor
 * makes it from its ONNX files (its wholebody.py and dw_onnx/, DWPose's onnxdet.py / onnxpose.py):
 *
 *   0. the picture at its own size (ComfyUI's annotator detects at the input's resolution:
 *      resize_image_with_pad(image, 0) leaves it as it is), transparency flattened onto white (HWC3);
 *   1. the picture letterboxed into the detector's 640 x 640: scaled by r = min(640 / h, 640 / w) to
 *      int(w r) x int(h r) (bilinear, cv2's INTER_LINEAR: half-pixel centres), placed top-left on a
 *      ground of 114, channels first, 0..255 with no normalisation, in the picture's RGB order (ComfyUI
 *      hands the annotator RGB; huggingface controlnet_aux's mmpose variant converts to BGR first);
 *   2. the detector's rows decoded: anchors of the grids of strides 8, 16, 32 (row-major, finest first),
 *      centre = (dx + gx, dy + gy) x stride, size = exp(log w, log h) x stride, score = objectness x
 *      class score (both already through a sigmoid in the export), boxes scaled back by 1 / r; NMS
 *      per class at IoU 0.45 over scores above 0.1 (areas counted with DWPose's +1), then the people
 *      (class 0) scoring above 0.3; none: an empty (black) pose map, as ComfyUI's annotator gives;
 *   3. each person cropped for RTMPose: centre and size of the box, the size x 1.25, widened or
 *      heightened to the model's aspect (288 / 384), mapped by the affine (no rotation) that takes
 *      the centre to the crop's centre and the size to the crop's (cv2.warpAffine, bilinear, black
 *      outside), normalised by mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375);
 *   4. SimCC decoded: per keypoint the argmax over the x and y bins, its score the smaller of the two
 *      maxima (a score <= 0 puts the point at -1), bins / 2 (the split ratio), mapped back through
 *      the crop (point / input size x size + centre - size / 2);
 *   5. the 133 COCO-WholeBody keypoints turned into OpenPose's 18 body points (the neck the mean of
 *      the shoulders, scored 1 when both shoulders score above 0.3 and 0 otherwise), points scoring
 *      under 0.3 left out; hands, feet and face are not drawn (ComfyUI's default body-only map);
 *   6. drawn on black at the generation size (the points scaled to it): per person, the 17 limbs as
 *      filled ellipses (half the limb's length by the stick width 4, turned along the limb) in 0.6 of
 *      their colour, then the 18 joints as filled circles of radius 4 in their colour.
 *
 * Differences from the annotator, on purpose or unavoidable: the map is drawn at the generation
 * size rather than drawn at the picture's and resized (strokes keep their 4 px at the size the
 * ControlNet sees); ellipses and circles are rasterised by pixel centres, not by OpenCV's polygon
 * and circle code (edges may differ by a pixel); bilinear sampling is in floating point, where
 * OpenCV uses fixed-point weights (values may differ by 1 level); NMS ties are broken by anchor order.
 */
import type { Pixels, Size } from "../../geometry";
import { ImagingError } from "./errors";
import { assertImage, assertSize } from "./image";
import { rgbAt } from "./resample";

/** YOLOX's strides (its grids: 80², 40², 20² anchors at 640). */
export const DETECTOR_STRIDES = [8, 16, 32] as const;
/** The letterbox's ground. */
export const LETTERBOX_PAD = 114;
export const NMS_IOU = 0.45;
/** Scores NMS considers, and the people kept after it. */
export const DETECTION_SCORE = 0.1;
export const PERSON_SCORE = 0.3;
/** RTMPose's box padding and normalisation. */
export const BOX_PADDING = 1.25;
export const POSE_MEAN = [123.675, 116.28, 103.53] as const;
export const POSE_STD = [58.395, 57.12, 57.375] as const;
/** Keypoints scoring under this are not drawn (and the neck needs both shoulders above it). */
export const KEYPOINT_SCORE = 0.3;
export const STICK_WIDTH = 4;
export const JOINT_RADIUS = 4;
/** The share of its colour a limb is drawn in. */
export const LIMB_SHADE = 0.6;

/** OpenPose's 17 limbs between its 18 body points (0-based: nose, neck, right shoulder, ...). */
export const LIMBS: readonly (readonly [number, number])[] = [
  [1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10],
  [1, 11], [11, 12], [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17],
];

/** OpenPose's colours, RGB: limb i and joint i take colour i. */
export const OPENPOSE_COLOURS: readonly (readonly [number, number, number])[] = [
  [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
  [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
  [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
];

/** The COCO-WholeBody keypoint behind each OpenPose body point (NECK: the shoulders' mean). */
export const NECK = -1;
export const OPENPOSE_FROM_WHOLEBODY = [0, NECK, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3] as const;
const LEFT_SHOULDER = 5;
const RIGHT_SHOULDER = 6;

/** A box in picture pixels, and its score. */
export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
}

export interface Keypoint {
  x: number;
  y: number;
  score: number;
}

/** The detector's output: `anchors` rows of `values` (4 box values, objectness, class scores). */
export interface Detections {
  data: Float32Array;
  anchors: number;
  values: number;
}

/** One person's SimCC: [keypoints, binsX] and [keypoints, binsY]. */
export interface Simcc {
  x: Float32Array;
  y: Float32Array;
  keypoints: number;
  binsX: number;
  binsY: number;
}

/** The pose estimator, run on prepared inputs: the detector on one letterbox, the pose model on each crop. */
export interface PoseRunner {
  /** The detector's input (640 x 640). */
  readonly detectorInput: Size;
  /** The pose model's input (288 x 384). */
  readonly poseInput: Size;
  detect(letterbox: Float32Array): Promise<Detections>;
  estimate(crops: readonly Float32Array[]): Promise<Simcc[]>;
}

/** An RGB picture (3 channels, row-major) and its size. */
interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Bilinear sample of channel c at (x, y) in pixel-index coordinates; outside the picture: `outside`, or the edge when null. */
function sample(img: Rgb, x: number, y: number, c: number, outside: number | null): number {
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const fx = x - x0;
  const fy = y - y0;
  const at = (xi: number, yi: number) => {
    if (xi < 0 || yi < 0 || xi >= img.width || yi >= img.height) {
      if (outside !== null) return outside;
      xi = Math.min(img.width - 1, Math.max(0, xi));
      yi = Math.min(img.height - 1, Math.max(0, yi));
    }
    return img.data[3 * (yi * img.width + xi) + c]!;
  };
  const top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx;
  const bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx;
  return top * (1 - fy) + bottom * fy;
}

/** The letterbox's scale and the size the picture takes in it (DWPose's preprocess). */
export function letterboxGeometry(picture: Size, input: Size): { ratio: number; width: number; height: number } {
  const ratio = Math.min(input.height / picture.height, input.width / picture.width);
  return { ratio, width: Math.floor(picture.width * ratio), height: Math.floor(picture.height * ratio) };
}

/** The detector's input: the picture scaled into `input` top-left on 114, [3, height, width], 0..255. */
export function letterbox(img: Rgb, input: Size): { data: Float32Array; ratio: number } {
  const { ratio, width, height } = letterboxGeometry(img, input);
  const plane = input.width * input.height;
  const out = new Float32Array(3 * plane).fill(LETTERBOX_PAD);
  // cv2.resize to (width, height): half-pixel centres, edges clamped.
  const sx = img.width / width;
  const sy = img.height / height;
  for (let y = 0; y < height; y++) {
    const srcY = (y + 0.5) * sy - 0.5;
    for (let x = 0; x < width; x++) {
      const srcX = (x + 0.5) * sx - 0.5;
      for (let c = 0; c < 3; c++) out[c * plane + y * input.width + x] = Math.round(sample(img, Math.max(0, srcX), Math.max(0, srcY), c, null));
    }
  }
  return { data: out, ratio };
}

/** Single-class NMS as DWPose's: highest score first, dropping boxes overlapping a kept one by more than `iou` (areas with +1). */
export function nms(boxes: readonly Box[], iou: number): Box[] {
  const order = boxes.map((b, i) => ({ b, i })).sort((p, q) => q.b.score - p.b.score || p.i - q.i);
  const area = (b: Box) => (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1);
  const kept: Box[] = [];
  for (const { b } of order) {
    const overlaps = kept.some((k) => {
      const w = Math.max(0, Math.min(k.x2, b.x2) - Math.max(k.x1, b.x1) + 1);
      const h = Math.max(0, Math.min(k.y2, b.y2) - Math.max(k.y1, b.y1) + 1);
      const inter = w * h;
      return inter / (area(k) + area(b) - inter) > iou;
    });
    if (!overlaps) kept.push(b);
  }
  return kept;
}

/** The people the detector found, in picture pixels (`ratio`: the letterbox's), best first. */
export function personBoxes(det: Detections, input: Size, ratio: number): Box[] {
  const grids = DETECTOR_STRIDES.map((stride) => ({ stride, w: Math.floor(input.width / stride), h: Math.floor(input.height / stride) }));
  const expected = grids.reduce((n, g) => n + g.w * g.h, 0);
  if (det.anchors !== expected || det.values < 6 || det.data.length !== det.anchors * det.values) {
    throw new ImagingError("invalid_argument", `The person detector gave ${det.anchors} rows of ${det.values} values; a ${input.width}x${input.height} YOLOX gives ${expected} rows of 4 + 1 + classes.`);
  }
  const candidates: Box[] = [];
  let row = 0;
  for (const g of grids) {
    for (let gy = 0; gy < g.h; gy++) {
      for (let gx = 0; gx < g.w; gx++, row++) {
        const o = row * det.values;
        // Only class 0 (person) is kept after the per-class NMS, so only its scores are looked at.
        const score = det.data[o + 4]! * det.data[o + 5]!;
        if (!(score > DETECTION_SCORE)) continue;
        const cx = (det.data[o]! + gx) * g.stride;
        const cy = (det.data[o + 1]! + gy) * g.stride;
        const w = Math.exp(det.data[o + 2]!) * g.stride;
        const h = Math.exp(det.data[o + 3]!) * g.stride;
        candidates.push({ x1: (cx - w / 2) / ratio, y1: (cy - h / 2) / ratio, x2: (cx + w / 2) / ratio, y2: (cy + h / 2) / ratio, score });
      }
    }
  }
  return nms(candidates, NMS_IOU).filter((b) => b.score > PERSON_SCORE);
}

/** RTMPose's crop of a box: its centre, and its size padded by 1.25 and fixed to the input's aspect. */
export function cropGeometry(box: Box, input: Size): { centre: { x: number; y: number }; scale: { width: number; height: number } } {
  const centre = { x: (box.x1 + box.x2) / 2, y: (box.y1 + box.y2) / 2 };
  const w = (box.x2 - box.x1) * BOX_PADDING;
  const h = (box.y2 - box.y1) * BOX_PADDING;
  const aspect = input.width / input.height;
  const scale = w > h * aspect ? { width: w, height: w / aspect } : { width: h * aspect, height: h };
  return { centre, scale };
}

/** The pose model's input for one box: the crop warped to `input`, normalised, [3, height, width]. */
export function poseCrop(img: Rgb, box: Box, input: Size): { data: Float32Array; centre: { x: number; y: number }; scale: { width: number; height: number } } {
  const { centre, scale } = cropGeometry(box, input);
  // The affine takes the centre to the crop's centre and scale.width to input.width (the aspect is fixed, so one factor).
  const k = input.width / scale.width;
  const plane = input.width * input.height;
  const out = new Float32Array(3 * plane);
  for (let v = 0; v < input.height; v++) {
    const y = (v - input.height / 2) / k + centre.y;
    for (let u = 0; u < input.width; u++) {
      const x = (u - input.width / 2) / k + centre.x;
      for (let c = 0; c < 3; c++) {
        const value = Math.round(sample(img, x, y, c, 0));
        out[c * plane + v * input.width + u] = (value - POSE_MEAN[c]!) / POSE_STD[c]!;
      }
    }
  }
  return { data: out, centre, scale };
}

/** The keypoints of one person's SimCC, in picture pixels. */
export function decodeSimcc(simcc: Simcc, input: Size, centre: { x: number; y: number }, scale: { width: number; height: number }): Keypoint[] {
  const { keypoints, binsX, binsY } = simcc;
  if (simcc.x.length !== keypoints * binsX || simcc.y.length !== keypoints * binsY) {
    throw new ImagingError("invalid_argument", `The pose model gave ${simcc.x.length} and ${simcc.y.length} SimCC values for ${keypoints} keypoints of ${binsX} and ${binsY} bins.`);
  }
  const split = binsX / input.width;
  const argmax = (data: Float32Array, from: number, bins: number) => {
    let best = 0;
    for (let i = 1; i < bins; i++) if (data[from + i]! > data[from + best]!) best = i;
    return { at: best, value: data[from + best]! };
  };
  const out: Keypoint[] = [];
  for (let k = 0; k < keypoints; k++) {
    const mx = argmax(simcc.x, k * binsX, binsX);
    const my = argmax(simcc.y, k * binsY, binsY);
    const score = Math.min(mx.value, my.value);
    const [lx, ly] = score <= 0 ? [-1, -1] : [mx.at / split, my.at / split];
    out.push({ x: (lx / input.width) * scale.width + centre.x - scale.width / 2, y: (ly / input.height) * scale.height + centre.y - scale.height / 2, score });
  }
  return out;
}

/** OpenPose's 18 body points of a whole-body pose (133 keypoints); null where a point scores under 0.3. */
export function openposeBody(wholebody: readonly Keypoint[]): (Keypoint | null)[] {
  if (wholebody.length < 17) throw new ImagingError("invalid_argument", `A whole-body pose has 133 keypoints (COCO's 17 body points first), not ${wholebody.length}.`);
  const left = wholebody[LEFT_SHOULDER]!;
  const right = wholebody[RIGHT_SHOULDER]!;
  const neck: Keypoint = { x: (left.x + right.x) / 2, y: (left.y + right.y) / 2, score: left.score > KEYPOINT_SCORE && right.score > KEYPOINT_SCORE ? 1 : 0 };
  return OPENPOSE_FROM_WHOLEBODY.map((i) => {
    const p = i === NECK ? neck : wholebody[i]!;
    return p.score >= KEYPOINT_SCORE ? p : null;
  });
}

function fill(canvas: Pixels, colour: readonly [number, number, number], box: { x0: number; y0: number; x1: number; y1: number }, inside: (x: number, y: number) => boolean): void {
  const { width, height, data } = canvas;
  for (let y = Math.max(0, Math.floor(box.y0)); y <= Math.min(height - 1, Math.ceil(box.y1)); y++) {
    for (let x = Math.max(0, Math.floor(box.x0)); x <= Math.min(width - 1, Math.ceil(box.x1)); x++) {
      if (inside(x, y)) data.set(colour, 3 * (y * width + x));
    }
  }
}

/** Draws one person's body points (in the canvas' pixels) as OpenPose does: limbs, then joints. */
export function drawBody(canvas: Pixels, body: readonly (Keypoint | null)[]): void {
  LIMBS.forEach(([a, b], i) => {
    const p = body[a];
    const q = body[b];
    if (!p || !q) return;
    // OpenPose's integers: the centre and half-length truncated, the angle in whole degrees.
    const cx = Math.trunc((p.x + q.x) / 2);
    const cy = Math.trunc((p.y + q.y) / 2);
    const half = Math.max(0.5, Math.trunc(Math.hypot(p.x - q.x, p.y - q.y) / 2));
    const theta = (Math.trunc((Math.atan2(p.y - q.y, p.x - q.x) * 180) / Math.PI) * Math.PI) / 180;
    const [cos, sin] = [Math.cos(theta), Math.sin(theta)];
    const colour = OPENPOSE_COLOURS[i]!.map((c) => Math.trunc(c * LIMB_SHADE)) as [number, number, number];
    const reach = half + STICK_WIDTH;
    fill(canvas, colour, { x0: cx - reach, y0: cy - reach, x1: cx + reach, y1: cy + reach }, (x, y) => {
      const along = (x - cx) * cos + (y - cy) * sin;
      const across = -(x - cx) * sin + (y - cy) * cos;
      return (along / half) ** 2 + (across / STICK_WIDTH) ** 2 <= 1;
    });
  });
  body.forEach((p, i) => {
    if (!p) return;
    const x = Math.trunc(p.x);
    const y = Math.trunc(p.y);
    const r = JOINT_RADIUS;
    fill(canvas, OPENPOSE_COLOURS[i]!, { x0: x - r, y0: y - r, x1: x + r, y1: y + r }, (px, py) => (px - x) ** 2 + (py - y) ** 2 <= r * r);
  });
}

/** The pose map of the bodies (in a picture of `picture`'s size) drawn at `size`: RGB on black. */
export function drawPoseMap(bodies: readonly (readonly (Keypoint | null)[])[], picture: Size, size: Size): Pixels {
  const canvas: Pixels = { width: size.width, height: size.height, channels: 3, data: new Uint8Array(size.width * size.height * 3) };
  const fx = size.width / picture.width;
  const fy = size.height / picture.height;
  for (const body of bodies) drawBody(canvas, body.map((p) => (p ? { ...p, x: p.x * fx, y: p.y * fy } : null)));
  return canvas;
}

/** The OpenPose body points of everyone the estimator finds in `layer` (in its pixels). */
export async function findBodies(runner: PoseRunner, layer: Pixels): Promise<(Keypoint | null)[][]> {
  assertImage(layer);
  const img: Rgb = { data: await rgbAt(layer, layer), width: layer.width, height: layer.height };
  const boxed = letterbox(img, runner.detectorInput);
  const people = personBoxes(await runner.detect(boxed.data), runner.detectorInput, boxed.ratio);
  if (!people.length) return [];
  const crops = people.map((box) => poseCrop(img, box, runner.poseInput));
  const simcc = await runner.estimate(crops.map((c) => c.data));
  if (simcc.length !== crops.length) throw new ImagingError("invalid_argument", `The pose model gave ${simcc.length} poses for ${crops.length} people.`);
  return simcc.map((s, i) => openposeBody(decodeSimcc(s, runner.poseInput, crops[i]!.centre, crops[i]!.scale)));
}

/** The pose map of `layer` at `size`: OpenPose's body skeletons on black, RGB. */
export async function estimatePose(runner: PoseRunner, layer: Pixels, size: Size): Promise<Pixels> {
  assertSize(size, "target size");
  return drawPoseMap(await findBodies(runner, layer), layer, size);
}

/**
 * Whether a layer is a pose map already, not a picture to find poses in: mostly black (at least
 * half its pixels have no channel above 24: a skeleton covers little of a map), and what is not
 * black is mostly saturated colour (at least 80 % of it has its smallest channel at most a quarter
 * of its largest: OpenPose's colours, even shaded or blended with the black ground, have a zero
 * channel; the white face points and pictures' greys and skin tones do not). An all-black layer
 * is an (empty) pose map. A very dark photo of saturated lights could pass for one.
 */
export function isPoseMapLayer(layer: Pixels): boolean {
  if (layer.channels === 1) return false;
  const { data, channels } = layer;
  const pixels = data.length / channels;
  let dark = 0;
  let saturated = 0;
  for (let i = 0; i < data.length; i += channels) {
    const r = data[i]!;
    const g = data[i + 1]!;
    const b = data[i + 2]!;
    const max = Math.max(r, g, b);
    if (max <= 24) dark++;
    else if (Math.min(r, g, b) * 4 <= max) saturated++;
  }
  const lit = pixels - dark;
  return dark >= pixels / 2 && saturated >= 0.8 * lit;
}
