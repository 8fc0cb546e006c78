/**
 * Test-only: a message-for-message WebSocket relay between a browser page and the daemon. The
 * daemon refuses browser origins (as it must); the panel in Photoshop sends none. The relay
 * lets the panel's bundle run in Chromium against the real daemon without weakening that rule.
 */
import { WebSocketServer, WebSocket, type RawData } from "ws";

export interface Relay {
  url: string;
  /** Every JSON message the page sent the daemon, parsed, oldest first. */
  sent: unknown[];
  close(): Promise<void>;
}

function toBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data);
}

/** Close codes that may be sent on the wire (1005/1006 are reserved for "none" and "abnormal"). */
function sendable(code: number): number {
  return code === 1005 || code === 1006 ? 1000 : code;
}

export async function startRelay(target: string): Promise<Relay> {
  const sent: unknown[] = [];
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false, maxPayload: 2 ** 30 });
  wss.on("connection", (browser) => {
    const upstream = new WebSocket(target, { perMessageDeflate: false, maxPayload: 2 ** 30 });
    const pending: Array<[Buffer, boolean]> = [];
    browser.on("message", (data, isBinary) => {
      const bytes = toBuffer(data);
      if (!isBinary) sent.push(JSON.parse(bytes.toString("utf8")));
      if (upstream.readyState === WebSocket.OPEN) upstream.send(bytes, { binary: isBinary });
      else pending.push([bytes, isBinary]);
    });
    upstream.on("open", () => {
      for (const [bytes, isBinary] of pending.splice(0)) upstream.send(bytes, { binary: isBinary });
    });
    upstream.on("message", (data, isBinary) => browser.send(toBuffer(data), { binary: isBinary }));
    upstream.on("close", (code, reason) => browser.close(sendable(code), reason));
    browser.on("close", () => upstream.close());
    upstream.on("error", () => browser.terminate());
    browser.on("error", () => upstream.terminate());
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const address = wss.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `ws://127.0.0.1:${port}`,
    sent,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
}
