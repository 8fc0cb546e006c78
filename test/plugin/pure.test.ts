/** The panel's pure parts: canvas growth, pixel conversions, sizes, names and refusals. */
import { describe, expect, it } from "vitest";
import { documentRefusal } from "../../plugin/src/operations/document-check";
import { alphaBounds, asRgba, cropRgba, fitWithin, generationSize, resizeRgba, splitAlpha } from "../../plugin/src/operations/geometry";
import { groupName, layerName, shortenPrompt } from "../../plugin/src/operations/naming";
import { contextRegion } from "../../plugin/src/operations/run";
import { controlsFor } from "../../plugin/src/operations/settings";
import { anchorOffset, canvasGrowth } from "../../plugin/src/photoshop/canvas";
import type { DocumentInfo } from "../../plugin/src/photoshop/host";
import { fromRgba8, maskFrom8, padMask, padRgba, PS16_MAX, toMask8, toRgba8 } from "../../plugin/src/photoshop/pixels";

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

  it("writes at the document's depth and round-trips 8-bit values exactly", () => {
    const image = { width: 2, height: 1, data: Uint8Array.of(0, 64, 200, 255, 255, 128, 1, 7) };
    for (const componentSize of [8, 16, 32] as const) {
      const { samples, components } = fromRgba8(image, { componentSize, grayscale: false });
      expect(components).toBe(4);
      expect([...toRgba8(samples, { width: 2, height: 1, components, componentSize }).data]).toEqual([...image.data]);
    }
    const gray = fromRgba8(image, { componentSize: 8, grayscale: true });
    expect(gray.components).toBe(2);
    expect([...gray.samples]).toEqual([60, 255, 146, 7]);
    expect([...maskFrom8({ width: 2, height: 1, data: Uint8Array.of(255, 51) }, 16)]).toEqual([PS16_MAX, 6554]);
  });

  it("pads trimmed reads back to the rectangle asked for", () => {
    const src = { width: 2, height: 1, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) };
    const padded = padRgba(src, { left: 1, top: 1 }, { width: 3, height: 2 });
    expect([...padded.data]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...padMask({ width: 2, height: 1, data: Uint8Array.of(9, 9) }, { left: -1, top: 0 }, { width: 2, height: 1 }).data]).toEqual([9, 0]);
  });
});

describe("sizes and rectangles", () => {
  it("generates near the model's native area in the canvas's proportions, in multiples of 64", () => {
    expect(generationSize(451, 300, 512)).toEqual({ width: 640, height: 448 });
    expect(generationSize(4000, 1000, 512)).toEqual({ width: 1024, height: 256 });
    expect(generationSize(512, 512, 512)).toEqual({ width: 512, height: 512 });
    expect(fitWithin(4000, 1000, 1024)).toEqual({ width: 1024, height: 256 });
    expect(fitWithin(100, 50, 1024)).toEqual({ width: 100, height: 50 });
  });

  it("finds, crops and splits what a masked result shows", () => {
    const image = asRgba({ width: 3, height: 2, channels: 3, data: new Uint8Array(18).fill(9) });
    expect(alphaBounds(image)).toEqual({ x: 0, y: 0, width: 3, height: 2 });
    image.data[3] = image.data[7] = image.data[15] = image.data[19] = 0;
    expect(alphaBounds(image)).toEqual({ x: 2, y: 0, width: 1, height: 2 });
    image.data[11] = 100;
    const cropped = cropRgba(image, { x: 2, y: 0, width: 1, height: 2 });
    const { pixels, mask } = splitAlpha(cropped);
    expect([...mask.data]).toEqual([100, 255]);
    expect([...pixels.data]).toEqual([9, 9, 9, 255, 9, 9, 9, 255]);
  });

  it("resamples without darkening transparent edges, and keeps flat colours flat", () => {
    const flat = { width: 4, height: 4, data: new Uint8Array(64).fill(200) };
    const up = resizeRgba(flat, 7, 5);
    expect(new Set(up.data).size).toBe(1);
    const down = resizeRgba({ width: 4, height: 1, data: Uint8Array.of(255, 0, 0, 255, 255, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0) }, 2, 1);
    expect([...down.data.subarray(0, 3)]).toEqual([255, 0, 0]);
  });

  it("sends the whole document for inpainting when it fits, else the selection with a margin", () => {
    expect(contextRegion({ width: 400, height: 300 }, { x: 10, y: 10, width: 20, height: 20 }, 1e6)).toEqual({ x: 0, y: 0, width: 400, height: 300 });
    const region = contextRegion({ width: 4000, height: 3000 }, { x: 1000, y: 1000, width: 200, height: 100 }, 500_000);
    expect(region).toEqual({ x: 800, y: 800, width: 600, height: 500 });
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
