/**
 * What the helper networks beside the models (the depth estimator, the pose estimator) share: how
 * the models folder is searched for them, and how a checked session of one of their graphs is made.
 */
import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ModelFolderError } from "./errors";
import { createSession, silentLog, type Device, type ModelLog } from "./execution-provider";
import type { IoValue } from "./io-spec";
import { invalid } from "./model-folder";
import type { PartSession } from "./model-sessions";
import { sessionValues } from "./session-io";

export interface FoundHelpers<T> {
  /** The one the engine uses: the first that loads, registry installs before folders added by hand, then by name. */
  found: T | null;
  broken: { id: string; dir: string; error: ModelFolderError }[];
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

/** The folders of a models folder that `isOne` takes for a helper, loaded by `load` (a models folder that does not exist has none). */
export async function findHelperFolders<T extends { registryId: string | null }>(
  modelsDir: string,
  isOne: (dir: string) => Promise<boolean>,
  load: (dir: string) => Promise<T>,
): Promise<FoundHelpers<T>> {
  const root = resolve(modelsDir);
  const names = await readdir(root).catch(() => [] as string[]);
  const loaded: T[] = [];
  const broken: FoundHelpers<T>["broken"] = [];
  for (const id of names.filter((n) => !n.startsWith(".")).sort()) {
    const dir = join(root, id);
    if (!(await isDir(dir)) || !(await isOne(dir))) continue;
    try {
      loaded.push(await load(dir));
    } catch (error) {
      const wrapped = error instanceof ModelFolderError ? error : invalid(dir, `unreadable (${(error as Error).message})`, error);
      broken.push({ id, dir, error: wrapped });
    }
  }
  return { found: loaded.find((f) => f.registryId !== null) ?? loaded[0] ?? null, broken };
}

/** A session of `path` on `devices` (the first that loads it; the CPU last), its I/O checked again on the session by `describe`. */
export async function createHelperSession<IO>(
  path: string,
  devices: readonly Device[],
  describe: (inputs: readonly IoValue[], outputs: readonly IoValue[]) => IO,
  loaded: (device: Device) => string,
  options: { log?: ModelLog; threads?: number } = {},
): Promise<PartSession<IO>> {
  const log = options.log ?? silentLog;
  const created = await createSession(path, devices, log, options.threads !== undefined ? { threads: options.threads } : {});
  try {
    const { inputs, outputs } = sessionValues(created.session);
    const io = describe(inputs, outputs);
    log("info", loaded(created.device));
    return { ...created, io, path };
  } catch (error) {
    await created.session.release().catch(() => {});
    throw error;
  }
}
