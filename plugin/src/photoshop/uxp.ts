/**
 * The one place that loads Photoshop's and UXP's modules. Everything else gets a DocumentHost
 * and a SettingsStore, so it runs in Node and in a browser as well as in Photoshop.
 */
import * as photoshop from "photoshop";
import type { Layer } from "photoshop/dom/Layer";
import * as uxp from "uxp";
import type { DataFolder } from "../operations/library";
import type { PhotoshopApi } from "./api";
import type { DocumentHost, SettingsStore } from "./host";
import { createPhotoshopHost } from "./uxp-host";

// Compile-time proof that the real module (as @types/photoshop describes it) fits the adapter.
const api: PhotoshopApi<Layer> = photoshop;

export function photoshopHost(): DocumentHost {
  return createPhotoshopHost(api);
}

/**
 * The pairing token goes to UXP's secureStorage (encrypted for this user); other settings to the
 * plugin's localStorage. Secure storage can lose data (Adobe calls it a cache): the panel then
 * asks for the token again.
 */
export function uxpSettings(): SettingsStore {
  const secure = uxp.storage.secureStorage;
  const isSecret = (key: string) => key === "token";
  return {
    async get(key) {
      if (isSecret(key)) {
        try {
          const value = await secure.getItem(key);
          if (value === null || value === undefined) return undefined;
          if (typeof value === "string") return value;
          // Tokens are ASCII; not every UXP version has TextDecoder.
          return typeof TextDecoder === "function" ? new TextDecoder().decode(value) : String.fromCharCode(...value);
        } catch {
          return undefined;
        }
      }
      return window.localStorage.getItem(`underpaint.${key}`) ?? undefined;
    },
    async set(key, value) {
      if (isSecret(key)) await secure.setItem(key, value);
      else window.localStorage.setItem(`underpaint.${key}`, value);
    },
  };
}

/**
 * The plugin's data folder (localFileSystem.getDataFolder(): the plugin's own, no permission or
 * dialog). A write goes to "<name>.tmp" first and is renamed over the file, so a crash mid-write
 * leaves the old file whole; where the rename is refused the file is written in place.
 */
export function uxpDataFolder(): DataFolder {
  const { localFileSystem, formats } = uxp.storage;
  let folder: ReturnType<typeof localFileSystem.getDataFolder> | undefined;
  const dataFolder = () => (folder ??= localFileSystem.getDataFolder());
  return {
    async read(name) {
      const dir = await dataFolder();
      let entry;
      try {
        entry = await dir.getEntry(name);
      } catch {
        return undefined; // no such file yet
      }
      if (!entry.isFile || !("read" in entry)) return undefined;
      const contents = await entry.read({ format: formats.utf8 });
      return typeof contents === "string" ? contents : new TextDecoder().decode(contents);
    },
    async write(name, text) {
      const dir = await dataFolder();
      const temp = await dir.createFile(`${name}.tmp`, { overwrite: true });
      await temp.write(text, { format: formats.utf8 });
      try {
        await dir.renameEntry(temp, name, { overwrite: true });
      } catch {
        const file = await dir.createFile(name, { overwrite: true });
        await file.write(text, { format: formats.utf8 });
      }
    },
  };
}
