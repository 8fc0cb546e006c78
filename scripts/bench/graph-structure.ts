/**
 * What onnxruntime actually runs: a model's nodes by op type after its load-time optimisation,
 * read from the optimized graph that the daemon's optimized-model cache writes for it. Two forms:
 * "exported" (the file as it is, onnxruntime's optimisations only) and "daemon" (as the daemon
 * loads it: attention fused first where the daemon fuses it). Nodes that only compute shapes
 * (int64 arithmetic on x.shape, which the export traces once per use) are counted apart, so
 * graphs that differ only in that bookkeeping compare equal.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { defaultSessionFactory, sessionOptionsFor } from "../../daemon/models/execution-provider";
import { withFusedAttention } from "../../daemon/models/fused-attention-sessions";
import { graphRewriteOf, type ModelPart } from "../../daemon/models/model-sessions";
import { OptimizedModelCache } from "../../daemon/models/optimized-models";

export type GraphForm = "exported" | "daemon";

export interface OpCounts {
  /** Nodes that compute on tensors, by op type ("com.microsoft.nchwc.Conv" for other domains). */
  ops: Record<string, number>;
  /** Nodes of shape arithmetic (Shape and whatever computes on its results alone). */
  shapeNodes: number;
  nodes: number;
}

/** Counts a decoded graph's nodes (see OpCounts). */
export function opCounts(model: onnxProto.onnx.IModelProto): OpCounts {
  const nodes = model.graph?.node ?? [];
  const initializers = new Set((model.graph?.initializer ?? []).map((t) => t.name ?? ""));
  const shapeValues = new Set<string>();
  const ops: Record<string, number> = {};
  let shapeNodes = 0;
  for (const node of nodes) {
    const inputs = (node.input ?? []).filter((i) => i !== "");
    // ConstantOfShape takes a shape but makes a tensor (the export's empty baddbmm input): it computes.
    const shapeMath = node.opType === "Shape" || (node.opType !== "ConstantOfShape" && inputs.some((i) => shapeValues.has(i)) && inputs.every((i) => shapeValues.has(i) || initializers.has(i)));
    if (shapeMath) {
      shapeNodes++;
      for (const out of node.output ?? []) shapeValues.add(out);
      continue;
    }
    const op = node.domain ? `${node.domain}.${node.opType}` : (node.opType ?? "?");
    ops[op] = (ops[op] ?? 0) + 1;
  }
  return { ops, shapeNodes, nodes: nodes.length };
}

/**
 * The counts of `file` as onnxruntime runs it on this CPU, in `form`. The optimized graph comes
 * from an OptimizedModelCache under `cacheDir`: an entry the bench's own loading wrote is reused,
 * else one is written now (loading the model once).
 */
export async function loadedOpCounts(file: string, part: ModelPart, form: GraphForm, cacheDir: string): Promise<OpCounts> {
  const cache = new OptimizedModelCache({ dir: cacheDir });
  // As ModelSessions does: the daemon's rewrite (attention fusion) for the parts it fuses, none as exported.
  const rewrite = form === "daemon" ? graphRewriteOf(part) : "";
  const options = sessionOptionsFor("cpu");
  const session = await cache.wrap(rewrite ? withFusedAttention(defaultSessionFactory) : defaultSessionFactory, rewrite)(file, options);
  await session.release();
  const graph = path.join(await cache.entryDir(file, options, rewrite), "model.onnx");
  return opCounts(onnxProto.onnx.ModelProto.decode(await readFile(graph)));
}

/** Op types whose counts differ between `a` and `b` (shape arithmetic aside). */
export function differingOps(a: OpCounts, b: OpCounts): string[] {
  const all = new Set([...Object.keys(a.ops), ...Object.keys(b.ops)]);
  return [...all].filter((op) => (a.ops[op] ?? 0) !== (b.ops[op] ?? 0)).sort();
}

/** A table of counts side by side: one row per op type, shape arithmetic and the total last. */
export function formatOpTable(columns: { title: string; counts: OpCounts }[]): string[] {
  const ops = [...new Set(columns.flatMap((c) => Object.keys(c.counts.ops)))].sort((x, y) => short(x).localeCompare(short(y)));
  const rows: string[][] = [
    ["", ...columns.map((c) => c.title)],
    ...ops.map((op) => [short(op), ...columns.map((c) => String(c.counts.ops[op] ?? 0))]),
    ["(shape arithmetic)", ...columns.map((c) => String(c.counts.shapeNodes))],
    ["all nodes", ...columns.map((c) => String(c.counts.nodes))],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "));
}

const short = (op: string) => op.replace(/^com\.microsoft\.(nchwc\.)?/, "");
