import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";
import { InferenceSession } from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import type { SessionFactory } from "../../../daemon/models/execution-provider";
import { loadModelFolder, ModelFolderError, type ModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions, SessionCache } from "../../../daemon/models/model-sessions";
import { OptimizedModelCache } from "../../../daemon/models/optimized-models";
import { fixtureModelDir, makeTempDir } from "../../helpers/model-fixtures";

/** Real CPU sessions, counting creations and releases per model file. */
function countingFactory(): { factory: SessionFactory; created: string[]; released: string[] } {
  const created: string[] = [];
  const released: string[] = [];
  const factory: SessionFactory = async (path, options) => {
    const session = await InferenceSession.create(path, options);
    created.push(path);
    const release = session.release.bind(session);
    session.release = async () => {
      released.push(path);
      await release();
    };
    return session;
  };
  return { factory, created, released };
}

let sd: ModelFolder;
let inpaint: ModelFolder;
beforeAll(async () => {
  sd = await loadModelFolder(fixtureModelDir("tiny-sd"));
  inpaint = await loadModelFolder(fixtureModelDir("tiny-sd-inpaint"));
});

describe("ModelSessions", () => {
  it("creates each part lazily, once, and reports its device and I/O", async () => {
    const { factory, created } = countingFactory();
    const sessions = new ModelSessions(sd, { devices: ["cpu"], threads: 1, factory });
    expect(sessions.loaded()).toEqual([]);
    expect(sessions.device).toBeNull();
    const [a, b] = await Promise.all([sessions.unet(), sessions.unet()]);
    expect(a).toBe(b);
    expect(created).toEqual([sd.paths.unet]);
    expect(a.device).toBe("cpu");
    expect(a.io.timestepType).toBe("float32");
    expect(sessions.device).toBe("cpu");
    const text = await sessions.textEncoder();
    expect(text.io.inputIdsType).toBe("int32");
    expect(sessions.loaded()).toEqual(["textEncoder", "unet"]);
    expect(sessions.devices()).toEqual({ textEncoder: "cpu", unet: "cpu" });
    await sessions.release();
    expect(sessions.released).toBe(true);
    await expect(sessions.unet()).rejects.toThrow(/released/);
    await sessions.release(); // idempotent
  });

  it("loadAll creates every part; a model without a VAE encoder refuses vaeEncoder()", async () => {
    const { factory, created, released } = countingFactory();
    const sessions = new ModelSessions(sd, { devices: ["cpu"], threads: 1, factory });
    await sessions.loadAll();
    expect(sessions.loaded()).toEqual(["textEncoder", "unet", "vaeEncoder", "vaeDecoder"]);
    expect((await sessions.vaeEncoder()).io.outputKind).toBe("latent_sample");
    await sessions.release();
    expect(released.sort()).toEqual(created.sort());

    const noEncoder: ModelFolder = { ...sd, paths: { ...sd.paths, vaeEncoder: null }, hasVaeEncoder: false };
    const txt2imgOnly = new ModelSessions(noEncoder, { devices: ["cpu"], threads: 1, factory });
    const error = await txt2imgOnly.vaeEncoder().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelFolderError);
    expect((error as ModelFolderError).code).toBe("model_file_missing");
    await txt2imgOnly.loadAll();
    expect(txt2imgOnly.loaded()).toEqual(["textEncoder", "unet", "vaeDecoder"]);
    await txt2imgOnly.release();
  });

  it("releases a session still being created when released meanwhile", async () => {
    const { factory, created, released } = countingFactory();
    const sessions = new ModelSessions(sd, { devices: ["cpu"], threads: 1, factory });
    const pending = sessions.vaeDecoder();
    await sessions.release();
    await pending;
    expect(created).toEqual([sd.paths.vaeDecoder]);
    expect(released).toEqual([sd.paths.vaeDecoder]);
  });

  it("a failed creation can be retried", async () => {
    let fail = true;
    const factory: SessionFactory = async (path, options) => {
      if (fail) throw new Error("out of memory");
      return InferenceSession.create(path, options);
    };
    const sessions = new ModelSessions(sd, { devices: ["cpu"], threads: 1, factory });
    await expect(sessions.vaeDecoder()).rejects.toThrow(/out of memory/);
    fail = false;
    expect((await sessions.vaeDecoder()).device).toBe("cpu");
    await sessions.release();
  });
});

describe("ModelSessions' own loading: attention fused in the UNet and the VAE", () => {
  it("fuses the UNet's and the VAE decoder's attention, not CLIP's, and says so", async () => {
    const logs: string[] = [];
    const sessions = new ModelSessions(sd, { devices: ["cpu"], threads: 1, log: (_level, message) => logs.push(message) });
    await sessions.textEncoder();
    expect(logs.filter((l) => l.includes("fused"))).toEqual([]);
    await sessions.unet();
    await sessions.vaeDecoder();
    expect(logs.filter((l) => l.includes("fused"))).toEqual([
      expect.stringMatching(/^unet\/model\.onnx: 12 attention blocks fused into MultiHeadAttention/),
      expect.stringMatching(/^vae_decoder\/model\.onnx: 1 attention blocks fused into MultiHeadAttention/),
    ]);
    await sessions.release();
  });

  it("keeps the fused graph in the optimized copy, which later loads use as it is", async () => {
    const temp = await makeTempDir();
    try {
      const cache = new OptimizedModelCache({ dir: temp.dir });
      const first = new ModelSessions(sd, { devices: ["cpu"], threads: 1, optimizedModels: cache });
      await first.unet();
      await first.release();
      const entries = (await readdir(cache.root)).filter((e) => !e.startsWith("."));
      expect(entries).toHaveLength(1);
      const copy = onnxProto.onnx.ModelProto.decode(await readFile(path.join(cache.root, entries[0]!, "model.onnx")));
      const ops = copy.graph!.node!.map((n) => n.opType);
      expect(ops.filter((op) => op === "MultiHeadAttention")).toHaveLength(12);
      expect(ops).not.toContain("Softmax");
      const logs: string[] = [];
      const second = new ModelSessions(sd, { devices: ["cpu"], threads: 1, optimizedModels: new OptimizedModelCache({ dir: temp.dir, log: (_l, m) => logs.push(m) }), log: (_l, m) => logs.push(m) });
      await second.unet();
      expect(logs.some((l) => l.startsWith(`loaded ${sd.paths.unet} from its optimized copy`))).toBe(true);
      expect(logs.some((l) => l.includes("fused"))).toBe(false);
      await second.release();
    } finally {
      await temp.cleanup();
    }
  });
});

describe("SessionCache", () => {
  it("keeps one model: switching releases the old model's sessions", async () => {
    const { factory, created, released } = countingFactory();
    const lines: string[] = [];
    const cache = new SessionCache({ devices: ["cpu"], threads: 1, factory, log: (_, m) => lines.push(m) });
    expect(cache.devices).toEqual(["cpu"]);
    const first = await cache.get(sd);
    await first.unet();
    await first.textEncoder();
    expect(cache.device).toBe("cpu");
    expect(await cache.get(sd)).toBe(first);
    expect(await cache.get(await loadModelFolder(fixtureModelDir("tiny-sd")))).toBe(first);

    const second = await cache.get(inpaint);
    expect(second).not.toBe(first);
    expect(first.released).toBe(true);
    expect(released.sort()).toEqual([sd.paths.textEncoder, sd.paths.unet].sort());
    expect(cache.current()).toBe(second);
    expect(cache.device).toBeNull(); // nothing of the new model loaded yet
    const unet = await second.unet();
    expect(unet.path).toBe(inpaint.paths.unet);
    expect(lines).toContain('released model "tiny-sd" to load "tiny-sd-inpaint"');

    await cache.release();
    expect(second.released).toBe(true);
    expect(cache.current()).toBeNull();
    expect(released).toContain(inpaint.paths.unet);
    expect(created.length).toBe(released.length);
  });

  it("serializes concurrent switches: the last one wins, every other model is released", async () => {
    const { factory } = countingFactory();
    const cache = new SessionCache({ devices: ["cpu"], threads: 1, factory });
    const [a, b, c] = await Promise.all([cache.get(sd), cache.get(inpaint), cache.get(sd)]);
    expect(a.released).toBe(true);
    expect(b.released).toBe(true);
    expect(c.released).toBe(false);
    expect(cache.current()).toBe(c);
    await cache.release();
  });
});
