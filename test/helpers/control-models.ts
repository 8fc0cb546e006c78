/**
 * The control tests' models: the replicas of TensorStack/stable-diffusion-v1-5-onnx (with its
 * control UNet) and TensorStack/ControlNet-onnx (and, where a test asks, the depth and pose
 * estimators' repos) served by the hub imitation and pulled by registry id into a models folder, as
 * an artist's `models pull` pulls them.
 */
import { mkdir, symlink } from "node:fs/promises";
import path from "node:path";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../daemon/engine/engine";
import { pullModel } from "../../daemon/models/pull";
import { loadRegistry } from "../../daemon/models/registry";
import type { Pixels } from "../../geometry";
import type { ControlKind, ImageFrame } from "../../protocol";
import { replicas, writeReplica } from "../../scripts/replicas";
import { FakeHub } from "../daemon/models/fake-hub";
import { makeTempDir } from "./model-fixtures";
import { connectedPanel } from "../e2e/helpers";
import { expect } from "vitest";

const CONTROL_REPOS = ["TensorStack/stable-diffusion-v1-5-onnx", "TensorStack/ControlNet-onnx"];

export interface ControlModels {
  /** The models folder the ids were pulled into. */
  modelsDir: string;
  /** What each was installed as, in order. */
  installed: string[];
  /** A scratch folder beside it, removed with it; the replicas are in hub/OWNER--NAME/. */
  dir: string;
  close(): Promise<void>;
}

/**
 * Pulls `ids` (registry ids of the control repos' entries, e.g. sd-1.5-control, controlnet-canny,
 * or a repo's owner/name) into a new models folder; `onlyRepos` limits the replicas written.
 */
export async function pullControlModels(prefix: string, ids: readonly string[], onlyRepos: readonly string[] = CONTROL_REPOS): Promise<ControlModels> {
  const hub = await FakeHub.start();
  const tmp = await makeTempDir(prefix);
  try {
    const registry = loadRegistry();
    for (const replica of await replicas()) {
      if (!onlyRepos.includes(replica.repo)) continue;
      const dir = path.join(tmp.dir, "hub", replica.repo.replace("/", "--"));
      await writeReplica(replica, dir);
      const pin =
        [...registry.models, ...registry.controlNets].find((e) => e.repo === replica.repo)?.revision ??
        [...registry.depthEstimators, ...registry.poseEstimators].find((e) => e.repo === replica.repo && e.pinned)?.revision;
      await hub.addRepo(replica.repo, { dir, ...(pin ? { commit: pin } : {}) });
    }
    const modelsDir = path.join(tmp.dir, "models");
    const installed: string[] = [];
    for (const id of ids) installed.push((await pullModel(id, { modelsDir, env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" } })).id);
    return { modelsDir, installed, dir: tmp.dir, close: () => tmp.cleanup() };
  } catch (error) {
    await tmp.cleanup();
    throw error;
  } finally {
    await hub.close();
  }
}

/** A second models folder beside `models`' holding links to some of its folders (`ids`): the same models without the rest. */
export async function linkedModels(models: ControlModels, name: string, ids: readonly string[]): Promise<string> {
  const dir = path.join(models.dir, name);
  await mkdir(dir);
  for (const id of ids) await symlink(path.join(models.modelsDir, id), path.join(dir, id), "dir");
  return dir;
}

/** A small txt2img job of sd-1.5-control at 64 x 64, steered by `image` as `kind` at full strength; its picture. */
export async function runControlled(engine: DiffusionEngine, kind: NonNullable<GenerationJob["control"]>["kind"], image: { width: number; height: number; channels: 1 | 3 | 4; data: Uint8Array }, prompt: string): Promise<Uint8Array> {
  const size = { width: 64, height: 64 };
  const job: GenerationJob = {
    mode: "txt2img",
    model: "sd-1.5-control",
    prompt,
    negativePrompt: "",
    seed: 5,
    steps: 3,
    guidance: 7.5,
    scheduler: "euler",
    variations: 1,
    truncatePrompt: false,
    previews: false,
    output: size,
    size,
    control: { kind, image, strength: 1, start: 0, end: 1 },
  };
  const [result] = await engine.run(job, { signal: new AbortController().signal, onProgress: () => {} });
  return result!.image.data;
}

/** Engines on the control models with a helper network (depth or pose estimator) installed, and without it; what the first logs. */
export interface HelperEngines {
  models: ControlModels;
  withIt: DiffusionEngine;
  without: DiffusionEngine;
  lines: string[];
  close(): Promise<void>;
}

/** Pulls sd-1.5-control, `controlNet` and `helper` from `repos`' replicas; `without` sees the first two only. */
export async function helperEngines(prefix: string, repos: readonly string[], controlNet: string, helper: string): Promise<HelperEngines> {
  const models = await pullControlModels(prefix, ["sd-1.5-control", controlNet, helper], repos);
  const other = await linkedModels(models, `models-without-${helper}`, ["sd-1.5-control", controlNet]);
  const lines: string[] = [];
  const withIt = new DiffusionEngine({ modelsDir: models.modelsDir, devices: ["cpu"], log: (level, line) => lines.push(`${level} ${line}`) });
  const without = new DiffusionEngine({ modelsDir: other, devices: ["cpu"] });
  return {
    models,
    withIt,
    without,
    lines,
    close: async () => {
      await withIt.dispose();
      await without.dispose();
      await models.close();
    },
  };
}

/** The panel's control preview of `layer` as `kind`, asked over a real WebSocket of the real server on `engine`. */
export async function previewOver(engine: DiffusionEngine, kind: ControlKind, layer: Pixels): Promise<ImageFrame> {
  const panel = await connectedPanel(engine, "c".repeat(40));
  try {
    return await panel.client.controlPreview(kind, layer);
  } finally {
    await panel.close();
  }
}

/** A colour picture, 96x72 (not the generation size): `colour` where `inside(x, y)`, elsewhere a blue-green gradient. */
export function colourPicture(inside: (x: number, y: number) => boolean, colour: readonly [number, number, number]): Pixels {
  const width = 96;
  const height = 72;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(inside(x, y) ? colour : [20, 2 * y, 255 - 2 * x], (y * width + x) * 3);
  }
  return { width, height, channels: 3, data };
}

/**
 * A job on `picture` with the estimator installed (which says so in the log, as `logged`) is the job
 * on `map`, the map made of it by hand; without the estimator the picture itself steers, otherwise.
 */
export async function expectFollowsEstimatedMap(engines: HelperEngines, run: (engine: DiffusionEngine, image: Pixels) => Promise<Uint8Array>, picture: Pixels, map: Pixels, logged: RegExp): Promise<void> {
  const fromPicture = await run(engines.withIt, picture);
  expect(engines.lines.some((l) => logged.test(l))).toBe(true);
  const fromMap = await run(engines.withIt, map);
  expect(Buffer.from(fromPicture).equals(Buffer.from(fromMap))).toBe(true);
  const raw = await run(engines.without, picture);
  expect(Buffer.from(raw).equals(Buffer.from(fromPicture))).toBe(false);
}
