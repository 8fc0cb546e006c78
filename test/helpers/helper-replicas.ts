/**
 * The helper networks' model tests (depth estimator, pose estimator): a replica served by the hub
 * imitation, copies of the installed folder changed by hand, and the loader's refusals of them.
 */
import { cp, rm } from "node:fs/promises";
import path from "node:path";
import { ModelFolderError } from "../../daemon/models/errors";
import { MANIFEST_FILE } from "../../daemon/models/manifest";
import { writeReplica, type Replica } from "../../scripts/replicas";
import { FakeHub } from "../daemon/models/fake-hub";
import { makeTempDir } from "./model-fixtures";

export interface ServedReplica {
  hub: FakeHub;
  /** The models folder pulls install into (empty at first). */
  modelsDir: string;
  /** The environment a pull from the hub imitation runs with. */
  env: Record<string, string>;
  close(): Promise<void>;
}

/** Writes `replica` and serves it (at `commit`, when given) from a new hub imitation. */
export async function serveReplica(prefix: string, replica: Replica, commit?: string): Promise<ServedReplica> {
  const hub = await FakeHub.start();
  const tmp = await makeTempDir(prefix);
  const dir = path.join(tmp.dir, "hub", replica.repo.replace("/", "--"));
  await writeReplica(replica, dir);
  await hub.addRepo(replica.repo, { dir, ...(commit ? { commit } : {}) });
  return {
    hub,
    modelsDir: path.join(tmp.dir, "models"),
    env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" },
    close: async () => {
      await hub.close();
      await tmp.cleanup();
    },
  };
}

/** A copy of models/`installed` at models/`id`, changed by `edit`, added by hand (no manifest). */
export async function copyByHand(modelsDir: string, installed: string, id: string, edit: (dir: string) => Promise<void>): Promise<string> {
  const dir = path.join(modelsDir, id);
  await rm(dir, { recursive: true, force: true });
  await cp(path.join(modelsDir, installed), dir, { recursive: true });
  await rm(path.join(dir, MANIFEST_FILE), { force: true });
  await edit(dir);
  return dir;
}

/** The ModelFolderError `loading` fails with (anything else fails the test). */
export async function folderRefusal(loading: Promise<unknown>): Promise<ModelFolderError> {
  const error = await loading.then(() => null, (e: unknown) => e);
  if (error instanceof ModelFolderError) return error;
  throw new Error(`expected a ModelFolderError, got ${String(error)}`);
}
