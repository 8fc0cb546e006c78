/**
 * The part of Photoshop's UXP module (require("photoshop")) that the adapter uses, with the
 * real option and result types from @types/photoshop. uxp.ts checks at compile time that the
 * real module fits this shape; tests hand the adapter an in-memory Photoshop of the same shape.
 */
import type * as Constants from "photoshop/dom/Constants";
import type { ActionDescriptor, BatchPlayCommandOptions, ExecuteAsModalOptions, ExecutionContext } from "photoshop/dom/CoreModules";
import type { imaging } from "photoshop/dom/ImagingModule";

export type { ActionDescriptor, Constants, ExecutionContext, imaging };

export interface PsBounds {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export interface PsLayer {
  readonly id: number;
  name: string;
  visible: boolean;
  readonly kind: Constants.LayerKind;
  readonly isBackgroundLayer: boolean;
  /** Pixel bounds of the layer's content (empty layers: all zero). */
  readonly boundsNoEffects: PsBounds;
  /** Children of a group; null for other layers. */
  readonly layers: ArrayLike<PsLayer> | null;
  readonly parent: PsLayer | null;
  /** In the layer's own document: placeBefore = above `relative`, placeInside = into a group. */
  move(relative: PsLayer, placement: Constants.ElementPlacement): void;
  delete(): void;
}

/** L is the host's layer class: the layers it hands back are of that class. */
export interface PsDocument<L extends PsLayer = PsLayer> {
  readonly id: number;
  readonly title: string;
  readonly width: number;
  readonly height: number;
  readonly mode: Constants.DocumentMode;
  readonly bitsPerChannel: Constants.BitsPerChannelType;
  readonly activeLayers: ArrayLike<L>;
  readonly layers: ArrayLike<L>;
  readonly selection: { readonly bounds: PsBounds | null };
  // No Document methods that change it: Adobe's docs do not say they act on a document that is
  // not in front, so every change names its document by id (batchPlay references, imaging).
}

export interface PhotoshopApi<L extends PsLayer = PsLayer> {
  app: {
    readonly activeDocument: PsDocument<L> | null;
    readonly documents: ArrayLike<PsDocument<L>>;
  };
  core: {
    executeAsModal<T>(target: (context: ExecutionContext, descriptor?: object) => Promise<T>, options: ExecuteAsModalOptions): Promise<T>;
  };
  action: {
    batchPlay(commands: ActionDescriptor[], options?: BatchPlayCommandOptions): Promise<ActionDescriptor[]>;
  };
  imaging: {
    getPixels(options: imaging.GetPixelsOptions): Promise<imaging.GetPixelsResult>;
    putPixels(options: imaging.PutPixelsOptions): Promise<void>;
    getSelection(options: imaging.GetSelectionOptions): Promise<imaging.GetSelectionResult>;
    putLayerMask(options: imaging.PutLayerMaskOptions): Promise<void>;
    createImageDataFromBuffer(
      data: Uint8Array | Uint16Array | Float32Array,
      options: imaging.CreateImageDataFromBufferOptions,
    ): Promise<imaging.PhotoshopImageData>;
    encodeImageData(options: imaging.EncodeImageDataOptions): Promise<number[] | string>;
  };
  constants: {
    ElementPlacement: typeof Constants.ElementPlacement;
    DocumentMode: typeof Constants.DocumentMode;
    BitsPerChannelType: typeof Constants.BitsPerChannelType;
    LayerKind: typeof Constants.LayerKind;
  };
}
