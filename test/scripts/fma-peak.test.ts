import { readdir } from "node:fs/promises";
import os from "node:os";
import { describe, expect, it } from "vitest";
import { fmaWasm, measureFmaPeak } from "../../scripts/bench/fma-peak";
import { makeTempDir } from "../helpers/model-fixtures";

describe("the bench's FMA peak", () => {
  it("compiles the C loop once with the machine's compiler and measures every thread", { timeout: 120_000 }, async () => {
    const { dir: cacheDir, cleanup } = await makeTempDir("underpaint-fma-");
    try {
      const first = await measureFmaPeak({ cacheDir, threads: 2, millis: 20, trials: 2 });
      // Machines without a C compiler measure the fallback instead; both are figures.
      expect(Number.isFinite(first.gflops) && first.gflops > 0).toBe(true);
      expect(first.trials).toHaveLength(2);
      expect(first.threads).toBe(2);
      if (first.method === "native") {
        expect(await readdir(cacheDir)).toHaveLength(1);
        await measureFmaPeak({ cacheDir, threads: 1, millis: 20, trials: 1 });
        expect(await readdir(cacheDir)).toHaveLength(1);
      }
    } finally {
      await cleanup();
    }
  });

  it("falls back to WebAssembly SIMD without a compiler, and says so", { timeout: 60_000 }, async () => {
    expect(WebAssembly.validate(fmaWasm())).toBe(true);
    const peak = await measureFmaPeak({ cacheDir: os.tmpdir(), threads: 2, millis: 20, trials: 2, compiler: "none" });
    expect(peak.method).toBe("wasm");
    expect(peak.isa).toBe("wasm-simd128");
    expect(Number.isFinite(peak.gflops) && peak.gflops > 0).toBe(true);
    expect(peak.note).toMatch(/WebAssembly SIMD fallback.*cannot reach the AVX-512 peak/);
  });
});
