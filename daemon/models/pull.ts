/**
 * `models pull`: installs a model from the Hugging Face Hub so that it is either fully there and
 * verified, or not there at all.
 *
 *   1. list the repo at the revision (pinned to the commit it points to) and pick the engine's files
 *      (a preview decoder's, when the registry entry is one or the repo is an autoencoder alone; a
 *      ControlNet's subfolder; a depth estimator's config.json, preprocessor_config.json and onnx/model.onnx;
 *      a pose estimator's yolox_l.onnx and dw-ll_ucoco_384.onnx);
 *   2. check the free disk space for what is left to fetch;
 *   3. download each file into .partial-<id>/ (resumable, retried, checksummed: download.ts);
 *   4. write the manifest and load the folder as the engine would (model-folder.ts, taesd-folder.ts,
 *      controlnet-folder.ts, depth-estimator-folder.ts, pose-estimator-folder.ts);
 *   5. rename .partial-<id>/ to <id>/.
 *
 * An interrupted pull leaves only the hidden .partial-<id>/ folder, which the next pull of the same
 * commit resumes. Progress goes to a callback and to .partial-<id>/.progress.json, where a running
 * daemon picks it up for the panels (download-monitor.ts).
 */
import { mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import type { DownloadStage } from "../../protocol";
import { downloadFile, hashFile, retryPolicyFromEnv, backoffDelay, sleep, type RetryPolicy } from "./download";
import { isAutoencoderOnly, selectControlNetFiles, selectDepthEstimatorFiles, selectEngineFiles, selectPoseEstimatorFiles, selectPreviewDecoderFiles } from "./engine-files";
import { loadDepthEstimatorFolder } from "./depth-estimator-folder";
import { loadPoseEstimatorFolder } from "./pose-estimator-folder";
import { loadControlNetFolder } from "./controlnet-folder";
import { ModelFolderError } from "./errors";
import { hubConfigFromEnv, isRetryable, listRepoFiles, resolveUrl, type HubFile, type HubListing } from "./hub";
import { ModelInstallError } from "./install-errors";
import { writeManifest, type ManifestFile } from "./manifest";
import { loadModelFolder } from "./model-folder";
import {
  LOCK_FILE,
  PROGRESS_FILE,
  STATE_FILE,
  checkFreeSpace,
  exists,
  formatBytes,
  installFolder,
  lockPartial,
  modelDir,
  partialDir,
  sweepRemovals,
} from "./model-store";
import { pullTarget, type PullTarget } from "./registry";
import { loadPreviewDecoderFolder } from "./taesd-folder";

type Env = Record<string, string | undefined>;

/** One progress report of a pull; the daemon forwards it to panels as a model-download message. */
export interface PullProgress {
  /** The folder id the model installs as. */
  model: string;
  /** What was asked for: a registry id or an owner/name repo id. */
  request: string;
  /** owner/name@commit, once known. */
  source?: string;
  stage: DownloadStage;
  /** The file being fetched (stage downloading). */
  file?: string;
  bytes: number;
  total: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
  error?: { code: string; message: string };
}

export interface PullOptions {
  modelsDir: string;
  env?: Env;
  revision?: string;
  /** Install under this folder name instead of the registry id / repo name. */
  as?: string;
  /** Download again and replace an installed model of the same id. */
  force?: boolean;
  signal?: AbortSignal;
  onProgress?(progress: PullProgress): void;
  log?(line: string): void;
  policy?: RetryPolicy;
}

export interface PullResult {
  id: string;
  dir: string;
  repo: string;
  commit: string;
  files: number;
  bytes: number;
  /** Bytes fetched by this call (the rest were already on disk). */
  downloaded: number;
  alreadyInstalled: boolean;
}

/** Bytes per second over the last few seconds, and the time left at that rate. */
export class RateMeter {
  private samples: Array<[number, number]> = [];

  constructor(private readonly windowMs = 5000) {}

  add(now: number, bytes: number): void {
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0]![0] > this.windowMs) this.samples.shift();
  }

  rate(): number | undefined {
    if (this.samples.length < 2) return undefined;
    const [t0, b0] = this.samples[0]!;
    const [t1, b1] = this.samples[this.samples.length - 1]!;
    return t1 > t0 ? Math.max(0, ((b1 - b0) * 1000) / (t1 - t0)) : undefined;
  }
}

/** Collects progress, rate-limits it, and mirrors it to the partial folder's progress file. */
class Reporter {
  private state: PullProgress;
  private readonly meter = new RateMeter();
  private lastEmit = 0;
  private progressFile: string | null = null;
  private writing: Promise<void> = Promise.resolve();
  private fetched = 0;

  constructor(
    target: PullTarget,
    request: string,
    private readonly onProgress: (p: PullProgress) => void,
  ) {
    this.state = { model: target.id, request, stage: "listing", bytes: 0, total: 0 };
  }

  get progress(): PullProgress {
    return this.state;
  }

  attach(partial: string): void {
    this.progressFile = join(partial, PROGRESS_FILE);
  }

  detach(): void {
    this.progressFile = null;
  }

  update(patch: Partial<PullProgress>, force = false): void {
    const stageChanged = patch.stage !== undefined && patch.stage !== this.state.stage;
    this.state = { ...this.state, ...patch };
    const now = Date.now();
    if (!force && !stageChanged && now - this.lastEmit < 200) return;
    this.lastEmit = now;
    this.emit();
  }

  /** Bytes on disk changed by `delta` (fetched now, or found from an earlier run when `resumed`). */
  bytes(delta: number, file: string, resumed: boolean): void {
    const now = Date.now();
    if (!resumed) this.fetched += delta;
    this.meter.add(now, this.fetched);
    const bytes = this.state.bytes + delta;
    const rate = this.meter.rate();
    const left = Math.max(0, this.state.total - bytes);
    // A new file is always reported (logs list every file), however soon after the last report.
    const newFile = file !== this.state.file;
    this.update(
      {
        bytes,
        file,
        ...(rate !== undefined ? { bytesPerSecond: Math.round(rate) } : {}),
        ...(rate ? { etaSeconds: Math.round(left / rate) } : {}),
      },
      newFile,
    );
  }

  get downloaded(): number {
    return this.fetched;
  }

  private emit(): void {
    const snapshot = { ...this.state };
    this.onProgress(snapshot);
    const file = this.progressFile;
    if (file) {
      const line = JSON.stringify({ ...snapshot, pid: process.pid, updatedAt: Date.now() });
      this.writing = this.writing.then(() => writeFile(file, line).catch(() => {}));
    }
  }

  flush(): Promise<void> {
    return this.writing;
  }
}

interface PullState {
  repo: string;
  commit: string;
}

async function readState(partial: string): Promise<PullState | null> {
  try {
    const raw = JSON.parse(await readFile(join(partial, STATE_FILE), "utf8")) as Partial<PullState>;
    return typeof raw.repo === "string" && typeof raw.commit === "string" ? { repo: raw.repo, commit: raw.commit } : null;
  } catch {
    return null;
  }
}

/** A repo path as a path inside `root`, refusing anything that would land outside it. */
function fileIn(root: string, repoPath: string): string {
  const dest = resolve(root, ...repoPath.split("/"));
  if (!dest.startsWith(root + sep) || repoPath.includes("\\")) {
    throw new ModelInstallError("http", `The hub listed a file with an unsafe path: ${JSON.stringify(repoPath)}.`);
  }
  return dest;
}

async function sizeIfFile(path: string): Promise<number> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : 0;
  } catch {
    return 0;
  }
}

async function bytesOnDisk(partial: string, files: readonly HubFile[]): Promise<number> {
  let total = 0;
  for (const f of files) {
    const dest = fileIn(partial, f.path);
    total += (await sizeIfFile(dest)) || (await sizeIfFile(`${dest}.part`));
  }
  return total;
}

/** Everything in the partial folder except the lock: a different commit starts from scratch. */
async function emptyPartial(partial: string): Promise<void> {
  for (const name of await readdir(partial)) {
    if (name !== LOCK_FILE) await rm(join(partial, name), { recursive: true, force: true });
  }
}

async function withRetries<T>(run: () => Promise<T>, policy: RetryPolicy, signal: AbortSignal | undefined, log?: (line: string) => void): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await run();
    } catch (error) {
      if (!isRetryable(error) || failures >= policy.retries) throw error;
      failures++;
      const delay = backoffDelay(policy, failures);
      log?.(`${(error as Error).message} Retrying in ${delay} ms.`);
      await sleep(delay, signal).catch(() => {
        throw new ModelInstallError("cancelled", "The download was cancelled.");
      });
    }
  }
}

/** Whether a file already in the partial folder is the one the hub lists (an earlier run finished it). */
async function alreadyFetched(path: string, file: HubFile): Promise<{ sha256: string; size: number } | null> {
  if (!(await sizeIfFile(path)) && file.size !== 0) return null;
  const got = await hashFile(path, file.gitSha1 !== null);
  const ok =
    (file.size === null || got.size === file.size) &&
    (file.sha256 === null || got.sha256 === file.sha256) &&
    (file.gitSha1 === null || got.gitSha1 === file.gitSha1);
  return ok ? { sha256: got.sha256, size: got.size } : null;
}

function folderProblem(repo: string, partial: string, error: ModelFolderError): ModelInstallError {
  const file = relative(partial, error.file).split(sep).join("/");
  const message = error.message.split(partial + sep).join("").split(partial).join("");
  return new ModelInstallError(
    error.code === "model_unsupported" ? "unsupported" : "verify_failed",
    `${repo} was downloaded but is not a model Underpaint can run (${file}): ${message} Nothing was installed.`,
    { file, cause: error },
  );
}

/** Pulls `request` (a registry id or owner/name) into the models folder; see the module comment. */
export async function pullModel(request: string, options: PullOptions): Promise<PullResult> {
  const env = options.env ?? process.env;
  const target = pullTarget(request, { ...(options.revision ? { revision: options.revision } : {}), ...(options.as ? { as: options.as } : {}) });
  const hub = hubConfigFromEnv(env);
  const policy = options.policy ?? retryPolicyFromEnv(env);
  const modelsDir = resolve(options.modelsDir);
  const dest = modelDir(modelsDir, target.id);
  const partial = partialDir(modelsDir, target.id);
  const { signal, log } = options;
  const reporter = new Reporter(target, request, options.onProgress ?? (() => {}));

  if (!options.force && (await exists(dest))) {
    return { id: target.id, dir: dest, repo: target.repo, commit: target.revision, files: 0, bytes: 0, downloaded: 0, alreadyInstalled: true };
  }

  let release: (() => Promise<void>) | undefined;
  try {
    reporter.update({ stage: "listing" }, true);
    const listing: HubListing = await withRetries(() => listRepoFiles(hub, target.repo, target.revision, signal), policy, signal, log);
    const entry = target.entry;
    const controlNet = entry?.kind === "controlnet" ? entry : null;
    const previewDecoder = entry ? entry.kind === "preview-decoder" : isAutoencoderOnly(new Set(listing.files.map((f) => f.path)));
    const depthEstimator = entry?.kind === "depth-estimator" ? entry : null;
    const poseEstimator = entry?.kind === "pose-estimator" ? entry : null;
    const files = depthEstimator
      ? selectDepthEstimatorFiles(target.repo, listing.files)
      : poseEstimator
        ? selectPoseEstimatorFiles(target.repo, listing.files)
        : controlNet
        ? selectControlNetFiles(target.repo, listing.files, controlNet.subfolder)
        : previewDecoder
          ? selectPreviewDecoderFiles(target.repo, listing.files)
          : selectEngineFiles(target.repo, listing.files, { controlUnet: entry?.kind === "txt2img" || entry?.kind === "inpainting" ? entry.control : false });
    const total = files.reduce((sum, f) => sum + (f.size ?? 0), 0);
    const source = `${target.repo}@${listing.commit}`;
    reporter.update({ source, total });

    const previous = await readState(partial);
    const sameCommit = previous?.repo === target.repo && previous.commit === listing.commit;
    const onDisk = sameCommit ? await bytesOnDisk(partial, files) : 0;
    await mkdir(modelsDir, { recursive: true });
    await checkFreeSpace(modelsDir, total - onDisk, `"${target.id}" (${formatBytes(total)}${onDisk ? `, ${formatBytes(onDisk)} already downloaded` : ""})`, env);

    release = await lockPartial(partial, target.id);
    await sweepRemovals(modelsDir);
    if (!sameCommit) await emptyPartial(partial);
    await writeFile(join(partial, STATE_FILE), JSON.stringify({ repo: target.repo, commit: listing.commit, request }));
    reporter.attach(partial);
    reporter.update({ stage: "downloading", bytes: 0 }, true);

    const manifestFiles: ManifestFile[] = [];
    for (const file of files) {
      const path = fileIn(partial, file.path);
      await mkdir(dirname(path), { recursive: true });
      const done = await alreadyFetched(path, file);
      if (done) {
        reporter.bytes(done.size, file.path, true);
        manifestFiles.push({ path: file.path, size: done.size, sha256: done.sha256 });
        continue;
      }
      await rm(path, { force: true });
      let resumed = true;
      const got = await downloadFile({
        hub,
        repo: target.repo,
        revision: target.revision,
        url: resolveUrl(hub, target.repo, listing.commit, file.path),
        dest: path,
        expected: { path: file.path, size: file.size, sha256: file.sha256, gitSha1: file.gitSha1 },
        policy,
        ...(signal ? { signal } : {}),
        onBytes: (delta) => {
          // The first report is what an earlier run left in the .part file.
          reporter.bytes(delta, file.path, resumed);
          resumed = false;
        },
        ...(log ? { log } : {}),
      });
      if (got.resumedFrom > 0) log?.(`${file.path}: resumed at byte ${got.resumedFrom}`);
      manifestFiles.push({ path: file.path, size: got.size, sha256: got.sha256 });
    }

    reporter.update({ stage: "verifying", bytes: total, file: undefined }, true);
    await writeManifest(partial, {
      version: 1,
      id: target.id,
      source: {
        kind: "hub",
        endpoint: hub.endpoint,
        repo: target.repo,
        revision: target.revision,
        commit: listing.commit,
        ...(target.entry ? { registryId: target.entry.id } : {}),
      },
      installedAt: new Date().toISOString(),
      files: manifestFiles,
    });
    try {
      await (depthEstimator
        ? loadDepthEstimatorFolder(partial)
        : poseEstimator
          ? loadPoseEstimatorFolder(partial)
          : controlNet
          ? loadControlNetFolder(partial)
          : previewDecoder
            ? loadPreviewDecoderFolder(partial)
            : loadModelFolder(partial));
    } catch (error) {
      if (error instanceof ModelFolderError) {
        // Complete and checksummed but unusable: nothing to resume, so nothing is kept.
        reporter.detach();
        await rm(partial, { recursive: true, force: true });
        throw folderProblem(target.repo, partial, error);
      }
      throw error;
    }

    reporter.update({ stage: "installing" }, true);
    reporter.detach();
    await reporter.flush();
    for (const name of [STATE_FILE, PROGRESS_FILE]) await rm(join(partial, name), { force: true });
    await release();
    release = undefined;
    await rm(join(partial, LOCK_FILE), { force: true });
    const dir = await installFolder(modelsDir, partial, target.id, options.force ?? false);
    reporter.update({ stage: "done" }, true);
    return {
      id: target.id,
      dir,
      repo: target.repo,
      commit: listing.commit,
      files: files.length,
      bytes: total,
      downloaded: reporter.downloaded,
      alreadyInstalled: false,
    };
  } catch (error) {
    const failure =
      error instanceof ModelInstallError
        ? error
        : new ModelInstallError("io", `The pull of ${target.id} failed: ${(error as Error).message}`, { cause: error });
    reporter.update(
      { stage: failure.code === "cancelled" ? "cancelled" : "failed", error: { code: failure.code, message: failure.message } },
      true,
    );
    await reporter.flush();
    throw failure;
  } finally {
    await release?.();
  }
}
