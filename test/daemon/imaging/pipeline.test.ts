/**
 * The imaging steps of a masked edit end to end, with a stand-in for the model: what the engine does
 * around the UNet. The stand-in returns the scene softened and colour-drifted (as a VAE round trip and
 * sampling do) with other content inside the selection, so seams and colour shifts are real.
 */
import { describe, expect, it } from "vitest";
import { composite, matchColours } from "../../../daemon/imaging/composite";
import { cropAndResize, resizeTo } from "../../../daemon/imaging/resample";
import { cropImage, pasteImage } from "../../../daemon/imaging/image";
import { maskBounds, masksFor } from "../../../daemon/imaging/mask";
import { deltaE76, ringAround, seamScore } from "../../../daemon/imaging/metrics";
import { expandCanvas } from "../../../daemon/imaging/outpaint";
import { prefill } from "../../../daemon/imaging/prefill";
import { contextRegion, generationSize, type Pixels, type Region } from "../../../geometry";
import { debugWrite, ellipseMask, loadPhoto, rectMask } from "./helpers";

/** The stand-in model: softened, drifted, and at mask > 127 a piece of elsewhere (its own input, shifted). */
async function standInModel(input: Pixels, mask: Pixels): Promise<Pixels> {
  const soft = await resizeTo(await resizeTo(input, { width: Math.round(input.width / 2), height: Math.round(input.height / 2) }), input);
  const out = new Uint8Array(soft.data.length);
  const { width, height } = input;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const inside = mask.data[i]! > 127;
      const sx = inside ? (x + Math.round(width / 3)) % width : x;
      const sy = inside ? (y + Math.round(height / 5)) % height : y;
      for (let k = 0; k < 3; k++) {
        const v = soft.data[(sy * width + sx) * 3 + k]!;
        out[i * 3 + k] = Math.max(0, Math.min(255, Math.round([0.9, 1.04, 1.1][k]! * v + [14, 4, -12][k]!)));
      }
    }
  }
  return { width, height, channels: 3, data: out };
}

function identicalWhereZero(result: Pixels, original: Pixels, blend: Pixels): number {
  let differing = 0;
  for (let i = 0; i < blend.data.length; i++) {
    if (blend.data[i] !== 0) continue;
    for (let k = 0; k < 3; k++) if (result.data[i * 3 + k] !== original.data[i * 3 + k]) differing++;
  }
  return differing;
}

/** Zero outside the region: the model saw nothing there. */
function clip(mask: Pixels, region: Region): Pixels {
  const data = new Uint8Array(mask.data.length);
  for (let y = region.y; y < region.y + region.height; y++) {
    const row = y * mask.width;
    data.set(mask.data.subarray(row + region.x, row + region.x + region.width), row + region.x);
  }
  return { ...mask, data };
}

describe("masked edit, end to end with a stand-in model", () => {
  it("inpaint: untouched pixels bit-identical, exact region, seam and colour within bounds (and better than no compositing)", async () => {
    for (const name of ["chelsea.png", "coffee.png"] as const) {
      const photo = await loadPhoto(name);
      const selection = ellipseMask(photo.width, photo.height, photo.width * 0.45, photo.height * 0.55, photo.width * 0.16, photo.height * 0.2, 6);
      const { denoise, blend: fullBlend } = masksFor(selection);
      const region = contextRegion(maskBounds(denoise)!, photo, "automatic");
      const size = generationSize(region, 512);
      const crop = cropImage(photo, region);
      const cropSelection = cropImage(selection, region);
      const modelInput = await cropAndResize(prefill(crop, cropSelection, "blur"), { x: 0, y: 0, width: region.width, height: region.height }, size);
      const modelMask = await resizeTo(cropImage(denoise, region), size);
      const output = await standInModel(modelInput, modelMask);
      const patch = await resizeTo(output, region);
      expect(patch).toMatchObject({ width: region.width, height: region.height });
      const generated = pasteImage(photo, patch, region);
      const blend = clip(fullBlend, region);
      const result = composite(photo, matchColours(generated, photo, blend), blend);
      await debugWrite(`inpaint-${name}`, result);
      expect(identicalWhereZero(result, photo, blend)).toBe(0);

      // What a tool without compositing returns: the model's whole crop pasted back.
      const naive = generated;
      const ring = ringAround(selection, 8);
      const seam = seamScore(result, blend).ratio;
      const colour = deltaE76(result, photo, ring);
      const naiveColour = deltaE76(naive, photo, ring);
      const naiveChanged = identicalWhereZero(naive, photo, blend) / 3;
      console.log(
        `${name}: seam ratio ${seam.toFixed(2)}, ring dE76 ${colour.toFixed(2)}; ` +
          `no compositing: ring dE76 ${naiveColour.toFixed(2)}, ${Math.round(naiveChanged)} px changed outside the blend mask`,
      );
      // A seam ratio under 1.5: the edge's gradients are within 50% of the picture's own around it.
      expect(seam).toBeLessThan(1.5);
      // The ring straddles the edge, so half of it is new content by design: the colour difference is
      // dominated by that, and must not be worse than pasting the model's crop back.
      expect(colour).toBeLessThan(naiveColour);
      // Outside the selection (the ring's outer half) the pixels are the original's: delta-E 0 there.
      const outer = { ...ring, data: ring.data.map((v, i) => (v && selection.data[i] === 0 ? 255 : 0)) };
      expect(deltaE76(result, photo, outer)).toBeLessThan(0.5);
    }
  });

  it("outpaint: the old picture stays bit-identical outside the band, the new area is covered", async () => {
    const photo = await loadPhoto("chelsea.png");
    const { canvas, mask, newArea, oldRegion } = expandCanvas(photo, { left: 0, top: 0, right: 173, bottom: 50 });
    const filled = prefill(canvas, newArea, "propagate");
    const region = contextRegion(maskBounds(mask)!, canvas, "automatic");
    const size = generationSize(region, 512);
    const output = await standInModel(await cropAndResize(filled, region, size), await cropAndResize(mask, region, size));
    const generated = pasteImage(filled, await resizeTo(output, region), region);
    const blend = clip(mask, region);
    const result = composite(canvas, matchColours(generated, canvas, blend), blend);
    await debugWrite("outpaint-chelsea.png", result);
    expect(identicalWhereZero(result, canvas, blend)).toBe(0);
    expect(result).toMatchObject({ width: 451 + 173, height: 350 });
    // The new area: nothing left black (the canvas's fill), every pixel came from the model.
    let black = 0;
    for (let i = 0; i < newArea.data.length; i++) if (newArea.data[i] && result.data[i * 3]! + result.data[i * 3 + 1]! + result.data[i * 3 + 2]! === 0) black++;
    expect(black).toBe(0);
    // And the old picture, away from the band, is the photo.
    const inner = rectMask(canvas.width, canvas.height, oldRegion.x, oldRegion.y, oldRegion.width - 64, oldRegion.height - 50);
    expect(identicalWhereZero(result, canvas, { ...inner, data: inner.data.map((v) => 255 - v) })).toBe(0);
  });
});
