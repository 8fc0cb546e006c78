/**
 * What the Generate button does, for each mode: check the document, read what the mode needs
 * (nothing, the image, the image and the selection), send the job, follow it, and place every
 * variation as a new layer in one undoable step. A cancelled or failed job writes nothing.
 */
import {
  grownSize,
  inpaintContext,
  fitWithin,
  intersect,
  maskedEditSize,
  oldCanvasIn,
  outpaintContext,
  regionOf,
  readSize,
  sameSize,
  translate,
  wholePictureSize,
  type Pixels,
  type Region,
  type Size,
} from "../../../geometry";
import type { Capabilities, ImageFrame, ModelInfo } from "../../../protocol";
import type { JobHandle, JobPixels, JobResult, JobSettings, ProtocolClient } from "../client/client";
import { PanelError } from "../errors";
import type { DocumentHost, DocumentInfo, NewLayer, Rgba8 } from "../photoshop/host";
import { controlArea, controlRequest, readControlImage } from "./control";
import { documentRefusal } from "./document-check";
import { groupName, historyName, layerName } from "./naming";
import { PROTOCOL_MODE, randomSeed, type GenerationSettings, type OperationMode } from "./settings";

export interface OperationDeps {
  host: DocumentHost;
  client: ProtocolClient;
}

export interface OperationCallbacks {
  /** What is happening, in words, and how far along (0..1). */
  onProgress?(fraction: number, label: string): void;
  onPreview?(preview: ImageFrame): void;
  /** The job is on its way: its handle can cancel it. */
  onJob?(handle: JobHandle): void;
}

/** Checked between the steps that come before the job exists (reading the document). */
export interface CancelSignal {
  readonly cancelled: boolean;
}

export interface PlacedVariation {
  variation: number;
  seed: number;
  layerId: number;
  /** A small picture of the new layer's pixels for the panel's strip. */
  thumbnail: Rgba8;
}

export type OperationOutcome =
  | { status: "completed"; documentId: number; groupId: number; variations: PlacedVariation[]; notices: string[] }
  | { status: "cancelled" };

const THUMBNAIL_SIDE = 128;

const VERBS: Record<OperationMode, string> = {
  generate: "generate images from text",
  img2img: "repaint an image (img2img)",
  inpaint: "inpaint a selection",
  expand: "expand the canvas",
};

export async function runOperation(
  deps: OperationDeps,
  settings: GenerationSettings,
  callbacks: OperationCallbacks = {},
  signal: CancelSignal = { cancelled: false },
): Promise<OperationOutcome> {
  const { host, client } = deps;
  const report = (fraction: number, label: string) => callbacks.onProgress?.(fraction, label);

  // Waiting is only worth it while a connection is being made; otherwise say why at once.
  const capabilities = client.capabilities ?? (client.status.state === "connecting" ? await client.whenReady() : undefined);
  if (!capabilities) throw new PanelError(client.status.message, "not_connected");
  const model = pickModel(capabilities, settings);
  const control = controlRequest(capabilities, model, settings);
  const doc = await host.activeDocument();
  if (!doc) throw new PanelError("Open a document first: Underpaint works on the document in front.", "no_document");
  const refusal = documentRefusal(doc);
  if (refusal) throw new PanelError(refusal, "unsupported_document");

  report(0, "Reading the document…");
  const prepared = await prepare(host, doc, settings, model, capabilities);
  if (control && settings.control) {
    const picture = prepared.pixels.image;
    const area = controlArea(settings.mode, doc, model, { ...(prepared.region ? { region: prepared.region } : {}), ...(picture ? { picture } : {}), expand: settings.expand });
    prepared.pixels.control = await readControlImage(host, doc, settings.control, area);
  }
  if (signal.cancelled) return { status: "cancelled" };

  const seed = settings.seed ?? randomSeed();
  const job: JobSettings = {
    mode: PROTOCOL_MODE[settings.mode],
    model: model.id,
    prompt: settings.prompt,
    negativePrompt: settings.negativePrompt,
    seed,
    steps: settings.steps,
    guidance: settings.guidance,
    strength: settings.mode === "img2img" || settings.mode === "inpaint" ? settings.strength : 1,
    scheduler: settings.scheduler,
    canvas: { width: doc.width, height: doc.height },
    variations: settings.variations,
    previews: true,
    ...(settings.draft ? { draft: true } : {}),
    ...(prepared.region ? { region: prepared.region } : {}),
    ...(settings.mode === "inpaint" ? { context: settings.context } : {}),
    ...(settings.mode === "expand" ? { expand: settings.expand } : {}),
    ...(control ? { control } : {}),
  };

  const share = (variation: number, within: number) => 0.1 + 0.85 * ((Math.min(variation, settings.variations - 1) + within) / settings.variations);
  const handle = client.submit(job, prepared.pixels, {
    onAccepted: (position) => report(0.05, position > 0 ? `Waiting for ${position} job${position === 1 ? "" : "s"} ahead…` : "Starting…"),
    onQueue: (position) => report(0.05, `Waiting for ${position} job${position === 1 ? "" : "s"} ahead…`),
    onProgress: (progress) => {
      if (progress.stage === "loading") return report(0.05, "Loading the model…");
      const { variation } = progress;
      // Text to image reads only the prompt; the other modes read the picture too.
      if (progress.stage === "encoding") return report(share(variation, 0), settings.mode === "generate" ? "Reading the prompt…" : "Reading the prompt and the picture…");
      if (progress.stage === "denoising" && progress.total > 0) {
        const which = settings.variations > 1 ? `Variation ${variation + 1} of ${settings.variations} · ` : "";
        return report(share(variation, progress.step / progress.total), `${which}step ${progress.step} of ${progress.total}`);
      }
      if (progress.stage === "decoding") return report(share(variation, 1), "Decoding…");
      if (progress.stage === "compositing") return report(share(variation, 1), "Blending into the picture…");
    },
    onPreview: (preview) => callbacks.onPreview?.(preview),
  });
  callbacks.onJob?.(handle);
  if (signal.cancelled) handle.cancel();
  const outcome = await handle.done;
  if (outcome.status === "cancelled") return { status: "cancelled" };
  if (outcome.status === "failed") throw new PanelError(outcome.error?.message ?? "The generation failed.", outcome.error?.code ?? "job_failed");
  if (outcome.results.length === 0) throw new PanelError("The daemon finished without sending any picture.", "job_failed");

  try {
    report(0.96, "Placing the results…");
    // The artist may have kept working meanwhile: results only go where they still line up.
    const now = await host.documentInfo(doc.id);
    if (!now) throw new PanelError("The document was closed during the generation; nothing was placed.", "document_closed");
    if (now.width !== doc.width || now.height !== doc.height) {
      throw new PanelError("The canvas changed size during the generation, so the results would not line up; nothing was placed.", "document_changed");
    }
    const layers = outcome.results.map((result) => placeResult(result, settings, prepared.canvas));
    const written = await host.applyEdit(doc.id, {
      historyName: historyName(settings.mode),
      groupName: groupName(settings.mode, settings.prompt),
      ...(settings.mode === "expand" ? { grow: settings.expand } : {}),
      layers: layers.map((l, i) => ({ ...l, visible: i === 0 })),
    });
    report(1, `Added ${layers.length} layer${layers.length === 1 ? "" : "s"} to “${now.title}”.`);
    return {
      status: "completed",
      documentId: doc.id,
      groupId: written.groupId,
      notices: outcome.notices ?? [],
      variations: outcome.results.map((result, i) => ({
        variation: result.variation,
        seed: result.seed,
        layerId: written.layerIds[i]!,
        thumbnail: thumbnailOf(layers[i]!.pixels),
      })),
    };
  } finally {
    // The layers hold their own copies now (and the strip its thumbnails): the client may reuse these buffers.
    client.release(outcome.results);
  }
}

function pickModel(capabilities: Capabilities, settings: GenerationSettings): ModelInfo {
  if (capabilities.models.length === 0) {
    throw new PanelError("The daemon has no models. Put a Stable Diffusion model (ONNX, diffusers layout) in its models folder.", "no_models");
  }
  const model = capabilities.models.find((m) => m.id === settings.model) ?? (settings.model ? undefined : capabilities.models[0]);
  if (!model) throw new PanelError(`The daemon no longer has the model "${settings.model}"; pick another one.`, "model_not_found");
  const mode = PROTOCOL_MODE[settings.mode];
  if (!capabilities.modes.includes(mode) || !model.modes.includes(mode)) {
    const able = capabilities.models.filter((m) => m.modes.includes(mode)).map((m) => m.name);
    const hint = able.length ? ` Pick ${able.length === 1 ? "" : "one of "}${able.map((n) => `"${n}"`).join(", ")}.` : " No installed model can.";
    throw new PanelError(`The model "${model.name}" cannot ${VERBS[settings.mode]}.${hint}`, "unsupported_mode");
  }
  return model;
}

interface Prepared {
  pixels: JobPixels;
  /** Where the sent pixels sit in the document (masked modes). */
  region?: Region;
  /** The canvas the results are placed on (after growing, for expand). */
  canvas: Size;
}

/**
 * Reads what the mode needs, and only that: the context around the selection (geometry's one rule,
 * the daemon's too) or next to the growth, at no more resolution than the model can use (Photoshop
 * scales the read; the daemon does every other resampling).
 */
async function prepare(host: DocumentHost, doc: DocumentInfo, settings: GenerationSettings, model: ModelInfo, capabilities: Capabilities): Promise<Prepared> {
  const canvas: Size = { width: doc.width, height: doc.height };
  const maxPixels = capabilities.limits.maxImagePixels;
  const native = model.nativeResolution;
  const sizeFor = (region: Region, target: Size) => (sameSize(region, target) ? undefined : target);
  switch (settings.mode) {
    case "generate":
      return { pixels: {}, canvas };
    case "img2img": {
      let source: { kind: "composite" } | { kind: "layer"; layerId: number } = { kind: "composite" };
      if (settings.source === "layer") {
        if (!doc.activeLayer || doc.activeLayer.kind !== "pixel") {
          throw new PanelError("Select one pixel layer to start from, or choose “Visible image” as the source.", "no_layer");
        }
        source = { kind: "layer", layerId: doc.activeLayer.id };
      }
      const whole = regionOf(canvas);
      const image = await host.readPixels(doc.id, source, whole, sizeFor(whole, readSize(canvas, wholePictureSize(canvas, native))));
      return { pixels: { image: { ...image, channels: 4 } }, canvas };
    }
    case "inpaint": {
      if (!doc.selection) throw new PanelError(NO_SELECTION, "no_selection");
      const region = inpaintContext(doc.selection, canvas, settings.context);
      const size = sizeFor(region, readSize(region, maskedEditSize(region, native)));
      if ((size ?? region).width * (size ?? region).height > maxPixels) throw new PanelError(tooLarge(maxPixels), "too_large");
      const mask = await host.readSelection(doc.id, region, size);
      if (!mask || !mask.data.some((v) => v > 0)) throw new PanelError(NO_SELECTION, "no_selection");
      const image = await host.readPixels(doc.id, { kind: "composite" }, region, size);
      return { pixels: { image: { ...image, channels: 4 }, mask: { ...mask, channels: 1 } }, region, canvas };
    }
    case "expand": {
      const grow = settings.expand;
      const context = outpaintContext(canvas, grow);
      if (!context) throw new PanelError("Say how many pixels to add on at least one side of the canvas.", "no_expansion");
      const grown = grownSize(canvas, grow);
      if (grown.width * grown.height > maxPixels) {
        throw new PanelError(`The canvas would be ${grown.width}x${grown.height} pixels, more than the daemon takes at once (${megapixels(maxPixels)}).`, "too_large");
      }
      // The old pixels the model sees next to the growth, in the document as it is now.
      const seen = intersect(context, oldCanvasIn(canvas, grow))!;
      const region = translate(seen, -grow.left, -grow.top);
      const image = await host.readPixels(doc.id, { kind: "composite" }, region);
      return { pixels: { image: { ...image, channels: 4 } }, region, canvas: grown };
    }
  }
}

const NO_SELECTION = "Select the area to repaint first (any selection tool; feathered edges are kept), then try again.";

function megapixels(pixels: number): string {
  return `${Math.round(pixels / 1e6)} megapixels`;
}

function tooLarge(maxPixels: number): string {
  return `The selection is larger than the daemon takes at once (${megapixels(maxPixels)}); select a smaller area.`;
}

/**
 * One result as a new layer, put where the daemon says, its pixels as they came (a whole
 * picture at document resolution is big: the host converts it a band at a time): whole pictures
 * opaque; edits (RGBA whose alpha is the blend mask, already cut to where it shows) written as
 * opaque pixels with their alpha as the layer mask, so the artist can paint the blend afterwards.
 */
export function placeResult(result: JobResult, settings: GenerationSettings, canvas: Size): Omit<NewLayer, "visible"> {
  const name = layerName(settings.prompt, result.seed);
  const { region, image } = result;
  if (!sameSize(image, region) || !intersect(region, regionOf(canvas))) {
    throw new PanelError("The daemon returned a result that does not fit the canvas; nothing was placed.", "job_failed");
  }
  const pixels: Pixels = { width: image.width, height: image.height, channels: image.channels, data: image.data };
  if (settings.mode === "generate" || settings.mode === "img2img") {
    return { name, x: region.x, y: region.y, pixels: pixels.channels === 4 ? { ...pixels, data: opaque(pixels.data) } : pixels };
  }
  return { name, x: region.x, y: region.y, pixels, ...(pixels.channels === 4 ? { mask: "alpha" as const } : {}) };
}

function opaque(data: Uint8Array): Uint8Array {
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  return data;
}

/**
 * A small opaque picture of a layer's pixels for the panel's strip, each pixel the mean of the
 * box it covers: one pass over the pixels, holding only the thumbnail and one row of sums.
 */
function thumbnailOf(pixels: Pixels): Rgba8 {
  const size = fitWithin(pixels, THUMBNAIL_SIDE);
  const { width, height, channels, data } = pixels;
  const column = Int32Array.from({ length: width }, (_, x) => Math.floor((x * size.width) / width));
  const across = new Float64Array(size.width);
  for (const c of column) across[c]!++;
  const out = new Uint8Array(size.width * size.height * 4);
  const sums = new Float64Array(size.width * 3);
  for (let ty = 0; ty < size.height; ty++) {
    const y0 = Math.floor((ty * height) / size.height);
    const y1 = Math.floor(((ty + 1) * height) / size.height);
    sums.fill(0);
    for (let y = y0; y < y1; y++) {
      for (let x = 0, s = y * width * channels; x < width; x++, s += channels) {
        const o = column[x]! * 3;
        sums[o]! += data[s]!;
        sums[o + 1]! += data[channels >= 3 ? s + 1 : s]!;
        sums[o + 2]! += data[channels >= 3 ? s + 2 : s]!;
      }
    }
    for (let tx = 0; tx < size.width; tx++) {
      const n = across[tx]! * (y1 - y0);
      const o = (ty * size.width + tx) * 4;
      for (let k = 0; k < 3; k++) out[o + k] = Math.round(sums[tx * 3 + k]! / n);
      out[o + 3] = 255;
    }
  }
  return { width: size.width, height: size.height, channels: 4, data: out };
}
