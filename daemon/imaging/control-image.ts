/**
 * The control image a ControlNet reads, made from the layer the artist chose: canny edges found in
 * it, scribbles and line art as white lines on black, pose maps as they are or, when a pose
 * estimator is given and the layer is a picture (not mostly black with saturated colour: see
 * isPoseMapLayer), the OpenPose map of the people the estimator finds in it (pose.ts), depth maps as
 * they are or, when a depth estimator is given and the layer is a picture (it has colour: see isGreyLayer),
 * the depth the estimator finds in it (depth.ts; a grey layer is taken as a depth map already); at the
 * generation size, RGB in [0, 1], channels first ([3, height, width]), as diffusers'
 * prepare_image gives it (before the batch is repeated).
 */
import type { Pixels, Size } from "../../geometry";
import type { ControlKind } from "../../protocol";
import { cannyEdges } from "./canny";
import { estimateDepth, isGreyLayer, type DepthRunner } from "./depth";
import { estimatePose, isPoseMapLayer, type PoseRunner } from "./pose";
import { rgbAt } from "./resample";

/** The layer's grey values, lines made white on black: dark strokes on a light ground are inverted. */
function whiteLines(rgb: Uint8Array, plane: number, binary: boolean): Uint8Array {
  const grey = new Uint8Array(plane);
  let sum = 0;
  for (let i = 0; i < plane; i++) {
    const g = Math.round(0.299 * rgb[3 * i]! + 0.587 * rgb[3 * i + 1]! + 0.114 * rgb[3 * i + 2]!);
    grey[i] = g;
    sum += g;
  }
  // The ground is most of a drawing: a light mean means dark strokes, which ControlNets read inverted.
  const invert = sum / plane > 127.5;
  for (let i = 0; i < plane; i++) {
    const g = invert ? 255 - grey[i]! : grey[i]!;
    // Scribble ControlNets were trained on thresholded (binary) strokes; line art keeps its soft edges.
    grey[i] = binary ? (g > 127 ? 255 : 0) : g;
  }
  return grey;
}

export interface ControlImageOptions {
  /** Estimates depth maps from pictures for kind "depth" (an installed depth estimator). */
  depth?: DepthRunner | null;
  /** Finds pose maps in pictures for kind "pose" (an installed pose estimator). */
  pose?: PoseRunner | null;
}

/** Whether `kind`'s control image of `layer` is estimated by the depth estimator (when one is installed). */
function estimatesDepth(kind: ControlKind, layer: Pixels): boolean {
  return kind === "depth" && !isGreyLayer(layer);
}

/** Whether `kind`'s control image of `layer` is found by the pose estimator (when one is installed). */
function estimatesPose(kind: ControlKind, layer: Pixels): boolean {
  return kind === "pose" && !isPoseMapLayer(layer);
}

/** `kind`'s control image of `layer` at `size`: [3, height, width] in [0, 1]. */
export async function controlImage(kind: ControlKind, layer: Pixels, size: Size, options: ControlImageOptions = {}): Promise<Float32Array> {
  const plane = size.width * size.height;
  let grey: Uint8Array | null = null;
  if (options.depth && estimatesDepth(kind, layer)) grey = (await estimateDepth(options.depth, layer, size)).data;
  // An estimated map needs no RGB of the layer: a depth map is its grey, a pose map the RGB the ControlNet reads.
  const rgb = grey ? null : options.pose && estimatesPose(kind, layer) ? (await estimatePose(options.pose, layer, size)).data : await rgbAt(layer, size);
  if (rgb && kind === "canny") grey = cannyEdges({ ...size, channels: 3, data: rgb }).data;
  else if (rgb && (kind === "scribble" || kind === "lineart")) grey = whiteLines(rgb, plane, kind === "scribble");
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) out[c * plane + i] = (grey ? grey[i]! : rgb![3 * i + c]!) / 255;
  }
  return out;
}
