/**
 * Every registry entry, pulled as a user pulls it: a replica of its repo's files (scripts/replicas.ts)
 * served by the local hub imitation at the entry's pinned revision, `pullModel(id)`, then a
 * generation with exactly the entry's recommended steps, guidance and scheduler (and an inpaint where
 * the model is an inpainting one) through the daemon's engine. Replicas of repos outside the registry
 * (an Optimum export) are pulled by owner/name and run txt2img and img2img.
 */
import { cp, stat } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { EngineResult, GenerationJob, GenerationSettings } from "../../../daemon/engine/engine";
import { schedulerFor } from "../../../daemon/engine/pipeline/generate";
import { discoverModels } from "../../../daemon/models/discover";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import { MANIFEST_FILE } from "../../../daemon/models/manifest";
import { derivedSettings, loadModelFolder, toModelInfo, type ModelFolder } from "../../../daemon/models/model-folder";
import { OptimizedModelCache } from "../../../daemon/models/optimized-models";
import { pullModel } from "../../../daemon/models/pull";
import { loadRegistry } from "../../../daemon/models/registry";
import { replicas, writeReplica, type PipelineReplica, type Replica, type SdxlReplica } from "../../../scripts/replicas";
import { useContribOp } from "../../helpers/contrib-op";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { contains, regionOf, type Pixels, type Size } from "../../../geometry";
import type { GuidanceKind } from "../../../protocol";
import { FakeHub } from "./fake-hub";

const registry = loadRegistry();
let hub: FakeHub;
let tmp: TempDir;
let all: Replica[];
const modelsDir = () => path.join(tmp.dir, "models");
/** The replicas of pipeline repos (the TAESD one is a preview decoder: test/daemon/models/taesd.test.ts; the ControlNet repos: test/daemon/models/controlnet.test.ts). */
const pipelines = () => all.filter((r): r is PipelineReplica => r.from !== "taesd" && r.from !== "tiny-sdxl" && r.from !== "controlnet" && r.from !== "depth-anything" && r.from !== "dwpose");
/**
 * The SDXL replicas in Optimum's layout (two text encoders) with a VAE encoder; OnnxStack's, with a control UNet:
 * test/daemon/engine/control-sdxl.test.ts; SDXL-Lightning's, text to image only: test/daemon/models/sdxl-lightning.test.ts.
 */
const sdxlReplicas = () => all.filter((r): r is SdxlReplica => r.from === "tiny-sdxl" && !r.controlUnet && r.vaeEncoder !== false);

beforeAll(async () => {
  hub = await FakeHub.start();
  tmp = await makeTempDir("underpaint-replicas-");
  all = await replicas();
  for (const replica of all) {
    const entry = registry.models.find((e) => e.repo === replica.repo);
    const dir = path.join(tmp.dir, "hub", replica.repo.replace("/", "--"));
    await writeReplica(replica, dir);
    await hub.addRepo(replica.repo, { dir, ...(entry?.pinned ? { commit: entry.revision } : {}) });
  }
}, 60_000);
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});

/** What guidance does for each entry's model: LCM's UNet takes it as an input, SD-Turbo runs without. */
const GUIDANCE: Record<string, GuidanceKind> = {
  "sd-1.5": "classifier-free",
  "sd-1.5-inpainting": "classifier-free",
  "sd-1.5-control": "classifier-free",
  "sd-turbo": "none",
  "lcm-dreamshaper-v7": "embedded",
  "sdxl-turbo": "none",
  "sdxl-base-1.0": "classifier-free",
  "sdxl-control": "classifier-free",
  "sdxl-lightning": "none",
};

const env = () => ({ HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" });

function square(size: number, channels: 1 | 3, fill: (x: number, y: number) => number[]): Pixels {
  const data = new Uint8Array(size * size * channels);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) data.set(fill(x, y), (y * size + x) * channels);
  return { width: size, height: size, channels, data };
}
const photo = () => square(96, 3, (x, y) => [x * 2, y * 2, 128]);

/** One variation of `model`; `settings` override. */
function settingsFor(model: string, settings: Partial<GenerationSettings>): GenerationSettings {
  return { model, prompt: "a lighthouse on a cliff at dusk", negativePrompt: "", seed: 42, steps: 4, guidance: 7.5, scheduler: "euler", variations: 1, truncatePrompt: true, previews: false, ...settings };
}
const SMALL: Size = { width: 64, height: 64 };
/** A 64x64 picture, made at exactly that size. */
function txt2img(model: string, settings: Partial<GenerationSettings> = {}): GenerationJob {
  return { ...settingsFor(model, settings), mode: "txt2img", output: SMALL, size: SMALL };
}
/** `image` edited into a picture of `output` pixels, made at exactly that size. */
function img2img(model: string, image: Pixels, strength: number, output: Size, settings: Partial<GenerationSettings> = {}): GenerationJob {
  return { ...settingsFor(model, settings), mode: "img2img", image, strength, output, size: output };
}
/** The whole of `image` is the document; the model works on at most 64x64 pixels. */
function inpaint(model: string, image: Pixels, mask: Pixels, settings: Partial<GenerationSettings> = {}): GenerationJob {
  return { ...settingsFor(model, settings), mode: "inpaint", image, mask, strength: 1, context: "automatic", canvas: { width: image.width, height: image.height }, region: regionOf(image), budget: 64 * 64 };
}

/** Runs jobs on a CPU engine over the models folder, disposed after. */
async function withEngine(optimizedModels: OptimizedModelCache | undefined, use: (run: (job: GenerationJob) => Promise<EngineResult & { steps: number[] }>) => Promise<void>): Promise<void> {
  const engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"], ...(optimizedModels ? { optimizedModels } : {}) });
  try {
    await use(async (job) => {
      const steps: number[] = [];
      const [result] = await engine.run(job, { signal: new AbortController().signal, onProgress: (p) => p.stage === "denoising" && steps.push(p.step) });
      return { ...result!, steps };
    });
  } finally {
    await engine.dispose();
  }
}

/** What the loader found of the replica's exporter: the text encoder's token id type and the VAE encoder's output. */
function expectExportIo(folder: ModelFolder, replica: PipelineReplica | SdxlReplica): void {
  const io = [folder.io.textEncoder.inputIdsType, folder.io.vaeEncoder?.outputKind ?? null];
  // The SDXL replicas are Optimum exports, as the hub's SDXL repos ship them (SDXL-Lightning's without its VAE encoder).
  const optimum = replica.from === "tiny-sdxl" || replica.io === "optimum";
  const encoder = replica.from === "tiny-sdxl" && replica.vaeEncoder === false ? null : optimum ? "latent_parameters" : "latent_sample";
  expect(io, "token ids, VAE encoder output").toEqual([optimum ? "int64" : "int32", encoder]);
}

describe("SDXL repos on their replicas", () => {
  it("pulls stabilityai/sdxl-turbo's and SDXL base 1.0's ONNX files from the hub imitation (leaving their PyTorch weights there) and runs txt2img (turbo settings) and img2img through the daemon's engine", { timeout: 120_000 }, async () => {
    const repos = sdxlReplicas().map((r) => r.repo);
    expect(repos).toEqual(["stabilityai/sdxl-turbo", "stabilityai/stable-diffusion-xl-base-1.0"]);
    for (const replica of sdxlReplicas()) {
      const pulled = await pullModel(replica.repo, { modelsDir: modelsDir(), env: env() });
      const folder = await loadModelFolder(path.join(modelsDir(), pulled.id));
      expect(folder.sdxl).toEqual({ forceZerosForEmptyPrompt: true });
      expect(folder.io.textEncoder2?.pooled).toBe("text_embeds");
      expect(folder.io.unet.added).toMatchObject({ textEmbeds: "text_embeds", timeIds: "time_ids" });
      expect(folder.paths.externalData.map((f) => path.relative(folder.dir, f)).sort()).toEqual(["text_encoder_2/model.onnx_data", "unet/model.onnx_data"]);
      expect(folder.vaeScalingFactor).toBe(0.13025);
      expect(folder.nativeResolution).toBe(replica.sampleSize * 8);
      expect(folder.schedulerConfig._class_name).toBe(replica.scheduler._class_name);
      for (const left of Object.keys(replica.extraFiles)) await expect(stat(path.join(folder.dir, left))).rejects.toThrow();
      await withEngine(undefined, async (run) => {
        const { image } = await run(txt2img(pulled.id, { prompt: "a red cube", seed: 1, steps: 1, guidance: 0, scheduler: "euler_a" }));
        expect([image.width, image.height]).toEqual([64, 64]);
        const edited = await run(img2img(pulled.id, photo(), 0.75, { width: 96, height: 64 }, { guidance: 5 }));
        expect([edited.image.width, edited.image.height]).toEqual([96, 64]);
        expect(edited.steps.at(-1), "strength 0.75 of 4 steps").toBe(3);
      });
    }
  });
});

describe("registry entries on replicas of their repos", () => {
  it("pulls the replicas of repos outside the registry by owner/name, with their layout and their exporter's inputs and outputs, and runs txt2img and img2img", { timeout: 60_000 }, async () => {
    const outside = pipelines().filter((r) => !registry.models.some((e) => e.repo === r.repo));
    expect(outside.map((r) => r.io)).toContain("optimum");
    for (const replica of outside) {
      const pulled = await pullModel(replica.repo, { modelsDir: modelsDir(), env: env() });
      const folder = await loadModelFolder(path.join(modelsDir(), pulled.id));
      if (replica.weights !== "embedded") expect(folder.paths.externalData.map((f) => path.basename(f))).toContain(replica.weights);
      if (replica.partConfigs) expect(folder.paths.configs.unet).not.toBeNull();
      expectExportIo(folder, replica);
      await withEngine(undefined, async (run) => {
        const { image, region } = await run(txt2img(pulled.id, { prompt: "a red cube", seed: 1 }));
        expect([image.width, image.height]).toEqual([64, 64]);
        expect(region).toEqual({ x: 0, y: 0, width: 64, height: 64 });
        // img2img runs the VAE encoder (Optimum's gives mean ‖ logvar; the pipeline samples from it).
        const edited = await run(img2img(pulled.id, photo(), 0.75, { width: 96, height: 64 }));
        expect([edited.image.width, edited.image.height], "img2img size").toEqual([96, 64]);
        expect(edited.region).toEqual({ x: 0, y: 0, width: 96, height: 64 });
        expect(new Set(edited.image.data).size).toBeGreaterThan(16);
        expect(edited.steps.at(-1), "strength 0.75 of 4 steps").toBe(3);
      });
    }
  });

  it("refuses a repo whose UNet needs a GPU in one sentence naming the device and the operator, installing nothing", async () => {
    const dir = path.join(tmp.dir, "hub", "olive-style");
    await writeReplica(pipelines().find((r) => r.repo === "underpaint-replicas/optimum-sd-1.5")!, dir);
    await useContribOp(path.join(dir, "unet", "model.onnx"), "NhwcConv");
    await hub.addRepo("underpaint-replicas/olive-dml-sd", { dir });
    const error = await pullModel("underpaint-replicas/olive-dml-sd", { modelsDir: modelsDir(), env: env() }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelInstallError);
    const message = (error as ModelInstallError).message;
    expect(message).toMatch(/unet\/model\.onnx needs a (DirectML or CUDA|CUDA or DirectML) GPU: it uses the operator com\.microsoft\.NhwcConv, which onnxruntime's CPU provider does not have\. Nothing was installed\.$/);
    expect(message).not.toMatch(/\n\s+at /);
    expect((await discoverModels(modelsDir())).models.map((m) => m.id)).not.toContain("olive-dml-sd");
  });

  it("has a replica for every entry", () => {
    expect(registry.models.map((e) => e.repo).filter((repo) => !all.some((r) => r.repo === repo))).toEqual([]);
  });

  for (const entry of registry.models) {
    it(`${entry.id}: pulls, and its recommended settings (${entry.recommended.steps} steps, guidance ${entry.recommended.guidance}, ${entry.recommended.scheduler}) make a picture`, { timeout: 120_000 }, async () => {
      const pulled = await pullModel(entry.id, { modelsDir: modelsDir(), env: env() });
      expect(pulled.id).toBe(entry.id);
      const folder = await loadModelFolder(path.join(modelsDir(), entry.id));
      expect(folder.kind).toBe(entry.kind);
      const replica = [...pipelines(), ...all.filter((r): r is SdxlReplica => r.from === "tiny-sdxl")].find((r) => r.repo === entry.repo)!;
      expectExportIo(folder, replica);
      expect(folder.turbo).toBe(entry.turbo);
      expect(folder.sdxl !== null, "SDXL").toBe(entry.architecture === "sdxl");
      // The SDXL replicas carry their repo's unet sample_size, so the folder says the entry's native resolution.
      if (entry.architecture === "sdxl") expect(folder.nativeResolution, "native resolution").toBe(entry.nativeResolution);
      // The entry's precision is its weights' (float16 weights behind float32 inputs and outputs too).
      expect(folder.weightTypes.unet, "precision").toBe(entry.precision === "fp16" ? "float16" : "float32");
      // What the panel is told: the entry's settings, which entry it is, and what guidance does for it.
      const info = toModelInfo(folder);
      expect(info.recommended).toEqual(entry.recommended);
      expect(info.registryId).toBe(entry.id);
      expect(info.guidance).toBe(GUIDANCE[entry.id]);
      // The entry says what the folder itself says of its kind of model.
      expect(derivedSettings(folder), "derived from the folder").toEqual(entry.recommended);

      // By construction: the recommended schedule starts from (nearly) pure noise, with the repo's own config.
      const { steps, guidance, scheduler } = entry.recommended;
      const schedule = schedulerFor(folder, scheduler);
      schedule.setTimesteps(steps);
      expect(schedule.timesteps[0], "first timestep").toBeGreaterThanOrEqual(900);
      // A UNet with the guidance distilled in runs with LCM's scheduler; guidance 1 or less never doubles the batch.
      if (folder.io.unet.timestepCond) expect(scheduler).toBe("lcm");

      // As the daemon runs: optimized copies (and float32 copies of float16 models) in a cache folder.
      const optimizedModels = new OptimizedModelCache({ dir: path.join(tmp.dir, "cache") });
      await withEngine(optimizedModels, async (run) => {
        const settings = { steps, guidance, scheduler };
        const mask = square(96, 1, (x, y) => [x > 30 && x < 70 && y > 30 && y < 70 ? 255 : 0]);
        const result = await run(entry.kind === "txt2img" ? txt2img(entry.id, settings) : inpaint(entry.id, photo(), mask, settings));
        if (entry.kind === "txt2img") {
          expect([result.image.width, result.image.height]).toEqual([64, 64]);
          expect(new Set(result.image.data).size).toBeGreaterThan(16);
        } else {
          // A layer cut to the selection, placed in the 96x96 document.
          const { image, region } = result;
          expect([image.channels, image.width, image.height]).toEqual([4, region.width, region.height]);
          expect(contains({ x: 31, y: 31, width: 39, height: 39 }, region), "inside the selection").toBe(true);
          const alpha = (x: number, y: number) => (contains(region, { x, y, width: 1, height: 1 }) ? image.data[((y - region.y) * image.width + (x - region.x)) * 4 + 3] : 0);
          expect(alpha(50, 50)).toBe(255);
          expect(alpha(2, 2)).toBe(0);
        }
        expect(result.steps.at(-1)).toBe(steps);
        // The recommended guidance is the one applied: with classifier-free guidance, guidance 1 (no second batch) makes another picture.
        if (entry.kind === "txt2img" && info.guidance === "classifier-free") {
          const unguided = await run(txt2img(entry.id, { ...settings, guidance: 1 }));
          expect(Buffer.from(unguided.image.data).equals(Buffer.from(result.image.data)), "guidance 1 differs from the recommended guidance").toBe(false);
        }
      });
    });
  }

  it("a folder copied into the models folder by hand (no manifest) gets the settings and guidance of its kind of model", { timeout: 60_000 }, async () => {
    const byHand = path.join(tmp.dir, "by-hand");
    const copies = { "sd-1.5": "my-sd15", "sd-turbo": "my-sd-turbo", "lcm-dreamshaper-v7": "my-lcm", "sdxl-base-1.0": "my-sdxl", "sdxl-lightning": "my-sdxl-lightning" } as const;
    for (const [id, copy] of Object.entries(copies)) {
      await cp(path.join(modelsDir(), id), path.join(byHand, copy), { recursive: true, filter: (src) => path.basename(src) !== MANIFEST_FILE });
    }
    const engine = new DiffusionEngine({ modelsDir: byHand, devices: ["cpu"] });
    try {
      const models = (await engine.capabilities()).models;
      const seen = Object.fromEntries(models.map((m) => [m.id, [m.recommended, m.guidance, m.registryId]]));
      expect(seen).toEqual({
        "my-sd15": [{ steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" }, "classifier-free", undefined],
        "my-sd-turbo": [{ steps: 1, guidance: 0, scheduler: "euler_a" }, "none", undefined],
        "my-lcm": [{ steps: 4, guidance: 8, scheduler: "lcm" }, "embedded", undefined],
        "my-sdxl": [{ steps: 25, guidance: 5, scheduler: "dpmpp_2m_karras" }, "classifier-free", undefined],
        // Lightning by its name: 4 Euler steps without guidance, as the entry says.
        "my-sdxl-lightning": [{ steps: 4, guidance: 0, scheduler: "euler" }, "none", undefined],
      });
    } finally {
      await engine.dispose();
    }
  });
});
