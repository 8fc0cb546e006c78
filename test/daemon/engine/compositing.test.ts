/**
 * Seams and colour shift at the mask edge, measured on a real photograph through the real engine.
 * The tiny fixture model paints noise, the worst case a compositor can get: what the defaults
 * achieve here, they achieve with any model.
 */
import { describe, expect, it } from "vitest";
import { measureCompositing } from "../../../scripts/bench/compositing";
import { FIXTURES_DIR } from "../../helpers/paths";

describe("compositing a masked edit", () => {
  it("leaves the original bit-identical outside the blend mask, with no visible seam or colour shift at the edge", async () => {
    const { seamless, off } = await measureCompositing(FIXTURES_DIR, { budget: 128 * 128, steps: 2 });
    expect(seamless.changedOutside).toBe(0);
    expect(off.changedOutside).toBe(0);
    // Seam ratio: mean gradient across the selection border over the photo's own gradient inside
    // the original area. 1 = the border is as busy as the photo's texture; a hard paste of noise
    // is about 1.7 here. Up to 1.2 the edge does not stand out from the fur around it.
    expect(seamless.seamRatio).toBeLessThan(1.2);
    expect(seamless.seamRatio).toBeLessThan(off.seamRatio / 1.5);
    // Mean CIE76 ΔE in an 8 px ring straddling the selection edge: 2.3 is a just-noticeable
    // difference, and about 5 is where side-by-side patches look different. The hard paste is
    // above 30 (the model's colours); the defaults must keep it under 6.
    expect(seamless.ringDeltaE).toBeLessThan(6);
    expect(seamless.ringDeltaE).toBeLessThan(off.ringDeltaE / 3);
  });
});
