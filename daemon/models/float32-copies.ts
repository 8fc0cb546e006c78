/**
 * float32 copies of float16 model files, for the CPU: made once into the cache folder
 * (`<cache>/float32/<key>/model.onnx` + `weights.bin`), then loaded instead of the fp16 file, so
 * attention fusion and onnxruntime's float32 kernels apply and the optimized-model cache keeps an
 * optimized float32 copy. The key covers the source file's path, size and time and those of its
 * folder's other files (its external weights); a changed model gets a new copy and old ones go.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { firstLine, silentLog, type ModelLog, type SessionFactory } from "./execution-provider";
import { convertModelFloats, externalizeInitializers, FLOAT, FLOAT16, hasFloat16Weights, initializerReader } from "./float-precision";

const { onnx } = onnxProto;
const MODEL_FILE = "model.onnx";
const WEIGHTS_FILE = "weights.bin";
const DONE_FILE = "entry.json";

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

export class Float32Copies {
  constructor(
    readonly root: string,
    private readonly log: ModelLog = silentLog,
  ) {}

  /** The float32 copy of `file` (made now if needed), or null when `file` holds no float16 weights. */
  async copyOf(file: string): Promise<string | null> {
    const key = await sourceKey(file);
    const entryDir = path.join(this.root, key);
    const copy = path.join(entryDir, MODEL_FILE);
    if (await stat(path.join(entryDir, DONE_FILE)).then(() => true, () => false)) return copy;
    const model = onnx.ModelProto.decode(await readFile(file));
    if (!hasFloat16Weights(model)) return null;
    const start = performance.now();
    await mkdir(this.root, { recursive: true });
    const tmp = await mkdtemp(path.join(this.root, ".tmp-"));
    const reader = initializerReader(path.dirname(file));
    try {
      convertModelFloats(model, FLOAT16, FLOAT, reader);
      const weights = await open(path.join(tmp, WEIGHTS_FILE), "w");
      try {
        await externalizeInitializers(model, WEIGHTS_FILE, async (chunk) => {
          await weights.write(chunk);
        });
      } finally {
        await weights.close();
      }
      await writeFile(path.join(tmp, MODEL_FILE), onnx.ModelProto.encode(model).finish());
      await writeFile(path.join(tmp, DONE_FILE), `${JSON.stringify({ source: path.resolve(file), createdAt: new Date().toISOString() })}\n`);
      await rm(entryDir, { recursive: true, force: true });
      await rename(tmp, entryDir);
    } catch (error) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw error;
    } finally {
      reader.close();
    }
    await this.prune(key, path.resolve(file));
    this.log("info", `${file} holds float16 weights: wrote a float32 copy for the CPU in ${((performance.now() - start) / 1000).toFixed(1)} s (${entryDir}).`);
    return copy;
  }

  /** Removes older copies of the same source, and copies whose source is gone. */
  private async prune(keep: string, source: string): Promise<void> {
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (name === keep || name.startsWith(".tmp-")) continue;
      const entry = await readFile(path.join(this.root, name, DONE_FILE), "utf8").then((t) => JSON.parse(t) as { source?: unknown }, () => null);
      const from = typeof entry?.source === "string" ? entry.source : null;
      if (from === source || (from !== null && !(await stat(from).then(() => true, () => false)))) {
        await rm(path.join(this.root, name), { recursive: true, force: true }).catch(() => {});
      }
    }
  }
}

/**
 * Wraps `inner`: CPU sessions of a float16 file load its float32 copy. Sessions asked for with
 * optimisation off are an optimized copy already (float32 by then) and go straight through; a copy
 * that cannot be made loads the file as it is, with a warning.
 */
export function withFloat32Copies(inner: SessionFactory, copies: Float32Copies, log: ModelLog = silentLog): SessionFactory {
  return async (file, options) => {
    const first = options.executionProviders?.[0];
    const cpu = first === undefined || (typeof first === "string" ? first : first.name) === "cpu";
    if (!cpu || options.graphOptimizationLevel === "disabled") return inner(file, options);
    let copy: string | null = null;
    try {
      copy = await copies.copyOf(file);
    } catch (error) {
      log("warn", `Could not write a float32 copy of ${file} (${firstLine(error)}); running its float16 graph on the CPU, which is slower.`);
    }
    return inner(copy ?? file, options);
  };
}
