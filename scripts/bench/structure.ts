/**
 * The bench's graph-structure section: the UNet it times, by op type as onnxruntime runs it,
 * beside the real diffusers export in the fixtures (tiny-sd) and beside the builder's UNet in
 * tiny-sd's own configuration, which must have the export's nodes exactly (shape arithmetic aside).
 */
import { rm } from "node:fs/promises";
import path from "node:path";
import { unet, tinySdConfig } from "../onnx-builder/sd15";
import { differingOps, formatOpTable, loadedOpCounts, type GraphForm, type OpCounts } from "./graph-structure";
import type { Figures } from "./report";

export interface StructureOptions {
  /** The bench's cache folder (.cache/bench-models). */
  cacheDir: string;
  fixtures: string;
  /** The UNet the bench times, and where its optimized copies of each form are (the bench's optimized-model caches). */
  unetFile: string;
  optimizedCacheDirs: Record<GraphForm, string>;
  /** Its column's title: "builder" or the --model folder's name. */
  label: string;
}

const FORMS: { form: GraphForm; title: string; suffix: string }[] = [
  { form: "exported", title: "as exported, after onnxruntime's optimisation", suffix: "" },
  { form: "daemon", title: "as the daemon loads it (attention fused), after onnxruntime's optimisation", suffix: "Fused" },
];

export async function benchGraphStructure(options: StructureOptions): Promise<Figures> {
  // The builder's UNet in tiny-sd's configuration, written afresh (a few MB), and its own cache of optimized copies.
  const dir = path.join(options.cacheDir, "structure");
  await rm(dir, { recursive: true, force: true });
  const tinyFile = path.join(dir, "tiny-sd-layout", "unet", "model.onnx");
  await unet(tinySdConfig(), { textBatch: 2, sequence: 77, unetBatch: 1, latent: 8 }).write(tinyFile, { externalData: "weights.pb" });
  const exportFile = path.join(options.fixtures, "tiny-sd", "unet", "model.onnx");
  // One cache for both forms: a new entry replaces the other form's entry of the same file, read by then.
  const cache = path.join(dir, "optimized-cache");
  const figures: Figures = {};
  console.log(`\n## Graph structure: UNet nodes by op type as onnxruntime runs them (${options.label}: the UNet timed here; tiny-sd: the diffusers export in the fixtures; builder@tiny-sd: the builder in tiny-sd's configuration)`);
  for (const { form, title, suffix } of FORMS) {
    const bench = await loadedOpCounts(options.unetFile, "unet", form, options.optimizedCacheDirs[form]);
    const tiny = await loadedOpCounts(tinyFile, "unet", form, cache);
    const real = await loadedOpCounts(exportFile, "unet", form, cache);
    const differing = differingOps(tiny, real);
    console.log(`  ${title}:`);
    for (const line of formatOpTable([{ title: options.label, counts: bench }, { title: "builder@tiny-sd", counts: tiny }, { title: "tiny-sd export", counts: real }])) console.log(`    ${line}`);
    console.log(`    builder@tiny-sd against the export: ${differing.length === 0 ? "the same nodes" : `differs in ${differing.join(", ")}`}`);
    const put = (key: string, counts: OpCounts) => {
      figures[`structure.${key}.transposes${suffix}`] = counts.ops.Transpose ?? 0;
      figures[`structure.${key}.computeNodes${suffix}`] = counts.nodes - counts.shapeNodes;
    };
    put("unet", bench);
    put("tinyLayoutUnet", tiny);
    put("exportUnet", real);
    figures[`structure.tinyLayoutUnet.differingOps${suffix}`] = differing.length;
  }
  await rm(dir, { recursive: true, force: true });
  return figures;
}
