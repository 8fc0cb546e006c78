/**
 * Inpainting a selection and extending the canvas, for artists: the selection becomes a denoise
 * mask (grown, feathered) and a blend mask (shrunk, feathered, never outside the selection); the
 * model sees a context crop rescaled to its native resolution; its result is scaled back to the
 * exact crop, colour-matched at the edge and composited at full resolution, so every pixel where
 * the blend mask is 0 comes back bit-identical.
 */
import { ImagingError } from "../imaging/errors";
import { composite, layerPixels, matchColours } from "../imaging/composite";
import { contextRegion, cropAndResize, generationSize, resizeTo, type ContextMode } from "../imaging/context";
import { maskBounds, masksFor } from "../imaging/mask";
import { expandCanvas, type Expansion } from "../imaging/outpaint";
import { prefill, type PrefillMode } from "../imaging/prefill";
import { createImage, cropImage, pasteImage } from "../imaging/image";
import type { Bounds, Image8 } from "../imaging/types";
import { EngineError, type Raster } from "./engine";
import { to8Bit } from "./raster-input";

/** Sides longer than this per extension are refused: the model cannot invent that much at once. */
export const MAX_EXPANSION = 2048;

/** One masked edit, prepared: what the model runs on and how its output goes back. */
export interface MaskedEditPlan {
  /** The whole picture the result covers (the image, or the enlarged canvas), RGB. */
  canvas: Image8;
  /** Alpha of the original picture, kept as it was (null when it had none). */
  alpha: Uint8Array | null;
  /** What the artist selected (inpaint) or the new area (outpaint). */
  selection: Image8;
  /** 255 = the model may repaint. */
  denoise: Image8;
  /** How much of the generated picture shows, per pixel; 0 = the original, untouched. */
  blend: Image8;
  /** The context crop the model sees, in canvas pixels. */
  region: Bounds;
  /** The size the model runs at (multiples of 8). */
  size: { width: number; height: number };
  /** Model inputs at `size`: RGB and the denoise mask. */
  modelImage: Image8;
  modelMask: Image8;
  /** Where the old image sits in the canvas (outpaint), or the whole canvas. */
  original: Bounds;
}

function imageOf(raster: Raster): { rgb: Image8; alpha: Uint8Array | null } {
  const eight = to8Bit(raster);
  const { width, height, channels, data } = eight;
  if (channels === 3) return { rgb: { width, height, channels: 3, data }, alpha: null };
  const rgb = new Uint8Array(width * height * 3);
  const alpha = channels === 4 ? new Uint8Array(width * height) : null;
  for (let i = 0; i < width * height; i++) {
    if (channels === 1) {
      rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = data[i]!;
    } else {
      rgb[i * 3] = data[i * 4]!;
      rgb[i * 3 + 1] = data[i * 4 + 1]!;
      rgb[i * 3 + 2] = data[i * 4 + 2]!;
      alpha![i] = data[i * 4 + 3]!;
    }
  }
  return { rgb: { width, height, channels: 3, data: rgb }, alpha };
}

function maskOf(raster: Raster): Image8 {
  if (raster.channels !== 1) throw new EngineError("invalid_job", "The mask must have one channel (white = repaint, black = keep).");
  const eight = to8Bit(raster);
  return { width: eight.width, height: eight.height, channels: 1, data: eight.data };
}

/** Which pre-fill the model's input gets, per mode: only what the model must invent is filled. */
export function prefillFor(mode: "inpaint" | "outpaint", strength: number): PrefillMode {
  if (mode === "outpaint") return "propagate";
  // At strength 1 the selection's content is replaced; a blur of its surroundings keeps the colours
  // that the VAE sees near the edge plausible. Below 1 the artist wants their pixels as the start.
  return strength >= 1 ? "blur" : "none";
}

async function modelInputs(canvas: Image8, denoise: Image8, fill: Image8, region: Bounds, budget: number, nativeResolution: number, mode: PrefillMode) {
  // ONNX exports trace the UNet's upsampling at fixed factors: latents must halve cleanly three
  // times (SD 1.x/2.x), so the model runs at multiples of 64 px.
  const size = generationSize(region, nativeResolution, { maxPixels: budget, multiple: 64 });
  // Only the crop is filled: the fill depends on pixels near the hole, and documents are big.
  const crop = cropImage(canvas, region);
  const filled = mode === "none" ? crop : prefill(crop, cropImage(fill, region), mode);
  const modelImage = await resizeTo(filled, size);
  // Linear, not Lanczos: a mask must not ring around hard edges.
  const modelMask = await cropAndResize(denoise, region, size, { kernel: "linear" });
  return { size, modelImage, modelMask };
}

export interface PlanOptions {
  nativeResolution: number;
  /** Pixels the model may work on (the job's width x height). */
  budget: number;
  strength: number;
}

export async function planInpaint(image: Raster, mask: Raster, options: PlanOptions & { context?: ContextMode }): Promise<MaskedEditPlan> {
  const { rgb, alpha } = imageOf(image);
  const selection = maskOf(mask);
  if (selection.width !== rgb.width || selection.height !== rgb.height) {
    throw new EngineError("invalid_job", `The mask (${selection.width}x${selection.height}) must be the size of the image (${rgb.width}x${rgb.height}).`);
  }
  if (!maskBounds(selection)) throw new EngineError("invalid_job", "The selection is empty: select the area to repaint first.");
  const { denoise, blend } = masksFor(selection);
  const bounds = maskBounds(denoise) ?? { x: 0, y: 0, width: rgb.width, height: rgb.height };
  const region = contextRegion(bounds, rgb, options.context ?? "automatic");
  const inputs = await modelInputs(rgb, denoise, selection, region, options.budget, options.nativeResolution, prefillFor("inpaint", options.strength));
  return { canvas: rgb, alpha, selection, denoise, blend, region, ...inputs, original: { x: 0, y: 0, width: rgb.width, height: rgb.height } };
}

export async function planOutpaint(image: Raster, expand: Expansion, options: PlanOptions & { maxPixels: number }): Promise<MaskedEditPlan> {
  const sides = [expand.left, expand.top, expand.right, expand.bottom];
  if (sides.every((s) => s === 0)) throw new EngineError("invalid_job", "Extend the canvas by at least one pixel on one side.");
  if (sides.some((s) => s > MAX_EXPANSION)) throw new EngineError("invalid_job", `Extend each side by at most ${MAX_EXPANSION} pixels at a time.`);
  const { rgb, alpha } = imageOf(image);
  const width = rgb.width + expand.left + expand.right;
  const height = rgb.height + expand.top + expand.bottom;
  if (width * height > options.maxPixels) {
    throw new EngineError("invalid_job", `The extended canvas (${width}x${height}) would be over the ${options.maxPixels}-pixel limit.`);
  }
  // Only the new area is unknown; the overlap band keeps its pixels for the model to see.
  const { canvas, mask, oldRegion, newArea: unknown } = expandCanvas(rgb, expand);
  const bounds = maskBounds(mask)!;
  const region = contextRegion(bounds, canvas, "automatic");
  const inputs = await modelInputs(canvas, mask, unknown, region, options.budget, options.nativeResolution, prefillFor("outpaint", options.strength));
  // A transparent layer stays transparent where it was; the new area is opaque.
  const fullAlpha = alpha
    ? pasteImage(createImage(width, height, 1, 255), { width: rgb.width, height: rgb.height, channels: 1, data: alpha }, oldRegion).data
    : null;
  // The new area must be covered completely, up to the canvas edge: the blend is the expansion mask itself.
  return { canvas, alpha: fullAlpha, selection: unknown, denoise: mask, blend: mask, region, ...inputs, original: oldRegion };
}

export interface MaskedEditResult {
  /** RGBA at canvas size: generated colours where blend > 0, alpha = blend (a layer). */
  layer: Image8;
  /** The composited picture at canvas size (original outside the blend mask, bit for bit). */
  picture: Image8;
}

/**
 * Scales the model's output back to the crop, matches its colours and composites it with the
 * blend mask ("seamless"), or pastes it into the hard selection as other plugins do ("off",
 * for measuring what the compositing gains).
 */
export async function finishMaskedEdit(plan: MaskedEditPlan, generatedRgb: Uint8Array, options: { compositing: "seamless" | "off" }): Promise<MaskedEditResult> {
  const { canvas, region } = plan;
  const seamless = options.compositing === "seamless";
  const atModelSize: Image8 = { width: plan.size.width, height: plan.size.height, channels: 3, data: generatedRgb };
  const patch = await resizeTo(atModelSize, { width: region.width, height: region.height });
  const pasted = pasteImage(canvas, patch, region);
  // Outside the region the model saw nothing: no generated colour may show there.
  const blendInRegion = clipToRegion(seamless ? plan.blend : hardMask(plan.selection), region);
  const generated = seamless ? matchColours(pasted, canvas, blendInRegion) : pasted;
  return { layer: layerPixels(generated, blendInRegion), picture: withAlpha(composite(canvas, generated, blendInRegion), plan.alpha) };
}

/** The mask inside `region`, zero everywhere else. */
function clipToRegion(mask: Image8, region: Bounds): Image8 {
  return pasteImage(createImage(mask.width, mask.height, 1), cropImage(mask, region), region);
}

function hardMask(mask: Image8): Image8 {
  return { ...mask, data: mask.data.map((v) => (v > 127 ? 255 : 0)) };
}

function withAlpha(rgb: Image8, alpha: Uint8Array | null): Image8 {
  if (!alpha) return rgb;
  const data = new Uint8Array(rgb.width * rgb.height * 4);
  for (let i = 0; i < alpha.length; i++) {
    data[i * 4] = rgb.data[i * 3]!;
    data[i * 4 + 1] = rgb.data[i * 3 + 1]!;
    data[i * 4 + 2] = rgb.data[i * 3 + 2]!;
    data[i * 4 + 3] = alpha[i]!;
  }
  return { width: rgb.width, height: rgb.height, channels: 4, data };
}

/** Imaging errors are the user's input: they become invalid_job with the same sentence. */
export function asEngineError(error: unknown): unknown {
  return error instanceof ImagingError ? new EngineError("invalid_job", error.message) : error;
}
