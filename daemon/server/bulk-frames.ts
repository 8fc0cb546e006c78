/**
 * Takes the panel's large pixel messages off the socket before `ws` sees them and unmasks each
 * one straight into the image it belongs to. A chunk comes as one message (its 40-byte header,
 * then its pixels) or as a pair: the header alone, then a message of exactly its pixels (what the
 * panel sends, so that it never copies pixels to put a header before them). Through `ws` a 4 MiB
 * chunk is copied out of the socket's 64 KiB reads into fresh memory, unmasked, then copied again
 * into the image (and the fresh memory costs page faults and garbage collections): about three
 * passes over every byte instead of one. Everything else (text, control frames, small or unusual binary messages, and
 * any message whose chunk header the sink does not take) passes through to `ws` byte for byte,
 * in order, so `ws` still does the handshake, ping/pong, close, limits and protocol errors.
 *
 * It works on the socket's 'data' events: the socket's `emit` is wrapped for that one event.
 */
import { createRequire } from "node:module";
import type { Duplex } from "node:stream";
import { FRAME_HEADER_BYTES, FrameError, readFrameHeader, type FrameChunkHeader } from "../../protocol";

type MaskFn = (source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number) => void;
// bufferutil (a dependency, native) XORs at memory speed; the loop is its own fallback.
const maskInto: MaskFn = (() => {
  try {
    return (createRequire(import.meta.url)("bufferutil") as { mask: MaskFn }).mask;
  } catch {
    return (source, mask, output, offset, length) => {
      for (let i = 0; i < length; i++) output[offset + i] = source[i]! ^ mask[i & 3]!;
    };
  }
})();

/** Where bulk chunks go: the connection's frame assembler, in effect. */
export interface BulkSink {
  /** The bytes this chunk's payload should be written to (payloadLength long), or undefined to leave the message to ws. */
  place(header: FrameChunkHeader): Uint8Array | undefined;
  /** The payload is whole in `target` (what place returned). */
  landed(header: FrameChunkHeader, target: Uint8Array): void;
  /** The connection ended with `target` partly written. */
  abandoned(header: FrameChunkHeader, target: Uint8Array): void;
}

export interface BulkFrameOptions {
  /** Binary messages at least this long are candidates (smaller ones cost little through ws). */
  minBytes: number;
  /** Longer messages go to ws, which refuses them as it always has. */
  maxBytes: number;
}

/** Chunks of the panel's uploads are 4 MiB; anything from 64 KiB is worth taking. */
export const BULK_MIN_BYTES = 64 * 1024;

const enum Mode {
  /** Reading a frame header (and, for a candidate, the chunk header after it). */
  head,
  /** Passing the rest of a frame to ws. */
  forward,
  /** Unmasking the rest of a frame into the sink's target. */
  own,
}

/**
 * Installs the filter on an upgraded socket before ws reads it. `sink` is asked each time (it
 * is undefined until the connection is ready for frames).
 */
export function takeBulkFrames(socket: Duplex, options: BulkFrameOptions, sink: () => BulkSink | undefined): void {
  const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
  const filter = new BulkFrameFilter(options, sink, (bytes) => emit("data", bytes));
  socket.emit = function (this: Duplex, event: string | symbol, ...args: unknown[]): boolean {
    if (event === "data" && args[0] instanceof Uint8Array) {
      filter.push(args[0]);
      return true;
    }
    if (event === "close") filter.end();
    return emit(event, ...args);
  } as Duplex["emit"];
}

/** The frame parser behind takeBulkFrames, on its own so that tests can feed it any split of bytes. */
export class BulkFrameFilter {
  private mode = Mode.head;
  /** Bytes of the frame (and chunk) header read so far. */
  private readonly head = new Uint8Array(14 + FRAME_HEADER_BYTES);
  private headLength = 0;
  /** Bytes left of the frame being forwarded or owned. */
  private remaining = 0;
  private readonly mask = new Uint8Array(4);
  /** The mask turned to start at the current payload position (bufferutil starts at mask[0]). */
  private readonly turned = new Uint8Array(4);
  private position = 0;
  private owned: { header: FrameChunkHeader; target: Uint8Array; written: number } | undefined;
  /** ws is inside a fragmented message: every frame goes to it until the message ends. */
  private fragmented = false;
  /** The last data frame ws got was a 40-byte binary message (a chunk header whose pixels come next). */
  private afterHeaderAlone = false;
  /**
   * A lone chunk header held back from ws until the next frame shows whether it carries the
   * header's pixels (then both are taken) or not (then ws gets the header first, as sent).
   */
  private held: { header: FrameChunkHeader; raw: Uint8Array } | undefined;
  /** A close frame went by, or the socket closed: the rest is ws's. */
  private passthrough = false;

  constructor(
    private readonly options: BulkFrameOptions,
    private readonly sink: () => BulkSink | undefined,
    private readonly forward: (bytes: Uint8Array) => void,
  ) {}

  push(chunk: Uint8Array): void {
    if (this.passthrough && this.mode === Mode.head && this.headLength === 0) return this.forward(chunk);
    let at = 0;
    /** Start of this chunk's bytes still to hand to ws (in one piece, in order). */
    let runStart = 0;
    while (at < chunk.byteLength) {
      if (this.mode === Mode.forward) {
        const n = Math.min(this.remaining, chunk.byteLength - at);
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.mode = Mode.head;
        continue;
      }
      if (this.mode === Mode.own) {
        const owned = this.owned!;
        const n = Math.min(this.remaining, chunk.byteLength - at);
        this.unmaskInto(chunk.subarray(at, at + n), owned.target, owned.written);
        owned.written += n;
        at += n;
        runStart = at;
        this.remaining -= n;
        if (this.remaining === 0) this.land();
        continue;
      }
      // Header bytes are held here until decided: ws gets everything before them first.
      this.flush(chunk, runStart, at);
      const n = Math.min(this.headNeeded() - this.headLength, chunk.byteLength - at);
      this.head.set(chunk.subarray(at, at + n), this.headLength);
      this.headLength += n;
      at += n;
      runStart = at;
      const decision = this.decide();
      if (decision === "wait") continue;
      const read = this.head.slice(0, this.headLength);
      this.headLength = 0;
      if (decision === "forward") this.forward(read);
    }
    this.flush(chunk, runStart, at);
  }

  /** The socket closed: a frame being written is abandoned. */
  end(): void {
    this.passthrough = true;
    this.held = undefined;
    const owned = this.owned;
    this.owned = undefined;
    if (owned) this.sink()?.abandoned(owned.header, owned.target);
  }

  private land(): void {
    const owned = this.owned!;
    this.owned = undefined;
    this.mode = Mode.head;
    this.sink()?.landed(owned.header, owned.target);
  }

  private flush(chunk: Uint8Array, from: number, to: number): void {
    if (to > from) this.forward(chunk.subarray(from, to));
  }

  /** How many header bytes the decision needs now (never past the frame header before its length is known). */
  private headNeeded(): number {
    if (this.headLength < 2) return 2;
    const frameHeader = this.frameHeaderBytes();
    if (this.headLength < frameHeader) return frameHeader;
    return this.isCandidate() || this.isLoneHeader() ? frameHeader + FRAME_HEADER_BYTES : frameHeader;
  }

  private frameHeaderBytes(): number {
    const code = this.head[1]! & 0x7f;
    return 2 + (code === 126 ? 2 : code === 127 ? 8 : 0) + ((this.head[1]! & 0x80) !== 0 ? 4 : 0);
  }

  private payloadLength(): number {
    const code = this.head[1]! & 0x7f;
    const view = new DataView(this.head.buffer, this.head.byteOffset);
    if (code === 126) return view.getUint16(2);
    if (code === 127) {
      const high = view.getUint32(2);
      // Past 2^53 is past any limit: a length ws will refuse.
      return high >= 0x200000 ? Number.MAX_SAFE_INTEGER : high * 2 ** 32 + view.getUint32(6);
    }
    return code;
  }

  /** A binary, final, masked, unextended frame: the only kind taken. */
  private isWholeBinary(): boolean {
    return this.head[0] === 0x82 && (this.head[1]! & 0x80) !== 0;
  }

  /** Neither inside a fragmented message nor after a lone header: a frame here starts a chunk. */
  private startsChunk(): boolean {
    return !this.passthrough && !this.fragmented && !this.afterHeaderAlone && !this.held && this.isWholeBinary() && this.sink() !== undefined;
  }

  /** A one-message chunk of a size worth taking. */
  private isCandidate(): boolean {
    const length = this.payloadLength();
    return this.startsChunk() && length >= Math.max(this.options.minBytes, FRAME_HEADER_BYTES) && length <= this.options.maxBytes;
  }

  /** A 40-byte message: maybe a chunk header alone, whose pixels come in the next message. */
  private isLoneHeader(): boolean {
    return this.startsChunk() && this.payloadLength() === FRAME_HEADER_BYTES;
  }

  private decide(): "wait" | "forward" | "own" | "hold" {
    const frameHeader = this.frameHeaderBytes();
    if (this.headLength < frameHeader) return "wait";
    if (this.headLength < this.headNeeded()) return "wait";
    const opcode = this.head[0]! & 0x0f;
    const fin = (this.head[0]! & 0x80) !== 0;
    const length = this.payloadLength();
    if (this.held) {
      const held = this.held;
      this.held = undefined;
      const target = this.isWholeBinary() && length === held.header.payloadLength ? this.sink()?.place(held.header) : undefined;
      if (target) {
        this.mask.set(this.head.subarray(frameHeader - 4, frameHeader));
        return this.own(held.header, target, 0, length);
      }
      // Not its pixels, or not taken: ws gets the header it was sent, then this frame as usual.
      this.forward(held.raw);
      this.afterHeaderAlone = true;
    }
    if (this.headLength === frameHeader) {
      // Not taken: ws reads it. Keep track of what ws will make of it.
      if (opcode === 0x8) this.passthrough = true;
      if (opcode < 0x8) {
        if (!fin) this.fragmented = true;
        else if (opcode === 0) this.fragmented = false;
        this.afterHeaderAlone = !this.fragmented && opcode === 0x2 && length === FRAME_HEADER_BYTES;
      }
      return this.startForward(length);
    }
    // A candidate, or a lone header, with its chunk header in hand.
    this.mask.set(this.head.subarray(frameHeader - 4, frameHeader));
    const chunkHeader = new Uint8Array(FRAME_HEADER_BYTES);
    maskInto(this.head.subarray(frameHeader, frameHeader + FRAME_HEADER_BYTES), this.mask, chunkHeader, 0, FRAME_HEADER_BYTES);
    let header: FrameChunkHeader | undefined;
    try {
      header = readFrameHeader(chunkHeader);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
    }
    if (length === FRAME_HEADER_BYTES && header && header.payloadLength > 0) {
      // A header alone: held while its pixels are awaited, if they are worth taking.
      const { payloadLength } = header;
      this.afterHeaderAlone = !(payloadLength >= this.options.minBytes && payloadLength <= this.options.maxBytes);
      if (this.afterHeaderAlone) return this.startForward(0);
      this.held = { header, raw: this.head.slice(0, this.headLength) };
      this.mode = Mode.head;
      return "hold";
    }
    const target = header && header.payloadLength === length - FRAME_HEADER_BYTES ? this.sink()?.place(header) : undefined;
    // A 40-byte message ws reads may still be a lone header to it (an unreadable one, say): keep clear of what follows.
    this.afterHeaderAlone = length === FRAME_HEADER_BYTES && header?.payloadLength !== 0;
    if (!header || !target) return this.startForward(length - FRAME_HEADER_BYTES);
    return this.own(header, target, FRAME_HEADER_BYTES, length - FRAME_HEADER_BYTES);
  }

  /** Unmasks the rest of this frame (`rest` bytes, `position` bytes into its payload) into `target`. */
  private own(header: FrameChunkHeader, target: Uint8Array, position: number, rest: number): "own" {
    this.afterHeaderAlone = false;
    this.owned = { header, target, written: 0 };
    this.position = position;
    this.remaining = rest;
    this.mode = Mode.own;
    if (this.remaining === 0) this.land();
    return "own";
  }

  private startForward(rest: number): "forward" {
    this.remaining = rest;
    this.mode = rest > 0 ? Mode.forward : Mode.head;
    return "forward";
  }

  private unmaskInto(source: Uint8Array, target: Uint8Array, offset: number): void {
    const turn = this.position & 3;
    for (let i = 0; i < 4; i++) this.turned[i] = this.mask[(turn + i) & 3]!;
    maskInto(source, this.turned, target, offset, source.byteLength);
    this.position += source.byteLength;
  }
}
