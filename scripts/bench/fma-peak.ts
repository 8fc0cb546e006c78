/**
 * The machine's fp32 FMA peak, measured in the same run as what is compared with it: the C loop
 * in fma-peak.c, compiled here with the machine's own compiler (-O3 -march=native) into
 * .cache/bench-fma/ and reused while the source and compiler are the same, one thread per core.
 * Without a C compiler, a WebAssembly SIMD loop (f32x4 mul + add, one worker per core) stands in:
 * it says so, and it cannot reach an AVX-512 (or even AVX2 FMA) peak.
 *
 * UNDERPAINT_BENCH_CC names the compiler to use; "none" forces the WebAssembly fallback.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Worker } from "node:worker_threads";
import { z } from "zod";

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = path.join(here, "fma-peak.c");

export interface FmaPeak {
  /** Best trial, all threads together. */
  gflops: number;
  threads: number;
  method: "native" | "wasm";
  /** avx512, avx2-fma, generic-128 (native) or wasm-simd128. */
  isa: string;
  trials: number[];
  /** How it was measured, in a few words, for the printed row. */
  note: string;
}

export interface FmaOptions {
  /** Where the compiled helper is kept (a .cache folder). */
  cacheDir: string;
  threads: number;
  /** Length of one trial. */
  millis?: number;
  trials?: number;
  /** The compiler (default: UNDERPAINT_BENCH_CC, else the first of cc, gcc, clang that runs); "none": the wasm fallback. */
  compiler?: string;
}

const NativeResult = z.object({ isa: z.string(), lanes: z.number(), accumulators: z.number(), threads: z.number(), trials: z.array(z.number()), gflops: z.number().positive() });

export async function measureFmaPeak(options: FmaOptions): Promise<FmaPeak> {
  const millis = options.millis ?? 250;
  const trials = options.trials ?? 5;
  const binary = await compiledHelper(options.cacheDir, options.compiler ?? process.env.UNDERPAINT_BENCH_CC);
  if (!binary) return wasmPeak(options.threads, millis, trials);
  const { stdout } = await run(binary.file, [String(options.threads), String(millis), String(trials)], { timeout: 60_000 });
  const result = NativeResult.parse(JSON.parse(stdout.trim()));
  return {
    gflops: result.gflops,
    threads: result.threads,
    method: "native",
    isa: result.isa,
    trials: result.trials,
    note: `${binary.compiler} -O3${binary.native ? " -march=native" : ""}, ${result.isa}, ${result.accumulators} independent accumulators x ${result.lanes} lanes, ${result.threads} threads`,
  };
}

/** The helper compiled for this machine, or null when no C compiler works. */
async function compiledHelper(cacheDir: string, wanted: string | undefined): Promise<{ file: string; compiler: string; native: boolean } | null> {
  if (wanted?.trim().toLowerCase() === "none") return null;
  const source = await readFile(SOURCE);
  for (const compiler of wanted ? [wanted] : ["cc", "gcc", "clang"]) {
    const version = await run(compiler, ["--version"], { timeout: 10_000 }).then(
      (r) => r.stdout,
      () => null,
    );
    if (version === null) continue;
    // -march=native first; a compiler that refuses it (some Apple clangs on Arm) builds without it.
    for (const flags of [["-O3", "-march=native"], ["-O3"]]) {
      const key = createHash("sha256").update(source).update(compiler).update(version).update(flags.join(" ")).digest("hex").slice(0, 16);
      const file = path.join(cacheDir, `fma-peak-${key}${process.platform === "win32" ? ".exe" : ""}`);
      const native = flags.includes("-march=native");
      if (await stat(file).catch(() => null)) return { file, compiler, native };
      await mkdir(cacheDir, { recursive: true });
      const tmp = `${file}.tmp-${process.pid}`;
      try {
        await run(compiler, [...flags, "-pthread", "-o", tmp, SOURCE], { timeout: 60_000 });
        await rename(tmp, file);
        return { file, compiler, native };
      } catch {
        await rm(tmp, { force: true });
      }
    }
  }
  return null;
}

// ---- the WebAssembly SIMD fallback ----

const ACCUMULATORS = 16;
const LANES = 4;

/** A module exporting run(iterations: i32) -> f32: ACCUMULATORS independent f32x4 chains of acc = acc * b + c. */
export function fmaWasm(): Uint8Array<ArrayBuffer> {
  const uleb = (n: number): number[] => {
    const out: number[] = [];
    do {
      let byte = n & 0x7f;
      n >>>= 7;
      if (n !== 0) byte |= 0x80;
      out.push(byte);
    } while (n !== 0);
    return out;
  };
  const f32 = (x: number) => [0x43, ...new Uint8Array(Float32Array.of(x).buffer)];
  const simd = (op: number) => [0xfd, ...uleb(op)];
  const [SPLAT, EXTRACT, ADD, MUL] = [0x13, 0x1f, 0xe4, 0xe6];
  const [GET, SET, TEE] = [0x20, 0x21, 0x22];
  const acc = (i: number) => 1 + i;
  const B = 1 + ACCUMULATORS;
  const C = B + 1;
  const body: number[] = [];
  for (let i = 0; i < ACCUMULATORS; i++) body.push(...f32(i + 1), ...simd(SPLAT), SET, acc(i));
  body.push(...f32(0.9999999), ...simd(SPLAT), SET, B, ...f32(1e-7), ...simd(SPLAT), SET, C);
  body.push(0x03, 0x40); // loop
  for (let i = 0; i < ACCUMULATORS; i++) body.push(GET, acc(i), GET, B, ...simd(MUL), GET, C, ...simd(ADD), SET, acc(i));
  body.push(GET, 0, 0x41, 1, 0x6b, TEE, 0, 0x0d, 0, 0x0b); // iterations -= 1; br_if loop; end
  // The result reads every accumulator, so none of the chains can be dropped.
  body.push(GET, acc(0), ...simd(EXTRACT), 0);
  for (let i = 1; i < ACCUMULATORS; i++) body.push(GET, acc(i), ...simd(EXTRACT), 0, 0x92);
  body.push(0x0b);
  const locals = [1, ...uleb(ACCUMULATORS + 2), 0x7b]; // one group of v128 locals
  const code = [...locals, ...body];
  const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
  const name = [..."run"].map((c) => c.charCodeAt(0));
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 1, 0x7f, 1, 0x7d]), // (i32) -> f32
    ...section(3, [1, 0]),
    ...section(7, [1, name.length, ...name, 0x00, 0]),
    ...section(10, [1, ...uleb(code.length), ...code]),
  ]);
}

/** Runs in each worker: waits at the shared barrier, runs the loop, reports its own seconds. */
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const run = new WebAssembly.Instance(new WebAssembly.Module(workerData.wasm)).exports.run;
const barrier = new Int32Array(workerData.barrier);
parentPort.on("message", ({ iterations, generation }) => {
  Atomics.add(barrier, 0, 1);
  while (Atomics.load(barrier, 0) < generation * workerData.threads) {}
  const start = performance.now();
  const check = run(iterations);
  parentPort.postMessage({ seconds: (performance.now() - start) / 1000, check });
});
`;

async function wasmPeak(threads: number, millis: number, trials: number): Promise<FmaPeak> {
  const wasm = fmaWasm();
  const flopPerIteration = 2 * ACCUMULATORS * LANES;
  // Calibrated on this thread: iterations for one trial of `millis`.
  const run1 = (new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports as { run: (n: number) => number }).run;
  let iterations = 1 << 16;
  let seconds = 0;
  for (;;) {
    const start = performance.now();
    run1(iterations);
    seconds = (performance.now() - start) / 1000;
    if (seconds >= millis / 1e4 || iterations >= 2 ** 30) break;
    iterations *= 4;
  }
  iterations = Math.min(2 ** 31 - 1, Math.ceil((iterations * (millis / 1000)) / seconds));
  const barrier = new SharedArrayBuffer(4);
  const workers = Array.from({ length: threads }, () => new Worker(WORKER, { eval: true, workerData: { wasm, barrier, threads } }));
  const rates: number[] = [];
  try {
    for (let generation = 1; generation <= trials; generation++) {
      const done = workers.map((w) => new Promise<{ seconds: number }>((resolve, reject) => (w.once("message", resolve), w.once("error", reject))));
      for (const w of workers) w.postMessage({ iterations, generation });
      const times = await Promise.all(done);
      rates.push(times.reduce((sum, t) => sum + (iterations * flopPerIteration) / t.seconds, 0) / 1e9);
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    gflops: round(Math.max(...rates)),
    threads,
    method: "wasm",
    isa: "wasm-simd128",
    trials: rates.map(round),
    note: `no C compiler: WebAssembly SIMD fallback (f32x4 mul + add, ${ACCUMULATORS} accumulators, ${threads} worker${threads === 1 ? "" : "s"}); it cannot reach the AVX-512 peak`,
  };
}
