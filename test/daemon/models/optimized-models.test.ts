import { createRequire } from "node:module";
import { chmod, mkdir, open, readdir, readFile, realpath, rm, stat, symlink, truncate, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../../daemon/engine/engine";
import { sessionOptionsFor, type ModelLog, type SessionFactory } from "../../../daemon/models/execution-provider";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { graphRewriteOf, ModelSessions } from "../../../daemon/models/model-sessions";
import { OPTIMIZED_CACHE_FORMAT, OptimizedModelCache, optimizedCacheSwitchedOff } from "../../../daemon/models/optimized-models";
import { describeUnetSession } from "../../../daemon/models/session-io";
import { copyFixtureModel, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

const ORT_VERSION = z.object({ version: z.string() }).parse(createRequire(import.meta.url)("onnxruntime-node/package.json")).version;
const EntryJson = z.object({ format: z.number(), source: z.string(), ortVersion: z.string(), createdAt: z.string(), bytes: z.number() });

/** CPU, every optimisation, as the daemon asks (one thread: two cores are shared by the test files). */
const CPU = sessionOptionsFor("cpu", 1);

let temp: TempDir;
/** A writable copy of tiny-sd (its unet/ folder holds model.onnx and weights.pb). */
let model: string;
let unet: string;
let decoder: string;
let caseNumber = 0;

beforeAll(async () => {
  temp = await makeTempDir("underpaint-optimized-");
  model = await copyFixtureModel("tiny-sd", temp.dir);
  unet = path.join(model, "unet", "model.onnx");
  decoder = path.join(model, "vae_decoder", "model.onnx");
});
afterAll(async () => {
  await temp.cleanup();
});

/** A fresh, empty cache folder per test. */
function freshCacheDir(): string {
  return path.join(temp.dir, `cache-${++caseNumber}`);
}

function recorder(): { log: ModelLog; lines: string[] } {
  const lines: string[] = [];
  return { log: (level, message) => lines.push(`${level}: ${message}`), lines };
}

/** Real sessions, remembering every (file, options) asked for. */
function recording(): { factory: SessionFactory; calls: Array<{ file: string; options: InferenceSession.SessionOptions }> } {
  const calls: Array<{ file: string; options: InferenceSession.SessionOptions }> = [];
  return {
    calls,
    factory: (file, options) => {
      calls.push({ file, options });
      return InferenceSession.create(file, options);
    },
  };
}

const plainFactory: SessionFactory = (file, options) => InferenceSession.create(file, options);

/** The UNet's output for one fixed input (batch 1, 8x8 latents, 77 tokens of width 32). */
async function unetOutput(session: InferenceSession): Promise<Float32Array> {
  const io = describeUnetSession(session, unet);
  const filled = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.9);
  const out = await session.run({
    [io.sample]: new Tensor("float32", filled(4 * 8 * 8, 1), [1, 4, 8, 8]),
    [io.timestep]: new Tensor("float32", Float32Array.of(500), [1]),
    [io.encoderHiddenStates]: new Tensor("float32", filled(77 * 32, 2), [1, 77, 32]),
  });
  const data = out[io.output]!.data;
  if (!(data instanceof Float32Array)) throw new Error("the UNet's output is not float32");
  return data;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Entry folders (not temp folders) in a cache's optimized/ folder. */
async function entries(cache: OptimizedModelCache): Promise<string[]> {
  const names = await readdir(cache.root).catch(() => []);
  return names.filter((n) => !n.startsWith(".tmp-")).sort();
}

async function readEntryJson(entryDir: string) {
  return EntryJson.parse(JSON.parse(await readFile(path.join(entryDir, "entry.json"), "utf8")));
}

let plainUnetOutput: Float32Array;
beforeAll(async () => {
  const plain = await InferenceSession.create(unet, CPU);
  plainUnetOutput = await unetOutput(plain);
  await plain.release();
});

describe("OptimizedModelCache", () => {
  it("writes an entry on the first load and serves the second load from it, with the same output", async () => {
    const dir = freshCacheDir();
    const first = recorder();
    const writer = recording();
    const cache = new OptimizedModelCache({ dir, log: first.log });
    const written = await cache.wrap(writer.factory)(unet, CPU);

    // The miss loads the source, onnxruntime writing the optimized graph into a temp folder.
    expect(writer.calls).toHaveLength(1);
    expect(writer.calls[0]!.file).toBe(unet);
    expect(writer.calls[0]!.options.graphOptimizationLevel).toBe("all");
    expect(path.dirname(writer.calls[0]!.options.optimizedModelFilePath!)).toMatch(/[/\\]optimized[/\\]\.tmp-[^/\\]+$/);

    const entryDir = await cache.entryDir(unet, CPU);
    expect(path.dirname(entryDir)).toBe(path.join(dir, "optimized"));
    expect((await readdir(entryDir)).sort()).toEqual(["entry.json", "model.onnx", "model.onnx.data"]);
    const entry = await readEntryJson(entryDir);
    const sizes = (await stat(path.join(entryDir, "model.onnx"))).size + (await stat(path.join(entryDir, "model.onnx.data"))).size;
    expect(entry).toMatchObject({ format: OPTIMIZED_CACHE_FORMAT, source: await realpath(unet), ortVersion: ORT_VERSION, bytes: sizes });
    expect(Number.isNaN(Date.parse(entry.createdAt))).toBe(false);
    expect(await readdir(path.join(dir, "optimized"))).toEqual([path.basename(entryDir)]); // no temp folder left
    expect(first.lines).toEqual([expect.stringMatching(/^info: optimized .*unet[/\\]model\.onnx in \d+.* kept the optimized copy/)]);
    expect(maxAbsDiff(await unetOutput(written), plainUnetOutput)).toBeLessThan(1e-5);
    await written.release();

    // A new cache object on the same folder (as after a restart): served from the entry.
    const second = recorder();
    const reader = recording();
    const cached = await new OptimizedModelCache({ dir, log: second.log }).wrap(reader.factory)(unet, CPU);
    expect(reader.calls).toHaveLength(1);
    expect(reader.calls[0]!.file).toBe(path.join(entryDir, "model.onnx"));
    expect(reader.calls[0]!.options.graphOptimizationLevel).toBe("disabled");
    expect(reader.calls[0]!.options.optimizedModelFilePath).toBeUndefined();
    expect(reader.calls[0]!.options.intraOpNumThreads).toBe(1); // the caller's other options are kept
    expect(second.lines).toEqual([expect.stringMatching(/^info: loaded .*unet[/\\]model\.onnx from its optimized copy in \d+/)]);
    expect(maxAbsDiff(await unetOutput(cached), plainUnetOutput)).toBeLessThan(1e-5);
    await cached.release();
  });

  it("a changed source file, or a changed file beside it, gets a new key; the stale entry is pruned", async () => {
    const source = await copyFixtureModel("tiny-sd", temp.dir, "tiny-sd-touched");
    const file = path.join(source, "unet", "model.onnx");
    const { log, lines } = recorder();
    const cache = new OptimizedModelCache({ dir: freshCacheDir(), log });
    const load = cache.wrap(plainFactory);
    await (await load(file, CPU)).release();
    const firstEntry = await cache.entryDir(file, CPU);
    expect(await exists(path.join(firstEntry, "entry.json"))).toBe(true);

    // The weights beside the graph changed (same size): a new key.
    const later = new Date(Date.now() + 60_000);
    await utimes(path.join(source, "unet", "weights.pb"), later, later);
    const secondEntry = await cache.entryDir(file, CPU);
    expect(secondEntry).not.toBe(firstEntry);
    const reader = recording();
    await (await cache.wrap(reader.factory)(file, CPU)).release();
    expect(reader.calls[0]!.file).toBe(file); // a miss: loaded from the source
    expect(reader.calls[0]!.options.optimizedModelFilePath).toBeDefined();
    expect(await entries(cache)).toEqual([path.basename(secondEntry)]);
    expect(lines.at(-1)).toMatch(/^info: removed 1 outdated optimized model copy/);

    // The graph file itself touched: again.
    const evenLater = new Date(Date.now() + 120_000);
    await utimes(file, evenLater, evenLater);
    const thirdEntry = await cache.entryDir(file, CPU);
    expect(thirdEntry).not.toBe(secondEntry);
    await (await load(file, CPU)).release();
    expect(await entries(cache)).toEqual([path.basename(thirdEntry)]);
  });

  it("keys a copy by the session config entries the caller gives: they can change the graph onnxruntime writes", async () => {
    const file = path.join(await copyFixtureModel("tiny-sd", temp.dir, "tiny-sd-config"), "unet", "model.onnx");
    const cache = new OptimizedModelCache({ dir: freshCacheDir() });
    const plain = await cache.entryDir(file, CPU);
    const precise = { ...CPU, extra: { session: { x64quantprecision: "1" } } };
    expect(await cache.entryDir(file, precise)).not.toBe(plain);
    // None given is the key as before there were any.
    expect(await cache.entryDir(file, { ...CPU, extra: { session: {} } })).toBe(plain);
    // The same entries in another order are the same key.
    const two = { ...CPU, extra: { session: { x64quantprecision: "1", a_b: "2" } } };
    expect(await cache.entryDir(file, two)).toBe(await cache.entryDir(file, { ...CPU, extra: { session: { a_b: "2", x64quantprecision: "1" } } }));
    // The copy is written with them.
    const writer = recording();
    await (await cache.wrap(writer.factory)(file, precise)).release();
    expect(writer.calls[0]!.options.extra?.session).toMatchObject({ x64quantprecision: "1" });
  });

  it("keeps two copies of an unchanged file made by other rewrites (float32 and int8 UNets), so switching never optimizes again; a third pushes out the one used longest ago", async () => {
    const source = await copyFixtureModel("tiny-sd", temp.dir, "tiny-sd-rewrites");
    const file = path.join(source, "unet", "model.onnx");
    const cache = new OptimizedModelCache({ dir: freshCacheDir() });
    await (await cache.wrap(plainFactory, "rewrite-a")(file, CPU)).release();
    await (await cache.wrap(plainFactory, "rewrite-b")(file, CPU)).release();
    const a = path.basename(await cache.entryDir(file, CPU, "rewrite-a"));
    const b = path.basename(await cache.entryDir(file, CPU, "rewrite-b"));
    expect(await entries(cache)).toEqual([a, b].sort());
    // Back to the first: served from its copy (which then counts as used last).
    await new Promise((resolve) => setTimeout(resolve, 20));
    const reader = recording();
    await (await cache.wrap(reader.factory, "rewrite-a")(file, CPU)).release();
    expect(reader.calls[0]!.file).toBe(path.join(cache.root, a, "model.onnx"));
    await (await cache.wrap(plainFactory, "rewrite-c")(file, CPU)).release();
    const c = path.basename(await cache.entryDir(file, CPU, "rewrite-c"));
    expect(await entries(cache)).toEqual([a, c].sort());
  });

  it("after a write, prunes entries whose source is gone and temp folders an hour old, and keeps the rest", async () => {
    const gone = await copyFixtureModel("tiny-sd", temp.dir, "tiny-sd-gone");
    const goneFile = path.join(gone, "vae_decoder", "model.onnx");
    const cache = new OptimizedModelCache({ dir: freshCacheDir() });
    const load = cache.wrap(plainFactory);
    await (await load(goneFile, CPU)).release();
    await (await load(decoder, CPU)).release();
    const goneEntry = path.basename(await cache.entryDir(goneFile, CPU));
    const decoderEntry = path.basename(await cache.entryDir(decoder, CPU));
    expect(await entries(cache)).toEqual([goneEntry, decoderEntry].sort());

    await rm(gone, { recursive: true, force: true });
    const oldTmp = path.join(cache.root, ".tmp-died");
    const newTmp = path.join(cache.root, ".tmp-writing");
    await mkdir(oldTmp);
    await mkdir(newTmp);
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    await utimes(oldTmp, twoHoursAgo, twoHoursAgo);

    await (await load(unet, CPU)).release();
    const unetEntry = path.basename(await cache.entryDir(unet, CPU));
    expect(await entries(cache)).toEqual([decoderEntry, unetEntry].sort());
    expect(await exists(oldTmp)).toBe(false);
    expect(await exists(newTmp)).toBe(true); // maybe another process's write in progress
  });

  it("a corrupted cached model: warns, still creates the session, and writes the entry again", async () => {
    const dir = freshCacheDir();
    const cache = new OptimizedModelCache({ dir });
    await (await cache.wrap(plainFactory)(unet, CPU)).release();
    const entryDir = await cache.entryDir(unet, CPU);
    const cachedModel = path.join(entryDir, "model.onnx");
    // Garbage over the graph's first bytes, the size unchanged: onnxruntime itself refuses it.
    const handle = await open(cachedModel, "r+");
    await handle.write(Buffer.alloc(4096, 0xff), 0, 4096, 0);
    await handle.close();

    const { log, lines } = recorder();
    const reader = recording();
    const session = await new OptimizedModelCache({ dir, log }).wrap(reader.factory)(unet, CPU);
    expect(lines[0]).toMatch(/^warn: The optimized copy of .*unet[/\\]model\.onnx in .* is unusable \(.+\); deleting it and optimizing the model again\.$/);
    expect(reader.calls.map((c) => c.file)).toEqual([cachedModel, unet]);
    expect(maxAbsDiff(await unetOutput(session), plainUnetOutput)).toBeLessThan(1e-5);
    await session.release();
    expect(lines[1]).toMatch(/^info: optimized /);
    expect((await readFile(cachedModel)).subarray(0, 16).equals(Buffer.alloc(16, 0xff))).toBe(false);

    // Rewritten: the next load is a hit, without a warning.
    const after = recorder();
    const hit = recording();
    await (await new OptimizedModelCache({ dir, log: after.log }).wrap(hit.factory)(unet, CPU)).release();
    expect(hit.calls.map((c) => c.file)).toEqual([cachedModel]);
    expect(after.lines).toEqual([expect.stringMatching(/^info: loaded /)]);

    // Weights cut short: caught by the entry's byte count before onnxruntime reads them.
    await truncate(path.join(entryDir, "model.onnx.data"), 100);
    const cut = recorder();
    const again = recording();
    await (await new OptimizedModelCache({ dir, log: cut.log }).wrap(again.factory)(unet, CPU)).release();
    expect(cut.lines[0]).toMatch(/^warn: .* is unusable \(its files hold \d+ bytes, not the \d+ written\)/);
    expect(again.calls.map((c) => c.file)).toEqual([unet]);
    expect((await readEntryJson(entryDir)).bytes).toBe((await stat(path.join(entryDir, "model.onnx.data"))).size + (await stat(cachedModel)).size);
  });

  it("passes other execution providers, optimisation off and caller-written files through untouched", async () => {
    const dir = freshCacheDir();
    const calls: Array<{ file: string; options: InferenceSession.SessionOptions }> = [];
    const sentinel = {} as InferenceSession;
    const fake: SessionFactory = async (file, options) => {
      calls.push({ file, options });
      return sentinel;
    };
    const load = new OptimizedModelCache({ dir }).wrap(fake);
    const asked: InferenceSession.SessionOptions[] = [
      sessionOptionsFor("cuda", 1),
      sessionOptionsFor("dml", 1),
      sessionOptionsFor("coreml", 1),
      { ...CPU, executionProviders: ["cuda"] },
      { ...CPU, graphOptimizationLevel: "disabled" },
      { ...CPU, optimizedModelFilePath: path.join(dir, "mine.onnx") },
    ];
    for (const options of asked) expect(await load(unet, options)).toBe(sentinel);
    expect(calls).toHaveLength(asked.length);
    calls.forEach((call, i) => {
      expect(call.file).toBe(unet);
      expect(call.options).toBe(asked[i]); // the very same object
    });
    expect(await exists(dir)).toBe(false);
  });

  it("an unwritable cache folder still gives a working session, writing nothing", async () => {
    // Below a regular file: mkdir fails even for root.
    const blocker = path.join(temp.dir, `not-a-folder-${++caseNumber}`);
    await writeFile(blocker, "");
    const blocked = recorder();
    const underFile = await new OptimizedModelCache({ dir: path.join(blocker, "cache"), log: blocked.log }).wrap(plainFactory)(unet, CPU);
    expect(maxAbsDiff(await unetOutput(underFile), plainUnetOutput)).toBeLessThan(1e-5);
    await underFile.release();
    expect(blocked.lines).toEqual([expect.stringMatching(/^warn: Cannot keep optimized model copies in .*; loading .*unet[/\\]model\.onnx without one\.$/)]);

    // Read-only (0500): root writes anyway, so the assertion is only made for other users.
    const dir = freshCacheDir();
    await mkdir(dir);
    await chmod(dir, 0o500);
    try {
      const { log, lines } = recorder();
      const cache = new OptimizedModelCache({ dir, log });
      const session = await cache.wrap(plainFactory)(unet, CPU);
      expect(maxAbsDiff(await unetOutput(session), plainUnetOutput)).toBeLessThan(1e-5);
      await session.release();
      if (process.getuid?.() !== 0) {
        expect(await readdir(dir)).toEqual([]);
        expect(lines).toEqual([expect.stringMatching(/^warn: Cannot keep optimized model copies/)]);
      }
    } finally {
      await chmod(dir, 0o755);
    }
  });

  it("not enough free space: says so and loads without writing", async () => {
    const { log, lines } = recorder();
    const asked: string[] = [];
    const reader = recording();
    const cache = new OptimizedModelCache({
      dir: freshCacheDir(),
      log,
      freeBytes: async (dir) => {
        asked.push(dir);
        return 1000;
      },
    });
    const session = await cache.wrap(reader.factory)(unet, CPU);
    expect(maxAbsDiff(await unetOutput(session), plainUnetOutput)).toBeLessThan(1e-5);
    await session.release();
    expect(asked).toEqual([cache.root]);
    expect(reader.calls).toEqual([{ file: unet, options: CPU }]);
    expect(lines).toEqual([expect.stringMatching(/^info: Not enough free space in .* for an optimized copy of .*unet[/\\]model\.onnx \(it needs about [\d.]+ MiB, 0\.0 MiB free\); loading it without one\.$/)]);
    expect(await readdir(cache.root)).toEqual([]);
  });

  it("a model file onnxruntime cannot load fails as it would without the cache, leaving nothing behind", async () => {
    const broken = path.join(temp.dir, "broken");
    await mkdir(broken);
    await writeFile(path.join(broken, "model.onnx"), "not an onnx model");
    const cache = new OptimizedModelCache({ dir: freshCacheDir() });
    await expect(cache.wrap(plainFactory)(path.join(broken, "model.onnx"), CPU)).rejects.toThrow();
    expect(await readdir(cache.root)).toEqual([]);
    await expect(cache.wrap(plainFactory)(path.join(broken, "missing.onnx"), CPU)).rejects.toThrow();
  });

  it("UNDERPAINT_OPTIMIZED_CACHE=off switches the daemon's cache off", () => {
    expect(optimizedCacheSwitchedOff({ UNDERPAINT_OPTIMIZED_CACHE: "off" })).toBe(true);
    expect(optimizedCacheSwitchedOff({ UNDERPAINT_OPTIMIZED_CACHE: "OFF" })).toBe(true);
    expect(optimizedCacheSwitchedOff({ UNDERPAINT_OPTIMIZED_CACHE: "0" })).toBe(true);
    expect(optimizedCacheSwitchedOff({ UNDERPAINT_OPTIMIZED_CACHE: "on" })).toBe(false);
    expect(optimizedCacheSwitchedOff({})).toBe(false);
  });
});

describe("the cache behind ModelSessions and DiffusionEngine", () => {
  it("ModelSessions wraps its factory: the first sessions write entries, a second set loads from them", async () => {
    const folder = await loadModelFolder(model);
    const cache = new OptimizedModelCache({ dir: freshCacheDir() });
    const writer = recording();
    const first = new ModelSessions(folder, { devices: ["cpu"], threads: 1, factory: writer.factory, optimizedModels: cache });
    await first.loadAll();
    await first.release();
    expect(writer.calls.map((c) => c.file)).toEqual([folder.paths.textEncoder, folder.paths.unet, folder.paths.vaeEncoder, folder.paths.vaeDecoder]);
    expect(writer.calls.every((c) => c.options.optimizedModelFilePath !== undefined)).toBe(true);
    expect(await entries(cache)).toHaveLength(4);

    const reader = recording();
    const second = new ModelSessions(folder, { devices: ["cpu"], threads: 1, factory: reader.factory, optimizedModels: cache });
    const unetSession = await second.unet();
    expect(unetSession.path).toBe(folder.paths.unet); // the model's own file, as without the cache
    expect(reader.calls).toEqual([{ file: path.join(await cache.entryDir(folder.paths.unet, CPU), "model.onnx"), options: expect.objectContaining({ graphOptimizationLevel: "disabled" }) }]);
    await second.release();

    // Without the option nothing is cached.
    const plain = recording();
    const without = new ModelSessions(folder, { devices: ["cpu"], threads: 1, factory: plain.factory });
    await without.unet();
    await without.release();
    expect(plain.calls).toEqual([{ file: folder.paths.unet, options: expect.not.objectContaining({ optimizedModelFilePath: expect.anything() }) }]);
  });

  it("DiffusionEngine honours the option: a txt2img job writes the entries, a second engine loads from them and makes the same image", async () => {
    const modelsDir = path.join(temp.dir, "models-for-engine");
    await mkdir(modelsDir);
    await symlink(model, path.join(modelsDir, "tiny-sd"));
    const dir = freshCacheDir();
    const job: GenerationJob = {
      mode: "txt2img", model: "tiny-sd", prompt: "a lighthouse at night", negativePrompt: "", seed: 11, steps: 2,
      guidance: 7.5, scheduler: "euler", output: { width: 64, height: 64 }, size: { width: 64, height: 64 }, variations: 1, truncatePrompt: false, previews: false,
    };
    const context = { signal: new AbortController().signal, onProgress: () => {} };

    const first = recorder();
    const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir, log: first.log }) });
    const [made] = await engine.run(job, context);
    await engine.dispose();
    const cache = new OptimizedModelCache({ dir });
    const folder = await loadModelFolder(model);
    // txt2img loads the text encoder, UNet and VAE decoder (through the models folder's symlink).
    for (const part of ["textEncoder", "unet", "vaeDecoder"] as const) {
      const file = folder.paths[part];
      expect(await exists(path.join(await cache.entryDir(file, CPU, graphRewriteOf(part)), "entry.json")), file).toBe(true);
    }
    expect(await entries(cache)).toHaveLength(3);
    expect(first.lines.filter((l) => l.startsWith("info: optimized "))).toHaveLength(3);

    const second = recorder();
    const again = new DiffusionEngine({ modelsDir, devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir, log: second.log }) });
    const [remade] = await again.run(job, context);
    await again.dispose();
    expect(second.lines.filter((l) => l.startsWith("info: loaded ") && l.includes("from its optimized copy"))).toHaveLength(3);
    expect(second.lines.some((l) => l.startsWith("info: optimized ") || l.startsWith("warn:"))).toBe(false);
    expect(Buffer.from(remade!.image.data).equals(Buffer.from(made!.image.data))).toBe(true);
  });
});
