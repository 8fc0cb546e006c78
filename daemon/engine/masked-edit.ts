/**
 * Inpainting a selection and extending the canvas, for artists: the selection becomes a denoise
 * mask (grown, feathered) and a blend mask (shrunk, feathered, never outside the selection); the
 * model sees the context region (geometry's one rule, which the panel also used to decide what to
 * read) rescaled to its working size; its result is scaled to document resolution, colour-matched
 * at the edge and returned as a layer cut to where it shows, in document pixels after any growth,
 * so every pixel outside the blend mask stays the artist's own.
 */
import {
  contains,
  grownSize,
  inpaintContext,
  intersect,
  LIMITS,
  maskedEditSize,
  oldCanvasIn,
  outpaintContext,
  regionOf,
  relativeTo,
  sameSize,
  scaleRegion,
  translate,
  GeometryError,
  type ContextMode,
  type Expansion,
  type Pixels,
  type Region,
  type Size,
} from "../../geometry";
import { ImagingError } from "../imaging/errors";
import { composite, layerPixels, matchColours } from "../imaging/composite";
import { maskBounds, masksFor, shrinkMask } from "../imaging/mask";
import { expandCanvas } from "../imaging/outpaint";
import { prefill, type PrefillMode } from "../imaging/prefill";
import { cropImage } from "../imaging/image";
import { resizeTo } from "../imaging/resample";
import { EngineError, type Placement } from "./engine";

/** One masked edit, prepared: what the model runs on and how its output goes back. */
export interface MaskedEditPlan {
  /** The context the model sees, RGB, at the resolution it was sent (the working resolution). */
  canvas: Pixels;
  /** What the artist selected (inpaint) or the new area (outpaint), over `canvas`. */
  selection: Pixels;
  /** 255 = the model may repaint. */
  denoise: Pixels;
  /** How much of the generated picture shows, per pixel; 0 = the original, untouched. */
  blend: Pixels;
  /** Where `canvas` lies in the document, in document pixels after any growth (its size there may be larger: a scaled read). */
  region: Region;
  /** The size the model runs at (multiples of 64). */
  size: Size;
  /** Model inputs at `size`: RGB and the denoise mask. */
  modelImage: Pixels;
  modelMask: Pixels;
}

/** RGB of any 8-bit pixels (alpha dropped: the model paints colours; gray expanded). */
function rgbOf(image: Pixels): Pixels {
  const { width, height, channels, data } = image;
  if (channels === 3) return image;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const s = i * channels;
    rgb[i * 3] = data[s]!;
    rgb[i * 3 + 1] = data[channels === 1 ? s : s + 1]!;
    rgb[i * 3 + 2] = data[channels === 1 ? s : s + 2]!;
  }
  return { width, height, channels: 3, data: rgb };
}

/** Which pre-fill the model's input gets, per mode: only what the model must invent is filled. */
export function prefillFor(mode: "inpaint" | "outpaint", strength: number): PrefillMode {
  if (mode === "outpaint") return "propagate";
  // At strength 1 the selection's content is replaced; a blur of its surroundings keeps the colours
  // that the VAE sees near the edge plausible. Below 1 the artist wants their pixels as the start.
  return strength >= 1 ? "blur" : "none";
}

async function modelInputs(canvas: Pixels, denoise: Pixels, fill: Pixels, budget: number | undefined, nativeResolution: number, mode: PrefillMode) {
  const size = maskedEditSize(canvas, nativeResolution, budget);
  const filled = mode === "none" ? canvas : prefill(canvas, fill, mode);
  const modelImage = await resizeTo(filled, size);
  // Linear, not Lanczos: a mask must not ring around hard edges.
  const modelMask = await resizeTo(denoise, size, { kernel: "linear" });
  return { size, modelImage, modelMask };
}

export interface PlanOptions {
  nativeResolution: number;
  /** Pixels the model may work on (default 1.5 x its native area). */
  budget?: number;
  strength: number;
}

/** Per-pixel minimum of two masks of the same size. */
function minOf(a: Pixels, b: Pixels): Pixels {
  return { ...a, data: a.data.map((v, i) => Math.min(v, b.data[i]!)) };
}

/** Was the image read at less than document resolution? */
function scaledDown(image: Size, region: Size): boolean {
  return image.width < region.width || image.height < region.height;
}

/** Does a read of `area` at `image`'s size keep its proportions (to a pixel or two of rounding)? */
function sameProportions(image: Size, area: Size): boolean {
  const aspect = (s: Size) => s.width / s.height;
  return Math.abs(aspect(image) / aspect(area) - 1) <= 0.02 + 2 / Math.min(image.width, image.height);
}

function checkPlacement(image: Pixels, { canvas, region }: Placement): void {
  if (!contains(regionOf(canvas), region)) {
    throw new EngineError("invalid_job", `The region ${region.width}x${region.height} at ${region.x},${region.y} is not inside the ${canvas.width}x${canvas.height} document.`);
  }
  if (image.width > region.width || image.height > region.height) {
    throw new EngineError("invalid_job", `The image (${image.width}x${image.height}) is larger than the document region it covers (${region.width}x${region.height}).`);
  }
  if (!sameProportions(image, region)) {
    throw new EngineError("invalid_job", `The image (${image.width}x${image.height}) does not have the proportions of the region it covers (${region.width}x${region.height}).`);
  }
}

/**
 * Inpainting: `image` and `mask` cover `placement.region` of the document (possibly read at a lower
 * resolution). The model sees the selection's context region, cut from what was sent.
 */
export async function planInpaint(image: Pixels, mask: Pixels, placement: Placement, options: PlanOptions & { context?: ContextMode }): Promise<MaskedEditPlan> {
  if (mask.channels !== 1) throw new EngineError("invalid_job", "The mask must have one channel (white = repaint, black = keep).");
  if (!sameSize(mask, image)) {
    throw new EngineError("invalid_job", `The mask (${mask.width}x${mask.height}) must be the size of the image (${image.width}x${image.height}).`);
  }
  checkPlacement(image, placement);
  const { canvas, region } = placement;
  const sent = maskBounds(mask);
  if (!sent) throw new EngineError("invalid_job", "The selection is empty: select the area to repaint first.");
  // The context in document pixels, by the rule the panel read with, kept to what was sent.
  const selected = translate(scaleRegion(sent, image, region), region.x, region.y);
  const context = intersect(inpaintContext(selected, canvas, options.context ?? "automatic"), region)!;
  const crop = scaleRegion(relativeTo(context, region), region, image);
  const rgb = cropImage(rgbOf(image), crop);
  const selection = cropImage(mask, crop);
  const masks = masksFor(selection);
  // Read scaled down, the selection's edge pixels are part in, part out of it at document
  // resolution: the blend stays off the two outermost of them, so scaled back up it never reaches
  // past the selection.
  const blend = scaledDown(image, region) ? minOf(masks.blend, shrinkMask(selection, 2)) : masks.blend;
  const { denoise } = masks;
  const inputs = await modelInputs(rgb, denoise, selection, options.budget, options.nativeResolution, prefillFor("inpaint", options.strength));
  return { canvas: rgb, selection, denoise, blend, region: context, ...inputs };
}

/**
 * Outpainting: the document grows by `expand`; `image` covers `placement.region` of the document at
 * document resolution and must hold the part of it the model sees next to the growth.
 */
export async function planOutpaint(image: Pixels, expand: Expansion, placement: Placement, options: PlanOptions): Promise<MaskedEditPlan> {
  const sides = [expand.left, expand.top, expand.right, expand.bottom];
  if (sides.every((s) => s === 0)) throw new EngineError("invalid_job", "Extend the canvas by at least one pixel on one side.");
  if (sides.some((s) => s > LIMITS.maxExpansion)) throw new EngineError("invalid_job", `Extend each side by at most ${LIMITS.maxExpansion} pixels at a time.`);
  const { canvas, region } = placement;
  checkPlacement(image, placement);
  if (!sameSize(image, region)) {
    throw new EngineError("invalid_job", `Expanding the canvas needs the document's pixels at full resolution (got ${image.width}x${image.height} for ${region.width}x${region.height}).`);
  }
  const grown = grownSize(canvas, expand);
  if (grown.width * grown.height > LIMITS.maxImagePixels) {
    throw new EngineError("invalid_job", `The extended canvas (${grown.width}x${grown.height}) would be over the ${LIMITS.maxImagePixels}-pixel limit.`);
  }
  // What the model sees, in grown-canvas pixels, and the old pixels in it.
  const context = outpaintContext(canvas, expand)!;
  const old = oldCanvasIn(canvas, expand);
  const oldSeen = intersect(context, old);
  const sentAt = translate(region, expand.left, expand.top);
  if (!oldSeen || !contains(sentAt, oldSeen)) {
    const need = oldSeen ? translate(oldSeen, -expand.left, -expand.top) : regionOf(canvas);
    throw new EngineError("invalid_job", `Expanding the canvas needs the document's pixels in ${need.width}x${need.height} at ${need.x},${need.y}; the image sent covers ${region.width}x${region.height} at ${region.x},${region.y}.`);
  }
  const crop = cropImage(rgbOf(image), relativeTo(oldSeen, sentAt));
  // The context is the old pixels it holds, grown by what lies outside them (all of it new area).
  const around: Expansion = {
    left: oldSeen.x - context.x,
    top: oldSeen.y - context.y,
    right: context.x + context.width - (oldSeen.x + oldSeen.width),
    bottom: context.y + context.height - (oldSeen.y + oldSeen.height),
  };
  const { canvas: rgb, mask, newArea } = expandCanvas(crop, around, { oldSize: canvas });
  const inputs = await modelInputs(rgb, mask, newArea, options.budget, options.nativeResolution, prefillFor("outpaint", options.strength));
  // The new area must be covered completely, up to the canvas edge: the blend is the expansion mask itself.
  return { canvas: rgb, selection: newArea, denoise: mask, blend: mask, region: context, ...inputs };
}

export interface MaskedEditResult {
  /** The new layer: RGBA at document resolution, alpha = how much shows, cut to where it shows. */
  layer: Pixels;
  /** Where the layer goes, in document pixels after any growth. */
  region: Region;
  /** The context composited at document resolution (the original outside the blend mask, bit for bit), for measuring. */
  picture: Pixels;
  /** The blend mask at document resolution over the whole context. */
  blend: Pixels;
  /** The original context at document resolution. */
  original: Pixels;
}

/**
 * The part of a control image that a masked edit's model sees. The control image covers the
 * document rectangle `covers` (inpaint: the job's region, as its image and mask do; outpaint: the
 * document after growth, so that it can steer the new area), read at any resolution in its
 * proportions; the plan's context is cut from it, to be fitted to the working size as the image was.
 */
export function controlForContext(control: Pixels, covers: Region, plan: Pick<MaskedEditPlan, "region">): Pixels {
  if (!sameProportions(control, covers)) {
    throw new EngineError(
      "invalid_job",
      `The control image (${control.width}x${control.height}) does not have the proportions of the ${covers.width}x${covers.height} document area it covers.`,
    );
  }
  const context = intersect(plan.region, covers);
  if (!context) throw new EngineError("invalid_job", "The control image does not cover the area the model works on.");
  return cropImage(control, scaleRegion(relativeTo(context, covers), covers, control));
}

/**
 * Scales the model's output to the context's document size, matches its colours and composites
 * it with the blend mask ("seamless"), or pastes it into the hard selection as other plugins do
 * ("off", for measuring what the compositing gains).
 */
export async function finishMaskedEdit(plan: MaskedEditPlan, generatedRgb: Uint8Array, options: { compositing: "seamless" | "off" }): Promise<MaskedEditResult> {
  const seamless = options.compositing === "seamless";
  const target: Size = { width: plan.region.width, height: plan.region.height };
  const scaled = !sameSize(plan.canvas, target);
  const original = scaled ? await resizeTo(plan.canvas, target) : plan.canvas;
  const mask = seamless ? plan.blend : hardMask(plan.selection);
  const blend = scaled ? await resizeTo(mask, target, { kernel: "linear" }) : mask;
  const atModelSize: Pixels = { width: plan.size.width, height: plan.size.height, channels: 3, data: generatedRgb };
  const patch = await resizeTo(atModelSize, target);
  const generated = seamless ? matchColours(patch, original, blend) : patch;
  const full = layerPixels(generated, blend);
  const shown = maskBounds(blend) ?? regionOf(target);
  return {
    layer: cropImage(full, shown),
    region: translate(shown, plan.region.x, plan.region.y),
    picture: composite(original, generated, blend),
    blend,
    original,
  };
}

function hardMask(mask: Pixels): Pixels {
  return { ...mask, data: mask.data.map((v) => (v > 127 ? 255 : 0)) };
}

/** Imaging and geometry errors are the user's input: they become invalid_job with the same sentence. */
export function asEngineError(error: unknown): unknown {
  return error instanceof ImagingError || error instanceof GeometryError ? new EngineError("invalid_job", error.message) : error;
}
