import { describe, expect, it } from "vitest";
import { ImagingError, isImagingError } from "../../../daemon/imaging/errors";
import { assertImage, cropImage, maskFromImage, pasteImage, thresholdMask } from "../../../daemon/imaging/image";
import { invertMask, unionMask } from "../../../daemon/imaging/mask";
import type { Pixels } from "../../../geometry";
import { blankMask, loadPhoto, sameBytes } from "./helpers";

describe("image helpers", () => {
  it("crop then paste back gives the same picture; paste lands at the exact offset", async () => {
    const photo = await loadPhoto("coffee.png");
    const region = { x: 123, y: 45, width: 77, height: 91 };
    const crop = cropImage(photo, region);
    expect(sameBytes(pasteImage(photo, crop, region).data, photo.data)).toBe(true);
    const dot: Pixels = { width: 1, height: 1, channels: 3, data: Uint8Array.from([1, 2, 3]) };
    const pasted = pasteImage(photo, dot, { x: 599, y: 399 });
    expect(Array.from(pasted.data.subarray(pasted.data.length - 3))).toEqual([1, 2, 3]);
    expect(() => pasteImage(photo, crop, { x: 550, y: 0 })).toThrow(ImagingError);
    expect(() => cropImage(photo, { x: -1, y: 0, width: 10, height: 10 })).toThrow(ImagingError);
  });

  it("reads a mask from grey, RGB and RGBA pictures (white = repaint, transparent = keep)", () => {
    const rgb: Pixels = { width: 3, height: 1, channels: 3, data: Uint8Array.from([255, 255, 255, 0, 0, 0, 128, 128, 128]) };
    expect(Array.from(maskFromImage(rgb).data)).toEqual([255, 0, 128]);
    const rgba: Pixels = { width: 2, height: 1, channels: 4, data: Uint8Array.from([255, 255, 255, 0, 255, 255, 255, 255]) };
    expect(Array.from(maskFromImage(rgba).data)).toEqual([0, 255]);
    expect(Array.from(thresholdMask(maskFromImage(rgb)).data)).toEqual([255, 0, 255]);
  });

  it("union and invert", () => {
    const a: Pixels = { width: 2, height: 1, channels: 1, data: Uint8Array.from([10, 200]) };
    const b: Pixels = { width: 2, height: 1, channels: 1, data: Uint8Array.from([50, 20]) };
    expect(Array.from(unionMask(a, b).data)).toEqual([50, 200]);
    expect(Array.from(invertMask(a).data)).toEqual([245, 55]);
    expect(() => unionMask(a, blankMask(3, 1))).toThrow(ImagingError);
  });

  it("errors carry a code and a sentence", () => {
    try {
      assertImage({ width: 0, height: 5, channels: 3, data: new Uint8Array(0) });
      expect.unreachable();
    } catch (error) {
      expect(isImagingError(error)).toBe(true);
      expect((error as ImagingError).code).toBe("invalid_argument");
      expect((error as ImagingError).message).toMatch(/^The image must be/);
    }
    expect(() => assertImage({ width: 2, height: 2, channels: 2 as 3, data: new Uint8Array(8) })).toThrow(/1, 3 or 4 channels/);
  });
});
