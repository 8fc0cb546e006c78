/**
 * SDXL on this machine: the builder's SDXL base 1.0 architecture (scripts/onnx-builder/sdxl.ts,
 * the published weight counts at width 1; about 13 GiB of float32 weights, built on first use into
 * .cache/bench-models/sdxl-w1/ and kept), loaded through the daemon's model-folder code,
 * ModelSessions and optimized-model cache, and run in a fresh process (./sdxl-probe.ts) so that
 * the peak resident set is the job's own: both text encoders on a prompt and a negative prompt,
 * one guidance step (the UNet at batch 2 on 128x128 latents) and the VAE decode to 1024x1024.
 * Beside it a 2048^3 MatMul on the same onnxruntime, before and after, as in the engine section.
 * Speed does not depend on the weights' values. --quick (or --width W) builds every width times
 * W instead: the same graphs and shapes, a fraction of the work. UNDERPAINT_OPTIMIZED_CACHE=off
 * loads as the daemon then does: each session optimised at load, no optimized copies written.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { z } from "zod";
import { sessionOptionsFor } from "../../daemon/models/execution-provider";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { optimizedCacheSwitchedOff } from "../../daemon/models/optimized-models";
import { fillRandom } from "../onnx-builder/graph";
import { matmul } from "../onnx-builder/sd15";
import { SDXL_REFERENCE, sdxlGraphs } from "../onnx-builder/sdxl";
import { ensureSdxlFolder } from "../onnx-builder/sdxl-folder";
import { probeScript } from "./probe";
import { bestOf, printSection, type Figures, type Row } from "./report";

/** --quick's width: SDXL's graphs with 32-channel blocks, built and run in seconds. */
export const SDXL_QUICK_WIDTH = 0.0625;

export interface SdxlBenchOptions {
  quick: boolean;
  /** Channel width of the built SDXL (default 1 = SDXL base 1.0; SDXL_QUICK_WIDTH with --quick). */
  width?: number;
}

const LoadProbe = z.object({ loadMs: z.number(), optimizedCopiesWritten: z.number().int(), peakRssBytes: z.number().positive(), rssBeforeBytes: z.number().positive() });
const StepProbe = z.object({
  textLoadMs: z.number(),
  textMs: z.number(),
  unetLoadMs: z.number(),
  unetMs: z.number(),
  vaeLoadMs: z.number(),
  vaeMs: z.number(),
  optimizedCopiesWritten: z.number().int(),
  peakAfterTextBytes: z.number().positive(),
  peakAfterUnetBytes: z.number().positive(),
  peakRssBytes: z.number().positive(),
  rssBeforeBytes: z.number().positive(),
});

const round = (x: number, digits = 3) => Number(x.toPrecision(digits));
const gib = (bytes: number) => bytes / 2 ** 30;
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

export async function benchSdxl(root: string, fixtures: string, options: SdxlBenchOptions): Promise<Figures> {
  const width = options.width ?? (options.quick ? SDXL_QUICK_WIDTH : 1);
  if (!(width > 0 && width <= 1)) throw new Error(`the SDXL width is a fraction of SDXL's channels in (0, 1], not ${width}`);
  const latent = SDXL_REFERENCE.latent;
  const size = latent * 8;
  const cacheDir = path.join(root, ".cache", "bench-models");
  const full = width === 1;
  const log = (line: string) => console.log(line);
  const rows: Row[] = [];
  const push = (row: Row) => {
    rows.push(row);
    if (full) console.log(`  [sdxl] ${row.what}: ${row.value}${row.note ? ` (${row.note})` : ""}`);
  };

  if (full) console.log("  [sdxl] the full-size SDXL: about 13 GiB of float32 weights on disk, and minutes per UNet call on a CPU");
  const buildStart = Date.now();
  const built = await ensureSdxlFolder(cacheDir, { width, tokenizerDir: path.join(fixtures, "tiny-sd", "tokenizer"), log });
  const buildMs = built.built ? Date.now() - buildStart : 0;
  const folder = await loadModelFolder(built.dir);
  const params = Object.values(built.counts).reduce((sum, c) => sum + c.params, 0);
  // FLOP of the calls below: the UNet at batch 2 (guidance), text encoders on [negative, positive], the VAE decoder at batch 1.
  const unetFlop = sdxlGraphs(built.config, { ...SDXL_REFERENCE, unetBatch: 2 }).unet.counts().flop;
  const textFlop = built.counts.text_encoder.flop + built.counts.text_encoder_2.flop;
  const vaeFlop = built.counts.vae_decoder.flop;

  // ---- the yardstick: a 2048^3 MatMul on the same onnxruntime, the best before and after the SDXL run ----
  const n = 2048;
  const matmulFile = path.join(cacheDir, `matmul-${n}`, "model.onnx");
  if (!(await stat(matmulFile).catch(() => null))) await matmul(n).write(matmulFile);
  const mm = await InferenceSession.create(matmulFile, sessionOptionsFor("cpu"));
  const a = new Float32Array(n * n);
  fillRandom(a, "a", 1);
  const input = new Tensor("float32", a, [n, n]);
  const runMatmul = async () => void (await mm.run({ a: input }));
  const matmulBeforeMs = await bestOf(3, runMatmul);

  // ---- the optimized copies first (written once), then the measured process loading them as a restarted daemon does ----
  const optimizedCacheDir = path.join(cacheDir, "sdxl-optimized-cache");
  const loaded = await probeScript("sdxl-probe.ts", ["load", built.dir, optimizedCacheDir], LoadProbe);
  const step = await probeScript("sdxl-probe.ts", ["step", built.dir, optimizedCacheDir, String(latent)], StepProbe);
  const matmulAfterMs = await bestOf(3, runMatmul);
  await mm.release();
  const matmulMs = Math.min(matmulBeforeMs, matmulAfterMs);
  const matmulRate = (2 * n ** 3) / (matmulMs / 1000);
  const rate = (flop: number, ms: number) => flop / (ms / 1000);

  const figures: Figures = {
    "sdxl.modelWidth": width,
    "sdxl.imageSize": size,
    "sdxl.latentSize": latent,
    "sdxl.params": params,
    "sdxl.weightsGiB": round(gib(folder.weightsBytes)),
    "sdxl.buildSeconds": round(buildMs / 1000),
    "sdxl.secondsPerStep": round(step.unetMs / 1000),
    "sdxl.unetGflopPerStep": round(unetFlop / 1e9),
    "sdxl.unetGflops": round(rate(unetFlop, step.unetMs) / 1e9),
    "sdxl.unetOverMatmul": round(rate(unetFlop, step.unetMs) / matmulRate),
    "sdxl.textEncodersSeconds": round(step.textMs / 1000),
    "sdxl.vaeDecodeSeconds": round(step.vaeMs / 1000),
    "sdxl.vaeDecodeOverMatmul": round(rate(vaeFlop, step.vaeMs) / matmulRate),
    "sdxl.loadSeconds": round((step.textLoadMs + step.unetLoadMs + step.vaeLoadMs) / 1000),
    "sdxl.unetLoadSeconds": round(step.unetLoadMs / 1000),
    // A 25-step picture (SDXL base's recommended steps) at this rate: encoders once, 25 guidance steps, one decode.
    "sdxl.estimated25StepSeconds": round((step.textMs + 25 * step.unetMs + step.vaeMs) / 1000),
    "sdxl.peakRssGiB": round(gib(step.peakRssBytes)),
    "sdxl.peakRssOverWeights": round(step.peakRssBytes / folder.weightsBytes),
    "sdxl.textPeakRssGiB": round(gib(step.peakAfterTextBytes)),
    "sdxl.unetPeakRssGiB": round(gib(step.peakAfterUnetBytes)),
    "sdxl.processStartRssMiB": round(step.rssBeforeBytes / 2 ** 20),
    "sdxl.firstLoadPeakRssGiB": round(gib(loaded.peakRssBytes)),
    "sdxl.firstLoadWroteOptimizedCopies": loaded.optimizedCopiesWritten,
    "sdxl.firstLoadSeconds": round(loaded.loadMs / 1000),
    "sdxl.matmulGflops": round(matmulRate / 1e9),
    "sdxl.optimizedCache": !optimizedCacheSwitchedOff(),
  };

  push({ what: `${n}^3 MatMul`, value: `${matmulMs.toFixed(0)} ms`, note: `${(matmulRate / 1e9).toFixed(0)} GFLOP/s, best of 3 before (${matmulBeforeMs.toFixed(0)} ms) and 3 after the SDXL run` });
  push({ what: "weights", value: `${gib(folder.weightsBytes).toFixed(2)} GiB`, note: `${(params / 1e9).toFixed(3)} B float32 weights${built.built ? `, built in ${seconds(buildMs)}` : ", built before"}` });
  push({
    what: "load every session (first)",
    value: seconds(loaded.loadMs),
    note: `${loaded.optimizedCopiesWritten ? `${loaded.optimizedCopiesWritten} optimized copies written` : "from the optimized copies"}, peak RSS ${gib(loaded.peakRssBytes).toFixed(2)} GiB`,
  });
  push({ what: "text encoders (prompt + negative)", value: seconds(step.textMs), note: `${(textFlop / 1e9).toFixed(1)} GFLOP; loaded in ${seconds(step.textLoadMs)}` });
  push({
    what: `UNet, one guidance step (batch 2, ${latent}x${latent})`,
    value: seconds(step.unetMs),
    note: `${(unetFlop / 1e9).toFixed(0)} GFLOP, ${(rate(unetFlop, step.unetMs) / 1e9).toFixed(0)} GFLOP/s = ${(rate(unetFlop, step.unetMs) / matmulRate).toFixed(2)}x the MatMul; a fresh session's first call; loaded in ${seconds(step.unetLoadMs)}`,
  });
  push({ what: `VAE decode ${latent}x${latent} -> ${size}x${size}`, value: seconds(step.vaeMs), note: `${(vaeFlop / 1e9).toFixed(0)} GFLOP, ${(rate(vaeFlop, step.vaeMs) / 1e9).toFixed(0)} GFLOP/s` });
  push({ what: "a 25-step picture at this rate", value: seconds(step.textMs + 25 * step.unetMs + step.vaeMs), note: "estimated: encoders + 25 steps + decode, loading left out" });
  push({
    what: "peak RSS, prompt to picture",
    value: `${gib(step.peakRssBytes).toFixed(2)} GiB`,
    note: `${(step.peakRssBytes / folder.weightsBytes).toFixed(2)}x the weights; ${gib(step.peakAfterTextBytes).toFixed(2)} GiB after the text encoders, ${gib(step.peakAfterUnetBytes).toFixed(2)} GiB after the UNet; a fresh process (${(step.rssBeforeBytes / 2 ** 20).toFixed(0)} MiB at start)`,
  });
  const shape = full ? "SDXL base 1.0 architecture, full size" : `SDXL architecture at width ${width}`;
  printSection(`SDXL: ${shape}, ${size}x${size}, onnxruntime CPU`, rows);
  return figures;
}
