/**
 * Keeps onnxruntime-optimized copies of model files for this machine. Creating SD 1.5's UNet
 * session with every graph optimisation takes about 30 s on the CPU; loading the graph that
 * onnxruntime itself wrote after optimising it, with optimisations off, takes about 1 s.
 *
 * An entry is `<dir>/optimized/<key>/` holding model.onnx, model.onnx.data (its weights) and
 * entry.json, written last and moved into place in one rename: a folder without a valid
 * entry.json is not an entry. The cache never stops a model from loading: any failure to write
 * or read it is logged and the model is loaded from its own file.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, statfs, utimes, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import type { InferenceSession } from "onnxruntime-node";
import { z } from "zod";
import { defaultSessionFactory, firstLine, silentLog, withSessionConfig, type ModelLog, type SessionFactory } from "./execution-provider";

/** Bump when the entry layout or the key's contents change: old entries are then never hit. */
export const OPTIMIZED_CACHE_FORMAT = 1;

const MODEL_FILE = "model.onnx";
const DATA_FILE = "model.onnx.data";
const ENTRY_FILE = "entry.json";
const TMP_PREFIX = ".tmp-";
/** A temp folder this old is a write that died (a write takes minutes at most). */
const STALE_TMP_MS = 60 * 60 * 1000;
/**
 * Copies kept of one unchanged source file, made with other rewrites or options (the UNet in
 * float32 and as int8, say): switching between two never optimizes again.
 */
export const COPIES_PER_SOURCE = 2;
/** Room for the copy: about the source's bytes, plus a margin. */
const SPACE_MARGIN = 1.1;

const OptimizedEntry = z.object({
  format: z.literal(OPTIMIZED_CACHE_FORMAT),
  /** The source model file's real path. */
  source: z.string().min(1),
  ortVersion: z.string().min(1),
  createdAt: z.string().min(1),
  /** model.onnx + model.onnx.data. */
  bytes: z.number().int().nonnegative(),
  /** The source's files by name, size and time when the copy was made (absent from entries of older daemons). */
  sourceStamp: z.string().min(1).optional(),
});
export type OptimizedEntry = z.infer<typeof OptimizedEntry>;

export interface OptimizedModelCacheOptions {
  /** The cache folder (cacheDir()); entries go in its optimized/ folder. */
  dir: string;
  log?: ModelLog;
  /** Free bytes on the disk holding `dir` (default: fs.statfs); replaceable for tests. */
  freeBytes?: (dir: string) => Promise<number>;
}

/** UNDERPAINT_OPTIMIZED_CACHE=off (or 0, false, no) turns the daemon's cache off. */
export function optimizedCacheSwitchedOff(env: Record<string, string | undefined> = process.env): boolean {
  return ["off", "0", "false", "no"].includes(env.UNDERPAINT_OPTIMIZED_CACHE?.trim().toLowerCase() ?? "");
}

interface SourceFiles {
  /** The model file's real path. */
  file: string;
  /** Name, size and mtime of every regular file beside it (external weights included). */
  files: Array<{ name: string; size: number; mtimeMs: number }>;
  bytes: number;
}

export class OptimizedModelCache {
  /** `<dir>/optimized`: the entries and the temp folders of writes in progress. */
  readonly root: string;
  private readonly log: ModelLog;
  private readonly freeBytes: (dir: string) => Promise<number>;
  private machineKey: Record<string, string | null> | undefined;

  constructor(options: OptimizedModelCacheOptions) {
    this.root = path.join(options.dir, "optimized");
    this.log = options.log ?? silentLog;
    this.freeBytes = options.freeBytes ?? diskFreeBytes;
  }

  /**
   * A factory that loads from, and fills, the cache for CPU sessions; others pass through
   * unchanged. `rewrite` names what `factory` does to a graph before onnxruntime sees it
   * (e.g. attention fusion and its version): copies made by different rewrites never mix.
   */
  wrap(factory: SessionFactory = defaultSessionFactory, rewrite = ""): SessionFactory {
    return (file, options) => (cacheable(options) ? this.load(file, options, factory, rewrite) : factory(file, options));
  }

  /** The entry folder for `file` under `options`, whether or not it exists yet. */
  async entryDir(file: string, options: InferenceSession.SessionOptions, rewrite = ""): Promise<string> {
    return path.join(this.root, this.key(await describeSource(file), options, rewrite));
  }

  private async load(file: string, options: InferenceSession.SessionOptions, factory: SessionFactory, rewrite: string): Promise<InferenceSession> {
    let source: SourceFiles;
    try {
      source = await describeSource(file);
    } catch {
      // A missing or unreadable model file: onnxruntime says so in its own words.
      return factory(file, options);
    }
    const entryDir = path.join(this.root, this.key(source, options, rewrite));
    return (await this.fromEntry(file, entryDir, options, factory)) ?? this.optimizeAndKeep(file, source, entryDir, options, factory);
  }

  /** The session from a complete entry, or null (no entry, or a broken one, which is deleted). */
  private async fromEntry(
    file: string,
    entryDir: string,
    options: InferenceSession.SessionOptions,
    factory: SessionFactory,
  ): Promise<InferenceSession | null> {
    const entry = await readEntry(entryDir);
    if (!entry) return null;
    const model = path.join(entryDir, MODEL_FILE);
    const start = performance.now();
    try {
      const bytes = await entryBytes(entryDir);
      if (bytes !== entry.bytes) throw new Error(`its files hold ${bytes} bytes, not the ${entry.bytes} written`);
      // The graph is optimised already: optimising it again would only cost the time saved.
      const session = await factory(model, { ...options, graphOptimizationLevel: "disabled" });
      this.log("info", `loaded ${file} from its optimized copy in ${ms(start)}.`);
      // When it was last used: pruning keeps the copies of a file used last.
      const now = new Date();
      await utimes(path.join(entryDir, ENTRY_FILE), now, now).catch(() => {});
      return session;
    } catch (error) {
      this.log("warn", `The optimized copy of ${file} in ${entryDir} is unusable (${firstLine(error)}); deleting it and optimizing the model again.`);
      await rm(entryDir, { recursive: true, force: true }).catch(() => {});
      return null;
    }
  }

  /** A miss: creates the session from the source, letting onnxruntime write the optimized graph beside. */
  private async optimizeAndKeep(
    file: string,
    source: SourceFiles,
    entryDir: string,
    options: InferenceSession.SessionOptions,
    factory: SessionFactory,
  ): Promise<InferenceSession> {
    try {
      await mkdir(this.root, { recursive: true });
    } catch (error) {
      this.log("warn", `Cannot keep optimized model copies in ${this.root} (${firstLine(error)}); loading ${file} without one.`);
      return factory(file, options);
    }
    const needed = Math.ceil(source.bytes * SPACE_MARGIN);
    const free = await this.freeBytes(this.root).catch(() => Number.POSITIVE_INFINITY);
    if (free < needed) {
      this.log("info", `Not enough free space in ${this.root} for an optimized copy of ${file} (it needs about ${mib(needed)}, ${mib(free)} free); loading it without one.`);
      return factory(file, options);
    }
    let tmp: string;
    try {
      tmp = await mkdtemp(path.join(this.root, TMP_PREFIX));
    } catch (error) {
      this.log("warn", `Cannot keep optimized model copies in ${this.root} (${firstLine(error)}); loading ${file} without one.`);
      return factory(file, options);
    }
    const start = performance.now();
    let session: InferenceSession;
    try {
      session = await factory(file, writingOptions(options, path.join(tmp, MODEL_FILE)));
    } catch (error) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      // A broken model fails here too, with the same error as without the cache.
      const plain = await factory(file, options);
      this.log("warn", `Could not write an optimized copy of ${file} to ${this.root} (${firstLine(error)}); loaded it without one.`);
      return plain;
    }
    const took = ms(start);
    try {
      const bytes = await entryBytes(tmp);
      const entry: OptimizedEntry = { format: OPTIMIZED_CACHE_FORMAT, source: source.file, ortVersion: ortVersion(), createdAt: new Date().toISOString(), bytes, sourceStamp: stampOf(source) };
      await writeFile(path.join(tmp, ENTRY_FILE), `${JSON.stringify(entry, null, 2)}\n`);
      if (await publish(tmp, entryDir)) {
        this.log("info", `optimized ${file} in ${took} and kept the optimized copy (${mib(bytes)}) for later loads.`);
      }
    } catch (error) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      this.log("warn", `Could not keep the optimized copy of ${file} in ${this.root} (${firstLine(error)}); its next load optimizes it again.`);
      return session;
    }
    await this.prune(entryDir, source).catch((error: unknown) => {
      this.log("warn", `Could not tidy the optimized model copies in ${this.root} (${firstLine(error)}).`);
    });
    return session;
  }

  /**
   * Removes entries of the same source file made before it changed (and those of older daemons,
   * which do not say), beyond COPIES_PER_SOURCE of the unchanged file (those used longest ago go), entries
   * whose source is gone, and temp folders (or folders without a valid entry.json) of writes that
   * died an hour ago or more.
   */
  private async prune(keep: string, source: SourceFiles): Promise<void> {
    const stamp = stampOf(source);
    const siblings: Array<{ dir: string; usedMs: number }> = [];
    const stale: string[] = [];
    for (const item of await readdir(this.root, { withFileTypes: true })) {
      if (!item.isDirectory()) continue;
      const dir = path.join(this.root, item.name);
      if (dir === keep) continue;
      const entry = item.name.startsWith(TMP_PREFIX) ? null : await readEntry(dir);
      if (!entry) {
        if (Date.now() - ((await stat(dir).catch(() => null))?.mtimeMs ?? Date.now()) >= STALE_TMP_MS) stale.push(dir);
      } else if (entry.source === source.file) {
        if (entry.sourceStamp === stamp) siblings.push({ dir, usedMs: (await stat(path.join(dir, ENTRY_FILE)).catch(() => null))?.mtimeMs ?? 0 });
        else stale.push(dir);
      } else if (!(await exists(entry.source))) {
        stale.push(dir);
      }
    }
    siblings.sort((a, b) => b.usedMs - a.usedMs);
    stale.push(...siblings.slice(COPIES_PER_SOURCE - 1).map((s) => s.dir));
    let removed = 0;
    // One folder in use elsewhere (Windows keeps open files) must not stop the others going.
    for (const dir of stale) if (await rm(dir, { recursive: true, force: true }).then(() => true, () => false)) removed++;
    if (removed > 0) this.log("info", `removed ${removed} outdated optimized model ${removed === 1 ? "copy" : "copies"} from ${this.root}.`);
  }

  /**
   * What the optimized graph depends on. onnxruntime's layout optimisations (NCHWc, the kernels
   * chosen) are specific to the CPU it ran on, so the CPU model and its feature flags count.
   */
  private key(source: SourceFiles, options: InferenceSession.SessionOptions, rewrite: string): string {
    this.machineKey ??= {
      ortVersion: ortVersion(),
      platform: process.platform,
      arch: process.arch,
      cpu: os.cpus()[0]?.model ?? null,
      cpuFlags: cpuFlags(),
    };
    const json = JSON.stringify({
      format: OPTIMIZED_CACHE_FORMAT,
      ...this.machineKey,
      graphOptimizationLevel: options.graphOptimizationLevel ?? "all",
      // Session config entries can change what onnxruntime writes (int8 weights turned to uint8, say).
      ...sessionConfigOf(options),
      rewrite,
      source: source.file,
      files: source.files,
    });
    return createHash("sha256").update(json).digest("hex");
  }
}

/** The caller's session config entries, sorted, when it gave any (none: keys as before there were any). */
function sessionConfigOf(options: InferenceSession.SessionOptions): { sessionConfig?: Array<[string, string]> } {
  const entries = options.extra?.session;
  if (typeof entries !== "object" || entries === null) return {};
  const pairs = Object.entries(entries as Record<string, unknown>).map(([k, v]): [string, string] => [k, String(v)]);
  return pairs.length > 0 ? { sessionConfig: pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) } : {};
}

/** The source's files by name, size and time, as one short string. */
function stampOf(source: SourceFiles): string {
  return createHash("sha256").update(JSON.stringify(source.files)).digest("hex").slice(0, 24);
}

/**
 * Only CPU sessions: GPU providers assign nodes to themselves while optimising, and the graph
 * they would write is neither portable nor loadable without them. A caller that writes its own
 * optimized file, or turned optimisation off, gains nothing from the cache.
 */
function cacheable(options: InferenceSession.SessionOptions): boolean {
  const providers = options.executionProviders ?? [];
  if (providers.length !== 1) return false;
  const only = providers[0];
  const name = typeof only === "string" ? only : only?.name;
  return name === "cpu" && options.graphOptimizationLevel !== "disabled" && options.optimizedModelFilePath === undefined;
}

function writingOptions(options: InferenceSession.SessionOptions, target: string): InferenceSession.SessionOptions {
  return withSessionConfig(
    {
      ...options,
      optimizedModelFilePath: target,
      // onnxruntime warns that the written graph is hardware-specific: the key already says which hardware.
      logSeverityLevel: options.logSeverityLevel ?? 3,
    },
    {
      // The weights go beside the graph: one protobuf cannot hold more than 2 GB.
      optimized_model_external_initializers_file_name: DATA_FILE,
      optimized_model_external_initializers_min_size_in_bytes: "1024",
    },
  );
}

async function describeSource(file: string): Promise<SourceFiles> {
  const real = await realpath(file);
  const folder = path.dirname(real);
  const files: SourceFiles["files"] = [];
  for (const name of (await readdir(folder)).sort()) {
    const info = await stat(path.join(folder, name)).catch(() => null);
    if (info?.isFile()) files.push({ name, size: info.size, mtimeMs: info.mtimeMs });
  }
  return { file: real, files, bytes: files.reduce((sum, f) => sum + f.size, 0) };
}

async function readEntry(dir: string): Promise<OptimizedEntry | null> {
  try {
    const parsed = OptimizedEntry.safeParse(JSON.parse(await readFile(path.join(dir, ENTRY_FILE), "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Bytes of an entry's model.onnx (required) and model.onnx.data (absent when no weight is large). */
async function entryBytes(dir: string): Promise<number> {
  const model = await stat(path.join(dir, MODEL_FILE));
  const data = await stat(path.join(dir, DATA_FILE)).catch(() => null);
  return model.size + (data?.size ?? 0);
}

/** Moves a finished entry into place; false when another process got there first with a valid one. */
async function publish(tmp: string, entryDir: string): Promise<boolean> {
  try {
    await rename(tmp, entryDir);
    return true;
  } catch (error) {
    if (!(await exists(entryDir))) throw error;
    if (await readEntry(entryDir)) {
      await rm(tmp, { recursive: true, force: true });
      return false;
    }
    // A broken leftover under our key: replace it.
    await rm(entryDir, { recursive: true, force: true });
    await rename(tmp, entryDir);
    return true;
  }
}

async function diskFreeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

let ortVersionCache: string | undefined;
function ortVersion(): string {
  ortVersionCache ??= z.object({ version: z.string() }).parse(createRequire(import.meta.url)("onnxruntime-node/package.json")).version;
  return ortVersionCache;
}

/** The CPU's feature flags (x86 "flags", Arm "Features") on Linux; null elsewhere. */
function cpuFlags(): string | null {
  if (process.platform !== "linux") return null;
  try {
    return /^(?:flags|Features)\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? null;
  } catch {
    return null;
  }
}

function ms(start: number): string {
  const t = performance.now() - start;
  return t < 10_000 ? `${t.toFixed(0)} ms` : `${(t / 1000).toFixed(1)} s`;
}

function mib(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MiB` : "unknown";
}
