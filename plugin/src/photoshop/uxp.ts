/**
 * The one place that loads Photoshop's and UXP's modules. Everything else gets a DocumentHost
 * and a SettingsStore, so it runs in Node and in a browser as well as in Photoshop.
 */
import * as photoshop from "photoshop";
import type { Layer } from "photoshop/dom/Layer";
import * as uxp from "uxp";
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
