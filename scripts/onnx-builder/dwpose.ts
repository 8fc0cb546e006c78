/**
 * DWPose as yzd-v/DWPose publishes it for ControlNet preprocessors (comfyui_controlnet_aux,
 * controlnet_aux, DWPose's own ControlNet-v1-1-nightly annotator): two ONNX files side by side,
 *
 *   yolox_l.onnx          the person detector (YOLOX-L): `images` float32 [1, 3, 640, 640] (a letterboxed
 *                         picture, 0..255, no normalisation) -> `output` float32 [1, 8400, 85]: per anchor
 *                         of the 80x80, 40x40 and 20x20 grids (strides 8, 16, 32) the raw box regression
 *                         (dx, dy, log w, log h in grid cells), the objectness and 80 COCO class scores,
 *                         those two already through a sigmoid (YOLOX's head in export mode);
 *   dw-ll_ucoco_384.onnx  the whole-body pose model (RTMPose-l distilled, 133 COCO-WholeBody keypoints):
 *                         `input` float32 [1, 3, 384, 288] (a person's crop, mean/std normalised) ->
 *                         `simcc_x` float32 [1, 133, 576] and `simcc_y` float32 [1, 133, 768] (SimCC
 *                         classification over x and y at split ratio 2: two bins a pixel).
 *
 * The graphs here are I/O-faithful stand-ins with tiny random convolutions, not the networks: the
 * tensor shapes and dtypes are those the annotators' code reads (its shapes, strides and split ratio
 * were read in DWPose's onnxdet.py / onnxpose.py and comfyui_controlnet_aux's wholebody.py), while the
 * input and output NAMES were not read from the published files: `images`/`output` are YOLOX's
 * export_onnx.py defaults and `input`/`simcc_x`/`simcc_y` mmdeploy's SimCC names, as far as known here
 * (the annotators read inputs()[0] and the outputs in order, and so does Underpaint's loader).
 *
 * So that a replica finds someone, the detector's 20x20 head has a bias on one anchor (PERSON_ANCHOR):
 * a confident person box of PERSON_BOX_CELLS grid cells near the middle of the letterbox, its
 * regression still moved a little by the picture (random weights); every other anchor's objectness
 * is biased far below the thresholds. The pose model's SimCC maxima come from random weights over
 * the crop plus a constant, so each keypoint lands somewhere picture-dependent with a score above
 * 0.3 (every body keypoint is drawn). Not replicated: the trained weights, the networks' structure
 * (CSPDarknet + PAFPN, CSPNeXt + RTMCC head) and their sizes (about 217 MB and 134 MB, not verified).
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { Graph, FLOAT, type GraphCounts, type Value } from "./graph";

export const DETECTOR_FILE = "yolox_l.onnx";
export const POSE_FILE = "dw-ll_ucoco_384.onnx";
/** YOLOX's strides, and its 640 x 640 input (80² + 40² + 20² = 8400 anchors). */
export const YOLOX_STRIDES = [8, 16, 32] as const;
export const YOLOX_INPUT = 640;
/** 4 box values, the objectness, 80 COCO classes. */
export const YOLOX_VALUES = 85;
/** RTMPose's input (width 288, height 384), 133 keypoints, SimCC split ratio 2. */
export const RTMPOSE_INPUT = { width: 288, height: 384 } as const;
export const WHOLEBODY_KEYPOINTS = 133;
export const SIMCC_SPLIT = 2;

/** The 20x20 (stride 32) anchor the replica's detector finds a person at, and the box's size in cells. */
export const PERSON_ANCHOR = { x: 9, y: 7 } as const;
export const PERSON_BOX_CELLS = { width: 6, height: 9 } as const;

/** A conv with a given per-channel bias (the replica's biased head) or a zero one. */
function conv(g: Graph, x: Value, name: string, cin: number, cout: number, k: number, stride: number, std: number, bias?: Float32Array): Value {
  return g.scope(name, () => {
    const w = g.weight("weight", [cout, cin, k, k], std);
    const b = bias ? g.constFloat(bias, [cout]) : g.fixedWeight("bias", [cout], 0);
    const [n, , h, wd] = x.shape as [number, number, number, number];
    const pad = Math.floor((k - 1) / 2);
    const oh = Math.floor((h + 2 * pad - k) / stride) + 1;
    const ow = Math.floor((wd + 2 * pad - k) / stride) + 1;
    return g.node("Conv", [x, w, b], { kernel_shape: [k, k], pads: [pad, pad, pad, pad], strides: [stride, stride], dilations: [1, 1], group: 1 }, [n, cout, oh, ow]);
  });
}

function logit(p: number): number {
  return Math.log(p / (1 - p));
}

/**
 * The person detector's stand-in: a stride-8 patch conv (16 channels), stride-2 convs down to the
 * 40x40 and 20x20 levels, a 1x1 head of 85 values per level; flattened level by level (80x80 first,
 * each row-major, as YOLOX's decoder reads them), transposed to [1, 8400, 85], sigmoid on values 4..84.
 */
export function yoloxDetector(): Graph {
  const g = new Graph("yolox_l");
  const input = g.input("images", FLOAT, [1, 3, YOLOX_INPUT, YOLOX_INPUT], [1, 3, YOLOX_INPUT, YOLOX_INPUT]);
  const c = 16;
  // The input is 0..255: weights scaled so that features stay O(1).
  const stem = g.node("Relu", [conv(g, input, "backbone.stem", 3, c, 8, 8, 1 / (128 * Math.sqrt(3 * 64)))], {}, [1, c, 80, 80]);
  const p4 = g.node("Relu", [conv(g, stem, "backbone.dark4", c, c, 2, 2, 1 / Math.sqrt(c * 4))], {}, [1, c, 40, 40]);
  const p5 = g.node("Relu", [conv(g, p4, "backbone.dark5", c, c, 2, 2, 1 / Math.sqrt(c * 4))], {}, [1, c, 20, 20]);
  // Every anchor's objectness far below the 0.1 / 0.3 score thresholds...
  const quiet = new Float32Array(YOLOX_VALUES);
  quiet[4] = logit(0.001);
  const levels = [stem, p4, p5].map((feature, i) => {
    const side = YOLOX_INPUT / YOLOX_STRIDES[i]!;
    let head = conv(g, feature, `head.preds.${i}`, c, YOLOX_VALUES, 1, 1, 0.1 / Math.sqrt(c), quiet);
    if (i === 2) {
      // ...but one anchor of the 20x20 level: a confident person of PERSON_BOX_CELLS cells, centred half a cell in.
      const onehot = new Float32Array(side * side);
      onehot[PERSON_ANCHOR.y * side + PERSON_ANCHOR.x] = 1;
      const person = new Float32Array(YOLOX_VALUES).fill(logit(0.001));
      person[0] = 0.5;
      person[1] = 0.5;
      person[2] = Math.log(PERSON_BOX_CELLS.width);
      person[3] = Math.log(PERSON_BOX_CELLS.height);
      person[4] = logit(0.999) - logit(0.001);
      person[5] = logit(0.999);
      const bias = g.node("Mul", [g.constFloat(onehot, [1, 1, side, side]), g.constFloat(person, [1, YOLOX_VALUES, 1, 1])], {}, [1, YOLOX_VALUES, side, side]);
      head = g.node("Add", [head, bias], {}, [1, YOLOX_VALUES, side, side]);
    }
    return g.node("Reshape", [head, g.constInt64([1, YOLOX_VALUES, side * side])], {}, [1, YOLOX_VALUES, side * side]);
  });
  const anchors = levels.reduce((n, l) => n + l.shape[2]!, 0);
  const all = g.node("Concat", levels, { axis: 2 }, [1, YOLOX_VALUES, anchors]);
  const rows = g.node("Transpose", [all], { perm: [0, 2, 1] }, [1, anchors, YOLOX_VALUES]);
  const slice = (from: number, to: number) => g.node("Slice", [rows, g.constInt64([from]), g.constInt64([to]), g.constInt64([2])], {}, [1, anchors, to - from]);
  const scores = g.node("Sigmoid", [slice(4, YOLOX_VALUES)], {}, [1, anchors, YOLOX_VALUES - 4]);
  const out = g.node("Concat", [slice(0, 4), scores], { axis: 2 }, [1, anchors, YOLOX_VALUES]);
  g.output(out, "output", [1, anchors, YOLOX_VALUES]);
  return g;
}

/**
 * The pose model's stand-in: an 8x8 patch conv (16 channels) and a 1x1 conv to 133 keypoint maps
 * [1, 133, 48, 36], averaged over the rows for x and the columns for y, each projected to its bins
 * (576 = 288 x 2, 768 = 384 x 2) and lifted by a constant so the maxima (the scores) exceed 0.3.
 */
export function rtmposeWholebody(): Graph {
  const g = new Graph("dw-ll_ucoco_384");
  const { width: w, height: h } = RTMPOSE_INPUT;
  const k = WHOLEBODY_KEYPOINTS;
  const input = g.input("input", FLOAT, [1, 3, h, w], [1, 3, h, w]);
  const c = 16;
  const [fh, fw] = [h / 8, w / 8];
  const patches = g.node("Relu", [conv(g, input, "backbone.stem", 3, c, 8, 8, 1 / Math.sqrt(3 * 64))], {}, [1, c, fh, fw]);
  const maps = conv(g, patches, "head.final_layer", c, k, 1, 1, 1 / Math.sqrt(c));
  const along = (axis: 2 | 3, from: number, bins: number, name: string) => {
    const mean = g.node("ReduceMean", [maps], { axes: [axis], keepdims: 0 }, [1, k, from]);
    const projected = g.scope(`head.${name}`, () => g.node("MatMul", [mean, g.weight("weight", [from, bins], 0.3 / Math.sqrt(from))], {}, [1, k, bins]));
    return g.node("Add", [projected, g.constFloat([0.8], [])], {}, [1, k, bins]);
  };
  const x = along(2, fw, w * SIMCC_SPLIT, "cls_x");
  const y = along(3, fh, h * SIMCC_SPLIT, "cls_y");
  g.output(x, "simcc_x", [1, k, w * SIMCC_SPLIT]);
  g.output(y, "simcc_y", [1, k, h * SIMCC_SPLIT]);
  return g;
}

/** Writes yolox_l.onnx and dw-ll_ucoco_384.onnx (weights inside) under `dir`. */
export async function writeDwposeFolder(dir: string): Promise<{ detector: GraphCounts; pose: GraphCounts }> {
  await mkdir(dir, { recursive: true });
  const detector = yoloxDetector();
  const pose = rtmposeWholebody();
  await detector.write(path.join(dir, DETECTOR_FILE));
  await pose.write(path.join(dir, POSE_FILE));
  return { detector: detector.counts(), pose: pose.counts() };
}
