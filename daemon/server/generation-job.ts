/**
 * The one place a job request from the wire becomes the engine's GenerationJob: each mode's
 * fields, its pixels turned into 8-bit buffers and the defaults the protocol leaves to the daemon.
 * Exhaustive over the modes, so a new mode or field cannot slip past unmapped.
 */
import { regionOf, type Pixels } from "../../geometry";
import type { ImageFrame, JobRequest } from "../../protocol";
import { EngineError, type GenerationJob, type GenerationSettings } from "../engine/engine";

/** A received frame as 8-bit pixels: 16-bit samples become v / 257, rounded (the exact 65535 -> 255 map). */
export function pixelsOf(frame: ImageFrame): Pixels {
  const { width, height, channels } = frame;
  if (frame.bitsPerChannel === 8) return { width, height, channels, data: frame.data };
  const words = new Uint16Array(frame.data.buffer.slice(frame.data.byteOffset, frame.data.byteOffset + frame.data.byteLength));
  const data = new Uint8Array(words.length);
  for (let i = 0; i < words.length; i++) data[i] = Math.round(words[i]! / 257);
  return { width, height, channels, data };
}

export interface ReceivedPixels {
  image?: ImageFrame;
  mask?: ImageFrame;
  control?: ImageFrame;
}

function need(frame: ImageFrame | undefined, what: string, mode: string): Pixels {
  if (!frame) throw new EngineError("invalid_job", `${mode} needs ${what}.`);
  return pixelsOf(frame);
}

export function toGenerationJob(request: JobRequest, received: ReceivedPixels): GenerationJob {
  const settings: GenerationSettings = {
    model: request.model,
    prompt: request.prompt,
    negativePrompt: request.negativePrompt,
    seed: request.seed,
    steps: request.steps,
    guidance: request.guidance,
    scheduler: request.scheduler,
    variations: request.variations,
    truncatePrompt: request.truncatePrompt,
    previews: request.previews,
    draft: request.draft,
  };
  if (request.control) {
    const { kind, strength, start, end, controlNet } = request.control;
    settings.control = { kind, image: need(received.control, "its control image", "A controlled job"), strength, start, end, ...(controlNet !== undefined ? { controlNet } : {}) };
  }
  const whole = { output: request.output ?? request.canvas, ...(request.size ? { size: request.size } : {}) };
  const placement = { canvas: request.canvas, region: request.region ?? regionOf(request.canvas) };
  const budget = request.budget !== undefined ? { budget: request.budget } : {};
  switch (request.mode) {
    case "txt2img":
      return { ...settings, mode: "txt2img", ...whole };
    case "img2img":
      return { ...settings, mode: "img2img", image: need(received.image, "an image", "img2img"), strength: request.strength, ...whole };
    case "inpaint":
      return {
        ...settings,
        mode: "inpaint",
        image: need(received.image, "an image", "Inpainting"),
        mask: need(received.mask, "a mask (the selection)", "Inpainting"),
        strength: request.strength,
        context: request.context,
        ...placement,
        ...budget,
      };
    case "outpaint":
      if (!request.expand) throw new EngineError("invalid_job", "Expanding the canvas needs the extension per side.");
      return { ...settings, mode: "outpaint", image: need(received.image, "an image", "Expanding the canvas"), expand: request.expand, ...placement, ...budget };
  }
}
