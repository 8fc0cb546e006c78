import { describe, expect, it } from "vitest";
import { ImagingError } from "../../../daemon/imaging/errors";
import { featherMask, growMask, maskBounds, masksFor, shrinkMask } from "../../../daemon/imaging/mask";
import { defaultMaskParameters, type Pixels } from "../../../geometry";
import { blankMask, countWhere, ellipseMask, loadPhoto, rectMask } from "./helpers";

function at(mask: Pixels, x: number, y: number): number {
  return mask.data[y * mask.width + x]!;
}

describe("maskBounds", () => {
  it("is null for an empty mask, tight otherwise, and honours the threshold", () => {
    expect(maskBounds(blankMask(30, 20))).toBeNull();
    const mask = blankMask(30, 20);
    mask.data[5 * 30 + 7] = 10;
    mask.data[12 * 30 + 21] = 200;
    expect(maskBounds(mask)).toEqual({ x: 7, y: 5, width: 15, height: 8 });
    expect(maskBounds(mask, 10)).toEqual({ x: 21, y: 12, width: 1, height: 1 });
    expect(maskBounds(mask, 200)).toBeNull();
    expect(maskBounds(blankMask(3, 3, 255))).toEqual({ x: 0, y: 0, width: 3, height: 3 });
  });

  it("refuses images that are not one-channel masks", () => {
    const rgb: Pixels = { width: 2, height: 2, channels: 3, data: new Uint8Array(12) };
    expect(() => maskBounds(rgb)).toThrow(ImagingError);
    expect(() => maskBounds({ width: 2, height: 2, channels: 1, data: new Uint8Array(3) })).toThrow(/should hold 4 bytes/);
  });
});

describe("grow and shrink", () => {
  it("grow a point into a disk of the radius (octagon within 8%)", () => {
    const mask = blankMask(81, 81);
    mask.data[40 * 81 + 40] = 255;
    const grown = growMask(mask, 20);
    expect(at(grown, 40 + 20, 40)).toBe(255);
    expect(at(grown, 40 + 21, 40)).toBe(0);
    expect(at(grown, 40, 40 - 20)).toBe(255);
    // Along the diagonal the disk reaches 20 / sqrt2 = 14.1 px in x and y.
    expect(at(grown, 40 + 14, 40 + 14)).toBe(255);
    expect(at(grown, 40 + 16, 40 + 16)).toBe(0);
    const area = countWhere(grown, (v) => v === 255);
    expect(area / (Math.PI * 20 * 20)).toBeGreaterThan(0.98);
    expect(area / (Math.PI * 20 * 20)).toBeLessThan(1.1);
  });

  it("carry soft values outward unchanged", () => {
    const mask = blankMask(40, 40);
    for (let y = 15; y < 25; y++) for (let x = 15; x < 25; x++) mask.data[y * 40 + x] = 100;
    mask.data[20 * 40 + 20] = 180;
    const grown = growMask(mask, 3);
    expect(at(grown, 23, 20)).toBe(180);
    expect(at(grown, 12, 20)).toBe(100);
    expect(at(grown, 11, 20)).toBe(0);
    expect(new Set(grown.data)).toEqual(new Set([0, 100, 180]));
  });

  it("shrink is the complement of growing the complement, and the canvas edge does not erode", () => {
    const full = blankMask(50, 30, 255);
    expect(shrinkMask(full, 10).data.every((v) => v === 255)).toBe(true);
    const rect = rectMask(50, 30, 0, 0, 25, 30); // touches left, top and bottom edges
    const shrunk = shrinkMask(rect, 5);
    expect(maskBounds(shrunk)).toEqual({ x: 0, y: 0, width: 20, height: 30 });
    const inverse = { ...rect, data: rect.data.map((v) => 255 - v) };
    expect(shrunk.data).toEqual(growMask(inverse, 5).data.map((v) => 255 - v));
  });

  it("a grown-then-shrunk selection contains the original (closing), and radius 0 is a copy", () => {
    const sel = ellipseMask(120, 90, 60, 45, 40, 25, 6);
    const closed = shrinkMask(growMask(sel, 7), 7);
    expect(sel.data.filter((v, i) => closed.data[i]! < v).length).toBe(0);
    expect(growMask(sel, 0).data).toEqual(sel.data);
    expect(growMask(sel, 0).data).not.toBe(sel.data);
  });

  it("refuse negative or non-finite radii", () => {
    const m = blankMask(4, 4);
    for (const bad of [-1, Number.NaN, Infinity]) {
      expect(() => growMask(m, bad)).toThrow(ImagingError);
      expect(() => shrinkMask(m, bad)).toThrow(ImagingError);
      expect(() => featherMask(m, bad)).toThrow(ImagingError);
    }
    try {
      growMask(m, -2);
    } catch (error) {
      expect((error as ImagingError).code).toBe("invalid_argument");
    }
  });
});

describe("featherMask", () => {
  it("turns a hard edge into a symmetric ramp about 2 x radius wide", () => {
    const w = 200;
    const mask = blankMask(w, 10);
    for (let y = 0; y < 10; y++) mask.data.fill(255, y * w + 100, (y + 1) * w);
    const soft = featherMask(mask, 16);
    const row = Array.from(soft.data.subarray(5 * w, 6 * w));
    // The edge sits between x = 99 and 100: values there straddle 50%.
    expect(row[99]! + row[100]!).toBeGreaterThanOrEqual(254);
    expect(row[99]! + row[100]!).toBeLessThanOrEqual(256);
    for (let d = 0; d < 60; d++) expect(Math.abs(row[99 - d]! + row[100 + d]! - 255)).toBeLessThanOrEqual(1);
    // sigma = radius / 2 = 8: at one radius from the edge ~2.3% / 97.7%.
    expect(row[100 + 16]!).toBeGreaterThan(240);
    expect(row[99 - 16]!).toBeLessThan(15);
    expect(row[100 + 30]).toBe(255);
    expect(row[99 - 30]).toBe(0);
    for (let x = 1; x < w; x++) expect(row[x]!).toBeGreaterThanOrEqual(row[x - 1]!);
  });

  it("keeps a full mask full and an empty one empty, up to the canvas edges", () => {
    expect(featherMask(blankMask(33, 17, 255), 10).data.every((v) => v === 255)).toBe(true);
    expect(featherMask(blankMask(33, 17), 10).data.every((v) => v === 0)).toBe(true);
    const left = rectMask(60, 40, 0, 0, 30, 40);
    const soft = featherMask(left, 8);
    expect(at(soft, 0, 0)).toBe(255);
    expect(at(soft, 0, 39)).toBe(255);
  });
});

describe("masksFor", () => {
  it("on a real photo's selection: blend <= selection everywhere, 0 outside it, and the denoise mask covers it", async () => {
    const photo = await loadPhoto("chelsea.png");
    const selections = [
      ellipseMask(photo.width, photo.height, 250, 140, 90, 60, 0),
      ellipseMask(photo.width, photo.height, 120, 200, 60, 80, 12),
      rectMask(photo.width, photo.height, 0, 100, 451, 60), // touches both sides of the canvas
      rectMask(photo.width, photo.height, 300, 20, 7, 9), // tiny
    ];
    for (const selection of selections) {
      const { denoise, blend, parameters } = masksFor(selection);
      for (const [k, v] of Object.entries(parameters)) expect(v, k).toBeGreaterThan(0);
      let insideFull = 0;
      let aboveSelection = 0;
      let outside = 0;
      let denoiseBelow = 0;
      for (let i = 0; i < selection.data.length; i++) {
        const s = selection.data[i]!;
        if (blend.data[i]! > s) aboveSelection++;
        if (s === 0 && blend.data[i] !== 0) outside++;
        if (denoise.data[i]! < s) denoiseBelow++;
        if (blend.data[i] === 255) insideFull++;
      }
      expect({ aboveSelection, outside, denoiseBelow }).toEqual({ aboveSelection: 0, outside: 0, denoiseBelow: 0 });
      // Somewhere inside, the generated picture shows fully.
      expect(insideFull).toBeGreaterThan(0);
      // The denoise mask reaches past the selection.
      expect(countWhere(denoise, (v) => v > 0)).toBeGreaterThan(countWhere(selection, (v) => v > 0));
    }
  });

  it("fades the blend in inside the selection over about 2 x blend px", () => {
    const selection = rectMask(300, 300, 50, 50, 200, 200);
    const { blend, parameters } = masksFor(selection, { shrink: 10, blend: 10 });
    expect(parameters).toMatchObject({ shrink: 10, blend: 10 });
    const row = Array.from(blend.data.subarray(150 * 300, 151 * 300));
    expect(row[49]).toBe(0);
    expect(row[50]!).toBeLessThan(20);
    // The ramp is centred one shrink radius inside the edge.
    expect(Math.abs(row[59]! + row[60]! - 255)).toBeLessThan(30);
    expect(row[50 + 25]).toBe(255);
  });

  it("scales its defaults with the selection, and keeps thin selections alive", () => {
    const small = defaultMaskParameters({ width: 60, height: 40 });
    const large = defaultMaskParameters({ width: 2400, height: 1800 });
    expect(small).toEqual({ feather: 16, grow: 12, shrink: 4, blend: 4 });
    expect(large.feather).toBe(300);
    expect(large.grow).toBe(154);
    expect(large.blend).toBe(32);
    const thin = defaultMaskParameters({ width: 800, height: 12 });
    expect(thin.blend).toBe(2);
  });

  it("gives two empty masks for an empty selection, and a full blend for a full one", () => {
    const empty = masksFor(blankMask(40, 30));
    expect(empty.denoise.data.every((v) => v === 0)).toBe(true);
    expect(empty.blend.data.every((v) => v === 0)).toBe(true);
    const full = masksFor(blankMask(40, 30, 255));
    expect(full.blend.data.every((v) => v === 255)).toBe(true);
    expect(full.denoise.data.every((v) => v === 255)).toBe(true);
  });
});
