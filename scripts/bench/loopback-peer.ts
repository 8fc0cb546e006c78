/**
 * The far end of the protocol bench, in its own process as the daemon is in real use (the panel
 * lives in Photoshop's process): the real daemon server with an echo engine, a plain TCP sink,
 * or an Automatic1111-style base64-PNG-in-JSON endpoint. Tells its port over IPC.
 */
import net from "node:net";
import sharp from "sharp";
import { WebSocketServer } from "ws";
import type { Engine, EngineResult, GenerationJob } from "../../daemon/engine/engine";
import { regionOf } from "../../geometry";
import { startServer } from "../../daemon/server/server";

/** Transfer is what is measured: this engine hands the image straight back. */
const echoEngine: Engine = {
  async capabilities() {
    return {
      models: [
        {
          id: "echo",
          name: "Echo",
          kind: "txt2img",
          modes: ["img2img"],
          nativeResolution: 512,
          turbo: false,
          recommended: { steps: 1, guidance: 1, scheduler: "euler" },
          guidance: "classifier-free",
        },
      ],
      unavailable: [],
      schedulers: ["euler"],
      modes: ["img2img"],
      device: { name: "cpu", description: "bench echo" },
    };
  },
  async run(job: GenerationJob): Promise<EngineResult[]> {
    if (job.mode !== "img2img") throw new Error("the echo engine only hands back img2img pixels");
    return [{ variation: 0, seed: job.seed, image: job.image, region: regionOf(job.image) }];
  },
};

const [mode, arg] = process.argv.slice(2);

/**
 * Plain TCP both ways, the ceiling: counts a layer's bytes in and says "k"; on a one-byte "g"
 * (sent alone, between layers) writes a layer of that size back.
 */
async function tcpPeer(expected: number): Promise<number> {
  const layer = new Uint8Array(expected).fill(7);
  const server = net.createServer((socket) => {
    let received = 0;
    socket.on("data", (chunk) => {
      if (received === 0 && chunk.byteLength === 1 && chunk[0] === 0x67) {
        socket.write(layer);
        return;
      }
      received += chunk.byteLength;
      if (received >= expected) {
        received -= expected;
        socket.write("k");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

async function base64Endpoint(): Promise<number> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false, maxPayload: 2 ** 30 });
  wss.on("connection", (socket) => {
    socket.on("message", async (data) => {
      const request = JSON.parse(data.toString()) as { init_images: string[]; width: number; height: number };
      const raw = await sharp(Buffer.from(request.init_images[0]!, "base64")).raw().toBuffer();
      const back = await sharp(raw, { raw: { width: request.width, height: request.height, channels: 4 } }).png().toBuffer();
      socket.send(JSON.stringify({ images: [back.toString("base64")] }));
    });
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  return (wss.address() as net.AddressInfo).port;
}

let port: number;
if (mode === "tcp") port = await tcpPeer(Number(arg));
else if (mode === "base64") port = await base64Endpoint();
else port = (await startServer({ token: arg!, engine: echoEngine, port: 0 })).port;
process.send!({ port });
process.on("disconnect", () => process.exit(0));
