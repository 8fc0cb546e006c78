/**
 * What an installed model folder was made from, written inside it at install time
 * (.underpaint-model.json): where it came from and the size and sha256 of every file, so that
 * `models verify` can re-check the folder byte for byte without the network.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";

export const MANIFEST_FILE = ".underpaint-model.json";

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);

export const ManifestFile = z.object({
  /** "/"-separated, relative to the model folder. */
  path: z.string().min(1),
  size: z.number().int().nonnegative(),
  sha256: Sha256,
});
export type ManifestFile = z.infer<typeof ManifestFile>;

export const ModelManifest = z.object({
  version: z.literal(1),
  id: z.string(),
  source: z.discriminatedUnion("kind", [
    z.object({
      kind: z.literal("hub"),
      endpoint: z.string(),
      repo: z.string(),
      revision: z.string(),
      commit: z.string(),
      /** The registry entry it was pulled as, if any. */
      registryId: z.string().optional(),
    }),
    z.object({ kind: z.literal("local"), path: z.string() }),
  ]),
  installedAt: z.string(),
  files: z.array(ManifestFile),
});
export type ModelManifest = z.infer<typeof ModelManifest>;

export async function writeManifest(dir: string, manifest: ModelManifest): Promise<void> {
  await writeFile(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
}

/** The manifest of a model folder; null when it has none (a folder added by hand or by link). */
export async function readManifest(dir: string): Promise<ModelManifest | null> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = ModelManifest.safeParse(raw);
  return parsed.success ? parsed.data : null;
}
