/**
 * Timings on Photoshop-sized buffers. The limits are loose (CI machines are shared); the numbers are
 * printed so a regression shows. CPU time of this process is what is measured, not wall time.
 */
import { describe, expect, it } from "vitest";
import { featherMask, growMask, masksFor, shrinkMask } from "../../../daemon/imaging/mask";
import { prefill } from "../../../daemon/imaging/prefill";
import type { Image8 } from "../../../daemon/imaging/types";
import { ellipseMask } from "./helpers";

function cpuMs(run: () => void): number {
  const start = process.cpuUsage();
  run();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

describe("performance on 4096 x 4096", () => {
  const size = 4096;
  // A large selection: an ellipse over most of the canvas, soft-edged like a feathered lasso.
  const selection = ellipseMask(size, size, 2000, 2100, 1200, 900, 8);

  it("grows, shrinks and feathers a mask in well under a second each", () => {
    const times = {
      grow16: cpuMs(() => growMask(selection, 16)),
      grow64: cpuMs(() => growMask(selection, 64)),
      shrink32: cpuMs(() => shrinkMask(selection, 32)),
      feather8: cpuMs(() => featherMask(selection, 8)),
      feather64: cpuMs(() => featherMask(selection, 64)),
      masksFor: cpuMs(() => masksFor(selection)),
    };
    console.log("4096^2 mask, CPU ms:", JSON.stringify(Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.round(v)]))));
    for (const key of ["grow16", "grow64", "shrink32", "feather8", "feather64"] as const) expect(times[key]).toBeLessThan(1500);
    expect(times.masksFor).toBeLessThan(5000);
  });

  it("pre-fills a large hole", () => {
    const image: Image8 = { width: size, height: size, channels: 3, data: new Uint8Array(size * size * 3) };
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) image.data.set([x >> 4, y >> 4, (x + y) >> 5], (y * size + x) * 3);
    const times = {
      neutral: cpuMs(() => prefill(image, selection, "neutral")),
      blur: cpuMs(() => prefill(image, selection, "blur")),
      propagate: cpuMs(() => prefill(image, selection, "propagate")),
    };
    console.log("4096^2 prefill of a 2400x1800 hole, CPU ms:", JSON.stringify(Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.round(v)]))));
    expect(times.propagate).toBeLessThan(15000);
    expect(times.blur).toBeLessThan(10000);
  });
});
