/**
 * Peak memory of an inpaint job on the float16 inpainting replica (every part a float16 export,
 * as RanaLLC/stable-diffusion-v1-5-inpainting-onnx-fp16 ships it) beside the same job on its
 * float32 original. On the CPU the daemon runs a float16 part from a float32 copy it writes once
 * into its cache (daemon/models/float32-copies.ts): the first job on a machine writes the copies
 * (and their optimized copies), later jobs read them. Each job runs in a fresh process.
 */
import { cp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { ensureModelFolder, folderName, type PartName } from "../onnx-builder/folder";
import { toFloat16 } from "../replicas";
import { probe } from "./probe";
import type { Figures, Row } from "./report";

/** Bumped whenever the float16 conversion changes, so stale cached folders are rebuilt. */
const FLOAT16_VERSION = 1;
const PARTS: PartName[] = ["text_encoder", "unet", "vae_encoder", "vae_decoder"];
const BUILD_STAMP = "underpaint-build.json";
const FLOAT16_STAMP = "underpaint-float16.json";

export interface Float16MemoryOptions {
  /** The bench's model cache (.cache/bench-models). */
  cacheDir: string;
  width: number;
  tokenizerDir: string;
  /** Side of the image and of the job's pixel budget. */
  size: number;
  steps: number;
  log?: (line: string) => void;
}

/**
 * A float16 export of the float32 folder `source`, at `<cacheDir>/<its name>-fp16`: the folder
 * copied, then each part rewritten in float16 (weights kept where they were). Made again only
 * when the source's build stamp or FLOAT16_VERSION changes; the stamp is written last.
 */
export async function ensureFloat16Folder(source: string, cacheDir: string): Promise<{ dir: string; built: boolean }> {
  const dir = path.join(cacheDir, `${path.basename(source)}-fp16`);
  const stamp = JSON.stringify({ version: FLOAT16_VERSION, source: await readFile(path.join(source, BUILD_STAMP), "utf8") });
  if ((await readFile(path.join(dir, FLOAT16_STAMP), "utf8").catch(() => null)) === stamp) return { dir, built: false };
  await rm(dir, { recursive: true, force: true });
  await cp(source, dir, { recursive: true, filter: (file) => path.basename(file) !== BUILD_STAMP });
  for (const part of PARTS) await toFloat16(path.join(dir, part));
  await writeFile(path.join(dir, FLOAT16_STAMP), stamp);
  return { dir, built: true };
}

export async function benchFloat16Memory(options: Float16MemoryOptions): Promise<{ figures: Figures; rows: Row[] }> {
  const { cacheDir, width, size, steps } = options;
  const log = options.log ?? (() => {});
  const fp32 = await ensureModelFolder(cacheDir, { width, inChannels: 9, tokenizerDir: options.tokenizerDir, log });
  const fp16 = await ensureFloat16Folder(fp32.dir, cacheDir);
  if (fp16.built) log(`  wrote ${path.basename(fp16.dir)} (every part in float16)`);
  const [fp32Bytes, fp16Bytes] = [(await loadModelFolder(fp32.dir)).weightsBytes, (await loadModelFolder(fp16.dir)).weightsBytes];

  // Each folder's job in a daemon cache of its own, emptied first: the first job writes the
  // optimized copies (and, for float16, the float32 copies first), the second reads them.
  const job = async (folder: string, label: string) => {
    const jobCache = path.join(cacheDir, `${folderName(width, 9)}-${label}-cache`);
    await rm(jobCache, { recursive: true, force: true });
    const first = await probe(["inpaint", folder, jobCache, String(size), String(steps)]);
    // Where the daemon keeps float32 copies for a cache at jobCache (see ModelSessions): what the first job wrote.
    const float32Copies = (await readdir(path.join(jobCache, "float32")).catch(() => [])).filter((name) => !name.startsWith(".")).length;
    const later = await probe(["inpaint", folder, jobCache, String(size), String(steps)]);
    await rm(jobCache, { recursive: true, force: true });
    return { first: first.peakRssBytes, later: later.peakRssBytes, float32Copies };
  };
  const a = await job(fp32.dir, "fp32");
  const b = await job(fp16.dir, "fp16");

  const mib = (bytes: number) => Number((bytes / 2 ** 20).toPrecision(3));
  const ratio = (x: number, y: number) => Number((x / y).toPrecision(3));
  const figures: Figures = {
    "memory.inpaintFp32WeightsMiB": mib(fp32Bytes),
    "memory.inpaintFp16WeightsMiB": mib(fp16Bytes),
    "memory.inpaintFp32FirstRunPeakRssMiB": mib(a.first),
    "memory.inpaintFp32PeakRssMiB": mib(a.later),
    "memory.inpaintFp16FirstRunPeakRssMiB": mib(b.first),
    "memory.inpaintFp16PeakRssMiB": mib(b.later),
    "memory.inpaintFp16OverFp32": ratio(b.later, a.later),
    "memory.inpaintFp16FirstRunOverFp32FirstRun": ratio(b.first, a.first),
    "memory.inpaintFp16Float32CopiesWritten": b.float32Copies,
  };
  const inMiB = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
  const times = (x: number, y: number) => `${(x / y).toFixed(2)}x`;
  const job1 = `inpaint ${size}x${size}, ${steps} steps`;
  const rows: Row[] = [
    {
      what: `peak RSS, ${job1}: fp16 / fp32 replica`,
      value: times(b.later, a.later),
      note: `fp16 ${inMiB(b.later)} (${inMiB(fp16Bytes)} of float16 weights, run from their float32 copies) against fp32 ${inMiB(a.later)} (${inMiB(fp32Bytes)} of weights); copies already in the cache`,
    },
    {
      what: `peak RSS, first ${job1} on a machine: fp16 / fp32`,
      value: times(b.first, a.first),
      note: `fp16 ${inMiB(b.first)}: ${b.float32Copies} float32 copies written, then optimized, during the job; fp32 ${inMiB(a.first)}: its optimized copies written`,
    },
  ];
  return { figures, rows };
}
