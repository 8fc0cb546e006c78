/**
 * A panel connected while a model is being installed: it sees model-download progress and then
 * the new model in its list, whether the panel asked for the pull (pull-model) or the artist ran
 * `npx underpaint models pull` in a terminal.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { DaemonMessage } from "../../../protocol";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import { ModelDownloads } from "../../../daemon/models/downloads";
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

async function daemon() {
  const modelsDir = path.join(tmp.dir, `models-${n++}`);
  const env = { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5" };
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
  const installer = new ModelDownloads({ modelsDir, env, pollMs: 100 });
  const server: DaemonServer = await startServer({ token: TOKEN, engine, port: 0, installer });
  const client = await RawClient.paired(server.url, TOKEN);
  cleanups.push(async () => {
    client.socket.terminate();
    await server.close();
    await installer.close();
    await engine.dispose();
  });
  return { modelsDir, client, installer };
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
});
