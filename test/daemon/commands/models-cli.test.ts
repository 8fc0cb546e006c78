/**
 * `underpaint models …` as an artist runs it: real subprocesses (tsx daemon/cli.ts) against a
 * local imitation of the Hugging Face Hub serving the fixture model, with the models and config
 * folders in a temp dir.
 */
import { execFile, spawn } from "node:child_process";
import { lstat, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { discoverModels } from "../../../daemon/models/discover";
import { fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";
import { ROOT, TSX } from "../../helpers/paths";
import { FakeHub } from "../models/fake-hub";

const execFileP = promisify(execFile);
const REPO = "underpaint-test/tiny-sd";
const WEIGHTS = "unet/weights.pb";

let hub: FakeHub;
let tmp: TempDir;
let n = 0;

beforeAll(async () => {
  hub = await FakeHub.start();
  await hub.addRepo(REPO, { dir: fixtureModelDir("tiny-sd"), extra: { "README.md": "# tiny", "unet/diffusion_pytorch_model.safetensors": Buffer.alloc(100_000) } });
  await hub.addRepo("underpaint-test/private-sd", { dir: fixtureModelDir("tiny-sd"), private: true });
  tmp = await makeTempDir("underpaint-models-cli-");
});
afterAll(async () => {
  await hub.close();
  await tmp.cleanup();
});
beforeEach(() => hub.reset());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function freshModelsDir(): string {
  return path.join(tmp.dir, `models-${n++}`);
}

async function cli(modelsDir: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP(TSX, ["daemon/cli.ts", "models", ...args], {
      cwd: ROOT,
      env: {
        ...process.env,
        UNDERPAINT_MODELS: modelsDir,
        UNDERPAINT_CONFIG_DIR: path.join(tmp.dir, "config"),
        HF_ENDPOINT: hub.url,
        HF_TOKEN: "",
        UNDERPAINT_PULL_BACKOFF_MS: "5",
        ...env,
      },
      maxBuffer: 16 << 20,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const installed = async (dir: string) => (await discoverModels(dir)).models.map((m) => m.id);
const everything = async (dir: string) => (await discoverModels(dir).then((d) => [...d.models, ...d.broken].map((m) => m.id)));

// Each command is a fresh tsx process (seconds each on a loaded machine): generous timeouts.
describe("underpaint models", { timeout: 240_000 }, () => {
  it("pulls, lists, verifies and removes a model through the hub API", async () => {
    const dir = freshModelsDir();
    const pulled = await cli(dir, ["pull", REPO]);
    expect(pulled.code).toBe(0);
    const commit = hub.repos.get(REPO)!.commit;
    expect(pulled.stdout).toMatch(new RegExp(`installed tiny-sd in .*: 11 files, [\\d.]+ MB, from ${REPO}@${commit.slice(0, 12)}`));
    // Not a terminal: a line per file for the log instead of a bar.
    expect(pulled.stderr).toMatch(/downloading tiny-sd from underpaint-test\/tiny-sd@[0-9a-f]{40}: [\d.]+ MB/);
    expect(pulled.stderr).toContain(`  ${WEIGHTS}`);
    expect(hub.requests.some((r) => r.file === "README.md" || r.file?.endsWith(".safetensors"))).toBe(false);
    expect(await installed(dir)).toEqual(["tiny-sd"]);

    const list = await cli(dir, ["list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`tiny-sd +txt2img, 512px +[\\d.]+ MB +${REPO}@${commit.slice(0, 12)}`));
    expect(list.stdout).toMatch(/Available to pull[\s\S]*sd-turbo +SD-Turbo: txt2img, 512px, 1 steps, guidance 0, euler_a/);
    const json = JSON.parse((await cli(dir, ["list", "--json"])).stdout);
    expect(json.installed).toEqual([
      expect.objectContaining({ id: "tiny-sd", kind: "txt2img", modes: ["txt2img", "img2img", "inpaint", "outpaint"], nativeResolution: 512, turbo: false }),
    ]);
    expect(json.available.map((m: { id: string }) => m.id)).toEqual(["sd-1.5", "sd-1.5-inpainting", "sd-turbo", "lcm-dreamshaper-v7", "sd-1.5-control", "sdxl-turbo", "sdxl-base-1.0", "sdxl-control", "sdxl-lightning"]);
    expect(json.availableControlNets.map((m: { id: string; control: string }) => [m.id, m.control])).toEqual([
      ["controlnet-canny", "canny"], ["controlnet-depth", "depth"], ["controlnet-pose", "pose"], ["controlnet-scribble", "scribble"], ["controlnet-lineart", "lineart"], ["controlnet-sdxl-canny", "canny"], ["controlnet-sdxl-depth", "depth"], ["controlnet-sdxl-pose", "pose"],
    ]);
    expect(list.stdout).toMatch(/controlnet-canny +ControlNet Canny edges \(SD 1\.5\): ControlNet \(canny\) for control-capable sd15 models; /);
    // The helper networks beside the models: the depth and pose estimators.
    expect(json.availableDepthEstimators.map((m: { id: string }) => m.id)).toEqual(["depth-anything-v2-small"]);
    expect(json.availablePoseEstimators).toEqual([{ id: "dwpose", name: "DWPose (YOLOX-L + RTMPose-l whole-body)", repo: "yzd-v/DWPose", revision: "main", pinned: false, license: "Apache-2.0" }]);
    expect(json.poseEstimator).toBeNull();
    expect(list.stdout).toMatch(/dwpose +DWPose \(YOLOX-L \+ RTMPose-l whole-body\): pose estimator \(OpenPose maps from pictures for pose ControlNets\); Apache-2\.0/);

    const verify = await cli(dir, ["verify", "tiny-sd"]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/tiny-sd: OK \(11 files, [\d.]+ MB, sha256 of every file matches\); txt2img, 512px/);

    const again = await cli(dir, ["pull", REPO]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already installed/);

    const removed = await cli(dir, ["remove", "tiny-sd"]);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toMatch(/removed model "tiny-sd"/);
    expect(await readdir(dir)).toEqual([]);
    const gone = await cli(dir, ["remove", "tiny-sd"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/error \(not_installed\): There is no model "tiny-sd"/);
  });

  it("resumes a pull whose connection dropped halfway from the byte it stopped at", async () => {
    const dir = freshModelsDir();
    const size = (await stat(path.join(fixtureModelDir("tiny-sd"), WEIGHTS))).size;
    const half = Math.floor(size / 2);
    // The connection dies at the same byte every time, and the pull gives up after one retry.
    hub.faults.dropAt.set(WEIGHTS, { byte: half, times: 100 });
    const first = await cli(dir, ["pull", REPO], { UNDERPAINT_PULL_RETRIES: "1" });
    expect(first.code).toBe(1);
    expect(first.stderr).toMatch(new RegExp(`error \\(network\\): The download of ${WEIGHTS} stopped at byte ${half.toLocaleString("en-US")} of ${size.toLocaleString("en-US")} .*Run the same command again to resume`));
    expect(await everything(dir)).toEqual([]);
    const part = path.join(dir, ".partial-tiny-sd", `${WEIGHTS}.part`);
    expect((await stat(part)).size).toBe(half);
    expect((await cli(dir, ["list"])).stdout).toMatch(/tiny-sd +unfinished download .*`npx underpaint models pull underpaint-test\/tiny-sd` resumes it/);

    hub.reset();
    const second = await cli(dir, ["pull", REPO]);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/downloaded now, the rest resumed/);
    const ranges = hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range);
    expect(ranges).toEqual([`bytes=${half}-`]);
    // Files finished by the first run were not fetched again.
    expect(hub.requestsFor("text_encoder/model.onnx")).toEqual([]);
    expect((await cli(dir, ["verify", "tiny-sd"])).code).toBe(0);
  });

  it("survives a pull killed mid-download: nothing listed, and the next pull resumes", async () => {
    const dir = freshModelsDir();
    hub.faults.throttle = 3_000_000;
    const env = { ...process.env, UNDERPAINT_MODELS: dir, HF_ENDPOINT: hub.url, UNDERPAINT_CONFIG_DIR: path.join(tmp.dir, "config") };
    const part = path.join(dir, ".partial-tiny-sd", `${WEIGHTS}.part`);
    const started = async () => {
      // Its own process group: tsx runs the CLI in a child process, and a crash takes both.
      const child = spawn(TSX, ["daemon/cli.ts", "models", "pull", REPO], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("close", (code, signal) => resolve(code ?? (signal ? -1 : null))));
      const sizeNow = () => stat(part).then((s) => s.size, () => 0);
      const before = await sizeNow();
      // Up to a minute: a tsx process starts slowly on a busy 2-core machine; the loop ends as soon as bytes flow.
      for (let i = 0; i < 2400 && (await sizeNow()) < before + 500_000; i++) await new Promise((r) => setTimeout(r, 25));
      return { child, exited, stderr: () => stderr };
    };

    // Killed outright, as by a crash or a power cut.
    const killed = await started();
    process.kill(-killed.child.pid!, "SIGKILL");
    await killed.exited;
    expect(await everything(dir)).toEqual([]);
    const kept = (await stat(part)).size;
    expect(kept).toBeGreaterThan(0);

    // Interrupted with Ctrl-C: a sentence and exit status 130. Slower, so that the signal lands
    // mid-download even when a busy machine is slow to notice the first bytes.
    hub.reset();
    hub.faults.throttle = 1_000_000;
    const interrupted = await started();
    interrupted.child.kill("SIGINT");
    expect(await interrupted.exited).toBe(130);
    expect(interrupted.stderr()).toMatch(/stopped; `npx underpaint models pull underpaint-test\/tiny-sd` resumes where it left off/);
    // It resumed the first run's bytes rather than starting over.
    expect(hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/"))[0]?.range).toBe(`bytes=${kept}-`);
    expect(await everything(dir)).toEqual([]);

    hub.reset();
    const size = (await stat(part)).size;
    expect((await cli(dir, ["pull", REPO])).code).toBe(0);
    expect(hub.requestsFor(WEIGHTS).filter((r) => r.path.startsWith("/cdn/")).map((r) => r.range)).toEqual([`bytes=${size}-`]);
    expect(await installed(dir)).toEqual(["tiny-sd"]);
    expect((await cli(dir, ["verify", "tiny-sd"])).code).toBe(0);
  });

  it("refuses a corrupted download and a corrupted installed file, naming the file", async () => {
    const dir = freshModelsDir();
    hub.faults.corrupt.set(WEIGHTS, 4242);
    const bad = await cli(dir, ["pull", REPO]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`error \\(verify_failed\\): ${WEIGHTS} is corrupt: its sha256 is [0-9a-f]{64}, the hub publishes [0-9a-f]{64}. It was not installed`));
    expect(await everything(dir)).toEqual([]);

    hub.reset();
    expect((await cli(dir, ["pull", REPO])).code).toBe(0);
    const file = path.join(dir, "tiny-sd", "text_encoder", "model.onnx");
    const bytes = await readFile(file);
    bytes[1000] = bytes[1000]! ^ 1;
    await writeFile(file, bytes);
    const verify = await cli(dir, ["verify", "tiny-sd"]);
    expect(verify.code).toBe(1);
    expect(verify.stderr).toMatch(/error \(verify_failed\): "tiny-sd" failed verification .*\n {2}text_encoder\/model.onnx: sha256 is [0-9a-f]{64}, [0-9a-f]{64} was installed/);
    expect(verify.stderr).toMatch(/models pull underpaint-test\/tiny-sd --force/);
    // --force downloads it again (verified as any pull) and swaps it in.
    const repaired = await cli(dir, ["pull", REPO, "--force"]);
    expect(repaired.code).toBe(0);
    expect((await readFile(file)).equals(await readFile(path.join(fixtureModelDir("tiny-sd"), "text_encoder", "model.onnx")))).toBe(true);
  });

  it("explains a missing repo, a private repo without a token and a full disk, leaving nothing behind", async () => {
    const dir = freshModelsDir();
    const missing = await cli(dir, ["pull", "underpaint-test/no-such-repo"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/error \(repo_not_found\): There is no model repository "underpaint-test\/no-such-repo" on http:\/\/127.0.0.1:\d+ \(HTTP 404\)/);

    const denied = await cli(dir, ["pull", "underpaint-test/private-sd"]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/error \(unauthorized\): underpaint-test\/private-sd needs a Hugging Face token \(HTTP 401\).*set HF_TOKEN/);

    const full = await cli(dir, ["pull", REPO], { UNDERPAINT_FAKE_FREE_BYTES: "5000000" });
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/error \(disk_full\): Not enough disk space in .*: "tiny-sd" \([\d.]+ MB\) needs [\d.]+ MB, 5.00 MB is free/);

    const unknown = await cli(dir, ["pull", "sdxl-lightning-8step"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/error \(unknown_model\): There is no model "sdxl-lightning-8step" in the registry \(known: sd-1.5, sd-1.5-inpainting, sd-turbo, lcm-dreamshaper-v7, sd-1.5-control, sdxl-turbo, sdxl-base-1.0, sdxl-control, sdxl-lightning, taesd, controlnet-canny, controlnet-depth, controlnet-pose, controlnet-scribble, controlnet-lineart, controlnet-sdxl-canny, controlnet-sdxl-depth, controlnet-sdxl-pose, depth-anything-v2-small, dwpose\)/);

    expect(await readdir(dir).catch(() => [])).toEqual([]);
    expect(hub.requests.some((r) => r.file !== null)).toBe(false);

    const withToken = await cli(dir, ["pull", "underpaint-test/private-sd", "--as", "mine"], { HF_TOKEN: hub.token });
    expect(withToken.code).toBe(0);
    expect(await installed(dir)).toEqual(["mine"]);
  });

  it("adds a local folder by link or by copy, and removes a link without touching its folder", async () => {
    const dir = freshModelsDir();
    const source = fixtureModelDir("tiny-sd-inpaint");
    const linked = await cli(dir, ["add", source]);
    expect(linked.code).toBe(0);
    expect(linked.stdout).toMatch(/added "tiny-sd-inpaint": .* links to/);
    expect((await lstat(path.join(dir, "tiny-sd-inpaint"))).isSymbolicLink()).toBe(true);
    const copied = await cli(dir, ["add", source, "--copy", "--as", "inpaint-copy"]);
    expect(copied.code).toBe(0);
    expect(await installed(dir)).toEqual(["inpaint-copy", "tiny-sd-inpaint"]);
    const list = await cli(dir, ["list"]);
    expect(list.stdout).toMatch(/inpaint-copy +inpainting, 512px .* copy of /);
    expect(list.stdout).toMatch(/tiny-sd-inpaint +inpainting, 512px .* link to /);
    expect((await cli(dir, ["verify", "inpaint-copy"])).stdout).toMatch(/inpaint-copy: OK \(\d+ files, .*sha256 of every file matches\); inpainting/);
    expect((await cli(dir, ["verify", "tiny-sd-inpaint"])).stdout).toMatch(/no checksums were recorded for it \(added as a link\)/);
    const twice = await cli(dir, ["add", source]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/error \(already_installed\).*--as NAME/);
    const broken = await cli(dir, ["add", path.join(tmp.dir)]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/model_index.json/);

    expect((await cli(dir, ["remove", "tiny-sd-inpaint"])).stdout).toMatch(/removed link "tiny-sd-inpaint"/);
    expect((await stat(path.join(source, "unet", "model.onnx"))).isFile()).toBe(true);
    expect(await installed(dir)).toEqual(["inpaint-copy"]);
  });

  it("answers usage mistakes with exit status 2", async () => {
    const dir = freshModelsDir();
    const none = await cli(dir, ["pull"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/models needs exactly one model id/);
    const what = await cli(dir, ["frobnicate"]);
    expect(what.code).toBe(2);
    expect(what.stderr).toMatch(/Unknown models subcommand "frobnicate"/);
  });
});
