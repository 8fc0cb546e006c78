/**
 * Notices models added to, removed from or changed in the models folder while the daemon runs.
 *
 * fs.watch on the folder and on each model folder in it (not recursive: that is not portable,
 * and a pull writes thousands of events into its hidden .partial-* folder, which we ignore)
 * schedules a debounced rescan. A periodic check of names, sizes and times two levels deep
 * catches what fs.watch misses (network drives, a weights file replaced in place, a folder that
 * did not exist yet). Listeners hear only when the list of models actually changed.
 */
import { watch, type FSWatcher } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { ModelList } from "../../protocol";

export interface ModelsWatcherOptions {
  dir: string;
  /** The current list of models, and of folders that cannot run (the engine's capabilities). */
  scan(): Promise<ModelList>;
  /** Quiet time after the last event before rescanning. */
  debounceMs?: number;
  /** How often to compare the folder's fingerprint, in case fs.watch missed something. */
  pollMs?: number;
  log?(line: string): void;
}

type Listener = (list: ModelList) => void;

/** Names, sizes and modification times of the visible entries, two levels deep. */
export async function folderFingerprint(dir: string): Promise<string> {
  const parts: string[] = [];
  const walk = async (path: string, rel: string, depth: number): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(path)).filter((n) => !n.startsWith(".")).sort();
    } catch {
      parts.push(`${rel}:-`);
      return;
    }
    for (const name of names) {
      const child = join(path, name);
      try {
        const s = await stat(child);
        parts.push(`${rel}/${name}:${s.isDirectory() ? "d" : s.size}:${s.mtimeMs}`);
        if (s.isDirectory() && depth < 2) await walk(child, `${rel}/${name}`, depth + 1);
      } catch {
        parts.push(`${rel}/${name}:?`);
      }
    }
  };
  await walk(resolve(dir), "", 0);
  return parts.join("\n");
}

export class ModelsWatcher {
  private readonly listeners = new Set<Listener>();
  private readonly dir: string;
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private rootWatcher: FSWatcher | null = null;
  /** The watched folder's inode: a folder deleted and made again needs a new watcher. */
  private rootIno: number | null = null;
  private readonly folderWatchers = new Map<string, FSWatcher>();
  private debounce: ReturnType<typeof setTimeout> | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;
  private last: string | null = null;
  private fingerprint: string | null = null;
  private scanning: Promise<void> | null = null;
  private again = false;
  private running = false;

  constructor(private readonly options: ModelsWatcherOptions) {
    this.dir = resolve(options.dir);
    this.debounceMs = options.debounceMs ?? 300;
    this.pollMs = options.pollMs ?? 5000;
  }

  /** Starts watching with the first listener; stops with the last. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    if (!this.running) this.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.close();
    };
  }

  /** Resolves once the baseline scan is done and watchers are armed (tests wait on it). */
  ready: Promise<void> = Promise.resolve();

  close(): void {
    this.running = false;
    clearTimeout(this.debounce);
    clearInterval(this.poll);
    this.rootWatcher?.close();
    this.rootWatcher = null;
    this.rootIno = null;
    for (const w of this.folderWatchers.values()) w.close();
    this.folderWatchers.clear();
  }

  /** Rescans now (after the debounce) and notifies if the list changed. */
  changed(): void {
    if (!this.running) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.rescan(), this.debounceMs);
  }

  private start(): void {
    this.running = true;
    this.ready = (async () => {
      try {
        this.last = JSON.stringify(await this.options.scan());
      } catch (error) {
        this.options.log?.(`models watcher: ${(error as Error).message}`);
      }
      this.fingerprint = await folderFingerprint(this.dir);
      await this.arm();
    })();
    this.poll = setInterval(() => void this.check(), this.pollMs);
    this.poll.unref();
  }

  /** (Re)creates the watchers: the folder itself and each visible subfolder. */
  private async arm(): Promise<void> {
    if (!this.running) return;
    const ino = await stat(this.dir).then((s) => s.ino, () => null);
    if (ino !== this.rootIno) {
      this.rootWatcher?.close();
      this.rootWatcher = null;
      this.rootIno = ino;
    }
    if (ino === null) return;
    if (!this.rootWatcher) {
      try {
        this.rootWatcher = watch(this.dir, { persistent: false }, (_event, name) => {
          if (name && String(name).startsWith(".")) return;
          this.changed();
        });
        this.rootWatcher.on("error", () => {
          this.rootWatcher?.close();
          this.rootWatcher = null;
        });
      } catch {
        // No folder yet: the poll notices when it appears.
        return;
      }
    }
    await readdir(this.dir, { withFileTypes: true })
      .then((entries) => {
        if (!this.running) return;
        const names = new Set(entries.filter((e) => !e.name.startsWith(".") && (e.isDirectory() || e.isSymbolicLink())).map((e) => e.name));
        for (const [name, w] of this.folderWatchers) {
          if (!names.has(name)) {
            w.close();
            this.folderWatchers.delete(name);
          }
        }
        for (const name of names) {
          if (this.folderWatchers.has(name)) continue;
          try {
            const w = watch(join(this.dir, name), { persistent: false }, () => this.changed());
            w.on("error", () => {
              w.close();
              this.folderWatchers.delete(name);
            });
            this.folderWatchers.set(name, w);
          } catch {
            // A file, or gone already.
          }
        }
      })
      .catch(() => {});
  }

  private async check(): Promise<void> {
    if (!this.running) return;
    const fingerprint = await folderFingerprint(this.dir);
    if (fingerprint !== this.fingerprint) this.changed();
  }

  private async rescan(): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      do {
        this.again = false;
        try {
          this.fingerprint = await folderFingerprint(this.dir);
          const models = await this.options.scan();
          const key = JSON.stringify(models);
          await this.arm();
          if (key !== this.last && this.running) {
            this.last = key;
            for (const listener of [...this.listeners]) listener(models);
          }
        } catch (error) {
          this.options.log?.(`models watcher: ${(error as Error).message}`);
        }
      } while (this.again && this.running);
    })();
    try {
      await this.scanning;
    } finally {
      this.scanning = null;
    }
  }
}
