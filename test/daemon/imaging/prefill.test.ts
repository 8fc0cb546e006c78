import { describe, expect, it } from "vitest";
import { ImagingError } from "../../../daemon/imaging/errors";
import { cropImage } from "../../../daemon/imaging/image";
import { NEUTRAL_GREY, prefill, type PrefillMode } from "../../../daemon/imaging/prefill";
import type { Pixels } from "../../../geometry";
import { blankMask, debugWrite, ellipseMask, loadPhoto, rectMask } from "./helpers";

const MAGENTA = [255, 0, 255];

/** The photo with the masked pixels painted magenta: what the model must not see. */
function spoil(image: Pixels, mask: Pixels): Pixels {
  const out = { ...image, data: new Uint8Array(image.data) };
  for (let i = 0; i < mask.data.length; i++) if (mask.data[i]! > 127) for (let k = 0; k < 3; k++) out.data[i * 3 + k] = MAGENTA[k]!;
  return out;
}

function gradient(width: number, height: number, colour: (x: number, y: number) => number[]): Pixels {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) colour(x, y).forEach((v, k) => (data[(y * width + x) * 3 + k] = Math.round(v)));
  return { width, height, channels: 3, data };
}

/** Largest and mean absolute difference over the masked pixels. */
function errorIn(a: Pixels, b: Pixels, mask: Pixels): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  let n = 0;
  for (let i = 0; i < mask.data.length; i++) {
    if (mask.data[i]! <= 127) continue;
    for (let k = 0; k < 3; k++) {
      const e = Math.abs(a.data[i * 3 + k]! - b.data[i * 3 + k]!);
      max = Math.max(max, e);
      sum += e;
      n++;
    }
  }
  return { max, mean: sum / n };
}

describe("prefill", () => {
  it("fills every masked pixel (nothing of the old content is left) and leaves the others alone, in every mode", async () => {
    const photo = await loadPhoto("coffee.png");
    const selection = ellipseMask(photo.width, photo.height, 290, 190, 110, 70, 10);
    const spoiled = spoil(photo, selection);
    for (const mode of ["neutral", "blur", "propagate"] as const) {
      const filled = prefill(spoiled, selection, mode);
      await debugWrite(`prefill-${mode}.png`, filled);
      let kept = 0;
      let changed = 0;
      let magenta = 0;
      for (let i = 0; i < selection.data.length; i++) {
        const same = [0, 1, 2].every((k) => filled.data[i * 3 + k] === spoiled.data[i * 3 + k]);
        if (selection.data[i]! <= 127) {
          if (same) kept++;
        } else {
          if (!same) changed++;
          if ([0, 1, 2].every((k) => Math.abs(filled.data[i * 3 + k]! - MAGENTA[k]!) < 60)) magenta++;
        }
      }
      const masked = selection.data.filter((v) => v > 127).length;
      expect(kept, mode).toBe(selection.data.length - masked);
      expect(changed, mode).toBe(masked);
      expect(magenta, mode).toBe(0);
    }
  });

  it("neutral is mid grey; none is a copy", async () => {
    const photo = await loadPhoto("chelsea.png");
    const mask = rectMask(photo.width, photo.height, 10, 10, 30, 20);
    const grey = prefill(photo, mask, "neutral");
    expect(Array.from(grey.data.subarray((15 * photo.width + 15) * 3, (15 * photo.width + 15) * 3 + 3))).toEqual([NEUTRAL_GREY, NEUTRAL_GREY, NEUTRAL_GREY]);
    const none = prefill(photo, mask, "none");
    expect(none.data === photo.data).toBe(false);
    expect(Buffer.compare(Buffer.from(none.data), Buffer.from(photo.data))).toBe(0);
  });

  it("propagate continues a smooth gradient into a hole exactly (within 2 levels)", () => {
    const image = gradient(321, 203, (x, y) => [40 + 0.5 * x, 30 + 0.8 * y, 200 - 0.3 * x - 0.2 * y]);
    for (const mask of [rectMask(321, 203, 110, 20, 100, 160), ellipseMask(321, 203, 160, 100, 90, 60), rectMask(321, 203, 150, 90, 3, 3)]) {
      const filled = prefill(spoil(image, mask), mask, "propagate");
      const { max, mean } = errorIn(filled, image, mask);
      expect(max).toBeLessThanOrEqual(2);
      expect(mean).toBeLessThan(0.6);
    }
  });

  it("propagate fills a stripe across the whole canvas from its two sides (within 2 levels)", () => {
    // The gradient runs across the stripe; the canvas edges the stripe touches are free (no gradient along them).
    const image = gradient(320, 200, (x) => [40 + 0.5 * x, 200 - 0.4 * x, 90 + 0.2 * x]);
    const stripe = rectMask(320, 200, 130, 0, 60, 200);
    const filled = prefill(spoil(image, stripe), stripe, "propagate");
    expect(errorIn(filled, image, stripe).max).toBeLessThanOrEqual(2);
  });

  it("propagate and blur on a real photo come much closer to the truth than grey", async () => {
    const photo = await loadPhoto("coffee.png");
    const holes = [rectMask(photo.width, photo.height, 200, 120, 180, 140), rectMask(photo.width, photo.height, 470, 0, 130, 400)];
    for (const hole of holes) {
      const spoiled = spoil(photo, hole);
      const grey = errorIn(prefill(spoiled, hole, "neutral"), photo, hole).mean;
      const blur = errorIn(prefill(spoiled, hole, "blur"), photo, hole).mean;
      const propagate = errorIn(prefill(spoiled, hole, "propagate"), photo, hole).mean;
      expect(blur).toBeLessThan(0.7 * grey);
      expect(propagate).toBeLessThan(0.7 * grey);
    }
  });

  it("outpainting: the new area continues the edge colours, smoothing them with distance", () => {
    // Left half: every row a different colour. The right half is unknown.
    const image = gradient(400, 200, (x, y) => (x < 200 ? [y * 1.25, 255 - y * 1.25, 128] : [0, 0, 0]));
    const right = rectMask(400, 200, 200, 0, 200, 200);
    const filled = prefill(image, right, "propagate");
    const red = (x: number, y: number) => filled.data[(y * 400 + x) * 3]!;
    // Next to the edge each row keeps its colour (away from the corners, where the canvas edge is free).
    for (const y of [50, 100, 150]) expect(Math.abs(red(201, y) - y * 1.25)).toBeLessThanOrEqual(3);
    // Far out the rows still differ in the same order, more softly: a membrane's lowest mode decays as
    // exp(-pi * distance / height), 0.21 at 100 px out on this 200 px tall canvas.
    expect(red(300, 180) - red(300, 20)).toBeGreaterThan(25);
    expect(red(399, 180) - red(399, 20)).toBeGreaterThan(4);
    for (let y = 1; y < 200; y++) expect(red(399, y)).toBeGreaterThanOrEqual(red(399, y - 1));
  });

  it("handles soft masks (only > 127 is filled), alpha, a whole-image mask and an empty one", async () => {
    const photo = await loadPhoto("chelsea.png");
    const soft = blankMask(photo.width, photo.height, 100);
    expect(Buffer.compare(Buffer.from(prefill(photo, soft, "propagate").data), Buffer.from(photo.data))).toBe(0);
    const all = blankMask(photo.width, photo.height, 255);
    for (const mode of ["blur", "propagate", "neutral"] as PrefillMode[]) expect(prefill(photo, all, mode).data.every((v) => v === NEUTRAL_GREY)).toBe(true);
    const rgba: Pixels = { width: 40, height: 30, channels: 4, data: new Uint8Array(40 * 30 * 4) };
    for (let i = 0; i < 40 * 30; i++) rgba.data.set(i % 40 < 20 ? [200, 100, 50, 255] : [0, 0, 0, 0], i * 4);
    const filled = prefill(rgba, rectMask(40, 30, 20, 0, 20, 30), "propagate");
    expect(Array.from(filled.data.subarray((15 * 40 + 35) * 4, (15 * 40 + 35) * 4 + 4))).toEqual([200, 100, 50, 255]);
    const crop = cropImage(photo, { x: 0, y: 0, width: 50, height: 50 });
    expect(prefill(crop, blankMask(50, 50), "blur").data).toEqual(crop.data);
  });

  it("refuses a mask of another size or an unknown mode", async () => {
    const photo = await loadPhoto("chelsea.png");
    try {
      prefill(photo, blankMask(450, 300), "blur");
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ImagingError);
      expect((error as ImagingError).code).toBe("size_mismatch");
    }
    expect(() => prefill(photo, blankMask(451, 300), "smudge" as PrefillMode)).toThrow(ImagingError);
  });
});
