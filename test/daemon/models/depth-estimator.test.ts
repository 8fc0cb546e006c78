/**
 * The registry's depth estimator (Depth Anything V2 Small) on a replica of its repo
 * (scripts/replicas.ts; the graph from scripts/onnx-builder/depth-anything.ts is I/O-faithful only),
 * served by the local hub imitation and pulled as `npx underpaint models pull depth-anything-v2-small`
 * pulls it; then the loader's checks and refusals on folders changed by hand.
 */
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { findDepthEstimators, isDepthEstimatorFolder, loadDepthEstimatorFolder } from "../../../daemon/models/depth-estimator-folder";
import { discoverModels } from "../../../daemon/models/discover";
import { findControlNets } from "../../../daemon/models/controlnet-folder";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import { readManifest } from "../../../daemon/models/manifest";
import { selectDepthEstimatorFiles } from "../../../daemon/models/engine-files";
import { pullModel } from "../../../daemon/models/pull";
import { approximateBytes, findDepthEstimatorEntry, pullTarget } from "../../../daemon/models/registry";
import { findPreviewDecoders } from "../../../daemon/models/taesd-folder";
import { verifyModel } from "../../../daemon/models/verify";
import { depthAnything, DEPTH_ANYTHING_V2_SMALL } from "../../../scripts/onnx-builder/depth-anything";
import { Graph } from "../../../scripts/onnx-builder/graph";
import { replicas, type DepthEstimatorReplica } from "../../../scripts/replicas";
import { copyByHand, folderRefusal, serveReplica, type ServedReplica } from "../../helpers/helper-replicas";

let served: ServedReplica;
let replica: DepthEstimatorReplica;
const modelsDir = () => served.modelsDir;
const env = () => served.env;
const entry = () => findDepthEstimatorEntry("depth-anything-v2-small")!;

beforeAll(async () => {
  replica = (await replicas()).find((r): r is DepthEstimatorReplica => r.from === "depth-anything")!;
  served = await serveReplica("underpaint-depth-", replica, entry().revision);
}, 60_000);
afterAll(() => served?.close());

const byHand = (id: string, edit: (dir: string) => Promise<void>) => copyByHand(modelsDir(), "depth-anything-v2-small", id, edit);
const refusal = (dir: string) => folderRefusal(loadDepthEstimatorFolder(dir, { devices: ["cpu"] }));

describe("the depth estimator registry entry", () => {
  it("is onnx-community/depth-anything-v2-small, Apache-2.0, pinned with a note on what was not read", () => {
    expect(entry()).toMatchObject({ repo: replica.repo, kind: "depth-estimator", precision: "fp32", license: "Apache-2.0", pinned: true });
    expect(entry().revision).toMatch(/^[0-9a-f]{40}$/);
    expect(entry().note).toMatch(/Not verified \(the ONNX files were not read\)/);
    expect(pullTarget("depth-anything-v2-small")).toMatchObject({ repo: replica.repo, entry: { kind: "depth-estimator" } });
    expect(pullTarget(replica.repo).id).toBe("depth-anything-v2-small");
    // About 99 MB: 24.8 M float32 weights.
    expect(approximateBytes(entry()) / 1e6).toBeCloseTo(99.2, 0);
  });

  it("is sized by the builder's Depth Anything V2 Small: 24.7 M weights in the graph, 98.9 MB in float32 (the hub's ~99 MB)", () => {
    const counts = depthAnything(DEPTH_ANYTHING_V2_SMALL, [518, 518]).counts();
    expect(counts.params).toBe(24_713_153);
    // The entry's 24.8 M (the model card's, with the PyTorch-only mask_token and unused residual unit) is within 0.4 %.
    expect(Math.abs(entry().parameters - counts.params) / counts.params).toBeLessThan(0.004);
  });

  it("pulls config.json, preprocessor_config.json and onnx/model.onnx only (the other precisions and the README stay on the hub), checksummed", { timeout: 60_000 }, async () => {
    const pulled = await pullModel("depth-anything-v2-small", { modelsDir: modelsDir(), env: env() });
    expect([pulled.id, pulled.files, pulled.alreadyInstalled, pulled.commit]).toEqual(["depth-anything-v2-small", 3, false, entry().revision]);
    const fetched = [...new Set(served.hub.requests.map((r) => r.file).filter((f) => f !== null))].sort();
    expect(fetched).toEqual(["config.json", "onnx/model.onnx", "preprocessor_config.json"]);
    const manifest = (await readManifest(path.join(modelsDir(), "depth-anything-v2-small")))!;
    expect(manifest.source).toMatchObject({ kind: "hub", repo: replica.repo, registryId: "depth-anything-v2-small" });
    const verified = await verifyModel(modelsDir(), "depth-anything-v2-small");
    expect([verified.problems, verified.checked, verified.depthEstimator?.id]).toEqual([[], 3, "depth-anything-v2-small"]);
  });

  it("loads with the repo's I/O and DPTImageProcessor settings, and is no model, ControlNet or preview decoder", async () => {
    const folder = await loadDepthEstimatorFolder(path.join(modelsDir(), "depth-anything-v2-small"), { devices: ["cpu"] });
    expect(folder.io).toEqual({ input: "pixel_values", output: "predicted_depth" });
    expect(folder.preprocessor).toMatchObject({ size: { height: 518, width: 518 }, keep_aspect_ratio: true, ensure_multiple_of: 14, resample: 3, do_pad: false });
    expect(folder.registryId).toBe("depth-anything-v2-small");
    expect(await discoverModels(modelsDir())).toEqual({ models: [], broken: [] });
    expect((await findControlNets(modelsDir(), { devices: ["cpu"] })).found).toEqual([]);
    expect((await findPreviewDecoders(modelsDir(), { devices: ["cpu"] })).found).toBeNull();
    expect((await findDepthEstimators(modelsDir(), { devices: ["cpu"] })).found?.id).toBe("depth-anything-v2-small");
  });
});

describe("a broken depth estimator", () => {
  it("is refused with a code and a sentence: another model type, a missing or invalid preprocessor config, padding, a missing graph", async () => {
    const dpt = await byHand("dpt-hybrid", async (dir) => {
      await writeFile(path.join(dir, "config.json"), JSON.stringify({ model_type: "dpt" }));
    });
    // Not depth_anything: not taken for a depth estimator at all, and refused when loaded by path.
    expect(await isDepthEstimatorFolder(dpt)).toBe(false);
    const other = await refusal(dpt);
    expect([other.code, other.message]).toEqual(["model_unsupported", expect.stringMatching(/config\.json describes a dpt model; the depth estimators Underpaint runs are depth_anything\.$/)]);

    const noPre = await refusal(await byHand("no-preprocessor", (dir) => rm(path.join(dir, "preprocessor_config.json"))));
    expect([noPre.code, noPre.message]).toEqual(["model_file_missing", expect.stringMatching(/preprocessor_config\.json/)]);

    const badPre = await refusal(await byHand("bad-preprocessor", (dir) => writeFile(path.join(dir, "preprocessor_config.json"), JSON.stringify({ size: { height: -1, width: 518 }, image_mean: [0.5] }))));
    expect(badPre.code).toBe("model_file_invalid");
    expect(badPre.message).toMatch(/preprocessor_config\.json/);

    const pad = await refusal(
      await byHand("padding", async (dir) => {
        const p = JSON.parse(await readFile(path.join(dir, "preprocessor_config.json"), "utf8")) as Record<string, unknown>;
        await writeFile(path.join(dir, "preprocessor_config.json"), JSON.stringify({ ...p, do_pad: true }));
      }),
    );
    expect([pad.code, pad.message]).toEqual(["model_unsupported", expect.stringMatching(/pads pictures \(do_pad\), which Underpaint does not do\.$/)]);

    const noGraph = await refusal(await byHand("no-graph", (dir) => rm(path.join(dir, "onnx"), { recursive: true })));
    expect([noGraph.code, noGraph.message]).toEqual(["model_file_missing", expect.stringMatching(/onnx[/\\]model\.onnx/)]);

    const damaged = await refusal(await byHand("damaged", (dir) => writeFile(path.join(dir, "onnx", "model.onnx"), "not a graph")));
    expect(damaged.code).toBe("model_file_invalid");
  });

  it("is refused when its graph's inputs or outputs are not Depth Anything's", async () => {
    const wrongIo = async (id: string, build: (g: Graph) => void) =>
      refusal(
        await byHand(id, async (dir) => {
          const g = new Graph(id);
          build(g);
          await g.write(path.join(dir, "onnx", "model.onnx"));
        }),
      );
    const named = await wrongIo("named-image", (g) => {
      const x = g.input("image", 1, ["batch_size", 3, "height", "width"], [1, 3, 14, 14]);
      g.output(g.node("ReduceMean", [x], { axes: [1], keepdims: 0 }, [1, 14, 14]), "predicted_depth", ["batch_size", "height", "width"]);
    });
    expect([named.code, named.message]).toEqual(["model_unsupported", expect.stringMatching(/has no input pixel_values \(it has image\)\.$/)]);
    const rank4 = await wrongIo("rank-4", (g) => {
      const x = g.input("pixel_values", 1, ["batch_size", 3, "height", "width"], [1, 3, 14, 14]);
      g.output(g.node("ReduceMean", [x], { axes: [1], keepdims: 1 }, [1, 1, 14, 14]), "predicted_depth", ["batch_size", 1, "height", "width"]);
    });
    expect(rank4.message).toMatch(/gives predicted_depth of rank 4, not \[batch, height, width\]\.$/);
    const grey = await wrongIo("one-channel", (g) => {
      const x = g.input("pixel_values", 1, ["batch_size", 1, "height", "width"], [1, 1, 14, 14]);
      g.output(g.node("ReduceMean", [x], { axes: [1], keepdims: 0 }, [1, 14, 14]), "predicted_depth", ["batch_size", "height", "width"]);
    });
    expect(grey.message).toMatch(/takes 1-channel pictures, not RGB\.$/);
  });

  it("in the models folder is logged, never fatal: the engine lists its models and the good estimator is the one found", { timeout: 60_000 }, async () => {
    const found = await findDepthEstimators(modelsDir(), { devices: ["cpu"] });
    expect(found.found?.id).toBe("depth-anything-v2-small");
    // dpt-hybrid is no depth_anything folder, so not among the broken.
    expect(found.broken.map((b) => [b.id, b.error.code]).sort()).toEqual([
      ["bad-preprocessor", "model_file_invalid"],
      ["damaged", "model_file_invalid"],
      ["named-image", "model_unsupported"],
      ["no-graph", "model_file_missing"],
      ["no-preprocessor", "model_file_missing"],
      ["one-channel", "model_unsupported"],
      ["padding", "model_unsupported"],
      ["rank-4", "model_unsupported"],
    ]);
    const lines: string[] = [];
    const engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"], log: (level, line) => lines.push(`${level} ${line}`) });
    try {
      const capabilities = await engine.capabilities();
      expect([capabilities.models, capabilities.unavailable]).toEqual([[], []]);
    } finally {
      await engine.dispose();
    }
    expect(lines.filter((l) => l.startsWith("warn skipping depth estimator")).length).toBe(8);
  });

  it("a repo without the Transformers.js layout's files is refused before a byte of weights is fetched", () => {
    const file = (p: string) => ({ path: p, size: 1, sha256: null, gitSha1: null });
    expect(() => selectDepthEstimatorFiles("someone/broken-depth", [file("config.json"), file("onnx/model.onnx")])).toThrow(
      new ModelInstallError("not_onnx", "someone/broken-depth is not an ONNX depth estimator in the Transformers.js layout (it lacks preprocessor_config.json)."),
    );
    // External weights of the float32 graph come along; other precisions do not.
    const picked = selectDepthEstimatorFiles("r", ["config.json", "preprocessor_config.json", "onnx/model.onnx", "onnx/model.onnx_data", "onnx/model_fp16.onnx", "onnx/model_q4.onnx", "README.md"].map(file));
    expect(picked.map((f) => f.path)).toEqual(["config.json", "onnx/model.onnx", "onnx/model.onnx_data", "preprocessor_config.json"]);
  });
});
