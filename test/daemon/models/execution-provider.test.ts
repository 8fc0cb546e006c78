import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  chooseDevices,
  compiledProviders,
  createSession,
  CUDA_PROVIDER_LIBRARY,
  cudaProviderAvailable,
  ortBinDir,
  physicalCoreCount,
  sessionOptionsFor,
  type ModelLog,
} from "../../../daemon/models/execution-provider";
import { ModelFolderError } from "../../../daemon/models/model-folder";
import { fixtureModelDir, makeTempDir } from "../../helpers/model-fixtures";

const decoder = path.join(fixtureModelDir("tiny-sd"), "vae_decoder", "model.onnx");

function recorder(): { log: ModelLog; lines: string[] } {
  const lines: string[] = [];
  return { log: (level, message) => lines.push(`${level}: ${message}`), lines };
}

describe("chooseDevices", () => {
  const noCuda = () => false;
  it("per platform: Windows dml, macOS coreml, Linux cuda only with its library, else cpu", () => {
    expect(chooseDevices({ env: {}, platform: "win32" }).devices).toEqual(["dml", "cpu"]);
    expect(chooseDevices({ env: {}, platform: "darwin" }).devices).toEqual(["coreml", "cpu"]);
    expect(chooseDevices({ env: {}, platform: "linux", cudaAvailable: () => true }).devices).toEqual(["cuda", "cpu"]);
    expect(chooseDevices({ env: {}, platform: "linux", cudaAvailable: noCuda })).toEqual({
      devices: ["cpu"],
      source: "platform",
      warning: null,
    });
    expect(chooseDevices({ env: {}, platform: "freebsd" }).devices).toEqual(["cpu"]);
  });

  it("UNDERPAINT_DEVICE overrides; a bad value is ignored with a warning", () => {
    expect(chooseDevices({ env: { UNDERPAINT_DEVICE: "cpu" }, platform: "win32" })).toEqual({
      devices: ["cpu"],
      source: "override",
      warning: null,
    });
    expect(chooseDevices({ env: { UNDERPAINT_DEVICE: " CUDA " }, platform: "linux", cudaAvailable: noCuda }).devices).toEqual([
      "cuda",
      "cpu",
    ]);
    const bad = chooseDevices({ env: { UNDERPAINT_DEVICE: "gpu" }, platform: "darwin" });
    expect(bad.devices).toEqual(["coreml", "cpu"]);
    expect(bad.warning).toMatch(/UNDERPAINT_DEVICE="gpu"/);
  });

  it("finds the CUDA provider library in onnxruntime-node's bin folder", async () => {
    const tmp = await makeTempDir();
    try {
      expect(cudaProviderAvailable(tmp.dir)).toBe(false);
      await writeFile(path.join(tmp.dir, CUDA_PROVIDER_LIBRARY), "");
      expect(cudaProviderAvailable(tmp.dir)).toBe(true);
    } finally {
      await tmp.cleanup();
    }
    expect(ortBinDir("linux", "x64")).toMatch(/onnxruntime-node[\\/]bin[\\/]napi-v6[\\/]linux[\\/]x64$/);
  });
});

describe("session options", () => {
  it("all optimizations, sequential, one thread per physical core", () => {
    const options = sessionOptionsFor("cuda", 6);
    expect(options).toMatchObject({
      executionProviders: ["cuda", "cpu"],
      graphOptimizationLevel: "all",
      executionMode: "sequential",
      intraOpNumThreads: 6,
    });
    expect(sessionOptionsFor("dml", 2).enableMemPattern).toBe(false);
    expect(sessionOptionsFor("cpu", 2).executionProviders).toEqual(["cpu"]);
  });

  it("counts physical cores from /proc/cpuinfo, capped by what the process may use", () => {
    const block = (p: number, c: number, n: number) => `processor\t: ${n}\nphysical id\t: ${p}\ncore id\t\t: ${c}\n`;
    const smt = [block(0, 0, 0), block(0, 1, 1), block(0, 0, 2), block(0, 1, 3)].join("\n");
    expect(physicalCoreCount("linux", () => smt)).toBe(Math.min(2, os.availableParallelism()));
    expect(physicalCoreCount("linux", () => "processor : 0\n")).toBe(os.availableParallelism());
    expect(physicalCoreCount("linux", () => {
      throw new Error("no procfs");
    })).toBe(os.availableParallelism());
    expect(physicalCoreCount("win32")).toBe(os.availableParallelism());
    expect(physicalCoreCount()).toBeGreaterThanOrEqual(1);
  });
});

describe("createSession", () => {
  it("creates a CPU session", async () => {
    const { session, device, fallbackReason } = await createSession(decoder, ["cpu"], undefined, { threads: 1 });
    expect(device).toBe("cpu");
    expect(fallbackReason).toBeNull();
    expect(session.inputNames).toEqual(["latent_sample"]);
    await session.release();
  });

  it("falls back to CPU with a logged reason when the preferred provider cannot start", async () => {
    const { log, lines } = recorder();
    // This machine has no CUDA provider library, and dml is not compiled into Linux builds.
    const preferred = process.platform === "linux" && !cudaProviderAvailable() ? (["cuda", "dml"] as const) : null;
    if (preferred) {
      const created = await createSession(decoder, preferred, log, { threads: 1 });
      expect(created.device).toBe("cpu");
      expect(created.fallbackReason).toMatch(/cuda/);
      expect(lines.some((l) => l.startsWith("warn: cuda could not load"))).toBe(true);
      expect(lines.some((l) => l.startsWith("warn: dml is not available"))).toBe(true);
      await created.session.release();
    }
    // The same with a factory that refuses anything but the CPU, on any machine.
    const { log: log2, lines: lines2 } = recorder();
    const created = await createSession(decoder, "coreml", log2, {
      threads: 1,
      compiled: () => ["cpu", "coreml"],
      factory: async (p, options) => {
        if (options.executionProviders?.[0] !== "cpu") throw new Error("CoreML refused the graph");
        const { InferenceSession } = await import("onnxruntime-node");
        return InferenceSession.create(p, options);
      },
    });
    expect(created.device).toBe("cpu");
    expect(created.fallbackReason).toMatch(/CoreML refused the graph/);
    expect(lines2).toEqual([expect.stringMatching(/^warn: coreml could not load vae_decoder: CoreML refused the graph; falling back to cpu/)]);
    await created.session.release();
  });

  it("lists the compiled providers (cpu always)", () => {
    expect(compiledProviders()).toContain("cpu");
  });

  it("a model onnxruntime cannot load even on CPU -> ModelFolderError naming it", async () => {
    const tmp = await makeTempDir();
    try {
      await mkdir(path.join(tmp.dir, "unet"));
      const bad = path.join(tmp.dir, "unet", "model.onnx");
      await writeFile(bad, "not a model");
      const error = await createSession(bad, ["cpu"]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ModelFolderError);
      expect((error as ModelFolderError).code).toBe("model_file_invalid");
      expect((error as ModelFolderError).message).toContain(bad);
    } finally {
      await tmp.cleanup();
    }
  });
});
