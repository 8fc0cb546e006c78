/**
 * The control tests' models: the replicas of TensorStack/stable-diffusion-v1-5-onnx (with its
 * control UNet) and TensorStack/ControlNet-onnx served by the hub imitation and pulled by registry
 * id into a models folder, as an artist's `models pull` pulls them.
 */
import path from "node:path";
import { pullModel } from "../../daemon/models/pull";
import { loadRegistry } from "../../daemon/models/registry";
import { replicas, writeReplica } from "../../scripts/replicas";
import { FakeHub } from "../daemon/models/fake-hub";
import { makeTempDir } from "./model-fixtures";

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
      const pin = [...registry.models, ...registry.controlNets].find((e) => e.repo === replica.repo)?.revision;
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
