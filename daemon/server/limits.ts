import { DEFAULT_CHUNK_BYTES, type Limits } from "../../protocol";

export interface ServerLimits extends Limits {
  /** Images being received at once on one connection. */
  maxPendingFrames: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  // A chunk plus its header, with room to spare; bigger JSON has no business here.
  maxMessageBytes: 16 * 1024 * 1024,
  // 8192 x 8192: the largest region the panel will send; bigger documents are cropped to the selection's context.
  maxImagePixels: 8192 * 8192,
  maxQueuedJobsPerClient: 16,
  maxVariations: 8,
  chunkBytes: DEFAULT_CHUNK_BYTES,
  maxPendingFrames: 4,
};

/** Messages past the limit but under this get an error reply; past this ws closes the connection (1009). */
export const HARD_MESSAGE_FACTOR = 4;
