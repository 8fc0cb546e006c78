/**
 * Lists the model folders in a models directory: each subfolder holding model_index.json, or
 * unet/ and text_encoder/ (exports that ship no index). Every folder is loaded on its own, so a
 * broken one is reported next to the good ones instead of hiding them: a half-copied model does
 * not just vanish from the list.
 */
import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { ModelFolderError } from "./errors";
import { loadModelFolder, type LoadModelFolderOptions, type ModelFolder } from "./model-folder";

export interface BrokenModelFolder {
  id: string;
  dir: string;
  error: ModelFolderError;
}

export interface DiscoveredModels {
  /** Sorted by id. */
  models: ModelFolder[];
  /** Sorted by id. */
  broken: BrokenModelFolder[];
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** A models directory that does not exist yet holds no models. */
export async function discoverModels(modelsDir: string, options: LoadModelFolderOptions = {}): Promise<DiscoveredModels> {
  const root = resolve(modelsDir);
  let names: string[];
  try {
    names = await readdir(root);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { models: [], broken: [] };
    throw error;
  }
  const found = await Promise.all(
    names
      .filter((name) => !name.startsWith("."))
      .sort()
      .map(async (id): Promise<ModelFolder | BrokenModelFolder | null> => {
        const dir = join(root, id);
        if (!(await isDir(dir))) return null;
        const index = join(dir, "model_index.json");
        // Without model_index.json a folder that looks like a model is read from its parts
        // (Amuse / OnnxStack exports), or reported as broken (a half-copied model).
        if (!(await isFile(index)) && !(await isDir(join(dir, "unet"))) && !(await isDir(join(dir, "text_encoder")))) return null;
        try {
          return await loadModelFolder(dir, options);
        } catch (error) {
          if (error instanceof ModelFolderError) return { id, dir, error };
          const wrapped = new ModelFolderError(
            "model_file_invalid",
            dir,
            `Model folder unreadable: ${dir}: ${(error as Error).message}`,
            { cause: error },
          );
          return { id, dir, error: wrapped };
        }
      }),
  );
  const models: ModelFolder[] = [];
  const broken: BrokenModelFolder[] = [];
  for (const f of found) {
    if (!f) continue;
    if ("error" in f) broken.push(f);
    else models.push(f);
  }
  return { models, broken };
}
