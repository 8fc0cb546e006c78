/**
 * For end-to-end tests of the panel's code against the real daemon: an in-process daemon with the
 * tiny fixture models, a ws-backed socket factory, and the fixture photographs as 8-bit RGBA.
 */
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import WebSocket from "ws";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import type { Engine } from "../../daemon/engine/engine";
import { startServer, type DaemonServer } from "../../daemon/server/server";
import { ProtocolClient } from "../../plugin/src/client/client";
import type { SocketFactory, WebSocketLike } from "../../plugin/src/client/socket";
import { FIXTURES_DIR } from "../helpers/paths";

export const TOKEN = "p".repeat(40);

export interface TestDaemon {
  server: DaemonServer;
  engine: DiffusionEngine;
  modelsDir: string;
  /** Starts a new server on the same port (after close), as when the artist restarts the daemon. */
  restart(): Promise<DaemonServer>;
  close(): Promise<void>;
}

export async function startTestDaemon(port = 0): Promise<TestDaemon> {
  const work = await mkdtemp(path.join(os.tmpdir(), "underpaint-e2e-"));
  const modelsDir = path.join(work, "models");
  await mkdir(modelsDir);
  await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(modelsDir, "tiny-sd"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd-inpaint"), path.join(modelsDir, "tiny-sd-inpaint"));
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
  let server = await startServer({ token: TOKEN, engine, port });
  const daemon: TestDaemon = {
    get server() {
      return server;
    },
    engine,
    modelsDir,
    async restart() {
      server = await startServer({ token: TOKEN, engine, port: server.port });
      return server;
    },
    async close() {
      await server.close();
      await engine.dispose();
      await rm(work, { recursive: true, force: true });
    },
  };
  return daemon;
}

/** Node's ws in the browser's shape, as UXP's WebSocket is (no extensions, ArrayBuffer messages). */
export const wsFactory: SocketFactory = (url) => new WebSocket(url, { perMessageDeflate: false }) as unknown as WebSocketLike;

/** The real server on `engine` and a ready panel client of it over ws; `close` stops both. */
export async function connectedPanel(engine: Engine, token: string): Promise<{ server: DaemonServer; client: ProtocolClient; close(): Promise<void> }> {
  const server = await startServer({ token, engine, port: 0 });
  const client = new ProtocolClient({ url: server.url, socketFactory: wsFactory, token });
  client.start();
  await client.whenReady();
  return {
    server,
    client,
    async close() {
      client.stop();
      await server.close();
    },
  };
}

export async function loadPhoto(name: "chelsea.png" | "coffee.png"): Promise<{ width: number; height: number; data: Uint8Array }> {
  const { data, info } = await sharp(path.join(FIXTURES_DIR, "images", name)).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** A soft elliptical selection (feathered over `feather` pixels), as 0..255 over the canvas. */
export function ellipseSelection(width: number, height: number, cx: number, cy: number, rx: number, ry: number, feather = 6): Uint8Array {
  const mask = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot((x + 0.5 - cx) / rx, (y + 0.5 - cy) / ry);
      const edge = (1 - d) * Math.min(rx, ry);
      mask[y * width + x] = Math.round(255 * Math.min(1, Math.max(0, edge / feather + 0.5)));
    }
  }
  return mask;
}
