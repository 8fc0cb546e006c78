import { describe, expect, it } from "vitest";
import { createRequire } from "node:module";

interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}
/** ws's own frame writer (untyped in @types/ws). */
const { Sender } = createRequire(import.meta.url)("ws") as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };
import { BulkFrameFilter, type BulkSink } from "../../../daemon/server/bulk-frames";
import { encodeFrame, frameChunks, type FrameChunkHeader, type ImageFrame } from "../../../protocol";

/** A frame as a client writes it: masked with a fresh key, by ws itself. */
function clientFrame(data: Uint8Array | string, opcode: number, fin = true): Buffer {
  const bytes = Buffer.from(typeof data === "string" ? Buffer.from(data) : data);
  return Buffer.concat(Sender.frame(bytes, { fin, opcode, mask: true, readOnly: false, rsv1: false }));
}

function picture(width: number, height: number, jobId = 3): ImageFrame {
  const data = new Uint8Array(width * height * 4);
  let x = 99 + jobId;
  for (let i = 0; i < data.length; i++) data[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return { kind: "image", jobId, frameId: 1, width, height, channels: 4, bitsPerChannel: 8, data };
}

function recordingSink(accept: (header: FrameChunkHeader) => boolean = () => true) {
  const landed: Array<{ header: FrameChunkHeader; bytes: Buffer }> = [];
  const offered: FrameChunkHeader[] = [];
  const abandoned: FrameChunkHeader[] = [];
  const sink: BulkSink = {
    place: (header) => (offered.push(header), accept(header) ? new Uint8Array(header.payloadLength) : undefined),
    landed: (header, target) => landed.push({ header, bytes: Buffer.from(target) }),
    abandoned: (header) => abandoned.push(header),
  };
  return { sink, landed, offered, abandoned };
}

/** Feeds `stream` in pieces of the given sizes (cycled), as socket reads would split it. */
function feed(filter: BulkFrameFilter, stream: Buffer, sizes: number[]): void {
  for (let at = 0, i = 0; at < stream.byteLength; i++) {
    const n = sizes[i % sizes.length]!;
    // A fresh copy each read, as the socket hands out: the filter may not keep views of it.
    filter.push(Buffer.from(stream.subarray(at, at + n)));
    at += n;
  }
}

const OPTIONS = { minBytes: 64 * 1024, maxBytes: 16 * 1024 * 1024 };

describe("bulk frames off the socket", () => {
  const image = picture(256, 256); // 256 KiB: four 64 KiB chunks, and one whole-image chunk
  const chunks = [...encodeFrame(image, 64 * 1024)];
  const pair = [...frameChunks({ ...image, jobId: 4 }, 64 * 1024)][0]!;
  const pairs = [...frameChunks({ ...image, jobId: 6 }, 64 * 1024)];
  const smallPair = [...frameChunks({ ...picture(16, 16, 7) }, 1 << 20)][0]!; // 1 KiB of pixels: ws's
  const small = [...encodeFrame({ ...picture(16, 16, 5) }, 1 << 20)][0]!; // 1 KiB: ws's
  const bad = Buffer.from(chunks[1]!);
  bad.writeUInt32LE(1000, 28); // says 1000 payload bytes, carries 64 Ki
  const parts: Array<[string, Buffer]> = [
    ["text", clientFrame('{"type":"submit"}', 0x1)],
    ["chunk 0", clientFrame(chunks[0]!, 0x2)],
    ["ping", clientFrame("", 0x9)],
    ["chunk 1", clientFrame(chunks[1]!, 0x2)],
    ["small", clientFrame(small, 0x2)],
    ["header alone", clientFrame(pair.header, 0x2)],
    ["its pixels", clientFrame(pair.payload, 0x2)],
    ["header before a ping", clientFrame(pairs[0]!.header, 0x2)],
    ["ping between", clientFrame("", 0x9)],
    ["pixels after the ping", clientFrame(pairs[0]!.payload, 0x2)],
    ["header before text", clientFrame(pairs[1]!.header, 0x2)],
    ["text between", clientFrame('{"type":"cancel"}', 0x1)],
    ["header before short pixels", clientFrame(pairs[2]!.header, 0x2)],
    ["short pixels", clientFrame(pairs[2]!.payload.subarray(1), 0x2)],
    ["header before fragmented pixels", clientFrame(pairs[3]!.header, 0x2)],
    ["fragmented pixels", clientFrame(pairs[3]!.payload.subarray(0, 1000), 0x2, false)],
    ["their end", clientFrame(pairs[3]!.payload.subarray(1000), 0x0, true)],
    ["small header alone", clientFrame(smallPair.header, 0x2)],
    ["its small pixels", clientFrame(smallPair.payload, 0x2)],
    ["second header alone", clientFrame(pairs[1]!.header, 0x2)],
    ["its pixels too", clientFrame(pairs[1]!.payload, 0x2)],
    ["wrong length", clientFrame(bad, 0x2)],
    ["fragment", clientFrame(chunks[2]!, 0x2, false)],
    ["continued", clientFrame(chunks[3]!, 0x0, true)],
    ["chunk 2", clientFrame(chunks[2]!, 0x2)],
    ["chunk 3", clientFrame(chunks[3]!, 0x2)],
    ["close", clientFrame("", 0x8)],
    ["after close", clientFrame(chunks[0]!, 0x2)],
  ];
  const taken = new Set(["chunk 0", "chunk 1", "chunk 2", "chunk 3", "header alone", "its pixels", "second header alone", "its pixels too"]);
  const stream = Buffer.concat(parts.map(([, bytes]) => bytes));
  const expectedForward = Buffer.concat(parts.filter(([name]) => !taken.has(name)).map(([, bytes]) => bytes));

  it.each([
    ["whole", [stream.byteLength]],
    ["in 64 KiB reads", [64 * 1024]],
    ["in odd reads", [1, 2, 3, 5, 7, 11, 13, 4099, 65_537]],
    ["a byte at a time", [1]],
  ])("unmasks the panel's chunks straight into their spot and hands ws every other byte in order (%s)", (_name, sizes) => {
    const { sink, landed, offered } = recordingSink();
    const forwarded: Buffer[] = [];
    const filter = new BulkFrameFilter(OPTIONS, () => sink, (bytes) => forwarded.push(Buffer.from(bytes)));
    feed(filter, stream, sizes);
    expect(Buffer.compare(Buffer.concat(forwarded), expectedForward)).toBe(0);
    const where = (header: FrameChunkHeader) => `${header.jobId}@${header.offset}`;
    expect(landed.map((l) => where(l.header))).toEqual(["3@0", "3@65536", "4@0", "6@65536", "3@131072", "3@196608"]);
    // Every job's chunks here carry the same picture's pixels.
    for (const { header, bytes } of landed) {
      expect(Buffer.compare(bytes, Buffer.from(image.data.subarray(header.offset, header.offset + header.payloadLength)))).toBe(0);
    }
    // Offered only sound chunks, in one message or as a header and exactly its pixels: not the
    // small ones, the bad one, the fragments, a pair broken by a ping or text, or anything after close.
    expect(offered.map(where)).toEqual(["3@0", "3@65536", "4@0", "6@65536", "3@131072", "3@196608"]);
  });

  it("leaves a chunk the sink does not take to ws, byte for byte", () => {
    const { sink, landed, offered } = recordingSink((header) => header.offset !== 65536);
    const forwarded: Buffer[] = [];
    const filter = new BulkFrameFilter(OPTIONS, () => sink, (bytes) => forwarded.push(Buffer.from(bytes)));
    feed(filter, stream, [4096]);
    const refused = new Set(["chunk 1", "second header alone", "its pixels too"]);
    const expected = Buffer.concat(parts.filter(([name]) => !taken.has(name) || refused.has(name)).map(([, bytes]) => bytes));
    expect(Buffer.compare(Buffer.concat(forwarded), expected)).toBe(0);
    expect(offered.length).toBe(6);
    expect(landed.map((l) => `${l.header.jobId}@${l.header.offset}`)).toEqual(["3@0", "4@0", "3@131072", "3@196608"]);
  });

  it("takes nothing before the connection is ready, and tells of a chunk cut off by the socket closing", () => {
    let ready: BulkSink | undefined;
    const { sink, landed, abandoned } = recordingSink();
    const forwarded: Buffer[] = [];
    const filter = new BulkFrameFilter(OPTIONS, () => ready, (bytes) => forwarded.push(Buffer.from(bytes)));
    const first = clientFrame(chunks[0]!, 0x2);
    filter.push(first);
    expect(Buffer.compare(Buffer.concat(forwarded), first)).toBe(0);
    ready = sink;
    const second = clientFrame(chunks[1]!, 0x2);
    filter.push(second.subarray(0, 1000));
    filter.end();
    expect(landed).toEqual([]);
    expect(abandoned.map((h) => h.offset)).toEqual([65536]);
  });

  it("tells of a header's pixels cut off by the socket closing, and of nothing when only the header came", () => {
    const { sink, landed, abandoned, offered } = recordingSink();
    const forwarded: Buffer[] = [];
    const cut = new BulkFrameFilter(OPTIONS, () => sink, (bytes) => forwarded.push(Buffer.from(bytes)));
    cut.push(Buffer.concat([clientFrame(pair.header, 0x2), clientFrame(pair.payload, 0x2).subarray(0, 5000)]));
    cut.end();
    expect(abandoned.map((h) => h.jobId)).toEqual([4]);
    const alone = new BulkFrameFilter(OPTIONS, () => sink, (bytes) => forwarded.push(Buffer.from(bytes)));
    alone.push(clientFrame(pairs[0]!.header, 0x2));
    alone.end();
    expect(offered.map((h) => h.jobId)).toEqual([4]);
    expect(abandoned.length).toBe(1);
    expect(landed).toEqual([]);
    expect(forwarded).toEqual([]);
  });
});
