/**
 * Exports that ship no model_index.json (Amuse / OnnxStack's layout): pulled from the local hub
 * imitation and run like any other, the index made from the parts that are there; one whose
 * tokenizer is an onnxruntime-extensions graph is refused before any weights are downloaded.
 */
import { readdir, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { discoverModels } from "../../../daemon/models/discover";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { pullModel } from "../../../daemon/models/pull";
import { copyFixtureModel, makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { FakeHub } from "./fake-hub";

let hub: FakeHub;
let tmp: TempDir;
const env = () => ({ HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" });

beforeAll(async () => {
  hub = await FakeHub.start();
  tmp = await makeTempDir("underpaint-no-index-");
  const plain = await copyFixtureModel("tiny-sd", path.join(tmp.dir, "hub"), "no-index");
  await rm(path.join(plain, "model_index.json"));
  await hub.addRepo("someone/sd-no-index-onnx", { dir: plain });
  const onnxTokenizer = await copyFixtureModel("tiny-sd", path.join(tmp.dir, "hub"), "onnx-tokenizer");
  await rm(path.join(onnxTokenizer, "model_index.json"));
  for (const file of ["vocab.json", "merges.txt"]) await rm(path.join(onnxTokenizer, "tokenizer", file));
  await hub.addRepo("someone/sd-onnx-tokenizer", { dir: onnxTokenizer, extra: { "tokenizer/model.onnx": "not read" } });
}, 60_000);
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});

describe("exports without model_index.json", () => {
  it("pull, load from their parts and make a picture", { timeout: 120_000 }, async () => {
    const modelsDir = path.join(tmp.dir, "models");
    const pulled = await pullModel("someone/sd-no-index-onnx", { modelsDir, env: env() });
    expect(await readdir(pulled.dir)).not.toContain("model_index.json");
    const folder = await loadModelFolder(pulled.dir, { devices: ["cpu"] });
    expect(folder.modes).toEqual(["txt2img", "img2img", "inpaint", "outpaint"]);
    expect((await discoverModels(modelsDir, { devices: ["cpu"] })).models.map((m) => m.id)).toEqual([pulled.id]);
    const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
    try {
      const size = { width: 64, height: 64 };
      const [result] = await engine.run(
        { mode: "txt2img", model: pulled.id, prompt: "a lighthouse", negativePrompt: "", seed: 1, steps: 2, guidance: 7.5, scheduler: "euler", variations: 1, truncatePrompt: true, previews: false, output: size, size },
        { signal: new AbortController().signal, onProgress: () => {} },
      );
      expect(result!.region).toEqual({ x: 0, y: 0, width: 64, height: 64 });
      expect(new Set(result!.image.data).size).toBeGreaterThan(10);
    } finally {
      await engine.dispose();
    }
  });

  it("refuse a repo whose tokenizer is an onnxruntime-extensions graph, in one sentence, before downloading", async () => {
    const modelsDir = path.join(tmp.dir, "models-refused");
    const error = await pullModel("someone/sd-onnx-tokenizer", { modelsDir, env: env() }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelInstallError);
    expect((error as Error).message).toMatch(/^someone\/sd-onnx-tokenizer has no model_index\.json and lacks tokenizer\/vocab\.json, tokenizer\/merges\.txt; its tokenizer is an onnxruntime-extensions graph/);
    expect((error as Error).message.split(/(?<=\.) /)).toHaveLength(1);
    expect(await readdir(modelsDir).catch(() => [])).toEqual([]);
  });
});
