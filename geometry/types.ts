/**
 * The pixel vocabulary both halves share (the panel in UXP, the daemon in Node): sizes,
 * rectangles, canvas growth and one pixel buffer. Pure values: no Node, DOM or Photoshop here.
 */

export interface Size {
  width: number;
  height: number;
}

/** A rectangle in pixels: x, y is its top-left corner; in document pixels unless said otherwise. */
export interface Region extends Size {
  x: number;
  y: number;
}

/** How far a canvas grows on each side, in pixels (Expand canvas / outpainting). */
export interface Expansion {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/**
 * 8-bit pixels, interleaved, row-major, exactly width x height x channels bytes: gray or a mask
 * (1; 0 = keep, 255 = repaint / selected), RGB (3) or RGBA with straight alpha (4).
 */
export interface Pixels extends Size {
  channels: 1 | 3 | 4;
  data: Uint8Array;
}
