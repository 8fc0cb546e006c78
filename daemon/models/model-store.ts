/**
 * The models folder as a store that is never seen half-written. Work happens in hidden
 * folders beside the models (discoverModels skips names that start with "."):
 *
 *   .partial-<id>/      a pull or copy in progress: files, .part files, .lock, .pull.json, .progress.json
 *   .removing-<id>-<n>/ a model being deleted (renamed away first, so it vanishes from the list at once)
 *
 * and a finished folder appears under its id by one rename.
 */
import { readFileSync } from "node:fs";
import { mkdir, open, readFile, readdir, rename, rm, statfs, lstat, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { ModelInstallError } from "./install-errors";

export const PARTIAL_PREFIX = ".partial-";
export const LOCK_FILE = ".lock";
export const STATE_FILE = ".pull.json";
export const PROGRESS_FILE = ".progress.json";

export function modelDir(modelsDir: string, id: string): string {
  return join(resolve(modelsDir), id);
}

export function partialDir(modelsDir: string, id: string): string {
  return join(resolve(modelsDir), `${PARTIAL_PREFIX}${id}`);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

type Env = Record<string, string | undefined>;

/**
 * Free bytes for `dir` (or its nearest existing parent). UNDERPAINT_FAKE_FREE_BYTES overrides
 * it, so the disk-full path can be tested.
 */
export async function freeBytes(dir: string, env: Env = process.env): Promise<number> {
  const fake = env.UNDERPAINT_FAKE_FREE_BYTES;
  if (fake !== undefined && fake !== "" && Number.isFinite(Number(fake))) return Number(fake);
  let at = resolve(dir);
  for (;;) {
    try {
      const s = await statfs(at);
      return Number(s.bavail) * Number(s.bsize);
    } catch (error) {
      const parent = dirname(at);
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || parent === at) throw error;
      at = parent;
    }
  }
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** Fails early, before anything is written, when the disk cannot hold what is left to fetch. */
export async function checkFreeSpace(dir: string, needed: number, what: string, env: Env = process.env): Promise<void> {
  // Headroom for the filesystem's own blocks and for the manifest.
  const margin = Math.ceil(needed * 0.01) + 16 * 1024 * 1024;
  const free = await freeBytes(dir, env);
  if (needed > 0 && free < needed + margin) {
    throw new ModelInstallError(
      "disk_full",
      `Not enough disk space in ${resolve(dir)}: ${what} needs ${formatBytes(needed + margin)}, ${formatBytes(free)} is free. ` +
        `Free some space (or use another models folder with --models / UNDERPAINT_MODELS) and try again.`,
    );
  }
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

/** A killed process whose parent has not reaped it yet still answers kill(0) on Linux: it holds nothing. */
function isZombie(pid: number): boolean {
  if (process.platform !== "linux") return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state === "Z" || state === "X";
  } catch {
    return false;
  }
}

/** The pid in a partial folder's lock, or null. */
export async function lockOwner(partial: string): Promise<number | null> {
  try {
    const pid = Number((await readFile(join(partial, LOCK_FILE), "utf8")).trim());
    return Number.isInteger(pid) ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Takes the partial folder for this process (creating it), or fails if a live process holds it.
 * A lock left by a process that died is taken over: its files are resumed.
 */
export async function lockPartial(partial: string, id: string): Promise<() => Promise<void>> {
  await mkdir(partial, { recursive: true });
  const lock = join(partial, LOCK_FILE);
  for (let tries = 0; tries < 3; tries++) {
    try {
      const handle = await open(lock, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      return async () => {
        if ((await lockOwner(partial)) === process.pid) await unlink(lock).catch(() => {});
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = await lockOwner(partial);
      if (owner !== null && owner !== process.pid && pidAlive(owner)) {
        throw new ModelInstallError("busy", `"${id}" is already being downloaded or installed by another process (pid ${owner}); wait for it to finish.`);
      }
      if (owner === process.pid) {
        throw new ModelInstallError("busy", `"${id}" is already being downloaded.`);
      }
      await unlink(lock).catch(() => {});
    }
  }
  throw new ModelInstallError("busy", `Cannot lock ${partial}.`);
}

/** rename(), retried briefly: on Windows a virus scanner or an open file can hold a folder for a moment. */
export async function renameRetrying(from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(from, to);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (attempt >= 5 || (code !== "EPERM" && code !== "EBUSY" && code !== "EACCES")) throw error;
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
  }
}

let removals = 0;

/** Takes a folder (or link) out of the list at once, then deletes it. A link's target is left alone. */
export async function removeAtomically(modelsDir: string, path: string, id: string): Promise<void> {
  const info = await lstat(path);
  if (info.isSymbolicLink()) {
    await unlink(path);
    return;
  }
  const away = join(resolve(modelsDir), `.removing-${id}-${process.pid}-${Date.now()}-${removals++}`);
  await renameRetrying(path, away);
  await rm(away, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Moves a finished folder into place as `id`. With `replace`, an existing model of that id is
 * taken away first (and deleted after), so the list never shows a mix of both.
 */
export async function installFolder(modelsDir: string, from: string, id: string, replace: boolean): Promise<string> {
  const dest = modelDir(modelsDir, id);
  let old: string | null = null;
  if (await exists(dest)) {
    if (!replace) throw new ModelInstallError("already_installed", `A model "${id}" is already installed in ${dest}.`);
    const info = await lstat(dest);
    if (info.isSymbolicLink()) await unlink(dest);
    else {
      old = join(resolve(modelsDir), `.removing-${id}-${process.pid}-${Date.now()}-${removals++}`);
      await renameRetrying(dest, old);
    }
  }
  await renameRetrying(from, dest);
  if (old) await rm(old, { recursive: true, force: true, maxRetries: 3 });
  return dest;
}

/** Deletes leftovers of removals that were interrupted. */
export async function sweepRemovals(modelsDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(resolve(modelsDir));
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith(".removing-")) await rm(join(resolve(modelsDir), name), { recursive: true, force: true }).catch(() => {});
  }
}
