import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionEngine } from "../../../daemon/engine/diffusion-engine";
import type { GenerationJob } from "../../../daemon/engine/engine";
import type { InferenceSession } from "onnxruntime-node";
import { encodePrompts, REMEMBERED_PROMPTS, type TextEncoderSource } from "../../../daemon/engine/pipeline/text";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer/clip-tokenizer";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { fixtureModelDir } from "../../helpers/model-fixtures";

let tokenizer: ClipTokenizer;
const opened: ModelSessions[] = [];

/** The tiny model's text encoder behind a source that counts loads and session.run calls. */
async function countingEncoder(): Promise<{ encoder: TextEncoderSource; counter: { runs: number; loads: number } }> {
  const folder = await loadModelFolder(fixtureModelDir("tiny-sd"));
  const sessions = new ModelSessions(folder, { devices: ["cpu"], threads: 1 });
  opened.push(sessions);
  const part = await sessions.textEncoder();
  const session = part.session as InferenceSession;
  const run = session.run.bind(session);
  const counter = { runs: 0, loads: 0 };
  session.run = ((...args: Parameters<InferenceSession["run"]>) => (counter.runs++, run(...args))) as InferenceSession["run"];
  return { encoder: { textEncoder: async () => (counter.loads++, part) }, counter };
}

beforeAll(async () => {
  tokenizer = await ClipTokenizer.fromFolder(fixtureModelDir("tiny-sd") + "/tokenizer");
});
afterAll(async () => {
  for (const s of opened) await s.release();
});

describe("prompt embeddings of recent prompts are reused", () => {
  it("runs (and loads) the text encoder once for a prompt run again, with the same embeddings", async () => {
    const { encoder, counter } = await countingEncoder();
    const first = await encodePrompts(tokenizer, encoder, ["a red fox in the snow"], [""], false);
    expect(counter.runs).toBe(2); // positive and negative
    expect(counter.loads).toBe(2);
    const again = await encodePrompts(tokenizer, encoder, ["a red fox in the snow"], [""], false);
    expect(counter.runs).toBe(2);
    expect(counter.loads).toBe(2);
    expect(Array.from(again.hidden)).toEqual(Array.from(first.hidden));
    // A new prompt with the same negative: only the new prompt is encoded.
    const other = await encodePrompts(tokenizer, encoder, ["a blue heron"], [""], false);
    expect(counter.runs).toBe(3);
    expect(Array.from(other.hidden)).not.toEqual(Array.from(first.hidden));
  });

  it("hands out copies: changing one result does not change the next", async () => {
    const { encoder } = await countingEncoder();
    const first = await encodePrompts(tokenizer, encoder, ["an old oak"], null, false);
    const kept = Array.from(first.hidden);
    first.hidden.fill(42);
    const again = await encodePrompts(tokenizer, encoder, ["an old oak"], null, false);
    expect(Array.from(again.hidden)).toEqual(kept);
  });

  it("keeps only the most recent prompts, and nothing across sessions (another or a reloaded model)", async () => {
    const { encoder, counter } = await countingEncoder();
    const prompts = Array.from({ length: REMEMBERED_PROMPTS + 1 }, (_, i) => `lighthouse number ${i}`);
    for (const p of prompts) await encodePrompts(tokenizer, encoder, [p], null, false);
    expect(counter.runs).toBe(prompts.length);
    await encodePrompts(tokenizer, encoder, [prompts.at(-1)!], null, false);
    expect(counter.runs).toBe(prompts.length); // still remembered
    await encodePrompts(tokenizer, encoder, [prompts[0]!], null, false);
    expect(counter.runs).toBe(prompts.length + 1); // the oldest was let go
    const fresh = await countingEncoder();
    await encodePrompts(tokenizer, fresh.encoder, [prompts.at(-1)!], null, false);
    expect(fresh.counter.runs).toBe(1);
  });
});

describe("the text encoder in a job on the CPU", () => {
  it("is let go once the prompt is encoded, and loaded again only for a new prompt", async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), "underpaint-text-"));
    await mkdir(path.join(work, "models"));
    await symlink(fixtureModelDir("tiny-sd"), path.join(work, "models", "tiny-sd"));
    const lines: string[] = [];
    const engine = new DiffusionEngine({ modelsDir: path.join(work, "models"), devices: ["cpu"], log: (_level, message) => lines.push(message) });
    const loads = () => lines.filter((l) => l.includes("textEncoder loaded")).length;
    const job: GenerationJob = { mode: "txt2img", model: "tiny-sd", prompt: "a lighthouse at night", negativePrompt: "", seed: 3, steps: 2, guidance: 7.5, scheduler: "euler", output: { width: 64, height: 64 }, size: { width: 64, height: 64 }, variations: 1, truncatePrompt: false, previews: false };
    const context = { signal: new AbortController().signal, onProgress: () => {} };
    try {
      const [first] = await engine.run(job, context);
      expect(loads()).toBe(1);
      const [again] = await engine.run({ ...job }, context);
      expect(loads()).toBe(1);
      expect(Buffer.from(again!.image.data).equals(Buffer.from(first!.image.data))).toBe(true);
      const [other] = await engine.run({ ...job, prompt: "a lighthouse at dawn" }, context);
      expect(loads()).toBe(2);
      expect(Buffer.from(other!.image.data).equals(Buffer.from(first!.image.data))).toBe(false);
    } finally {
      await engine.dispose();
      await rm(work, { recursive: true, force: true });
    }
  });
});
