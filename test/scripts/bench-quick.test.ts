import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { SDXL_QUICK_WIDTH } from "../../scripts/bench/sdxl";
import { ROOT, TSX } from "../helpers/paths";

const run = promisify(execFile);

const temps: string[] = [];
afterAll(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

/** Figures the issue names; each must be a finite number (no wall-clock thresholds: this machine is shared). */
const REQUIRED = [
  "unet.rooflineRatio",
  "pipeline.overheadFraction",
  "memory.peakRssOverWeights",
  "cancel.latencySteps",
  "preview.firstPreviewSteps",
  "protocol.speedupVsBase64Png",
  "protocol.fractionOfTcp",
  "protocol.daemonFractionOfTcp",
  "matmul.gflops",
  "textEncoder.ms",
  "unet.batch1.ms",
  "unet.batch2.ms",
  "vaeDecoder.ms",
  "txt2img.stepMs",
  "load.coldUnetMs",
  "load.secondUnetMs",
  "preview.costFraction",
  "counts.unet.params",
  "transfer.inpaintSentBytes",
  "transfer.inpaintReturnedBytes",
  "memory.inpaintFp32PeakRssMiB",
  "memory.inpaintFp16PeakRssMiB",
  "memory.inpaintFp16FirstRunPeakRssMiB",
  "memory.inpaintFp16OverFp32",
  "memory.inpaintFp16FirstRunOverFp32FirstRun",
  "fma.gflops",
  "unet.fractionOfFmaPeak",
  "unet.fractionOfFmaPeakBatch1",
  "matmul.fractionOfFmaPeak",
  "structure.unet.transposes",
  "structure.unet.transposesFused",
  "structure.exportUnet.transposes",
  "structure.tinyLayoutUnet.transposes",
  "draft.secondsPerImage",
  "preview.taesdMs",
  "preview.taesdFractionOfStep",
  "unet.int8SpeedupOverFp32",
  "unet.int8MaxAbsErrorVsFp32",
  "unet.fp32MaxAbsErrorVsReference",
  "preview.taesdFullDecodeMs",
  "sdxl.secondsPerStep",
  "sdxl.peakRssGiB",
  "sdxl.weightsGiB",
  "sdxl.matmulGflops",
  "sdxl.textEncodersSeconds",
  "sdxl.vaeDecodeSeconds",
];

describe("npm run bench -- --quick", () => {
  it("runs every section on reduced-width models and writes the figures", { timeout: 420_000 }, async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), "underpaint-bench-"));
    temps.push(out);
    const { stdout } = await run(TSX, ["scripts/bench/index.ts", "--quick"], {
      cwd: ROOT,
      env: { ...process.env, UNDERPAINT_BENCH_ROOT: out },
      maxBuffer: 16 << 20,
      timeout: 400_000,
    });
    expect(stdout).toContain("## Engine");
    const results = JSON.parse(await readFile(path.join(out, "bench", "results.json"), "utf8")) as Record<string, unknown>;
    expect(results["bench.quick"]).toBe(true);
    for (const key of REQUIRED) {
      expect(typeof results[key], key).toBe("number");
      expect(Number.isFinite(results[key] as number), key).toBe(true);
    }
    expect(results["cancel.outcome"]).toBe("CancelledError");
    // SDXL's section at the quick width, with the full-size shapes: one guidance step on 128x128 latents, decoded to 1024x1024.
    expect(stdout).toContain("## SDXL");
    expect([results["sdxl.modelWidth"], results["sdxl.latentSize"], results["sdxl.imageSize"]]).toEqual([SDXL_QUICK_WIDTH, 128, 1024]);
    // The builder in tiny-sd's configuration runs the export's nodes (counted once onnxruntime has optimised both).
    expect(results["structure.tinyLayoutUnet.differingOps"]).toBe(0);
    expect(results["structure.tinyLayoutUnet.differingOpsFused"]).toBe(0);
    // The builder's full-size graphs are SD 1.5's: parameters and FLOP within 1%.
    for (const part of ["text_encoder", "unet", "vae_decoder", "vae_encoder"]) {
      expect(Math.abs(results[`counts.${part}.paramsError`] as number), part).toBeLessThan(0.01);
    }
    for (const part of ["text_encoder", "unet", "vae_decoder"]) {
      expect(Math.abs(results[`counts.${part}.flopError`] as number), part).toBeLessThan(0.01);
    }
  });
});
