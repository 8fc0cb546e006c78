/**
 * Control (ControlNet): a layer of the document steers the picture. Which kinds the daemon can
 * follow for the chosen model and mode, the control image read from the chosen layer (its own
 * pixels at the canvas's place, transparent where it has none), and the job's control request;
 * every refusal a sentence that says what to do.
 */
import { z } from "zod";
import { grownSize, readSize, regionOf, sameSize, wholePictureSize, type Expansion, type Region, type Size } from "../../../geometry";
import { CONTROL_KINDS, ControlKind, type Capabilities, type ModelInfo, type RegistryControlNet, type RegistryModel } from "../../../protocol";
import type { JobSettings } from "../client/client";
import { PanelError } from "../errors";
import type { DocumentHost, DocumentInfo, DocumentLayer, Rgba8 } from "../photoshop/host";
import type { GenerationSettings, OperationMode } from "./settings";

export interface ControlSettings {
  /** Off by default: a job follows a control image only when the artist turns Control on. */
  enabled: boolean;
  /** The layer whose pixels are the control image (in the document in front). */
  layerId?: number;
  /** Its name, to find it again in another session or document (layer ids are the document's). */
  layerName?: string;
  /** The document layerId belongs to. */
  documentId?: number;
  kind: ControlKind;
  /** How strongly the ControlNet steers: 0 not at all, 1 as trained, up to 2. */
  strength: number;
  /** The fraction of the steps where control begins and ends. */
  start: number;
  end: number;
}

export const DEFAULT_CONTROL: ControlSettings = { enabled: false, kind: "scribble", strength: 1, start: 0, end: 1 };

export const CONTROL_KIND_LABELS: Record<ControlKind, string> = {
  canny: "Edges (canny)",
  scribble: "Scribble",
  lineart: "Line art",
  depth: "Depth map",
  pose: "Pose",
};

/** The registry's control-capable models, named when the chosen model cannot follow control: SDXL's for an SDXL model. */
export const CONTROL_MODEL_ID = "sd-1.5-control";
export const SDXL_CONTROL_MODEL_ID = "sdxl-control";

/** The control-capable model to pull in place of `model` (of its family). */
export function controlModelFor(model: Pick<ModelInfo, "sdxl"> | undefined): string {
  return model?.sdxl ? SDXL_CONTROL_MODEL_ID : CONTROL_MODEL_ID;
}

const Saved = z.object({
  enabled: z.boolean().default(false),
  layerName: z.string().max(1000).optional(),
  kind: ControlKind.default("scribble"),
  strength: z.number().min(0).max(2).default(1),
  start: z.number().min(0).max(1).default(0),
  end: z.number().min(0).max(1).default(1),
});

/** Control settings read back from saved settings; anything damaged counts as the defaults. */
export function parseControl(value: unknown): ControlSettings {
  const parsed = Saved.safeParse(value ?? {});
  if (!parsed.success) return { ...DEFAULT_CONTROL };
  const { layerName, ...rest } = parsed.data;
  return rest.start < rest.end ? { ...rest, ...(layerName !== undefined ? { layerName } : {}) } : { ...rest, start: 0, end: 1, ...(layerName !== undefined ? { layerName } : {}) };
}

/** What the Control section offers now. */
export type ControlOffer =
  | {
      kind: "ready";
      /** The kinds whose ControlNet is installed, in CONTROL_KINDS' order. */
      installed: ControlKind[];
      /** The registry's ControlNets of kinds not installed, to pull. */
      pullable: RegistryControlNet[];
    }
  | { kind: "unavailable"; message: string; /** The model to pull for control, when the registry has it and it is not installed. */ pull?: RegistryModel };

/** A ControlNet steers models of its family only: SDXL's or SD 1.x / 2.x's. */
function sameFamily(net: { sdxl?: true | undefined }, model: { sdxl?: true | undefined }): boolean {
  return Boolean(net.sdxl) === Boolean(model.sdxl);
}

/** What the section can do for the chosen model with what the daemon has installed (every mode follows a control image). */
export function controlOffer(capabilities: Capabilities | undefined, model: ModelInfo | undefined): ControlOffer {
  if (!capabilities) return { kind: "unavailable", message: "Control needs the daemon: connect first." };
  if (!model?.control) {
    const able = capabilities.models.filter((m) => m.control);
    if (able.length > 0) {
      return { kind: "unavailable", message: `${model ? `“${model.name}” cannot follow a control image` : "No model is chosen"}: choose ${able.map((m) => `“${m.name}”`).join(" or ")} in the model menu.` };
    }
    const id = controlModelFor(model);
    const entry = capabilities.registry.find((e) => e.id === id);
    const name = entry ? `“${entry.name}” (${id})` : id;
    return {
      kind: "unavailable",
      message: `${model ? `“${model.name}” cannot follow a control image` : "No model is chosen"}: pull ${name}, a model that can, and choose it.`,
      ...(entry ? { pull: entry } : {}),
    };
  }
  const nets = capabilities.controlNets ?? [];
  const installed = CONTROL_KINDS.filter((k) => nets.some((n) => n.kind === k && sameFamily(n, model)));
  const pullable = (capabilities.registryControlNets ?? []).filter((e) => sameFamily(e, model) && !installed.includes(e.kind));
  return {
    kind: "ready",
    installed,
    pullable,
  };
}

/**
 * For a depth or pose control image, the estimator to pull when the daemon has none: without one
 * the layer is followed as the map it holds, so a photo steers badly. Undefined when one is
 * installed, the kind takes no estimator, or the daemon does not say.
 */
export function estimatorSuggestion(capabilities: Capabilities | undefined, kind: ControlKind): { message: string; pull: { id: string; name: string } } | undefined {
  if (!capabilities) return undefined;
  const offer =
    kind === "depth"
      ? { installed: capabilities.depthEstimator, entry: capabilities.registryDepthEstimators?.[0], map: "depth map it holds (white near, black far)", what: "the depth of a photo" }
      : kind === "pose"
        ? { installed: capabilities.poseEstimator, entry: capabilities.registryPoseEstimators?.[0], map: "pose map it holds (OpenPose's coloured skeletons on black)", what: "the poses of people in a photo" }
        : undefined;
  if (!offer || offer.installed !== null || !offer.entry) return undefined;
  return {
    message: `The layer is followed as the ${offer.map}: to follow ${offer.what}, pull “${offer.entry.name}”.`,
    pull: { id: offer.entry.id, name: offer.entry.name },
  };
}

/** The size the control image is read at: the size an img2img picture is read at (the daemon resamples it to the working size). */
export function controlReadSize(doc: Pick<DocumentInfo, "width" | "height">, model: Pick<ModelInfo, "nativeResolution">): Size {
  const canvas = { width: doc.width, height: doc.height };
  return readSize(canvas, wholePictureSize(canvas, model.nativeResolution));
}

/**
 * Where a job's control image lies and the size it is read at, as the daemon expects it: the whole
 * canvas (generate, img2img); the area the job's picture covers, at the picture's size (inpaint);
 * the document as it will be after growing (expand), the layer where the canvas is now and
 * transparent in the growth (read over white: no lines, no edges there), at about the size a
 * whole picture is read at.
 */
export type ControlArea = { read: Region; size: Size } & ({ grown?: undefined } | { grown: { size: Size; at: { x: number; y: number } } });

export function controlArea(
  mode: OperationMode,
  doc: Pick<DocumentInfo, "width" | "height">,
  model: Pick<ModelInfo, "nativeResolution">,
  job: { region?: Region; picture?: Size; expand?: Expansion },
): ControlArea {
  const canvas = regionOf({ width: doc.width, height: doc.height });
  if (mode === "inpaint" && job.region) return { read: job.region, size: job.picture ?? job.region };
  if (mode === "expand" && job.expand) {
    const grown = grownSize(canvas, job.expand);
    const fitted = readSize(grown, wholePictureSize(grown, model.nativeResolution));
    const scale = fitted.width / grown.width;
    const size = { width: Math.max(1, Math.round(canvas.width * scale)), height: Math.max(1, Math.round(canvas.height * scale)) };
    return { read: canvas, size, grown: { size: fitted, at: { x: Math.round(job.expand.left * scale), y: Math.round(job.expand.top * scale) } } };
  }
  return { read: canvas, size: controlReadSize(doc, model) };
}

/** The control image read over the old canvas, placed in the grown document (transparent around it). */
export function onGrownDocument(image: Rgba8, grown: { size: Size; at: { x: number; y: number } }): Rgba8 {
  const { width, height } = grown.size;
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < image.height; y++) {
    const ty = y + grown.at.y;
    if (ty < 0 || ty >= height) continue;
    const x0 = Math.max(0, -grown.at.x);
    const x1 = Math.min(image.width, width - grown.at.x);
    if (x1 <= x0) continue;
    data.set(image.data.subarray((y * image.width + x0) * 4, (y * image.width + x1) * 4), (ty * width + x0 + grown.at.x) * 4);
  }
  return { width, height, channels: 4, data };
}

/** The pixel layers a control image can come from, top to bottom. */
export function controlLayers(layers: readonly DocumentLayer[]): DocumentLayer[] {
  return layers.filter((l) => l.kind === "pixel");
}

/**
 * The control image: the chosen layer's own pixels over the whole canvas (transparent where it has
 * none, so the daemon reads them over white), at `size`. Refused in a sentence when the layer is
 * gone, not a pixel layer, hidden or empty. Reads only: the layer is not changed.
 */
export async function readControlImage(host: DocumentHost, doc: DocumentInfo, control: ControlSettings, area: ControlArea): Promise<Rgba8> {
  const all = await host.listLayers(doc.id);
  // A layer id is only good in its own document: in another one the layer is found by its name.
  const sameDocument = control.documentId === undefined || control.documentId === doc.id;
  const layer = sameDocument && control.layerId !== undefined ? all.find((l) => l.id === control.layerId) : control.layerName !== undefined ? all.find((l) => l.name === control.layerName && l.kind === "pixel") : undefined;
  if (!layer) {
    throw new PanelError(`${control.layerName ? `The control layer “${control.layerName}” is not in “${doc.title}”` : "No control layer is chosen"}: choose the layer to follow in the Control section.`, "no_control_layer");
  }
  if (layer.kind !== "pixel") throw new PanelError(`“${layer.name}” is not a pixel layer: choose a layer you drew on as the control layer.`, "no_control_layer");
  if (!layer.visible) throw new PanelError(`The control layer “${layer.name}” is hidden: show it in the Layers panel, or choose another one.`, "control_layer_hidden");
  const where = area.read.width < doc.width || area.read.height < doc.height ? " where the selection is repainted" : " inside the canvas";
  const empty = () => new PanelError(`The control layer “${layer.name}” is empty${layer.empty ? "" : where}: draw on it, or choose another one.`, "control_layer_empty");
  if (layer.empty) throw empty();
  const image = await host.readPixels(doc.id, { kind: "layer", layerId: layer.id }, area.read, sameSize(area.read, area.size) ? undefined : area.size);
  if (!hasPixels(image)) throw empty();
  return area.grown ? onGrownDocument(image, area.grown) : image;
}

function hasPixels(image: Rgba8): boolean {
  for (let i = 3; i < image.data.length; i += 4) if (image.data[i]! > 0) return true;
  return false;
}

/**
 * The job's control, when Control is on; refused in a sentence when the model
 * cannot follow one or no ControlNet of the kind is installed.
 */
export function controlRequest(capabilities: Capabilities, model: ModelInfo, settings: GenerationSettings): JobSettings["control"] | undefined {
  const control = settings.control;
  if (!control?.enabled) return undefined;
  if (!model.control) {
    throw new PanelError(`“${model.name}” cannot follow a control image: choose a model that can (pull ${controlModelFor(model)}), or turn Control off.`, "control_unsupported");
  }
  const net = (capabilities.controlNets ?? []).find((n) => n.kind === control.kind && sameFamily(n, model));
  if (!net) {
    const entry = capabilities.registryControlNets?.find((e) => e.kind === control.kind && sameFamily(e, model));
    throw new PanelError(`No ${CONTROL_KIND_LABELS[control.kind].toLowerCase()} ControlNet is installed: ${entry ? `pull “${entry.name}” in the Control section` : "add one to the daemon's models folder"}, or choose another kind.`, "model_not_found");
  }
  if (!(control.start < control.end)) throw new PanelError("Control must end after it starts: set its start below its end.", "invalid_job");
  return { kind: control.kind, strength: control.strength, start: control.start, end: control.end, controlNet: net.id };
}
