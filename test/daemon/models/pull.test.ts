import { existsSync, statSync } from "node:fs";
import { readdir, readFile, stat, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { discoverModels } from "../../../daemon/models/discover";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import { readManifest } from "../../../daemon/models/manifest";
import { pullModel, type PullOptions, type PullProgress } from "../../../daemon/models/pull";
import { verifyModel } from "../../../daemon/models/verify";
import { fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { FakeHub } from "./fake-hub";

const REPO = "underpaint-test/tiny-sd";
const WEIGHTS = "unet/weights.pb";
let hub: FakeHub;
let tmp: TempDir;
let n = 0;

beforeAll(async () => {
  hub = await FakeHub.start();
  await hub.addRepo(REPO, {
    dir: fixtureModelDir("tiny-sd"),
    extra: {
      "README.md": "# tiny",
      "unet/diffusion_pytorch_model.safetensors": Buffer.alloc(300_000, 7),
      "safety_checker/model.onnx": Buffer.alloc(1000, 1),
      "tokenizer/tokenizer.json": "{}",
    },
  });
  await hub.addRepo("underpaint-test/private-sd", { dir: fixtureModelDir("tiny-sd"), private: true });
  await hub.addRepo("underpaint-test/torch-only", { files: { "model_index.json": "{}", "unet/diffusion_pytorch_model.safetensors": "x" } });
  tmp = await makeTempDir("underpaint-pull-");
});
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});
beforeEach(() => hub.reset());

function options(extra: Partial<PullOptions> = {}): PullOptions & { modelsDir: string } {
  const modelsDir = path.join(tmp.dir, `models-${n++}`);
  return {
    modelsDir,
    env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5", UNDERPAINT_PULL_STALL_MS: "5000" },
    ...extra,
  };
}

async function failure(promise: Promise<unknown>): Promise<ModelInstallError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ModelInstallError) return error;
    throw error;
  }
  throw new Error("expected the pull to fail");
}

const listed = async (dir: string) => (await discoverModels(dir)).models.map((m) => m.id);

describe("pullModel", () => {
  it("fetches only the engine's files, verifies them and installs the folder in one step", async () => {
    const progress: PullProgress[] = [];
    const o = options({ onProgress: (p) => progress.push(p) });
    const result = await pullModel(REPO, o);
    expect(result.id).toBe("tiny-sd");
    expect(result.alreadyInstalled).toBe(false);
    expect(await listed(o.modelsDir)).toEqual(["tiny-sd"]);
    const fetched = new Set(hub.requests.filter((r) => r.file).map((r) => r.file));
    expect(fetched.has("README.md")).toBe(false);
    expect(fetched.has("unet/diffusion_pytorch_model.safetensors")).toBe(false);
    expect(fetched.has("safety_checker/model.onnx")).toBe(false);
    expect(fetched.has("tokenizer/tokenizer.json")).toBe(false);
    expect(fetched.has(WEIGHTS)).toBe(true);
    // The token-free LFS bytes came from the other origin; small files straight from the hub.
    expect(hub.requestsFor(WEIGHTS).map((r) => r.host.split(":")[0])).toEqual(["127.0.0.1", "localhost"]);
    expect(hub.requestsFor("tokenizer/vocab.json").map((r) => r.path)).toEqual([expect.stringContaining("/resolve/")]);

    const manifest = await readManifest(path.join(o.modelsDir, "tiny-sd"));
    expect(manifest?.source).toMatchObject({ kind: "hub", repo: REPO, commit: hub.repos.get(REPO)!.commit });
    expect(manifest?.files.map((f) => f.path)).toContain(WEIGHTS);
    const stages = [...new Set(progress.map((p) => p.stage))];
    expect(stages).toEqual(["listing", "downloading", "verifying", "installing", "done"]);
    const last = progress.at(-1)!;
    expect(last.bytes).toBe(last.total);
    expect((await readdir(o.modelsDir)).filter((d) => d.startsWith("."))).toEqual([]);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);

    const again = await pullModel(REPO, { ...o, onProgress: () => {} });
    expect(again.alreadyInstalled).toBe(true);
  });

  it("resumes a dropped connection with a Range request from the byte it stopped at", async () => {
    const size = (await stat(path.join(fixtureModelDir("tiny-sd"), WEIGHTS))).size;
    const half = Math.floor(size / 2);
    hub.faults.dropAt.set(WEIGHTS, { byte: half, times: 1 });
    const logs: string[] = [];
    const o = options({ log: (l) => logs.push(l) });
    await pullModel(REPO, o);
    const cdn = hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/"));
    expect(cdn.map((r) => r.range)).toEqual([null, `bytes=${half}-`]);
    // The resolve request carried the range as well, and the token never reached the CDN.
    expect(hub.requestsFor(WEIGHTS).filter((r) => r.path.includes("/resolve/")).map((r) => r.range)).toEqual([null, `bytes=${half}-`]);
    expect(logs.some((l) => l.includes(WEIGHTS) && l.includes("retrying"))).toBe(true);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);
  });

  it("keeps going on a line that drops again and again, as long as each connection makes progress", async () => {
    hub.faults.dropEvery.set(WEIGHTS, { bytes: 700_000, times: 6 });
    const o = options({ env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_RETRIES: "1", UNDERPAINT_PULL_BACKOFF_MS: "1" } });
    await pullModel(REPO, o);
    const ranges = hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range);
    expect(ranges).toEqual([null, ...[1, 2, 3, 4, 5, 6].map((i) => `bytes=${i * 700_000}-`)]);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);
  });

  it("drops a connection that stops sending and resumes it", async () => {
    hub.faults.stallAt.set(WEIGHTS, { byte: 200_000, times: 1 });
    const o = options({ env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_BACKOFF_MS: "5", UNDERPAINT_PULL_STALL_MS: "300" } });
    await pullModel(REPO, o);
    expect(hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range)).toEqual([null, "bytes=200000-"]);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);
  });

  it("retries 503s with backoff and starts over when the server ignores the range", async () => {
    hub.faults.status.set("unet/model.onnx", { status: 503, times: 2 });
    hub.faults.dropAt.set(WEIGHTS, { byte: 1000, times: 1 });
    hub.faults.ignoreRange = true;
    const o = options();
    await pullModel(REPO, o);
    expect(hub.requestsFor("unet/model.onnx").filter((r) => r.path.includes("/resolve/")).length).toBe(3);
    expect(hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range)).toEqual([null, "bytes=1000-"]);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);
  });

  it("refuses a file with one corrupted byte, names it, and installs nothing", async () => {
    hub.faults.corrupt.set(WEIGHTS, 12345);
    const o = options();
    const error = await failure(pullModel(REPO, o));
    expect(error.code).toBe("verify_failed");
    expect(error.file).toBe(WEIGHTS);
    expect(error.message).toContain(WEIGHTS);
    expect(error.message).toMatch(/sha256/);
    expect(await listed(o.modelsDir)).toEqual([]);
    expect((await discoverModels(o.modelsDir)).broken).toEqual([]);
    // The good files stay for the next try; the bad one is gone.
    const partial = path.join(o.modelsDir, ".partial-tiny-sd");
    await expect(stat(path.join(partial, "unet", "model.onnx"))).resolves.toBeTruthy();
    await expect(stat(path.join(partial, `${WEIGHTS}.part`))).rejects.toThrow();
    // Fixed upstream: the next pull fetches only what is missing.
    hub.reset();
    await pullModel(REPO, o);
    expect(hub.requestsFor("unet/model.onnx")).toEqual([]);
    expect(hub.requestsFor(WEIGHTS).length).toBeGreaterThan(0);
    expect(await listed(o.modelsDir)).toEqual(["tiny-sd"]);
  });

  it("gives up after the retries with a message that says how to resume, keeping the bytes", async () => {
    hub.faults.dropAt.set(WEIGHTS, { byte: 100_000, times: 10 });
    const o = options({ env: { HF_ENDPOINT: hub.url, UNDERPAINT_PULL_RETRIES: "1", UNDERPAINT_PULL_BACKOFF_MS: "1" } });
    const error = await failure(pullModel(REPO, o));
    expect(error.code).toBe("network");
    expect(error.message).toMatch(/stopped at byte 100,000 of [\d,]+ .* Run the same command again to resume/);
    expect(await listed(o.modelsDir)).toEqual([]);
    expect((await stat(path.join(o.modelsDir, ".partial-tiny-sd", `${WEIGHTS}.part`))).size).toBe(100_000);
  });

  it("explains a missing repo, a private repo without a token, a refused token, and a repo that is not ONNX", async () => {
    const o = options();
    const missing = await failure(pullModel("underpaint-test/nope", o));
    expect([missing.code, missing.message]).toEqual(["repo_not_found", expect.stringContaining('There is no model repository "underpaint-test/nope"')]);
    const noToken = await failure(pullModel("underpaint-test/private-sd", o));
    expect(noToken.code).toBe("unauthorized");
    expect(noToken.message).toMatch(/set HF_TOKEN/);
    const badToken = await failure(pullModel("underpaint-test/private-sd", { ...o, env: { ...o.env, HF_TOKEN: "hf_wrong" } }));
    expect(badToken.message).toMatch(/refused the token in HF_TOKEN/);
    const torch = await failure(pullModel("underpaint-test/torch-only", o));
    expect(torch.code).toBe("not_onnx");
    expect(torch.message).toMatch(/PyTorch weights/);
    const unknown = await failure(pullModel("no-such-model", o));
    expect(unknown.code).toBe("unknown_model");
    expect(unknown.message).toMatch(/sd-turbo/);
    expect((await readdir(o.modelsDir).catch(() => []))).toEqual([]);

    const ok = await pullModel("underpaint-test/private-sd", { ...o, env: { ...o.env, HF_TOKEN: hub.token } });
    expect(ok.id).toBe("private-sd");
    // The token went to the hub, never to the CDN.
    const withToken = hub.requests.filter((r) => r.authorization);
    expect(withToken.length).toBeGreaterThan(0);
    expect(withToken.every((r) => r.host.startsWith("127.0.0.1"))).toBe(true);
    expect(hub.requests.some((r) => r.path.startsWith("/cdn/"))).toBe(true);
  });

  it("checks the free disk space before writing anything", async () => {
    const o = options({ env: { HF_ENDPOINT: hub.url, UNDERPAINT_FAKE_FREE_BYTES: "1000000" } });
    const error = await failure(pullModel(REPO, o));
    expect(error.code).toBe("disk_full");
    expect(error.message).toMatch(/Not enough disk space in .*: "tiny-sd" .* needs [\d.]+ MB, 1.00 MB is free/);
    expect(hub.requests.some((r) => r.file)).toBe(false);
    expect(await readdir(o.modelsDir)).toEqual([]);
  });

  it("drops an unfinished download of another commit instead of mixing versions", async () => {
    const o = options();
    const partial = path.join(o.modelsDir, ".partial-tiny-sd");
    await mkdir(path.join(partial, "unet"), { recursive: true });
    await writeFile(path.join(partial, ".pull.json"), JSON.stringify({ repo: REPO, commit: "0".repeat(40) }));
    await writeFile(path.join(partial, "unet", "weights.pb.part"), "stale bytes");
    await pullModel(REPO, o);
    expect(hub.requestsFor(WEIGHTS).every((r) => r.range === null)).toBe(true);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);
  });

  it("refuses a second pull of the same model while the first runs", async () => {
    hub.faults.throttle = 8_000_000;
    const o = options();
    const first = pullModel(REPO, o);
    await new Promise((r) => setTimeout(r, 300));
    const second = await failure(pullModel(REPO, o));
    expect(second.code).toBe("busy");
    await first;
    expect(await listed(o.modelsDir)).toEqual(["tiny-sd"]);
  });

  it("can be cancelled, and resumes later from what it kept", async () => {
    hub.faults.throttle = 2_000_000;
    const controller = new AbortController();
    const o = options({
      signal: controller.signal,
      onProgress: (p) => {
        const part = path.join(o.modelsDir, ".partial-tiny-sd", `${WEIGHTS}.part`);
        if (p.file === WEIGHTS && existsSync(part) && statSync(part).size > 300_000) controller.abort();
      },
    });
    const error = await failure(pullModel(REPO, o));
    expect(error.code).toBe("cancelled");
    expect(await listed(o.modelsDir)).toEqual([]);
    const kept = (await stat(path.join(o.modelsDir, ".partial-tiny-sd", `${WEIGHTS}.part`))).size;
    expect(kept).toBeGreaterThan(0);
    const progress = JSON.parse(await readFile(path.join(o.modelsDir, ".partial-tiny-sd", ".progress.json"), "utf8"));
    expect(progress.stage).toBe("cancelled");
    hub.reset();
    await pullModel(REPO, { ...o, signal: new AbortController().signal, onProgress: () => {} });
    expect(hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect((await verifyModel(o.modelsDir, "tiny-sd")).problems).toEqual([]);
  });
});
