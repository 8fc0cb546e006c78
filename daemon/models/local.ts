/**
 * `models add PATH` and `models remove ID`: a folder the artist already has joins the models
 * folder (as a link by default, so gigabytes are not copied; `copy` copies it through a hidden
 * folder, with a manifest, so it appears whole or not at all), and an installed model leaves it
 * in one step (a link is removed, never the folder it points to).
 */
import { cp, lstat, mkdir, readdir, rm, symlink } from "node:fs/promises";
import { basename, join, relative, resolve, sep } from "node:path";
import { hashFile } from "./download";
import { ModelInstallError } from "./install-errors";
import { writeManifest, type ManifestFile } from "./manifest";
import { loadModelFolder } from "./model-folder";
import {
  checkFreeSpace,
  exists,
  formatBytes,
  installFolder,
  lockOwner,
  lockPartial,
  modelDir,
  partialDir,
  pidAlive,
  removeAtomically,
} from "./model-store";
import { checkModelId } from "./registry";

type Env = Record<string, string | undefined>;

async function filesOf(root: string, dir = root): Promise<Array<{ path: string; rel: string; size: number }>> {
  const out: Array<{ path: string; rel: string; size: number }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesOf(root, path)));
    else if (entry.isFile()) {
      const size = (await lstat(path)).size;
      out.push({ path, rel: relative(root, path).split(sep).join("/"), size });
    }
  }
  return out;
}

export interface AddResult {
  id: string;
  dir: string;
  linked: boolean;
  bytes: number;
}

/** Checks `source` as the engine would, then links or copies it into the models folder as `as` (default: its name). */
export async function addLocalModel(
  source: string,
  options: { modelsDir: string; as?: string; copy?: boolean; env?: Env },
): Promise<AddResult> {
  const from = resolve(source);
  const folder = await loadModelFolder(from);
  const id = checkModelId(options.as ?? basename(from));
  const modelsDir = resolve(options.modelsDir);
  const dest = modelDir(modelsDir, id);
  if (from === dest) throw new ModelInstallError("already_installed", `${from} is already in the models folder as "${id}".`);
  if (await exists(dest)) {
    throw new ModelInstallError("already_installed", `A model "${id}" is already installed in ${dest}; choose another name with --as NAME.`);
  }
  await mkdir(modelsDir, { recursive: true });
  if (!options.copy) {
    await symlink(from, dest, process.platform === "win32" ? "junction" : "dir");
    return { id, dir: dest, linked: true, bytes: folder.weightsBytes };
  }
  const files = await filesOf(from);
  const total = files.reduce((sum, f) => sum + f.size, 0);
  await checkFreeSpace(modelsDir, total, `a copy of ${from} (${formatBytes(total)})`, options.env);
  const partial = partialDir(modelsDir, id);
  const release = await lockPartial(partial, id);
  try {
    for (const name of await readdir(partial)) if (name !== ".lock") await rm(join(partial, name), { recursive: true, force: true });
    await cp(from, partial, { recursive: true, dereference: true, filter: (src) => !basename(src).startsWith(".") || src === from });
    const manifestFiles: ManifestFile[] = [];
    for (const f of files) {
      if (f.rel.split("/").some((part) => part.startsWith("."))) continue;
      const { size, sha256 } = await hashFile(join(partial, ...f.rel.split("/")));
      manifestFiles.push({ path: f.rel, size, sha256 });
    }
    await writeManifest(partial, { version: 1, id, source: { kind: "local", path: from }, installedAt: new Date().toISOString(), files: manifestFiles });
    await loadModelFolder(partial);
    await release();
    await rm(join(partial, ".lock"), { force: true });
    await installFolder(modelsDir, partial, id, false);
    return { id, dir: dest, linked: false, bytes: total };
  } catch (error) {
    await release();
    await rm(partial, { recursive: true, force: true });
    throw error;
  }
}

export interface RemoveResult {
  id: string;
  /** What was removed: the model folder, a link to a folder elsewhere, and/or an unfinished download. */
  removed: Array<"model" | "link" | "unfinished download">;
}

/** Removes an installed model (or link) and any unfinished download of that id. */
export async function removeModel(modelsDir: string, id: string, installedIds: readonly string[] = []): Promise<RemoveResult> {
  checkModelId(id);
  const root = resolve(modelsDir);
  const dest = modelDir(root, id);
  const partial = partialDir(root, id);
  const removed: RemoveResult["removed"] = [];
  if (await exists(partial)) {
    const owner = await lockOwner(partial);
    if (owner !== null && owner !== process.pid && pidAlive(owner)) {
      throw new ModelInstallError("busy", `"${id}" is being downloaded right now (pid ${owner}); stop that pull first.`);
    }
    await rm(partial, { recursive: true, force: true });
    removed.push("unfinished download");
  }
  if (await exists(dest)) {
    const linked = (await lstat(dest)).isSymbolicLink();
    try {
      await removeAtomically(root, dest, id);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new ModelInstallError("io", `Cannot remove ${dest} (${code ?? (error as Error).message}): a file in it may be in use; stop the daemon and try again.`, {
        cause: error,
      });
    }
    removed.unshift(linked ? "link" : "model");
  }
  if (removed.length === 0) {
    const known = installedIds.length ? installedIds.join(", ") : "none";
    throw new ModelInstallError("not_installed", `There is no model "${id}" in ${root} (installed: ${known}).`);
  }
  return { id, removed };
}
