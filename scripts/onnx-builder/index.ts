/**
 * `tsx scripts/onnx-builder/index.ts [--width W] [--inpaint] [--count-only] [--out DIR]`:
 * (or `--sdxl`: SDXL's counts at 1024x1024 beside the published ones)
 * writes an SD-1.5-architecture model folder with random weights (default: full size into
 * .cache/bench-models/) and prints its parameter and FLOP counts beside SD 1.5's.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { compareCounts, formatCounts, formatSdxlCounts } from "./counts";
import { buildGraphs, ensureModelFolder } from "./folder";
import { sdxlConfig, sdxlGraphs } from "./sdxl";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const width = Number(arg("--width") ?? 1);
const inChannels = process.argv.includes("--inpaint") ? 9 : 4;
const out = path.resolve(arg("--out") ?? path.join(root, ".cache", "bench-models"));
const fixtures = process.env.UNDERPAINT_FIXTURES ?? path.resolve(root, "..", "shared", "fixtures");

if (process.argv.includes("--sdxl")) {
  // SDXL's counts (the folder itself is written by scripts/bench/sdxl.ts or scripts/replicas.ts).
  const graphs = sdxlGraphs(sdxlConfig(width, inChannels));
  const counts = Object.fromEntries(Object.entries(graphs).map(([k, g]) => [k, g.counts()])) as Parameters<typeof formatSdxlCounts>[0];
  for (const line of formatSdxlCounts(counts)) console.log(line);
} else if (process.argv.includes("--count-only")) {
  const { graphs } = buildGraphs(width, inChannels);
  const counts = { text_encoder: graphs.text_encoder.counts(), unet: graphs.unet.counts(), vae_encoder: graphs.vae_encoder.counts(), vae_decoder: graphs.vae_decoder.counts() };
  for (const line of formatCounts(compareCounts(counts))) console.log(line);
} else {
  const built = await ensureModelFolder(out, { width, inChannels, tokenizerDir: path.join(fixtures, "tiny-sd", "tokenizer"), log: console.log });
  console.log(`${built.built ? "built" : "cached"}: ${built.dir}`);
  for (const line of formatCounts(compareCounts(built.counts))) console.log(line);
}
