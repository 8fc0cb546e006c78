import { describe, expect, it } from "vitest";
import { composite, matchColours } from "../../../daemon/imaging/composite";
import { ImagingError } from "../../../daemon/imaging/errors";
import { masksFor } from "../../../daemon/imaging/mask";
import { deltaE76, ringAround, seamScore, srgbToLab } from "../../../daemon/imaging/metrics";
import type { Pixels } from "../../../geometry";
import { blankMask, countWhere, debugWrite, ellipseMask, loadPhoto, rectMask } from "./helpers";

/** Another part of the same photo, colour-drifted: plausible texture that does not line up. */
function foreign(image: Pixels, dx: number, dy: number): Pixels {
  const { width, height } = image;
  const data = new Uint8Array(image.data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sx = (x + dx + width) % width;
      const sy = (y + dy + height) % height;
      for (let k = 0; k < 3; k++) {
        const v = image.data[(sy * width + sx) * 3 + k]!;
        data[(y * width + x) * 3 + k] = Math.max(0, Math.min(255, Math.round([0.8, 1.05, 1.15][k]! * v + [25, 5, -10][k]!)));
      }
    }
  }
  return { width, height, channels: 3, data };
}

describe("srgbToLab / deltaE76", () => {
  it("matches reference Lab values (D65)", () => {
    const cases: Array<[number[], number[]]> = [
      [[255, 255, 255], [100, 0, 0]],
      [[0, 0, 0], [0, 0, 0]],
      [[255, 0, 0], [53.24, 80.09, 67.2]],
      [[0, 255, 0], [87.73, -86.18, 83.18]],
      [[0, 0, 255], [32.3, 79.19, -107.86]],
      [[128, 128, 128], [53.59, 0, 0]],
    ];
    for (const [rgb, lab] of cases) {
      const got = srgbToLab(rgb[0]!, rgb[1]!, rgb[2]!);
      for (let k = 0; k < 3; k++) expect(Math.abs(got[k]! - lab[k]!), `${rgb} ${k}`).toBeLessThan(0.05);
    }
  });

  it("is 0 for identical pictures, the Lab distance otherwise, and refuses an empty area", () => {
    const a: Pixels = { width: 2, height: 1, channels: 3, data: Uint8Array.from([255, 0, 0, 10, 20, 30]) };
    const b: Pixels = { width: 2, height: 1, channels: 3, data: Uint8Array.from([255, 255, 255, 10, 20, 30]) };
    const first = { width: 2, height: 1, channels: 1 as const, data: Uint8Array.from([255, 0]) };
    expect(deltaE76(a, a, blankMask(2, 1, 255))).toBe(0);
    expect(deltaE76(a, b, first)).toBeCloseTo(Math.hypot(100 - 53.24, 80.09, 67.2), 1);
    expect(deltaE76(a, b, blankMask(2, 1, 255))).toBeCloseTo(Math.hypot(100 - 53.24, 80.09, 67.2) / 2, 1);
    expect(() => deltaE76(a, b, blankMask(2, 1))).toThrow(ImagingError);
  });
});

describe("ringAround", () => {
  it("straddles the mask edge by the width on each side, and ignores the canvas edge", () => {
    const mask = rectMask(100, 80, 0, 20, 50, 40);
    const ring = ringAround(mask, 5);
    const row = (y: number) => Array.from(ring.data.subarray(y * 100, (y + 1) * 100));
    // Across the right edge (x = 49 | 50): 45..54 are in the ring.
    expect(row(40).map((v, x) => (v ? x : -1)).filter((x) => x >= 0)).toEqual([45, 46, 47, 48, 49, 50, 51, 52, 53, 54]);
    // The mask touches the left canvas edge: no ring there.
    expect(ring.data[40 * 100 + 0]).toBe(0);
    expect(countWhere(ringAround(blankMask(30, 30, 255), 4), (v) => v > 0)).toBe(0);
  });
});

describe("seamScore", () => {
  it("is about 1 on an untouched photo and far above 1 for a hard-pasted foreign patch", async () => {
    const photo = await loadPhoto("chelsea.png");
    const selection = ellipseMask(451, 300, 225, 150, 110, 75);
    const untouched = seamScore(photo, selection);
    expect(untouched.ratio).toBeGreaterThan(0.6);
    expect(untouched.ratio).toBeLessThan(1.6);
    const hard = composite(photo, foreign(photo, 97, 41), selection);
    expect(seamScore(hard, selection).ratio).toBeGreaterThan(2 * untouched.ratio);
  });

  it("a feathered, colour-matched composite has a lower seam ratio and ring delta-E than a hard paste", async () => {
    for (const name of ["chelsea.png", "coffee.png"] as const) {
      const photo = await loadPhoto(name);
      const { width, height } = photo;
      const selection = ellipseMask(width, height, width / 2, height / 2, width / 4, height / 4);
      const generated = foreign(photo, Math.round(width / 5), Math.round(height / 7));
      const hard = composite(photo, generated, selection);
      const { blend } = masksFor(selection);
      const soft = composite(photo, matchColours(generated, photo, selection), blend);
      await debugWrite(`seam-hard-${name}`, hard);
      await debugWrite(`seam-soft-${name}`, soft);
      const hardSeam = seamScore(hard, selection);
      const softSeam = seamScore(soft, blend);
      expect(softSeam.ratio).toBeLessThan(hardSeam.ratio * 0.7);
      const ring = ringAround(selection, 6);
      expect(deltaE76(soft, photo, ring)).toBeLessThan(deltaE76(hard, photo, ring));
    }
  });

  it("refuses a blend with no edge", async () => {
    const photo = await loadPhoto("chelsea.png");
    expect(() => seamScore(photo, blankMask(451, 300))).toThrow(ImagingError);
    expect(() => seamScore(photo, blankMask(451, 300, 255))).toThrow(ImagingError);
  });
});
