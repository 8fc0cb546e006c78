/**
 * What the Generate button does, for each mode: check the document, read what the mode needs
 * (nothing, the image, the image and the selection), send the job, follow it, and place every
 * variation as a new layer in one undoable step. A cancelled or failed job writes nothing.
 */
import type { Capabilities, Expansion, ImageFrame, ModelInfo, Region } from "../../../protocol";
import type { JobHandle, JobPixels, JobResult, JobSettings, ProtocolClient } from "../client/client";
import { PanelError } from "../errors";
import type { DocumentHost, DocumentInfo, NewLayer, Rgba8 } from "../photoshop/host";
import { documentRefusal } from "./document-check";
import { alphaBounds, asRgba, cropRgba, fitWithin, generationSize, resizeRgba, splitAlpha } from "./geometry";
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
/** img2img images are sent at most this many times the generation size: the daemon resizes them anyway. */
const INIT_OVERSAMPLE = 2;

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
  const doc = await host.activeDocument();
  if (!doc) throw new PanelError("Open a document first: Underpaint works on the document in front.", "no_document");
  const refusal = documentRefusal(doc);
  if (refusal) throw new PanelError(refusal, "unsupported_document");

  report(0, "Reading the document…");
  const prepared = await prepare(host, doc, settings, model, capabilities);
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
    width: prepared.size.width,
    height: prepared.size.height,
    variations: settings.variations,
    previews: true,
    ...(prepared.region ? { region: prepared.region } : {}),
    ...(settings.mode === "inpaint" ? { context: settings.context } : {}),
    ...(settings.mode === "expand" ? { expand: settings.expand } : {}),
  };

  // Each variation runs its steps and then decodes: decoding marks one variation done.
  let variationsDone = 0;
  let denoising = false;
  const share = (within: number) => 0.1 + 0.85 * ((Math.min(variationsDone, settings.variations - 1) + within) / settings.variations);
  const handle = client.submit(job, prepared.pixels, {
    onAccepted: (position) => report(0.05, position > 0 ? `Waiting for ${position} job${position === 1 ? "" : "s"} ahead…` : "Starting…"),
    onQueue: (position) => report(0.05, `Waiting for ${position} job${position === 1 ? "" : "s"} ahead…`),
    onProgress: (progress) => {
      if (progress.stage === "loading") return report(0.05, "Loading the model…");
      if (progress.stage === "encoding") return report(share(0), "Reading the picture into the model…");
      if (progress.stage === "denoising" && progress.total > 0) {
        denoising = true;
        const which = settings.variations > 1 ? `Variation ${Math.min(variationsDone + 1, settings.variations)} of ${settings.variations} · ` : "";
        return report(share(progress.step / progress.total), `${which}step ${progress.step} of ${progress.total}`);
      }
      if (progress.stage === "decoding") {
        if (denoising) variationsDone++;
        denoising = false;
        return report(0.1 + 0.85 * (variationsDone / settings.variations), "Decoding…");
      }
      if (progress.stage === "compositing") return report(0.1 + 0.85 * (variationsDone / settings.variations), "Blending into the picture…");
    },
    onPreview: (preview) => callbacks.onPreview?.(preview),
  });
  callbacks.onJob?.(handle);
  if (signal.cancelled) handle.cancel();
  const outcome = await handle.done;
  if (outcome.status === "cancelled") return { status: "cancelled" };
  if (outcome.status === "failed") throw new PanelError(outcome.error?.message ?? "The generation failed.", outcome.error?.code ?? "job_failed");
  if (outcome.results.length === 0) throw new PanelError("The daemon finished without sending any picture.", "job_failed");

  report(0.96, "Placing the results…");
  // The artist may have kept working meanwhile: results only go where they still line up.
  const now = await host.documentInfo(doc.id);
  if (!now) throw new PanelError("The document was closed during the generation; nothing was placed.", "document_closed");
  if (now.width !== doc.width || now.height !== doc.height) {
    throw new PanelError("The canvas changed size during the generation, so the results would not line up; nothing was placed.", "document_changed");
  }
  const layers = outcome.results.map((result) => placeResult(result, settings, doc, prepared));
  const written = await host.applyEdit(doc.id, {
    historyName: historyName(settings.mode),
    groupName: groupName(settings.mode, settings.prompt),
    ...(settings.mode === "expand" ? { grow: settings.expand } : {}),
    layers: layers.map((l, i) => ({ ...l, visible: i === 0 })),
  });
  report(1, `Added ${layers.length} layer${layers.length === 1 ? "" : "s"}.`);
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
  pixels: { image?: JobPixels; mask?: JobPixels };
  size: { width: number; height: number };
  /** Where the sent pixels sit in the document (masked modes). */
  region?: Region;
  /** The canvas size the results are placed on (after growing, for expand). */
  canvas: { width: number; height: number };
}

async function prepare(host: DocumentHost, doc: DocumentInfo, settings: GenerationSettings, model: ModelInfo, capabilities: Capabilities): Promise<Prepared> {
  const whole: Region = { x: 0, y: 0, width: doc.width, height: doc.height };
  const canvas = { width: doc.width, height: doc.height };
  const maxPixels = capabilities.limits.maxImagePixels;
  const native = model.nativeResolution;
  switch (settings.mode) {
    case "generate":
      return { pixels: {}, size: generationSize(doc.width, doc.height, native), canvas };
    case "img2img": {
      const size = generationSize(doc.width, doc.height, native);
      let source: { kind: "composite" } | { kind: "layer"; layerId: number } = { kind: "composite" };
      if (settings.source === "layer") {
        if (!doc.activeLayer || doc.activeLayer.kind !== "pixel") {
          throw new PanelError("Select one pixel layer to start from, or choose “Visible image” as the source.", "no_layer");
        }
        source = { kind: "layer", layerId: doc.activeLayer.id };
      }
      let image = await host.readPixels(doc.id, source, whole);
      const fit = fitWithin(image.width, image.height, INIT_OVERSAMPLE * Math.max(size.width, size.height));
      image = resizeRgba(image, fit.width, fit.height);
      return { pixels: { image: { ...image, channels: 4 } }, size, canvas };
    }
    case "inpaint": {
      if (!doc.selection) throw new PanelError(NO_SELECTION, "no_selection");
      const region = contextRegion(doc, doc.selection, maxPixels);
      const mask = await host.readSelection(doc.id, region);
      if (!mask || !mask.data.some((v) => v > 0)) throw new PanelError(NO_SELECTION, "no_selection");
      const image = await host.readPixels(doc.id, { kind: "composite" }, region);
      return { pixels: { image: { ...image, channels: 4 }, mask: { ...mask, channels: 1 } }, size: { width: native, height: native }, region, canvas };
    }
    case "expand": {
      const grow = settings.expand;
      if (grow.left + grow.top + grow.right + grow.bottom <= 0) {
        throw new PanelError("Say how many pixels to add on at least one side of the canvas.", "no_expansion");
      }
      const grown = { width: doc.width + grow.left + grow.right, height: doc.height + grow.top + grow.bottom };
      if (doc.width * doc.height > maxPixels || grown.width * grown.height > maxPixels) {
        throw new PanelError(`The canvas would be ${grown.width}x${grown.height} pixels, more than the daemon takes at once (${megapixels(maxPixels)}).`, "too_large");
      }
      const image = await host.readPixels(doc.id, { kind: "composite" }, whole);
      return { pixels: { image: { ...image, channels: 4 } }, size: { width: native, height: native }, region: whole, canvas: grown };
    }
  }
}

const NO_SELECTION = "Select the area to repaint first (any selection tool; feathered edges are kept), then try again.";

function megapixels(pixels: number): string {
  return `${Math.round(pixels / 1e6)} megapixels`;
}

/**
 * The part of the document sent for inpainting: all of it when the daemon takes it (the most
 * context), else the selection with a margin of its own size, shrunk until it fits.
 */
export function contextRegion(doc: { width: number; height: number }, selection: Region, maxPixels: number): Region {
  if (doc.width * doc.height <= maxPixels) return { x: 0, y: 0, width: doc.width, height: doc.height };
  for (let margin = Math.max(selection.width, selection.height); margin >= 0; margin = margin > 16 ? Math.floor(margin / 2) : margin - 16) {
    const x = Math.max(0, selection.x - margin);
    const y = Math.max(0, selection.y - margin);
    const right = Math.min(doc.width, selection.x + selection.width + margin);
    const bottom = Math.min(doc.height, selection.y + selection.height + margin);
    if ((right - x) * (bottom - y) <= maxPixels) return { x, y, width: right - x, height: bottom - y };
  }
  throw new PanelError(`The selection is larger than the daemon takes at once (${megapixels(maxPixels)}); select a smaller area.`, "too_large");
}

/**
 * One result as a new layer. Whole-image results are resampled to the canvas; masked results
 * come back as RGBA whose alpha is the blend mask, trimmed to where it is above 0 and split into
 * opaque pixels plus a layer mask, so the artist can paint the blend afterwards.
 */
export function placeResult(result: JobResult, settings: GenerationSettings, doc: { width: number; height: number }, prepared: Prepared): Omit<NewLayer, "visible"> {
  const name = layerName(settings.prompt, result.seed);
  const image = asRgba(result.image);
  if (settings.mode === "generate" || settings.mode === "img2img") {
    const pixels = resizeRgba(image, doc.width, doc.height);
    return { name, x: 0, y: 0, pixels: { ...pixels, data: opaque(pixels.data) } };
  }
  // Outpaint regions are in the coordinates of the canvas before it grew.
  const shift = settings.mode === "expand" ? settings.expand : ({ left: 0, top: 0 } as Pick<Expansion, "left" | "top">);
  const region = result.region ?? { x: -shift.left, y: -shift.top, width: image.width, height: image.height };
  let x = region.x + shift.left;
  let y = region.y + shift.top;
  // Only what lies on the canvas, and only where the blend mask shows something.
  const onCanvas: Region = {
    x: Math.max(0, -x),
    y: Math.max(0, -y),
    width: Math.min(image.width, prepared.canvas.width - x) - Math.max(0, -x),
    height: Math.min(image.height, prepared.canvas.height - y) - Math.max(0, -y),
  };
  if (onCanvas.width <= 0 || onCanvas.height <= 0) throw new PanelError("The daemon returned a result outside the canvas.", "job_failed");
  const visible = cropRgba(image, onCanvas);
  x += onCanvas.x;
  y += onCanvas.y;
  const shown = alphaBounds(visible);
  if (!shown) throw new PanelError("The daemon returned an empty result (the blend mask is empty); try a larger selection.", "job_failed");
  const { pixels, mask } = splitAlpha(cropRgba(visible, shown));
  return { name, x: x + shown.x, y: y + shown.y, pixels, mask };
}

function opaque(data: Uint8Array): Uint8Array {
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  return data;
}

function thumbnailOf(pixels: Rgba8): Rgba8 {
  const size = fitWithin(pixels.width, pixels.height, THUMBNAIL_SIDE);
  return resizeRgba(pixels, size.width, size.height);
}

