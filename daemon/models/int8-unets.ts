/**
 * int8 copies of UNets for the CPU (./int8-quantize), made once into the cache folder
 * (`<cache>/int8/<key>/model.onnx` + `weights.bin` + `entry.json`, the last written last and the
 * folder moved into place in one rename), then loaded instead of the float32 file when the user
 * asks for int8 (`--unet-int8`). The key covers the rewrite's version and the source file's path,
 * size and time and those of its folder's other files (its external weights): a changed model gets
 * a new copy and the old one goes. A float16 UNet is quantized from its float32 copy.
 */
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { z } from "zod";
import { firstLine, silentLog, type ModelLog, type SessionFactory } from "./execution-provider";
import { initializerReader } from "./float-precision";
import { sourceKey } from "./float32-copies";
import { INT8_QUANTIZE_VERSION, quantizeDynamic, type QuantizeOptions, type QuantizeReport } from "./int8-quantize";

const { onnx } = onnxProto;
const MODEL_FILE = "model.onnx";
const WEIGHTS_FILE = "weights.bin";
const DONE_FILE = "entry.json";
const TMP_PREFIX = ".tmp-";

const Int8Entry = z.object({
  version: z.literal(INT8_QUANTIZE_VERSION),
  source: z.string().min(1),
  createdAt: z.string().min(1),
  matmuls: z.number().int().nonnegative(),
  convs: z.number().int().nonnegative(),
});

/** What the int8 UNet does to the graph, as named in the optimized-model cache's key. */
export function int8RewriteName(options: QuantizeOptions = {}): string {
  return `int8-${INT8_QUANTIZE_VERSION}${options.convs ? "-convs" : ""}`;
}

export class Int8Unets {
  constructor(
    readonly root: string,
    private readonly log: ModelLog = silentLog,
    readonly options: QuantizeOptions = {},
  ) {}

  /** The int8 copy of `file`, made now if it is missing or stale. */
  async copyOf(file: string): Promise<string> {
    const key = await sourceKey(file, int8RewriteName(this.options));
    const entryDir = path.join(this.root, key);
    const copy = path.join(entryDir, MODEL_FILE);
    if (await readEntry(entryDir)) return copy;
    const start = performance.now();
    await mkdir(this.root, { recursive: true });
    const tmp = await mkdtemp(path.join(this.root, TMP_PREFIX));
    const reader = initializerReader(path.dirname(file));
    let report: QuantizeReport;
    try {
      const model = onnx.ModelProto.decode(await readFile(file));
      const weights = await open(path.join(tmp, WEIGHTS_FILE), "w");
      try {
        let offset = 0;
        report = await quantizeDynamic(
          model,
          reader,
          async (bytes) => {
            // onnxruntime memory-maps the file: each tensor 64-byte aligned, as onnx's own writer does.
            const pad = (64 - (offset % 64)) % 64;
            if (pad) await weights.write(new Uint8Array(pad));
            offset += pad;
            const at = offset;
            await weights.write(bytes);
            offset += bytes.byteLength;
            return at;
          },
          WEIGHTS_FILE,
          this.options,
        );
      } finally {
        await weights.close();
      }
      if (report.matmuls + report.convs === 0) throw new Error("it has no float32 weight MatMul or Conv to quantize");
      await writeFile(path.join(tmp, MODEL_FILE), onnx.ModelProto.encode(model).finish());
      const entry: z.infer<typeof Int8Entry> = { version: INT8_QUANTIZE_VERSION, source: path.resolve(file), createdAt: new Date().toISOString(), matmuls: report.matmuls, convs: report.convs };
      await writeFile(path.join(tmp, DONE_FILE), `${JSON.stringify(entry)}\n`);
      await rm(entryDir, { recursive: true, force: true });
      await rename(tmp, entryDir);
    } catch (error) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw error;
    } finally {
      reader.close();
    }
    await this.prune(key, path.resolve(file));
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    this.log(
      "info",
      `wrote an int8 copy of ${file} in ${((performance.now() - start) / 1000).toFixed(1)} s: ${report.matmuls} MatMuls and ${report.convs} Convs quantized, ${mib(report.floatBytes)} of float32 weights -> ${mib(report.int8Bytes)} (${entryDir}).`,
    );
    return copy;
  }

  /** Removes older copies of the same source, copies whose source is gone, and dead temp folders. */
  private async prune(keep: string, source: string): Promise<void> {
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (name === keep || name.startsWith(TMP_PREFIX)) continue;
      const entry = await readEntry(path.join(this.root, name));
      const from = entry?.source ?? null;
      if (from === source || (from !== null && !(await stat(from).then(() => true, () => false)))) {
        await rm(path.join(this.root, name), { recursive: true, force: true }).catch(() => {});
      }
    }
  }
}

async function readEntry(dir: string): Promise<z.infer<typeof Int8Entry> | null> {
  try {
    const parsed = Int8Entry.safeParse(JSON.parse(await readFile(path.join(dir, DONE_FILE), "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/**
 * Wraps `inner`: CPU sessions load the int8 copy of the file. Sessions asked for with optimisation
 * off are an optimized copy already (int8 by then) and go straight through; a copy that cannot be
 * made loads the float32 file, with a warning.
 */
export function withInt8Unet(inner: SessionFactory, unets: Int8Unets, log: ModelLog = silentLog): SessionFactory {
  return async (file, options) => {
    const first = options.executionProviders?.[0];
    const cpu = first === undefined || (typeof first === "string" ? first : first.name) === "cpu";
    if (!cpu || options.graphOptimizationLevel === "disabled") return inner(file, options);
    let copy: string | null = null;
    try {
      copy = await unets.copyOf(file);
    } catch (error) {
      log("warn", `Could not write an int8 copy of ${file} (${firstLine(error)}); running its float32 UNet.`);
    }
    return inner(copy ?? file, options);
  };
}
