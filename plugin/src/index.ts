/**
 * The panel's entry point. UXP loads index.html, which loads this bundle; the panel UI and the
 * protocol client hang off this shell.
 */
import { DEFAULT_HOST, DEFAULT_PORT, PROTOCOL_VERSION } from "../../protocol";

function showStatus(text: string): void {
  const status = document.getElementById("status");
  if (status) status.textContent = text;
}

showStatus(`Daemon expected at ws://${DEFAULT_HOST}:${DEFAULT_PORT} (protocol ${PROTOCOL_VERSION}). Start it with \`npm start\`.`);
