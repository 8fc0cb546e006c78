/**
 * What the artist asks for, in the panel's words, and which controls each mode uses.
 */
import type { Expansion, Mode, SchedulerName } from "../../../protocol";
import type { ControlSettings } from "./control";

/** The panel's four buttons' worth of modes. */
export type OperationMode = "generate" | "img2img" | "inpaint" | "expand";

export const OPERATION_MODES: readonly OperationMode[] = ["generate", "img2img", "inpaint", "expand"];

export const MODE_LABELS: Record<OperationMode, string> = {
  generate: "Generate",
  img2img: "Img2img",
  inpaint: "Inpaint selection",
  expand: "Expand canvas",
};

/** The protocol's name for each mode. */
export const PROTOCOL_MODE: Record<OperationMode, Mode> = {
  generate: "txt2img",
  img2img: "img2img",
  inpaint: "inpaint",
  expand: "outpaint",
};

export interface GenerationSettings {
  mode: OperationMode;
  model: string;
  prompt: string;
  negativePrompt: string;
  /** 0..1: how much of the existing pixels is repainted (img2img, inpaint). */
  strength: number;
  steps: number;
  guidance: number;
  scheduler: SchedulerName;
  /** A fixed seed, or undefined for a new random one each time. */
  seed?: number;
  variations: number;
  /** Img2img starts from the merged visible image or from the active layer alone. */
  source: "visible" | "layer";
  /** Inpaint: what the model sees around the selection. */
  context: "automatic" | "selection" | "image";
  expand: Expansion;
  /** A draft: the daemon decodes the picture with TAESD (fast, less detail) instead of the VAE. */
  draft?: boolean;
  /** Control (ControlNet): a layer steers the picture (Generate and Img2img). */
  control?: ControlSettings;
}

export const DEFAULT_SETTINGS: GenerationSettings = {
  mode: "generate",
  model: "",
  prompt: "",
  negativePrompt: "",
  strength: 0.75,
  steps: 20,
  guidance: 7.5,
  scheduler: "dpmpp_2m_karras",
  variations: 1,
  source: "visible",
  context: "automatic",
  expand: { left: 0, top: 0, right: 0, bottom: 0 },
};

export type Control = "strength" | "source" | "context" | "expand";

/** The controls that mean something in a mode; the others are hidden. */
export function controlsFor(mode: OperationMode): ReadonlySet<Control> {
  switch (mode) {
    case "generate":
      return new Set();
    case "img2img":
      return new Set(["strength", "source"]);
    case "inpaint":
      return new Set(["strength", "context"]);
    case "expand":
      return new Set(["expand"]);
  }
}

/** A new random seed in the range every engine and the CLI accept. */
export function randomSeed(random: () => number = Math.random): number {
  return Math.floor(random() * 0xffffffff);
}
