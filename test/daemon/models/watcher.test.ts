import { cp, mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ModelList } from "../../../protocol";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { discoverModels } from "../../../daemon/models/discover";
import { toModelInfo } from "../../../daemon/models/model-folder";
import { ModelsWatcher } from "../../../daemon/models/watcher";
import { useContribOp } from "../../helpers/contrib-op";
import { copyFixtureModel, fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

let tmp: TempDir;
const stops: Array<() => void> = [];

beforeEach(async () => {
  tmp = await makeTempDir("underpaint-watch-");
});
afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await tmp.cleanup();
});

/** A watcher over `dir` that records every list it announces and counts its scans. */
function watch(dir: string, options: { pollMs?: number } = {}) {
  const heard: string[][] = [];
  let scans = 0;
  const watcher = new ModelsWatcher({
    dir,
    debounceMs: 50,
    pollMs: options.pollMs ?? 60_000,
    scan: async () => {
      scans++;
      return { models: (await discoverModels(dir)).models.map(toModelInfo), unavailable: [] };
    },
  });
  stops.push(watcher.subscribe(({ models }) => heard.push(models.map((m) => m.id))));
  return { watcher, heard, scans: () => scans };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("ModelsWatcher", () => {
  it("announces models added and removed, once per change", async () => {
    const dir = path.join(tmp.dir, "models");
    await mkdir(dir);
    const { watcher, heard } = watch(dir);
    await watcher.ready;
    await copyFixtureModel("tiny-sd", dir, "alpha");
    await until(() => heard.length === 1);
    expect(heard).toEqual([["alpha"]]);
    // Installed the way a pull does it: built in a hidden folder, then renamed.
    await copyFixtureModel("tiny-sd-inpaint", dir, ".partial-beta");
    await rename(path.join(dir, ".partial-beta"), path.join(dir, "beta"));
    await until(() => heard.length === 2);
    expect(heard[1]).toEqual(["alpha", "beta"]);
    await rm(path.join(dir, "alpha"), { recursive: true });
    await until(() => heard.length === 3);
    expect(heard[2]).toEqual(["beta"]);
    await new Promise((r) => setTimeout(r, 300));
    expect(heard.length).toBe(3);
  });

  it("ignores what happens in hidden folders (downloads in progress)", async () => {
    const dir = path.join(tmp.dir, "models");
    await mkdir(path.join(dir, ".partial-x"), { recursive: true });
    const { watcher, heard, scans } = watch(dir);
    await watcher.ready;
    const before = scans();
    for (let i = 0; i < 20; i++) await writeFile(path.join(dir, ".partial-x", `f${i}.part`), "bytes");
    await new Promise((r) => setTimeout(r, 300));
    expect(scans()).toBe(before);
    expect(heard).toEqual([]);
  });

  it("notices a model finished in place (its last part and model_index.json written last)", async () => {
    const dir = path.join(tmp.dir, "models");
    await mkdir(dir);
    const model = await copyFixtureModel("tiny-sd", dir, "gamma");
    await rm(path.join(model, "model_index.json"));
    await rm(path.join(model, "vae_decoder"), { recursive: true });
    const { watcher, heard } = watch(dir);
    await watcher.ready;
    await cp(path.join(fixtureModelDir("tiny-sd"), "vae_decoder"), path.join(model, "vae_decoder"), { recursive: true });
    await cp(path.join(fixtureModelDir("tiny-sd"), "model_index.json"), path.join(model, "model_index.json"));
    await until(() => heard.length === 1);
    expect(heard).toEqual([["gamma"]]);
  });

  it("falls back to polling, e.g. for a models folder that does not exist yet", async () => {
    const dir = path.join(tmp.dir, "later");
    const { watcher, heard } = watch(dir, { pollMs: 100 });
    await watcher.ready;
    await mkdir(dir);
    await copyFixtureModel("tiny-sd", dir, "delta");
    await until(() => heard.length >= 1);
    expect(heard.at(-1)).toEqual(["delta"]);
  });
});

describe("DiffusionEngine.onModelsChanged", () => {
  it("tells its listeners the new capabilities list", async () => {
    const dir = path.join(tmp.dir, "models");
    await mkdir(dir);
    const engine = new DiffusionEngine({ modelsDir: dir, devices: ["cpu"] });
    const heard: ModelList[] = [];
    const stop = engine.onModelsChanged((list) => heard.push(list));
    stops.push(stop, () => void engine.dispose());
    await new Promise((r) => setTimeout(r, 200));
    await copyFixtureModel("tiny-sd-inpaint", dir);
    await until(() => heard.length === 1);
    expect(heard[0]!.models.map((m) => [m.id, m.kind])).toEqual([["tiny-sd-inpaint", "inpainting"]]);
    expect(heard[0]!.unavailable).toEqual([]);
    // The installed ControlNets travel with the list, so a panel hears of a pulled one.
    expect(heard[0]!.controlNets).toEqual([]);
  });

  it("lists a folder copied in by hand that needs a GPU as unavailable, with the sentence, beside the good ones", async () => {
    const dir = path.join(tmp.dir, "models");
    await mkdir(dir);
    await copyFixtureModel("tiny-sd-inpaint", dir);
    const engine = new DiffusionEngine({ modelsDir: dir, devices: ["cpu"] });
    const heard: ModelList[] = [];
    const stop = engine.onModelsChanged((list) => heard.push(list));
    stops.push(stop, () => void engine.dispose());
    await new Promise((r) => setTimeout(r, 200));
    // Made outside the watched folder, then moved in whole, as a finished copy arrives.
    const olive = await copyFixtureModel("tiny-sd", tmp.dir, "olive-unet");
    await useContribOp(path.join(olive, "unet", "model.onnx"), "NhwcConv");
    await rename(olive, path.join(dir, "olive-unet"));
    await until(() => heard.length === 1);
    const [list] = heard;
    expect(list!.models.map((m) => m.id)).toEqual(["tiny-sd-inpaint"]);
    expect(list!.unavailable).toHaveLength(1);
    expect(list!.unavailable[0]!.id).toBe("olive-unet");
    expect(list!.unavailable[0]!.code).toBe("model_unsupported");
    expect(list!.unavailable[0]!.message).toMatch(/NhwcConv/);
    expect(list!.unavailable[0]!.message).toMatch(/GPU|CUDA|DirectML/);
    expect(list!.unavailable[0]!.message).not.toMatch(/\n\s+at /);
    // A job for it says why, instead of "no such model".
    await expect(
      engine.run(
        { mode: "txt2img", model: "olive-unet", prompt: "a fox", negativePrompt: "", seed: 1, steps: 1, guidance: 1, scheduler: "euler", output: { width: 64, height: 64 }, size: { width: 64, height: 64 }, variations: 1, truncatePrompt: false, previews: false },
        { signal: new AbortController().signal, onProgress: () => {} },
      ),
    ).rejects.toMatchObject({ code: "model_unavailable", message: expect.stringMatching(/olive-unet.*cannot run here.*NhwcConv/) });
    // The same folder is a model for a daemon that has CUDA (the operator is CUDA's).
    const cuda = await discoverModels(dir, { devices: ["cuda", "cpu"] });
    expect(cuda.models.map((m) => m.id).sort()).toEqual(["olive-unet", "tiny-sd-inpaint"]);
  });
});
