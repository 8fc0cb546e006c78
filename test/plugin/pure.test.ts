/** The panel's pure parts: canvas growth, pixel conversions, sizes, placing results, names and refusals. */
import { describe, expect, it } from "vitest";
import { fitWithin, wholePictureSize } from "../../geometry";
import type { JobResult } from "../../plugin/src/client/client";
import { PanelError } from "../../plugin/src/errors";
import { documentRefusal } from "../../plugin/src/operations/document-check";
import { asRgba, resizeRgba } from "../../plugin/src/operations/layer-pixels";
import { groupName, layerName, shortenPrompt } from "../../plugin/src/operations/naming";
import { placeResult } from "../../plugin/src/operations/run";
import { controlsFor, DEFAULT_SETTINGS, type GenerationSettings } from "../../plugin/src/operations/settings";
import { anchorOffset, canvasGrowth } from "../../plugin/src/photoshop/canvas";
import type { DocumentInfo } from "../../plugin/src/photoshop/host";
import { colourBand, maskBand, padMask, padRgba, PS16_MAX, sampleBuffer, toMask8, toRgba8 } from "../../plugin/src/photoshop/pixels";

describe("growing the canvas with one anchor per resize", () => {
  it("uses one resize when an anchor can say it", () => {
    expect(canvasGrowth(100, 50, { left: 128, top: 0, right: 0, bottom: 0 })).toEqual([{ width: 228, height: 50, anchor: "top-right" }]);
    expect(canvasGrowth(100, 50, { left: 0, top: 0, right: 10, bottom: 20 })).toEqual([{ width: 110, height: 70, anchor: "top-left" }]);
    expect(canvasGrowth(100, 50, { left: 8, top: 4, right: 8, bottom: 0 })).toEqual([{ width: 116, height: 54, anchor: "bottom-center" }]);
    expect(canvasGrowth(100, 50, { left: 0, top: 0, right: 0, bottom: 0 })).toEqual([]);
  });

  it("splits uneven growth on one axis into before-sides, then after-sides", () => {
    const steps = canvasGrowth(100, 50, { left: 30, top: 0, right: 10, bottom: 5 });
    expect(steps).toEqual([
      { width: 130, height: 50, anchor: "bottom-right" },
      { width: 140, height: 55, anchor: "top-left" },
    ]);
    // The old (0, 0) ends up at (left, top) whatever the plan.
    let x = 0;
    let y = 0;
    let [w, h] = [100, 50];
    for (const step of steps) {
      const o = anchorOffset(step, w, h);
      x += o.x;
      y += o.y;
      [w, h] = [step.width, step.height];
    }
    expect([x, y]).toEqual([30, 0]);
  });
});

describe("pixels between Photoshop's depths and the panel's 8-bit sRGB", () => {
  it("reads 8-, 16- (0..32768) and 32-bit (linear) data, gray or RGB, with or without alpha", () => {
    expect([...toRgba8(Uint8Array.of(10, 20, 30), { width: 1, height: 1, components: 3, componentSize: 8 }).data]).toEqual([10, 20, 30, 255]);
    expect([...toRgba8(Uint16Array.of(0, 16384, PS16_MAX, 16384), { width: 1, height: 1, components: 4, componentSize: 16 }).data]).toEqual([0, 128, 255, 128]);
    expect([...toRgba8(Float32Array.of(0.2158605, 2), { width: 1, height: 1, components: 2, componentSize: 32 }).data]).toEqual([128, 128, 128, 255]);
    expect([...toMask8(Uint16Array.of(PS16_MAX, 0), { width: 2, height: 1, components: 1, componentSize: 16 }).data]).toEqual([255, 0]);
  });

  it("writes at the document's depth, a band of rows into a reused buffer, and round-trips 8-bit values exactly", () => {
    const image = { width: 2, height: 2, channels: 4 as const, data: Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9, 0, 64, 200, 255, 255, 128, 1, 7) };
    for (const componentSize of [8, 16, 32] as const) {
      const format = { componentSize, grayscale: false, alpha: true };
      const buffer = sampleBuffer(componentSize, 16);
      // The second row only, at the start of the buffer.
      const samples = colourBand(image, 1, 1, format, buffer);
      expect([samples.length, samples.buffer]).toEqual([8, buffer.buffer]);
      expect([...toRgba8(samples, { width: 2, height: 1, components: 4, componentSize }).data]).toEqual([...image.data.subarray(8)]);
    }
    const gray = colourBand(image, 1, 1, { componentSize: 8, grayscale: true, alpha: true }, sampleBuffer(8, 4));
    expect([...gray]).toEqual([60, 255, 146, 7]);
    // RGB is opaque; RGBA's alpha left out when it becomes the mask.
    const rgb = { width: 1, height: 1, channels: 3 as const, data: Uint8Array.of(255, 0, 51) };
    expect([...colourBand(rgb, 0, 1, { componentSize: 16, grayscale: false, alpha: true }, sampleBuffer(16, 4))]).toEqual([PS16_MAX, 0, 6554, PS16_MAX]);
    expect([...colourBand(image, 1, 1, { componentSize: 8, grayscale: false, alpha: false }, sampleBuffer(8, 6))]).toEqual([0, 64, 200, 255, 128, 1]);
    expect([...maskBand({ width: 2, height: 1, channels: 1, data: Uint8Array.of(255, 51) }, 0, 0, 1, 16, sampleBuffer(16, 2))]).toEqual([PS16_MAX, 6554]);
    expect([...maskBand(image, 3, 1, 1, 8, sampleBuffer(8, 2))]).toEqual([255, 7]);
  });

  it("pads trimmed reads back to the rectangle asked for", () => {
    const src = { width: 2, height: 1, channels: 4 as const, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) };
    const padded = padRgba(src, { left: 1, top: 1 }, { width: 3, height: 2 });
    expect([...padded.data]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...padMask({ width: 2, height: 1, channels: 1, data: Uint8Array.of(9, 9) }, { left: -1, top: 0 }, { width: 2, height: 1 }).data]).toEqual([9, 0]);
  });
});

describe("sizes and rectangles", () => {
  it("makes whole pictures at most at the model's native area in the canvas's proportions, in multiples of 64 (geometry's rule)", () => {
    // 640x448 would be over 512 x 512 pixels: the longer side gives way.
    expect(wholePictureSize({ width: 451, height: 300 }, 512)).toEqual({ width: 576, height: 448 });
    expect(wholePictureSize({ width: 4000, height: 1000 }, 512)).toEqual({ width: 1024, height: 256 });
    expect(wholePictureSize({ width: 512, height: 512 }, 512)).toEqual({ width: 512, height: 512 });
  });

  it("shrinks thumbnails to a longest side, never enlarging (geometry's fitWithin)", () => {
    expect(fitWithin({ width: 4000, height: 1000 }, 1024)).toEqual({ width: 1024, height: 256 });
    expect(fitWithin({ width: 100, height: 50 }, 1024)).toEqual({ width: 100, height: 50 });
    expect(fitWithin({ width: 1, height: 5000 }, 128)).toEqual({ width: 1, height: 128 });
  });

  it("widens gray and RGB pixels to opaque RGBA", () => {
    const rgb = asRgba({ width: 1, height: 2, channels: 3, data: Uint8Array.of(1, 2, 3, 4, 5, 6) });
    expect([...rgb.data]).toEqual([1, 2, 3, 255, 4, 5, 6, 255]);
    expect([...asRgba({ width: 1, height: 1, channels: 1, data: Uint8Array.of(7) }).data]).toEqual([7, 7, 7, 255]);
  });

  it("resamples without darkening transparent edges, and keeps flat colours flat", () => {
    const flat = { width: 4, height: 4, channels: 4 as const, data: new Uint8Array(64).fill(200) };
    const up = resizeRgba(flat, 7, 5);
    expect(new Set(up.data).size).toBe(1);
    const down = resizeRgba({ width: 4, height: 1, channels: 4, data: Uint8Array.of(255, 0, 0, 255, 255, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0) }, 2, 1);
    expect([...down.data.subarray(0, 3)]).toEqual([255, 0, 0]);
  });

});

describe("placing a result where the daemon says", () => {
  const settings = (mode: GenerationSettings["mode"]): GenerationSettings => ({ ...DEFAULT_SETTINGS, mode, prompt: "a cat" });
  const result = (region: JobResult["region"], channels: 3 | 4, fill: (i: number) => number): JobResult => ({
    variation: 0,
    seed: 5,
    region,
    image: {
      kind: "result", jobId: 1, frameId: 1, width: region.width, height: region.height, channels, bitsPerChannel: 8,
      data: Uint8Array.from({ length: region.width * region.height * channels }, (_, i) => fill(i)),
    },
  });

  it("puts a whole picture at its region, opaque, as it came (RGB: no copy, no resampling)", () => {
    for (const mode of ["generate", "img2img"] as const) {
      const sent = result({ x: 0, y: 0, width: 3, height: 2 }, 3, (i) => i);
      const layer = placeResult(sent, settings(mode), { width: 3, height: 2 });
      expect(layer).toMatchObject({ name: "a cat · seed 5", x: 0, y: 0 });
      expect(layer.mask).toBeUndefined();
      expect([layer.pixels.width, layer.pixels.height, layer.pixels.channels]).toEqual([3, 2, 3]);
      expect(layer.pixels.data).toBe(sent.image.data);
      const rgba = placeResult(result({ x: 0, y: 0, width: 1, height: 1 }, 4, (i) => i), settings(mode), { width: 3, height: 2 });
      expect([...rgba.pixels.data]).toEqual([0, 1, 2, 255]);
    }
  });

  it("puts an edit at its region as it came (no trimming in the panel), its alpha to become the layer mask", () => {
    // An inpaint result 2x1 at 5,7 of the document; its alpha is the blend, 0 at one end.
    const sent = result({ x: 5, y: 7, width: 2, height: 1 }, 4, (i) => (i % 4 === 3 ? (i === 3 ? 0 : 200) : 50));
    const inpaint = placeResult(sent, settings("inpaint"), { width: 10, height: 10 });
    expect(inpaint).toMatchObject({ x: 5, y: 7, mask: "alpha" });
    expect(inpaint.pixels.data).toBe(sent.image.data);
    expect([...inpaint.pixels.data]).toEqual([50, 50, 50, 0, 50, 50, 50, 200]);
    // An expand result is in the grown canvas's pixels: the strip at the left.
    const expand = placeResult(result({ x: 0, y: 0, width: 4, height: 10 }, 4, () => 255), { ...settings("expand"), expand: { left: 4, top: 0, right: 0, bottom: 0 } }, { width: 14, height: 10 });
    expect(expand).toMatchObject({ x: 0, y: 0, mask: "alpha" });
    expect([expand.pixels.width, expand.pixels.height]).toEqual([4, 10]);
  });

  it("refuses a result whose pixels are not its region's size, or that lies off the canvas", () => {
    const wrongSize = { ...result({ x: 0, y: 0, width: 2, height: 2 }, 4, () => 255), region: { x: 0, y: 0, width: 3, height: 2 } };
    expect(() => placeResult(wrongSize, settings("inpaint"), { width: 10, height: 10 })).toThrow(PanelError);
    expect(() => placeResult(result({ x: 10, y: 0, width: 2, height: 2 }, 4, () => 255), settings("inpaint"), { width: 10, height: 10 })).toThrow(
      /does not fit the canvas; nothing was placed/,
    );
  });
});

describe("words", () => {
  it("names layers after the prompt and the seed, shortened at a word", () => {
    expect(layerName("a cat", 42)).toBe("a cat · seed 42");
    expect(layerName("   ", 1)).toBe("Underpaint · seed 1");
    expect(shortenPrompt("a very long prompt about a lighthouse on a cliff at dusk, oil painting")).toBe("a very long prompt about a lighthouse on…");
    expect(groupName("inpaint", "a cat")).toBe("Underpaint Inpaint selection · a cat");
  });

  it("refuses CMYK, Lab, Indexed and Bitmap documents with a sentence that says what to do", () => {
    const doc = (mode: DocumentInfo["mode"]): DocumentInfo => ({ id: 1, title: "t", width: 1, height: 1, mode, bitsPerChannel: 8, selection: null, activeLayer: null });
    expect(documentRefusal(doc("rgb"))).toBeUndefined();
    expect(documentRefusal(doc("grayscale"))).toBeUndefined();
    expect(documentRefusal(doc("lab"))).toMatch(/^This document is in Lab mode.*Image > Mode > RGB Color/);
    expect(documentRefusal(doc("indexed"))).toMatch(/^This document is in Indexed Color mode/);
    expect(documentRefusal(doc("bitmap"))).toMatch(/Image > Mode > Grayscale, then Image > Mode > RGB Color/);
  });

  it("shows only the controls a mode uses", () => {
    expect([...controlsFor("generate")]).toEqual([]);
    expect([...controlsFor("img2img")].sort()).toEqual(["source", "strength"]);
    expect([...controlsFor("inpaint")].sort()).toEqual(["context", "strength"]);
    expect([...controlsFor("expand")]).toEqual(["expand"]);
  });
});
