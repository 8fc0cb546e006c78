/**
 * The registry's ControlNets and its control-capable SD 1.5 on replicas of their repos
 * (scripts/replicas.ts), served by the local hub imitation and pulled as an artist's
 * `npx underpaint models pull controlnet-canny` pulls them: what is fetched, how the folders are
 * read, and that a ControlNet is never a generation model.
 */
import { cp, mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { residualMismatch } from "../../../daemon/models/control-io";
import { findControlNets, isControlNetFolder, kindFromName, loadControlNetFolder } from "../../../daemon/models/controlnet-folder";
import { discoverModels } from "../../../daemon/models/discover";
import { readManifest } from "../../../daemon/models/manifest";
import { loadModelFolder, toModelInfo } from "../../../daemon/models/model-folder";
import { pullModel } from "../../../daemon/models/pull";
import { approximateBytes, findControlNetEntry, findRegistryEntry, loadRegistry, pullTarget, registryModels } from "../../../daemon/models/registry";
import { replicas, writeReplica } from "../../../scripts/replicas";
import { FIXTURES_DIR } from "../../helpers/paths";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { FakeHub } from "./fake-hub";

let hub: FakeHub;
let tmp: TempDir;
const modelsDir = () => path.join(tmp.dir, "models");
const env = () => ({ HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" });

beforeAll(async () => {
  hub = await FakeHub.start();
  tmp = await makeTempDir("underpaint-controlnet-");
  const registry = loadRegistry();
  for (const replica of await replicas()) {
    if (!replica.repo.startsWith("TensorStack/") || replica.repo === "TensorStack/SD-Turbo-onnx") continue;
    const dir = path.join(tmp.dir, "hub", replica.repo.replace("/", "--"));
    await writeReplica(replica, dir);
    const pin = [...registry.models, ...registry.controlNets].find((e) => e.repo === replica.repo)?.revision;
    await hub.addRepo(replica.repo, { dir, ...(pin ? { commit: pin } : {}) });
  }
}, 120_000);
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});

describe("ControlNet registry entries", () => {
  it("name a subfolder of their repo, a kind, their base models, a pinned commit, a license", () => {
    const entries = loadRegistry().controlNets;
    expect(entries.map((e) => [e.id, e.control, e.subfolder])).toEqual([
      ["controlnet-canny", "canny", "SD/Canny"],
      ["controlnet-depth", "depth", "SD/Depth"],
      ["controlnet-pose", "pose", "SD/OpenPose"],
      ["controlnet-scribble", "scribble", "SD/Scribble"],
      ["controlnet-lineart", "lineart", "StableDiffusion/LineArt"],
      ["controlnet-sdxl-canny", "canny", "StableDiffusionXL/Canny"],
      ["controlnet-sdxl-depth", "depth", "StableDiffusionXL/Depth"],
      ["controlnet-sdxl-pose", "pose", "StableDiffusionXL/OpenPose"],
    ]);
    for (const e of entries.filter((e) => e.architecture === "sdxl")) {
      expect([e.repo, e.pinned, e.revision, e.precision]).toEqual(["TensorStack/ControlNet-amuse", true, "76ef99ee42ab075faec360e01a56bb8b84d58963", "fp16"]);
      expect(e.license).toMatch(/openrail\+\+/);
      // About 1.25 B weights in float16: the hub's 2.5 GB model.onnx.data.
      expect(approximateBytes(e) / 1e9).toBeCloseTo(2.5, 1);
    }
    for (const e of entries.filter((e) => e.architecture !== "sdxl")) {
      expect([e.architecture, e.pinned, e.precision]).toEqual(["sd15", true, "fp16"]);
      expect(e.license).toMatch(/openrail/);
      // 361 M weights in float16: the hub's 723-736 MB per model.onnx.
      expect(approximateBytes(e) / 1e6).toBeCloseTo(722.6, 0);
    }
    expect(pullTarget("controlnet-canny")).toMatchObject({ id: "controlnet-canny", repo: "TensorStack/ControlNet-onnx", entry: { kind: "controlnet" } });
    // Never offered as generation models.
    expect(registryModels().map((m) => m.id)).not.toContain("controlnet-canny");
    expect(findRegistryEntry("sd-1.5-control")).toMatchObject({ repo: "TensorStack/stable-diffusion-v1-5-onnx", control: true, architecture: "sd15" });
  });

  it("pull only their subfolder's model.onnx (not the icons or the other kinds), and load as ControlNets of their kind", { timeout: 60_000 }, async () => {
    hub.reset();
    const pulled = await pullModel("controlnet-canny", { modelsDir: modelsDir(), env: env() });
    expect([pulled.id, pulled.files]).toEqual(["controlnet-canny", 1]);
    expect([...new Set(hub.requests.map((r) => r.file).filter((f) => f !== null))]).toEqual(["SD/Canny/model.onnx"]);
    const dir = path.join(modelsDir(), "controlnet-canny");
    expect((await readManifest(dir))?.source).toMatchObject({ repo: "TensorStack/ControlNet-onnx", registryId: "controlnet-canny" });
    expect(await isControlNetFolder(dir)).toBe(true);
    const folder = await loadControlNetFolder(dir, { devices: ["cpu"] });
    expect([folder.kind, folder.registryId, folder.architecture, folder.contextWidth, folder.name]).toEqual(["canny", "controlnet-canny", "sd15", 32, "ControlNet Canny edges (SD 1.5)"]);
    expect(folder.io.residuals.down.map((r) => r.name)).toEqual([0, 1, 2, 3, 4, 5].map((i) => `down_block_${i}_additional_residual`));
    expect(folder.io.residuals.mid).toMatchObject({ name: "mid_block_additional_residual", type: "float32", channels: 64 });
    expect([folder.io.cond, folder.io.condType, folder.io.scale]).toEqual(["controlnet_cond", "float32", { name: "conditioning_scale", type: "float64", rank: 1 }]);
    await pullModel("controlnet-lineart", { modelsDir: modelsDir(), env: env() });
    expect((await loadControlNetFolder(path.join(modelsDir(), "controlnet-lineart"), { devices: ["cpu"] })).kind).toBe("lineart");
  });

  it("are no generation models: not in the models list nor among the unavailable", async () => {
    expect(await discoverModels(modelsDir(), { devices: ["cpu"] })).toEqual({ models: [], broken: [] });
    const engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"] });
    try {
      const capabilities = await engine.capabilities();
      expect([capabilities.models, capabilities.unavailable]).toEqual([[], []]);
      expect(capabilities.controlNets).toEqual([
        { id: "controlnet-canny", name: "ControlNet Canny edges (SD 1.5)", kind: "canny", registryId: "controlnet-canny" },
        { id: "controlnet-lineart", name: "ControlNet Line Art (SD 1.5, ControlNet 1.1)", kind: "lineart", registryId: "controlnet-lineart" },
      ]);
    } finally {
      await engine.dispose();
    }
  });

  it("a folder copied in by hand is a ControlNet when its graph takes controlnet_cond; its name says its kind, or it is reported in one sentence", async () => {
    const canny = path.join(modelsDir(), "controlnet-canny", "SD", "Canny", "model.onnx");
    for (const name of ["my-scribble-net", "mystery-net"]) {
      await mkdir(path.join(modelsDir(), name), { recursive: true });
      await cp(canny, path.join(modelsDir(), name, "model.onnx"));
    }
    expect(await isControlNetFolder(path.join(modelsDir(), "mystery-net"))).toBe(true);
    expect(await isControlNetFolder(path.join(FIXTURES_DIR, "tiny-sd"))).toBe(false);
    const { found, broken } = await findControlNets(modelsDir(), { devices: ["cpu"] });
    expect(found.map((f) => [f.id, f.kind, f.registryId])).toEqual([
      ["controlnet-canny", "canny", "controlnet-canny"],
      ["controlnet-lineart", "lineart", "controlnet-lineart"],
      ["my-scribble-net", "scribble", null],
    ]);
    expect(broken.map((b) => [b.id, b.error.code])).toEqual([["mystery-net", "model_unsupported"]]);
    expect(broken[0]!.error.message).toBe('ControlNet "mystery-net" does not say what it follows: name its folder after its kind (canny, scribble, lineart, depth or pose), e.g. "mystery-net-canny".');
    expect([kindFromName("control_v11p_sd15_lineart"), kindFromName("sd-OpenPose"), kindFromName("sd15-depth"), kindFromName("tile")]).toEqual(["lineart", "pose", "depth", null]);
    for (const name of ["my-scribble-net", "mystery-net"]) await rm(path.join(modelsDir(), name), { recursive: true });
  });
});

describe("SDXL's control-capable model and ControlNets", () => {
  it("pull OnnxStack's SDXL with its control UNet and an SDXL ControlNet with its external weights; a job's unnamed ControlNet is the one of the model's family", { timeout: 180_000 }, async () => {
    hub.reset();
    await pullModel("sdxl-control", { modelsDir: modelsDir(), env: env() });
    await pullModel("controlnet-sdxl-canny", { modelsDir: modelsDir(), env: env() });
    const fetched = hub.requests.map((r) => r.file).filter((f) => f !== null);
    expect(fetched).toContain("controlnet/model.onnx");
    expect(fetched).toContain("StableDiffusionXL/Canny/model.onnx");
    expect(fetched).toContain("StableDiffusionXL/Canny/model.onnx.data");
    expect(fetched.filter((f) => f!.startsWith("StableDiffusionXL/") && !f!.startsWith("StableDiffusionXL/Canny/"))).toEqual([]);
    const folder = await loadModelFolder(path.join(modelsDir(), "sdxl-control"), { devices: ["cpu"] });
    expect(toModelInfo(folder)).toMatchObject({ id: "sdxl-control", control: true, sdxl: true, registryId: "sdxl-control" });
    expect(folder.float16).toBe(true);
    const net = await loadControlNetFolder(path.join(modelsDir(), "controlnet-sdxl-canny"), { devices: ["cpu"] });
    expect([net.kind, net.architecture, net.io.unet.added !== null]).toEqual(["canny", "sdxl", true]);
    expect(residualMismatch(net.io.residuals, folder.controlUnet!.io.residuals)).toBeNull();
    // Beside the SD 1.5 canny ControlNet (pulled above), the SDXL model's job takes the SDXL one.
    await pullModel("controlnet-canny", { modelsDir: modelsDir(), env: env() });
    const engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"] });
    try {
      const { controlNets } = await engine.capabilities();
      expect(controlNets?.filter((c) => c.kind === "canny")).toEqual([
        { id: "controlnet-canny", name: "ControlNet Canny edges (SD 1.5)", kind: "canny", registryId: "controlnet-canny" },
        { id: "controlnet-sdxl-canny", name: "ControlNet Canny edges (SDXL)", kind: "canny", registryId: "controlnet-sdxl-canny", sdxl: true },
      ]);
      const square = { width: 64, height: 64, channels: 3 as const, data: Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (Math.floor(i / 3) % 64 > 20 && Math.floor(i / 3) % 64 < 44 ? 0 : 255)) };
      const job = { mode: "txt2img", model: "sdxl-control", prompt: "a house", negativePrompt: "", seed: 2, steps: 2, guidance: 5, scheduler: "euler", variations: 1, truncatePrompt: false, previews: false, output: { width: 64, height: 64 }, size: { width: 64, height: 64 } } as const;
      const [steered] = await engine.run({ ...job, control: { kind: "canny", image: square, strength: 1, start: 0, end: 1 } }, { signal: new AbortController().signal, onProgress: () => {} });
      expect([steered!.image.width, steered!.image.height]).toEqual([64, 64]);
      await expect(engine.run({ ...job, control: { kind: "canny", image: square, strength: 1, start: 0, end: 1, controlNet: "controlnet-canny" } }, { signal: new AbortController().signal, onProgress: () => {} })).rejects.toThrow(/is for SD 1.x and 2.x models/);
    } finally {
      await engine.dispose();
    }
  });
});

describe("a control-capable model", () => {
  it("pulls with its control UNet (controlnet/), is control-capable from its inputs, and its residuals pair with the ControlNets'", { timeout: 60_000 }, async () => {
    hub.reset();
    const pulled = await pullModel("sd-1.5-control", { modelsDir: modelsDir(), env: env() });
    const fetched = hub.requests.map((r) => r.file).filter((f) => f !== null);
    expect(fetched).toContain("controlnet/model.onnx");
    expect(fetched).toContain("controlnet/config.json");
    const folder = await loadModelFolder(path.join(modelsDir(), pulled.id), { devices: ["cpu"] });
    expect(folder.controlUnet?.io.residuals.down).toHaveLength(6);
    expect([folder.controlUnet?.io.sampleType, folder.controlUnet?.io.residuals.mid.type]).toEqual(["float16", "float16"]);
    expect(toModelInfo(folder)).toMatchObject({ id: "sd-1.5-control", control: true, registryId: "sd-1.5-control" });
    const net = await loadControlNetFolder(path.join(modelsDir(), "controlnet-canny"), { devices: ["cpu"] });
    expect(residualMismatch(net.io.residuals, folder.controlUnet!.io.residuals)).toBeNull();
    expect(residualMismatch({ ...net.io.residuals, down: net.io.residuals.down.slice(1) }, folder.controlUnet!.io.residuals)).toBe("it gives 5 down-block residuals and the model's UNet takes 6");
  });

  it("is not what a folder without controlnet/ is: the fixture's tiny-sd takes no ControlNet", async () => {
    const folder = await loadModelFolder(path.join(FIXTURES_DIR, "tiny-sd"), { devices: ["cpu"] });
    expect([folder.controlUnet, folder.controlUnetProblem, toModelInfo(folder).control]).toEqual([null, null, undefined]);
    expect(findControlNetEntry("controlnet-scribble")?.repo).toBe("TensorStack/ControlNet-onnx");
  });
});
