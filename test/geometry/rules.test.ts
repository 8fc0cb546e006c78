/**
 * The rules both halves apply must hold against the pixels the daemon really makes: the panel
 * reads a region from bounds alone, so the bounds it computes must hold every pixel the daemon's
 * masks touch.
 */
import { describe, expect, it } from "vitest";
import { maskBounds, masksFor } from "../../daemon/imaging/mask";
import { expandCanvas } from "../../daemon/imaging/outpaint";
import {
  contains,
  denoiseBounds,
  fitArea,
  fitInside,
  grownSize,
  inpaintContext,
  intersect,
  LIMITS,
  maskedEditSize,
  outpaintContext,
  outpaintMaskBounds,
  readSize,
  regionOf,
  scaleRegion,
  union,
  wholePictureSize,
  type Expansion,
} from "../../geometry";
import { ellipseMask, random, rectMask } from "../daemon/imaging/helpers";

describe("regions", () => {
  it("intersects, unites and contains as rectangles do", () => {
    const a = { x: 0, y: 0, width: 10, height: 10 };
    const b = { x: 5, y: 8, width: 10, height: 10 };
    expect(intersect(a, b)).toEqual({ x: 5, y: 8, width: 5, height: 2 });
    expect(intersect(a, { x: 10, y: 0, width: 3, height: 3 })).toBeNull();
    expect(union(a, b)).toEqual({ x: 0, y: 0, width: 15, height: 18 });
    expect(contains(union(a, b), a) && contains(union(a, b), b)).toBe(true);
    expect(contains(a, b)).toBe(false);
  });

  it("maps a region to another resolution without losing any pixel of it", () => {
    const rand = random(3);
    const from = { width: 6000, height: 4000 };
    const to = { width: 1499, height: 1000 };
    for (let n = 0; n < 300; n++) {
      const w = 1 + Math.floor(rand() * 500);
      const h = 1 + Math.floor(rand() * 500);
      const r = { x: Math.floor(rand() * (from.width - w)), y: Math.floor(rand() * (from.height - h)), width: w, height: h };
      const s = scaleRegion(r, from, to);
      expect(contains(regionOf(to), s)).toBe(true);
      // Back at full resolution, the mapped region covers the original.
      const back = { x: (s.x * from.width) / to.width, y: (s.y * from.height) / to.height, right: ((s.x + s.width) * from.width) / to.width, bottom: ((s.y + s.height) * from.height) / to.height };
      expect(back.x).toBeLessThanOrEqual(r.x);
      expect(back.y).toBeLessThanOrEqual(r.y);
      expect(back.right).toBeGreaterThanOrEqual(r.x + r.width - 1e-9);
      expect(back.bottom).toBeGreaterThanOrEqual(r.y + r.height - 1e-9);
    }
  });

  it("moves a region inside the canvas before cutting it", () => {
    expect(fitInside({ x: -20, y: 90, width: 50, height: 30 }, { width: 100, height: 100 })).toEqual({ x: 0, y: 70, width: 50, height: 30 });
    expect(fitInside({ x: -20, y: 0, width: 150, height: 30 }, { width: 100, height: 100 })).toEqual({ x: 0, y: 0, width: 100, height: 30 });
  });
});

describe("sizes", () => {
  it("makes whole pictures at the model's native area in the output's proportions, sides multiples of 64", () => {
    for (const [w, h] of [[451, 300], [4000, 1000], [512, 512], [6000, 4000], [300, 2000]] as const) {
      const size = wholePictureSize({ width: w, height: h }, 512);
      expect(size.width % 64).toBe(0);
      expect(size.height % 64).toBe(0);
      expect(size.width * size.height).toBeLessThanOrEqual(512 * 512);
      expect(size.width * size.height).toBeGreaterThan(0.6 * 512 * 512);
      expect(Math.abs(Math.log(size.width / size.height / (w / h)))).toBeLessThan(0.35);
    }
    expect(wholePictureSize({ width: 512, height: 512 }, 512)).toEqual({ width: 512, height: 512 });
    expect(wholePictureSize({ width: 1024, height: 768 }, 768)).toEqual({ width: 896, height: 640 });
  });

  it("reads no more than twice the model's resolution per side, and never enlarges", () => {
    const region = { width: 3000, height: 2000 };
    const model = maskedEditSize(region, 512);
    const read = readSize(region, model);
    expect(read.width * read.height).toBeLessThanOrEqual(4 * model.width * model.height);
    expect(Math.abs(read.width / read.height - 1.5)).toBeLessThan(0.01);
    expect(readSize({ width: 400, height: 300 }, { width: 512, height: 384 })).toEqual({ width: 400, height: 300 });
    expect(fitArea({ width: 10, height: 10 }, 1e6)).toEqual({ width: 10, height: 10 });
  });

  it("has one set of limits", () => {
    expect(LIMITS.maxImagePixels).toBe(8192 * 8192);
    expect(LIMITS.maxExpansion).toBe(2048);
  });
});

describe("what the model sees, decided from bounds alone", () => {
  it("denoiseBounds holds every pixel of the daemon's denoise mask, for hard and soft selections", () => {
    const rand = random(17);
    const canvas = { width: 700, height: 500 };
    for (let n = 0; n < 25; n++) {
      const w = 4 + Math.floor(rand() * 300);
      const h = 4 + Math.floor(rand() * 200);
      const x = Math.floor(rand() * (canvas.width - w));
      const y = Math.floor(rand() * (canvas.height - h));
      const selection = n % 2 ? rectMask(canvas.width, canvas.height, x, y, w, h) : ellipseMask(canvas.width, canvas.height, x + w / 2, y + h / 2, w / 2, h / 2, 6);
      const selected = maskBounds(selection);
      if (!selected) continue;
      const { denoise } = masksFor(selection);
      const reached = maskBounds(denoise)!;
      expect(contains(denoiseBounds(selected, canvas), reached), `${JSON.stringify(selected)}: mask reaches ${JSON.stringify(reached)}`).toBe(true);
      expect(contains(inpaintContext(selected, canvas, "automatic"), reached)).toBe(true);
      expect(contains(inpaintContext(selected, canvas, "selection"), reached)).toBe(true);
    }
  });

  it("a small selection in a big document reads a small part of it", () => {
    const canvas = { width: 6000, height: 4000 };
    const context = inpaintContext({ x: 2800, y: 1850, width: 400, height: 300 }, canvas, "automatic");
    expect(contains(context, { x: 2800, y: 1850, width: 400, height: 300 })).toBe(true);
    expect(context.width * context.height).toBeLessThan(0.08 * canvas.width * canvas.height);
  });

  it("outpaintMaskBounds holds the daemon's expansion mask exactly where it is above zero, on every side and corner", () => {
    const image = { width: 300, height: 200, channels: 3 as const, data: new Uint8Array(300 * 200 * 3) };
    const cases: Expansion[] = [
      { left: 128, top: 0, right: 0, bottom: 0 },
      { left: 0, top: 0, right: 4, bottom: 0 },
      { left: 0, top: 300, right: 0, bottom: 40 },
      { left: 64, top: 64, right: 0, bottom: 0 },
      { left: 10, top: 20, right: 30, bottom: 40 },
    ];
    for (const by of cases) {
      const { mask } = expandCanvas(image, by);
      const reached = maskBounds(mask)!;
      const bounds = outpaintMaskBounds(image, by)!;
      expect(contains(bounds, reached), JSON.stringify(by)).toBe(true);
      // At most the ramp's last, zero-valued pixel per side more.
      expect(bounds.width - reached.width).toBeLessThanOrEqual(2);
      expect(bounds.height - reached.height).toBeLessThanOrEqual(2);
      const context = outpaintContext(image, by)!;
      expect(contains(context, bounds)).toBe(true);
      expect(contains(regionOf(grownSize(image, by)), context)).toBe(true);
    }
    expect(outpaintContext(image, { left: 0, top: 0, right: 0, bottom: 0 })).toBeNull();
  });
});
