/**
 * The panel's entry point: UXP loads index.html, which loads this bundle. Photoshop and UXP are
 * reached only through photoshop/uxp.ts; the panel gets them as a DocumentHost and a store.
 */
import type { WebSocketLike } from "./client/socket";
import { startPanel } from "./panel/app";
import { photoshopHost, uxpDataFolder, uxpSettings } from "./photoshop/uxp";

declare const __UNDERPAINT_VERSION__: string;

startPanel({
  host: photoshopHost(),
  settings: uxpSettings(),
  data: uxpDataFolder(),
  // UXP's WebSocket: a client only, no extensions, binary messages as ArrayBuffer.
  socketFactory: (url) => new WebSocket(url) as unknown as WebSocketLike,
  document,
  window,
  version: typeof __UNDERPAINT_VERSION__ === "string" ? __UNDERPAINT_VERSION__ : "0.0.0",
}).catch((error: unknown) => {
  const status = document.getElementById("status");
  if (status) status.textContent = `The panel could not start: ${error instanceof Error ? error.message : String(error)}`;
});
