/**
 * Previews and drafts with the registry's preview decoder (TAESD, its replica pulled from the local
 * hub imitation as an artist pulls it) beside the tiny SD model, and without it. What the engine
 * sends is checked against the same pipeline run step by step (generate with a trace), decoded here.
 */
import { mkdir, rm, symlink } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { readFile, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { EngineProgress, GenerationJob } from "../../../daemon/engine/engine";
import { generate, type LoadedModel } from "../../../daemon/engine/pipeline/generate";
import { decodedToUnit, decodeTinyLatents, unitToRgb8 } from "../../../daemon/engine/pipeline/vae";
import { decodedPreview, halfLatents, latentPreview } from "../../../daemon/engine/preview";
import { TorchGenerator } from "../../../daemon/engine/rng";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { pullModel } from "../../../daemon/models/pull";
import { loadPreviewDecoderFolder, PreviewDecoderSessions } from "../../../daemon/models/taesd-folder";
import { replicas, writeReplica, type TaesdReplica } from "../../../scripts/replicas";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { FIXTURES_DIR } from "../../helpers/paths";
import type { Pixels } from "../../../geometry";
import { FakeHub } from "../models/fake-hub";

let hub: FakeHub;
let tmp: TempDir;
/** tiny-sd and the pulled TAESD. */
const withTaesd = () => path.join(tmp.dir, "with-taesd");
/** tiny-sd alone. */
const withoutTaesd = () => path.join(tmp.dir, "without-taesd");
const logs: string[] = [];

beforeAll(async () => {
  hub = await FakeHub.start();
  tmp = await makeTempDir("underpaint-taesd-engine-");
  const replica = (await replicas()).find((r): r is TaesdReplica => r.from === "taesd")!;
  const served = path.join(tmp.dir, "hub", "taesd");
  await writeReplica(replica, served);
  await hub.addRepo(replica.repo, { dir: served });
  for (const dir of [withTaesd(), withoutTaesd()]) {
    await mkdir(dir, { recursive: true });
    await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(dir, "tiny-sd"));
  }
  await pullModel("taesd", { modelsDir: withTaesd(), env: { HF_ENDPOINT: hub.url } });
}, 60_000);
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});

const SIZE = { width: 64, height: 64 };
function txt2img(settings: Partial<GenerationJob> = {}): GenerationJob {
  return { model: "tiny-sd", prompt: "a lighthouse at dusk", negativePrompt: "", seed: 11, steps: 3, guidance: 7.5, scheduler: "euler", variations: 1, truncatePrompt: false, previews: true, mode: "txt2img", output: SIZE, size: SIZE, ...settings } as GenerationJob;
}

async function run(modelsDir: string, job: GenerationJob): Promise<{ image: Pixels; previews: Pixels[]; notices: string[] }> {
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"], log: (_level, line) => logs.push(line) });
  const previews: Pixels[] = [];
  const notices: string[] = [];
  try {
    const [result] = await engine.run(job, {
      signal: new AbortController().signal,
      onProgress: (p: EngineProgress) => p.stage === "denoising" && p.preview && previews.push(p.preview),
      onNotice: (n) => notices.push(n),
    });
    return { image: result!.image, previews, notices };
  } finally {
    await engine.dispose();
  }
}

/** The job's latents after each step, from the same pipeline run here with a trace. */
async function stepLatents(job: GenerationJob, size = SIZE): Promise<Float32Array[]> {
  const folder = await loadModelFolder(path.join(FIXTURES_DIR, "tiny-sd"), { devices: ["cpu"] });
  const sessions = new ModelSessions(folder, { devices: ["cpu"] });
  const model: LoadedModel = { folder, sessions, tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) };
  const steps: Float32Array[] = [];
  try {
    await generate(model, { prompts: [job.prompt], negativePrompts: [job.negativePrompt], ...size, steps: job.steps, guidance: job.guidance, scheduler: job.scheduler, truncatePrompt: job.truncatePrompt }, new TorchGenerator(job.seed), {
      trace: { step: (_i, _n, latents) => void steps.push(Float32Array.from(latents)) },
    });
  } finally {
    await sessions.release();
  }
  return steps;
}

async function taesdSessions(): Promise<PreviewDecoderSessions> {
  return new PreviewDecoderSessions(await loadPreviewDecoderFolder(path.join(withTaesd(), "taesd"), { devices: ["cpu"] }), { devices: ["cpu"] });
}

describe("previews and drafts with TAESD", () => {
  it("decodes each step's preview with TAESD from the latents as the UNet makes them (8 pixels a latent, not divided by 0.18215)", { timeout: 60_000 }, async () => {
    const job = txt2img();
    const { previews } = await run(withTaesd(), job);
    const latents = await stepLatents(job);
    const taesd = await taesdSessions();
    try {
      const decoder = await taesd.decoder(8, 8);
      expect(previews.map((p) => [p.width, p.height, p.channels])).toEqual([[64, 64, 3], [64, 64, 3], [64, 64, 3]]);
      for (let i = 0; i < latents.length; i++) {
        const expected = decodedPreview(await decodeTinyLatents(decoder, latents[i]!, 8, 8, "minus-one-to-one"), 64, 64);
        expect(previews[i]!.data, `step ${i + 1}`).toEqual(expected.data);
        const vaeScaled = decodedPreview(await decodeTinyLatents(decoder, latents[i]!.map((v) => v / 0.18215), 8, 8, "minus-one-to-one"), 64, 64);
        expect(previews[i]!.data).not.toEqual(vaeScaled.data);
      }
    } finally {
      await taesd.release();
    }
  });

  it("decodes a preview larger than the panel shows from the latents' 2x2 means (same scale, a quarter of the work), and a draft's final picture at full size", { timeout: 90_000 }, async () => {
    // 384x320: 48x40 latents. At full size TAESD gives 384x320, shrunk by 2 to 192x160; the means (24x20) give 192x160 directly.
    const size = { width: 384, height: 320 };
    const job = txt2img({ output: size, size, steps: 2 });
    const { previews } = await run(withTaesd(), job);
    const latents = await stepLatents(job, size);
    const taesd = await taesdSessions();
    try {
      expect(previews.map((p) => [p.width, p.height, p.channels])).toEqual([[192, 160, 3], [192, 160, 3]]);
      const half = await taesd.decoder(20, 24);
      for (let i = 0; i < latents.length; i++) {
        // The means, written out here: channel c, box (x, y) of the 48x40 latents.
        const means = new Float32Array(4 * 24 * 20);
        for (let c = 0; c < 4; c++) for (let y = 0; y < 20; y++) for (let x = 0; x < 24; x++) {
          const at = (dx: number, dy: number) => latents[i]![c * 48 * 40 + (2 * y + dy) * 48 + 2 * x + dx]!;
          means[c * 480 + y * 24 + x] = (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4;
        }
        const expected = decodedPreview(await decodeTinyLatents(half, means, 24, 20, "minus-one-to-one"), 192, 160);
        expect(previews[i]!.data, `step ${i + 1}`).toEqual(expected.data);
        // A picture, not a flat field: the bytes spread over the range.
        const values = Array.from(previews[i]!.data);
        expect(Math.max(...values) - Math.min(...values)).toBeGreaterThan(32);
      }
      // A draft: the final picture is TAESD's full-size decode of the last latents, never the means'.
      const draft = await run(withTaesd(), { ...job, draft: true });
      const full = await taesd.decoder(40, 48);
      const final = await decodeTinyLatents(full, latents.at(-1)!, 48, 40, "minus-one-to-one");
      expect([draft.image.width, draft.image.height]).toEqual([384, 320]);
      expect(draft.image.data).toEqual(unitToRgb8(decodedToUnit(final), 384, 320));
      // Its last step's preview is that full decode shrunk (the final picture reuses it); the others the means'.
      expect(draft.previews.map((p) => [p.width, p.height])).toEqual([[192, 160], [192, 160]]);
      expect(draft.previews[0]!.data).toEqual(previews[0]!.data);
      expect(draft.previews[1]!.data).toEqual(decodedPreview(final, 384, 320).data);
    } finally {
      await taesd.release();
    }
  });

  it("averages odd latents' last row and column over the latents they have", () => {
    // 3x3 latents, one channel's values 0..8 (the others 0): boxes {0,1,3,4}, {2,5}, {6,7}, {8}.
    const latents = new Float32Array(4 * 9);
    for (let i = 0; i < 9; i++) latents[i] = i;
    const half = halfLatents(latents, 3, 3);
    expect([half.width, half.height]).toEqual([2, 2]);
    expect(Array.from(half.latents.subarray(0, 4))).toEqual([2, 3.5, 6.5, 8]);
    expect(Array.from(half.latents.subarray(4))).toEqual(new Array(12).fill(0));
  });

  it("falls back to the cheap latent-to-RGB preview (one pixel a latent) when no TAESD is installed", { timeout: 60_000 }, async () => {
    const job = txt2img();
    const { previews } = await run(withoutTaesd(), job);
    const latents = await stepLatents(job);
    expect(previews.map((p) => [p.width, p.height])).toEqual([[8, 8], [8, 8], [8, 8]]);
    for (let i = 0; i < latents.length; i++) expect(previews[i]!.data).toEqual(latentPreview(latents[i]!, 8, 8).data);
  });

  it("decodes a draft with TAESD (the VAE decoder never loads), the full VAE staying the default for final pictures", { timeout: 60_000 }, async () => {
    logs.length = 0;
    const job = txt2img({ draft: true });
    const draft = await run(withTaesd(), job);
    expect(logs.filter((l) => /vaeDecoder loaded/.test(l))).toEqual([]);
    expect(logs.some((l) => /preview decoder "taesd": decoder loaded on cpu/.test(l))).toBe(true);
    const final = (await stepLatents(job)).at(-1)!;
    const taesd = await taesdSessions();
    try {
      const expected = unitToRgb8(decodedToUnit(await decodeTinyLatents(await taesd.decoder(8, 8), final, 8, 8, "minus-one-to-one")), 64, 64);
      expect(draft.image.data).toEqual(expected);
    } finally {
      await taesd.release();
    }
    logs.length = 0;
    const full = await run(withTaesd(), txt2img());
    expect(logs.some((l) => /vaeDecoder loaded/.test(l))).toBe(true);
    expect(full.image.data).not.toEqual(draft.image.data);
    // Without previews the draft decodes the same picture itself.
    expect((await run(withTaesd(), txt2img({ draft: true, previews: false }))).image.data).toEqual(draft.image.data);
  });

  it("decodes a draft with the VAE, and says so, when no TAESD is installed", { timeout: 60_000 }, async () => {
    const draft = await run(withoutTaesd(), txt2img({ draft: true }));
    const full = await run(withoutTaesd(), txt2img());
    expect(draft.image.data).toEqual(full.image.data);
    expect(draft.notices).toEqual(["This draft was decoded by the VAE: install the preview decoder for fast drafts (npx underpaint models pull taesd)."]);
    expect(full.notices).toEqual([]);
  });

  it("uses a TAESD installed while the daemon runs from its next rescan, and goes back to the cheap preview when it is removed", { timeout: 60_000 }, async () => {
    const dir = path.join(tmp.dir, "changing");
    await mkdir(dir);
    await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(dir, "tiny-sd"));
    const engine = new DiffusionEngine({ modelsDir: dir, devices: ["cpu"] });
    const previewSide = async () => {
      let side = 0;
      await engine.capabilities(); // as the models watcher rescans on a change
      await engine.run(txt2img({ steps: 1 }), { signal: new AbortController().signal, onProgress: (p) => void (p.preview && (side = p.preview.width)) });
      return side;
    };
    try {
      expect(await previewSide()).toBe(8);
      expect((await engine.capabilities()).previewDecoder).toBeNull();
      await pullModel("taesd", { modelsDir: dir, env: { HF_ENDPOINT: hub.url } });
      expect(await previewSide()).toBe(64);
      // What the panel hears: installed as the registry's entry, and never in the model list.
      const capabilities = await engine.capabilities();
      expect(capabilities.previewDecoder).toEqual({ id: "taesd", registryId: "taesd" });
      expect(capabilities.models.map((m) => m.id)).toEqual(["tiny-sd"]);
      await rm(path.join(dir, "taesd"), { recursive: true });
      expect(await previewSide()).toBe(8);
      expect((await engine.capabilities()).previewDecoder).toBeNull();
    } finally {
      await engine.dispose();
    }
  });

  it("goes on without TAESD when it fails to decode: cheap previews and a VAE-decoded draft, logged once", { timeout: 60_000 }, async () => {
    // A decoder whose graph takes only 4x4 latents: onnxruntime refuses the job's 8x8 ones.
    const dir = path.join(tmp.dir, "failing");
    await mkdir(dir);
    await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(dir, "tiny-sd"));
    const replica = (await replicas()).find((r): r is TaesdReplica => r.from === "taesd")!;
    await writeReplica(replica, path.join(dir, "fixed-ae"));
    const file = path.join(dir, "fixed-ae", "vae_decoder", "model.onnx");
    const model = onnxProto.onnx.ModelProto.decode(await readFile(file));
    model.graph!.input![0]!.type!.tensorType!.shape!.dim = [{ dimParam: "batch_size" }, { dimValue: 4 }, { dimValue: 4 }, { dimValue: 4 }];
    await writeFile(file, onnxProto.onnx.ModelProto.encode(model).finish());
    logs.length = 0;
    const draft = await run(dir, txt2img({ draft: true }));
    const full = await run(withoutTaesd(), txt2img());
    expect(draft.previews.map((p) => p.width)).toEqual([8, 8, 8]);
    expect(draft.image.data).toEqual(full.image.data);
    expect(logs.filter((l) => /preview decoder "fixed-ae" failed/.test(l))).toHaveLength(1);
  });
});
