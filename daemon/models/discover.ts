/**
 * Lists the model folders in a models directory: each subfolder holding model_index.json.
 * Every folder is loaded on its own, so a broken one is reported next to the good ones
 * instead of hiding them. A subfolder that looks like a model (it has unet/ or
 * text_encoder/) but lacks model_index.json is reported as broken too, so a half-copied
 * model does not just vanish from the list.
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
        if (!(await isFile(index))) {
          const looksLikeModel = (await isDir(join(dir, "unet"))) || (await isDir(join(dir, "text_encoder")));
          if (!looksLikeModel) return null;
          const error = new ModelFolderError(
            "model_file_missing",
            index,
            `Model file missing: ${index} (model_index.json; every model folder needs it).`,
          );
          return { id, dir, error };
        }
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
