import { LIMITS } from "../../geometry";
import { DEFAULT_CHUNK_BYTES, type Limits } from "../../protocol";

export interface ServerLimits extends Limits {
  /** Images being received at once on one connection. */
  maxPendingFrames: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  // A chunk plus its header, with room to spare; bigger JSON has no business here.
  maxMessageBytes: 16 * 1024 * 1024,
  // The largest picture sent either way; the panel reads only the context an edit needs.
  maxImagePixels: LIMITS.maxImagePixels,
  maxQueuedJobsPerClient: 16,
  maxVariations: 8,
  chunkBytes: DEFAULT_CHUNK_BYTES,
  maxPendingFrames: 4,
};

/** Messages past the limit but under this get an error reply; past this ws closes the connection (1009). */
export const HARD_MESSAGE_FACTOR = 4;
