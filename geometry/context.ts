/**
 * What the model sees around an edit, as one rule both halves apply: the panel to read only that
 * part of the document, the daemon to crop what it was sent (the same numbers, so nothing the model
 * needs is missing and nothing it does not is sent).
 */
import { GeometryError } from "./errors";
import { fitSpan, grownSize, oldCanvasIn, union, widenSpan } from "./region";
import type { Expansion, Region, Size } from "./types";

export type ContextMode = "automatic" | "selection" | "image";

export interface ContextOptions {
  /** Automatic mode: the smallest context side, px (default 512, the smallest native size). */
  minSize?: number;
  /** Automatic mode: grow the shorter side towards a square (default true). */
  square?: boolean;
  /** Round each side up to a multiple of this where the canvas allows (default 8). */
  multiple?: number;
}

/** Pixels of margin around the mask in "selection" mode: one latent cell. */
export const SELECTION_PADDING = 8;

function roundUp(value: number, multiple: number): number {
  return multiple > 1 ? Math.ceil(value / multiple) * multiple : value;
}

/**
 * The region of the canvas the model sees, always containing `maskBounds` and clamped to the canvas.
 * - "image": the whole canvas.
 * - "selection": the mask bounds + `padding` (default 8 px).
 * - "automatic": the mask bounds + max(longest canvas side / 16, average mask side / 2) per side
 *   (krita-ai-diffusion's rule: a small mask gets its surroundings, a large one half its size again),
 *   or `padding` when given; then grown to a square and to at least 512 px where the canvas allows.
 * Regions that stick out of the canvas are shifted back inside before being clipped, so the model
 * keeps as much context as it was promised. Sides are rounded up to multiples of 8 where possible.
 * Pass the bounds of the denoise mask (which reaches past the selection), not of the selection.
 */
export function contextRegion(maskBounds: Region, canvas: Size, mode: ContextMode, padding?: number, options: ContextOptions = {}): Region {
  if (!(Number.isInteger(canvas.width) && Number.isInteger(canvas.height) && canvas.width > 0 && canvas.height > 0)) {
    throw new GeometryError(`The canvas must be whole pixels, at least 1x1 (got ${canvas.width}x${canvas.height}).`);
  }
  const { x, y, width, height } = maskBounds;
  if (!(width > 0 && height > 0 && x >= 0 && y >= 0 && x + width <= canvas.width && y + height <= canvas.height)) {
    throw new GeometryError(`The mask bounds ${width}x${height} at ${x},${y} are not inside the ${canvas.width}x${canvas.height} canvas.`);
  }
  if (padding !== undefined && !(Number.isFinite(padding) && padding >= 0)) {
    throw new GeometryError(`The context padding must be 0 or more pixels (got ${padding}).`);
  }
  if (mode === "image") return { x: 0, y: 0, width: canvas.width, height: canvas.height };
  if (mode !== "automatic" && mode !== "selection") throw new GeometryError(`Unknown context mode "${String(mode)}".`);
  const multiple = options.multiple ?? 8;
  let pad: number;
  if (mode === "selection") {
    pad = Math.round(padding ?? SELECTION_PADDING);
  } else {
    const longest = Math.max(canvas.width, canvas.height);
    const average = (width + height) / 2;
    pad = Math.round(padding ?? Math.max(longest / 16, average / 2));
  }
  let [x0, y0, x1, y1] = [x - pad, y - pad, x + width + pad, y + height + pad];
  if (mode === "automatic") {
    const minSize = options.minSize ?? 512;
    let targetW = Math.max(x1 - x0, minSize);
    let targetH = Math.max(y1 - y0, minSize);
    if (options.square ?? true) targetW = targetH = Math.max(targetW, targetH);
    [x0, x1] = widenSpan(x0, x1, targetW);
    [y0, y1] = widenSpan(y0, y1, targetH);
  }
  [x0, x1] = widenSpan(x0, x1, roundUp(x1 - x0, multiple));
  [y0, y1] = widenSpan(y0, y1, roundUp(y1 - y0, multiple));
  [x0, x1] = fitSpan(x0, x1, canvas.width);
  [y0, y1] = fitSpan(y0, y1, canvas.height);
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

/** The radii a selection's two masks are made with (see daemon/imaging/mask.ts masksFor). */
export interface MaskParameters {
  grow: number;
  feather: number;
  shrink: number;
  blend: number;
}

/**
 * Default radii for a selection, scaling with the diagonal d of its bounds (as krita-ai-diffusion):
 * - feather = max(16, 10% of d): the model's repaint fades out over a band proportional to the edit;
 * - grow = 4 + feather / 2: the fully repainted area reaches past the selection edge, so the model
 *   never has to stop its new content exactly at the edge;
 * - blend = clamp(5% of d, 4, 32) and shrink = blend: the result fades in over ~2 * blend px INSIDE
 *   the selection; both are capped at a sixth of the selection's smaller side so thin selections
 *   are not eaten away.
 */
export function defaultMaskParameters(bounds: Size): MaskParameters {
  const d = Math.hypot(bounds.width, bounds.height);
  const feather = Math.max(16, Math.round(0.1 * d));
  const grow = 4 + Math.round(feather / 2);
  const cap = Math.max(1, Math.floor(Math.min(bounds.width, bounds.height) / 6));
  const blend = Math.min(cap, Math.max(4, Math.min(32, Math.round(0.05 * d))));
  return { grow, feather, shrink: blend, blend };
}

/**
 * How far past the selection's bounds the denoise mask can reach: the growth, plus the feather's
 * ramp (a Gaussian of sigma feather / 2 made of three box blurs ends within 1.5 x feather), plus one.
 */
export function denoiseReach(selectionBounds: Size): number {
  const { grow, feather } = defaultMaskParameters(selectionBounds);
  return grow + Math.ceil(1.5 * feather) + 1;
}

/** The bounds of the denoise mask for a selection with these bounds, clamped to the canvas. */
export function denoiseBounds(selectionBounds: Region, canvas: Size): Region {
  const reach = denoiseReach(selectionBounds);
  const x = Math.max(0, selectionBounds.x - reach);
  const y = Math.max(0, selectionBounds.y - reach);
  const right = Math.min(canvas.width, selectionBounds.x + selectionBounds.width + reach);
  const bottom = Math.min(canvas.height, selectionBounds.y + selectionBounds.height + reach);
  return { x, y, width: right - x, height: bottom - y };
}

/** Inpainting: the document region the model sees for a selection with these bounds. */
export function inpaintContext(selectionBounds: Region, canvas: Size, mode: ContextMode): Region {
  return contextRegion(denoiseBounds(selectionBounds, canvas), canvas, mode);
}

/** The longest overlap band reaching from the new area into the old picture, px. */
export const OUTPAINT_OVERLAP = 64;

/**
 * Width of the overlap band on one side: at most `overlap`, at most the extension itself (but 8 px at
 * least, one latent cell) so a small extension does not repaint much old picture, and at most a
 * quarter of the old picture across that axis. 0 where the side is not extended.
 */
export function overlapWidth(extension: number, oldSide: number, overlap = OUTPAINT_OVERLAP): number {
  if (extension <= 0) return 0;
  return Math.max(0, Math.min(overlap, Math.max(8, extension), Math.floor(oldSide / 4)));
}

/** The overlap band on each side for a canvas growing by `by`. */
export function overlapBands(canvas: Size, by: Expansion, overlap = OUTPAINT_OVERLAP): Expansion {
  return {
    left: overlapWidth(by.left, canvas.width, overlap),
    right: overlapWidth(by.right, canvas.width, overlap),
    top: overlapWidth(by.top, canvas.height, overlap),
    bottom: overlapWidth(by.bottom, canvas.height, overlap),
  };
}

/** Outpainting: the bounds of what the model repaints (the new area and the overlap bands), in grown-canvas pixels. */
export function outpaintMaskBounds(canvas: Size, by: Expansion, overlap = OUTPAINT_OVERLAP): Region | null {
  const grown = grownSize(canvas, by);
  const old = oldCanvasIn(canvas, by);
  const bands = overlapBands(canvas, by, overlap);
  const strips: Region[] = [];
  if (by.left > 0) strips.push({ x: 0, y: 0, width: by.left + bands.left, height: grown.height });
  if (by.right > 0) strips.push({ x: old.x + old.width - bands.right, y: 0, width: by.right + bands.right, height: grown.height });
  if (by.top > 0) strips.push({ x: 0, y: 0, width: grown.width, height: by.top + bands.top });
  if (by.bottom > 0) strips.push({ x: 0, y: old.y + old.height - bands.bottom, width: grown.width, height: by.bottom + bands.bottom });
  return strips.length ? strips.reduce(union) : null;
}

/** Outpainting: the region of the grown canvas the model sees, or null when nothing grows. */
export function outpaintContext(canvas: Size, by: Expansion): Region | null {
  const bounds = outpaintMaskBounds(canvas, by);
  return bounds ? contextRegion(bounds, grownSize(canvas, by), "automatic") : null;
}
