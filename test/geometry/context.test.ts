import { describe, expect, it } from "vitest";
import { contains, contextRegion, GeometryError, generationSize, type Region } from "../../geometry";
import { random } from "../daemon/imaging/helpers";

function insideCanvas(b: Region, canvas: { width: number; height: number }): boolean {
  return b.x >= 0 && b.y >= 0 && b.width > 0 && b.height > 0 && b.x + b.width <= canvas.width && b.y + b.height <= canvas.height;
}

describe("contextRegion", () => {
  it("always contains the mask and stays on the canvas, in every mode", () => {
    const rand = random(11);
    const canvases = [
      { width: 451, height: 300 },
      { width: 600, height: 400 },
      { width: 4096, height: 2731 },
      { width: 90, height: 1200 },
      { width: 1, height: 1 },
    ];
    for (const canvas of canvases) {
      for (let n = 0; n < 200; n++) {
        const w = 1 + Math.floor(rand() * canvas.width);
        const h = 1 + Math.floor(rand() * canvas.height);
        const mask = { x: Math.floor(rand() * (canvas.width - w + 1)), y: Math.floor(rand() * (canvas.height - h + 1)), width: w, height: h };
        for (const mode of ["automatic", "selection", "image"] as const) {
          const region = contextRegion(mask, canvas, mode);
          expect(contains(region, mask), `${mode} ${JSON.stringify(mask)} -> ${JSON.stringify(region)}`).toBe(true);
          expect(insideCanvas(region, canvas)).toBe(true);
          expect(Object.values(region).every(Number.isInteger)).toBe(true);
        }
      }
    }
  });

  it("automatic: pads by max(longest side / 16, mask side / 2), squares, at least 512, shifted inside the canvas", () => {
    const canvas = { width: 4000, height: 3000 };
    // A 100 px mask in the middle: padding 250 (4000 / 16) -> 600 x 600.
    expect(contextRegion({ x: 1950, y: 1450, width: 100, height: 100 }, canvas, "automatic")).toEqual({ x: 1700, y: 1200, width: 600, height: 600 });
    // A large mask: padding = average side / 2 = 500; squared to 2000 and rounded to multiples of 8.
    const big = contextRegion({ x: 1000, y: 1000, width: 1000, height: 1000 }, canvas, "automatic");
    expect(big).toEqual({ x: 500, y: 500, width: 2000, height: 2000 });
    // Near the top-left corner the region is shifted, not cut: it keeps its size.
    const corner = contextRegion({ x: 10, y: 5, width: 50, height: 40 }, canvas, "automatic");
    expect(corner).toMatchObject({ x: 0, y: 0 });
    expect(corner.width).toBe(corner.height);
    expect(corner.width).toBeGreaterThanOrEqual(512);
    // A small canvas is the whole context.
    expect(contextRegion({ x: 100, y: 100, width: 50, height: 50 }, { width: 451, height: 300 }, "automatic")).toEqual({ x: 0, y: 0, width: 451, height: 300 });
    // An explicit padding replaces the automatic one.
    expect(contextRegion({ x: 1950, y: 1450, width: 100, height: 100 }, canvas, "automatic", 0, { minSize: 0, square: false })).toEqual({
      x: 1948,
      y: 1448,
      width: 104,
      height: 104,
    });
  });

  it("selection: the bounds plus 8 px, rounded to multiples of 8; image: the whole canvas", () => {
    const canvas = { width: 600, height: 400 };
    expect(contextRegion({ x: 100, y: 50, width: 64, height: 30 }, canvas, "selection")).toEqual({ x: 92, y: 41, width: 80, height: 48 });
    expect(contextRegion({ x: 0, y: 0, width: 64, height: 30 }, canvas, "selection")).toEqual({ x: 0, y: 0, width: 80, height: 48 });
    expect(contextRegion({ x: 100, y: 50, width: 64, height: 30 }, canvas, "image")).toEqual({ x: 0, y: 0, width: 600, height: 400 });
  });

  it("refuses mask bounds off the canvas, unknown modes and negative padding", () => {
    const canvas = { width: 100, height: 100 };
    expect(() => contextRegion({ x: 90, y: 0, width: 20, height: 10 }, canvas, "automatic")).toThrow(GeometryError);
    expect(() => contextRegion({ x: 0, y: 0, width: 0, height: 10 }, canvas, "automatic")).toThrow(GeometryError);
    expect(() => contextRegion({ x: 0, y: 0, width: 10, height: 10 }, canvas, "weird" as "image")).toThrow(GeometryError);
    expect(() => contextRegion({ x: 0, y: 0, width: 10, height: 10 }, canvas, "selection", -3)).toThrow(GeometryError);
  });
});

describe("generationSize", () => {
  it("gives multiples of 8, at least 64, area near native, aspect kept within 3%", () => {
    const rand = random(5);
    for (const native of [512, 768, 1024]) {
      for (let n = 0; n < 500; n++) {
        const region = { width: 16 + Math.floor(rand() * 4000), height: 16 + Math.floor(rand() * 4000) };
        const size = generationSize(region, native);
        expect(size.width % 8).toBe(0);
        expect(size.height % 8).toBe(0);
        expect(Math.min(size.width, size.height)).toBeGreaterThanOrEqual(64);
        const area = size.width * size.height;
        expect(area).toBeLessThanOrEqual(1.5 * native * native);
        const aspect = region.width / region.height;
        if (aspect < 4 && aspect > 1 / 4) {
          expect(Math.abs(size.width / size.height / aspect - 1)).toBeLessThan(0.03);
          expect(area).toBeGreaterThan(0.9 * native * native);
        }
      }
    }
  });

  it("upscales small regions to native area, keeps regions already in range, downscales big ones", () => {
    expect(generationSize({ width: 451, height: 300 }, 512)).toEqual({ width: 624, height: 416 });
    expect(generationSize({ width: 100, height: 100 }, 512)).toEqual({ width: 512, height: 512 });
    expect(generationSize({ width: 600, height: 400 }, 512)).toEqual({ width: 624, height: 416 });
    expect(generationSize({ width: 700, height: 500 }, 512)).toEqual({ width: 704, height: 504 });
    expect(generationSize({ width: 4000, height: 3000 }, 512)).toEqual({ width: 720, height: 544 });
    expect(generationSize({ width: 4000, height: 3000 }, 1024, { maxPixels: 1024 * 1024 })).toEqual({ width: 1176, height: 888 });
    expect(generationSize({ width: 300, height: 300 }, 512, { minPixels: 0 })).toEqual({ width: 304, height: 304 });
  });

  it("copes with very thin regions: short side 64, area within the budget", () => {
    const size = generationSize({ width: 4000, height: 10 }, 512);
    expect(size.height).toBe(64);
    expect(size.width * size.height).toBeLessThanOrEqual(1.5 * 512 * 512);
    expect(size.width % 8).toBe(0);
  });

  it("refuses nonsense", () => {
    expect(() => generationSize({ width: 0, height: 10 }, 512)).toThrow(GeometryError);
    expect(() => generationSize({ width: 10, height: 10 }, 0)).toThrow(GeometryError);
    expect(() => generationSize({ width: 10, height: 10 }, 512, { maxPixels: 100 })).toThrow(GeometryError);
  });
});

