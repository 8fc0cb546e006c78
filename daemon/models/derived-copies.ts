/**
 * A cache folder of model files derived from others for the CPU: float32 copies of float16 files
 * (./float32-copies) and int8 UNets (./int8-unets). Each copy is `<root>/<key>/model.onnx` +
 * `weights.bin` + `entry.json`, the entry written last and the folder moved into place in one
 * rename, so a copy half written (a crash, a full disk) is never loaded. The key covers what the
 * copy is made by and the source file's path, size and time and those of its folder's other files
 * (its external weights): a changed model gets a new copy, and the old one goes when it is made.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { firstLine, type ModelLog, type SessionFactory } from "./execution-provider";

export const DERIVED_MODEL_FILE = "model.onnx";
export const DERIVED_WEIGHTS_FILE = "weights.bin";
const ENTRY_FILE = "entry.json";
const TMP_PREFIX = ".tmp-";

/** What every entry.json says: the file the copy was made from, and when. */
export const DerivedEntry = z.object({ source: z.string().min(1), createdAt: z.string().min(1) });
export type DerivedEntry = z.infer<typeof DerivedEntry>;

/** A cache key for a model file: its path, and each file of its folder by name, size and time (`salt` names what was derived). */
export async function sourceKey(file: string, salt?: string): Promise<string> {
  const dir = path.dirname(file);
  const hash = createHash("sha256").update(salt ? `${salt}\n${path.resolve(file)}` : path.resolve(file));
  for (const name of (await readdir(dir)).sort()) {
    const s = await stat(path.join(dir, name));
    if (s.isFile()) hash.update(`\n${name}:${s.size}:${s.mtimeMs}`);
  }
  return hash.digest("hex").slice(0, 24);
}

export class DerivedCopies<Entry extends DerivedEntry> {
  constructor(
    readonly root: string,
    /** What a finished entry.json must hold; anything else is no copy (an older format, a damaged file). */
    private readonly schema: z.ZodType<Entry>,
    /** Names what the copies are made by (in the key): copies made otherwise are other entries. */
    private readonly salt?: string,
  ) {}

  /** The cache key of `file`'s copy. */
  key(file: string): Promise<string> {
    return sourceKey(file, this.salt);
  }

  /** The finished copy's model file for this key, or null. */
  async existing(key: string): Promise<string | null> {
    return (await this.readEntry(path.join(this.root, key))) ? path.join(this.root, key, DERIVED_MODEL_FILE) : null;
  }

  /**
   * Makes the copy of `source` under `key`: `write` fills a fresh folder with model.onnx and
   * weights.bin and returns the entry's own fields. Older copies of the same source, and copies
   * whose source is gone, are removed afterwards. Returns the copy's model file.
   */
  async make(key: string, source: string, write: (dir: string) => Promise<Omit<Entry, keyof DerivedEntry>>): Promise<string> {
    const entryDir = path.join(this.root, key);
    await mkdir(this.root, { recursive: true });
    const tmp = await mkdtemp(path.join(this.root, TMP_PREFIX));
    try {
      const own = await write(tmp);
      const entry = { ...own, source: path.resolve(source), createdAt: new Date().toISOString() };
      await writeFile(path.join(tmp, ENTRY_FILE), `${JSON.stringify(entry)}\n`);
      await rm(entryDir, { recursive: true, force: true });
      await rename(tmp, entryDir);
    } catch (error) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw error;
    }
    await this.prune(key, path.resolve(source));
    return path.join(entryDir, DERIVED_MODEL_FILE);
  }

  /** Removes older copies of the same source and copies whose source is gone (temp folders are left to their writers). */
  private async prune(keep: string, source: string): Promise<void> {
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (name === keep || name.startsWith(TMP_PREFIX)) continue;
      const from = (await this.readEntry(path.join(this.root, name)))?.source ?? null;
      if (from === source || (from !== null && !(await stat(from).then(() => true, () => false)))) {
        await rm(path.join(this.root, name), { recursive: true, force: true }).catch(() => {});
      }
    }
  }

  private async readEntry(dir: string): Promise<Entry | null> {
    try {
      const parsed = this.schema.safeParse(JSON.parse(await readFile(path.join(dir, ENTRY_FILE), "utf8")));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }
}

/**
 * Wraps `inner`: CPU sessions load the copy `copyOf` gives (null: the file as it is). Sessions
 * asked for with optimisation off are an optimized copy already and go straight through; a copy
 * that cannot be made loads the file as it is, with the warning `cannot` words.
 */
export function loadingCopies(inner: SessionFactory, copyOf: (file: string) => Promise<string | null>, cannot: (file: string, reason: string) => string, log: ModelLog): SessionFactory {
  return async (file, options) => {
    const first = options.executionProviders?.[0];
    const cpu = first === undefined || (typeof first === "string" ? first : first.name) === "cpu";
    if (!cpu || options.graphOptimizationLevel === "disabled") return inner(file, options);
    let copy: string | null = null;
    try {
      copy = await copyOf(file);
    } catch (error) {
      log("warn", cannot(file, firstLine(error)));
    }
    return inner(copy ?? file, options);
  };
}
