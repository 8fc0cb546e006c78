/** Rectangles and sizes: the small operations every crop, read and placement is made of. */
import type { Expansion, Region, Size } from "./types";

export const NO_EXPANSION: Expansion = { left: 0, top: 0, right: 0, bottom: 0 };

/** The whole of a canvas as a region at 0, 0. */
export function regionOf(size: Size): Region {
  return { x: 0, y: 0, width: size.width, height: size.height };
}

export function area(size: Size): number {
  return size.width * size.height;
}

export function sameSize(a: Size, b: Size): boolean {
  return a.width === b.width && a.height === b.height;
}

export function sameRegion(a: Region, b: Region): boolean {
  return a.x === b.x && a.y === b.y && sameSize(a, b);
}

/** The overlap of two regions, or null when they do not touch. */
export function intersect(a: Region, b: Region): Region | null {
  const x = Math.max(a.x, b.x);
  const y = Math.max(a.y, b.y);
  const right = Math.min(a.x + a.width, b.x + b.width);
  const bottom = Math.min(a.y + a.height, b.y + b.height);
  return right > x && bottom > y ? { x, y, width: right - x, height: bottom - y } : null;
}

/** Does `outer` hold all of `inner`? */
export function contains(outer: Region, inner: Region): boolean {
  return inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height;
}

/** The smallest region holding both. */
export function union(a: Region, b: Region): Region {
  const x = Math.min(a.x, b.x);
  const y = Math.min(a.y, b.y);
  return { x, y, width: Math.max(a.x + a.width, b.x + b.width) - x, height: Math.max(a.y + a.height, b.y + b.height) - y };
}

export function translate(region: Region, dx: number, dy: number): Region {
  return { ...region, x: region.x + dx, y: region.y + dy };
}

/** `region` given relative to `origin`'s corner (a crop's own coordinates). */
export function relativeTo(region: Region, origin: Region): Region {
  return translate(region, -origin.x, -origin.y);
}

/** The region `by` pixels larger on every side (not clamped). */
export function pad(region: Region, by: number): Region {
  return { x: region.x - by, y: region.y - by, width: region.width + 2 * by, height: region.height + 2 * by };
}

/** The canvas size after growing. */
export function grownSize(canvas: Size, by: Expansion): Size {
  return { width: canvas.width + by.left + by.right, height: canvas.height + by.top + by.bottom };
}

/** Where the old canvas sits in the grown one. */
export function oldCanvasIn(canvas: Size, by: Expansion): Region {
  return { x: by.left, y: by.top, width: canvas.width, height: canvas.height };
}

export function isNoExpansion(by: Expansion): boolean {
  return by.left === 0 && by.top === 0 && by.right === 0 && by.bottom === 0;
}

/**
 * A region in one pixel grid mapped onto another that covers the same area at another resolution
 * (`from` pixels -> `to` pixels): edges rounded outwards, so the mapped region never loses a pixel
 * of what it covered, then clamped to `to`.
 */
export function scaleRegion(region: Region, from: Size, to: Size): Region {
  if (sameSize(from, to)) return region;
  const sx = to.width / from.width;
  const sy = to.height / from.height;
  const x = Math.max(0, Math.floor(region.x * sx));
  const y = Math.max(0, Math.floor(region.y * sy));
  const right = Math.min(to.width, Math.ceil((region.x + region.width) * sx));
  const bottom = Math.min(to.height, Math.ceil((region.y + region.height) * sy));
  return { x, y, width: Math.max(1, right - x), height: Math.max(1, bottom - y) };
}

/** [a, b) grown evenly on both sides to `size`. */
export function widenSpan(a: number, b: number, size: number): [number, number] {
  const extra = size - (b - a);
  if (extra <= 0) return [a, b];
  const before = Math.floor(extra / 2);
  return [a - before, b + extra - before];
}

/** [a, b) shifted inside [0, limit), then clipped if still too big: it keeps what it held inside. */
export function fitSpan(a: number, b: number, limit: number): [number, number] {
  if (a < 0) [a, b] = [0, b - a];
  if (b > limit) [a, b] = [a - (b - limit), limit];
  return [Math.max(0, a), Math.min(limit, b)];
}

/** The region moved inside the canvas (not just cut), then cut where it is still larger. */
export function fitInside(region: Region, canvas: Size): Region {
  const [x0, x1] = fitSpan(region.x, region.x + region.width, canvas.width);
  const [y0, y1] = fitSpan(region.y, region.y + region.height, canvas.height);
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}
