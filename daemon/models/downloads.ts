/**
 * The daemon's model installs: runs the pulls that panels ask for (one per model at a time, in
 * the background), lets them be cancelled, and reports every install into the models folder,
 * its own and other processes' (download-monitor.ts), to whoever listens: the server, which
 * sends each report to the panels as a model-download message.
 */
import type { DownloadStatus } from "../../protocol";
import { DownloadMonitor } from "./download-monitor";
import { isModelInstallError } from "./install-errors";
import { pullModel, type PullProgress } from "./pull";
import { pullTarget } from "./registry";

type Env = Record<string, string | undefined>;

/** What the server needs: start, cancel, a stream of progress reports, and the pulls known now. */
export interface ModelInstaller {
  start(request: string, revision?: string): void;
  cancel(request: string): boolean;
  onProgress(listener: (progress: PullProgress) => void): () => void;
  /** Running pulls and those stopped part-way whose files are kept (a panel that connects now is told of them). */
  downloads(): Promise<DownloadStatus[]>;
}

export interface ModelDownloadsOptions {
  modelsDir: string;
  env?: Env;
  log?(line: string): void;
  /** How often other processes' progress files are read. */
  pollMs?: number;
}

interface Running {
  request: string;
  model: string;
  controller: AbortController;
  done: Promise<void>;
}

export class ModelDownloads implements ModelInstaller {
  readonly monitor: DownloadMonitor;
  private readonly running = new Map<string, Running>();

  constructor(private readonly options: ModelDownloadsOptions) {
    this.monitor = new DownloadMonitor({ modelsDir: options.modelsDir, ...(options.pollMs ? { pollMs: options.pollMs } : {}) });
  }

  onProgress(listener: (progress: PullProgress) => void): () => void {
    return this.monitor.onProgress(listener);
  }

  downloads(): Promise<DownloadStatus[]> {
    return this.monitor.known();
  }

  /** Starts pulling `request` unless it is already being pulled here; failures arrive as reports. */
  start(request: string, revision?: string): void {
    let model: string;
    try {
      model = pullTarget(request, revision ? { revision } : {}).id;
    } catch (error) {
      this.monitor.report(failure(request, request, error));
      return;
    }
    if (this.running.has(model)) return;
    const controller = new AbortController();
    const log = this.options.log;
    const done = pullModel(request, {
      modelsDir: this.options.modelsDir,
      ...(this.options.env ? { env: this.options.env } : {}),
      ...(revision ? { revision } : {}),
      signal: controller.signal,
      onProgress: (progress) => this.monitor.report(progress),
      ...(log ? { log: (line: string) => log(`pull ${model}: ${line}`) } : {}),
    })
      .then((result) => {
        if (result.alreadyInstalled) {
          this.monitor.report({ model, request, source: result.repo, stage: "done", bytes: 0, total: 0 });
        } else {
          log?.(`installed ${model} from ${result.repo}@${result.commit}`);
        }
      })
      .catch((error: unknown) => {
        // pullModel reports its own failures; this catches only what it threw before it could.
        if (!isModelInstallError(error) || error.code === "unknown_model" || error.code === "invalid_request") {
          this.monitor.report(failure(model, request, error));
        }
        log?.(`pull ${model} failed: ${(error as Error).message}`);
      })
      .finally(() => this.running.delete(model));
    this.running.set(model, { request, model, controller, done });
  }

  /** Stops a pull started here (by request or model id); false if none is running (or it is already stopping). */
  cancel(request: string): boolean {
    for (const run of this.running.values()) {
      if ((run.request === request || run.model === request) && !run.controller.signal.aborted) {
        run.controller.abort();
        return true;
      }
    }
    return false;
  }

  /** Stops every pull (their files stay for resuming) and waits for them. */
  async close(): Promise<void> {
    for (const run of this.running.values()) run.controller.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
    this.monitor.close();
  }
}

function failure(model: string, request: string, error: unknown): PullProgress {
  const code = isModelInstallError(error) ? error.code : "io";
  return { model, request, stage: "failed", bytes: 0, total: 0, error: { code, message: (error as Error).message } };
}
