/**
 * The engine against the hardware: SD-1.5-architecture models with random weights (built on
 * first use into .cache/bench-models/ by scripts/onnx-builder), or any diffusers ONNX export
 * folder (--model DIR), loaded through the daemon's own model-folder and session code, timed per
 * network, per step of a txt2img job run through DiffusionEngine (previews on), on cancel, and
 * compared with a large MatMul on the same onnxruntime and with the machine's FMA peak, both
 * measured in the same run. Speed does not depend on the weights' values.
 */
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../daemon/engine/engine";
import { latentPreview } from "../../daemon/engine/preview";
import { defaultSessionFactory, firstLine, physicalCoreCount, sessionOptionsFor, type ModelLog } from "../../daemon/models/execution-provider";
import { loadModelFolder, type ModelFolder } from "../../daemon/models/model-folder";
import { MODEL_PARTS, ModelSessions, type ModelPart } from "../../daemon/models/model-sessions";
import { OptimizedModelCache } from "../../daemon/models/optimized-models";
import { makeTensor } from "../../daemon/models/session-io";
import { compareCounts, formatCounts } from "../onnx-builder/counts";
import { countGraphs, ensureModelFolder } from "../onnx-builder/folder";
import { fillRandom } from "../onnx-builder/graph";
import { matmul, REFERENCE } from "../onnx-builder/sd15";
import { unetFeeds } from "./feeds";
import { benchFloat16Memory } from "./float16-memory";
import { measureFmaPeak, type FmaPeak } from "./fma-peak";
import { profiledFlop } from "./graph-flop";
import { probe } from "./probe";
import { benchGraphStructure } from "./structure";
import { bestOf, printSection, timeIt, type Figures, type Row } from "./report";

export interface EngineBenchOptions {
  quick: boolean;
  /** Denoising steps of the txt2img job (default 20; 3 with --quick). */
  steps?: number;
  /** Channel width of the built models (default 1 = SD 1.5; 0.125 with --quick). */
  width?: number;
  /** A diffusers ONNX export folder to run instead of the builder's models (--model DIR); `width` is then unused. */
  model?: string;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const round = (x: number, digits = 3) => Number(x.toPrecision(digits));
const randn = (n: number, name: string) => {
  const a = new Float32Array(n);
  fillRandom(a, name, 1);
  return a;
};

export async function benchEngine(root: string, fixtures: string, options: EngineBenchOptions): Promise<Figures> {
  const quick = options.quick;
  const width = options.model ? null : (options.width ?? (quick ? 0.125 : 1));
  const size = quick ? 256 : 512;
  const latent = size / 8;
  const steps = options.steps ?? (quick ? 3 : 20);
  const reps = 1;
  const cacheDir = path.join(root, ".cache", "bench-models");
  const figures: Figures = { "engine.model": options.model ? path.resolve(options.model) : "builder", "engine.width": width, "engine.imageSize": size, "engine.steps": steps };
  const rows: Row[] = [];
  // Full-size runs take minutes: say what is done as it is done (the table comes at the end).
  const push = (row: Row) => {
    rows.push(row);
    if (!quick) console.log(`  [engine] ${row.what}: ${row.value}${row.note ? ` (${row.note})` : ""}`);
  };

  // ---- the models and their counts: the builder's (counted as they are built) or the folder given (counted as they run, below) ----
  const tokenizerDir = path.join(fixtures, "tiny-sd", "tokenizer");
  const ref1 = { textBatch: 2, sequence: 77, unetBatch: 1, latent };
  let builderFlop: { textEncoder: number; unet1: number; unet2: number; vaeDecoder: number } | null = null;
  let folder: ModelFolder;
  if (width === null) {
    folder = await loadModelFolder(options.model!);
    if (!folder.modes.includes("txt2img")) throw new Error(`${folder.dir} is an inpainting model: the bench's engine section times txt2img jobs.`);
  } else {
    const buildStart = now();
    const built = await ensureModelFolder(cacheDir, { width, tokenizerDir, log: (line) => console.log(line) });
    figures["models.buildMs"] = built.built ? round(now() - buildStart) : 0;
    const full = compareCounts(countGraphs(1, REFERENCE));
    console.log("\n## SD 1.5 architecture: the builder's full-size counts against SD 1.5 (FLOP at batch 1, 64x64 latents; text [2, 77])");
    for (const line of formatCounts(full)) console.log(`  ${line}`);
    for (const row of full) {
      figures[`counts.${row.part}.params`] = row.params;
      figures[`counts.${row.part}.gflop`] = round(row.flop / 1e9, 5);
      figures[`counts.${row.part}.paramsError`] = round(row.paramsError, 3);
      if (row.flopError !== null) figures[`counts.${row.part}.flopError`] = round(row.flopError, 3);
    }
    const at1 = countGraphs(width, ref1);
    builderFlop = { textEncoder: at1.text_encoder.flop, unet1: at1.unet.flop, unet2: countGraphs(width, { ...ref1, unetBatch: 2 }).unet.flop, vaeDecoder: at1.vae_decoder.flop };
    folder = await loadModelFolder(built.dir);
  }
  figures["memory.weightsMiB"] = round(folder.weightsBytes / 2 ** 20);

  // ---- the yardstick: a large MatMul on the same onnxruntime ----
  const n = 2048;
  const matmulFile = path.join(cacheDir, `matmul-${n}`, "model.onnx");
  if (!(await stat(matmulFile).catch(() => null))) await matmul(n).write(matmulFile);
  const mm = await InferenceSession.create(matmulFile, sessionOptionsFor("cpu"));
  const a = new Tensor("float32", randn(n * n, "a"), [n, n]);
  const runMatmul = async () => void (await mm.run({ a }));
  const matmulMs = await bestOf(quick ? 2 : 5, runMatmul);
  const matmulRate = (2 * n ** 3) / (matmulMs / 1000);
  figures["matmul.gflops"] = round(matmulRate / 1e9);
  push({ what: `${n}^3 MatMul`, value: `${matmulMs.toFixed(0)} ms`, note: `${(matmulRate / 1e9).toFixed(0)} GFLOP/s, the roofline` });
  // ---- and the hardware's own: an FMA loop on every core (measured again after the UNet: the best counts) ----
  const fmaOptions = { cacheDir: path.join(root, ".cache", "bench-fma"), threads: physicalCoreCount(), trials: quick ? 3 : 5 };
  const fmaRuns: FmaPeak[] = [await measureFmaPeak(fmaOptions)];
  /**
   * Times `fn` (after a warm-up) with a MatMul just before and after each run: other processes on
   * a shared machine slow both alike, so each ratio is taken against its own neighbours.
   */
  const paired = async (runs: number, fn: () => Promise<void>): Promise<{ ms: number; matmulRate: number }> => {
    await fn();
    let best = { ms: Infinity, matmulRate };
    for (let i = 0; i < runs; i++) {
      const before = await timeIt(runMatmul);
      const ms = await timeIt(fn);
      const after = await timeIt(runMatmul);
      if (ms < best.ms) best = { ms, matmulRate: (2 * n ** 3) / ((before + after) / 2 / 1000) };
    }
    return best;
  };

  // ---- loading, as the daemon loads (attention fused): first, second, writing and reading the optimized-model cache ----
  const loadTimes = async (label: string, optimizedModels: OptimizedModelCache | null) => {
    const sessions = new ModelSessions(folder, { devices: ["cpu"], optimizedModels });
    const times: Partial<Record<ModelPart, number>> = {};
    const start = now();
    for (const part of MODEL_PARTS) {
      if ((part === "vaeEncoder" || part === "textEncoder2") && !folder.paths[part]) continue;
      const partStart = now();
      await { textEncoder: () => sessions.textEncoder(), textEncoder2: () => sessions.textEncoder2(), unet: () => sessions.unet(), vaeEncoder: () => sessions.vaeEncoder(), vaeDecoder: () => sessions.vaeDecoder() }[part]();
      times[part] = now() - partStart;
    }
    const total = now() - start;
    figures[`load.${label}Ms`] = round(total);
    figures[`load.${label}UnetMs`] = round(times.unet ?? NaN);
    return { sessions, total, unet: times.unet ?? NaN };
  };
  const cold = await loadTimes("cold", null);
  await cold.sessions.release();
  const second = await loadTimes("second", null);
  await second.sessions.release();
  // The product's optimized-model cache, in a folder of its own emptied first, so the first load really writes.
  const optimizedCacheDir = path.join(cacheDir, "optimized-cache");
  await rm(optimizedCacheDir, { recursive: true, force: true });
  const cacheLines: string[] = [];
  const cacheLog: ModelLog = (level, message) => {
    cacheLines.push(message);
    if (level === "warn") console.log(`  (optimized-model cache: ${message})`);
  };
  const written = await loadTimes("writeOptimized", new OptimizedModelCache({ dir: optimizedCacheDir, log: cacheLog }));
  const wroteAll = cacheLines.filter((l) => l.startsWith("optimized ")).length === written.sessions.loaded().length;
  await written.sessions.release();
  cacheLines.length = 0;
  // A new cache object, as after a restart of the daemon.
  const fromCache = await loadTimes("fromOptimized", new OptimizedModelCache({ dir: optimizedCacheDir, log: cacheLog }));
  const hitAll = cacheLines.filter((l) => l.includes("from its optimized copy")).length === fromCache.sessions.loaded().length;
  await fromCache.sessions.release();
  const cached = wroteAll && hitAll ? fromCache : null;
  if (!cached) console.log("  (the optimized-model cache did not write or serve every model file: see its lines above)");
  figures["load.secondOverFirstUnet"] = round(second.unet / cold.unet);
  figures["load.optimizedOverFirstUnet"] = cached ? round(cached.unet / cold.unet) : null;
  push({ what: "load all sessions: first", value: `${cold.total.toFixed(0)} ms`, note: `UNet ${cold.unet.toFixed(0)} ms (attention fused, graph optimised)` });
  push({ what: "load all sessions: second", value: `${second.total.toFixed(0)} ms`, note: `UNet ${second.unet.toFixed(0)} ms (files in the OS cache)` });
  push({ what: "load all sessions: writing the optimized copies", value: `${written.total.toFixed(0)} ms`, note: `UNet ${written.unet.toFixed(0)} ms` });
  if (cached) push({ what: "load from optimized-model cache", value: `${cached.total.toFixed(0)} ms`, note: `UNet ${cached.unet.toFixed(0)} ms = ${(cached.unet / cold.unet).toFixed(2)}x first (target <= 0.33)` });

  // ---- each network alone ----
  const sessions = new ModelSessions(folder, { devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: optimizedCacheDir }) });
  const text = await sessions.textEncoder();
  const unet = await sessions.unet();
  const decoder = await sessions.vaeDecoder();
  const textFeeds = { [text.io.inputIds]: makeTensor(text.io.inputIdsType, Int32Array.from({ length: 2 * 77 }, (_, i) => (i % 77 === 0 ? 49406 : 49407)), [2, 77]) };
  // The UNet's context width is the text encoder's own (768 for SD 1.x).
  const dim = (await text.session.run(textFeeds))[text.io.hiddenState]!.dims[2]!;
  const textRun = await paired(reps + 1, async () => void (await text.session.run(textFeeds)));
  const channels = folder.unetInChannels;
  const unetInput = (batch: number) => ({ batch, channels, latent, sample: randn(batch * channels * latent * latent, "sample"), context: randn(batch * 77 * dim, "context") });
  const unetCall = (batch: number, { session, io } = unet) => {
    const feeds = unetFeeds(io, unetInput(batch));
    return async () => void (await session.run(feeds));
  };
  const unet1 = await paired(reps, unetCall(1));
  const unet2 = await paired(reps, unetCall(2));
  const vaeFeeds = { [decoder.io.latent]: makeTensor(decoder.io.latentType, randn(4 * latent * latent, "latent"), [1, 4, latent, latent]) };
  const vae = await paired(reps, async () => void (await decoder.session.run(vaeFeeds)));
  await sessions.release();
  // The same UNet as exported (attention unfused), for what the fusion gains. Its optimized graph is
  // kept for the structure section, in a cache of its own (a cache keeps one entry per model file).
  const exportedCacheDir = path.join(cacheDir, "optimized-cache-exported");
  await rm(exportedCacheDir, { recursive: true, force: true });
  const exported = new ModelSessions(folder, { devices: ["cpu"], factory: defaultSessionFactory, optimizedModels: new OptimizedModelCache({ dir: exportedCacheDir }) });
  const exportedUnet = await exported.unet();
  const exportedCall = unetCall(2, exportedUnet);
  const unet2Exported = await paired(1, exportedCall);
  await exported.release();
  await mm.release();
  Object.assign(figures, await benchGraphStructure({ cacheDir, fixtures, unetFile: folder.paths.unet, optimizedCacheDirs: { daemon: optimizedCacheDir, exported: exportedCacheDir }, label: width === null ? folder.id : "builder" }));
  await rm(exportedCacheDir, { recursive: true, force: true });
  fmaRuns.push(await measureFmaPeak(fmaOptions));
  const fma = fmaRuns.reduce((a, b) => (b.gflops > a.gflops ? b : a));
  const fmaRate = fma.gflops * 1e9;
  figures["fma.gflops"] = round(fma.gflops);
  figures["fma.threads"] = fma.threads;
  figures["fma.method"] = fma.method;
  figures["fma.isa"] = fma.isa;
  figures["matmul.fractionOfFmaPeak"] = round(matmulRate / fmaRate);
  push({ what: "FMA peak, fp32", value: `${fma.gflops.toFixed(0)} GFLOP/s`, note: `${fma.note}; best of ${fmaRuns.flatMap((r) => r.trials).length} trials (${fmaRuns.map((r) => r.gflops.toFixed(0)).join(" before, ")} after the UNet); the ${n}^3 MatMul reached ${(matmulRate / fmaRate).toFixed(2)} of it` });
  const flop = builderFlop ?? (await countedAsRun(folder, { text: textFeeds, unet: unetFeeds(unet.io, unetInput(1)), vae: vaeFeeds }, path.join(cacheDir, "profiles"), push));
  const rate = (flop: number, ms: number) => flop / (ms / 1000);
  const put = (key: string, what: string, timed: { ms: number; matmulRate: number }, flop: number | null) => {
    const { ms } = timed;
    figures[`${key}.ms`] = round(ms);
    if (flop === null) {
      push({ what, value: `${ms.toFixed(1)} ms`, note: "FLOP unknown: see the FLOP row" });
      return null;
    }
    const ratio = rate(flop, ms) / timed.matmulRate;
    figures[`${key}.gflops`] = round(rate(flop, ms) / 1e9);
    figures[`${key}.overMatmul`] = round(ratio);
    figures[`${key}.neighbourMatmulGflops`] = round(timed.matmulRate / 1e9);
    figures[`${key}.fractionOfFmaPeak`] = round(rate(flop, ms) / fmaRate);
    push({
      what,
      value: `${ms.toFixed(1)} ms`,
      note: `${(flop / 1e9).toFixed(1)} GFLOP, ${(rate(flop, ms) / 1e9).toFixed(0)} GFLOP/s = ${ratio.toFixed(2)}x the MatMul beside it (${(timed.matmulRate / 1e9).toFixed(0)} GFLOP/s) = ${(rate(flop, ms) / fmaRate).toFixed(2)} of the FMA peak`,
    });
    return ratio;
  };
  const ratioOrNull = (x: number | null) => (x === null ? null : round(x));
  put("textEncoder", "text encoder [2, 77]", textRun, flop.textEncoder);
  figures["unet.rooflineRatio"] = ratioOrNull(put("unet.batch1", `UNet batch 1 at ${latent}x${latent}`, unet1, flop.unet1));
  figures["unet.rooflineRatioBatch2"] = ratioOrNull(put("unet.batch2", `UNet batch 2 (guidance)`, unet2, flop.unet2));
  // The issue's yardstick: the guidance (batch 2) rate over the FMA peak; batch 1 beside it.
  figures["unet.fractionOfFmaPeak"] = figures["unet.batch2.fractionOfFmaPeak"] ?? null;
  figures["unet.fractionOfFmaPeakBatch1"] = figures["unet.batch1.fractionOfFmaPeak"] ?? null;
  put("unet.exportedBatch2", `UNet batch 2, attention as exported (unfused)`, unet2Exported, flop.unet2);
  figures["unet.fusionSpeedupBatch2"] = round(unet2Exported.ms / unet2.ms);
  put("vaeDecoder", `VAE decoder ${latent}x${latent} -> ${size}x${size}`, vae, flop.vaeDecoder);

  // ---- a txt2img job through the daemon's engine, previews on; then one cancelled mid-step ----
  const unetRuns: number[] = [];
  const proto = (InferenceSession as unknown as { prototype: { run: (...args: unknown[]) => Promise<unknown> } }).prototype;
  const originalRun = proto.run;
  // Times the UNet's own session.run calls inside the job (the only session fed encoder_hidden_states).
  proto.run = async function (this: unknown, ...args: unknown[]) {
    const feeds = args[0] as Record<string, unknown>;
    if (!(unet.io.encoderHiddenStates in feeds)) return originalRun.apply(this, args);
    const start = now();
    try {
      return await originalRun.apply(this, args);
    } finally {
      unetRuns.push(now() - start);
    }
  };
  const modelsDir = path.join(cacheDir, "empty-models-dir");
  await mkdir(modelsDir, { recursive: true });
  // As the daemon runs it: models loaded through the optimized-model cache (attention fused).
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: optimizedCacheDir }) });
  try {
    const id = await engine.useFolder(folder.dir);
    const job: GenerationJob & { mode: "txt2img" } = {
      mode: "txt2img",
      model: id,
      prompt: "a lighthouse on a cliff at dusk, oil painting",
      negativePrompt: "",
      seed: 42,
      steps,
      guidance: 7.5,
      scheduler: "pndm",
      output: { width: size, height: size },
      size: { width: size, height: size },
      variations: 1,
      truncatePrompt: false,
      previews: true,
    };
    const stepAt: number[] = [];
    let previews = 0;
    let lastPreviewBytes = 0;
    const runStart = now();
    await engine.run(job, {
      signal: new AbortController().signal,
      onProgress: (p) => {
        if (p.stage === "denoising") {
          stepAt.push(now());
          if (p.preview) {
            previews++;
            lastPreviewBytes = p.preview.data.length;
          }
        }
      },
    });
    const jobMs = now() - runStart;
    const calls = stepAt.length;
    // Steady-state steps: from the first step's report to the last (a fresh session's first
    // run also plans its memory, so step 1 is slower and is reported apart).
    const loopUnet = unetRuns.slice(-(calls - 1));
    const stepMs = (stepAt.at(-1)! - stepAt[0]!) / (calls - 1);
    const unetInLoop = loopUnet.reduce((s, x) => s + x, 0) / (calls - 1);
    const overhead = stepMs - unetInLoop;
    figures["txt2img.firstUnetCallMs"] = round(unetRuns.at(-calls) ?? NaN);
    figures["txt2img.ms"] = round(jobMs);
    figures["txt2img.unetCalls"] = calls;
    figures["txt2img.stepMs"] = round(stepMs);
    figures["pipeline.unetMsPerStep"] = round(unetInLoop);
    figures["pipeline.overheadMsPerStep"] = round(overhead);
    figures["pipeline.overheadFraction"] = round(overhead / stepMs);
    push({ what: `txt2img ${size}x${size}, ${steps} steps, guidance`, value: `${(jobMs / 1000).toFixed(2)} s`, note: `${calls} UNet calls, ${stepMs.toFixed(1)} ms per step (load included in the total)` });
    push({ what: "pipeline overhead per step", value: `${overhead.toFixed(2)} ms`, note: `${((overhead / stepMs) * 100).toFixed(2)}% of a step (target <= 2%)` });

    // Preview: the cost of one latent-to-RGB picture, and when the first one arrives.
    const latents = randn(4 * latent * latent, "preview");
    const previewMs = (await timeIt(async () => {
      for (let i = 0; i < 100; i++) latentPreview(latents, latent, latent);
    })) / 100;
    figures["preview.ms"] = round(previewMs);
    figures["preview.costFraction"] = round(previewMs / stepMs);
    figures["preview.count"] = previews;
    figures["preview.bytes"] = lastPreviewBytes;
    push({ what: "preview (latent -> RGB)", value: `${previewMs.toFixed(3)} ms`, note: `${((previewMs / stepMs) * 100).toFixed(3)}% of a step (target < 1%), ${lastPreviewBytes} bytes` });

    // Cancel half-way through step 3: the job ends when that step's UNet call returns. Timed from
    // the moment the cancel was asked for, not from when the event loop got to it: onnxruntime
    // holds the main thread during a call, as it would hold a cancel message from the panel. The
    // UNet and VAE are loaded now, so this job also times start -> first preview for a NEW prompt
    // (the text encoder, let go after the last job, is loaded again from its optimized copy). Both
    // are in units of this job's own step 2 (the machine's speed drifts when it is shared).
    const controller = new AbortController();
    let requestedAt = NaN;
    let abortedAt = NaN;
    const reports: number[] = [];
    const cancelStart = now();
    const outcome = await engine
      .run(
        { ...job, prompt: `${job.prompt}, seen from the sea`, steps: Math.max(4, Math.min(steps, 6)) },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.stage !== "denoising" || !p.preview) return;
            reports.push(now());
            if (reports.length !== 2) return;
            const delay = (reports[1]! - reports[0]!) / 2;
            requestedAt = now() + delay;
            setTimeout(() => ((abortedAt = now()), controller.abort()), delay);
          },
        },
      )
      .then(
        () => "finished",
        (error: unknown) => (error as Error).name,
      );
    const endedAt = now();
    const ownStep = reports[1]! - reports[0]!;
    figures["cancel.outcome"] = outcome;
    figures["cancel.stepMs"] = round(ownStep);
    figures["cancel.latencyMs"] = round(endedAt - requestedAt);
    figures["cancel.latencySteps"] = round((endedAt - requestedAt) / ownStep);
    figures["cancel.heardAfterMs"] = round(abortedAt - requestedAt);
    figures["cancel.stepsRun"] = reports.length;
    figures["preview.firstPreviewMs"] = round(reports[0]! - cancelStart);
    figures["preview.firstPreviewSteps"] = round((reports[0]! - cancelStart) / ownStep);
    // The same prompt again (a new seed): its embeddings are remembered, no text encoder at all.
    const again = new AbortController();
    const againStart = now();
    let againFirst = NaN;
    await engine
      .run({ ...job, prompt: `${job.prompt}, seen from the sea`, seed: 43, steps: 4 }, { signal: again.signal, onProgress: (p) => void (p.stage === "denoising" && p.preview && Number.isNaN(againFirst) && ((againFirst = now()), again.abort())) })
      .catch(() => undefined);
    figures["preview.firstPreviewSamePromptSteps"] = round((againFirst - againStart) / ownStep);
    push({ what: "job start -> first preview, new prompt", value: `${(reports[0]! - cancelStart).toFixed(0)} ms`, note: `${figures["preview.firstPreviewSteps"]} steps: text encoder (loaded again) + step 1 (target <= 1 step)` });
    push({ what: "job start -> first preview, same prompt", value: `${(againFirst - againStart).toFixed(0)} ms`, note: `${figures["preview.firstPreviewSamePromptSteps"]} steps: step 1 alone, the prompt's embeddings remembered` });
    push({ what: "cancel -> job end (cancelled mid-step)", value: `${(endedAt - requestedAt).toFixed(0)} ms`, note: `${figures["cancel.latencySteps"]} steps, ${outcome}, ${reports.length} steps ran; the event loop heard it ${(abortedAt - requestedAt).toFixed(0)} ms late (target <= 1 step)` });
  } finally {
    proto.run = originalRun;
    await engine.dispose();
  }

  // ---- memory: each in a fresh process, so nothing the bench did before counts ----
  const unetWeights = await folderBytes(path.dirname(folder.paths.unet));
  const jobProbe = await probe(["job", folder.dir, optimizedCacheDir, String(size), "2"]);
  // The very first job on a machine: no optimized copies yet, so each model is optimised and written.
  const firstCacheDir = path.join(cacheDir, "optimized-cache-first-run");
  await rm(firstCacheDir, { recursive: true, force: true });
  const firstJobProbe = await probe(["job", folder.dir, firstCacheDir, String(size), "2"]);
  await rm(firstCacheDir, { recursive: true, force: true });
  const fusedProbe = await probe(["unet", folder.dir, "fused", String(latent), String(dim), optimizedCacheDir]);
  const exportedProbe = await probe(["unet", folder.dir, "exported", String(latent), String(dim), optimizedCacheDir]);
  // The float16 inpainting replica's job beside its float32 original's (the builder's replicas: not with --model).
  const float16 = width === null ? null : await benchFloat16Memory({ cacheDir, width, size, steps: 2, tokenizerDir, log: (line) => console.log(line) });
  const benchPeak = process.resourceUsage().maxRSS * 1024;
  figures["memory.unetWeightsMiB"] = round(unetWeights / 2 ** 20);
  figures["memory.jobPeakRssMiB"] = round(jobProbe.peakRssBytes / 2 ** 20);
  figures["memory.peakRssOverWeights"] = round(jobProbe.peakRssBytes / folder.weightsBytes);
  figures["memory.processStartRssMiB"] = round(jobProbe.rssBeforeBytes / 2 ** 20);
  figures["memory.firstRunJobPeakRssMiB"] = round(firstJobProbe.peakRssBytes / 2 ** 20);
  figures["memory.firstRunPeakRssOverWeights"] = round(firstJobProbe.peakRssBytes / folder.weightsBytes);
  figures["memory.unetFusedPeakRssMiB"] = round(fusedProbe.peakRssBytes / 2 ** 20);
  figures["memory.unetExportedPeakRssMiB"] = round(exportedProbe.peakRssBytes / 2 ** 20);
  figures["memory.unetFusedOverWeights"] = round(fusedProbe.peakRssBytes / unetWeights);
  figures["memory.unetExportedOverWeights"] = round(exportedProbe.peakRssBytes / unetWeights);
  figures["memory.benchProcessPeakRssMiB"] = round(benchPeak / 2 ** 20);
  push({ what: "peak RSS / weight bytes, txt2img job", value: `${(jobProbe.peakRssBytes / folder.weightsBytes).toFixed(2)}x`, note: `${(jobProbe.peakRssBytes / 2 ** 30).toFixed(2)} GiB peak for ${(folder.weightsBytes / 2 ** 30).toFixed(2)} GiB of weights, a fresh daemon-like process (${(jobProbe.rssBeforeBytes / 2 ** 20).toFixed(0)} MiB at start) (target <= 1.3x)` });
  push({ what: "peak RSS / weight bytes, first job on a machine", value: `${(firstJobProbe.peakRssBytes / folder.weightsBytes).toFixed(2)}x`, note: `${(firstJobProbe.peakRssBytes / 2 ** 30).toFixed(2)} GiB: each model optimised and its copy written first` });
  push({ what: "peak RSS / weight bytes, one UNet call at batch 2", value: `${(fusedProbe.peakRssBytes / unetWeights).toFixed(2)}x`, note: `${(fusedProbe.peakRssBytes / 2 ** 30).toFixed(2)} GiB; as exported (attention unfused): ${(exportedProbe.peakRssBytes / 2 ** 30).toFixed(2)} GiB = ${(exportedProbe.peakRssBytes / unetWeights).toFixed(2)}x` });
  if (float16) {
    Object.assign(figures, float16.figures);
    for (const row of float16.rows) push(row);
  }

  const what = width === null ? `${folder.id} (${folder.dir})` : `SD 1.5 architecture at width ${width}`;
  printSection(`Engine: ${what} (${describe(folder)}), ${size}x${size}, onnxruntime CPU`, rows);
  return figures;
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) if (entry.isFile()) total += (await stat(path.join(dir, entry.name))).size;
  return total;
}

function describe(folder: ModelFolder): string {
  return `${(folder.weightsBytes / 2 ** 20).toFixed(0)} MiB of weights`;
}

/**
 * FLOP of a folder's networks for the bench's calls, counted from one unoptimised run of each
 * (./graph-flop); the UNet's batch 2 is twice its batch 1. A part that cannot be counted (e.g. a
 * float16 graph that the CPU provider cannot run as it is) is null, and said so.
 */
async function countedAsRun(
  folder: ModelFolder,
  feeds: { text: Record<string, Tensor>; unet: Record<string, Tensor>; vae: Record<string, Tensor> },
  workDir: string,
  push: (row: Row) => void,
): Promise<{ textEncoder: number | null; unet1: number | null; unet2: number | null; vaeDecoder: number | null }> {
  const start = now();
  const problems: string[] = [];
  const count = async (part: string, file: string, partFeeds: Record<string, Tensor>) =>
    profiledFlop(file, partFeeds, workDir).catch((error: unknown) => (problems.push(`${part}: ${firstLine(error)}`), null));
  const textEncoder = await count("text encoder", folder.paths.textEncoder, feeds.text);
  const unet1 = await count("UNet", folder.paths.unet, feeds.unet);
  const vaeDecoder = await count("VAE decoder", folder.paths.vaeDecoder, feeds.vae);
  const gflop = (x: number | null) => (x === null ? "?" : (x / 1e9).toPrecision(3));
  push({
    what: "FLOP per call, counted as run",
    value: `${((now() - start) / 1000).toFixed(1)} s`,
    note: `one unoptimised run each, Conv/MatMul/Gemm from onnxruntime's profile: text encoder ${gflop(textEncoder)}, UNet batch 1 ${gflop(unet1)}, VAE decoder ${gflop(vaeDecoder)} GFLOP${problems.length ? `; not counted: ${problems.join("; ")}` : ""}`,
  });
  return { textEncoder, unet1, unet2: unet1 === null ? null : 2 * unet1, vaeDecoder };
}
