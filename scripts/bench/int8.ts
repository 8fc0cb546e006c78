/**
 * The int8 UNet (`--unet-int8`, daemon/models/int8-unets.ts) against the float32 one, both loaded
 * as the daemon loads them (ModelSessions, attention fused, optimized-model cache):
 * - speed: the builder's SD-1.5-architecture UNet (full size; the quick width with --quick), batch 2
 *   (guidance), each run between two large MatMuls, so that a shared machine's load, which slows
 *   both alike, cancels out of the ratio;
 * - numbers: every UNet call of the fixtures' tiny-sd reference cases, fed the recorded inputs,
 *   int8 against float32 and float32 against diffusers' recorded output, in the units of the
 *   reference tolerance (max abs error / max(1, max|reference|); fp32 must be within 2e-5).
 * `npx tsx scripts/bench/int8.ts [--quick]` runs this section alone and prints its figures.
 */
import { readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { sessionOptionsFor } from "../../daemon/models/execution-provider";
import type { QuantizeOptions } from "../../daemon/models/int8-quantize";
import { Int8Unets } from "../../daemon/models/int8-unets";
import { loadModelFolder, type ModelFolder } from "../../daemon/models/model-folder";
import { ModelSessions } from "../../daemon/models/model-sessions";
import { OptimizedModelCache } from "../../daemon/models/optimized-models";
import { makeTensor, makeTimestep } from "../../daemon/models/session-io";
import { ensureModelFolder } from "../onnx-builder/folder";
import { fillRandom } from "../onnx-builder/graph";
import { matmul } from "../onnx-builder/sd15";
import { maxAbs } from "../parity/compare";
import { ReferenceCase, ReferenceIndex } from "../parity/reference";
import { unetFeeds } from "./feeds";
import { printSection, timeIt, type Figures, type Row } from "./report";

const round = (x: number, digits = 3) => Number(x.toPrecision(digits));
const randn = (n: number, name: string) => {
  const a = new Float32Array(n);
  fillRandom(a, name, 1);
  return a;
};

export interface Int8BenchOptions {
  quick: boolean;
}

export async function benchInt8(root: string, fixtures: string, options: Int8BenchOptions): Promise<Figures> {
  const { quick } = options;
  const width = quick ? 0.125 : 1;
  const latent = quick ? 32 : 64;
  const runs = quick ? 2 : 3;
  const cacheDir = path.join(root, ".cache", "bench-models");
  const built = await ensureModelFolder(cacheDir, { width, tokenizerDir: path.join(fixtures, "tiny-sd", "tokenizer"), log: (line) => console.log(line) });
  const folder = await loadModelFolder(built.dir);
  const figures: Figures = { "unet.int8.modelWidth": width, "unet.int8.latent": latent, "unet.int8.batch": 2 };
  const rows: Row[] = [];
  const push = (row: Row) => {
    rows.push(row);
    if (!quick) console.log(`  [int8] ${row.what}: ${row.value}${row.note ? ` (${row.note})` : ""}`);
  };

  // ---- speed: float32, then int8, one loaded at a time (a full UNet is 3.4 GB) ----
  const n = 2048;
  const matmulFile = path.join(cacheDir, `matmul-${n}`, "model.onnx");
  if (!(await stat(matmulFile).catch(() => null))) await matmul(n).write(matmulFile);
  const mm = await InferenceSession.create(matmulFile, sessionOptionsFor("cpu"));
  const a = new Tensor("float32", randn(n * n, "a"), [n, n]);
  const runMatmul = async () => void (await mm.run({ a }));
  const int8Dir = path.join(cacheDir, "int8-bench");
  await rm(int8Dir, { recursive: true, force: true });
  const context = (await textWidth(folder)) ?? 768;
  const input = { batch: 2, channels: folder.unetInChannels, latent, sample: randn(2 * folder.unetInChannels * latent * latent, "sample"), context: randn(2 * 77 * context, "context") };
  const timeUnet = async (label: string, unetInt8: Int8Unets | null) => {
    // Caches of its own, emptied first: the int8 copy and both optimized copies are written here.
    const sessions = new ModelSessions(folder, { devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: path.join(int8Dir, label) }), unetInt8 });
    const loadStart = performance.now();
    const unet = await sessions.unet();
    const loadMs = performance.now() - loadStart;
    const feeds = unetFeeds(unet.io, input);
    await unet.session.run(feeds);
    let best = { ms: Infinity, matmulMs: Infinity };
    for (let i = 0; i < runs; i++) {
      const before = await timeIt(runMatmul);
      const ms = await timeIt(async () => void (await unet.session.run(feeds)));
      const after = await timeIt(runMatmul);
      if (ms < best.ms) best = { ms, matmulMs: (before + after) / 2 };
    }
    await sessions.release();
    return { ...best, loadMs };
  };
  const fp32 = await timeUnet("fp32", null);
  const int8 = await timeUnet("int8", new Int8Unets(path.join(int8Dir, "int8-copies")));
  // Convs quantized too (ConvInteger): not the option's default, measured (at full size) to show why.
  const convs = quick ? null : await timeUnet("int8-convs", new Int8Unets(path.join(int8Dir, "int8-copies-convs"), undefined, { convs: true }));
  await mm.release();
  // Each time over its neighbouring MatMuls' time: the machine's load at that moment divides out.
  const speedup = fp32.ms / fp32.matmulMs / (int8.ms / int8.matmulMs);
  figures["unet.int8SpeedupOverFp32"] = round(speedup);
  figures["unet.int8SpeedupOverFp32Raw"] = round(fp32.ms / int8.ms);
  const convsSpeedup = convs ? fp32.ms / fp32.matmulMs / (convs.ms / convs.matmulMs) : null;
  figures["unet.int8ConvsSpeedupOverFp32"] = convsSpeedup === null ? null : round(convsSpeedup);
  figures["unet.int8.convsMs"] = convs ? round(convs.ms) : null;
  figures["unet.int8.fp32Ms"] = round(fp32.ms);
  figures["unet.int8.int8Ms"] = round(int8.ms);
  figures["unet.int8.fp32LoadMs"] = round(fp32.loadMs);
  figures["unet.int8.int8FirstLoadMs"] = round(int8.loadMs);
  const shape = `${width === 1 ? "full-size" : `width ${width}`} SD 1.5 UNet, batch 2 at ${latent}x${latent}`;
  push({ what: `UNet float32 (${shape})`, value: `${fp32.ms.toFixed(0)} ms`, note: `MatMul beside it ${fp32.matmulMs.toFixed(0)} ms; first load ${fp32.loadMs.toFixed(0)} ms` });
  push({
    what: `UNet int8 (${shape})`,
    value: `${int8.ms.toFixed(0)} ms`,
    note: `MatMul beside it ${int8.matmulMs.toFixed(0)} ms; ${speedup.toFixed(2)}x float32's speed (${(fp32.ms / int8.ms).toFixed(2)}x by the clock); first load, quantizing included, ${int8.loadMs.toFixed(0)} ms`,
  });
  if (convs && convsSpeedup !== null) {
    push({ what: `UNet int8, Convs too (${shape})`, value: `${convs.ms.toFixed(0)} ms`, note: `MatMul beside it ${convs.matmulMs.toFixed(0)} ms; ${convsSpeedup.toFixed(2)}x float32's speed (not the option's default)` });
  }
  await rm(int8Dir, { recursive: true, force: true });

  // ---- numbers: the reference cases' UNet calls ----
  const error = await referenceErrors(fixtures, path.join(cacheDir, "int8-reference"));
  figures["unet.int8MaxAbsErrorVsFp32"] = round(error.int8VsFp32);
  figures["unet.int8MaxAbsErrorVsFp32Raw"] = round(error.int8VsFp32Raw);
  figures["unet.fp32MaxAbsErrorVsReference"] = round(error.fp32VsReference);
  figures["unet.int8MaxAbsErrorVsReference"] = round(error.int8VsReference);
  figures["unet.int8.referenceCalls"] = error.calls;
  const convsError = quick ? null : await referenceErrors(fixtures, path.join(cacheDir, "int8-reference"), { convs: true });
  figures["unet.int8ConvsMaxAbsErrorVsFp32"] = convsError ? round(convsError.int8VsFp32) : null;
  push({
    what: `int8 vs float32, ${error.calls} UNet calls of ${error.cases} tiny-sd reference cases`,
    value: error.int8VsFp32.toExponential(2),
    note: `max abs error / max(1, max|out|), the reference tolerance's unit (2e-5); float32 vs diffusers ${error.fp32VsReference.toExponential(2)}, int8 vs diffusers ${error.int8VsReference.toExponential(2)}; raw max abs ${error.int8VsFp32Raw.toExponential(2)}${convsError ? `; with Convs too ${convsError.int8VsFp32.toExponential(2)}` : ""}`,
  });
  printSection("int8 UNet (--unet-int8) against float32", rows);
  return figures;
}

/** The text encoder's output width (the UNet's context width), from the builder's folder. */
async function textWidth(folder: ModelFolder): Promise<number | null> {
  const sessions = new ModelSessions(folder, { devices: ["cpu"] });
  try {
    const text = await sessions.textEncoder();
    const ids = makeTensor(text.io.inputIdsType, Int32Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : 49407)), [1, 77]);
    return (await text.session.run({ [text.io.inputIds]: ids }))[text.io.hiddenState]!.dims[2] ?? null;
  } finally {
    await sessions.release();
  }
}

interface ReferenceErrors {
  cases: number;
  calls: number;
  int8VsFp32: number;
  int8VsFp32Raw: number;
  fp32VsReference: number;
  int8VsReference: number;
}

/** Every recorded UNet call of the tiny-sd cases through the float32 and the int8 UNet, as loaded by the daemon. */
export async function referenceErrors(fixtures: string, cacheDir: string, quantize: QuantizeOptions = {}): Promise<ReferenceErrors> {
  const referenceDir = path.join(fixtures, "reference");
  const index = ReferenceIndex.parse(JSON.parse(await readFile(path.join(referenceDir, "index.json"), "utf8")));
  const folder = await loadModelFolder(path.join(fixtures, "tiny-sd"), { devices: ["cpu"] });
  await rm(cacheDir, { recursive: true, force: true });
  const fp32 = new ModelSessions(folder, { devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: path.join(cacheDir, "fp32") }) });
  const int8 = new ModelSessions(folder, { devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: path.join(cacheDir, "int8") }), unetInt8: new Int8Unets(path.join(cacheDir, "int8-copies"), undefined, quantize) });
  const result: ReferenceErrors = { cases: 0, calls: 0, int8VsFp32: 0, int8VsFp32Raw: 0, fp32VsReference: 0, int8VsReference: 0 };
  try {
    const [a, b] = [await fp32.unet(), await int8.unet()];
    for (const entry of index.cases) {
      const reference = await ReferenceCase.load(path.join(referenceDir, entry.dir));
      if (reference.manifest.model !== "tiny-sd") continue;
      result.cases++;
      const sample = await reference.tensor("unet_sample");
      const timesteps = await reference.floats("unet_timestep");
      const recorded = await reference.floats("unet_out_sample");
      const [calls, batch, channels, h, w] = sample.shape as [number, number, number, number, number];
      const prompt = await reference.floats("prompt_embeds");
      // With guidance the UNet's batch is [negative; prompt], as the pipeline builds it.
      const context = await contextFor(reference, prompt, batch);
      const width = context.length / (batch * 77);
      const per = batch * channels * h * w;
      const outPer = recorded.length / calls;
      for (let i = 0; i < calls; i++) {
        const x = (sample.data as Float32Array).subarray(i * per, (i + 1) * per);
        const feedsOf = (io: typeof a.io) => ({
          [io.sample]: makeTensor(io.sampleType, x, [batch, channels, h, w]),
          [io.timestep]: makeTimestep(io, timesteps[i]!, batch),
          [io.encoderHiddenStates]: makeTensor(io.encoderHiddenStatesType, context, [batch, 77, width]),
        });
        const outA = (await a.session.run(feedsOf(a.io)))[a.io.output]!.data as Float32Array;
        const outB = (await b.session.run(feedsOf(b.io)))[b.io.output]!.data as Float32Array;
        const ref = recorded.subarray(i * outPer, (i + 1) * outPer);
        const scale = Math.max(1, maxAbs(ref));
        const raw = maxDiff(outB, outA);
        result.int8VsFp32Raw = Math.max(result.int8VsFp32Raw, raw);
        result.int8VsFp32 = Math.max(result.int8VsFp32, raw / Math.max(1, maxAbs(outA)));
        result.fp32VsReference = Math.max(result.fp32VsReference, maxDiff(outA, ref) / scale);
        result.int8VsReference = Math.max(result.int8VsReference, maxDiff(outB, ref) / scale);
        result.calls++;
      }
    }
  } finally {
    await fp32.release();
    await int8.release();
    await rm(cacheDir, { recursive: true, force: true });
  }
  return result;
}

/** The UNet's encoder_hidden_states for a batch: the prompt's embeddings, preceded by the negative ones with guidance. */
async function contextFor(reference: ReferenceCase, prompt: Float32Array, batch: number): Promise<Float32Array> {
  const promptBatch = reference.manifest.tensors.prompt_embeds!.shape[0]!;
  if (batch === promptBatch) return prompt;
  const negative = await reference.floats("negative_embeds");
  const both = new Float32Array(negative.length + prompt.length);
  both.set(negative, 0);
  both.set(prompt, negative.length);
  return both;
}

function maxDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
  const fixtures = process.env.UNDERPAINT_FIXTURES ?? path.resolve(root, "..", "shared", "fixtures");
  console.log(JSON.stringify(await benchInt8(root, fixtures, { quick: process.argv.includes("--quick") }), null, 2));
}
