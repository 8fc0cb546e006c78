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
  /** Files already in the plugin's data folder when the panel starts. */
  dataFiles?: Record<string, string>;
}

/** What the harness reads and leaves on the page's window (kept off the global types). */
const page = window as unknown as {
  __underpaintTest: TestConfig;
  __fakePhotoshop: FakePhotoshop;
  __progressLabels: string[];
  __dataFiles: Map<string, string>;
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
const files = new Map<string, string>(Object.entries(config.dataFiles ?? {}));
page.__dataFiles = files;
const utf8 = Symbol("utf8");
/** UXP's localFileSystem data folder, in memory: entries by name, as Adobe documents them. */
function fileEntry(name: string) {
  return {
    name,
    isFile: true,
    isFolder: false,
    read: async (options?: { format?: symbol }) => {
      if (options?.format !== utf8) throw new Error("the panel must read its files as utf8 text");
      const text = files.get(name);
      if (text === undefined) throw new Error(`${name} does not exist`);
      return text;
    },
    write: async (data: string, options?: { format?: symbol }) => {
      if (options?.format !== utf8 || typeof data !== "string") throw new Error("the panel must write its files as utf8 text");
      files.set(name, data);
      return data.length;
    },
  };
}
const dataFolder = {
  name: "PluginData",
  isFile: false,
  isFolder: true,
  getEntry: async (name: string) => {
    if (!files.has(name)) throw new Error(`Could not find an entry of '${name}'`);
    return fileEntry(name);
  },
  createFile: async (name: string, options?: { overwrite?: boolean }) => {
    if (files.has(name) && !options?.overwrite) throw new Error(`${name} exists`);
    return fileEntry(name);
  },
  renameEntry: async (entry: { name: string }, newName: string, options?: { overwrite?: boolean }) => {
    const text = files.get(entry.name);
    if (text === undefined) throw new Error(`${entry.name} does not exist`);
    if (files.has(newName) && !options?.overwrite) throw new Error(`${newName} exists`);
    files.delete(entry.name);
    files.set(newName, text);
  },
};
const uxp = {
  storage: {
    secureStorage: {
      getItem: async (key: string) => (secrets.has(key) ? new TextEncoder().encode(secrets.get(key)) : null),
      setItem: async (key: string, value: string) => void secrets.set(key, value),
      removeItem: async (key: string) => void secrets.delete(key),
    },
    localFileSystem: { getDataFolder: async () => dataFolder },
    formats: { utf8, binary: Symbol("binary") },
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
