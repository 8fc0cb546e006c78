/** The one mapping from a job request on the wire to the engine's GenerationJob. */
import { describe, expect, it } from "vitest";
import { EngineError } from "../../../daemon/engine/engine";
import { pixelsOf, toGenerationJob } from "../../../daemon/server/generation-job";
import { JobRequest, type ImageFrame, type JobRequestInput } from "../../../protocol";

const base: JobRequestInput = { jobId: 1, mode: "txt2img", model: "m", prompt: "p", seed: 3, steps: 4, guidance: 5, scheduler: "euler", canvas: { width: 64, height: 48 } };

function frame(width: number, height: number, channels: 1 | 3 | 4, bitsPerChannel: 8 | 16 = 8, data?: Uint8Array): ImageFrame {
  return { kind: "image", jobId: 1, frameId: 1, width, height, channels, bitsPerChannel, data: data ?? new Uint8Array(width * height * channels * (bitsPerChannel / 8)) };
}

describe("toGenerationJob", () => {
  it("keeps every setting and the protocol's defaults", () => {
    const job = toGenerationJob(JobRequest.parse(base), {});
    expect(job).toEqual({
      model: "m", prompt: "p", negativePrompt: "", seed: 3, steps: 4, guidance: 5, scheduler: "euler", variations: 1, truncatePrompt: false, previews: true, draft: false,
      mode: "txt2img", output: { width: 64, height: 48 },
    });
  });

  it("passes a draft on to the engine", () => {
    expect(toGenerationJob(JobRequest.parse({ ...base, draft: true }), {})).toMatchObject({ draft: true });
    expect(toGenerationJob(JobRequest.parse({ ...base, mode: "img2img", draft: true, image: { frameId: 1, width: 8, height: 8, channels: 3 } }), { image: frame(8, 8, 3) })).toMatchObject({ mode: "img2img", draft: true });
  });

  it("gives whole pictures the output (default the canvas) and the working size when asked", () => {
    const image = frame(32, 24, 4);
    const job = toGenerationJob(JobRequest.parse({ ...base, mode: "img2img", strength: 0.4, output: { width: 32, height: 24 }, size: { width: 64, height: 48 }, image: { frameId: 1, width: 32, height: 24, channels: 4 } }), { image });
    expect(job).toMatchObject({ mode: "img2img", strength: 0.4, output: { width: 32, height: 24 }, size: { width: 64, height: 48 } });
    expect(job).not.toHaveProperty("canvas");
    if (job.mode !== "img2img") throw new Error(job.mode);
    expect(job.image).toEqual({ width: 32, height: 24, channels: 4, data: image.data });
  });

  it("gives edits their canvas, region (default the whole canvas), budget and context", () => {
    const image = frame(16, 12, 4);
    const mask = frame(16, 12, 1);
    const refs = { image: { frameId: 1, width: 16, height: 12, channels: 4 }, mask: { frameId: 2, width: 16, height: 12, channels: 1 } } as const;
    const whole = toGenerationJob(JobRequest.parse({ ...base, mode: "inpaint", ...refs }), { image, mask });
    expect(whole).toMatchObject({ mode: "inpaint", canvas: { width: 64, height: 48 }, region: { x: 0, y: 0, width: 64, height: 48 }, context: "automatic", strength: 1 });
    expect(whole).not.toHaveProperty("budget");
    const part = toGenerationJob(JobRequest.parse({ ...base, mode: "inpaint", ...refs, region: { x: 8, y: 4, width: 32, height: 24 }, budget: 5000, context: "image" }), { image, mask });
    expect(part).toMatchObject({ region: { x: 8, y: 4, width: 32, height: 24 }, budget: 5000, context: "image" });
    const grow = { left: 0, top: 0, right: 16, bottom: 0 };
    const out = toGenerationJob(JobRequest.parse({ ...base, mode: "outpaint", image: refs.image, expand: grow, region: { x: 48, y: 0, width: 16, height: 12 } }), { image });
    expect(out).toMatchObject({ mode: "outpaint", canvas: { width: 64, height: 48 }, region: { x: 48, y: 0, width: 16, height: 12 }, expand: grow });
    expect(out).not.toHaveProperty("strength");
  });

  it("refuses a job whose pixels did not arrive, with a sentence", () => {
    const request = JobRequest.parse({ ...base, mode: "inpaint", image: { frameId: 1, width: 8, height: 8, channels: 4 }, mask: { frameId: 2, width: 8, height: 8, channels: 1 } });
    expect(() => toGenerationJob(request, { image: frame(8, 8, 4) })).toThrow(EngineError);
    expect(() => toGenerationJob(request, { image: frame(8, 8, 4) })).toThrow("Inpainting needs a mask (the selection).");
  });

  it("turns 16-bit frames into 8-bit pixels, v / 257 rounded", () => {
    const words = Uint16Array.of(0, 128, 129, 257, 32896, 65535);
    const pixels = pixelsOf(frame(2, 1, 3, 16, new Uint8Array(words.buffer)));
    expect(pixels).toMatchObject({ width: 2, height: 1, channels: 3 });
    expect([...pixels.data]).toEqual([0, 0, 1, 1, 128, 255]);
  });
});
