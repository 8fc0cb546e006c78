import { execFile, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURES_DIR, ROOT, TSX } from "../helpers/paths";
import { RawClient } from "../helpers/raw-client";

const run = promisify(execFile);
let work: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-cli-"));
  env = {
    ...process.env,
    UNDERPAINT_CONFIG_DIR: path.join(work, "config"),
    UNDERPAINT_MODELS: path.join(work, "models"),
    // The optimized-model cache is on by default: keep it out of the user's cache folder.
    UNDERPAINT_CACHE_DIR: path.join(work, "cache"),
  };
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function cli(...args: string[]) {
  return run(TSX, ["daemon/cli.ts", ...args], { cwd: ROOT, env, maxBuffer: 16 << 20 });
}

describe("underpaint token", () => {
  it("creates the pairing token once, readable by the user alone", async () => {
    const first = (await cli("token")).stdout.trim();
    expect(first).toMatch(/^[A-Za-z0-9_-]{32,}$/);
    expect((await cli("token")).stdout.trim()).toBe(first);
    const mode = (await stat(path.join(work, "config", "pairing-token"))).mode & 0o777;
    expect(mode).toBe(0o600);
  });
});

describe("underpaint generate", () => {
  const model = path.join(FIXTURES_DIR, "tiny-sd");

  it("writes a PNG of the model's native size by default, the same bytes for the same seed", async () => {
    const a = path.join(work, "cat.png");
    const b = path.join(work, "cat-again.png");
    const { stdout } = await cli("generate", "--model", model, "--prompt", "a cat", "--steps", "4", "--seed", "7", "--out", a);
    expect(stdout).toMatch(/wrote .*cat\.png \(seed 7\)/);
    await cli("generate", "--model", model, "--prompt", "a cat", "--steps", "4", "--seed", "7", "--out", b);
    const meta = await sharp(a).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([512, 512, "png"]);
    expect((await readFile(a)).equals(await readFile(b))).toBe(true);
  });

  it("--unet-int8 runs the UNet from an int8 copy kept in the cache folder", { timeout: 60_000 }, async () => {
    const fp32 = path.join(work, "fp32.png");
    const int8 = path.join(work, "int8.png");
    await cli("generate", "--model", model, "--prompt", "a cat", "--steps", "3", "--seed", "5", "--width", "64", "--height", "64", "--out", fp32);
    const { stdout } = await cli("generate", "--model", model, "--prompt", "a cat", "--steps", "3", "--seed", "5", "--width", "64", "--height", "64", "--unet-int8", "--out", int8);
    expect(stdout).toMatch(/wrote .*int8\.png \(seed 5\)/);
    const [entry] = await readdir(path.join(work, "cache", "int8"));
    expect(await stat(path.join(work, "cache", "int8", entry!, "entry.json")).then(() => true)).toBe(true);
    const pixels = async (f: string) => sharp(f).raw().toBuffer();
    expect((await pixels(int8)).equals(await pixels(fp32))).toBe(false);
  });

  it("writes one file per variation, each re-makeable alone from its seed", async () => {
    const out = path.join(work, "v.png");
    const { stdout } = await cli(
      "generate", "--model", model, "--prompt", "a red cube", "--steps", "3", "--seed", "100", "--width", "96", "--height", "64",
      "--variations", "2", "--scheduler", "euler_a", "--out", out,
    );
    expect(stdout).toMatch(/v-0\.png \(seed 100\)/);
    expect(stdout).toMatch(/v-1\.png \(seed 101\)/);
    const alone = path.join(work, "alone.png");
    await cli("generate", "--model", model, "--prompt", "a red cube", "--steps", "3", "--seed", "101", "--width", "96", "--height", "64", "--scheduler", "euler_a", "--out", alone);
    const pixels = async (f: string) => sharp(f).raw().toBuffer();
    expect((await pixels(alone)).equals(await pixels(path.join(work, "v-1.png")))).toBe(true);
    expect((await pixels(alone)).equals(await pixels(path.join(work, "v-0.png")))).toBe(false);
    expect((await sharp(alone).metadata()).width).toBe(96);
  });

  it("runs img2img from an init image and a strength", async () => {
    const out = path.join(work, "i2i.png");
    await cli("generate", "--model", model, "--prompt", "a cup", "--steps", "4", "--seed", "3", "--width", "64", "--height", "64",
      "--init", path.join(FIXTURES_DIR, "images", "coffee.png"), "--strength", "0.5", "--out", out);
    expect((await sharp(out).metadata()).width).toBe(64);
  });

  it("inpaints where the mask is white and writes the picture at the input's exact size, untouched outside the blend", async () => {
    const photo = path.join(FIXTURES_DIR, "images", "chelsea.png");
    const maskFile = path.join(work, "mask.png");
    // white rectangle = repaint
    const { width, height } = await sharp(photo).metadata();
    const mask = Buffer.alloc(width! * height!);
    for (let y = 100; y < 180; y++) mask.fill(255, y * width! + 150, y * width! + 260);
    await sharp(mask, { raw: { width: width!, height: height!, channels: 1 } }).png().toFile(maskFile);
    const out = path.join(work, "inpainted.png");
    await cli("generate", "--model", model, "--prompt", "a hat", "--steps", "2", "--seed", "4", "--width", "128", "--height", "128",
      "--init", photo, "--mask", maskFile, "--out", out);
    const before = await sharp(photo).removeAlpha().raw().toBuffer();
    const after = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    expect([after.info.width, after.info.height]).toEqual([451, 300]);
    let changedFarAway = 0;
    let changedInside = 0;
    for (let y = 0; y < height!; y++) {
      for (let x = 0; x < width!; x++) {
        const i = (y * width! + x) * 3;
        const changed = before[i] !== after.data[i] || before[i + 1] !== after.data[i + 1] || before[i + 2] !== after.data[i + 2];
        const inside = y >= 100 && y < 180 && x >= 150 && x < 260;
        if (!inside && changed) changedFarAway++;
        if (inside && changed) changedInside++;
      }
    }
    expect(changedFarAway).toBe(0); // the blend mask stays inside the selection
    expect(changedInside).toBeGreaterThan(80 * 110 * 0.5);

    // With --mask, --width x --height caps the pixels the model works on: 100x64 is no picture size, but a budget.
    const small = path.join(work, "inpainted-small.png");
    await cli("generate", "--model", model, "--prompt", "a hat", "--steps", "1", "--seed", "4", "--width", "100", "--height", "64",
      "--init", photo, "--mask", maskFile, "--out", small);
    const written = await sharp(small).metadata();
    expect([written.width, written.height]).toEqual([451, 300]);
  });

  it("extends the canvas and writes the enlarged picture with the old pixels in place", async () => {
    const photo = path.join(FIXTURES_DIR, "images", "coffee.png");
    const out = path.join(work, "expanded.png");
    await cli("generate", "--model", model, "--prompt", "a table", "--steps", "2", "--seed", "4", "--width", "128", "--height", "128",
      "--init", photo, "--expand", "0,0,96,32", "--out", out);
    const before = await sharp(photo).removeAlpha().raw().toBuffer();
    const after = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    expect([after.info.width, after.info.height]).toEqual([696, 432]);
    // far from the overlap band (64 px into the old picture on the extended sides) nothing moved
    for (const [x, y] of [[0, 0], [300, 200], [599 - 65, 0], [0, 399 - 65]] as const) {
      const i = (y * 600 + x) * 3;
      const j = (y * 696 + x) * 3;
      expect([...after.data.subarray(j, j + 3)]).toEqual([...before.subarray(i, i + 3)]);
    }
    // the new area on the right and at the bottom is painted, not left empty (the layer lands in the grown
    // canvas); the tiny model paints saturated noise, black here and there
    let added = 0;
    let blank = 0;
    for (let y = 0; y < 432; y++) {
      for (let x = 0; x < 696; x++) {
        if (x < 600 && y < 400) continue;
        added++;
        const j = (y * 696 + x) * 3;
        if (after.data[j] === 0 && after.data[j + 1] === 0 && after.data[j + 2] === 0) blank++;
      }
    }
    expect(blank).toBeLessThan(added * 0.1);
  });

  it("explains bad input with a sentence and a non-zero exit", async () => {
    const failing = async (...args: string[]) => {
      try {
        await cli("generate", ...args);
        throw new Error("expected a failure");
      } catch (error) {
        return error as { code: number; stderr: string };
      }
    };
    const size = await failing("--model", model, "--prompt", "x", "--width", "100", "--height", "64", "--out", path.join(work, "x.png"));
    expect(size.code).toBe(1);
    expect(size.stderr).toMatch(/multiple of 8/);
    const missing = await failing("--model", "no-such-model", "--prompt", "x", "--out", path.join(work, "x.png"));
    expect(missing.stderr).toMatch(/There is no model "no-such-model"/);
    const scheduler = await failing("--model", model, "--prompt", "x", "--scheduler", "magic", "--out", path.join(work, "x.png"));
    expect(scheduler.code).toBe(2);
    expect(scheduler.stderr).toMatch(/--scheduler/);
  });
});

describe("underpaint serve", () => {
  it("prints where it listens, runs a job with a real model, and shuts down cleanly on SIGTERM", async () => {
    const models = path.join(work, "models");
    await rm(models, { recursive: true, force: true });
    await import("node:fs/promises").then((fs) => fs.mkdir(models, { recursive: true }));
    await symlink(path.join(FIXTURES_DIR, "tiny-sd"), path.join(models, "tiny-sd"));
    const token = (await cli("token")).stdout.trim();
    const daemon = spawn(TSX, ["daemon/cli.ts", "serve", "--port", "0"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        daemon.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /^listening on (ws:\/\/127\.0\.0\.1:\d+)$/m.exec(out);
          if (m) resolve(m[1]!);
        });
        daemon.once("exit", (code) => reject(new Error(`daemon exited with ${code}`)));
      });
      const client = await RawClient.paired(url, token);
      const welcome = await client.next("welcome");
      expect(welcome.capabilities.models.map((m) => m.id)).toEqual(["tiny-sd"]);
      expect(welcome.capabilities.models[0]!.modes).toEqual(["txt2img", "img2img", "inpaint", "outpaint"]);
      client.submit({ jobId: 1, mode: "txt2img", model: "tiny-sd", prompt: "a cat", seed: 1, steps: 3, guidance: 7.5, scheduler: "euler", canvas: { width: 64, height: 64 }, size: { width: 64, height: 64 } });
      expect((await client.next("done", undefined, 30_000)).status).toBe("completed");
      expect(client.ofType("result").map((r) => [r.region, r.frame.width, r.frame.height])).toEqual([[{ x: 0, y: 0, width: 64, height: 64 }, 64, 64]]);
      // The daemon keeps optimized copies of what the job loaded (text encoder, UNet, VAE decoder).
      const optimized = (await readdir(path.join(work, "cache", "optimized"))).filter((n) => !n.startsWith(".tmp-"));
      expect(optimized.length).toBeGreaterThanOrEqual(3);
      client.close();
      const exited = new Promise<number | null>((resolve) => daemon.once("exit", resolve));
      daemon.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      daemon.kill("SIGKILL");
    }
  });
});
