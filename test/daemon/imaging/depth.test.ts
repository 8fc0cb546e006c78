/**
 * Depth from a picture (daemon/imaging/depth.ts): DPTImageProcessor's resize rule, its rescale and
 * normalisation, the min-max normalised depth, and which layers count as depth maps already.
 */
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { constrainToMultipleOf, depthInputSize, depthPixelValues, dptResizeSize, estimateDepth, isGreyLayer, normalizedDepth, roundHalfEven, type DepthPreprocessing } from "../../../daemon/imaging/depth";
import { controlImage } from "../../../daemon/imaging/control-image";
import type { Pixels } from "../../../geometry";

/** onnx-community/depth-anything-v2-small's preprocessor_config.json, in depth.ts' words. */
const DEPTH_ANYTHING: DepthPreprocessing = {
  resize: { width: 518, height: 518 },
  keepAspectRatio: true,
  multipleOf: 14,
  resample: 3,
  rescaleFactor: 1 / 255,
  normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
};

/** transformers' get_resize_output_image_size and constrain_to_multiple_of, written out as in Python (round() halves to even). */
function transformersSize(w: number, h: number): { width: number; height: number } {
  const pyRound = (x: number) => {
    const f = Math.floor(x);
    const d = x - f;
    return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
  };
  const constrain = (v: number) => pyRound(v / 14) * 14;
  let sh = 518 / h;
  let sw = 518 / w;
  if (Math.abs(1 - sw) < Math.abs(1 - sh)) sh = sw;
  else sw = sh;
  return { width: constrain(sw * w), height: constrain(sh * h) };
}

function picture(width: number, height: number, channels: 1 | 3 | 4, fill: (x: number, y: number) => number[]): Pixels {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(fill(x, y), (y * width + x) * channels);
  return { width, height, channels, data };
}

describe("the size a picture is resized to", () => {
  it("follows transformers' rule: the scale closer to 1 for both sides, each side a multiple of 14", () => {
    // 640x480: the height's scale (1.079) is closer to 1 than the width's (0.809): 518 high, 640 x 1.079 = 690.7 -> 686 wide.
    expect(dptResizeSize({ width: 640, height: 480 }, { width: 518, height: 518 }, true, 14)).toEqual({ width: 686, height: 518 });
    // 1000x200: the width's scale (0.518) is closer to 1: 518 wide, 103.6 -> 98 high.
    expect(dptResizeSize({ width: 1000, height: 200 }, { width: 518, height: 518 }, true, 14)).toEqual({ width: 518, height: 98 });
    // 518x259: scale 1 for the width, so 259 high = 18.5 patches, which Python's round() takes to 18: 252.
    expect(dptResizeSize({ width: 518, height: 259 }, { width: 518, height: 518 }, true, 14)).toEqual({ width: 518, height: 252 });
    // Without keep_aspect_ratio: the target itself.
    expect(dptResizeSize({ width: 640, height: 480 }, { width: 518, height: 518 }, false, 14)).toEqual({ width: 518, height: 518 });
    for (const [w, h] of [[512, 512], [768, 512], [64, 64], [96, 72], [1920, 1080], [300, 1200], [777, 333], [518, 259]] as const) {
      const size = dptResizeSize({ width: w, height: h }, { width: 518, height: 518 }, true, 14);
      expect(size, `${w}x${h}`).toEqual(transformersSize(w, h));
      expect([size.width % 14, size.height % 14]).toEqual([0, 0]);
      expect(Math.min(size.width, size.height) === 518 || Math.max(size.width, size.height) === 518).toBe(true);
    }
  });

  it("rounds halves to even as Python does, and never gives a side of 0", () => {
    expect([0.5, 1.5, 2.5, 18.5, -0.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, 18, -0, 2, 3]);
    expect([constrainToMultipleOf(21, 14), constrainToMultipleOf(35, 14), constrainToMultipleOf(3, 14)]).toEqual([28, 28, 14]);
    expect(depthInputSize({ width: 10, height: 30 }, { ...DEPTH_ANYTHING, resize: null })).toEqual({ width: 14, height: 28 });
  });
});

describe("pixel_values", () => {
  it("are the picture resized bicubically by sharp, rescaled by 1/255 and normalised per channel, channels first", async () => {
    const layer = picture(64, 48, 3, (x, y) => [x * 4, y * 5, 200]);
    const { data, size } = await depthPixelValues(layer, DEPTH_ANYTHING);
    expect(size).toEqual(transformersSize(64, 48));
    const resized = await sharp(layer.data, { raw: { width: 64, height: 48, channels: 3 } }).resize(size.width, size.height, { fit: "fill", kernel: "cubic" }).raw().toBuffer();
    const plane = size.width * size.height;
    expect(data.length).toBe(3 * plane);
    for (const i of [0, 1, 517, plane - 1, 12_345]) {
      for (let c = 0; c < 3; c++) {
        const mean = [0.485, 0.456, 0.406][c]!;
        const std = [0.229, 0.224, 0.225][c]!;
        expect(data[c * plane + i]).toBeCloseTo((resized[3 * i + c]! / 255 - mean) / std, 5);
      }
    }
  });

  it("flatten transparency onto white first", async () => {
    const clear = picture(14, 14, 4, () => [0, 0, 0, 0]);
    const { data } = await depthPixelValues(clear, { ...DEPTH_ANYTHING, resize: null });
    expect(data[0]).toBeCloseTo((1 - 0.485) / 0.229, 5);
  });
});

describe("the depth map", () => {
  it("is min-max normalised to 0..255, the largest (nearest) white; a flat depth is black", () => {
    const depth = normalizedDepth({ width: 3, height: 1, data: Float32Array.from([2, 4, 6]) });
    expect([depth.channels, Array.from(depth.data)]).toEqual([1, [0, 128, 255]]);
    expect(Array.from(normalizedDepth({ width: 2, height: 1, data: Float32Array.from([5, 5]) }).data)).toEqual([0, 0]);
    expect(() => normalizedDepth({ width: 1, height: 1, data: Float32Array.from([Number.NaN]) })).toThrow(/not a finite number/);
  });

  it("is made at the estimator's size from what it gives, then resized to the generation size", async () => {
    const seen: { width: number; height: number }[] = [];
    // A stand-in runner: depth = the prepared picture's red channel (so nearer = redder).
    const runner = {
      preprocessing: DEPTH_ANYTHING,
      async run(values: Float32Array, size: { width: number; height: number }) {
        seen.push(size);
        return { ...size, data: values.slice(0, size.width * size.height) };
      },
    };
    const layer = picture(96, 72, 3, (x) => [x < 48 ? 250 : 10, 100, 30]);
    const map = await estimateDepth(runner, layer, { width: 64, height: 48 });
    expect(seen).toEqual([transformersSize(96, 72)]);
    expect([map.width, map.height, map.channels]).toEqual([64, 48, 1]);
    // Near white on the red half, near black on the other (bicubic's overshoot at the step takes the extremes).
    expect(map.data[64 * 10 + 2]).toBeGreaterThan(240);
    expect(map.data[64 * 10 + 60]).toBeLessThan(15);
    // The control image: the map in all three channels, in [0, 1]; a grey layer is not sent to the runner.
    const control = await controlImage("depth", layer, { width: 64, height: 48 }, { depth: runner });
    expect(Array.from(control.subarray(0, 64 * 48)).map((v) => Math.round(v * 255))).toEqual(Array.from(map.data));
    expect(Array.from(control.subarray(2 * 64 * 48))).toEqual(Array.from(control.subarray(0, 64 * 48)));
    const grey = picture(64, 48, 3, (x) => [x * 3, x * 3, x * 3]);
    seen.length = 0;
    const passed = await controlImage("depth", grey, { width: 64, height: 48 }, { depth: runner });
    expect(seen).toEqual([]);
    expect(Math.round(passed[5]! * 255)).toBe(15);
  });
});

describe("a layer that is a depth map already", () => {
  it("is grey: red, green and blue within 2 levels everywhere; any colour makes it a picture", () => {
    expect(isGreyLayer(picture(8, 8, 1, (x) => [x]))).toBe(true);
    expect(isGreyLayer(picture(8, 8, 3, (x) => [x * 30, x * 30 + 2, x * 30 + 1]))).toBe(true);
    expect(isGreyLayer(picture(8, 8, 4, (x) => [x * 30, x * 30, x * 30, 255]))).toBe(true);
    expect(isGreyLayer(picture(8, 8, 3, (x, y) => (x === 7 && y === 7 ? [200, 100, 100] : [50, 50, 50])))).toBe(false);
  });
});
