import { describe, expect, it } from "vitest";
import { ImagingError } from "../../../daemon/imaging/errors";
import { cropImage } from "../../../daemon/imaging/image";
import { cropAndResize, resizeTo } from "../../../daemon/imaging/resample";
import type { Pixels } from "../../../geometry";
import { loadPhoto, random, sameBytes } from "./helpers";

describe("cropAndResize / resizeTo", () => {
  it("copies bit for bit when no resampling is needed", async () => {
    const photo = await loadPhoto("coffee.png");
    const region = { x: 37, y: 21, width: 203, height: 117 };
    const crop = await cropAndResize(photo, region, { width: 203, height: 117 });
    expect(sameBytes(crop.data, cropImage(photo, region).data)).toBe(true);
    for (let y = 0; y < 117; y++) {
      const from = ((21 + y) * photo.width + 37) * 3;
      expect(sameBytes(crop.data.subarray(y * 203 * 3, (y + 1) * 203 * 3), photo.data.subarray(from, from + 203 * 3))).toBe(true);
    }
    expect(sameBytes((await resizeTo(photo, photo)).data, photo.data)).toBe(true);
  });

  it("resamples to the exact size, in 1, 3 and 4 channels, and back to about the same picture", async () => {
    const photo = await loadPhoto("chelsea.png");
    const region = { x: 0, y: 0, width: 451, height: 300 };
    const size = { width: 624, height: 416 };
    const up = await cropAndResize(photo, region, size);
    expect(up).toMatchObject({ width: 624, height: 416, channels: 3 });
    expect(up.data.length).toBe(624 * 416 * 3);
    const back = await resizeTo(up, photo);
    expect(back).toMatchObject({ width: 451, height: 300, channels: 3 });
    let error = 0;
    for (let i = 0; i < back.data.length; i++) error += Math.abs(back.data[i]! - photo.data[i]!);
    expect(error / back.data.length).toBeLessThan(4);
    const grey: Pixels = { width: 451, height: 300, channels: 1, data: photo.data.filter((_, i) => i % 3 === 1) };
    expect(await cropAndResize(grey, { x: 10, y: 10, width: 100, height: 50 }, { width: 64, height: 32 })).toMatchObject({ width: 64, height: 32, channels: 1 });
    const rgba: Pixels = { width: 451, height: 300, channels: 4, data: new Uint8Array(451 * 300 * 4).fill(200) };
    for (let i = 3; i < rgba.data.length; i += 8) rgba.data[i] = 255;
    const rgbaOut = await cropAndResize(rgba, { x: 10, y: 10, width: 100, height: 50 }, { width: 64, height: 32 });
    expect(rgbaOut).toMatchObject({ width: 64, height: 32, channels: 4 });
    // Resampling with alpha goes through premultiplied 8-bit values: colours stay within 2 levels.
    expect(rgbaOut.data.every((v, i) => (i % 4 === 3 ? v >= 200 && v <= 255 : Math.abs(v - 200) <= 2))).toBe(true);
  });

  it("refuses regions off the image", async () => {
    const photo = await loadPhoto("chelsea.png");
    await expect(cropAndResize(photo, { x: 400, y: 0, width: 100, height: 10 }, { width: 8, height: 8 })).rejects.toThrow(ImagingError);
    await expect(cropAndResize(photo, { x: 0, y: 0, width: 10.5, height: 10 }, { width: 8, height: 8 })).rejects.toThrow(ImagingError);
  });
});
