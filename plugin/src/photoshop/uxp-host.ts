/**
 * DocumentHost on Photoshop's UXP APIs: imaging.getPixels / getSelection to read (scaled down
 * by Photoshop with targetSize when a smaller size is asked for), and batchPlay (canvas size,
 * new layers and groups, masks) + Layer.move + putPixels + putLayerMask to write, every write of
 * one generation inside one executeAsModal and one suspended history state (rolled back when
 * anything fails). Every write names its document by id (or is a method of a layer of it): the
 * artist may bring another document to the front while a job runs.
 */
import type { Region } from "../../../protocol";
import { PanelError } from "../errors";
import type { ActionDescriptor, ExecutionContext, PhotoshopApi, PsDocument, PsLayer, imaging } from "./api";
import { canvasGrowth, type CanvasStep } from "./canvas";
import type { ColorModeName, DocumentEdit, DocumentHost, DocumentInfo, DocumentLayer, LayerInfo, Mask8, NewLayer, PixelSource, ReadSize, Rgba8, WrittenEdit } from "./host";
import { colourBand, componentsOf, levelToDocument, maskBand, placeMask, placeRgba, readSize, sampleBuffer, toMask8, toRgba8, type ComponentSize, type Samples } from "./pixels";

const SRGB = "sRGB IEC61966-2.1";
const GRAY = "Gray Gamma 2.2";

/**
 * The memory bound of writing: a layer goes to Photoshop a band of rows at a time, each band
 * converted to the document's samples in one buffer of at most WRITE_BAND_BYTES, reused for
 * every band (and for the mask), and handed over as image data that is disposed before the
 * next band. So beyond the result as the daemon sent it (8000x6000 RGB: 144 MB) the panel holds
 * at most 2 x 16 MiB for conversion (the band's samples and Photoshop's image data of them),
 * whatever the document's size and depth (a whole 16-bit RGBA layer at once would be 384 MB).
 * Reads are small already: Photoshop scales them to the size the model uses.
 */
export const WRITE_BAND_BYTES = 16 * 1024 * 1024;

/** Rows per band of at most `bandBytes` for `width` pixels of `components` samples of `componentSize` bits (at least one). */
function bandRows(bandBytes: number, width: number, components: number, componentSize: ComponentSize): number {
  return Math.max(1, Math.floor(bandBytes / (width * components * (componentSize / 8))));
}

export interface HostOptions {
  /** The most bytes of samples converted and handed to Photoshop at once (tests make it small). */
  writeBandBytes?: number;
}

/** A layer of a document, by their ids: commands without one act on whatever is in front. */
function layerRef(documentId: number, layerId: number) {
  return [
    { _ref: "layer", _id: layerId },
    { _ref: "document", _id: documentId },
  ];
}

/** Image > Canvas Size on one document: the new size in pixels, the old content kept at the anchor. */
function canvasSize(documentId: number, step: CanvasStep): ActionDescriptor {
  const [vertical, horizontal] = step.anchor.split("-") as [string, string];
  return {
    _obj: "canvasSize",
    _target: [{ _ref: "document", _id: documentId }],
    width: { _unit: "pixelsUnit", _value: step.width },
    height: { _unit: "pixelsUnit", _value: step.height },
    horizontal: { _enum: "horizontalLocation", _value: horizontal },
    vertical: { _enum: "verticalLocation", _value: vertical === "middle" ? "center" : vertical },
  };
}

/** Layer > New > Layer (or Group) in one document: above its active layer, and made active. */
function makeLayer(documentId: number, kind: "layer" | "layerSection", name: string): ActionDescriptor {
  return { _obj: "make", _target: [{ _ref: kind }, { _ref: "document", _id: documentId }], using: { _obj: kind, name } };
}

/** Layer > Layer Mask > Reveal All on one layer of one document (the mask channel of that layer). */
function addRevealAllMask(documentId: number, layerId: number): ActionDescriptor {
  return {
    _obj: "make",
    new: { _class: "channel" },
    at: [{ _ref: "channel", _enum: "channel", _value: "mask" }, ...layerRef(documentId, layerId)],
    using: { _enum: "userMaskEnabled", _value: "revealAll" },
  };
}

export function createPhotoshopHost<L extends PsLayer>(ps: PhotoshopApi<L>, options: HostOptions = {}): DocumentHost {
  const bandBytes = options.writeBandBytes ?? WRITE_BAND_BYTES;
  const { DocumentMode, BitsPerChannelType, LayerKind, ElementPlacement } = ps.constants;

  function modeName(mode: PsDocument["mode"]): ColorModeName {
    switch (mode) {
      case DocumentMode.RGB:
        return "rgb";
      case DocumentMode.GRAYSCALE:
        return "grayscale";
      case DocumentMode.CMYK:
        return "cmyk";
      case DocumentMode.LAB:
        return "lab";
      case DocumentMode.INDEXEDCOLOR:
        return "indexed";
      case DocumentMode.BITMAP:
        return "bitmap";
      case DocumentMode.DUOTONE:
        return "duotone";
      default:
        return "multichannel";
    }
  }

  function bitsOf(bits: PsDocument["bitsPerChannel"]): 1 | 8 | 16 | 32 {
    switch (bits) {
      case BitsPerChannelType.ONE:
        return 1;
      case BitsPerChannelType.SIXTEEN:
        return 16;
      case BitsPerChannelType.THIRTYTWO:
        return 32;
      default:
        return 8;
    }
  }

  function layerInfo(layer: PsLayer): LayerInfo {
    const kind = layer.kind === LayerKind.NORMAL ? "pixel" : layer.kind === LayerKind.GROUP ? "group" : "other";
    return { id: layer.id, name: layer.name, kind };
  }

  function findDocument(documentId: number): PsDocument<L> {
    const docs = ps.app.documents;
    for (let i = 0; i < docs.length; i++) if (docs[i]!.id === documentId) return docs[i]!;
    throw new PanelError("The document was closed; open it again and retry.", "document_closed");
  }

  function findLayer(layers: ArrayLike<PsLayer> | null, id: number): PsLayer | undefined {
    if (!layers) return undefined;
    for (let i = 0; i < layers.length; i++) {
      const layer = layers[i]!;
      if (layer.id === id) return layer;
      const inner = findLayer(layer.layers, id);
      if (inner) return inner;
    }
    return undefined;
  }

  /** What a new group goes directly above: the top-level layer or group holding the active layer (none: the top). */
  function topLevelOfActive(doc: PsDocument<L>): PsLayer | undefined {
    const active = doc.activeLayers;
    let layer: PsLayer | null = active.length === 1 ? active[0]! : null;
    while (layer?.parent) layer = layer.parent;
    return layer ?? doc.layers[0];
  }

  /** A new layer or group in the document (above its active layer), as Photoshop made it: the document's active layer. */
  async function newLayer(doc: PsDocument<L>, kind: "layer" | "layerSection", name: string): Promise<L> {
    await play(kind === "layer" ? "add a layer" : "add a group", [makeLayer(doc.id, kind, name)]);
    const active = doc.activeLayers;
    if (active.length !== 1 || active[0]!.name !== name) throw new PanelError(`Photoshop did not select the new ${kind === "layer" ? "layer" : "group"}; the document is as it was.`, "photoshop_failed");
    return active[0]!;
  }

  /** Runs fn as Photoshop's modal operation; a collision becomes a sentence. */
  async function modal<T>(commandName: string, fn: (context: ExecutionContext) => Promise<T>): Promise<T> {
    try {
      return await ps.core.executeAsModal(fn, { commandName });
    } catch (error) {
      if (error instanceof PanelError) throw error;
      const message = error instanceof Error ? error.message : String(error);
      if (/modal state/i.test(message)) {
        throw new PanelError("Photoshop is busy with another task (a dialog, a tool or an action): finish it and try again.", "photoshop_busy");
      }
      throw error;
    }
  }

  /**
   * batchPlay that fails loudly: Photoshop answers a command it could not do with an
   * {_obj: "error"} descriptor (and skips the rest) instead of throwing. `what` completes
   * "Photoshop could not …"; every caller is inside a suspended history that this rolls back.
   */
  async function play(what: string, commands: ActionDescriptor[]): Promise<ActionDescriptor[]> {
    const results = await ps.action.batchPlay(commands, {});
    const failed = results.find((r) => r?._obj === "error");
    if (failed || results.length < commands.length) {
      const why = typeof failed?.message === "string" && failed.message ? `: ${failed.message.replace(/\.$/, "")}` : "";
      const code = typeof failed?.result === "number" ? ` (error ${failed.result})` : "";
      throw new PanelError(`Photoshop could not ${what}${why}${code}; the document is as it was.`, "photoshop_failed");
    }
    return results;
  }

  async function dataOf(image: imaging.PhotoshopImageData): Promise<imaging.PhotoshopImageData & { samples: Uint8Array | Uint16Array | Float32Array }> {
    const samples = await image.getData({ chunky: true });
    return Object.assign(image, { samples });
  }

  function dispose(image: imaging.PhotoshopImageData): void {
    // Typed as a promise, documented as synchronous: either way nothing to wait for.
    void Promise.resolve(image.dispose()).catch(() => {});
  }

  function intersects(region: Region, bounds: { left: number; top: number; right: number; bottom: number }): boolean {
    return bounds.right > region.x && bounds.left < region.x + region.width && bounds.bottom > region.y && bounds.top < region.y + region.height;
  }

  function boundsOf(region: Region) {
    return { left: region.x, top: region.y, right: region.x + region.width, bottom: region.y + region.height };
  }

  /** Photoshop's targetSize option for a read of `region` at `size` (none when nothing is scaled). */
  function targetSizeOf(region: Region, size: ReadSize): { targetSize?: { width: number; height: number } } {
    return size.width === region.width && size.height === region.height ? {} : { targetSize: { width: size.width, height: size.height } };
  }

  /** The bounds a read returned, in document pixels (scaled reads may come from a pyramid level). */
  function returnedBounds(result: { sourceBounds: imaging.Bounds; level?: number }) {
    return levelToDocument(result.sourceBounds, result.level);
  }

  function componentSizeOf(doc: PsDocument): ComponentSize {
    const bits = bitsOf(doc.bitsPerChannel);
    if (bits === 1) throw new PanelError("Bitmap documents cannot hold new pixel layers: choose Image > Mode > Grayscale first.", "unsupported_document");
    return bits;
  }

  function describe(doc: PsDocument<L>): DocumentInfo {
    const bounds = doc.selection.bounds;
    const selection =
      bounds && bounds.right > bounds.left && bounds.bottom > bounds.top
        ? { x: bounds.left, y: bounds.top, width: bounds.right - bounds.left, height: bounds.bottom - bounds.top }
        : null;
    const active = doc.activeLayers;
    return {
      id: doc.id,
      title: doc.title,
      width: doc.width,
      height: doc.height,
      mode: modeName(doc.mode),
      bitsPerChannel: bitsOf(doc.bitsPerChannel),
      selection,
      activeLayer: active.length === 1 ? layerInfo(active[0]!) : null,
    };
  }

  /** One band of samples into the layer's pixels or its mask, at `at` (document pixels); the image data is disposed at once. */
  async function putBand(doc: PsDocument<L>, target: L, into: "pixels" | "mask", samples: Samples, at: { left: number; top: number; width: number; height: number }, components: number) {
    const gray = into === "mask" || components <= 2;
    const image = await ps.imaging.createImageDataFromBuffer(samples, {
      width: at.width,
      height: at.height,
      components,
      chunky: true,
      colorSpace: gray ? "Grayscale" : "RGB",
      colorProfile: gray ? GRAY : SRGB,
    });
    try {
      // replace: false adds the band to what is there (the layer is new, its mask Reveal All).
      const options = { documentID: doc.id, layerID: target.id, imageData: image, replace: false, targetBounds: at };
      if (into === "pixels") await ps.imaging.putPixels(options);
      else await ps.imaging.putLayerMask({ ...options, kind: "user" });
    } finally {
      dispose(image);
    }
  }

  /** The layer's pixels, then its mask, a band of rows at a time (see WRITE_BAND_BYTES): the memory it takes is a band's. */
  async function writeLayer(doc: PsDocument<L>, target: L, layer: NewLayer): Promise<void> {
    const { pixels } = layer;
    const mask = layer.mask === "alpha" ? (pixels.channels === 4 ? { source: pixels, channel: 3 } : undefined) : layer.mask && { source: layer.mask, channel: 0 };
    if (mask && (mask.source.width !== pixels.width || mask.source.height !== pixels.height)) throw new Error("A layer's mask must be the size of its pixels.");
    const format = { componentSize: componentSizeOf(doc), grayscale: doc.mode === DocumentMode.GRAYSCALE, alpha: pixels.channels === 4 && layer.mask !== "alpha" };
    const components = componentsOf(format);
    const rows = Math.min(pixels.height, bandRows(bandBytes, pixels.width, components, format.componentSize));
    const buffer = sampleBuffer(format.componentSize, rows * pixels.width * components);
    const bands = Array.from({ length: Math.ceil(pixels.height / rows) }, (_, i) => ({ top: i * rows, height: Math.min(rows, pixels.height - i * rows) }));
    const at = (band: { top: number; height: number }) => ({ left: layer.x, top: layer.y + band.top, width: pixels.width, height: band.height });
    for (const band of bands) await putBand(doc, target, "pixels", colourBand(pixels, band.top, band.height, format, buffer), at(band), components);
    if (!mask) return;
    await play("add the layer mask", [addRevealAllMask(doc.id, target.id)]);
    for (const band of bands) await putBand(doc, target, "mask", maskBand(mask.source, mask.channel, band.top, band.height, format.componentSize, buffer), at(band), 1);
  }

  return {
    async activeDocument(): Promise<DocumentInfo | null> {
      let doc: PsDocument<L> | null;
      try {
        doc = ps.app.documents.length > 0 ? ps.app.activeDocument : null;
      } catch {
        doc = null;
      }
      return doc ? describe(doc) : null;
    },

    async documentInfo(documentId: number): Promise<DocumentInfo | null> {
      const docs = ps.app.documents;
      for (let i = 0; i < docs.length; i++) if (docs[i]!.id === documentId) return describe(docs[i]!);
      return null;
    },

    async listLayers(documentId: number): Promise<DocumentLayer[]> {
      const out: DocumentLayer[] = [];
      const walk = (layers: ArrayLike<PsLayer> | null, depth: number, shown: boolean) => {
        if (!layers) return;
        for (let i = 0; i < layers.length; i++) {
          const layer = layers[i]!;
          const b = layer.boundsNoEffects;
          const visible = shown && layer.visible;
          out.push({ ...layerInfo(layer), visible, empty: !(b.right > b.left && b.bottom > b.top), depth });
          walk(layer.layers, depth + 1, visible);
        }
      };
      walk(findDocument(documentId).layers, 0, true);
      return out;
    },

    async readPixels(documentId: number, source: PixelSource, region: Region, size?: ReadSize): Promise<Rgba8> {
      const out = readSize(region, size);
      const doc = findDocument(documentId);
      const empty = (): Rgba8 => ({ width: out.width, height: out.height, channels: 4, data: new Uint8Array(out.width * out.height * 4) });
      let layerID: number | undefined;
      if (source.kind === "layer") {
        const layer = findLayer(doc.layers, source.layerId);
        if (!layer) throw new PanelError("The layer to start from is gone; select a layer and try again.", "layer_missing");
        // Photoshop refuses to read where a layer has no pixels at all.
        if (!intersects(region, layer.boundsNoEffects)) return empty();
        layerID = layer.id;
      }
      return modal("Underpaint: reading the document", async () => {
        const result = await ps.imaging.getPixels({
          documentID: documentId,
          ...(layerID !== undefined ? { layerID } : {}),
          sourceBounds: boundsOf(region),
          ...targetSizeOf(region, out),
          colorSpace: "RGB",
          colorProfile: SRGB,
          componentSize: 8,
          applyAlpha: false,
        });
        const image = await dataOf(result.imageData);
        try {
          // Bounds come back trimmed to where pixels exist: put them back where they belong.
          return placeRgba(toRgba8(image.samples, image), returnedBounds(result), region, out);
        } finally {
          dispose(result.imageData);
        }
      });
    },

    async readSelection(documentId: number, region: Region, size?: ReadSize): Promise<Mask8 | null> {
      const out = readSize(region, size);
      const doc = findDocument(documentId);
      const bounds = doc.selection.bounds;
      if (!bounds || !intersects(region, bounds)) return null;
      return modal("Underpaint: reading the selection", async () => {
        const result = await ps.imaging.getSelection({ documentID: documentId, sourceBounds: boundsOf(region), ...targetSizeOf(region, out) });
        const image = await dataOf(result.imageData);
        try {
          return placeMask(toMask8(image.samples, image), returnedBounds(result), region, out);
        } finally {
          dispose(result.imageData);
        }
      });
    },

    async applyEdit(documentId: number, edit: DocumentEdit): Promise<WrittenEdit> {
      return modal(edit.historyName, async (context) => {
        const doc = findDocument(documentId);
        const suspension = await context.hostControl.suspendHistory({ documentID: documentId, name: edit.historyName });
        let committed = false;
        const stopIfCancelled = () => {
          if (context.isCancelled) throw new PanelError("Placing the results was cancelled; the document is as it was.", "cancelled");
        };
        try {
          if (edit.grow) {
            for (const step of canvasGrowth(doc.width, doc.height, edit.grow)) await play("grow the canvas", [canvasSize(documentId, step)]);
          }
          // The group goes at the top level, never inside an earlier (maybe hidden) group the
          // active layer sits in; then each layer goes inside it, bottom first.
          const above = topLevelOfActive(doc);
          const group = await newLayer(doc, "layerSection", edit.groupName);
          if (above) await group.move(above, ElementPlacement.PLACEBEFORE);
          const created: L[] = [];
          for (let i = edit.layers.length - 1; i >= 0; i--) {
            stopIfCancelled();
            const layer = edit.layers[i]!;
            const target = await newLayer(doc, "layer", layer.name);
            const below = created[0];
            await (below ? target.move(below, ElementPlacement.PLACEBEFORE) : target.move(group, ElementPlacement.PLACEINSIDE));
            created.unshift(target);
            await writeLayer(doc, target, layer);
          }
          stopIfCancelled();
          created.forEach((layer, i) => {
            layer.visible = edit.layers[i]!.visible;
          });
          await context.hostControl.resumeHistory(suspension, true);
          committed = true;
          return { groupId: group.id, layerIds: created.map((l) => l.id) };
        } finally {
          // Anything short of the end puts the document back as it was.
          if (!committed) await context.hostControl.resumeHistory(suspension, false).catch(() => {});
        }
      });
    },

    async showOnly(documentId: number, groupId: number, layerId: number): Promise<void> {
      await modal("Underpaint: choose a variation", async (context) => {
        const doc = findDocument(documentId);
        const group = findLayer(doc.layers, groupId);
        if (!group || !group.layers) throw new PanelError("The group of these results is gone from the document.", "layer_missing");
        const suspension = await context.hostControl.suspendHistory({ documentID: documentId, name: "Underpaint: choose a variation" });
        let committed = false;
        try {
          for (let i = 0; i < group.layers.length; i++) {
            const layer = group.layers[i]!;
            const visible = layer.id === layerId;
            if (layer.visible !== visible) layer.visible = visible;
          }
          await context.hostControl.resumeHistory(suspension, true);
          committed = true;
        } finally {
          if (!committed) await context.hostControl.resumeHistory(suspension, false).catch(() => {});
        }
      });
    },

    async encodeThumbnail(image): Promise<string> {
      const count = image.width * image.height;
      let rgb = image.data;
      if (image.channels === 4) {
        rgb = new Uint8Array(count * 3);
        for (let i = 0; i < count; i++) {
          rgb[i * 3] = image.data[i * 4]!;
          rgb[i * 3 + 1] = image.data[i * 4 + 1]!;
          rgb[i * 3 + 2] = image.data[i * 4 + 2]!;
        }
      }
      const data = await ps.imaging.createImageDataFromBuffer(rgb, {
        width: image.width,
        height: image.height,
        components: 3,
        chunky: true,
        colorSpace: "RGB",
        colorProfile: SRGB,
      });
      try {
        const encoded = await ps.imaging.encodeImageData({ imageData: data, base64: true });
        const base64 = typeof encoded === "string" ? encoded : bytesToBase64(Uint8Array.from(encoded));
        return `data:image/jpeg;base64,${base64}`;
      } finally {
        dispose(data);
      }
    },
  };
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export function bytesToBase64(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i]!;
    const b = bytes[i + 1] ?? 0;
    const c = bytes[i + 2] ?? 0;
    out += BASE64[a >> 2]! + BASE64[((a & 3) << 4) | (b >> 4)]!;
    out += i + 1 < bytes.length ? BASE64[((b & 15) << 2) | (c >> 6)]! : "=";
    out += i + 2 < bytes.length ? BASE64[c & 63]! : "=";
  }
  return out;
}
