/** `underpaint generate --control-image` and `models list` with a ControlNet, run as the artist runs them, on the replicas. */
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicas, writeReplica } from "../../../scripts/replicas";
import { ROOT, TSX } from "../../helpers/paths";

const run = promisify(execFile);
let work: string;
let env: NodeJS.ProcessEnv;
let model: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-cli-control-"));
  env = { ...process.env, UNDERPAINT_CONFIG_DIR: path.join(work, "config"), UNDERPAINT_MODELS: path.join(work, "models"), UNDERPAINT_CACHE_DIR: path.join(work, "cache") };
  const all = await replicas();
  model = path.join(work, "sd-1.5-control");
  await writeReplica(all.find((r) => r.repo === "TensorStack/stable-diffusion-v1-5-onnx")!, model);
  const nets = path.join(work, "ControlNet-onnx");
  await writeReplica(all.find((r) => r.repo === "TensorStack/ControlNet-onnx")!, nets);
  // A ControlNet copied in by hand: its model.onnx in a folder named after its kind.
  await mkdir(path.join(work, "models", "my-canny"), { recursive: true });
  await cp(path.join(nets, "SD", "Canny", "model.onnx"), path.join(work, "models", "my-canny", "model.onnx"));
  await sharp({ create: { width: 64, height: 64, channels: 3, background: "white" } })
    .composite([{ input: { create: { width: 32, height: 32, channels: 3, background: "black" } }, left: 16, top: 16 }])
    .png()
    .toFile(path.join(work, "square.png"));
}, 120_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const cli = (...args: string[]) => run(TSX, ["daemon/cli.ts", ...args], { cwd: ROOT, env, maxBuffer: 16 << 20 });
const generate = (out: string, ...extra: string[]) =>
  cli("generate", "--model", model, "--prompt", "a house", "--steps", "3", "--seed", "9", "--width", "64", "--height", "64", "--scheduler", "euler", "--out", path.join(work, out), ...extra);

describe("underpaint generate with a control image", { timeout: 120_000 }, () => {
  it("follows it through the installed ControlNet: the picture differs from strength 0's", async () => {
    const control = ["--control-image", path.join(work, "square.png"), "--control-kind", "canny"];
    expect((await generate("steered.png", ...control, "--control-net", "my-canny")).stdout).toMatch(/wrote .*steered\.png \(seed 9\)/);
    await generate("unsteered.png", ...control, "--control-strength", "0");
    const [a, b] = await Promise.all(["steered.png", "unsteered.png"].map((f) => sharp(path.join(work, f)).raw().toBuffer()));
    expect(a!.length).toBe(64 * 64 * 3);
    expect(a!.equals(b!)).toBe(false);
    expect((await readFile(path.join(work, "steered.png"))).length).toBeGreaterThan(0);
  });

  it("steers an inpaint with --mask: the picture keeps the init image outside the mask and differs inside from strength 0's", async () => {
    const init = path.join(work, "bands.png");
    const mask = path.join(work, "mask.png");
    await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 90, g: 140, b: 200 } } })
      .composite([{ input: { create: { width: 64, height: 24, channels: 3, background: { r: 60, g: 150, b: 40 } } }, left: 0, top: 40 }])
      .png()
      .toFile(init);
    await sharp({ create: { width: 64, height: 64, channels: 3, background: "black" } })
      .composite([{ input: { create: { width: 32, height: 32, channels: 3, background: "white" } }, left: 16, top: 16 }])
      .png()
      .toFile(mask);
    const edit = ["--init", init, "--mask", mask, "--context", "image", "--control-image", path.join(work, "square.png"), "--control-kind", "canny", "--control-net", "my-canny"];
    await generate("inpaint-steered.png", ...edit);
    await generate("inpaint-unsteered.png", ...edit, "--control-strength", "0");
    const [original, steered, plain] = await Promise.all([init, path.join(work, "inpaint-steered.png"), path.join(work, "inpaint-unsteered.png")].map((f) => sharp(f).removeAlpha().raw().toBuffer()));
    const outside = (p: number) => p % 64 < 16 || p % 64 >= 48 || p < 16 * 64 || p >= 48 * 64;
    for (const picture of [steered!, plain!]) {
      for (let p = 0; p < 64 * 64; p++) if (outside(p)) expect([...picture.subarray(p * 3, p * 3 + 3)], `pixel ${p % 64},${Math.floor(p / 64)}`).toEqual([...original!.subarray(p * 3, p * 3 + 3)]);
    }
    expect(steered!.equals(plain!)).toBe(false);
  });

  it("explains a wrong kind, a missing kind and a ControlNet not installed", async () => {
    const image = ["--control-image", path.join(work, "square.png")];
    await expect(generate("x.png", ...image, "--control-kind", "edges")).rejects.toMatchObject({ stderr: expect.stringMatching(/--control-kind: .*"edges"/) });
    await expect(generate("x.png", ...image)).rejects.toMatchObject({ stderr: expect.stringMatching(/--control-image needs --control-kind canny\|scribble\|lineart\|depth\|pose/) });
    await expect(generate("x.png", ...image, "--control-kind", "depth")).rejects.toMatchObject({ stderr: expect.stringMatching(/No depth ControlNet is installed: pull one \(npx underpaint models pull controlnet-depth\)\./) });
  });

  it("models list shows the installed ControlNet and its kind", async () => {
    const { stdout } = await cli("models", "list");
    expect(stdout).toMatch(/my-canny +ControlNet: canny +[\d.]+ [kM]B +--control-kind canny on control-capable models/);
  });
});
