/**
 * Tells the daemon (and so the panels) about every model being installed into its models folder:
 * pulls it runs itself report here directly; pulls run by `npx underpaint models pull` in another
 * process are read from their .partial-<id>/.progress.json. A partial folder that disappears
 * after "installing" has become the model ("done"); one whose process died stays resumable and
 * is reported "failed" once. `known()` lists them all for a panel that connects later.
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { z } from "zod";
import { DownloadStage, type DownloadStatus } from "../../protocol";
import { LOCK_FILE, PARTIAL_PREFIX, PROGRESS_FILE, STATE_FILE, exists, modelDir, pidAlive } from "./model-store";
import type { PullProgress } from "./pull";

const ProgressRecord = z.object({
  model: z.string(),
  request: z.string(),
  source: z.string().optional(),
  stage: DownloadStage,
  file: z.string().optional(),
  bytes: z.number(),
  total: z.number(),
  bytesPerSecond: z.number().optional(),
  etaSeconds: z.number().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  pid: z.number().int(),
  updatedAt: z.number(),
});

type Listener = (progress: PullProgress) => void;

const TERMINAL: ReadonlySet<DownloadStage> = new Set(["done", "failed", "cancelled"]);

interface Seen {
  last: PullProgress;
  key: string;
  pid: number;
}

export interface DownloadMonitorOptions {
  modelsDir: string;
  /** How often to look at other processes' progress files. */
  pollMs?: number;
}

export class DownloadMonitor {
  private readonly listeners = new Set<Listener>();
  private readonly dir: string;
  private readonly pollMs: number;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly seen = new Map<string, Seen>();
  /** The latest report of each pull running in this process. */
  private readonly ownRunning = new Map<string, PullProgress>();
  private polling = false;

  constructor(options: DownloadMonitorOptions) {
    this.dir = resolve(options.modelsDir);
    this.pollMs = options.pollMs ?? 500;
  }

  onProgress(listener: Listener): () => void {
    this.listeners.add(listener);
    if (!this.timer) {
      this.timer = setInterval(() => void this.poll(), this.pollMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  /** A pull in this process reports here (its progress file is then skipped). */
  report(progress: PullProgress): void {
    if (TERMINAL.has(progress.stage)) this.ownRunning.delete(progress.model);
    else this.ownRunning.set(progress.model, progress);
    this.emit(progress);
  }

  /**
   * Every pull known now: those running (here: their latest report; in another process: its
   * progress file) and those stopped part-way, whose partial folder keeps what they downloaded
   * (stage failed or cancelled, bytes as on disk); pull-model with their request resumes them.
   */
  async known(): Promise<DownloadStatus[]> {
    const known = new Map<string, DownloadStatus>(this.ownRunning);
    for (const name of await this.partialNames()) {
      const id = name.slice(PARTIAL_PREFIX.length);
      if (known.has(id)) continue;
      const partial = join(this.dir, name);
      const record = await this.read(join(partial, PROGRESS_FILE));
      if (!record) continue; // a local copy (models add), or a pull that never got past listing
      const { pid, updatedAt: _t, ...progress } = record;
      if (!TERMINAL.has(progress.stage) && pid !== process.pid && pidAlive(pid)) {
        known.set(id, progress);
        continue;
      }
      const { bytesPerSecond: _r, etaSeconds: _e, file: _f, ...stopped } = TERMINAL.has(progress.stage) ? progress : stoppedByExit(progress, id);
      if (stopped.stage === "done") continue;
      known.set(id, { ...stopped, bytes: Math.min(await downloadedBytes(partial), stopped.total || Infinity) });
    }
    return [...known.values()];
  }

  close(): void {
    this.listeners.clear();
    this.stop();
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private emit(progress: PullProgress): void {
    for (const listener of [...this.listeners]) listener(progress);
  }

  /** One look at the partial folders of other processes. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const names = await this.partialNames();
      const present = new Set<string>();
      for (const name of names) {
        const id = name.slice(PARTIAL_PREFIX.length);
        present.add(id);
        const record = await this.read(join(this.dir, name, PROGRESS_FILE));
        if (!record || record.pid === process.pid) continue;
        const { pid, updatedAt: _t, ...progress } = record;
        const current: PullProgress = !TERMINAL.has(progress.stage) && !pidAlive(pid) ? stoppedByExit(progress, id) : progress;
        const key = JSON.stringify(current);
        const before = this.seen.get(id);
        if (before?.key === key) continue;
        this.seen.set(id, { last: current, key, pid });
        // A failure already told once is not repeated when only its timestamp moves.
        if (before && TERMINAL.has(before.last.stage) && before.last.stage === current.stage) continue;
        this.emit(current);
      }
      for (const [id, before] of this.seen) {
        if (present.has(id)) continue;
        this.seen.delete(id);
        if (TERMINAL.has(before.last.stage)) continue;
        // The partial folder went away: renamed into place (done), or deleted (cancelled).
        const installed = await exists(modelDir(this.dir, id));
        const finishing = before.last.stage === "installing" || before.last.stage === "verifying" || before.last.stage === "downloading";
        this.emit(
          installed && finishing
            ? { ...before.last, stage: "done", bytes: before.last.total, file: undefined }
            : { ...before.last, stage: "cancelled", error: { code: "cancelled", message: `The download of "${id}" was stopped and its files removed.` } },
        );
      }
    } finally {
      this.polling = false;
    }
  }

  private async partialNames(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((n) => n.startsWith(PARTIAL_PREFIX));
    } catch {
      return [];
    }
  }

  private async read(path: string): Promise<z.infer<typeof ProgressRecord> | null> {
    try {
      const parsed = ProgressRecord.safeParse(JSON.parse(await readFile(path, "utf8")));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }
}

/** A pull whose process exited before it finished: failed, and resumable. */
function stoppedByExit(progress: PullProgress, id: string): PullProgress {
  return {
    ...progress,
    stage: "failed",
    error: {
      code: "network",
      message: `The download of "${id}" stopped when the process running it exited; run \`npx underpaint models pull ${progress.request}\` to resume it.`,
    },
  };
}

/** Bytes a partial folder holds of the model: its files and .part files, not the pull's own bookkeeping. */
async function downloadedBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || (entry.parentPath === dir && BOOKKEEPING.has(entry.name))) continue;
    total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

const BOOKKEEPING: ReadonlySet<string> = new Set([LOCK_FILE, STATE_FILE, PROGRESS_FILE]);
