/**
 * control-preview over a real WebSocket: the panel's own protocol client asks the real server for
 * the control image a ControlNet would follow, made from a layer by imaging/control-image.ts (the
 * code a control job's image goes through), and gets it back as a control frame; bad requests are
 * refused with a code and a sentence, and the welcome lists the ControlNets the daemon can pull.
 */
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { controlImage } from "../../../daemon/imaging/control-image";
import { registryControlNets, registryDepthEstimators, registryPoseEstimators } from "../../../daemon/models/registry";
import { startServer, type DaemonServer } from "../../../daemon/server/server";
import { ProtocolClient } from "../../../plugin/src/client/client";
import type { WebSocketLike } from "../../../plugin/src/client/socket";
import type { ImageFrame } from "../../../protocol";
import { RawClient } from "../../helpers/raw-client";
import { TestEngine } from "../../helpers/test-engine";

const TOKEN = "p".repeat(40);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function daemon(limits: { chunkBytes?: number; maxImagePixels?: number } = {}): Promise<DaemonServer> {
  const server = await startServer({ token: TOKEN, engine: new TestEngine(), port: 0, limits });
  cleanups.push(() => server.close());
  return server;
}

async function panelClient(url: string): Promise<ProtocolClient> {
  const client = new ProtocolClient({ url, token: TOKEN, socketFactory: (u) => new WebSocket(u, { perMessageDeflate: false }) as unknown as WebSocketLike });
  cleanups.push(() => client.stop());
  client.start();
  await client.whenReady();
  return client;
}

const W = 48;
const H = 32;

/** A scribble as an artist draws it: black strokes on a transparent layer (a cross through the middle). */
function scribbleLayer(): { width: number; height: number; channels: 4; data: Uint8Array } {
  const data = new Uint8Array(W * H * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (Math.abs(x - W / 2) < 2 || Math.abs(y - H / 2) < 2) data[(y * W + x) * 4 + 3] = 255;
    }
  }
  return { width: W, height: H, channels: 4, data };
}

/** A grey square on white, opaque: the canny ControlNet follows its outline. */
function squareLayer(): { width: number; height: number; channels: 4; data: Uint8Array } {
  const data = new Uint8Array(W * H * 4).fill(255);
  for (let y = 8; y < 24; y++) for (let x = 12; x < 36; x++) data.fill(60, (y * W + x) * 4, (y * W + x) * 4 + 3);
  return { width: W, height: H, channels: 4, data };
}

const at = (frame: ImageFrame, x: number, y: number) => frame.data[(y * frame.width + x) * 3]!;

describe("control-preview", () => {
  it("answers with the control image as a job's ControlNet reads it: scribbles as white lines on black, canny as the outline's edges", async () => {
    const server = await daemon({ chunkBytes: 1000 });
    const client = await panelClient(server.url);
    expect(client.capabilities?.controlPreview).toBe(true);

    const scribble = await client.controlPreview("scribble", scribbleLayer());
    expect([scribble.kind, scribble.width, scribble.height, scribble.channels, scribble.bitsPerChannel]).toEqual(["control", W, H, 3, 8]);
    // The strokes were dark on a ground read as white: they come back white, the ground black.
    expect([at(scribble, W / 2, 3), at(scribble, 3, H / 2), at(scribble, 3, 3), at(scribble, W - 4, H - 4)]).toEqual([255, 255, 0, 0]);
    expect(new Set(scribble.data)).toEqual(new Set([0, 255]));

    const canny = await client.controlPreview("canny", squareLayer());
    // Edges on the square's outline, none inside it nor on the white ground.
    expect(at(canny, 24, 4)).toBe(0);
    expect(at(canny, 24, 16)).toBe(0);
    const outline = [7, 8].some((y) => at(canny, 24, y) === 255) && [11, 12].some((x) => at(canny, x, 16) === 255);
    expect(outline, "an edge where the square begins, above and to the left").toBe(true);
    // Exactly what the engine gets for a control job of this layer at this size.
    const planes = await controlImage("canny", squareLayer(), { width: W, height: H });
    const expected = Uint8Array.from({ length: W * H * 3 }, (_, i) => Math.round(planes[(i % 3) * W * H + Math.floor(i / 3)]! * 255));
    expect(Buffer.from(canny.data).equals(Buffer.from(expected))).toBe(true);
  });

  it("is refused in a sentence when the image is over the limit, the id is taken, or the frame is not the control frame declared", async () => {
    const server = await daemon({ maxImagePixels: 30 * 30 });
    const raw = await RawClient.paired(server.url, TOKEN);
    cleanups.push(() => raw.socket.terminate());
    const image = { frameId: 1, width: W, height: H, channels: 4 as const, bitsPerChannel: 8 as const };
    raw.send({ type: "control-preview", requestId: 5, kind: "canny", image });
    expect(await raw.next("error", (e) => e.jobId === 5)).toMatchObject({ code: "frame_too_large", message: `The control image (${W}x${H}) is over the 900-pixel limit.` });

    const small = { ...image, width: 20, height: 20 };
    raw.send({ type: "control-preview", requestId: 6, kind: "scribble", image: small });
    raw.send({ type: "control-preview", requestId: 6, kind: "scribble", image: small });
    expect(await raw.next("error", (e) => e.jobId === 6)).toMatchObject({ code: "duplicate_job", message: "Id 6 is already in use on this connection." });
    raw.sendImage({ kind: "image", jobId: 6, ...small, data: new Uint8Array(20 * 20 * 4) });
    expect(await raw.next("error", (e) => e.jobId === 6 && e.code === "frame_invalid")).toMatchObject({ message: "Control preview 6 expects its control frame 1, not frame 1 of kind image." });

    raw.send({ type: "control-preview", requestId: 7, kind: "lineart", image: small });
    raw.sendImage({ kind: "control", jobId: 7, ...small, data: new Uint8Array(20 * 20 * 4).fill(255) });
    const answer = await raw.next("control-preview", (m) => m.requestId === 7);
    expect(answer).toMatchObject({ kind: "lineart", frame: { width: 20, height: 20, channels: 3, bitsPerChannel: 8 } });
    await expect.poll(() => raw.frames.get(`7:${answer.frame.frameId}`)?.kind).toBe("control");
  });

  it("tells the panel which ControlNets it can pull, and the panel's client asks an older daemon for no preview", async () => {
    const server = await daemon();
    const client = await panelClient(server.url);
    expect(client.capabilities?.registryControlNets?.map((c) => [c.id, c.kind])).toEqual(registryControlNets().map((c) => [c.id, c.kind]));
    expect(client.capabilities?.registryControlNets?.find((c) => c.id === "controlnet-scribble")).toMatchObject({ kind: "scribble", approximateBytes: expect.any(Number), license: expect.any(String) });
    // And which depth estimators, for depth control from a picture.
    expect(client.capabilities?.registryDepthEstimators).toEqual(registryDepthEstimators());
    expect(client.capabilities?.registryDepthEstimators?.map((d) => d.id)).toEqual(["depth-anything-v2-small"]);
    // And which pose estimators, for pose control from a picture.
    expect(client.capabilities?.registryPoseEstimators).toEqual(registryPoseEstimators());
    expect(client.capabilities?.registryPoseEstimators?.map((d) => d.id)).toEqual(["dwpose"]);
    // A daemon that does not say it answers control-preview (its welcome has no controlPreview).
    Object.assign(client.capabilities!, { controlPreview: undefined });
    await expect(client.controlPreview("canny", squareLayer())).rejects.toMatchObject({ code: "unsupported", message: "This daemon cannot show control images; update it." });
  });
});
