/**
 * The registry's preview decoder (TAESD) on a replica of its repo (scripts/replicas.ts, built by
 * scripts/onnx-builder/taesd.ts), served by the local hub imitation and pulled exactly as an artist's
 * `npx underpaint models pull taesd` pulls it; then its value conventions on the daemon's own sessions.
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { Tensor } from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { decodeTinyLatents } from "../../../daemon/engine/pipeline/vae";
import { discoverModels } from "../../../daemon/models/discover";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import { readManifest } from "../../../daemon/models/manifest";
import { pullModel } from "../../../daemon/models/pull";
import { findPreviewDecoderEntry, loadRegistry, pullTarget, registryModels } from "../../../daemon/models/registry";
import { findPreviewDecoders, isPreviewDecoderFolder, loadPreviewDecoderFolder, PreviewDecoderSessions, type PreviewDecoderFolder } from "../../../daemon/models/taesd-folder";
import { verifyModel } from "../../../daemon/models/verify";
import { fillRandom } from "../../../scripts/onnx-builder/graph";
import { taesdDecoder, TAESD_OPSET } from "../../../scripts/onnx-builder/taesd";
import { replicas, writeReplica, type TaesdReplica } from "../../../scripts/replicas";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { FakeHub } from "./fake-hub";

let hub: FakeHub;
let tmp: TempDir;
let replica: TaesdReplica;
let folder: PreviewDecoderFolder;
let sessions: PreviewDecoderSessions;
const modelsDir = () => path.join(tmp.dir, "models");
const env = () => ({ HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" });
const entry = () => findPreviewDecoderEntry("taesd")!;

/** Serves `dir` (a replica folder, maybe changed by `edit`) as the repo `repo`. */
async function serve(repo: string, edit?: (dir: string) => Promise<void>): Promise<void> {
  const dir = path.join(tmp.dir, "hub", repo.replace("/", "--"));
  await writeReplica(replica, dir);
  await edit?.(dir);
  await hub.addRepo(repo, { dir });
}

async function failure(promise: Promise<unknown>): Promise<ModelInstallError> {
  const error = await promise.then(() => null, (e: unknown) => e);
  if (error instanceof ModelInstallError) return error;
  throw new Error(`expected a ModelInstallError, got ${String(error)}`);
}

beforeAll(async () => {
  hub = await FakeHub.start();
  tmp = await makeTempDir("underpaint-taesd-");
  replica = (await replicas()).find((r): r is TaesdReplica => r.from === "taesd")!;
  await serve(replica.repo);
}, 60_000);
afterAll(async () => {
  await sessions?.release();
  await hub.close();
  await tmp.cleanup();
});

describe("the TAESD registry entry", () => {
  it("is a preview decoder of the replica's repo, not pinned, with a note on what is verified", () => {
    expect(entry()).toMatchObject({ repo: replica.repo, kind: "preview-decoder", imageRange: replica.imageRange, precision: "fp32", license: "MIT", pinned: false });
    expect(entry().note).toMatch(/Not verified/);
    expect(pullTarget("taesd")).toMatchObject({ id: "taesd", repo: "deinferno/taesd-onnx", entry: { kind: "preview-decoder" } });
    expect(pullTarget("deinferno/taesd-onnx").id).toBe("taesd");
  });

  it("pulls as a user's download does: its two ONNX parts only (not the README or the conversion script), checksummed, the manifest naming the entry", { timeout: 60_000 }, async () => {
    const progress: string[] = [];
    const pulled = await pullModel("taesd", { modelsDir: modelsDir(), env: env(), onProgress: (p) => progress.push(p.stage) });
    expect([pulled.id, pulled.files, pulled.alreadyInstalled]).toEqual(["taesd", 2, false]);
    expect(progress.at(-1)).toBe("done");
    const fetched = new Set(hub.requests.map((r) => r.file).filter((f) => f !== null));
    expect([...fetched].sort()).toEqual(["vae_decoder/model.onnx", "vae_encoder/model.onnx"]);
    const manifest = (await readManifest(path.join(modelsDir(), "taesd")))!;
    expect(manifest.source).toMatchObject({ kind: "hub", repo: replica.repo, registryId: "taesd" });
    expect(manifest.files.map((f) => f.path)).toEqual(["vae_decoder/model.onnx", "vae_encoder/model.onnx"]);
    const verified = await verifyModel(modelsDir(), "taesd");
    expect([verified.problems, verified.checked, verified.previewDecoder?.id]).toEqual([[], 2, "taesd"]);
  });

  it("loads through the preview decoder's checks: the export's inputs and outputs, its image range, TAESD's weights as the entry counts them", async () => {
    folder = await loadPreviewDecoderFolder(path.join(modelsDir(), "taesd"), { devices: ["cpu"] });
    expect(folder.io).toEqual({
      decoder: { latent: "latent_sample", latentType: "float32", output: "sample", outputType: "float32" },
      encoder: { sample: "sample", sampleType: "float32", output: "latent_sample", outputType: "float32", outputKind: "latent_sample" },
    });
    expect([folder.imageRange, folder.registryId]).toEqual(["minus-one-to-one", "taesd"]);
    // The graphs' few constants (tanh's 3, the resize scales, ...) count as initializers too: 9 elements.
    expect(folder.parameters - entry().parameters).toBe(9);
    // fp32: 4 bytes a weight, as the hub's 4.91 MB per file says.
    expect(folder.weightsBytes / entry().parameters).toBeCloseTo(4, 1);
    expect((await findPreviewDecoders(modelsDir(), { devices: ["cpu"] })).found?.id).toBe("taesd");
  });

  it("is never a generation model: not in the models folder's list nor among the unavailable, not in the registry the panel's model setup gets", async () => {
    expect(await discoverModels(modelsDir())).toEqual({ models: [], broken: [] });
    const engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"] });
    try {
      const capabilities = await engine.capabilities();
      expect([capabilities.models, capabilities.unavailable]).toEqual([[], []]);
    } finally {
      await engine.dispose();
    }
    expect(registryModels().map((m) => m.id)).not.toContain("taesd");
    expect(registryModels().map((m) => m.id)).toEqual(loadRegistry().models.map((m) => m.id));
    expect(loadRegistry().previewDecoders.map((m) => m.id)).toEqual(["taesd"]);
  });

  it("pulls an autoencoder-only repo named by owner/name as a preview decoder too", { timeout: 60_000 }, async () => {
    await serve("someone/my-taesd");
    const pulled = await pullModel("someone/my-taesd", { modelsDir: modelsDir(), env: env() });
    const dir = path.join(modelsDir(), pulled.id);
    expect([pulled.id, await isPreviewDecoderFolder(dir), (await loadPreviewDecoderFolder(dir, { devices: ["cpu"] })).registryId]).toEqual(["my-taesd", true, null]);
    // The registry's install is the one used.
    expect((await findPreviewDecoders(modelsDir(), { devices: ["cpu"] })).found?.id).toBe("taesd");
    await rm(dir, { recursive: true });
  });

  it("refuses, installing nothing, an autoencoder that is not a tiny SD one: a full-size VAE's weights, another class, scaled latents", { timeout: 60_000 }, async () => {
    await serve("someone/big-vae", async (dir) => {
      // Over 5 M weights: as slow as a real VAE would be after every step.
      const g = taesdDecoder();
      g.weight("padding", [5_000_000], 0.01);
      await g.write(path.join(dir, "vae_decoder", "model.onnx"), { opset: TAESD_OPSET });
    });
    const big = await failure(pullModel("someone/big-vae", { modelsDir: modelsDir(), env: env() }));
    expect(big.code).toBe("unsupported");
    expect(big.message).toMatch(/vae_decoder\/model\.onnx\): .* has 6\.2 M weights: not a tiny autoencoder .* Nothing was installed\.$/);
    await serve("someone/kl-vae", (dir) => writeFile(path.join(dir, "vae_decoder", "config.json"), JSON.stringify({ _class_name: "AutoencoderKL", scaling_factor: 0.18215 })));
    expect((await failure(pullModel("someone/kl-vae", { modelsDir: modelsDir(), env: env() }))).message).toMatch(/describes a AutoencoderKL, not a tiny autoencoder/);
    await serve("someone/scaled-taesd", (dir) => writeFile(path.join(dir, "vae_decoder", "config.json"), JSON.stringify({ _class_name: "AutoencoderTiny", scaling_factor: 0.5 })));
    expect((await failure(pullModel("someone/scaled-taesd", { modelsDir: modelsDir(), env: env() }))).message).toMatch(/scales its latents by 0\.5/);
    const names = (await findPreviewDecoders(modelsDir())).found?.id;
    expect(names).toBe("taesd");
    for (const id of ["big-vae", "kl-vae", "scaled-taesd"]) expect(await isPreviewDecoderFolder(path.join(modelsDir(), id))).toBe(false);
  });

  it("is found in a folder added by hand (no manifest) and reported, not listed, when broken", async () => {
    const byHand = path.join(tmp.dir, "by-hand");
    await writeReplica(replica, path.join(byHand, "tiny-ae"));
    await mkdir(path.join(byHand, "broken-ae", "vae_decoder"), { recursive: true });
    await writeFile(path.join(byHand, "broken-ae", "vae_decoder", "model.onnx"), (await readFile(path.join(byHand, "tiny-ae", "vae_decoder", "model.onnx"))).subarray(0, 5000));
    const found = await findPreviewDecoders(byHand, { devices: ["cpu"] });
    expect([found.found?.id, found.found?.registryId, found.found?.imageRange]).toEqual(["tiny-ae", null, "minus-one-to-one"]);
    expect(found.broken.map((b) => [b.id, b.error.code])).toEqual([["broken-ae", "model_file_invalid"]]);
    expect(await discoverModels(byHand)).toEqual({ models: [], broken: [] });
  });
});

describe("TAESD's value conventions, on the daemon's sessions of the pulled folder", () => {
  const random = (n: number, name: string, std = 1) => {
    const a = new Float32Array(n);
    fillRandom(a, name, std);
    return a;
  };
  const decode = async (latents: Float32Array, h: number, w: number) => decodeTinyLatents(await sessions.decoder(h, w), latents, w, h, folder.imageRange);

  beforeAll(async () => {
    folder ??= await loadPreviewDecoderFolder(path.join(modelsDir(), "taesd"), { devices: ["cpu"] });
    sessions = new PreviewDecoderSessions(folder, { devices: ["cpu"] });
  });

  it("decodes [1, 4, h, w] into [1, 3, 8h, 8w] and encodes [1, 3, 8h, 8w] back into [1, 4, h, w]", async () => {
    const decoder = await sessions.decoder(5, 7);
    const out = (await decoder.session.run({ latent_sample: new Tensor("float32", random(4 * 35, "z"), [1, 4, 5, 7]) })).sample!;
    expect(out.dims).toEqual([1, 3, 40, 56]);
    const encoder = await sessions.encoder(5, 7);
    const latents = (await encoder.session.run({ sample: new Tensor("float32", out.data as Float32Array, [1, 3, 40, 56]) })).latent_sample!;
    expect(latents.dims).toEqual([1, 4, 5, 7]);
    expect(decoder.device).toBe("cpu");
  });

  it("takes the latents as they are (scale factor 1): decodeTinyLatents feeds exactly what it is given", async () => {
    const z = random(4 * 36, "unet-latents", 0.8);
    const decoder = await sessions.decoder(6, 6);
    const direct = (await decoder.session.run({ latent_sample: new Tensor("float32", z, [1, 4, 6, 6]) })).sample!.data as Float32Array;
    expect(await decode(z, 6, 6)).toEqual(direct);
    // The full VAE's convention (latents / 0.18215) would give another picture.
    const divided = await decode(z.map((v) => v / 0.18215), 6, 6);
    expect(Math.max(...divided.map((v, i) => Math.abs(v - direct[i]!)))).toBeGreaterThan(0.01);
  });

  it("soft-clamps its input by tanh(x / 3) * 3: a large latent and ten times it decode alike, small ones do not", async () => {
    const big = random(4 * 36, "big").map((v) => (v < 0 ? -12 : 12) + v);
    const small = random(4 * 36, "small", 0.05);
    const diff = async (z: Float32Array) => {
      const [a, b] = [await decode(z, 6, 6), await decode(z.map((v) => 10 * v), 6, 6)];
      return Math.max(...a.map((v, i) => Math.abs(v - b[i]!)));
    };
    const [bigDiff, smallDiff] = [await diff(big), await diff(small)];
    expect(bigDiff).toBeLessThan(0.01);
    expect(smallDiff).toBeGreaterThan(10 * bigDiff);
  });

  it("gives pictures in [-1, 1] as the VAE decoder does, not clamped: values past the range come out as they are", async () => {
    const out = await decode(random(4 * 64, "wide", 2.5), 8, 8);
    expect(Math.max(...out.map(Math.abs))).toBeGreaterThan(1);
    // Centred on the range's middle (0), as a [0, 1] picture mapped by 2y - 1 is.
    expect(Math.abs(out.reduce((a, b) => a + b, 0) / out.length)).toBeLessThan(0.5);
  });
});
