/**
 * float32 copies of float16 model files, for the CPU: made once into the cache folder
 * (`<cache>/float32/<key>/`, see ./derived-copies), then loaded instead of the fp16 file, so
 * attention fusion and onnxruntime's float32 kernels apply and the optimized-model cache keeps an
 * optimized float32 copy. A changed model gets a new copy and old ones go.
 */
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { DERIVED_MODEL_FILE, DERIVED_WEIGHTS_FILE, DerivedCopies, DerivedEntry, loadingCopies } from "./derived-copies";
import { silentLog, type ModelLog, type SessionFactory } from "./execution-provider";
import { convertModelFloats, externalizeInitializers, FLOAT, FLOAT16, hasFloat16Weights, initializerReader } from "./float-precision";

const { onnx } = onnxProto;

export class Float32Copies {
  private readonly copies: DerivedCopies<DerivedEntry>;

  constructor(
    readonly root: string,
    private readonly log: ModelLog = silentLog,
  ) {
    this.copies = new DerivedCopies(root, DerivedEntry);
  }

  /** The float32 copy of `file` (made now if needed), or null when `file` holds no float16 weights. */
  async copyOf(file: string): Promise<string | null> {
    const key = await this.copies.key(file);
    const existing = await this.copies.existing(key);
    if (existing) return existing;
    const model = onnx.ModelProto.decode(await readFile(file));
    if (!hasFloat16Weights(model)) return null;
    const start = performance.now();
    const reader = initializerReader(path.dirname(file));
    try {
      const copy = await this.copies.make(key, file, async (dir) => {
        convertModelFloats(model, FLOAT16, FLOAT, reader);
        const weights = await open(path.join(dir, DERIVED_WEIGHTS_FILE), "w");
        try {
          await externalizeInitializers(model, DERIVED_WEIGHTS_FILE, async (chunk) => {
            await weights.write(chunk);
          });
        } finally {
          await weights.close();
        }
        await writeFile(path.join(dir, DERIVED_MODEL_FILE), onnx.ModelProto.encode(model).finish());
        return {};
      });
      this.log("info", `${file} holds float16 weights: wrote a float32 copy for the CPU in ${((performance.now() - start) / 1000).toFixed(1)} s (${path.dirname(copy)}).`);
      return copy;
    } finally {
      reader.close();
    }
  }
}

/** Wraps `inner`: CPU sessions of a float16 file load its float32 copy; a copy that cannot be made loads the file as it is, with a warning. */
export function withFloat32Copies(inner: SessionFactory, copies: Float32Copies, log: ModelLog = silentLog): SessionFactory {
  return loadingCopies(inner, (file) => copies.copyOf(file), (file, reason) => `Could not write a float32 copy of ${file} (${reason}); running its float16 graph on the CPU, which is slower.`, log);
}
