/**
 * The sdxl-lightning entry as an artist pulls it: the replica of Cyronius/sdxl-lightning-4step-onnx-web
 * (float16 weights behind float32 inputs and outputs, each part's weights in model.onnx_data, no
 * vae_encoder/, fast tokenizers) served by the hub imitation and pulled by registry id. The folder
 * loads as a few-step SDXL model that does txt2img only: the engine lists that one mode, makes a
 * picture with the entry's settings, and refuses img2img in one sentence, directly and over a real
 * WebSocket.
 */
import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { EngineError, type GenerationJob } from "../../../daemon/engine/engine";
import { schedulerFor } from "../../../daemon/engine/pipeline/generate";
import { derivedSettings, loadModelFolder, toModelInfo } from "../../../daemon/models/model-folder";
import { pullModel } from "../../../daemon/models/pull";
import { findRegistryEntry } from "../../../daemon/models/registry";
import { startServer, type DaemonServer } from "../../../daemon/server/server";
import { pullControlModels, type ControlModels } from "../../helpers/control-models";
import { makeTempDir } from "../../helpers/model-fixtures";
import { RawClient, txt2imgJob } from "../../helpers/raw-client";
import { replicas, writeReplica } from "../../../scripts/replicas";
import { FakeHub } from "./fake-hub";

const REPO = "Cyronius/sdxl-lightning-4step-onnx-web";
const TOKEN = "lightning-token";
let models: ControlModels;
let engine: DiffusionEngine;
let server: DaemonServer;
const folderDir = () => path.join(models.modelsDir, "sdxl-lightning");

beforeAll(async () => {
  models = await pullControlModels("underpaint-lightning-", ["sdxl-lightning"], [REPO]);
  engine = new DiffusionEngine({ modelsDir: models.modelsDir, devices: ["cpu"] });
  server = await startServer({ token: TOKEN, engine, port: 0 });
}, 120_000);
afterAll(async () => {
  await server?.close();
  await engine?.dispose();
  await models?.close();
});

const photo = { width: 64, height: 64, channels: 3 as const, data: new Uint8Array(64 * 64 * 3).fill(128) };
const settings = { model: "sdxl-lightning", prompt: "a lighthouse at dusk", negativePrompt: "", seed: 7, steps: 4, guidance: 0, scheduler: "euler" as const, variations: 1, truncatePrompt: true, previews: false };

describe("sdxl-lightning pulled from its repo's replica", { timeout: 120_000 }, () => {
  it("is the repo's engine files: every part with its model.onnx_data, no vae_encoder/, the tokenizers' BPE files (tokenizer.json stays on the hub)", async () => {
    const dir = folderDir();
    const listing = async (sub: string) => (await readdir(path.join(dir, sub))).sort();
    for (const part of ["text_encoder", "text_encoder_2", "unet", "vae_decoder"]) expect(await listing(part), part).toEqual(["config.json", "model.onnx", "model.onnx_data"]);
    await expect(stat(path.join(dir, "vae_encoder"))).rejects.toThrow();
    for (const tokenizer of ["tokenizer", "tokenizer_2"]) expect(await listing(tokenizer)).toEqual(["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]);
    await expect(stat(path.join(models.dir, "hub", REPO.replace("/", "--"), "tokenizer", "tokenizer.json"))).resolves.toBeTruthy();
  });

  it("loads as a few-step SDXL model with float16 weights behind float32 inputs and outputs, doing txt2img only", async () => {
    const folder = await loadModelFolder(folderDir());
    expect(folder.sdxl).not.toBeNull();
    expect(folder.hasVaeEncoder).toBe(false);
    expect(folder.modes).toEqual(["txt2img"]);
    expect(folder.weightTypes).toEqual({ textEncoder: "float16", textEncoder2: "float16", unet: "float16", vaeEncoder: null, vaeDecoder: "float16" });
    expect(folder.float16, "float32 inputs and outputs").toBe(false);
    expect(folder.io.unet.sampleType).toBe("float32");
    expect(folder.paths.externalData.map((f) => path.relative(folder.dir, f)).sort()).toEqual(["text_encoder/model.onnx_data", "text_encoder_2/model.onnx_data", "unet/model.onnx_data", "vae_decoder/model.onnx_data"]);
    expect(folder.schedulerConfig).toMatchObject({ _class_name: "EulerDiscreteScheduler", timestep_spacing: "trailing" });
    const info = toModelInfo(folder);
    expect(info).toMatchObject({ id: "sdxl-lightning", modes: ["txt2img"], turbo: true, guidance: "none", sdxl: true, registryId: "sdxl-lightning", recommended: findRegistryEntry("sdxl-lightning")!.recommended });
    // Euler on the repo's trailing timesteps: 4 steps from t = 999 (diffusers: round(arange(1000, 0, -250)) - 1).
    const schedule = schedulerFor(folder, "euler");
    schedule.setTimesteps(4);
    expect(Array.from(schedule.timesteps)).toEqual([999, 749, 499, 249]);
  });

  it("the engine lists txt2img only, makes a 4-step picture, and refuses img2img in one sentence", async () => {
    const listed = (await engine.capabilities()).models.find((m) => m.id === "sdxl-lightning");
    expect(listed?.modes).toEqual(["txt2img"]);
    const steps: number[] = [];
    const [result] = await engine.run({ ...settings, mode: "txt2img", output: { width: 64, height: 64 }, size: { width: 64, height: 64 } }, {
      signal: new AbortController().signal,
      onProgress: (p) => p.stage === "denoising" && steps.push(p.step),
    });
    expect([result!.image.width, result!.image.height]).toEqual([64, 64]);
    expect(new Set(result!.image.data).size).toBeGreaterThan(16);
    expect(steps.at(-1)).toBe(4);

    const img2img: GenerationJob = { ...settings, mode: "img2img", image: photo, strength: 0.6, output: { width: 64, height: 64 }, size: { width: 64, height: 64 } };
    const error = await engine.run(img2img, { signal: new AbortController().signal, onProgress: () => {} }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EngineError);
    expect(error).toMatchObject({ code: "unsupported_mode" });
    const message = (error as EngineError).message;
    expect(message).toBe('The model "sdxl-lightning" cannot do img2img: it makes pictures from a prompt only (txt2img), having no VAE encoder to read an image with.');
    expect(message.split(/(?<=\.)\s/)).toHaveLength(1);
  });

  it("over the WebSocket, an img2img job is refused in that sentence and a txt2img one completes", async () => {
    const client = await RawClient.paired(server.url, TOKEN);
    try {
      client.submit(txt2imgJob(1, { mode: "img2img", model: "sdxl-lightning", strength: 0.6, steps: 4, guidance: 0, image: { frameId: 1, width: 64, height: 64, channels: 3 } }));
      client.sendImage({ kind: "image", jobId: 1, frameId: 1, width: 64, height: 64, channels: 3, bitsPerChannel: 8, data: photo.data });
      expect(await client.next("error", (e) => e.jobId === 1)).toMatchObject({
        code: "unsupported_mode",
        message: 'The model "sdxl-lightning" cannot do img2img: it makes pictures from a prompt only (txt2img), having no VAE encoder to read an image with.',
      });
      client.submit(txt2imgJob(2, { model: "sdxl-lightning", steps: 4, guidance: 0 }));
      expect((await client.next("done", (d) => d.jobId === 2, 60_000)).status).toBe("completed");
    } finally {
      client.socket.terminate();
    }
  });

  it("a copy whose tokenizers are tokenizer.json alone (no vocab.json, merges.txt) pulls with it, loads and makes a picture", async () => {
    const hub = await FakeHub.start();
    const tmp = await makeTempDir("underpaint-lightning-fast-");
    try {
      const replica = (await replicas()).find((r) => r.repo === REPO)!;
      const dir = path.join(tmp.dir, "hub", "fast-tokenizers");
      await writeReplica(replica, dir);
      for (const folder of ["tokenizer", "tokenizer_2"]) for (const file of ["vocab.json", "merges.txt"]) await rm(path.join(dir, folder, file));
      await hub.addRepo("underpaint-replicas/sdxl-lightning-fast-tokenizers", { dir });
      const modelsDir = path.join(tmp.dir, "models");
      const pulled = await pullModel("underpaint-replicas/sdxl-lightning-fast-tokenizers", { modelsDir, env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" } });
      for (const folder of ["tokenizer", "tokenizer_2"]) expect((await readdir(path.join(modelsDir, pulled.id, folder))).sort()).toEqual(["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]);
      const folder = await loadModelFolder(path.join(modelsDir, pulled.id));
      // Not installed from the registry: a Lightning model by its name, as the entry's settings say.
      expect(folder.registryId).toBeNull();
      expect(derivedSettings(folder)).toEqual(findRegistryEntry("sdxl-lightning")!.recommended);
      const local = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
      try {
        const [result] = await local.run({ ...settings, model: pulled.id, mode: "txt2img", output: { width: 64, height: 64 }, size: { width: 64, height: 64 } }, { signal: new AbortController().signal, onProgress: () => {} });
        expect(new Set(result!.image.data).size).toBeGreaterThan(16);
      } finally {
        await local.dispose();
      }
    } finally {
      await hub.close();
      await tmp.cleanup();
    }
  });
});
