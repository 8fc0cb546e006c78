/**
 * The registry's pose estimator (DWPose) on a replica of yzd-v/DWPose (scripts/replicas.ts; the
 * graphs from scripts/onnx-builder/dwpose.ts are I/O-faithful stand-ins), served by the local hub
 * imitation and pulled as `npx underpaint models pull dwpose` pulls it; its two networks run by the
 * engine's runner find the replica's one person; then the loader's refusals on folders changed by hand.
 */
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { poseRunner } from "../../../daemon/engine/pose-estimator";
import { findBodies, letterbox, personBoxes } from "../../../daemon/imaging/pose";
import { findDepthEstimators } from "../../../daemon/models/depth-estimator-folder";
import { discoverModels } from "../../../daemon/models/discover";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import { readManifest } from "../../../daemon/models/manifest";
import { selectPoseEstimatorFiles } from "../../../daemon/models/engine-files";
import { findPoseEstimators, isPoseEstimatorFolder, loadPoseEstimatorFolder } from "../../../daemon/models/pose-estimator-folder";
import { pullModel } from "../../../daemon/models/pull";
import { approximateBytes, findPoseEstimatorEntry, pullTarget, registryPoseEstimators } from "../../../daemon/models/registry";
import { findPreviewDecoders } from "../../../daemon/models/taesd-folder";
import { verifyModel } from "../../../daemon/models/verify";
import { Graph } from "../../../scripts/onnx-builder/graph";
import { PERSON_ANCHOR, PERSON_BOX_CELLS } from "../../../scripts/onnx-builder/dwpose";
import { replicas, type PoseEstimatorReplica } from "../../../scripts/replicas";
import type { Pixels } from "../../../geometry";
import { copyByHand, folderRefusal, serveReplica, type ServedReplica } from "../../helpers/helper-replicas";

let served: ServedReplica;
let replica: PoseEstimatorReplica;
const modelsDir = () => served.modelsDir;
const env = () => served.env;
const entry = () => findPoseEstimatorEntry("dwpose")!;

beforeAll(async () => {
  replica = (await replicas()).find((r): r is PoseEstimatorReplica => r.from === "dwpose")!;
  served = await serveReplica("underpaint-pose-", replica);
}, 60_000);
afterAll(() => served?.close());

const byHand = (id: string, edit: (dir: string) => Promise<void>) => copyByHand(modelsDir(), "dwpose", id, edit);
const refusal = (dir: string) => folderRefusal(loadPoseEstimatorFolder(dir, { devices: ["cpu"] }));

/** A 120 x 90 colour picture. */
function picture(): Pixels {
  const [width, height] = [120, 90];
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set([(3 * x) % 256, 2 * y, 200 - x], (y * width + x) * 3);
  return { width, height, channels: 3, data };
}

describe("the pose estimator registry entry", () => {
  it("is yzd-v/DWPose, Apache-2.0, unpinned with a note of what was verified and what was not", () => {
    expect(entry()).toMatchObject({ repo: replica.repo, kind: "pose-estimator", precision: "fp32", license: "Apache-2.0", pinned: false, revision: "main" });
    expect(entry().note).toMatch(/Verified from the sources of comfyui_controlnet_aux/);
    expect(entry().note).toMatch(/Not verified \(the ONNX files and the hub's file list were not read\)/);
    expect(pullTarget("dwpose")).toMatchObject({ repo: replica.repo, entry: { kind: "pose-estimator" } });
    expect(pullTarget(replica.repo).id).toBe("dwpose");
    // About 351 MB: 87.7 M float32 weights (both networks).
    expect(approximateBytes(entry()) / 1e6).toBeCloseTo(350.8, 0);
    expect(registryPoseEstimators()).toEqual([{ id: "dwpose", name: entry().name, repo: "yzd-v/DWPose", precision: "fp32", approximateBytes: approximateBytes(entry()), license: "Apache-2.0", description: entry().description }]);
  });

  it("pulls yolox_l.onnx and dw-ll_ucoco_384.onnx only (the checkpoints and the README stay on the hub), checksummed", { timeout: 60_000 }, async () => {
    const pulled = await pullModel("dwpose", { modelsDir: modelsDir(), env: env() });
    expect([pulled.id, pulled.files, pulled.alreadyInstalled]).toEqual(["dwpose", 2, false]);
    const fetched = [...new Set(served.hub.requests.map((r) => r.file).filter((f) => f !== null))].sort();
    expect(fetched).toEqual(["dw-ll_ucoco_384.onnx", "yolox_l.onnx"]);
    const manifest = (await readManifest(path.join(modelsDir(), "dwpose")))!;
    expect(manifest.source).toMatchObject({ kind: "hub", repo: replica.repo, registryId: "dwpose" });
    const verified = await verifyModel(modelsDir(), "dwpose");
    expect([verified.problems, verified.checked, verified.poseEstimator?.id]).toEqual([[], 2, "dwpose"]);
  });

  it("loads with DWPose's inputs and outputs, and is no model, depth estimator or preview decoder", async () => {
    const folder = await loadPoseEstimatorFolder(path.join(modelsDir(), "dwpose"), { devices: ["cpu"] });
    expect(folder.detector.io).toEqual({ input: "images", output: "output", size: { width: 640, height: 640 } });
    expect(folder.pose.io).toEqual({ input: "input", simccX: "simcc_x", simccY: "simcc_y", size: { width: 288, height: 384 } });
    expect(folder.registryId).toBe("dwpose");
    expect(await discoverModels(modelsDir())).toEqual({ models: [], broken: [] });
    expect((await findDepthEstimators(modelsDir(), { devices: ["cpu"] })).found).toBeNull();
    expect((await findPreviewDecoders(modelsDir(), { devices: ["cpu"] })).found).toBeNull();
    expect((await findPoseEstimators(modelsDir(), { devices: ["cpu"] })).found?.id).toBe("dwpose");
  });

  it("run by the engine's runner, finds the replica's one person where its detector is biased to, with all 18 body points", { timeout: 60_000 }, async () => {
    const folder = await loadPoseEstimatorFolder(path.join(modelsDir(), "dwpose"), { devices: ["cpu"] });
    const runner = poseRunner(folder, ["cpu"], () => {});
    const layer = picture();
    const boxed = letterbox({ data: layer.data, width: layer.width, height: layer.height }, runner.detectorInput);
    const people = personBoxes(await runner.detect(boxed.data), runner.detectorInput, boxed.ratio);
    expect(people).toHaveLength(1);
    // The biased 20x20 anchor: centre ((0.5 + x) x 32, (0.5 + y) x 32), PERSON_BOX_CELLS x 32 in the letterbox, moved a little by the random weights.
    const [box] = people as [(typeof people)[number]];
    expect(box.score).toBeGreaterThan(0.9);
    expect(((box.x1 + box.x2) / 2) * boxed.ratio).toBeCloseTo((PERSON_ANCHOR.x + 0.5) * 32, -1);
    expect(((box.y2 - box.y1) * boxed.ratio) / 32).toBeCloseTo(PERSON_BOX_CELLS.height, 0);
    const bodies = await findBodies(runner, layer);
    expect(bodies).toHaveLength(1);
    expect(bodies[0]!.every((p) => p !== null)).toBe(true);
  });
});

describe("a broken pose estimator", () => {
  it("is refused with a code and a sentence: a missing or damaged graph, I/O it cannot be fed with", async () => {
    const noPose = await byHand("no-pose-model", (dir) => rm(path.join(dir, "dw-ll_ucoco_384.onnx")));
    // Without both files (and no manifest) it is not taken for a pose estimator, and refused when loaded by path.
    expect(await isPoseEstimatorFolder(noPose)).toBe(false);
    const missing = await refusal(noPose);
    expect([missing.code, missing.message]).toEqual(["model_file_missing", expect.stringMatching(/dw-ll_ucoco_384\.onnx/)]);

    const damaged = await refusal(await byHand("damaged", (dir) => writeFile(path.join(dir, "yolox_l.onnx"), "not a graph")));
    expect(damaged.code).toBe("model_file_invalid");

    const grey = await refusal(
      await byHand("one-channel", async (dir) => {
        const g = new Graph("grey");
        const x = g.input("images", 1, [1, 1, 640, 640], [1, 1, 640, 640]);
        g.output(g.node("Reshape", [x, g.constInt64([1, 5120, 80])], {}, [1, 5120, 80]), "output", [1, 5120, 80]);
        await g.write(path.join(dir, "yolox_l.onnx"));
      }),
    );
    expect([grey.code, grey.message]).toEqual(["model_unsupported", expect.stringMatching(/yolox_l\.onnx takes 1-channel pictures, not RGB\.$/)]);

    const oneOutput = await refusal(
      await byHand("one-simcc", async (dir) => {
        const g = new Graph("one");
        const x = g.input("input", 1, [1, 3, 384, 288], [1, 3, 384, 288]);
        g.output(g.node("ReduceMean", [x], { axes: [1], keepdims: 0 }, [1, 384, 288]), "simcc_x", [1, 384, 288]);
        await g.write(path.join(dir, "dw-ll_ucoco_384.onnx"));
      }),
    );
    expect(oneOutput.message).toMatch(/dw-ll_ucoco_384\.onnx gives 1 outputs \(simcc_x\); an RTMPose model gives simcc_x and simcc_y\.$/);
  });

  it("in the models folder is logged, never fatal: the good estimator is the one found", { timeout: 60_000 }, async () => {
    const found = await findPoseEstimators(modelsDir(), { devices: ["cpu"] });
    expect(found.found?.id).toBe("dwpose");
    expect(found.broken.map((b) => [b.id, b.error.code]).sort()).toEqual([
      ["damaged", "model_file_invalid"],
      ["one-channel", "model_unsupported"],
      ["one-simcc", "model_unsupported"],
    ]);
    const lines: string[] = [];
    const engine = new DiffusionEngine({ modelsDir: modelsDir(), devices: ["cpu"], log: (level, line) => lines.push(`${level} ${line}`) });
    try {
      const capabilities = await engine.capabilities();
      expect([capabilities.models, capabilities.unavailable, capabilities.poseEstimator]).toEqual([[], [], { id: "dwpose", registryId: "dwpose" }]);
    } finally {
      await engine.dispose();
    }
    expect(lines.filter((l) => l.startsWith("warn skipping pose estimator")).length).toBe(3);
  });

  it("a repo without DWPose's two ONNX files is refused before a byte of weights is fetched", () => {
    const file = (p: string) => ({ path: p, size: 1, sha256: null, gitSha1: null });
    expect(() => selectPoseEstimatorFiles("someone/openpose", [file("yolox_l.onnx"), file("body_pose_model.pth")])).toThrow(
      new ModelInstallError("not_onnx", "someone/openpose is not DWPose in ONNX (it lacks dw-ll_ucoco_384.onnx)."),
    );
    const picked = selectPoseEstimatorFiles("r", ["README.md", "dw-ll_ucoco_384.pth", "yolox_l.onnx", "dw-ll_ucoco_384.onnx", "dw-ss_ucoco.onnx"].map(file));
    expect(picked.map((f) => f.path)).toEqual(["dw-ll_ucoco_384.onnx", "yolox_l.onnx"]);
  });
});
