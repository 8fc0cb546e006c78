/**
 * The daemon's WebSocket server: refuses browser origins at the upgrade, hands each socket to a
 * Connection, keeps connections alive with a heartbeat, and shuts down cleanly.
 */
import { createServer, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { BufferPool, DEFAULT_HOST, DEFAULT_PORT, type ModelList, type RegistryControlNet, type RegistryModel, type RegistryPreviewDecoder } from "../../protocol";
import type { Engine } from "../engine/engine";
import type { ModelInstaller } from "../models/downloads";
import { registryControlNets, registryDepthEstimators, registryModels, registryPoseEstimators, registryPreviewDecoders } from "../models/registry";
import { BULK_MIN_BYTES, takeBulkFrames } from "./bulk-frames";
import { CloseCode, Connection, modelsMessage } from "./connection";
import { DEFAULT_LIMITS, HARD_MESSAGE_FACTOR, type ServerLimits } from "./limits";
import { isBrowserOrigin } from "./origin";
import { JobQueue } from "./queue";

export interface ServerOptions {
  token: string;
  engine: Engine;
  host?: string;
  /** 0 picks a free port (tests). */
  port?: number;
  limits?: Partial<ServerLimits>;
  daemonVersion?: string;
  heartbeatMs?: number;
  handshakeTimeoutMs?: number;
  frameTimeoutMs?: number;
  log?: (line: string) => void;
  /** Runs pull-model requests and reports every model install to the panels (model-download). */
  installer?: ModelInstaller;
  /** The models the daemon can pull; the shipped registry unless given. */
  registry?: readonly RegistryModel[];
  /** The preview decoders the daemon can pull; the shipped registry's unless given. */
  registryPreviewDecoders?: readonly RegistryPreviewDecoder[];
  /** The ControlNets the daemon can pull; the shipped registry's unless given. */
  registryControlNets?: readonly RegistryControlNet[];
}

export interface DaemonServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly connectionCount: number;
  /** Tells every paired client about a new model list. */
  broadcastModels(list: ModelList): void;
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<DaemonServer> {
  const host = options.host ?? DEFAULT_HOST;
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const log = options.log ?? (() => {});
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const device = (await options.engine.capabilities()).device.name;
  const queue = new JobQueue(device);
  const connections = new Map<WebSocket, Connection>();
  const alive = new WeakSet<WebSocket>();
  const pool = new BufferPool();
  const registry = options.registry ?? registryModels();
  const previewDecoders = options.registryPreviewDecoders ?? registryPreviewDecoders();
  const controlNets = options.registryControlNets ?? registryControlNets();
  const depthEstimators = registryDepthEstimators();
  const poseEstimators = registryPoseEstimators();
  let nextConnection = 1;

  const http = createServer((_request, response) => {
    response.writeHead(426, { "content-type": "text/plain" }).end("Underpaint daemon: connect with the Photoshop panel (WebSocket).\n");
  });
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false, // UXP cannot negotiate extensions, and pixels do not compress cheaply
    maxPayload: limits.maxMessageBytes * HARD_MESSAGE_FACTOR,
  });

  http.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const origin = request.headers.origin;
    if (isBrowserOrigin(origin)) {
      log(`refused a connection from the web page ${origin}`);
      socket.end(
        "HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n" +
          "Underpaint refuses connections from web pages.\n",
      );
      return;
    }
    const accepted: { connection?: Connection } = {};
    // The panel's pixel chunks skip ws's copies; everything else ws reads as before.
    takeBulkFrames(socket, { minBytes: BULK_MIN_BYTES, maxBytes: limits.maxMessageBytes }, () => accepted.connection?.bulkSink);
    wss.handleUpgrade(request, socket, head, (ws) => (accepted.connection = accept(ws)));
  });

  function accept(ws: WebSocket): Connection {
    alive.add(ws);
    ws.on("pong", () => alive.add(ws));
    const connection = new Connection(ws, {
      id: `c${nextConnection++}`,
      pool,
      token: options.token,
      engine: options.engine,
      queue,
      limits,
      daemonVersion: options.daemonVersion ?? "0.0.0",
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      frameTimeoutMs: options.frameTimeoutMs ?? 60_000,
      log,
      ...(options.installer ? { installer: options.installer } : {}),
      registry,
      registryPreviewDecoders: previewDecoders,
      registryControlNets: controlNets,
      registryDepthEstimators: depthEstimators,
      registryPoseEstimators: poseEstimators,
    });
    connections.set(ws, connection);
    ws.on("close", () => connections.delete(ws));
    return connection;
  }

  let lastBeat = Date.now();
  const heartbeat = setInterval(() => {
    const now = Date.now();
    // A late beat means the daemon itself was busy (a model call holds the main thread): the
    // pongs that came meanwhile are not read yet, so judge no one this round.
    const late = now - lastBeat > heartbeatMs * 1.5;
    lastBeat = now;
    for (const ws of connections.keys()) {
      if (late) {
        alive.add(ws);
        continue;
      }
      if (!alive.has(ws)) {
        log("dropped a connection that stopped answering pings");
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, heartbeatMs);
  heartbeat.unref();

  const stopListening = options.engine.onModelsChanged?.((list) => broadcastModels(list));
  const stopDownloads = options.installer?.onProgress((progress) => {
    const message = { type: "model-download", ...progress, bytes: Math.max(0, progress.bytes), total: Math.max(0, progress.total) } as const;
    for (const connection of connections.values()) connection.notify(message);
  });

  function broadcastModels(list: ModelList): void {
    for (const connection of connections.values()) connection.notify({ type: "models", ...modelsMessage(list) });
  }

  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(options.port ?? DEFAULT_PORT, host, () => {
      http.off("error", reject);
      resolve();
    });
  });
  const address = http.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? DEFAULT_PORT);
  const urlHost = host.includes(":") ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    url: `ws://${urlHost}:${port}`,
    get connectionCount() {
      return connections.size;
    },
    broadcastModels,
    close() {
      closing ??= (async () => {
        clearInterval(heartbeat);
        stopListening?.();
        stopDownloads?.();
        await queue.drain();
        for (const [ws, connection] of connections) {
          connection.close(CloseCode.shuttingDown, "daemon shutting down");
          setTimeout(() => ws.terminate(), 1000).unref();
        }
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
      })();
      return closing;
    },
  };
}
