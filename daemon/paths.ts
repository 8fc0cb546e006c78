/** Where Underpaint keeps its files, per operating system, each overridable by an environment variable. */
import os from "node:os";
import path from "node:path";

type Env = Record<string, string | undefined>;

/** Settings and the pairing token. */
export function configDir(env: Env = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.UNDERPAINT_CONFIG_DIR) return env.UNDERPAINT_CONFIG_DIR;
  const home = os.homedir();
  if (platform === "win32") return path.join(env.APPDATA ?? path.join(home, "AppData", "Roaming"), "Underpaint");
  if (platform === "darwin") return path.join(home, "Library", "Application Support", "Underpaint");
  return path.join(env.XDG_CONFIG_HOME || path.join(home, ".config"), "underpaint");
}

/** Installed models (gigabytes: data, not config). */
export function defaultModelsDir(env: Env = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.UNDERPAINT_MODELS) return env.UNDERPAINT_MODELS;
  const home = os.homedir();
  if (platform === "win32") return path.join(env.LOCALAPPDATA ?? path.join(home, "AppData", "Local"), "Underpaint", "models");
  if (platform === "darwin") return path.join(home, "Library", "Application Support", "Underpaint", "models");
  return path.join(env.XDG_DATA_HOME || path.join(home, ".local", "share"), "underpaint", "models");
}

/** Files the daemon can make again (onnxruntime-optimized model copies): safe to delete. */
export function cacheDir(env: Env = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env.UNDERPAINT_CACHE_DIR) return env.UNDERPAINT_CACHE_DIR;
  const home = os.homedir();
  if (platform === "win32") return path.join(env.LOCALAPPDATA ?? path.join(home, "AppData", "Local"), "Underpaint", "cache");
  if (platform === "darwin") return path.join(home, "Library", "Caches", "Underpaint");
  return path.join(env.XDG_CACHE_HOME || path.join(home, ".cache"), "underpaint");
}
