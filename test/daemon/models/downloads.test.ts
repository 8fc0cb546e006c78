/**
 * A panel connected while a model is being installed: it sees model-download progress and then
 * the new model in its list, whether the panel asked for the pull (pull-model) or the artist ran
 * `npx underpaint models pull` in a terminal. A panel that connects later is told of the pulls
 * running and of those stopped part-way (a killed process, a cancel) in its welcome, and resumes them.
 */
import { spawn } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DaemonMessage } from "../../../protocol";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { ModelDownloads } from "../../../daemon/models/downloads";
import { lockOwner, pidAlive } from "../../../daemon/models/model-store";
import { startServer, type DaemonServer } from "../../../daemon/server/server";
import { fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { ROOT, TSX } from "../../helpers/paths";
import { RawClient } from "../../helpers/raw-client";
import { FakeHub } from "./fake-hub";

const TOKEN = "t".repeat(40);
const REPO = "underpaint-test/tiny-sd";
type Download = Extract<DaemonMessage, { type: "model-download" }>;

let hub: FakeHub;
let tmp: TempDir;
let n = 0;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  hub = await FakeHub.start();
  await hub.addRepo(REPO, { dir: fixtureModelDir("tiny-sd") });
  tmp = await makeTempDir("underpaint-downloads-");
});
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});
beforeEach(() => hub.reset());
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function daemon(modelsDir = path.join(tmp.dir, `models-${n++}`)) {
  const env = { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" };
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
  const installer = new ModelDownloads({ modelsDir, env, pollMs: 100 });
  const server: DaemonServer = await startServer({ token: TOKEN, engine, port: 0, installer });
  const client = await RawClient.paired(server.url, TOKEN);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    client.socket.terminate();
    await server.close();
    await installer.close();
    await engine.dispose();
  };
  cleanups.push(stop);
  return { modelsDir, client, installer, server, stop };
}

/** What a stopped pull left in its partial folder: finished files, and .part files with their sizes. */
async function leftOnDisk(modelsDir: string): Promise<{ bytes: number; finished: string[]; parts: Map<string, number> }> {
  const partial = path.join(modelsDir, ".partial-tiny-sd");
  let bytes = 0;
  const finished: string[] = [];
  const parts = new Map<string, number>();
  for (const entry of await readdir(partial, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || entry.name.startsWith(".")) continue;
    const size = (await stat(path.join(entry.parentPath, entry.name))).size;
    const file = path.relative(partial, path.join(entry.parentPath, entry.name)).split(path.sep).join("/");
    bytes += size;
    if (file.endsWith(".part")) parts.set(file.slice(0, -".part".length), size);
    else finished.push(file);
  }
  return { bytes, finished, parts };
}

/** Resumes the stopped pull from a new panel and checks it fetched only what was missing. */
async function resume(client: RawClient, left: Awaited<ReturnType<typeof leftOnDisk>>): Promise<void> {
  hub.reset();
  client.send({ type: "pull-model", model: REPO });
  await client.next("model-download", (m) => m.stage === "done", 30_000);
  await client.next("models", (m) => m.models.some((x) => x.id === "tiny-sd"), 15_000);
  for (const file of left.finished) expect(hub.requestsFor(file), `${file} was complete`).toEqual([]);
  for (const [file, size] of left.parts) {
    expect(hub.requestsFor(file).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range), file).toEqual([`bytes=${size}-`]);
  }
}

function downloads(client: RawClient): Download[] {
  return client.ofType("model-download");
}

describe("model downloads seen from a panel", { timeout: 120_000 }, () => {
  it("pull-model: progress, then done, then the new model in the list", async () => {
    const { client } = await daemon();
    expect(client.ofType("welcome")[0]!.capabilities.models).toEqual([]);
    hub.faults.throttle = 20_000_000;
    client.send({ type: "pull-model", model: REPO });
    const done = await client.next("model-download", (m) => m.stage === "done", 30_000);
    expect(done).toMatchObject({ model: "tiny-sd", request: REPO, source: `${REPO}@${hub.repos.get(REPO)!.commit}` });
    const updates = downloads(client).filter((m) => m.stage === "downloading");
    expect(updates.length).toBeGreaterThan(2);
    const total = updates[0]!.total;
    expect(total).toBeGreaterThan(16_000_000);
    const bytes = updates.map((m) => m.bytes);
    expect([...bytes].sort((a, b) => a - b)).toEqual(bytes);
    expect(updates.some((m) => m.file === "unet/weights.pb" && m.bytesPerSecond! > 0 && m.etaSeconds !== undefined)).toBe(true);
    expect(downloads(client).map((m) => m.stage).filter((s, i, all) => all.indexOf(s) === i)).toEqual(["listing", "downloading", "verifying", "installing", "done"]);
    const list = await client.next("models", (m) => m.models.some((x) => x.id === "tiny-sd"), 15_000);
    expect(list.models.map((m) => [m.id, m.kind, m.nativeResolution, m.turbo])).toEqual([["tiny-sd", "txt2img", 512, false]]);
    expect(list.models[0]!.modes).toContain("txt2img");
    expect(client.messages.indexOf(list)).toBeGreaterThan(client.messages.indexOf(done));
  });

  it("a pull run from the terminal shows in the panel too", async () => {
    const { client, modelsDir } = await daemon();
    hub.faults.throttle = 8_000_000;
    const child = spawn(TSX, ["daemon/cli.ts", "models", "pull", REPO], {
      cwd: ROOT,
      env: { ...process.env, UNDERPAINT_MODELS: modelsDir, HF_ENDPOINT: hub.url, UNDERPAINT_CONFIG_DIR: path.join(tmp.dir, "config") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    cleanups.push(() => void child.kill());
    const progress = await client.next("model-download", (m) => m.stage === "downloading" && m.bytes > 0, 30_000);
    expect(progress).toMatchObject({ model: "tiny-sd", request: REPO });
    await client.next("model-download", (m) => m.stage === "done", 30_000);
    await client.next("models", (m) => m.models.some((x) => x.id === "tiny-sd"), 15_000);
    expect(await exited).toBe(0);
  });

  it("reports a failed pull-model with its reason, and a cancelled one", async () => {
    const { client } = await daemon();
    client.send({ type: "pull-model", model: "underpaint-test/missing" });
    const failed = await client.next("model-download", (m) => m.stage === "failed");
    expect(failed.error).toEqual({ code: "repo_not_found", message: expect.stringContaining('There is no model repository "underpaint-test/missing"') });
    client.send({ type: "pull-model", model: "not a model" });
    const unknown = await client.next("model-download", (m) => m.stage === "failed" && m.request === "not a model");
    expect(unknown.error?.code).toBe("unknown_model");

    hub.faults.throttle = 2_000_000;
    client.send({ type: "pull-model", model: REPO });
    await client.next("model-download", (m) => m.stage === "downloading" && m.bytes > 1_000_000, 30_000);
    client.send({ type: "cancel-pull", model: "tiny-sd" });
    const cancelled = await client.next("model-download", (m) => m.stage === "cancelled", 10_000);
    expect(cancelled.error?.code).toBe("cancelled");
    client.send({ type: "cancel-pull", model: "tiny-sd" });
    expect((await client.next("error")).message).toMatch(/No download of "tiny-sd"/);
  });

  it("a pull whose process was killed part-way is in a new daemon's welcome with the bytes kept, and pull-model resumes it", async () => {
    const modelsDir = path.join(tmp.dir, `models-${n++}`);
    hub.faults.throttle = 4_000_000;
    const child = spawn(TSX, ["daemon/cli.ts", "models", "pull", REPO], {
      cwd: ROOT,
      env: { ...process.env, UNDERPAINT_MODELS: modelsDir, HF_ENDPOINT: hub.url, UNDERPAINT_CONFIG_DIR: path.join(tmp.dir, "config") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<unknown>((resolve) => child.once("exit", resolve));
    cleanups.push(() => void child.kill());
    const deadline = Date.now() + 30_000;
    while ((await leftOnDisk(modelsDir).catch(() => ({ bytes: 0 }))).bytes < 2_000_000) {
      if (Date.now() > deadline) throw new Error("the terminal's pull never got 2 MB in");
      await new Promise((r) => setTimeout(r, 50));
    }
    // The process that pulls (tsx runs the CLI in a child of its own) holds the partial folder's lock.
    const puller = await lockOwner(path.join(modelsDir, ".partial-tiny-sd"));
    expect(puller).not.toBeNull();
    process.kill(puller!, "SIGKILL");
    await exited;
    while (pidAlive(puller!)) await new Promise((r) => setTimeout(r, 20));
    const left = await leftOnDisk(modelsDir);
    hub.faults.throttle = 0;

    const { client } = await daemon(modelsDir);
    const [stopped, ...more] = client.ofType("welcome")[0]!.capabilities.downloads;
    expect(more).toEqual([]);
    expect(stopped).toMatchObject({ model: "tiny-sd", request: REPO, source: `${REPO}@${hub.repos.get(REPO)!.commit}`, stage: "failed", bytes: left.bytes });
    expect(stopped!.error?.message).toMatch(/stopped when the process running it exited/);
    expect(stopped!.bytes).toBeLessThan(stopped!.total);
    expect(stopped).not.toHaveProperty("bytesPerSecond");
    await resume(client, left);
    const later = await RawClient.paired((await daemon(modelsDir)).server.url, TOKEN);
    expect(later.ofType("welcome")[0]!.capabilities.downloads, "installed: nothing left to resume").toEqual([]);
    later.socket.terminate();
  });

  it("a running pull is in the welcome of a panel that connects meanwhile; cancelled, it is in a new daemon's welcome and resumes", async () => {
    const first = await daemon();
    hub.faults.throttle = 2_000_000;
    first.client.send({ type: "pull-model", model: REPO });
    await first.client.next("model-download", (m) => m.stage === "downloading" && m.bytes > 1_000_000, 30_000);
    const second = await RawClient.paired(first.server.url, TOKEN);
    const [running] = second.ofType("welcome")[0]!.capabilities.downloads;
    expect(running).toMatchObject({ model: "tiny-sd", request: REPO, stage: "downloading" });
    expect(running!.bytes).toBeGreaterThan(1_000_000);
    second.socket.terminate();

    first.client.send({ type: "cancel-pull", model: "tiny-sd" });
    await first.client.next("model-download", (m) => m.stage === "cancelled", 10_000);
    await first.stop();
    const left = await leftOnDisk(first.modelsDir);
    hub.faults.throttle = 0;

    const { client } = await daemon(first.modelsDir);
    expect(client.ofType("welcome")[0]!.capabilities.downloads).toEqual([
      expect.objectContaining({ model: "tiny-sd", request: REPO, stage: "cancelled", bytes: left.bytes, error: expect.objectContaining({ code: "cancelled" }) }),
    ]);
    expect(left.bytes).toBeGreaterThan(1_000_000);
    await resume(client, left);
  });
});
