/**
 * For end-to-end tests of model setup: the local hub imitation serving replicas of registry repos
 * (scripts/replicas.ts) at their pinned revisions, and the built daemon (`underpaint serve`, from
 * daemon/dist) in its own process, with the tiny fixture models and HF_ENDPOINT pointed at the hub.
 * Its own process keeps the test's event loop (the browser driver, the hub) free while it
 * generates, and lets it be stopped and started again on the same port and models folder, as when
 * the artist restarts the daemon in the middle of a pull.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { loadRegistry } from "../../daemon/models/registry";
import { replicas, writeReplica } from "../../scripts/replicas";
import { FakeHub } from "../daemon/models/fake-hub";
import { FIXTURES_DIR, ROOT } from "../helpers/paths";
import { TOKEN } from "./helpers";

const CLI = path.join(ROOT, "daemon", "dist", "cli.js");

export interface PullingDaemon {
  hub: FakeHub;
  /** ws://127.0.0.1:port, the same across restarts. */
  url: string;
  modelsDir: string;
  /** What the daemon wrote to stderr (its log), for failures. */
  log: string[];
  /** Stops the daemon as Ctrl+C does (its pulls stop, their bytes stay on disk). */
  stop(): Promise<void>;
  /** Starts it again on the same port and models folder. */
  start(): Promise<void>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `repos`: the registry ids (models, preview decoders or ControlNets) whose repos the hub serves. */
export async function startPullingDaemon(repos: readonly string[]): Promise<PullingDaemon> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the daemon first (npm run build)`);
  const work = await mkdtemp(path.join(os.tmpdir(), "underpaint-pulls-"));
  const modelsDir = path.join(work, "models");
  await mkdir(modelsDir);
  await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(modelsDir, "tiny-sd"));
  await symlink(path.join(FIXTURES_DIR, "tiny-sd-inpaint"), path.join(modelsDir, "tiny-sd-inpaint"));
  // The token the panel pastes, where `underpaint serve` reads it.
  await mkdir(path.join(work, "config", "underpaint"), { recursive: true });
  await writeFile(path.join(work, "config", "underpaint", "pairing-token"), `${TOKEN}\n`, { mode: 0o600 });

  const hub = await FakeHub.start();
  const registry = loadRegistry();
  const all = await replicas();
  for (const id of repos) {
    const entry = [...registry.models, ...registry.previewDecoders, ...registry.controlNets].find((e) => e.id === id);
    const replica = all.find((r) => r.repo === entry?.repo);
    if (!entry || !replica) throw new Error(`no replica of the registry entry ${id}`);
    const dir = path.join(work, "hub", replica.repo.replace("/", "--"));
    await writeReplica(replica, dir);
    await hub.addRepo(replica.repo, { dir, ...(entry.pinned ? { commit: entry.revision } : {}) });
  }

  const port = await freePort();
  const log: string[] = [];
  let child: ChildProcess | undefined;
  const env = {
    ...process.env,
    HF_ENDPOINT: hub.url,
    UNDERPAINT_PULL_BACKOFF_MS: "5",
    XDG_CONFIG_HOME: path.join(work, "config"),
    XDG_CACHE_HOME: path.join(work, "cache"),
  };
  const daemon: PullingDaemon = {
    hub,
    url: `ws://127.0.0.1:${port}`,
    modelsDir,
    log,
    async start() {
      // Optimized cache off: SD-Turbo's float16 parts must still run on the CPU, from float32 copies in the work folder's cache.
      const started = spawn(process.execPath, [CLI, "serve", "--port", String(port), "--models", modelsDir, "--no-optimized-cache"], { env, stdio: ["ignore", "pipe", "pipe"] });
      child = started;
      started.stderr!.on("data", (chunk: Buffer) => log.push(chunk.toString()));
      await new Promise<void>((resolve, reject) => {
        let out = "";
        started.stdout!.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes("listening on")) resolve();
        });
        started.once("exit", (code) => reject(new Error(`the daemon exited (${code}) before listening:\n${log.join("")}`)));
      });
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
      running.kill("SIGTERM");
      await exited;
    },
    async close() {
      await daemon.stop();
      await hub.close();
      await rm(work, { recursive: true, force: true });
    },
  };
  await daemon.start();
  return daemon;
}
