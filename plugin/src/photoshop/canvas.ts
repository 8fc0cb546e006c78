/**
 * Growing the canvas by a different amount on each side with Photoshop's Canvas Size, which
 * takes one anchor: one call when an anchor says it, else two (before-sides, then after-sides).
 */
import type { Expansion } from "../../../protocol";

/** Where the old content stays, vertical-horizontal (the values of Photoshop's AnchorPosition constants). */
export type AnchorName =
  | "top-left"
  | "top-center"
  | "top-right"
  | "middle-left"
  | "middle-center"
  | "middle-right"
  | "bottom-left"
  | "bottom-center"
  | "bottom-right";

export interface CanvasStep {
  width: number;
  height: number;
  anchor: AnchorName;
}

type AxisAnchor = "start" | "middle" | "end" | "split";

/** Where the old content must stay on one axis for one call to add `before` and `after`. */
function axisAnchor(before: number, after: number): AxisAnchor {
  if (before === 0) return "start";
  if (after === 0) return "end";
  return before === after ? "middle" : "split";
}

function anchorName(vertical: Exclude<AxisAnchor, "split">, horizontal: Exclude<AxisAnchor, "split">): AnchorName {
  const v = vertical === "start" ? "top" : vertical === "middle" ? "middle" : "bottom";
  const h = horizontal === "start" ? "left" : horizontal === "middle" ? "center" : "right";
  return `${v}-${h}` as AnchorName;
}

export function canvasGrowth(width: number, height: number, grow: Expansion): CanvasStep[] {
  const { left, top, right, bottom } = grow;
  if (left + top + right + bottom === 0) return [];
  const horizontal = axisAnchor(left, right);
  const vertical = axisAnchor(top, bottom);
  if (horizontal !== "split" && vertical !== "split") {
    return [{ width: width + left + right, height: height + top + bottom, anchor: anchorName(vertical, horizontal) }];
  }
  return [
    { width: width + left, height: height + top, anchor: "bottom-right" },
    { width: width + left + right, height: height + top + bottom, anchor: "top-left" },
  ];
}

/** Where the old canvas's (0, 0) lands after one resize step with this anchor. */
export function anchorOffset(step: CanvasStep, oldWidth: number, oldHeight: number): { x: number; y: number } {
  const [v, h] = step.anchor.split("-") as [string, string];
  const dx = step.width - oldWidth;
  const dy = step.height - oldHeight;
  return {
    x: h === "left" ? 0 : h === "center" ? Math.floor(dx / 2) : dx,
    y: v === "top" ? 0 : v === "middle" ? Math.floor(dy / 2) : dy,
  };
}
