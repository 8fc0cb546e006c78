import { describe, expect, it } from "vitest";
import {
  BufferPool,
  FRAME_HEADER_BYTES,
  FrameAssembler,
  FrameChunkReader,
  FrameError,
  frameChunks,
  encodeFrame,
  readFrameChunk,
  writeFrameHeader,
  type ImageFrame,
} from "../../protocol";

function image(width: number, height: number, channels: 1 | 3 | 4 = 4, bitsPerChannel: 8 | 16 = 8): ImageFrame {
  const data = new Uint8Array(width * height * channels * (bitsPerChannel / 8));
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 255;
  return { kind: "image", jobId: 7, frameId: 3, width, height, channels, bitsPerChannel, data };
}

function reassemble(chunks: Uint8Array[]): ImageFrame | undefined {
  const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 });
  let done: ImageFrame | undefined;
  for (const chunk of chunks) {
    const { header, payload } = readFrameChunk(chunk);
    const frame = assembler.add(header, payload);
    if (frame) {
      expect(done).toBeUndefined();
      done = frame;
    }
  }
  return done;
}

describe("frame codec", () => {
  it("writes the documented little-endian header", () => {
    const [chunk] = [...encodeFrame(image(3, 2, 4), 1024)];
    expect(chunk!.byteLength).toBe(FRAME_HEADER_BYTES + 24);
    const view = new DataView(chunk!.buffer, chunk!.byteOffset);
    expect(String.fromCharCode(...chunk!.subarray(0, 4))).toBe("UPNF");
    expect(view.getUint8(4)).toBe(1); // layout version
    expect(view.getUint8(5)).toBe(1); // kind image
    expect(view.getUint8(6)).toBe(4); // channels
    expect(view.getUint8(7)).toBe(8); // bits
    expect(view.getUint32(8, true)).toBe(7); // job
    expect(view.getUint32(12, true)).toBe(3); // frame
    expect(view.getUint32(16, true)).toBe(3); // width
    expect(view.getUint32(20, true)).toBe(2); // height
    expect(view.getUint32(24, true)).toBe(0); // offset
    expect(view.getUint32(28, true)).toBe(24); // payload
    expect(view.getUint32(32, true)).toBe(24); // total
  });

  it("splits into chunks and reassembles byte-exact, whatever the chunk size", () => {
    const frame = image(37, 23, 3, 16);
    for (const chunkBytes of [1, 100, 5106, 5105, 5107, 1 << 20]) {
      const chunks = [...encodeFrame(frame, chunkBytes)];
      expect(chunks.length).toBe(Math.ceil(frame.data.byteLength / chunkBytes));
      const back = reassemble(chunks);
      expect(back).toBeDefined();
      expect(Buffer.from(back!.data).equals(Buffer.from(frame.data))).toBe(true);
      expect({ ...back, data: undefined }).toEqual({ ...frame, data: undefined });
    }
  });

  it("reads chunks held in a Node Buffer at an offset inside a larger ArrayBuffer", () => {
    const [chunk] = [...encodeFrame(image(4, 4, 1), 1 << 20)];
    const big = Buffer.alloc(chunk!.byteLength + 13);
    big.set(chunk!, 13);
    const { header, payload } = readFrameChunk(big.subarray(13));
    expect(header.width).toBe(4);
    expect([...payload]).toEqual([...image(4, 4, 1).data]);
  });

  it("rejects bad headers with a sentence", () => {
    const good = [...encodeFrame(image(2, 2, 1), 1 << 20)][0]!;
    const wrongMagic = good.slice();
    wrongMagic[0] = 0;
    expect(() => readFrameChunk(wrongMagic)).toThrow(/magic/);
    expect(() => readFrameChunk(good.subarray(0, 10))).toThrow(/shorter than the 40-byte/);
    const wrongLength = good.slice();
    new DataView(wrongLength.buffer).setUint32(32, 5, true);
    expect(() => readFrameChunk(wrongLength)).toThrow(FrameError);
    const truncated = good.subarray(0, good.byteLength - 1);
    expect(() => readFrameChunk(truncated)).toThrow(/payload bytes/);
    const twoChannels = good.slice();
    twoChannels[6] = 2;
    expect(() => readFrameChunk(twoChannels)).toThrow(/channels/);
  });

  it("refuses out-of-order chunks and images over the size limit", () => {
    const chunks = [...encodeFrame(image(10, 10, 4), 100)];
    const assembler = new FrameAssembler({ maxFrameBytes: 1000, maxPendingFrames: 2 });
    const first = readFrameChunk(chunks[0]!);
    assembler.add(first.header, first.payload);
    const third = readFrameChunk(chunks[2]!);
    expect(() => assembler.add(third.header, third.payload)).toThrow(/does not continue/);
    const small = new FrameAssembler({ maxFrameBytes: 399, maxPendingFrames: 2 });
    expect(() => small.add(first.header, first.payload)).toThrow(expect.objectContaining({ code: "frame_too_large" }));
  });

  it("refuses header fields that do not fit in 32 bits", () => {
    const target = new Uint8Array(FRAME_HEADER_BYTES);
    expect(() =>
      writeFrameHeader(target, {
        kind: "image", jobId: 2 ** 32, frameId: 1, width: 1, height: 1, channels: 1, bitsPerChannel: 8, offset: 0, payloadLength: 1, totalLength: 1,
      }),
    ).toThrow(/jobId/);
  });
});

/** A 512x512 RGBA picture (1 MiB, the smallest size the pool keeps) filled with `value`, for job `jobId`. */
function picture(jobId: number, value: number): ImageFrame {
  return { kind: "result", jobId, frameId: jobId, width: 512, height: 512, channels: 4, bitsPerChannel: 8, data: new Uint8Array(512 * 512 * 4).fill(value) };
}

function assemble(assembler: FrameAssembler, frame: ImageFrame): ImageFrame {
  let whole: ImageFrame | undefined;
  for (const chunk of encodeFrame(frame, 64 * 1024)) {
    const { header, payload } = readFrameChunk(chunk);
    whole = assembler.add(header, payload) ?? whole;
  }
  return whole!;
}

describe("buffer reuse", () => {
  it("reuses a frame's buffer only once it is given back, and never while its holder still reads it", () => {
    const pool = new BufferPool();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const first = assemble(assembler, picture(1, 11));
    // Held, not given back: the next frame gets memory of its own and the first keeps its pixels.
    const second = assemble(assembler, picture(2, 22));
    expect(second.data.buffer).not.toBe(first.data.buffer);
    expect(first.data.every((v) => v === 11)).toBe(true);
    pool.give(first.data);
    const third = assemble(assembler, picture(3, 33));
    expect(third.data.buffer).toBe(first.data.buffer);
    expect(third.data.every((v) => v === 33)).toBe(true);
    expect(second.data.every((v) => v === 22)).toBe(true);
  });

  it("ignores a second give of the same frame: its buffer may be another frame's by then", () => {
    const pool = new BufferPool();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const first = assemble(assembler, picture(1, 11));
    pool.give(first.data);
    const second = assemble(assembler, picture(2, 22));
    expect(second.data.buffer).toBe(first.data.buffer);
    pool.give(first.data); // the first frame's holder gives back twice
    const third = assemble(assembler, picture(3, 33));
    expect(third.data.buffer).not.toBe(second.data.buffer);
    expect(second.data.every((v) => v === 22)).toBe(true);
  });

  it("takes back only what it lent: a one-chunk frame (a view of its message) and foreign buffers stay out", () => {
    const pool = new BufferPool();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const [message] = [...encodeFrame(picture(1, 11), 1 << 22)];
    const { header, payload } = readFrameChunk(message!);
    const single = assembler.add(header, payload)!;
    expect(single.data.buffer).toBe(message!.buffer);
    pool.give(single.data);
    const foreign = new Uint8Array(512 * 512 * 4);
    pool.give(foreign);
    const next = pool.take(512 * 512 * 4);
    expect(next.buffer).not.toBe(message!.buffer);
    expect(next.buffer).not.toBe(foreign.buffer);
  });

  it("gives a discarded partial frame's buffer back, and the next frame written into it is whole", () => {
    const taken: Uint8Array[] = [];
    const pool = new (class extends BufferPool {
      override take(byteLength: number): Uint8Array {
        const view = super.take(byteLength);
        taken.push(view);
        return view;
      }
    })();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const [firstChunk] = [...encodeFrame(picture(1, 11), 64 * 1024)];
    const { header, payload } = readFrameChunk(firstChunk!);
    assembler.add(header, payload);
    assembler.discard(1);
    const next = assemble(assembler, picture(2, 22));
    expect(next.data.buffer).toBe(taken[0]!.buffer);
    expect(next.data.every((v) => v === 22)).toBe(true);
  });
});

describe("placing chunks where they belong", () => {
  it("hands out each chunk's spot in the image, in order, and copies nothing on add", () => {
    const pool = new BufferPool();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const frame = image(256, 256);
    let whole: ImageFrame | undefined;
    let first: Uint8Array | undefined;
    for (const { header, payload } of [...encodeFrame(frame, 64 * 1024)].map(readFrameChunk)) {
      const spot = assembler.place(header)!;
      expect(spot.byteLength).toBe(header.payloadLength);
      first ??= spot;
      expect(spot.buffer).toBe(first.buffer);
      expect(spot.byteOffset - first.byteOffset).toBe(header.offset);
      spot.set(payload); // what the socket filter does, unmasking
      assembler.written(spot);
      // A copy on add would not show: prove add reads nothing by spoiling the source afterwards.
      payload.fill(0);
      whole = assembler.add(header, spot) ?? whole;
    }
    expect(whole!.data.buffer).toBe(first!.buffer);
    expect(Buffer.compare(Buffer.from(whole!.data), Buffer.from(frame.data))).toBe(0);
  });

  it("refuses to place what add would refuse, and a chunk while the last is still being written", () => {
    const assembler = new FrameAssembler({ maxFrameBytes: 300 * 1024, maxPendingFrames: 1 });
    const chunks = [...encodeFrame(image(256, 256), 64 * 1024)].map(readFrameChunk);
    expect(assembler.place(chunks[1]!.header), "a frame starts at 0").toBeUndefined();
    const spot = assembler.place(chunks[0]!.header)!;
    expect(assembler.place(chunks[1]!.header), "still writing the first").toBeUndefined();
    assembler.written(spot);
    expect(assembler.place(chunks[2]!.header), "out of order").toBeUndefined();
    expect(assembler.place({ ...chunks[1]!.header, width: 128, height: 512 }), "another shape").toBeUndefined();
    expect(assembler.place({ ...chunks[0]!.header, jobId: 8 }), "too many frames at once").toBeUndefined();
    const big = readFrameChunk([...encodeFrame({ ...image(512, 512), jobId: 9 }, 64 * 1024)][0]!).header;
    assembler.discard();
    expect(assembler.place(big), "over the size limit").toBeUndefined();
    // add says why, with a code.
    expect(() => assembler.add(big, new Uint8Array(big.payloadLength))).toThrow(expect.objectContaining({ code: "frame_too_large" }));
  });

  it("never lends a buffer still being written: a frame discarded mid-write gives it back only once the write ends", () => {
    const pool = new BufferPool();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const chunks = [...encodeFrame(picture(1, 11), 64 * 1024)].map(readFrameChunk);
    const spot = assembler.place(chunks[0]!.header)!;
    assembler.discard(1); // the job failed while its first chunk is still arriving
    const meanwhile = assemble(assembler, picture(2, 22));
    expect(meanwhile.data.buffer, "the buffer being written is not lent").not.toBe(spot.buffer);
    spot.fill(99); // the write goes on
    expect(meanwhile.data.every((v) => v === 22)).toBe(true);
    assembler.written(spot);
    const later = assemble(assembler, picture(3, 33));
    expect(later.data.buffer, "once written, it is reused").toBe(spot.buffer);
    expect(later.data.every((v) => v === 33)).toBe(true);
  });

  it("refuses a placed chunk whose frame was dropped meanwhile, with a code", () => {
    const pool = new BufferPool();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 30, maxPendingFrames: 4 }, pool);
    const chunks = [...encodeFrame(picture(1, 11), 64 * 1024)].map(readFrameChunk);
    const spot = assembler.place(chunks[0]!.header)!;
    assembler.written(spot);
    assembler.discard(1);
    const again = assembler.place(chunks[0]!.header)!; // the same frame id sent anew
    assembler.written(again);
    expect(() => assembler.add(chunks[0]!.header, spot)).toThrow(expect.objectContaining({ code: "frame_invalid", message: expect.stringMatching(/dropped/) }));
  });
});

describe("chunk reader", () => {
  it("pairs a header sent alone with the payload after it, and reads one-message chunks too", () => {
    const frame = image(10, 10, 4);
    const reader = new FrameChunkReader();
    const assembler = new FrameAssembler({ maxFrameBytes: 1 << 20, maxPendingFrames: 2 });
    let whole: ImageFrame | undefined;
    const parts = [...frameChunks(frame, 100)];
    for (const [i, { header, payload }] of parts.entries()) {
      if (i % 2 === 0) {
        expect(reader.read(header)).toBeUndefined();
        expect(reader.awaiting?.offset).toBe(i * 100);
        const chunk = reader.read(payload)!;
        whole = assembler.add(chunk.header, chunk.payload) ?? whole;
      } else {
        const message = new Uint8Array(header.byteLength + payload.byteLength);
        message.set(header);
        message.set(payload, header.byteLength);
        const chunk = reader.read(message)!;
        whole = assembler.add(chunk.header, chunk.payload) ?? whole;
      }
    }
    expect(Buffer.from(whole!.data).equals(Buffer.from(frame.data))).toBe(true);
  });

  it("refuses a payload of another length than its header announced", () => {
    const { header, payload } = [...frameChunks(image(10, 10, 4), 100)][0]!;
    const reader = new FrameChunkReader();
    reader.read(header);
    expect(() => reader.read(payload.subarray(1))).toThrow(/announced 100 payload bytes/);
    expect(reader.awaiting).toBeUndefined();
  });
});
