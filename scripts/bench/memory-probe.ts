/**
 * Peak memory, measured in a fresh process so nothing the bench did before counts:
 *   job <folder> <cacheDir> <size> <steps>   what the daemon does: a txt2img job through
 *                                             DiffusionEngine, models loaded through its
 *                                             optimized-model cache (attention fused)
 *   unet <folder> <fused|exported> <latent> <contextDim> <cacheDir>
 *                                             one UNet call at batch 2 (guidance), the graph
 *                                             fused and loaded as the daemon loads it, or as
 *                                             exported (optimised at load, no cache)
 * Prints one JSON line: { peakRssBytes, rssBeforeBytes }.
 */
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Tensor } from "onnxruntime-node";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import { defaultSessionFactory } from "../../daemon/models/execution-provider";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { ModelSessions } from "../../daemon/models/model-sessions";
import { OptimizedModelCache } from "../../daemon/models/optimized-models";

/** The process's peak resident set: VmHWM on Linux, getrusage's maxRSS elsewhere. */
export function peakRssBytes(): number {
  try {
    const kib = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (kib) return Number(kib) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

async function job(folder: string, cacheDir: string, size: number, steps: number): Promise<void> {
  const modelsDir = await mkdtemp(path.join(os.tmpdir(), "underpaint-probe-"));
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: cacheDir }) });
  const model = await engine.useFolder(folder);
  await engine.run(
    { jobId: 1, mode: "txt2img", model, prompt: "a lighthouse on a cliff at dusk", negativePrompt: "", seed: 7, steps, guidance: 7.5, strength: 1, scheduler: "euler", width: size, height: size, variations: 1, truncatePrompt: false, previews: true },
    { signal: new AbortController().signal, onProgress: () => {} },
  );
  await engine.dispose();
}

async function unet(folder: string, variant: string, latent: number, dim: number, cacheDir: string): Promise<void> {
  const model = await loadModelFolder(folder);
  const sessions = new ModelSessions(model, { devices: ["cpu"], ...(variant === "exported" ? { factory: defaultSessionFactory } : { optimizedModels: new OptimizedModelCache({ dir: cacheDir }) }) });
  const { session, io } = await sessions.unet();
  await session.run({
    [io.sample]: new Tensor("float32", new Float32Array(2 * 4 * latent * latent).fill(0.5), [2, 4, latent, latent]),
    [io.timestep]: new Tensor("float32", new Float32Array(2).fill(981), [2]),
    [io.encoderHiddenStates]: new Tensor("float32", new Float32Array(2 * 77 * dim).fill(0.1), [2, 77, dim]),
  });
  await sessions.release();
}

const [what, ...args] = process.argv.slice(2);
const rssBeforeBytes = process.memoryUsage().rss;
if (what === "job") await job(args[0]!, args[1]!, Number(args[2]), Number(args[3]));
else if (what === "unet") await unet(args[0]!, args[1]!, Number(args[2]), Number(args[3]), args[4]!);
else throw new Error(`memory-probe: unknown probe "${what}"`);
console.log(JSON.stringify({ peakRssBytes: peakRssBytes(), rssBeforeBytes }));
