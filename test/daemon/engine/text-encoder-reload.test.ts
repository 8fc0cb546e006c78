import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../../daemon/engine/engine";
import { FIXTURES_DIR } from "../../helpers/paths";

let work: string;
let engine: DiffusionEngine;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-reload-"));
  await mkdir(path.join(work, "models"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(work, "models", "tiny-sd"));
  engine = new DiffusionEngine({ modelsDir: path.join(work, "models"), devices: ["cpu"] });
});
afterAll(async () => {
  await engine.dispose();
  await rm(work, { recursive: true, force: true });
});

const job = (prompt: string): GenerationJob => ({
  mode: "txt2img",
  model: "tiny-sd",
  prompt,
  negativePrompt: "",
  seed: 3,
  steps: 2,
  guidance: 7.5,
  scheduler: "euler",
  variations: 1,
  truncatePrompt: false,
  previews: false,
  output: { width: 64, height: 64 },
  size: { width: 64, height: 64 },
});

describe("the text encoder between CPU jobs", () => {
  it("is released while the UNet works and loaded again once the job is over", async () => {
    const during: string[][] = [];
    const first = await engine.run(job("a lighthouse"), { signal: new AbortController().signal, onProgress: (p) => void (p.stage === "denoising" && during.push([...engine.loadedParts()])) });
    expect(first).toHaveLength(1);
    // While the steps ran the text encoder's memory was the UNet's.
    expect(during.length).toBeGreaterThan(0);
    for (const parts of during) expect(parts).not.toContain("textEncoder");
    expect(engine.loadedParts()).not.toContain("textEncoder");
    await engine.idle();
    // Between jobs it is back, for the next prompt.
    expect(engine.loadedParts()).toContain("textEncoder");
    expect(engine.loadedParts()).toContain("unet");
  });

  it("is not loaded between jobs that follow one another at once, only after the last", async () => {
    const signal = new AbortController().signal;
    await engine.run(job("a harbour"), { signal, onProgress: () => {} });
    // The next job begins before the reload's delay: it reads its prompt itself, and the reload waits for it.
    const during: string[][] = [];
    const second = engine.run(job("a harbour at dawn"), { signal, onProgress: (p) => void (p.stage === "denoising" && during.push([...engine.loadedParts()])) });
    // Nothing is left to do between jobs while one runs.
    await engine.idle();
    await second;
    for (const parts of during) expect(parts).not.toContain("textEncoder");
    await engine.idle();
    expect(engine.loadedParts()).toContain("textEncoder");
  });

  it("gives the same picture for a prompt whether its encoder was loaded by the job or between jobs", async () => {
    const fresh = new DiffusionEngine({ modelsDir: path.join(work, "models"), devices: ["cpu"] });
    try {
      const [a] = await fresh.run(job("a quiet bay"), { signal: new AbortController().signal, onProgress: () => {} });
      await engine.idle();
      expect(engine.loadedParts()).toContain("textEncoder");
      const [b] = await engine.run(job("a quiet bay"), { signal: new AbortController().signal, onProgress: () => {} });
      const diff = a!.image.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b!.image.data[i]!)), 0);
      expect(diff).toBeLessThanOrEqual(1);
    } finally {
      await fresh.dispose();
    }
  });
});
