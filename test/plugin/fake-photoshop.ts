/**
 * An in-memory Photoshop for tests, shaped like require("photoshop") as the adapter sees it
 * (PhotoshopApi), that keeps UXP's rules and fails loudly where Photoshop would:
 * - document changes only inside core.executeAsModal, one modal scope at a time;
 * - imaging.getPixels / getSelection trim their bounds to where pixels exist (and refuse an
 *   area with none), and read RGB, Grayscale and Lab documents only;
 * - with targetSize they scale down (never up) by targetSize / sourceBounds as requested (one
 *   side given: the same scale for both, keeping the aspect ratio), and answer with the TRIMMED
 *   area at that scale (each side rounded, at least 1 pixel) by area averaging (each pixel the
 *   mean of the source area it covers, colours weighted by alpha), sourceBounds the trimmed
 *   bounds in document pixels and level 0 (no pyramid caches are modelled);
 * - putPixels only into pixel layers, with image data of the document's depth and colour space;
 *   putLayerMask only on a layer that has a user mask;
 * - every change outside a suspended history is its own history state; suspendHistory /
 *   resumeHistory(commit) make one state, or roll the document back;
 * - resizeCanvas moves every layer (and the selection) by its anchor; the background layer
 *   grows with the background colour (white).
 * Pixels are kept as 0..1 floats in the document's own encoding (32-bit: linear light).
 * No Node APIs: the same code runs in the browser for the panel test.
 */
import type { Constants, ExecutionContext, PhotoshopApi, PsBounds, imaging } from "../../plugin/src/photoshop/api";
import { bytesToBase64 } from "../../plugin/src/photoshop/uxp-host";
import { linearToSrgb, srgbToLinear } from "../../plugin/src/photoshop/pixels";

export type FakeMode = "RGBColorMode" | "grayscaleMode" | "CMYKColorMode" | "labColorMode" | "indexedColorMode" | "bitmapMode";
export type FakeDepth = 8 | 16 | 32;

const CONSTANTS = {
  AnchorPosition: {
    BOTTOMCENTER: "bottom-center",
    BOTTOMLEFT: "bottom-left",
    BOTTOMRIGHT: "bottom-right",
    MIDDLECENTER: "middle-center",
    MIDDLELEFT: "middle-left",
    MIDDLERIGHT: "middle-right",
    TOPCENTER: "top-center",
    TOPLEFT: "top-left",
    TOPRIGHT: "top-right",
  },
  DocumentMode: {
    BITMAP: "bitmapMode",
    CMYK: "CMYKColorMode",
    DUOTONE: "duotoneMode",
    GRAYSCALE: "grayscaleMode",
    INDEXEDCOLOR: "indexedColorMode",
    LAB: "labColorMode",
    MULTICHANNEL: "multichannelMode",
    RGB: "RGBColorMode",
  },
  BitsPerChannelType: { ONE: "bitDepth1", EIGHT: "bitDepth8", SIXTEEN: "bitDepth16", THIRTYTWO: "bitDepth32" },
  LayerKind: { NORMAL: "pixel", GROUP: "group", TEXT: "text", SMARTOBJECT: "smartObject" },
  ElementPlacement: { PLACEBEFORE: "placeBefore", PLACEATBEGINNING: "placeAtBeginning", PLACEATEND: "placeAtEnd", PLACEAFTER: "placeAfter", PLACEINSIDE: "placeInside" },
};

interface Raster {
  left: number;
  top: number;
  width: number;
  height: number;
  /** RGBA, 0..1, document encoding (empty for a fill). */
  data: Float32Array;
  /** A layer of one colour (RGBA 0..1, document encoding) kept as that colour, so any size costs nothing. */
  fill?: readonly number[];
}

/**
 * What a "digest" document keeps of the samples written into a layer or its mask: where, how
 * many, and a checksum of every sample keyed by its position (so the order of the bands written
 * does not matter, and a sample written twice or in the wrong place shows).
 */
export interface PixelDigest {
  bounds: PsBounds | null;
  samples: number;
  sum: number;
}

export function emptyDigest(): PixelDigest {
  return { bounds: null, samples: 0, sum: 0 };
}

/** Adds sample `k` (0..3: R, G, B, A of the layer; 0 for a mask) of the pixel at x, y with its raw value. */
export function addToDigest(digest: PixelDigest, x: number, y: number, k: number, value: number): void {
  let h = Math.imul(x + 1, 0x9e3779b1) ^ Math.imul(y + 1, 0x85ebca77) ^ Math.imul(k + 1, 0xc2b2ae3d) ^ Math.imul(value + 1, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  digest.sum = (digest.sum + ((h ^ (h >>> 12)) >>> 0)) >>> 0;
  digest.samples++;
}

interface MaskRaster {
  left: number;
  top: number;
  width: number;
  height: number;
  /** 0..1 */
  data: Float32Array;
  /** The value outside the rectangle (a "reveal all" mask shows everything). */
  outside: number;
}

interface LayerState {
  id: number;
  name: string;
  visible: boolean;
  kind: "pixel" | "group" | "text";
  background: boolean;
  content: Raster | null;
  mask: MaskRaster | null;
  children: LayerState[];
  /** In a "digest" document: what was written into the layer and its mask, instead of the pixels. */
  digest?: { pixels: PixelDigest; mask: PixelDigest };
}

interface DocState {
  width: number;
  height: number;
  /** Top to bottom. */
  layers: LayerState[];
  /** Canvas-sized, 0..1, or null. */
  selection: Float32Array | null;
  activeIds: number[];
}

export interface FakeLayerSpec {
  name: string;
  background?: boolean;
  /** 8-bit sRGB RGBA pixels at (left, top); a background layer must cover the canvas. */
  pixels?: { width: number; height: number; data: Uint8Array };
  /** Instead of pixels: one 8-bit sRGB RGBA colour over the whole canvas, kept as that colour (big documents). */
  fill?: [number, number, number, number];
  left?: number;
  top?: number;
  kind?: "pixel" | "text";
  /** Hidden (its eye off) when false. */
  visible?: boolean;
}

export interface FakeDocumentSpec {
  title?: string;
  width: number;
  height: number;
  mode?: FakeMode;
  depth?: FakeDepth;
  /** Top to bottom. */
  layers: FakeLayerSpec[];
  /**
   * "digest": pixels written into layers are not kept, only a PixelDigest of them (and the
   * merged image cannot be read where they show), so a test can write a document of any size
   * (8000x6000 16-bit: 384 MB a layer) and still check every sample landed where it belongs.
   */
  store?: "pixels" | "digest";
}

const clone = (state: DocState): DocState => ({
  width: state.width,
  height: state.height,
  selection: state.selection ? new Float32Array(state.selection) : null,
  activeIds: [...state.activeIds],
  layers: state.layers.map(cloneLayer),
});

function cloneLayer(layer: LayerState): LayerState {
  return {
    ...layer,
    content: layer.content ? { ...layer.content, data: new Float32Array(layer.content.data) } : null,
    mask: layer.mask ? { ...layer.mask, data: new Float32Array(layer.mask.data) } : null,
    children: layer.children.map(cloneLayer),
    ...(layer.digest ? { digest: { pixels: { ...layer.digest.pixels }, mask: { ...layer.digest.mask } } } : {}),
  };
}

/** A fill's pixels spelled out (for what needs them one by one); other rasters as they are. */
function materialize(raster: Raster): Raster {
  if (!raster.fill) return raster;
  const data = new Float32Array(raster.width * raster.height * 4);
  for (let i = 0; i < data.length; i += 4) data.set(raster.fill, i);
  return { left: raster.left, top: raster.top, width: raster.width, height: raster.height, data };
}

function clamp01(v: number): number {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

class FakeImageData implements imaging.PhotoshopImageData {
  disposed = false;
  readonly chunky = true;
  readonly type = "image/uncompressed" as const;
  constructor(
    readonly width: number,
    readonly height: number,
    readonly components: number,
    readonly componentSize: 8 | 16 | 32,
    readonly colorSpace: imaging.ColorSpace,
    readonly colorProfile: string,
    public samples: Uint8Array | Uint16Array | Float32Array,
  ) {}

  get hasAlpha(): boolean {
    return this.colorSpace === "Grayscale" ? this.components === 2 : this.components === 4;
  }

  get pixelFormat(): imaging.PixelFormat {
    if (this.colorSpace === "Grayscale") return this.hasAlpha ? "GrayscaleAlpha" : "Grayscale";
    if (this.colorSpace === "Lab") return this.hasAlpha ? "LABAlpha" : "LAB";
    return this.hasAlpha ? "RGBA" : "RGB";
  }

  getData = async (options: imaging.GetDataOptions = {}): Promise<Uint8Array | Uint16Array | Float32Array> => {
    if (this.disposed) throw new Error("getData: the image data was disposed.");
    if (options.chunky === false) throw new Error("fake Photoshop: planar data is not modelled.");
    return this.samples;
  };

  dispose = async (): Promise<void> => {
    // Photoshop frees the pixels at once (Adobe: rather than waiting for garbage collection).
    this.disposed = true;
    this.samples = new Uint8Array(0);
  };
}

/** A handle on a layer by id, as Photoshop's Layer objects are. */
export class FakeLayer {
  constructor(
    private readonly doc: FakeDocument,
    readonly id: number,
  ) {}

  private get state(): LayerState {
    const state = this.doc.findState(this.id);
    if (!state) throw new Error(`Layer ${this.id} does not exist (any more).`);
    return state;
  }

  get name(): string {
    return this.state.name;
  }
  set name(name: string) {
    this.doc.ps.requireModal("set layer name");
    this.state.name = name;
    this.doc.record("Rename Layer");
  }
  get visible(): boolean {
    return this.state.visible;
  }
  set visible(visible: boolean) {
    this.doc.ps.requireModal("set layer visibility");
    this.state.visible = visible;
    this.doc.record(visible ? "Show Layer" : "Hide Layer");
  }
  get kind(): Constants.LayerKind {
    const kind = this.state.kind;
    return (kind === "pixel" ? CONSTANTS.LayerKind.NORMAL : kind === "group" ? CONSTANTS.LayerKind.GROUP : CONSTANTS.LayerKind.TEXT) as Constants.LayerKind;
  }
  get isBackgroundLayer(): boolean {
    return this.state.background;
  }
  get boundsNoEffects(): PsBounds {
    return contentBounds(this.state) ?? { left: 0, top: 0, right: 0, bottom: 0 };
  }
  get layers(): FakeLayer[] | null {
    const state = this.state;
    return state.kind === "group" ? state.children.map((c) => new FakeLayer(this.doc, c.id)) : null;
  }
  get parent(): FakeLayer | null {
    const parent = this.doc.parentOf(this.id);
    return parent ? new FakeLayer(this.doc, parent.id) : null;
  }
  /** Test view: whether the layer has a user mask. */
  get hasMask(): boolean {
    return this.state.mask !== null;
  }
  /**
   * Layer.move, in this layer's own document: "placeBefore" above `relative`, "placeAfter"
   * below it, "placeInside" at the top of a group, "placeAtBeginning" / "placeAtEnd" at the
   * top / bottom of the document (above the background).
   */
  move(relative: FakeLayer, placement: Constants.ElementPlacement): void {
    this.doc.ps.requireModal("move a layer");
    if (relative.doc !== this.doc) throw new Error("move: the layer to move next to is in another document.");
    const state = this.state;
    if (state.background) throw new Error("move: the background layer cannot move.");
    if (relative.id === this.id || (state.kind === "group" && this.doc.findState(relative.id, state.children))) {
      throw new Error("move: a layer cannot move next to or into itself.");
    }
    const target = relative.state;
    const from = this.doc.listOf(this.id);
    from.splice(from.indexOf(state), 1);
    const layers = this.doc.state.layers;
    switch (placement as string) {
      case "placeBefore":
      case "placeAfter": {
        const list = this.doc.listOf(target.id);
        const at = list.indexOf(target) + (placement === "placeAfter" ? 1 : 0);
        if (placement === "placeAfter" && target.background) throw new Error("move: nothing goes below the background layer.");
        list.splice(at, 0, state);
        break;
      }
      case "placeInside":
        if (target.kind !== "group") throw new Error("move: placeInside needs a group.");
        target.children.unshift(state);
        break;
      case "placeAtBeginning":
        layers.unshift(state);
        break;
      case "placeAtEnd":
        layers.splice(layers.length - (layers.at(-1)?.background ? 1 : 0), 0, state);
        break;
      default:
        throw new Error(`move: unknown placement "${placement}".`);
    }
    this.doc.record("Layer Order");
  }
  delete(): void {
    this.doc.ps.requireModal("delete a layer");
    const list = this.doc.listOf(this.id);
    list.splice(list.findIndex((l) => l.id === this.id), 1);
    this.doc.record("Delete Layer");
  }
}

function contentBounds(layer: LayerState): PsBounds | null {
  if (layer.kind === "group") {
    let out: PsBounds | null = null;
    for (const child of layer.children) {
      const b = contentBounds(child);
      if (b) out = out ? { left: Math.min(out.left, b.left), top: Math.min(out.top, b.top), right: Math.max(out.right, b.right), bottom: Math.max(out.bottom, b.bottom) } : b;
    }
    return out;
  }
  if (layer.digest) return layer.digest.pixels.bounds;
  const c = layer.content;
  if (!c) return null;
  if (c.fill) return c.fill[3]! > 0 ? { left: c.left, top: c.top, right: c.left + c.width, bottom: c.top + c.height } : null;
  let left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
  for (let y = 0; y < c.height; y++) {
    for (let x = 0; x < c.width; x++) {
      if (c.data[(y * c.width + x) * 4 + 3]! <= 0) continue;
      left = Math.min(left, x);
      right = Math.max(right, x + 1);
      top = Math.min(top, y);
      bottom = Math.max(bottom, y + 1);
    }
  }
  return left === Infinity ? null : { left: c.left + left, top: c.top + top, right: c.left + right, bottom: c.top + bottom };
}

export class FakeDocument {
  state: DocState;
  readonly history: string[] = [];
  private suspension: { id: number; name: string; snapshot: DocState } | undefined;

  constructor(
    readonly ps: FakePhotoshop,
    readonly id: number,
    readonly title: string,
    readonly modeValue: FakeMode,
    readonly depth: FakeDepth,
    state: DocState,
    private nextLayerId: number,
    readonly store: "pixels" | "digest" = "pixels",
  ) {
    this.state = state;
  }

  // ---- the Document API the adapter uses ----

  get width(): number {
    return this.state.width;
  }
  get height(): number {
    return this.state.height;
  }
  get mode(): Constants.DocumentMode {
    return this.modeValue as Constants.DocumentMode;
  }
  get bitsPerChannel(): Constants.BitsPerChannelType {
    return (this.depth === 8 ? "bitDepth8" : this.depth === 16 ? "bitDepth16" : "bitDepth32") as Constants.BitsPerChannelType;
  }
  get layers(): FakeLayer[] {
    return this.state.layers.map((l) => new FakeLayer(this, l.id));
  }
  get activeLayers(): FakeLayer[] {
    return this.state.activeIds.filter((id) => this.findState(id)).map((id) => new FakeLayer(this, id));
  }
  get selection(): { readonly bounds: PsBounds | null } {
    const doc = this;
    return {
      get bounds() {
        return doc.selectionBounds();
      },
    };
  }

  // DOM methods that change the document. Adobe's docs do not say they act on a document that
  // is not in front (batchPlay without a target does not), so the fake takes the strict
  // reading: they change the document in front, and record a violation when that is not this
  // one. The adapter names documents by id instead (batchPlay references, imaging documentID).

  async resizeCanvas(width: number, height: number, anchor?: Constants.AnchorPosition): Promise<void> {
    this.ps.requireModal("resizeCanvas");
    this.ps.frontFor("resizeCanvas", this).growCanvas(width, height, (anchor as string | undefined) ?? "middle-center");
  }

  async createPixelLayer(options: { name?: string } = {}): Promise<FakeLayer> {
    this.ps.requireModal("createPixelLayer");
    const doc = this.ps.frontFor("createPixelLayer", this);
    return new FakeLayer(doc, doc.makeLayer("pixel", options.name ?? "Layer").id);
  }

  async createLayerGroup(options: { name?: string; fromLayers?: FakeLayer[] } = {}): Promise<FakeLayer> {
    this.ps.requireModal("createLayerGroup");
    const doc = this.ps.frontFor("createLayerGroup", this);
    const from = options.fromLayers ?? [];
    if (from.length === 0) return new FakeLayer(doc, doc.makeLayer("group", options.name ?? "Group").id);
    const group: LayerState = { id: doc.newLayerId(), name: options.name ?? "Group", visible: true, kind: "group", background: false, content: null, mask: null, children: [] };
    const list = doc.listOf(from[0]!.id);
    for (const layer of from) {
      if (doc.listOf(layer.id) !== list) throw new Error("createLayerGroup: the layers to group have different parents.");
      if (doc.findState(layer.id)!.background) throw new Error("createLayerGroup: the background layer cannot be grouped.");
    }
    const ids = new Set(from.map((l) => l.id));
    const at = list.findIndex((l) => ids.has(l.id));
    group.children = list.filter((l) => ids.has(l.id));
    const rest = list.filter((l) => !ids.has(l.id));
    rest.splice(at, 0, group);
    list.splice(0, list.length, ...rest);
    doc.state.activeIds = [group.id];
    doc.record("Group Layers");
    return new FakeLayer(doc, group.id);
  }

  // ---- changes, by whichever API names this document ----

  /** Image > Canvas Size: every layer (and the selection) moves by the anchor ("top-left"…). */
  growCanvas(width: number, height: number, anchor: string): void {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new Error(`resizeCanvas: bad size ${width}x${height}.`);
    const [v, h] = anchor.split("-") as [string, string];
    const dx = width - this.state.width;
    const dy = height - this.state.height;
    const ox = h === "left" ? 0 : h === "center" ? Math.floor(dx / 2) : dx;
    const oy = v === "top" ? 0 : v === "middle" ? Math.floor(dy / 2) : dy;
    const shift = (layer: LayerState) => {
      if (layer.content) {
        layer.content.left += ox;
        layer.content.top += oy;
      }
      if (layer.mask) {
        layer.mask.left += ox;
        layer.mask.top += oy;
      }
      layer.children.forEach(shift);
      if (layer.background && layer.content) {
        // The background layer is the canvas: new area in the background colour (white).
        const grown = new Float32Array(width * height * 4).fill(1);
        const c = materialize(layer.content);
        for (let y = 0; y < c.height; y++) {
          for (let x = 0; x < c.width; x++) {
            const tx = c.left + x;
            const ty = c.top + y;
            if (tx < 0 || ty < 0 || tx >= width || ty >= height) continue;
            grown.set(c.data.subarray((y * c.width + x) * 4, (y * c.width + x) * 4 + 4), (ty * width + tx) * 4);
          }
        }
        layer.content = { left: 0, top: 0, width, height, data: grown };
      }
    };
    this.state.layers.forEach(shift);
    if (this.state.selection) {
      const old = this.state.selection;
      const moved = new Float32Array(width * height);
      for (let y = 0; y < this.state.height; y++) {
        for (let x = 0; x < this.state.width; x++) {
          const tx = x + ox;
          const ty = y + oy;
          if (tx >= 0 && ty >= 0 && tx < width && ty < height) moved[ty * width + tx] = old[y * this.state.width + x]!;
        }
      }
      this.state.selection = moved;
    }
    this.state.width = width;
    this.state.height = height;
    this.record("Canvas Size");
  }

  /** A new empty pixel layer or group directly above the active layer (in its group), made active. */
  makeLayer(kind: "pixel" | "group", name: string): LayerState {
    const layer: LayerState = { id: this.newLayerId(), name, visible: true, kind, background: false, content: null, mask: null, children: [] };
    this.insertAboveActive(layer);
    this.record(kind === "group" ? "New Group" : "New Layer");
    return layer;
  }

  /** Layer ids are the document's own (another document may use the same numbers), as in Photoshop. */
  newLayerId(): number {
    return this.nextLayerId++;
  }

  // ---- internals shared with the imaging module ----

  record(name: string): void {
    if (!this.suspension) this.history.push(name);
  }

  suspend(name: string, id: number): void {
    if (this.suspension) throw new Error("suspendHistory: the document's history is already suspended.");
    this.suspension = { id, name, snapshot: clone(this.state) };
  }

  resume(id: number, commit: boolean, finalName?: string): void {
    if (!this.suspension || this.suspension.id !== id) throw new Error(`resumeHistory: no suspension ${id} on this document.`);
    const { name, snapshot } = this.suspension;
    this.suspension = undefined;
    if (commit) this.history.push(finalName ?? name);
    else this.state = snapshot;
  }

  get suspended(): boolean {
    return this.suspension !== undefined;
  }

  findState(id: number, layers: LayerState[] = this.state.layers): LayerState | undefined {
    for (const layer of layers) {
      if (layer.id === id) return layer;
      const inner = this.findState(id, layer.children);
      if (inner) return inner;
    }
    return undefined;
  }

  parentOf(id: number, layers: LayerState[] = this.state.layers, parent: LayerState | null = null): LayerState | null {
    for (const layer of layers) {
      if (layer.id === id) return parent;
      const inner = this.parentOf(id, layer.children, layer);
      if (inner !== null) return inner;
    }
    return null;
  }

  listOf(id: number): LayerState[] {
    const parent = this.parentOf(id);
    const list = parent ? parent.children : this.state.layers;
    if (!list.some((l) => l.id === id)) throw new Error(`Layer ${id} does not exist.`);
    return list;
  }

  private insertAboveActive(layer: LayerState): void {
    const active = this.state.activeIds.length === 1 ? this.findState(this.state.activeIds[0]!) : undefined;
    if (active) {
      const list = this.listOf(active.id);
      list.splice(list.indexOf(active), 0, layer);
    } else {
      this.state.layers.unshift(layer);
    }
    this.state.activeIds = [layer.id];
  }

  selectionBounds(): PsBounds | null {
    const sel = this.state.selection;
    if (!sel) return null;
    let left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    for (let y = 0; y < this.state.height; y++) {
      for (let x = 0; x < this.state.width; x++) {
        if (sel[y * this.state.width + x]! <= 0) continue;
        left = Math.min(left, x);
        right = Math.max(right, x + 1);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y + 1);
      }
    }
    return left === Infinity ? null : { left, top, right, bottom };
  }

  /**
   * The merged visible image, RGBA 0..1 in document encoding (float64 while blending), over
   * `area` (inside the canvas; the whole canvas by default).
   */
  compositeFloat(area: PsBounds = { left: 0, top: 0, right: this.state.width, bottom: this.state.height }): Float64Array {
    const width = area.right - area.left;
    const out = new Float64Array(width * (area.bottom - area.top) * 4);
    const paint = (layers: LayerState[]) => {
      for (let i = layers.length - 1; i >= 0; i--) {
        const layer = layers[i]!;
        if (!layer.visible) continue;
        if (layer.kind === "group") {
          paint(layer.children);
          continue;
        }
        if (layer.digest) throw new Error("fake Photoshop: a digest document keeps no pixels of the layers written into it.");
        const c = layer.content;
        if (!c) continue;
        // A fill's one colour, or the pixel's.
        const src = c.fill ?? c.data;
        const step = c.fill ? 0 : 4;
        for (let y = Math.max(area.top, c.top); y < Math.min(area.bottom, c.top + c.height); y++) {
          for (let x = Math.max(area.left, c.left); x < Math.min(area.right, c.left + c.width); x++) {
            const s = ((y - c.top) * c.width + (x - c.left)) * step;
            const a = src[s + 3]! * maskAt(layer.mask, x, y);
            if (a <= 0) continue;
            const o = ((y - area.top) * width + (x - area.left)) * 4;
            const below = out[o + 3]!;
            const alpha = a + below * (1 - a);
            for (let k = 0; k < 3; k++) out[o + k] = (src[s + k]! * a + out[o + k]! * below * (1 - a)) / alpha;
            out[o + 3] = alpha;
          }
        }
      }
    };
    paint(this.state.layers);
    return out;
  }

  /**
   * The merged image's one colour when every visible layer is a fill over the canvas (RGBA 0..1,
   * document encoding), else null: big fill documents are read without compositing them.
   */
  uniformColour(): Float64Array | null {
    const out = new Float64Array(4);
    const paint = (layers: LayerState[]): boolean =>
      [...layers].reverse().every((layer) => {
        if (!layer.visible) return true;
        if (layer.kind === "group") return paint(layer.children);
        const c = layer.content;
        if (layer.digest || layer.mask || (c && !c.fill)) return false;
        if (!c) return true;
        if (c.left > 0 || c.top > 0 || c.left + c.width < this.width || c.top + c.height < this.height) return false;
        const a = c.fill![3]!;
        const alpha = a + out[3]! * (1 - a);
        for (let k = 0; k < 3; k++) out[k] = alpha > 0 ? (c.fill![k]! * a + out[k]! * out[3]! * (1 - a)) / alpha : 0;
        out[3] = alpha;
        return true;
      });
    return paint(this.state.layers) ? out : null;
  }

  /** Whether the composite is opaque by construction (a visible background layer). */
  hasOpaqueBase(): boolean {
    const bottom = this.state.layers[this.state.layers.length - 1];
    return !!bottom && bottom.background && bottom.visible;
  }

  // ---- test views (not Photoshop API) ----

  /** The merged visible image as 8-bit sRGB RGBA. */
  composite8(): { width: number; height: number; data: Uint8Array } {
    const f = this.compositeFloat();
    const data = new Uint8Array(f.length);
    for (let i = 0; i < f.length; i++) {
      const alpha = i % 4 === 3;
      const v = !alpha && this.depth === 32 ? linearToSrgb(clamp01(f[i]!)) : clamp01(f[i]!);
      data[i] = Math.round(v * 255);
    }
    return { width: this.state.width, height: this.state.height, data };
  }

  /** Everything an artist could see changed, to compare before and after (pixels as a digest of the merged image). */
  snapshot(): { width: number; height: number; history: string[]; tree: LayerSummary[]; pixels: string } {
    const { data } = this.composite8();
    let hash = 0x811c9dc5;
    for (let i = 0; i < data.length; i++) hash = Math.imul(hash ^ data[i]!, 0x01000193);
    return { width: this.width, height: this.height, history: [...this.history], tree: this.tree(), pixels: (hash >>> 0).toString(16) };
  }

  /** A summary of the layer tree, top to bottom: names, kinds, visibility, masks. */
  tree(): LayerSummary[] {
    const summarize = (layer: LayerState): LayerSummary => ({
      id: layer.id,
      name: layer.name,
      kind: layer.kind,
      visible: layer.visible,
      hasMask: layer.mask !== null,
      bounds: contentBounds(layer),
      ...(layer.kind === "group" ? { children: layer.children.map(summarize) } : {}),
    });
    return this.state.layers.map(summarize);
  }

  /** Test setup: a soft selection from 0..255 values over the canvas (not Photoshop API). */
  setSelection(mask: Uint8Array | null): void {
    if (mask && mask.length !== this.state.width * this.state.height) throw new Error("setSelection: the mask must cover the canvas.");
    this.state.selection = mask ? Float32Array.from(mask, (v) => v / 255) : null;
  }

  /** Test setup: which layers are active (not Photoshop API). */
  setActive(ids: number[]): void {
    this.state.activeIds = ids;
  }

  /** What a digest document kept of a layer's written pixels and mask (test view). */
  digest(id: number): { pixels: PixelDigest; mask: PixelDigest } | undefined {
    return this.findState(id)?.digest;
  }

  /** A layer's mask as 8-bit values over its rectangle (test view). */
  layerMask(id: number): { left: number; top: number; width: number; height: number; data: Uint8Array } | null {
    const mask = this.findState(id)?.mask;
    if (!mask) return null;
    return { ...mask, data: Uint8Array.from(mask.data, (v) => Math.round(v * 255)) };
  }
}

export interface LayerSummary {
  id: number;
  name: string;
  kind: "pixel" | "group" | "text";
  visible: boolean;
  hasMask: boolean;
  bounds: PsBounds | null;
  children?: LayerSummary[];
}

function maskAt(mask: MaskRaster | null, x: number, y: number): number {
  if (!mask) return 1;
  const mx = x - mask.left;
  const my = y - mask.top;
  if (mx < 0 || my < 0 || mx >= mask.width || my >= mask.height) return mask.outside;
  return mask.data[my * mask.width + mx]!;
}

function union(a: PsBounds | null, b: PsBounds): PsBounds {
  return a ? { left: Math.min(a.left, b.left), top: Math.min(a.top, b.top), right: Math.max(a.right, b.right), bottom: Math.max(a.bottom, b.bottom) } : b;
}

function intersect(a: PsBounds, b: PsBounds): PsBounds | null {
  const left = Math.max(a.left, b.left);
  const top = Math.max(a.top, b.top);
  const right = Math.min(a.right, b.right);
  const bottom = Math.min(a.bottom, b.bottom);
  return right > left && bottom > top ? { left, top, right, bottom } : null;
}

function boundsOf(bounds: imaging.Bounds | imaging.BoundsSize | undefined, fallback: PsBounds): PsBounds {
  if (!bounds) return fallback;
  if ("width" in bounds) return { left: bounds.left, top: bounds.top, right: bounds.left + bounds.width, bottom: bounds.top + bounds.height };
  return { left: bounds.left, top: bounds.top, right: bounds.right, bottom: bounds.bottom };
}

const TYPE_BY_SIZE = { 8: Uint8Array, 16: Uint16Array, 32: Float32Array } as const;

/**
 * The scale of a read with this targetSize: targetSize / requested bounds on each axis, one
 * side given meaning the same scale for both. Photoshop scales down only.
 */
function targetScale(api: string, size: imaging.Size | undefined, requested: PsBounds): { x: number; y: number } {
  if (!size || (size.width === undefined && size.height === undefined)) return { x: 1, y: 1 };
  for (const side of [size.width, size.height]) {
    if (side !== undefined && (!Number.isInteger(side) || side < 1)) throw new Error(`${api}: targetSize sides must be whole pixels, not ${side}.`);
  }
  const x = size.width !== undefined ? size.width / (requested.right - requested.left) : size.height! / (requested.bottom - requested.top);
  const y = size.height !== undefined ? size.height / (requested.bottom - requested.top) : x;
  if (x > 1 || y > 1) throw new Error(`${api}: fake Photoshop: a targetSize bigger than sourceBounds (enlarging) is not modelled.`);
  return { x, y };
}

/** The size of the trimmed area at that scale (each side rounded, at least 1 pixel). */
function scaledSize(trimmed: PsBounds, scale: { x: number; y: number }): { width: number; height: number } {
  return {
    width: Math.max(1, Math.round((trimmed.right - trimmed.left) * scale.x)),
    height: Math.max(1, Math.round((trimmed.bottom - trimmed.top) * scale.y)),
  };
}

/**
 * Shrinks each row of `src` (width x height, `channels` floats a pixel) to `to` pixels by area
 * averaging, partly covered pixels counted by the part covered. The result is transposed
 * (height wide, `to` high), so a second call shrinks the other axis and turns it back.
 */
function shrinkRowsTransposed(src: ArrayLike<number>, width: number, height: number, channels: number, to: number): Float64Array {
  const out = new Float64Array(to * height * channels);
  const step = width / to;
  for (let i = 0; i < to; i++) {
    const from = i * step;
    const until = from + step;
    for (let x = Math.floor(from); x < Math.min(width, Math.ceil(until)); x++) {
      const share = (Math.min(until, x + 1) - Math.max(from, x)) / step;
      if (share <= 0) continue;
      for (let y = 0; y < height; y++) {
        const s = (y * width + x) * channels;
        const o = (i * height + y) * channels;
        for (let k = 0; k < channels; k++) out[o + k]! += src[s + k]! * share;
      }
    }
  }
  return out;
}

/**
 * `src` (width x height, `channels` floats a pixel) shrunk to the target size by area
 * averaging; with `alpha` (that channel's index) colours are averaged weighted by alpha, so
 * transparent pixels lend no colour.
 */
function areaAverage(src: Float32Array | Float64Array, width: number, height: number, channels: number, target: { width: number; height: number }, alpha?: number): ArrayLike<number> {
  if (target.width === width && target.height === height) return src;
  const weighted = Float64Array.from(src);
  if (alpha !== undefined) {
    for (let i = 0; i < weighted.length; i += channels) for (let k = 0; k < channels; k++) if (k !== alpha) weighted[i + k]! *= src[i + alpha]!;
  }
  const across = shrinkRowsTransposed(weighted, width, height, channels, target.width);
  const out = shrinkRowsTransposed(across, height, target.width, channels, target.height);
  if (alpha !== undefined) {
    for (let i = 0; i < out.length; i += channels) {
      const a = out[i + alpha]!;
      for (let k = 0; k < channels; k++) if (k !== alpha) out[i + k] = a > 0 ? out[i + k]! / a : 0;
    }
  }
  return out;
}

/** The result code of the fake's error answers (Photoshop's codes are negative numbers too). */
const COMMAND_FAILED = -25920;

/** A command Photoshop could not do on its target: batchPlay answers it with an error descriptor. */
class CommandFailure extends Error {
  constructor(
    message: string,
    readonly result = COMMAND_FAILED,
  ) {
    super(message);
  }
}

interface RefPart {
  _ref: string;
  _id?: number;
  _enum?: string;
  _value?: string;
}

/** An action reference ({_ref}, [{_ref}, ...] or {_ref: [...]}) as its parts, most specific first. */
function referenceParts(ref: unknown): RefPart[] {
  if (ref === undefined) return [];
  if (Array.isArray(ref)) return ref.flatMap(referenceParts);
  if (typeof ref === "object" && ref !== null && "_ref" in ref) {
    const inner = (ref as { _ref: unknown })._ref;
    if (Array.isArray(inner)) return inner.flatMap(referenceParts);
    if (typeof inner === "string") return [ref as RefPart];
  }
  throw new CommandFailure("The command's reference is not an action reference.");
}

/** The document a reference names by id, or the one in front where it names none. */
function referencedDocument(ps: FakePhotoshop, parts: RefPart[]): FakeDocument {
  const part = parts.find((p) => p._ref === "document");
  if (part && part._id === undefined && part._enum !== "ordinal") throw new Error("fake Photoshop: documents are referenced by _id or as the target ordinal only.");
  if (part?._id !== undefined) {
    const doc = ps.documents.find((d) => d.id === part._id);
    if (!doc) throw new CommandFailure(`There is no open document with id ${part._id}.`);
    return doc;
  }
  const front = ps.app.activeDocument;
  if (!front) throw new CommandFailure("There is no open document.");
  return front;
}

/** The layer a reference names by id, or the document's one active layer where it names none. */
function referencedLayer(doc: FakeDocument, parts: RefPart[]): LayerState {
  const part = parts.find((p) => p._ref === "layer");
  if (part && part._id === undefined && part._enum !== "ordinal") throw new Error("fake Photoshop: layers are referenced by _id or as the target ordinal only.");
  if (part?._id !== undefined) {
    const layer = doc.findState(part._id);
    if (!layer) throw new CommandFailure(`The document "${doc.title}" has no layer with id ${part._id}.`);
    return layer;
  }
  const [id, ...more] = doc.state.activeIds;
  if (id === undefined || more.length) throw new CommandFailure("Select one layer first.");
  return doc.findState(id)!;
}

type Descriptor = { _obj: string; [key: string]: unknown };

/** A batchPlay command the fake knows: which descriptors it is, and what it does (its result's fields). */
interface FakeCommand {
  matches(command: Descriptor): boolean;
  run(ps: FakePhotoshop, command: Descriptor): Record<string, unknown>;
}

const field = (command: Descriptor, ...path: string[]): unknown =>
  path.reduce<unknown>((v, key) => (typeof v === "object" && v !== null ? (v as Record<string, unknown>)[key] : undefined), command);

/** Photoshop's canvasSize anchor (horizontalLocation / verticalLocation) as the fake's anchor name. */
function canvasAnchor(command: Descriptor): string {
  const h = field(command, "horizontal", "_value") ?? "center";
  const v = field(command, "vertical", "_value") ?? "center";
  if (!["left", "center", "right"].includes(h as string) || !["top", "center", "bottom"].includes(v as string)) throw new CommandFailure("The canvas anchor is not one Photoshop knows.");
  return `${v === "center" ? "middle" : v}-${h}`;
}

function pixelsOf(value: unknown): number {
  const unit = value as { _unit?: string; _value?: number } | undefined;
  if (unit?._unit !== "pixelsUnit" || typeof unit._value !== "number") throw new Error("fake Photoshop: canvas sizes are modelled in pixelsUnit only.");
  return unit._value;
}

const COMMANDS: FakeCommand[] = [
  {
    // Layer > New > Layer / Group: `_target` is the class to make, in the document it names.
    matches: (c) => c._obj === "make" && ["layer", "layerSection"].includes(referenceParts(c._target)[0]?._ref ?? ""),
    run(ps, command) {
      const [what, ...rest] = referenceParts(command._target);
      if (what!._id !== undefined) throw new CommandFailure("A new layer cannot be made at an existing layer's id.");
      const doc = referencedDocument(ps, rest);
      const group = what!._ref === "layerSection";
      const name = field(command, "using", "name");
      doc.makeLayer(group ? "group" : "pixel", typeof name === "string" ? name : group ? "Group 1" : "Layer 1");
      return {};
    },
  },
  {
    // Image > Canvas Size, in the document `_target` names.
    matches: (c) => c._obj === "canvasSize",
    run(ps, command) {
      const doc = referencedDocument(ps, referenceParts(command._target));
      const width = pixelsOf(command.width);
      const height = pixelsOf(command.height);
      if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new CommandFailure(`The canvas cannot be ${width}x${height} pixels.`);
      doc.growCanvas(width, height, canvasAnchor(command));
      return {};
    },
  },
  {
    // Layer > Layer Mask > Reveal All: `at` is the mask channel, of the layer and document it names.
    matches: (c) => c._obj === "make" && field(c, "new", "_class") === "channel" && field(c, "using", "_value") === "revealAll",
    run(ps, command) {
      const parts = referenceParts(command.at);
      if (parts[0]?._ref !== "channel" || parts[0]._value !== "mask") throw new Error("fake Photoshop: only layer masks are made.");
      const doc = referencedDocument(ps, parts);
      const layer = referencedLayer(doc, parts);
      if (layer.background) throw new CommandFailure("The background layer cannot have a layer mask.");
      if (layer.mask) throw new CommandFailure("The layer already has a layer mask.");
      layer.mask = { left: 0, top: 0, width: 0, height: 0, data: new Float32Array(0), outside: 1 };
      doc.record("Add Layer Mask");
      return {};
    },
  },
];

/** One getPixels / getSelection call as the fake answered it (test view). */
export interface FakeRead {
  api: "getPixels" | "getSelection";
  targetSize: imaging.Size | undefined;
  sourceBounds: PsBounds;
  width: number;
  height: number;
  /** How many samples Photoshop handed over (width x height x components). */
  samples: number;
}

/** One putPixels / putLayerMask as the fake took it (test view). */
export interface FakeWrite {
  api: "putPixels" | "putLayerMask";
  documentId: number;
  layerId: number;
  bounds: PsBounds;
  /** The bytes of the image data handed over. */
  bytes: number;
}

export class FakePhotoshop implements PhotoshopApi<FakeLayer> {
  readonly documents: FakeDocument[] = [];
  private active: FakeDocument | null = null;
  private modalName: string | undefined;
  private nextId = 1;
  private nextSuspension = 1;
  /** Every executeAsModal command name, in order. */
  readonly modalCommands: string[] = [];
  /** Rules broken by the code under test (for tests that assert none). */
  readonly violations: string[] = [];
  /** Every imaging read, in order, with the size of what it handed over. */
  readonly reads: FakeRead[] = [];
  /** Every putPixels / putLayerMask, in order, with the bytes of the image data it was handed. */
  readonly writes: FakeWrite[] = [];
  /** Set to make the next modal scope report isCancelled, as when the artist presses Esc. */
  cancelNextModal = false;
  private readonly faults = new Map<string, number>();
  private readonly calls = new Map<string, number>();

  /**
   * Test setup: the nth call (1-based, from now) of this imaging function fails, as a full disk
   * would make it (for batchPlay: the nth command, answered with an error descriptor).
   */
  injectFault(api: "putPixels" | "putLayerMask" | "getPixels" | "batchPlay", nth: number): void {
    this.faults.set(api, (this.calls.get(api) ?? 0) + nth);
  }

  private count(api: string): void {
    const n = (this.calls.get(api) ?? 0) + 1;
    this.calls.set(api, n);
    if (this.faults.get(api) !== n) return;
    if (api === "batchPlay") throw new CommandFailure("Photoshop could not complete the command (scratch disk full).");
    throw new Error(`${api}: Photoshop could not complete the request (scratch disk full).`);
  }

  readonly constants = CONSTANTS as unknown as PhotoshopApi["constants"];

  readonly app: { readonly activeDocument: FakeDocument | null; readonly documents: FakeDocument[] };

  constructor() {
    const self = this;
    this.app = {
      get activeDocument() {
        return self.active;
      },
      get documents() {
        return self.documents;
      },
    };
  }

  readonly core = {
    executeAsModal: async <T>(target: (context: ExecutionContext, descriptor?: object) => Promise<T>, options: { commandName: string }): Promise<T> => {
      if (this.modalName !== undefined) throw new Error(`host is in a modal state (${this.modalName})`);
      if (!options?.commandName) throw new Error("executeAsModal: commandName is required.");
      this.modalName = options.commandName;
      this.modalCommands.push(options.commandName);
      const suspensions = new Map<number, FakeDocument>();
      const cancelled = this.cancelNextModal;
      this.cancelNextModal = false;
      const context: ExecutionContext = {
        isCancelled: cancelled,
        onCancel: undefined,
        reportProgress: () => {},
        hostControl: {
          suspendHistory: async ({ documentID, name }) => {
            this.requireModal("suspendHistory");
            const doc = this.documentById(documentID);
            const id = this.nextSuspension++;
            doc.suspend(name, id);
            suspensions.set(id, doc);
            return { historySuspensionID: id };
          },
          resumeHistory: async ({ historySuspensionID, finalName }, commit = true) => {
            this.requireModal("resumeHistory");
            const doc = suspensions.get(historySuspensionID);
            if (!doc) throw new Error(`resumeHistory: unknown suspension ${historySuspensionID}.`);
            suspensions.delete(historySuspensionID);
            doc.resume(historySuspensionID, commit, finalName);
          },
          registerAutoCloseDocument: async () => {},
          unregisterAutoCloseDocument: async () => {},
        },
      };
      try {
        return await target(context);
      } finally {
        for (const [id, doc] of suspensions) {
          this.violations.push(`history of document ${doc.id} left suspended by "${options.commandName}"`);
          doc.resume(id, true);
        }
        this.modalName = undefined;
      }
    },
  };

  readonly action = {
    /**
     * Photoshop's batchPlay: each command acts on what its reference (`_target`, or `at` for
     * "make") names by id, and on the front document and its active layer where the reference
     * names none, as Adobe's batchPlay docs say. A command Photoshop cannot do on its target is
     * answered with {_obj: "error", message, result} instead of a throw, and the commands after
     * it are not played (continueOnError is false by default).
     */
    batchPlay: async (commands: Array<{ _obj: string; [key: string]: unknown }>): Promise<Array<{ _obj: string; [key: string]: unknown }>> => {
      this.requireModal("batchPlay");
      const results: Array<{ _obj: string; [key: string]: unknown }> = [];
      for (const command of commands) {
        const play = COMMANDS.find((c) => c.matches(command));
        if (!play) throw new Error(`fake Photoshop: batchPlay "${command._obj}" is not modelled.`);
        try {
          this.count("batchPlay");
          results.push({ _obj: command._obj, ...play.run(this, command) });
        } catch (error) {
          if (!(error instanceof CommandFailure)) throw error;
          results.push({ _obj: "error", message: error.message, result: error.result });
          break;
        }
      }
      return results;
    },
  };

  readonly imaging = {
    getPixels: async (options: imaging.GetPixelsOptions): Promise<imaging.GetPixelsResult> => {
      this.count("getPixels");
      const doc = this.documentFor(options.documentID);
      this.requireImagingMode(doc);
      const canvas = { left: 0, top: 0, right: doc.width, bottom: doc.height };
      const requested = boundsOf(options.sourceBounds, canvas);
      const scale = targetScale("getPixels", options.targetSize, requested);
      let available: PsBounds | null;
      /** The RGBA floats of a rectangle inside `available`. */
      let gather: (area: PsBounds) => Float32Array | Float64Array;
      let hasAlpha: boolean;
      if (options.layerID !== undefined) {
        const layer = doc.findState(options.layerID);
        if (!layer) throw new Error(`getPixels: there is no layer ${options.layerID}.`);
        if (layer.kind !== "pixel") throw new Error("getPixels: the layer is not a pixel layer.");
        available = contentBounds(layer);
        hasAlpha = !layer.background;
        gather = (area) => {
          // Inside the content bounds by construction.
          const c = materialize(layer.content!);
          const width = area.right - area.left;
          const out = new Float32Array(width * (area.bottom - area.top) * 4);
          for (let y = area.top; y < area.bottom; y++) {
            const from = ((y - c.top) * c.width + (area.left - c.left)) * 4;
            out.set(c.data.subarray(from, from + width * 4), (y - area.top) * width * 4);
          }
          return out;
        };
      } else {
        available = null;
        for (const layer of doc.state.layers) {
          if (!layer.visible) continue;
          const b = contentBounds(layer);
          if (b) available = available ? { left: Math.min(available.left, b.left), top: Math.min(available.top, b.top), right: Math.max(available.right, b.right), bottom: Math.max(available.bottom, b.bottom) } : b;
        }
        available = available ? intersect(available, canvas) : null;
        hasAlpha = !doc.hasOpaqueBase();
        gather = (area) => doc.compositeFloat(area);
      }
      const trimmed = available ? intersect(requested, available) : null;
      if (!trimmed) throw new Error("getPixels: there are no pixels in the requested area.");
      const componentSize = options.componentSize === undefined || options.componentSize === -1 ? doc.depth : options.componentSize;
      const gray = options.colorSpace ? options.colorSpace === "Grayscale" : doc.modeValue === "grayscaleMode";
      const applyAlpha = options.applyAlpha === true;
      const alpha = hasAlpha && !applyAlpha;
      const components = (gray ? 1 : 3) + (alpha ? 1 : 0);
      const { width, height } = scaledSize(trimmed, scale);
      // A document of fills is one colour: nothing to composite or average, whatever its size.
      const uniform = options.layerID === undefined ? doc.uniformColour() : null;
      const pixels = uniform
        ? Float64Array.from({ length: width * height * 4 }, (_, i) => uniform[i % 4]!)
        : areaAverage(gather(trimmed), trimmed.right - trimmed.left, trimmed.bottom - trimmed.top, 4, { width, height }, 3);
      const samples = new TYPE_BY_SIZE[componentSize](width * height * components);
      for (let i = 0; i < width * height; i++) {
        let [r, g, b] = [pixels[i * 4]!, pixels[i * 4 + 1]!, pixels[i * 4 + 2]!];
        const a = pixels[i * 4 + 3]!;
        if (applyAlpha) {
          const white = 1;
          r = r * a + white * (1 - a);
          g = g * a + white * (1 - a);
          b = b * a + white * (1 - a);
        }
        const o = i * components;
        const colours = gray ? [r] : [r, g, b];
        colours.forEach((v, k) => {
          samples[o + k] = this.encodeSample(v, doc.depth, componentSize);
        });
        if (alpha) samples[o + components - 1] = this.encodeAlpha(a, componentSize);
      }
      const imageData = new FakeImageData(width, height, components, componentSize, gray ? "Grayscale" : "RGB", options.colorProfile ?? (gray ? "Gray Gamma 2.2" : "sRGB IEC61966-2.1"), samples);
      this.reads.push({ api: "getPixels", targetSize: options.targetSize, sourceBounds: trimmed, width, height, samples: samples.length });
      return { imageData, sourceBounds: trimmed, level: 0 };
    },

    putPixels: async (options: imaging.PutPixelsOptions): Promise<void> => {
      this.requireModal("putPixels");
      this.count("putPixels");
      const doc = this.documentFor(options.documentID);
      const layer = doc.findState(options.layerID);
      if (!layer) throw new Error(`putPixels: there is no layer ${options.layerID}.`);
      if (layer.kind !== "pixel") throw new Error("putPixels: the target must be a pixel layer.");
      const data = this.checkImageData(options.imageData, doc);
      const colourComponents = data.colorSpace === "Grayscale" ? 1 : 3;
      const at = options.targetBounds ?? { left: 0, top: 0 };
      this.recordWrite("putPixels", doc, layer, at, data);
      if (doc.store === "digest") {
        const digest = this.digestOf(layer, "pixels", options.replace !== false);
        const opaque = this.encodeAlpha(1, data.componentSize);
        for (let y = 0, s = 0; y < data.height; y++) {
          for (let x = 0; x < data.width; x++, s += data.components) {
            for (let k = 0; k < 3; k++) addToDigest(digest, at.left + x, at.top + y, k, data.samples[s + (colourComponents === 1 ? 0 : k)]!);
            addToDigest(digest, at.left + x, at.top + y, 3, data.hasAlpha ? data.samples[s + data.components - 1]! : opaque);
          }
        }
        digest.bounds = union(digest.bounds, { left: at.left, top: at.top, right: at.left + data.width, bottom: at.top + data.height });
        doc.record(options.commandName ?? "Put Pixels");
        return;
      }
      const raster: Raster = { left: at.left, top: at.top, width: data.width, height: data.height, data: new Float32Array(data.width * data.height * 4) };
      for (let i = 0; i < data.width * data.height; i++) {
        const s = i * data.components;
        for (let k = 0; k < 3; k++) raster.data[i * 4 + k] = this.decodeSample(data.samples[s + (colourComponents === 1 ? 0 : k)]!, data.componentSize);
        raster.data[i * 4 + 3] = data.hasAlpha ? this.decodeAlpha(data.samples[s + data.components - 1]!, data.componentSize) : 1;
      }
      if (options.replace === false && layer.content) layer.content = merge(materialize(layer.content), raster);
      else layer.content = raster;
      doc.record(options.commandName ?? "Put Pixels");
    },

    getSelection: async (options: imaging.GetSelectionOptions): Promise<imaging.GetSelectionResult> => {
      const doc = this.documentFor(options.documentID);
      const selected = doc.selectionBounds();
      if (!selected) throw new Error("getSelection: there is no selection.");
      const requested = boundsOf(options.sourceBounds, { left: 0, top: 0, right: doc.width, bottom: doc.height });
      const scale = targetScale("getSelection", options.targetSize, requested);
      const trimmed = intersect(requested, selected);
      if (!trimmed) throw new Error("getSelection: the requested area holds no selection.");
      const trimmedWidth = trimmed.right - trimmed.left;
      const values = new Float32Array(trimmedWidth * (trimmed.bottom - trimmed.top));
      const sel = doc.state.selection!;
      for (let y = trimmed.top; y < trimmed.bottom; y++) {
        values.set(sel.subarray(y * doc.width + trimmed.left, y * doc.width + trimmed.right), (y - trimmed.top) * trimmedWidth);
      }
      const { width, height } = scaledSize(trimmed, scale);
      const shrunk = areaAverage(values, trimmedWidth, trimmed.bottom - trimmed.top, 1, { width, height });
      const samples = new TYPE_BY_SIZE[doc.depth](width * height);
      for (let i = 0; i < samples.length; i++) samples[i] = this.encodeAlpha(shrunk[i]!, doc.depth);
      this.reads.push({ api: "getSelection", targetSize: options.targetSize, sourceBounds: trimmed, width, height, samples: samples.length });
      return { imageData: new FakeImageData(width, height, 1, doc.depth, "Grayscale", "Gray Gamma 2.2", samples), sourceBounds: trimmed };
    },

    putLayerMask: async (options: imaging.PutLayerMaskOptions): Promise<void> => {
      this.requireModal("putLayerMask");
      this.count("putLayerMask");
      const doc = this.documentFor(options.documentID);
      const layer = doc.findState(options.layerID);
      if (!layer) throw new Error(`putLayerMask: there is no layer ${options.layerID}.`);
      if (!layer.mask) throw new Error("putLayerMask: the layer has no user mask.");
      const data = this.checkImageData(options.imageData, doc);
      if (data.components !== 1 || data.colorSpace !== "Grayscale") throw new Error("putLayerMask: the mask must be one grayscale component.");
      const at = options.targetBounds ?? { left: 0, top: 0 };
      this.recordWrite("putLayerMask", doc, layer, at, data);
      if (doc.store === "digest") {
        const digest = this.digestOf(layer, "mask", options.replace !== false);
        for (let i = 0; i < data.width * data.height; i++) addToDigest(digest, at.left + (i % data.width), at.top + Math.floor(i / data.width), 0, data.samples[i]!);
        digest.bounds = union(digest.bounds, { left: at.left, top: at.top, right: at.left + data.width, bottom: at.top + data.height });
        doc.record(options.commandName ?? "Put Layer Mask");
        return;
      }
      const region: MaskRaster = { left: at.left, top: at.top, width: data.width, height: data.height, data: Float32Array.from(data.samples, (v) => this.decodeAlpha(v, data.componentSize)), outside: 0 };
      layer.mask = options.replace === false ? mergeMask(layer.mask, region) : region;
      doc.record(options.commandName ?? "Put Layer Mask");
    },

    createImageDataFromBuffer: async (data: Uint8Array | Uint16Array | Float32Array, options: imaging.CreateImageDataFromBufferOptions): Promise<imaging.PhotoshopImageData> => {
      const componentSize = data instanceof Uint8Array ? 8 : data instanceof Uint16Array ? 16 : data instanceof Float32Array ? 32 : undefined;
      if (!componentSize) throw new Error("createImageDataFromBuffer: expected a Uint8Array, Uint16Array or Float32Array.");
      const { width, height, components, colorSpace } = options;
      if (data.length !== width * height * components) throw new Error(`createImageDataFromBuffer: ${data.length} samples for ${width}x${height}x${components}.`);
      if (options.chunky === false) throw new Error("fake Photoshop: planar data is not modelled.");
      const allowed = colorSpace === "Grayscale" ? [1, 2] : colorSpace === "RGB" || colorSpace === "Lab" ? [3, 4] : [];
      if (!allowed.includes(components)) throw new Error(`createImageDataFromBuffer: ${components} components do not fit ${colorSpace}.`);
      return new FakeImageData(width, height, components, componentSize, colorSpace as imaging.ColorSpace, options.colorProfile ?? "", new (data.constructor as typeof Uint8Array)(data as Uint8Array));
    },

    encodeImageData: async (options: imaging.EncodeImageDataOptions): Promise<number[] | string> => {
      const image = options.imageData as FakeImageData;
      if (image.disposed) throw new Error("encodeImageData: the image data was disposed.");
      const rgba = new Uint8Array(image.width * image.height * 4);
      const gray = image.colorSpace === "Grayscale";
      for (let i = 0; i < image.width * image.height; i++) {
        const s = i * image.components;
        for (let k = 0; k < 3; k++) rgba[i * 4 + k] = this.to8(image.samples[s + (gray ? 0 : k)]!, image.componentSize);
        rgba[i * 4 + 3] = image.hasAlpha ? this.to8(image.samples[s + image.components - 1]!, image.componentSize) : 255;
      }
      // Photoshop answers with JPEG; a stored PNG is as good for an <img> and simple to write.
      const png = encodePng(image.width, image.height, rgba);
      return options.base64 ? bytesToBase64(png) : Array.from(png);
    },
  };

  // ---- test setup ----

  openDocument(spec: FakeDocumentSpec): FakeDocument {
    const depth = spec.depth ?? 8;
    let nextLayerId = 1;
    const layers: LayerState[] = spec.layers.map((l) => {
      const state: LayerState = { id: nextLayerId++, name: l.name, visible: l.visible ?? true, kind: l.kind ?? "pixel", background: l.background ?? false, content: null, mask: null, children: [] };
      if (l.pixels) {
        const data = new Float32Array(l.pixels.width * l.pixels.height * 4);
        for (let i = 0; i < data.length; i++) {
          const v = l.pixels.data[i]! / 255;
          // Stored as a document of this depth would hold it.
          data[i] = i % 4 === 3 ? v : depth === 32 ? srgbToLinear(v) : depth === 16 ? Math.round(v * 32768) / 32768 : v;
        }
        state.content = { left: l.left ?? 0, top: l.top ?? 0, width: l.pixels.width, height: l.pixels.height, data };
      }
      if (l.fill) {
        const fill = l.fill.map((v, k) => (k === 3 ? v / 255 : depth === 32 ? srgbToLinear(v / 255) : depth === 16 ? Math.round((v / 255) * 32768) / 32768 : v / 255));
        state.content = { left: 0, top: 0, width: spec.width, height: spec.height, data: new Float32Array(0), fill };
      }
      return state;
    });
    const top = layers[0];
    const doc = new FakeDocument(this, this.newId(), spec.title ?? "Untitled-1", spec.mode ?? "RGBColorMode", depth, {
      width: spec.width,
      height: spec.height,
      layers,
      selection: null,
      activeIds: top ? [top.id] : [],
    }, nextLayerId, spec.store);
    this.documents.push(doc);
    this.active = doc;
    return doc;
  }

  /** Test setup: the artist brings another open document to the front (its tab, or Window > Arrange). */
  activate(doc: FakeDocument): void {
    if (!this.documents.includes(doc)) throw new Error("activate: the document is not open.");
    this.active = doc;
  }

  closeDocument(doc: FakeDocument): void {
    this.documents.splice(this.documents.indexOf(doc), 1);
    if (this.active === doc) this.active = this.documents[this.documents.length - 1] ?? null;
  }

  // ---- rules ----

  newId(): number {
    return this.nextId++;
  }

  get inModal(): boolean {
    return this.modalName !== undefined;
  }

  requireModal(what: string): void {
    if (this.modalName === undefined) {
      this.violations.push(`${what} outside executeAsModal`);
      throw new Error(`${what}: the document can only be changed inside executeAsModal.`);
    }
  }

  /** The document a DOM method of `doc` changes: the one in front (a violation when that is another). */
  frontFor(what: string, doc: FakeDocument): FakeDocument {
    const front = this.activeDocumentOrThrow();
    if (front !== doc) this.violations.push(`${what} of "${doc.title}" changed "${front.title}", the document in front`);
    return front;
  }

  documentById(id: number): FakeDocument {
    const doc = this.documents.find((d) => d.id === id);
    if (!doc) throw new Error(`There is no open document ${id}.`);
    return doc;
  }

  private documentFor(id: number | undefined): FakeDocument {
    return id === undefined || id < 0 ? this.activeDocumentOrThrow() : this.documentById(id);
  }

  private activeDocumentOrThrow(): FakeDocument {
    if (!this.active) throw new Error("There is no open document.");
    return this.active;
  }

  private recordWrite(api: FakeWrite["api"], doc: FakeDocument, layer: LayerState, at: { left: number; top: number }, data: FakeImageData): void {
    const bounds = { left: at.left, top: at.top, right: at.left + data.width, bottom: at.top + data.height };
    this.writes.push({ api, documentId: doc.id, layerId: layer.id, bounds, bytes: data.samples.byteLength });
  }

  /** A digest document's record of a layer's pixels or mask (started afresh when the write replaces what is there). */
  private digestOf(layer: LayerState, part: "pixels" | "mask", replace: boolean): PixelDigest {
    layer.digest ??= { pixels: emptyDigest(), mask: emptyDigest() };
    if (replace) layer.digest[part] = emptyDigest();
    return layer.digest[part];
  }

  private requireImagingMode(doc: FakeDocument): void {
    if (doc.modeValue !== "RGBColorMode" && doc.modeValue !== "grayscaleMode" && doc.modeValue !== "labColorMode") {
      throw new Error(`The imaging API reads RGB, Grayscale and Lab documents only, not ${doc.modeValue}.`);
    }
  }

  private checkImageData(image: imaging.PhotoshopImageData, doc: FakeDocument): FakeImageData {
    if (!(image instanceof FakeImageData)) throw new Error("Image data must come from the imaging API.");
    if (image.disposed) throw new Error("The image data was disposed.");
    if (image.componentSize !== doc.depth) throw new Error(`Image data of ${image.componentSize} bits does not fit a ${doc.depth}-bit document.`);
    const docSpace = doc.modeValue === "grayscaleMode" ? "Grayscale" : "RGB";
    if (image.colorSpace !== docSpace && !(image.components === 1 && image.colorSpace === "Grayscale")) {
      throw new Error(`${image.colorSpace} image data does not fit a ${docSpace} document.`);
    }
    return image;
  }

  /** A document sample (0..1, its own encoding) as a sample of `size` bits in gamma-encoded sRGB. */
  private encodeSample(v: number, depth: FakeDepth, size: 8 | 16 | 32): number {
    const gamma = depth === 32 ? linearToSrgb(clamp01(v)) : v;
    if (size === 8) return Math.round(clamp01(gamma) * 255);
    if (size === 16) return Math.round(clamp01(gamma) * 32768);
    return depth === 32 ? v : srgbToLinear(gamma);
  }

  private decodeSample(v: number, size: 8 | 16 | 32): number {
    return size === 8 ? v / 255 : size === 16 ? v / 32768 : v;
  }

  private encodeAlpha(a: number, size: 8 | 16 | 32): number {
    return size === 8 ? Math.round(clamp01(a) * 255) : size === 16 ? Math.round(clamp01(a) * 32768) : a;
  }

  private decodeAlpha(v: number, size: 8 | 16 | 32): number {
    return size === 8 ? v / 255 : size === 16 ? v / 32768 : v;
  }

  private to8(v: number, size: 8 | 16 | 32): number {
    return size === 8 ? v : size === 16 ? Math.round(clamp01(v / 32768) * 255) : Math.round(clamp01(v) * 255);
  }
}

function merge(base: Raster, top: Raster): Raster {
  const left = Math.min(base.left, top.left);
  const topY = Math.min(base.top, top.top);
  const right = Math.max(base.left + base.width, top.left + top.width);
  const bottom = Math.max(base.top + base.height, top.top + top.height);
  const out: Raster = { left, top: topY, width: right - left, height: bottom - topY, data: new Float32Array((right - left) * (bottom - topY) * 4) };
  for (const r of [base, top]) {
    for (let y = 0; y < r.height; y++) out.data.set(r.data.subarray(y * r.width * 4, (y + 1) * r.width * 4), ((r.top - topY + y) * out.width + (r.left - left)) * 4);
  }
  return out;
}

function mergeMask(base: MaskRaster, region: MaskRaster): MaskRaster {
  if (base.width === 0 || base.height === 0) return { ...region, outside: base.outside };
  const left = Math.min(base.left, region.left);
  const top = Math.min(base.top, region.top);
  const right = Math.max(base.left + base.width, region.left + region.width);
  const bottom = Math.max(base.top + base.height, region.top + region.height);
  const out: MaskRaster = { left, top, width: right - left, height: bottom - top, data: new Float32Array((right - left) * (bottom - top)).fill(base.outside), outside: base.outside };
  for (const r of [base, region]) {
    for (let y = 0; y < r.height; y++) out.data.set(r.data.subarray(y * r.width, (y + 1) * r.width), (r.top - top + y) * out.width + (r.left - left));
  }
  return out;
}

// ---- a PNG without compression (stored deflate blocks), for encodeImageData ----

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function encodePng(width: number, height: number, rgba: Uint8Array): Uint8Array {
  const raw = new Uint8Array(height * (width * 4 + 1));
  for (let y = 0; y < height; y++) raw.set(rgba.subarray(y * width * 4, (y + 1) * width * 4), y * (width * 4 + 1) + 1);
  const blocks = Math.max(1, Math.ceil(raw.length / 65535));
  const zlib = new Uint8Array(2 + raw.length + blocks * 5 + 4);
  zlib[0] = 0x78;
  zlib[1] = 0x01;
  let o = 2;
  for (let b = 0; b < blocks; b++) {
    const chunk = raw.subarray(b * 65535, Math.min(raw.length, (b + 1) * 65535));
    zlib[o++] = b === blocks - 1 ? 1 : 0;
    zlib[o++] = chunk.length & 0xff;
    zlib[o++] = chunk.length >> 8;
    zlib[o++] = ~chunk.length & 0xff;
    zlib[o++] = (~chunk.length >> 8) & 0xff;
    zlib.set(chunk, o);
    o += chunk.length;
  }
  let a = 1, bsum = 0;
  for (let i = 0; i < raw.length; i++) {
    a = (a + raw[i]!) % 65521;
    bsum = (bsum + a) % 65521;
  }
  const adler = ((bsum << 16) | a) >>> 0;
  zlib[o++] = adler >>> 24;
  zlib[o++] = (adler >>> 16) & 0xff;
  zlib[o++] = (adler >>> 8) & 0xff;
  zlib[o++] = adler & 0xff;
  const chunk = (type: string, body: Uint8Array) => {
    const out = new Uint8Array(12 + body.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, body.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(body, 8);
    view.setUint32(8 + body.length, crc32(out.subarray(4, 8 + body.length)));
    return out;
  };
  const ihdr = new Uint8Array(13);
  const iv = new DataView(ihdr.buffer);
  iv.setUint32(0, width);
  iv.setUint32(4, height);
  ihdr.set([8, 6, 0, 0, 0], 8);
  const parts = [new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", zlib.subarray(0, o)), chunk("IEND", new Uint8Array(0))];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    png.set(p, at);
    at += p.length;
  }
  return png;
}

