import { describe, expect, it } from "vitest";
import { ImagingError } from "../../../daemon/imaging/errors";
import { cropImage } from "../../../daemon/imaging/image";
import { maskBounds } from "../../../daemon/imaging/mask";
import { expandCanvas } from "../../../daemon/imaging/outpaint";
import { overlapWidth, type Pixels } from "../../../geometry";
import { loadPhoto, sameBytes } from "./helpers";

function at(mask: Pixels, x: number, y: number): number {
  return mask.data[y * mask.width + x]!;
}

describe("expandCanvas", () => {
  it("keeps the old pixels in place, bit for bit, and the new area empty", async () => {
    const photo = await loadPhoto("chelsea.png");
    const by = { left: 37, top: 0, right: 101, bottom: 13 };
    const { canvas, oldRegion, newArea } = expandCanvas(photo, by);
    expect(canvas).toMatchObject({ width: 451 + 138, height: 313, channels: 3 });
    expect(oldRegion).toEqual({ x: 37, y: 0, width: 451, height: 300 });
    expect(sameBytes(cropImage(canvas, oldRegion).data, photo.data)).toBe(true);
    expect(maskBounds(newArea, 0)).toEqual({ x: 0, y: 0, width: 589, height: 313 });
    let newPixels = 0;
    let painted = 0;
    for (let i = 0; i < newArea.data.length; i++) {
      if (newArea.data[i] !== 255) continue;
      newPixels++;
      if (canvas.data[i * 3]! + canvas.data[i * 3 + 1]! + canvas.data[i * 3 + 2]! !== 0) painted++;
    }
    expect(newPixels).toBe(589 * 313 - 451 * 300);
    expect(painted).toBe(0);
  });

  it("masks the new area fully and ramps into the old pixels on the extended sides only", async () => {
    const photo = await loadPhoto("coffee.png");
    const { mask, oldRegion, overlap } = expandCanvas(photo, { left: 0, top: 200, right: 20, bottom: 0 });
    expect(overlap).toEqual({ left: 0, top: 64, right: 20, bottom: 0 });
    // New area: all 255.
    let notFull = 0;
    for (let y = 0; y < 200; y++) for (let x = 0; x < mask.width; x++) if (at(mask, x, y) !== 255) notFull++;
    for (let y = 200; y < mask.height; y++) for (let x = 600; x < 620; x++) if (at(mask, x, y) !== 255) notFull++;
    expect(notFull).toBe(0);
    // The top band: decreasing from the edge, 0 from 64 px in; nothing on the left or bottom sides.
    const column = 300;
    for (let k = 1; k < 64; k++) expect(at(mask, column, 200 + k)).toBeLessThanOrEqual(at(mask, column, 200 + k - 1));
    expect(at(mask, column, 200)).toBeGreaterThan(240);
    expect(at(mask, column, 200 + 64)).toBe(0);
    expect(at(mask, 0, 500)).toBe(0);
    expect(at(mask, 0, 599)).toBe(0);
    expect(at(mask, 300, 599)).toBe(0);
    // The right band is as wide as the extension (20 px).
    expect(at(mask, 599, 500)).toBeGreaterThan(200);
    expect(at(mask, 579, 500)).toBe(0);
    // The overlap reaches at most 64 px into the old pixels.
    let deepest = 0;
    for (let y = oldRegion.y; y < oldRegion.y + oldRegion.height; y++) {
      for (let x = oldRegion.x; x < oldRegion.x + oldRegion.width; x++) {
        if (at(mask, x, y) === 0) continue;
        const depth = Math.min(y - oldRegion.y, oldRegion.x + oldRegion.width - 1 - x);
        deepest = Math.max(deepest, depth);
      }
    }
    expect(deepest).toBeLessThan(64);
  });

  it("takes the band width from the option, the extension and the picture's size", () => {
    expect(overlapWidth(0, 1000, 64)).toBe(0);
    expect(overlapWidth(512, 1000, 64)).toBe(64);
    expect(overlapWidth(4, 1000, 64)).toBe(8);
    expect(overlapWidth(512, 100, 64)).toBe(25);
    expect(overlapWidth(512, 1000, 16)).toBe(16);
    expect(overlapWidth(512, 1000, 0)).toBe(0);
  });

  it("gives the same picture and an empty mask for an expansion of 0; keeps alpha channels", async () => {
    const photo = await loadPhoto("chelsea.png");
    const same = expandCanvas(photo, { left: 0, top: 0, right: 0, bottom: 0 });
    expect(sameBytes(same.canvas.data, photo.data)).toBe(true);
    expect(same.mask.data.every((v) => v === 0)).toBe(true);
    const rgba: Pixels = { width: 10, height: 10, channels: 4, data: new Uint8Array(400).fill(255) };
    const grown = expandCanvas(rgba, { left: 5, top: 0, right: 0, bottom: 0 });
    expect(grown.canvas.channels).toBe(4);
    expect(Array.from(grown.canvas.data.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(Array.from(grown.canvas.data.subarray(5 * 4, 6 * 4))).toEqual([255, 255, 255, 255]);
  });

  it("refuses negative, fractional and oversized expansions", async () => {
    const photo = await loadPhoto("chelsea.png");
    for (const by of [
      { left: -1, top: 0, right: 0, bottom: 0 },
      { left: 0.5, top: 0, right: 0, bottom: 0 },
      { left: 0, top: 0, right: 40000, bottom: 0 },
      { left: 0, top: Number.NaN, right: 0, bottom: 0 },
    ]) {
      try {
        expandCanvas(photo, by);
        expect.unreachable();
      } catch (error) {
        expect(error).toBeInstanceOf(ImagingError);
        expect((error as ImagingError).code).toBe("invalid_argument");
      }
    }
    expect(() => expandCanvas(photo, { left: 0, top: 0, right: 100, bottom: 0 }, { maxPixels: 1000 })).toThrow(/at most/);
  });
});
