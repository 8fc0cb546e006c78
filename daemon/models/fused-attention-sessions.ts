/**
 * Session creation with the model's attention fused (./attention-fusion): the graph is read,
 * rewritten in memory and handed to onnxruntime as bytes, its external weights still read
 * from the model's own folder. The model folder is never written to.
 *
 * Any trouble (a graph too big to rewrite in memory, nothing recognised, a provider that
 * refuses the fused graph) loads the file as it is: fusion makes a model lighter, never
 * unusable.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { InferenceSession } from "onnxruntime-node";
import { fuseAttention } from "./attention-fusion";
import { firstLine, silentLog, withSessionConfig, type ModelLog, type SessionFactory } from "./execution-provider";

/**
 * Graph files above this are loaded as they are: they hold their weights inline, and
 * rewriting them would hold the weights in memory three times over. SD exports keep the
 * UNet's weights in an external file (its graph is about 1 MB); VAEs are about 100-200 MB.
 */
export const MAX_FUSED_GRAPH_BYTES = 512 * 2 ** 20;

/** Providers whose kernels include com.microsoft MultiHeadAttention for float32. */
const FUSING_PROVIDERS = new Set(["cpu", "cuda"]);

export type BytesSessionFactory = (model: Uint8Array, options: InferenceSession.SessionOptions) => Promise<InferenceSession>;

export interface FusedAttentionOptions {
  log?: ModelLog;
  maxGraphBytes?: number;
  /** How a session is made from the rewritten bytes (default InferenceSession.create). */
  fromBytes?: BytesSessionFactory;
}

function providerName(p: InferenceSession.ExecutionProviderConfig): string {
  return typeof p === "string" ? p : p.name;
}

/**
 * Wraps `inner` (which loads files): models whose attention can be fused are created from
 * the rewritten graph instead. Sessions asked for with optimisation disabled are taken as
 * already prepared (an onnxruntime-optimized copy) and go straight to `inner`.
 */
export function withFusedAttention(inner: SessionFactory, options: FusedAttentionOptions = {}): SessionFactory {
  const log = options.log ?? silentLog;
  const maxBytes = options.maxGraphBytes ?? MAX_FUSED_GRAPH_BYTES;
  const fromBytes: BytesSessionFactory = options.fromBytes ?? ((bytes, o) => InferenceSession.create(bytes, o));
  return async (file, sessionOptions) => {
    const first = sessionOptions.executionProviders?.[0];
    if (sessionOptions.graphOptimizationLevel === "disabled" || (first !== undefined && !FUSING_PROVIDERS.has(providerName(first)))) {
      return inner(file, sessionOptions);
    }
    const bytes = await fusedGraph(file, maxBytes, log);
    if (!bytes) return inner(file, sessionOptions);
    // The rewritten graph has no file of its own: its external weights are read from the model's folder.
    const withFolder = withSessionConfig(sessionOptions, { model_external_initializers_file_folder_path: path.dirname(file) });
    try {
      return await fromBytes(bytes, withFolder);
    } catch (error) {
      log("warn", `${describe(file)}: onnxruntime refused the fused attention (${firstLine(error)}); loading the model as exported.`);
      return inner(file, sessionOptions);
    }
  };
}

/** The rewritten graph, or null when there is nothing to fuse or it cannot be read. */
async function fusedGraph(file: string, maxBytes: number, log: ModelLog): Promise<Uint8Array | null> {
  const size = await stat(file).then((s) => s.size, () => null);
  if (size === null || size > maxBytes) return null;
  let model: onnxProto.onnx.ModelProto;
  try {
    model = onnxProto.onnx.ModelProto.decode(await readFile(file));
  } catch {
    // Not protobuf: onnxruntime's own error names the fault when the file is loaded as it is.
    return null;
  }
  const start = performance.now();
  const report = fuseAttention(model);
  if (report.fused === 0) return null;
  const bytes = onnxProto.onnx.ModelProto.encode(model).finish();
  log("info", `${describe(file)}: ${report.fused} attention blocks fused into MultiHeadAttention (${(performance.now() - start).toFixed(0)} ms).`);
  return bytes;
}

const describe = (file: string) => `${path.basename(path.dirname(file))}/${path.basename(file)}`;
