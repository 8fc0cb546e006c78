/**
 * What the panel needs from Photoshop, in the panel's words. Operations and the panel are written
 * against this interface; uxp-host.ts implements it on Photoshop's UXP APIs, and the tests on an
 * in-memory Photoshop that keeps UXP's rules.
 */
import type { Expansion, Pixels, Region } from "../../../geometry";

/** Photoshop's colour modes, by what the user sees in Image > Mode. */
export type ColorModeName = "rgb" | "grayscale" | "cmyk" | "lab" | "indexed" | "bitmap" | "duotone" | "multichannel";

export interface LayerInfo {
  id: number;
  name: string;
  /** "pixel" layers hold pixels; groups, text, adjustment and smart-object layers do not. */
  kind: "pixel" | "group" | "other";
}

/** A layer as the Layers panel lists it. */
export interface DocumentLayer extends LayerInfo {
  /** It shows: its eye is on, and every group holding it shows. */
  visible: boolean;
  /** It holds no pixels at all (an empty pixel layer; groups: none of their layers has any). */
  empty: boolean;
  /** How many groups hold it (0: the top level). */
  depth: number;
}

export interface DocumentInfo {
  id: number;
  title: string;
  width: number;
  height: number;
  mode: ColorModeName;
  bitsPerChannel: 1 | 8 | 16 | 32;
  /** Bounds of the selection in document pixels, or null when nothing is selected. */
  selection: Region | null;
  /** The one active layer, or null when none or several are active. */
  activeLayer: LayerInfo | null;
}

/** geometry's one pixel buffer as 8-bit sRGB with straight alpha, row-major RGBARGBA…. */
export type Rgba8 = Pixels & { channels: 4 };

/** geometry's one pixel buffer as one 8-bit channel (a selection or a layer mask), 255 = fully selected / shown. */
export type Mask8 = Pixels & { channels: 1 };

/** The size, in pixels, a read returns. */
export interface ReadSize {
  width: number;
  height: number;
}

export type PixelSource = { kind: "composite" } | { kind: "layer"; layerId: number };

/** One new pixel layer: its pixels, where they go, and an optional layer mask of the same size. */
export interface NewLayer {
  name: string;
  /** Document position of the pixels' top-left corner (after any canvas growth). */
  x: number;
  y: number;
  /** 8-bit gray, RGB (opaque) or RGBA, as the daemon sent them: the host converts a band of rows at a time. */
  pixels: Pixels;
  /**
   * The layer mask, of the pixels' size; "alpha": the pixels' own alpha (an edit's blend), and
   * the layer's pixels written opaque. Without a mask RGBA keeps its alpha.
   */
  mask?: Mask8 | "alpha";
  visible: boolean;
}

/** Everything one generation writes, done as one undoable step. */
export interface DocumentEdit {
  /** The name of the single history state (Edit > Undo <name>). */
  historyName: string;
  /** The canvas grows first by this much per side (Expand canvas). */
  grow?: Expansion;
  /**
   * The new group that holds the layers, at the top level of the document directly above the
   * active layer, or above the top-level group that holds it (at the top without one).
   */
  groupName: string;
  /** Top to bottom inside the group. */
  layers: NewLayer[];
}

export interface WrittenEdit {
  groupId: number;
  /** In the order of DocumentEdit.layers. */
  layerIds: number[];
}

export interface DocumentHost {
  /** The document in front, or null when none is open. */
  activeDocument(): Promise<DocumentInfo | null>;
  /** An open document by id (it may no longer be in front), or null when it was closed. */
  documentInfo(documentId: number): Promise<DocumentInfo | null>;
  /**
   * Pixels of the merged visible image or of one layer, as 8-bit sRGB whatever the document's
   * depth, padded to exactly `region` (areas without pixels are transparent).
   *
   * With `size` the region is read scaled down, by Photoshop (imaging.getPixels' targetSize,
   * which may answer from its smaller cached pyramid levels), so a big document is never read
   * whole: the result is the region resampled to exactly size.width x size.height (scaled by
   * size/region on each axis), still transparent where the document has no pixels. Each side
   * of `size` must be a whole number from 1 to the region's side: bigger (enlarging) is refused
   * with an Error. Without `size`, or with the region's own size, nothing is resampled.
   */
  readPixels(documentId: number, source: PixelSource, region: Region, size?: ReadSize): Promise<Rgba8>;
  /**
   * The selection as a soft mask over `region` (feathered edges kept); null when nothing is
   * selected there. `size` reads it scaled down to exactly that size, as readPixels does
   * (imaging.getSelection's targetSize; unselected where the region has no selection).
   */
  readSelection(documentId: number, region: Region, size?: ReadSize): Promise<Mask8 | null>;
  /** Every layer of an open document, top to bottom as the Layers panel lists them (a group, then its layers). */
  listLayers(documentId: number): Promise<DocumentLayer[]>;
  /**
   * Grows the canvas and adds the layers in one modal operation and one history state: a single
   * Undo removes all of it, and when anything fails the document is rolled back as it was.
   */
  applyEdit(documentId: number, edit: DocumentEdit): Promise<WrittenEdit>;
  /** Shows one layer of a group and hides its siblings (choosing a variation). */
  showOnly(documentId: number, groupId: number, layerId: number): Promise<void>;
  /** A data: URL the panel's <img> can show (UXP's canvas cannot draw pixels). */
  encodeThumbnail(image: { width: number; height: number; channels: 3 | 4; data: Uint8Array }): Promise<string>;
}

/** Small persistent values (the pairing token, the last settings), kept by the host. */
export interface SettingsStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
}
