import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { FIXTURES_DIR, ROOT, TSX } from "../helpers/paths";

const run = promisify(execFile);

async function parity(folder: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(TSX, ["scripts/parity.ts", folder], { cwd: ROOT, maxBuffer: 16 << 20 });
    return { code: 0, out: stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string };
    return { code: e.code, out: e.stdout };
  }
}

const temps: string[] = [];
afterAll(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

describe("npm run parity", () => {
  it("passes every reference case (txt2img, img2img, the three inpainting pipelines), stage by stage", async () => {
    const { code, out } = await parity(path.join(FIXTURES_DIR, "reference"));
    expect(code).toBe(0);
    const index = JSON.parse(await readFile(path.join(FIXTURES_DIR, "reference", "index.json"), "utf8")) as { cases: { case: string; kind: string }[] };
    for (const c of index.cases) {
      const block = out.split("\n\n")[0]!.split(/\n(?=\S)/).filter((b) => b.startsWith(`${c.case} [`));
      expect(block.length, c.case).toBeGreaterThan(0);
      const text = block.join("\n");
      expect(text, c.case).not.toMatch(/FAIL|SKIP/);
      expect(text).toMatch(/PASS {2}final image/);
      expect(text).toMatch(/PASS {2}latents step 1\//);
      if (c.kind !== "txt2img") expect(text).toMatch(/PASS {2}vae encoder/);
    }
    // cases marked identical_to_generator_only_run are also run from the seed alone
    expect(out).toMatch(/t2i_euler_a_cfg7\.5 \[txt2img, seed only\]/);
    expect(out).toMatch(/inpaint9_pndm_cfg7\.5 \[inpaint, seed only\]/);
    expect(out).toMatch(/parity: \d+ passed, 0 failed, 0 skipped/);
  });

  it("fails, naming the stage, when the reference disagrees, and checks a tokenizer-golden.json", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "parity-"));
    temps.push(dir);
    const source = path.join(FIXTURES_DIR, "reference", "cases", "t2i_euler_cfg7.5");
    await cp(source, path.join(dir, "cases", "one"), { recursive: true });
    await chmod(path.join(dir, "cases", "one", "latents_after_step.bin"), 0o644);
    await writeFile(path.join(dir, "index.json"), JSON.stringify({ cases: [{ case: "t2i_euler_cfg7.5", kind: "txt2img", dir: "cases/one" }] }));
    // Nudge one latent of step 3 by 1e-3 (well over the 1e-5 relative tolerance).
    const file = path.join(dir, "cases", "one", "latents_after_step.bin");
    const bytes = await readFile(file);
    const latents = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    latents[2 * (latents.length / 6) + 5]! += 1e-2;
    await writeFile(file, bytes);
    await writeFile(
      path.join(dir, "tokenizer-golden.json"),
      JSON.stringify({ cases: [{ id: "cat", text: "a cat", input_ids: [49406, 320, 2368, 49407, ...Array(73).fill(49407)] }] }),
    );
    const { code, out } = await parity(dir);
    expect(code).toBe(1);
    expect(out).toMatch(/FAIL {2}latents step 3\/6/);
    expect(out).toMatch(/PASS {2}latents step 2\/6/);
    expect(out).toMatch(/PASS {2}tokenizer cat/);
  });
});
