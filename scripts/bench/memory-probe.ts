/**
 * Peak memory, measured in a fresh process so nothing the bench did before counts:
 *   job <folder> <cacheDir> <size> <steps>   what the daemon does: a txt2img job through
 *                                             DiffusionEngine, models loaded through its
 *                                             optimized-model cache (attention fused)
 *   inpaint <folder> <cacheDir> <size> <steps>
 *                                             the same for an inpaint job: a size x size RGB
 *                                             image, its centred square selected (a float16
 *                                             folder runs from float32 copies under cacheDir)
 *   unet <folder> <fused|exported> <latent> <contextDim> <cacheDir>
 *                                             one UNet call at batch 2 (guidance), the graph
 *                                             fused and loaded as the daemon loads it, or as
 *                                             exported (optimised at load, no cache)
 * Prints one JSON line: { peakRssBytes, rssBeforeBytes }.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import type { GenerationJob, GenerationSettings } from "../../daemon/engine/engine";
import { regionOf, type Pixels } from "../../geometry";
import { defaultSessionFactory } from "../../daemon/models/execution-provider";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { ModelSessions } from "../../daemon/models/model-sessions";
import { OptimizedModelCache } from "../../daemon/models/optimized-models";
import { unetFeeds } from "./feeds";
import { peakRssBytes } from "./rss";


/** The settings every probed job shares (a txt2img or an inpaint job adds its mode, size and pixels). */
const JOB: Omit<GenerationSettings, "model" | "steps"> = { prompt: "a lighthouse on a cliff at dusk", negativePrompt: "", seed: 7, guidance: 7.5, scheduler: "euler", variations: 1, truncatePrompt: false, previews: true };

/** A job of any mode without the shared settings (Omit taken per mode, so each keeps its own fields). */
type ProbedJob = GenerationJob extends infer J ? (J extends GenerationJob ? Omit<J, keyof typeof JOB | "model"> : never) : never;

/** Runs one job through DiffusionEngine as the daemon does: the folder added by path, models loaded through the optimized-model cache. */
async function runJob(folder: string, cacheDir: string, job: ProbedJob): Promise<void> {
  const modelsDir = await mkdtemp(path.join(os.tmpdir(), "underpaint-probe-"));
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: cacheDir }) });
  try {
    const model = await engine.useFolder(folder);
    await engine.run({ ...JOB, ...job, model } as GenerationJob, { signal: new AbortController().signal, onProgress: () => {} });
  } finally {
    await engine.dispose();
    await rm(modelsDir, { recursive: true, force: true });
  }
}

/** An RGB picture of `size` x `size` (a smooth gradient) and a selection of its centred square, half as wide, as the panel sends them. */
function inpaintPixels(size: number): { image: Pixels; mask: Pixels } {
  const rgb = new Uint8Array(size * size * 3);
  const mask = new Uint8Array(size * size);
  const [from, to] = [Math.floor(size / 4), Math.floor((3 * size) / 4)];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      rgb.set([(255 * x) / size, (255 * y) / size, 128], i * 3);
      if (x >= from && x < to && y >= from && y < to) mask[i] = 255;
    }
  }
  return { image: { width: size, height: size, channels: 3, data: rgb }, mask: { width: size, height: size, channels: 1, data: mask } };
}

async function unet(folder: string, variant: string, latent: number, dim: number, cacheDir: string): Promise<void> {
  const model = await loadModelFolder(folder);
  const sessions = new ModelSessions(model, { devices: ["cpu"], ...(variant === "exported" ? { factory: defaultSessionFactory } : { optimizedModels: new OptimizedModelCache({ dir: cacheDir }) }) });
  const { session, io } = await sessions.unet();
  const channels = model.unetInChannels;
  await session.run(unetFeeds(io, { batch: 2, channels, latent, sample: new Float32Array(2 * channels * latent * latent).fill(0.5), context: new Float32Array(2 * 77 * dim).fill(0.1) }));
  await sessions.release();
}

const [what, ...args] = process.argv.slice(2);
const rssBeforeBytes = process.memoryUsage().rss;
const side = Number(args[2]);
const square = { width: side, height: side };
if (what === "job") await runJob(args[0]!, args[1]!, { mode: "txt2img", output: square, size: square, steps: Number(args[3]) });
else if (what === "inpaint") {
  // The model works on side x side: the budget is the picture's own size.
  const placement = { canvas: square, region: regionOf(square) };
  await runJob(args[0]!, args[1]!, { mode: "inpaint", ...placement, budget: side * side, strength: 1, context: "image", steps: Number(args[3]), ...inpaintPixels(side) });
}
else if (what === "unet") await unet(args[0]!, args[1]!, Number(args[2]), Number(args[3]), args[4]!);
else throw new Error(`memory-probe: unknown probe "${what}"`);
console.log(JSON.stringify({ peakRssBytes: peakRssBytes(), rssBeforeBytes }));
