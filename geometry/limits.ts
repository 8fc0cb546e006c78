/** The sizes Underpaint takes, written once: the panel checks them before reading, the daemon when a job arrives. */
export const LIMITS = {
  /** The most pixels one picture may have: a frame sent, a result returned, a canvas after growth. */
  maxImagePixels: 8192 * 8192,
  /** Photoshop's widest or tallest .psd canvas. */
  maxCanvasSide: 30_000,
  /** The most pixels one side of the canvas may grow at a time: the model cannot invent more at once. */
  maxExpansion: 2048,
} as const;
