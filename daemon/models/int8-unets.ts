/**
 * int8 copies of UNets for the CPU (./int8-quantize), made once into the cache folder
 * (`<cache>/int8/<key>/model.onnx` + `weights.bin` + `entry.json`, the last written last and the
 * folder moved into place in one rename), then loaded instead of the float32 file when the user
 * asks for int8 (`--unet-int8`). The key covers the rewrite's version and the source file's path,
 * size and time and those of its folder's other files (its external weights): a changed model gets
 * a new copy and the old one goes. A float16 UNet is quantized from its float32 copy.
 */
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { z } from "zod";
import { DERIVED_MODEL_FILE, DERIVED_WEIGHTS_FILE, DerivedCopies, DerivedEntry, loadingCopies } from "./derived-copies";
import { silentLog, type ModelLog, type SessionFactory } from "./execution-provider";
import { initializerReader } from "./float-precision";
import { INT8_QUANTIZE_VERSION, quantizeDynamic, type QuantizeOptions } from "./int8-quantize";

const { onnx } = onnxProto;

const Int8Entry = DerivedEntry.extend({
  version: z.literal(INT8_QUANTIZE_VERSION),
  matmuls: z.number().int().nonnegative(),
  convs: z.number().int().nonnegative(),
});

/** What the int8 UNet does to the graph, as named in the optimized-model cache's key. */
export function int8RewriteName(options: QuantizeOptions = {}): string {
  return `int8-${INT8_QUANTIZE_VERSION}${options.convs ? "-convs" : ""}`;
}

export class Int8Unets {
  private readonly copies: DerivedCopies<z.infer<typeof Int8Entry>>;

  constructor(
    readonly root: string,
    private readonly log: ModelLog = silentLog,
    readonly options: QuantizeOptions = {},
  ) {
    this.copies = new DerivedCopies(root, Int8Entry, int8RewriteName(options));
  }

  /** The int8 copy of `file`, made now if it is missing or stale. */
  async copyOf(file: string): Promise<string> {
    const key = await this.copies.key(file);
    const existing = await this.copies.existing(key);
    if (existing) return existing;
    const start = performance.now();
    const reader = initializerReader(path.dirname(file));
    try {
      let floatBytes = 0;
      let int8Bytes = 0;
      let matmuls = 0;
      let convs = 0;
      const copy = await this.copies.make(key, file, async (dir) => {
        const model = onnx.ModelProto.decode(await readFile(file));
        const weights = await open(path.join(dir, DERIVED_WEIGHTS_FILE), "w");
        try {
          let offset = 0;
          const report = await quantizeDynamic(
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
            DERIVED_WEIGHTS_FILE,
            this.options,
          );
          ({ floatBytes, int8Bytes, matmuls, convs } = report);
        } finally {
          await weights.close();
        }
        if (matmuls + convs === 0) throw new Error("it has no float32 weight MatMul or Conv to quantize");
        await writeFile(path.join(dir, DERIVED_MODEL_FILE), onnx.ModelProto.encode(model).finish());
        return { version: INT8_QUANTIZE_VERSION, matmuls, convs };
      });
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
      this.log(
        "info",
        `wrote an int8 copy of ${file} in ${((performance.now() - start) / 1000).toFixed(1)} s: ${matmuls} MatMuls and ${convs} Convs quantized, ${mib(floatBytes)} of float32 weights -> ${mib(int8Bytes)} (${path.dirname(copy)}).`,
      );
      return copy;
    } finally {
      reader.close();
    }
  }
}

/**
 * Session config for int8 UNets. onnxruntime's fast uint8 x int8 kernels add pairs of products in
 * 16 bits on x86 CPUs without VNNI (SSE4.1, AVX2, AVX-512 before VNNI): with weights over 7 bits
 * the sums saturate, and the tiny-sd reference cases drift 0.11 from float32 instead of 0.006 on
 * such a CPU (an AMD EPYC with AVX2 here). With this entry onnxruntime turns those weights to
 * uint8 while optimizing, for its exact uint8 x uint8 kernels, on those CPUs only; it leaves CPUs
 * with VNNI (and ARM) as they are.
 */
export const INT8_SESSION_CONFIG: Readonly<Record<string, string>> = { x64quantprecision: "1" }; // session.x64quantprecision

/**
 * Wraps `inner`: CPU sessions load the int8 copy of the file. Sessions asked for with optimisation
 * off are an optimized copy already (int8 by then) and go straight through; a copy that cannot be
 * made loads the float32 file, with a warning.
 */
export function withInt8Unet(inner: SessionFactory, unets: Int8Unets, log: ModelLog = silentLog): SessionFactory {
  return loadingCopies(inner, (file) => unets.copyOf(file), (file, reason) => `Could not write an int8 copy of ${file} (${reason}); running its float32 UNet.`, log);
}
