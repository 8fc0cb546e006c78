/**
 * Binary image frames: a fixed 40-byte little-endian header followed by raw pixel bytes.
 * Works on Uint8Array (UXP, browsers) and Buffer (Node, a Uint8Array subclass) alike.
 */

export const FRAME_MAGIC = 0x464e5055; // bytes "UPNF"
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 40;
/** Pixels travel in chunks of this size so that progress and other messages keep flowing. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

export const FrameKind = {
  image: 1,
  mask: 2,
  result: 3,
  preview: 4,
  /** A job's control image (the layer a ControlNet follows). */
  control: 5,
} as const;
export type FrameKindName = keyof typeof FrameKind;
export type FrameKindCode = (typeof FrameKind)[FrameKindName];

export type Channels = 1 | 3 | 4;
export type BitsPerChannel = 8 | 16;

/** What a frame holds, without its bytes. */
export interface FrameInfo {
  kind: FrameKindName;
  jobId: number;
  frameId: number;
  width: number;
  height: number;
  channels: Channels;
  bitsPerChannel: BitsPerChannel;
}

export interface FrameChunkHeader extends FrameInfo {
  /** Byte offset of this chunk's payload inside the whole image. */
  offset: number;
  payloadLength: number;
  /** Bytes of the whole image: width * height * channels * bitsPerChannel / 8. */
  totalLength: number;
}

/** A whole image: the frame's description plus all its bytes, row-major, interleaved channels. */
export interface ImageFrame extends FrameInfo {
  data: Uint8Array;
}

export class FrameError extends Error {
  constructor(
    readonly code: "frame_invalid" | "frame_too_large",
    message: string,
  ) {
    super(message);
    this.name = "FrameError";
  }
}

const KIND_BY_CODE = new Map<number, FrameKindName>(
  Object.entries(FrameKind).map(([name, code]) => [code, name as FrameKindName]),
);

export function frameByteLength(info: Pick<FrameInfo, "width" | "height" | "channels" | "bitsPerChannel">): number {
  return info.width * info.height * info.channels * (info.bitsPerChannel / 8);
}

const U32_MAX = 0xffffffff;

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new FrameError("frame_invalid", `The frame's ${name} (${value}) is not a 32-bit unsigned integer.`);
  }
}

export function writeFrameHeader(target: Uint8Array, h: FrameChunkHeader): void {
  for (const key of ["jobId", "frameId", "width", "height", "offset", "payloadLength", "totalLength"] as const) {
    checkU32(key, h[key]);
  }
  const view = new DataView(target.buffer, target.byteOffset, FRAME_HEADER_BYTES);
  view.setUint32(0, FRAME_MAGIC, true);
  view.setUint8(4, FRAME_VERSION);
  view.setUint8(5, FrameKind[h.kind]);
  view.setUint8(6, h.channels);
  view.setUint8(7, h.bitsPerChannel);
  view.setUint32(8, h.jobId, true);
  view.setUint32(12, h.frameId, true);
  view.setUint32(16, h.width, true);
  view.setUint32(20, h.height, true);
  view.setUint32(24, h.offset, true);
  view.setUint32(28, h.payloadLength, true);
  view.setUint32(32, h.totalLength, true);
  view.setUint32(36, 0, true);
}

/** Parses and checks the 40-byte header at the start of `message`. */
export function readFrameHeader(message: Uint8Array): FrameChunkHeader {
  if (message.byteLength < FRAME_HEADER_BYTES) {
    throw new FrameError("frame_invalid", `A binary message of ${message.byteLength} bytes is shorter than the ${FRAME_HEADER_BYTES}-byte frame header.`);
  }
  const view = new DataView(message.buffer, message.byteOffset, FRAME_HEADER_BYTES);
  if (view.getUint32(0, true) !== FRAME_MAGIC) {
    throw new FrameError("frame_invalid", "A binary message does not start with the Underpaint frame magic.");
  }
  const version = view.getUint8(4);
  if (version !== FRAME_VERSION) {
    throw new FrameError("frame_invalid", `Frame layout version ${version} is not supported (expected ${FRAME_VERSION}).`);
  }
  const kind = KIND_BY_CODE.get(view.getUint8(5));
  if (!kind) throw new FrameError("frame_invalid", `Unknown frame kind ${view.getUint8(5)}.`);
  const channels = view.getUint8(6);
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new FrameError("frame_invalid", `A frame must have 1, 3 or 4 channels, not ${channels}.`);
  }
  const bitsPerChannel = view.getUint8(7);
  if (bitsPerChannel !== 8 && bitsPerChannel !== 16) {
    throw new FrameError("frame_invalid", `A frame must have 8 or 16 bits per channel, not ${bitsPerChannel}.`);
  }
  const header: FrameChunkHeader = {
    kind,
    channels,
    bitsPerChannel,
    jobId: view.getUint32(8, true),
    frameId: view.getUint32(12, true),
    width: view.getUint32(16, true),
    height: view.getUint32(20, true),
    offset: view.getUint32(24, true),
    payloadLength: view.getUint32(28, true),
    totalLength: view.getUint32(32, true),
  };
  if (header.width === 0 || header.height === 0) {
    throw new FrameError("frame_invalid", `A frame of ${header.width}x${header.height} pixels is empty.`);
  }
  if (header.totalLength !== frameByteLength(header)) {
    throw new FrameError(
      "frame_invalid",
      `The frame says it holds ${header.totalLength} bytes, but ${header.width}x${header.height}x${channels} at ${bitsPerChannel} bits is ${frameByteLength(header)}.`,
    );
  }
  if (header.offset + header.payloadLength > header.totalLength) {
    throw new FrameError("frame_invalid", "The frame chunk reaches past the end of its image.");
  }
  return header;
}

/** A plain Uint8Array view, whatever the message's class, so copies of it stay on V8's fast path. */
function plainView(message: Uint8Array, from = 0): Uint8Array {
  return new Uint8Array(message.buffer, message.byteOffset + from, message.byteLength - from);
}

/** Parses and checks a one-message chunk (header, then payload); the payload is a view into `message` (no copy). */
export function readFrameChunk(message: Uint8Array): { header: FrameChunkHeader; payload: Uint8Array } {
  const header = readFrameHeader(message);
  const payload = plainView(message, FRAME_HEADER_BYTES);
  if (payload.byteLength !== header.payloadLength) {
    throw new FrameError("frame_invalid", `The frame chunk says ${header.payloadLength} payload bytes but carries ${payload.byteLength}.`);
  }
  return { header, payload };
}

/**
 * Reads one connection's binary messages as chunks. A chunk is one message (header, then
 * payload: what the panel sends, as UXP's WebSocket cannot fragment) or two (the 40-byte header
 * alone, then the payload alone: what the daemon sends, so neither end copies pixels behind a
 * header). A header alone is exactly 40 bytes and announces a payload; the next message is it.
 */
export class FrameChunkReader {
  private announced: FrameChunkHeader | undefined;

  /** The chunk this message completes, or undefined when it is a header whose payload comes next. */
  read(message: Uint8Array): { header: FrameChunkHeader; payload: Uint8Array } | undefined {
    const header = this.announced;
    if (header) {
      this.announced = undefined;
      if (message.byteLength !== header.payloadLength) {
        throw new FrameError("frame_invalid", `A chunk header announced ${header.payloadLength} payload bytes but the next message carries ${message.byteLength}.`);
      }
      return { header, payload: plainView(message) };
    }
    if (message.byteLength === FRAME_HEADER_BYTES) {
      const alone = readFrameHeader(message);
      if (alone.payloadLength > 0) {
        this.announced = alone;
        return undefined;
      }
    }
    return readFrameChunk(message);
  }

  /** The header whose payload has not come yet: a text message now breaks the pair. */
  get awaiting(): FrameChunkHeader | undefined {
    return this.announced;
  }

  reset(): void {
    this.announced = undefined;
  }
}

/** One chunk of a frame: its header and a view of its payload (no copy). */
export interface FrameChunkParts {
  header: Uint8Array;
  payload: Uint8Array;
}

/**
 * Splits an image into chunks without copying pixels. Senders that can (the daemon) send each
 * header and payload as two messages, which FrameChunkReader pairs.
 */
export function* frameChunks(frame: ImageFrame, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<FrameChunkParts> {
  const totalLength = frameByteLength(frame);
  if (frame.data.byteLength !== totalLength) {
    throw new FrameError(
      "frame_invalid",
      `Image data has ${frame.data.byteLength} bytes; ${frame.width}x${frame.height}x${frame.channels} at ${frame.bitsPerChannel} bits needs ${totalLength}.`,
    );
  }
  if (!(chunkBytes > 0)) throw new FrameError("frame_invalid", "Chunk size must be positive.");
  let offset = 0;
  do {
    const payloadLength = Math.min(chunkBytes, totalLength - offset);
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    writeFrameHeader(header, {
      kind: frame.kind,
      jobId: frame.jobId,
      frameId: frame.frameId,
      width: frame.width,
      height: frame.height,
      channels: frame.channels,
      bitsPerChannel: frame.bitsPerChannel,
      offset,
      payloadLength,
      totalLength,
    });
    yield { header, payload: frame.data.subarray(offset, offset + payloadLength) };
    offset += payloadLength;
  } while (offset < totalLength);
}

/**
 * Splits an image into whole wire messages (header + payload each): the one-message form, which
 * the daemon reads as well as header-then-pixels pairs. It copies every pixel; the panel and the
 * daemon send pairs (frameChunks) instead.
 */
export function* encodeFrame(frame: ImageFrame, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<Uint8Array> {
  for (const { header, payload } of frameChunks(frame, chunkBytes)) {
    const message = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength);
    message.set(header);
    message.set(payload, FRAME_HEADER_BYTES);
    yield message;
  }
}

interface PartialFrame {
  info: FrameInfo;
  data: Uint8Array;
  /** Bytes added (in order, from 0). */
  received: number;
  /** Bytes handed out by place (at least received): where the next placed chunk starts. */
  placed: number;
  /** The placed chunk being written into `data`: its buffer cannot go back to the pool yet. */
  writing: Uint8Array | undefined;
  /** Discarded while writing: the buffer goes back once the write ends. */
  discarded: boolean;
}

export interface FrameAssemblerLimits {
  /** Largest image (bytes) the assembler will allocate for. */
  maxFrameBytes: number;
  /** Largest number of frames being received at once. */
  maxPendingFrames: number;
}

/**
 * Keeps a few image buffers for reuse: touching freshly allocated memory costs page faults that
 * are slower than the transfer itself (about 4 ms per MiB on small VMs), and artists send
 * documents of the same size again and again.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  /** Views handed out and not yet given back: only these return, and each only once. */
  private readonly lent = new WeakSet<Uint8Array>();

  constructor(private readonly maxBuffers = 2) {}

  take(byteLength: number): Uint8Array {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i]!.byteLength;
      // Reuse only buffers that are not much larger than needed.
      if (size >= byteLength && size <= byteLength * 1.5 && (best < 0 || size < this.free[best]!.byteLength)) best = i;
    }
    const view = best < 0 ? new Uint8Array(byteLength) : new Uint8Array(this.free.splice(best, 1)[0]!, 0, byteLength);
    this.lent.add(view);
    return view;
  }

  /**
   * Gives a buffer back once nothing reads it any more. Only a view this pool handed out counts,
   * once: a second give (its buffer may be someone else's frame by then) changes nothing.
   */
  give(view: Uint8Array): void {
    if (!this.lent.delete(view)) return;
    if (!(view.buffer instanceof ArrayBuffer) || view.buffer.byteLength < 1 << 20) return;
    this.free.push(view.buffer);
    if (this.free.length > this.maxBuffers) this.free.shift();
  }
}

/**
 * Collects chunks (in order, as one WebSocket connection delivers them) into whole images.
 * A receiver that can write a chunk's payload where it belongs (the daemon unmasks the panel's
 * messages straight off the socket) asks `place` for the spot first and passes that spot to
 * `add`, which then copies nothing.
 */
export class FrameAssembler {
  private readonly pending = new Map<string, PartialFrame>();
  /** Spots handed out by place, and the frame each belongs to. */
  private readonly spots = new WeakMap<Uint8Array, PartialFrame>();

  constructor(
    private readonly limits: FrameAssemblerLimits,
    private readonly pool?: BufferPool,
  ) {}

  /**
   * Where this chunk's payload goes in its image (payloadLength bytes), or undefined when the
   * chunk would not be accepted (add then says why). The spot is being written until `written`.
   */
  place(header: FrameChunkHeader): Uint8Array | undefined {
    const key = `${header.jobId}:${header.frameId}`;
    let partial = this.pending.get(key);
    if (!partial) {
      if (header.offset !== 0 || header.totalLength > this.limits.maxFrameBytes || this.pending.size >= this.limits.maxPendingFrames) return undefined;
      partial = this.start(key, header);
    } else if (partial.writing || header.offset !== partial.placed || !continues(partial.info, header)) {
      return undefined;
    }
    partial.placed = header.offset + header.payloadLength;
    const spot = partial.data.subarray(header.offset, partial.placed);
    partial.writing = spot;
    this.spots.set(spot, partial);
    return spot;
  }

  /** The spot `place` gave is written (whole, or abandoned): its frame's buffer may be reused once done. */
  written(spot: Uint8Array): void {
    const partial = this.spots.get(spot);
    if (!partial || partial.writing !== spot) return;
    partial.writing = undefined;
    if (partial.discarded) this.pool?.give(partial.data);
  }

  /** Returns the whole image when this chunk completes it, else undefined. */
  add(header: FrameChunkHeader, payload: Uint8Array): ImageFrame | undefined {
    const key = `${header.jobId}:${header.frameId}`;
    let partial = this.pending.get(key);
    const spotOf = this.spots.get(payload);
    if (spotOf && (spotOf !== partial || spotOf.writing === payload || payload.byteOffset - spotOf.data.byteOffset !== header.offset)) {
      throw new FrameError("frame_invalid", `Frame ${header.frameId} of job ${header.jobId} was dropped while its pixels were arriving.`);
    }
    if (!partial) {
      if (header.offset !== 0) {
        throw new FrameError("frame_invalid", `Frame ${header.frameId} of job ${header.jobId} starts at byte ${header.offset} instead of 0.`);
      }
      if (header.totalLength > this.limits.maxFrameBytes) {
        throw new FrameError(
          "frame_too_large",
          `A ${header.width}x${header.height} image of ${header.totalLength} bytes is larger than the ${this.limits.maxFrameBytes}-byte limit.`,
        );
      }
      if (this.pending.size >= this.limits.maxPendingFrames) {
        throw new FrameError("frame_invalid", `More than ${this.limits.maxPendingFrames} images are being sent at once.`);
      }
      const { offset: _o, payloadLength: _p, totalLength: _t, ...info } = header;
      // A single-chunk frame needs no second buffer.
      if (header.payloadLength === header.totalLength) return { ...info, data: payload };
      partial = this.start(key, header);
    } else if (header.offset !== partial.received || !continues(partial.info, header)) {
      this.drop(key, partial);
      throw new FrameError("frame_invalid", `Frame ${header.frameId} of job ${header.jobId} got a chunk that does not continue it.`);
    }
    if (!spotOf) partial.data.set(payload, header.offset);
    partial.received += payload.byteLength;
    partial.placed = Math.max(partial.placed, partial.received);
    if (partial.received < partial.data.byteLength) return undefined;
    this.pending.delete(key);
    return { ...partial.info, data: partial.data };
  }

  /** Forgets the partial frames of one job (cancelled, failed) or of all jobs. */
  discard(jobId?: number): void {
    for (const [key, partial] of this.pending) {
      if (jobId !== undefined && partial.info.jobId !== jobId) continue;
      this.drop(key, partial);
    }
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private start(key: string, header: FrameChunkHeader): PartialFrame {
    const { offset: _o, payloadLength: _p, totalLength: _t, ...info } = header;
    const data = this.pool ? this.pool.take(header.totalLength) : new Uint8Array(header.totalLength);
    const partial: PartialFrame = { info, data, received: 0, placed: 0, writing: undefined, discarded: false };
    this.pending.set(key, partial);
    return partial;
  }

  /** A buffer still being written goes back to the pool only once the write ends. */
  private drop(key: string, partial: PartialFrame): void {
    this.pending.delete(key);
    if (partial.writing) partial.discarded = true;
    else this.pool?.give(partial.data);
  }
}

function continues(info: FrameInfo, header: FrameChunkHeader): boolean {
  return (
    header.width === info.width &&
    header.height === info.height &&
    header.channels === info.channels &&
    header.bitsPerChannel === info.bitsPerChannel &&
    header.kind === info.kind
  );
}
