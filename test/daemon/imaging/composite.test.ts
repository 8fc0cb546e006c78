import { describe, expect, it } from "vitest";
import { applyColourCorrection, colourCorrection, composite, layerPixels, matchColours, outerRing } from "../../../daemon/imaging/composite";
import { resizeTo } from "../../../daemon/imaging/resample";
import { ImagingError } from "../../../daemon/imaging/errors";
import { masksFor } from "../../../daemon/imaging/mask";
import { deltaE76 } from "../../../daemon/imaging/metrics";
import type { Pixels } from "../../../geometry";
import { blankMask, debugWrite, ellipseMask, loadPhoto, sameBytes } from "./helpers";

/** The photo with its colours shifted the way a VAE round trip can drift: gains and offsets per channel. */
function shifted(image: Pixels, gain: number[], offset: number[]): Pixels {
  const data = new Uint8Array(image.data.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, Math.round(gain[i % 3]! * image.data[i]! + offset[i % 3]!)));
  return { ...image, data };
}

/** Counts pixels where `test(i)` fails. */
function violations(n: number, test: (i: number) => boolean): number {
  let bad = 0;
  for (let i = 0; i < n; i++) if (!test(i)) bad++;
  return bad;
}

describe("composite", () => {
  it("leaves every pixel where blend == 0 bit-identical, takes the generated one where blend == 255, rounds the rest exactly", async () => {
    const chelsea = await loadPhoto("chelsea.png");
    const coffee = await resizeTo(await loadPhoto("coffee.png"), chelsea);
    const selections = [ellipseMask(451, 300, 220, 150, 120, 80, 16), ellipseMask(451, 300, 30, 280, 60, 40, 0)];
    for (const selection of selections) {
      const { blend } = masksFor(selection);
      const out = composite(chelsea, coffee, blend);
      await debugWrite("composite.png", out);
      const n = 451 * 300;
      const b = blend.data;
      const px = (img: Pixels, i: number, k: number) => img.data[i * 3 + k]!;
      expect(violations(n, (i) => b[i] !== 0 || [0, 1, 2].every((k) => px(out, i, k) === px(chelsea, i, k)))).toBe(0);
      expect(violations(n, (i) => b[i] !== 255 || [0, 1, 2].every((k) => px(out, i, k) === px(coffee, i, k)))).toBe(0);
      expect(
        violations(n, (i) => [0, 1, 2].every((k) => px(out, i, k) === Math.round((px(chelsea, i, k) * (255 - b[i]!) + px(coffee, i, k) * b[i]!) / 255))),
      ).toBe(0);
      // And the untouched part as one block of bytes: rows above the selection are the same memory.
      const firstRow = Math.min(...Array.from(b.keys()).filter((i) => b[i]! > 0)) / 451;
      const rows = Math.floor(firstRow);
      expect(sameBytes(out.data.subarray(0, rows * 451 * 3), chelsea.data.subarray(0, rows * 451 * 3))).toBe(true);
    }
  });

  it("rounds exactly for every pair of values and every blend (the integer shortcut)", () => {
    const original: Pixels = { width: 256, height: 256, channels: 1, data: new Uint8Array(65536) };
    const generated: Pixels = { width: 256, height: 256, channels: 1, data: new Uint8Array(65536) };
    for (let i = 0; i < 65536; i++) {
      original.data[i] = i & 255;
      generated.data[i] = i >> 8;
    }
    for (const w of [1, 2, 63, 127, 128, 200, 254]) {
      const out = composite(original, generated, blankMask(256, 256, w));
      expect(violations(65536, (i) => out.data[i] === Math.round(((i & 255) * (255 - w) + (i >> 8) * w) / 255))).toBe(0);
    }
  });

  it("keeps the original's alpha where blend == 0 and makes generated pixels opaque", async () => {
    const chelsea = await loadPhoto("chelsea.png");
    const n = 451 * 300;
    const rgba: Pixels = { width: 451, height: 300, channels: 4, data: new Uint8Array(n * 4) };
    for (let i = 0; i < n; i++) rgba.data.set([chelsea.data[i * 3]!, chelsea.data[i * 3 + 1]!, chelsea.data[i * 3 + 2]!, i % 451 < 200 ? 255 : (i * 7) & 255], i * 4);
    const generated = { ...chelsea, data: chelsea.data.map((v) => 255 - v) };
    const { blend } = masksFor(ellipseMask(451, 300, 230, 150, 100, 70, 10));
    const out = composite(rgba, generated, blend);
    expect(out.channels).toBe(4);
    expect(violations(n, (i) => blend.data[i] !== 0 || sameBytes(out.data.subarray(i * 4, i * 4 + 4), rgba.data.subarray(i * 4, i * 4 + 4)))).toBe(0);
    expect(violations(n, (i) => blend.data[i] !== 255 || (out.data[i * 4 + 3] === 255 && out.data[i * 4] === generated.data[i * 3]))).toBe(0);
    // Alpha only grows towards opaque where something was generated.
    expect(violations(n, (i) => out.data[i * 4 + 3]! >= rgba.data[i * 4 + 3]!)).toBe(0);
  });

  it("refuses pictures and masks of different sizes", async () => {
    const chelsea = await loadPhoto("chelsea.png");
    const coffee = await loadPhoto("coffee.png");
    try {
      composite(chelsea, coffee, blankMask(451, 300));
      expect.unreachable();
    } catch (error) {
      expect((error as ImagingError).code).toBe("size_mismatch");
    }
    expect(() => composite(chelsea, chelsea, blankMask(450, 300))).toThrow(ImagingError);
    expect(() => composite(chelsea, chelsea, { ...chelsea })).toThrow(/one channel/);
  });
});

describe("layerPixels", () => {
  it("is RGBA: the generated colours and alpha = blend", async () => {
    const chelsea = await loadPhoto("chelsea.png");
    const { blend } = masksFor(ellipseMask(451, 300, 230, 150, 100, 70, 10));
    const layer = layerPixels(chelsea, blend);
    expect(layer).toMatchObject({ width: 451, height: 300, channels: 4 });
    expect(violations(451 * 300, (i) => layer.data[i * 4 + 3] === blend.data[i] && layer.data[i * 4 + 1] === chelsea.data[i * 3 + 1])).toBe(0);
  });
});

describe("matchColours", () => {
  it("brings a colour-shifted generated picture's ring delta-E down", async () => {
    for (const name of ["chelsea.png", "coffee.png"] as const) {
      const original = await loadPhoto(name);
      const { width, height } = original;
      const selection = ellipseMask(width, height, width * 0.5, height * 0.5, width * 0.25, height * 0.25, 8);
      // The model's picture: the same scene drifted in colour, with something else inside the selection.
      const drifted = shifted(original, [0.85, 1.0, 1.12], [22, 9, -18]);
      const generated = { ...drifted, data: new Uint8Array(drifted.data) };
      for (let i = 0; i < width * height; i++) if (selection.data[i]! > 0) generated.data.set([30, 160, 40], i * 3);
      const { ring } = outerRing(selection);
      const ringMask: Pixels = { width, height, channels: 1, data: ring };
      const before = deltaE76(generated, original, ringMask);
      const matched = matchColours(generated, original, selection);
      const after = deltaE76(matched, original, ringMask);
      expect(before).toBeGreaterThan(5);
      expect(after).toBeLessThan(before / 3);
      expect(after).toBeLessThan(2.5);
      // What is inside the selection gets the same correction (it is not what the statistics came from).
      const fix = colourCorrection(generated, original, selection);
      expect(fix.ringPixels).toBeGreaterThan(1000);
      expect(fix.gain[0]).toBeCloseTo(1 / 0.85, 1);
      expect(fix.offset[2]).toBeGreaterThan(5);
    }
  });

  it("is the identity for an empty mask, a full mask, or identical pictures", async () => {
    const chelsea = await loadPhoto("chelsea.png");
    const drifted = shifted(chelsea, [1.1, 1, 1], [5, 0, 0]);
    expect(sameBytes(matchColours(drifted, chelsea, blankMask(451, 300)).data, drifted.data)).toBe(true);
    expect(sameBytes(matchColours(drifted, chelsea, blankMask(451, 300, 255)).data, drifted.data)).toBe(true);
    const selection = ellipseMask(451, 300, 200, 150, 80, 60);
    expect(sameBytes(matchColours(chelsea, chelsea, selection).data, chelsea.data)).toBe(true);
  });

  it("does not blow up a flat ring, and keeps alpha", () => {
    const flat: Pixels = { width: 60, height: 40, channels: 4, data: new Uint8Array(60 * 40 * 4).fill(100) };
    const flatter: Pixels = { width: 60, height: 40, channels: 4, data: new Uint8Array(60 * 40 * 4).fill(90) };
    const selection = ellipseMask(60, 40, 30, 20, 10, 8);
    const fix = colourCorrection(flatter, flat, selection);
    expect(fix.gain).toEqual([1, 1, 1]);
    expect(fix.offset.map((v) => Math.round(v))).toEqual([10, 10, 10]);
    const out = applyColourCorrection(flatter, fix);
    expect(out.data[3]).toBe(90);
    expect(out.data[0]).toBe(100);
  });
});
