/// <reference lib="dom" />
/**
 * Test-only: what Photoshop gives the panel, in a browser page. Runs before the panel's bundle:
 * defines the sp-* widgets, opens a document in the in-memory Photoshop, and answers the
 * bundle's require("photoshop") / require("uxp"). Settings come from window.__underpaintTest.
 */
import { FakePhotoshop } from "../../plugin/fake-photoshop";
import { defineSpectrumWidgets } from "./sp-elements";

interface TestConfig {
  daemonUrl: string;
  token: string;
  width: number;
  height: number;
}

/** What the harness reads and leaves on the page's window (kept off the global types). */
const page = window as unknown as {
  __underpaintTest: TestConfig;
  __fakePhotoshop: FakePhotoshop;
  __progressLabels: string[];
  require: (name: string) => unknown;
};

const config = page.__underpaintTest;
defineSpectrumWidgets();

const ps = new FakePhotoshop();
const { width, height } = config;
const pixels = new Uint8Array(width * height * 4);
for (let y = 0; y < height; y++) {
  for (let x = 0; x < width; x++) {
    const o = (y * width + x) * 4;
    pixels[o] = Math.round((x / width) * 255);
    pixels[o + 1] = Math.round((y / height) * 255);
    pixels[o + 2] = 160;
    pixels[o + 3] = 255;
  }
}
ps.openDocument({ title: "gradient.psd", width, height, layers: [{ name: "Background", background: true, pixels: { width, height, data: pixels } }] });
page.__fakePhotoshop = ps;

const secrets = new Map<string, string>([["token", config.token]]);
const uxp = {
  storage: {
    secureStorage: {
      getItem: async (key: string) => (secrets.has(key) ? new TextEncoder().encode(secrets.get(key)) : null),
      setItem: async (key: string, value: string) => void secrets.set(key, value),
      removeItem: async (key: string) => void secrets.delete(key),
    },
  },
};
window.localStorage.setItem("underpaint.daemonUrl", config.daemonUrl);
page.require = (name: string) => {
  if (name === "photoshop") return ps;
  if (name === "uxp") return uxp;
  throw new Error(`The panel asked for the module "${name}", which Photoshop does not have.`);
};

// Every label the progress bar shows, to check after the fact.
page.__progressLabels = [];
document.addEventListener("DOMContentLoaded", () => {
  const label = document.getElementById("progress-label");
  if (!label) return;
  new MutationObserver(() => page.__progressLabels.push(label.textContent ?? "")).observe(label, { childList: true, characterData: true, subtree: true });
});
