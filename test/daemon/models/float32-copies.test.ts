/**
 * float16 models on the CPU: a float16 replica of tiny-sd (scripts/replicas.ts toFloat16) runs from
 * a float32 copy made once in the cache, with its attention fused, and paints what the float32
 * model paints up to float16's rounding of the weights.
 */
import { readdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate, type LoadedModel } from "../../../daemon/engine/pipeline/generate";
import { TorchGenerator } from "../../../daemon/engine/rng";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer";
import { Float32Copies } from "../../../daemon/models/float32-copies";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { toFloat16 } from "../../../scripts/replicas";
import { copyFixtureModel, fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

let tmp: TempDir;
let fp16Dir: string;

beforeAll(async () => {
  tmp = await makeTempDir("underpaint-fp16-");
  fp16Dir = await copyFixtureModel("tiny-sd", tmp.dir, "tiny-sd-fp16");
  for (const part of ["text_encoder", "unet", "vae_encoder", "vae_decoder"]) await toFloat16(path.join(fp16Dir, part));
}, 60_000);
afterAll(async () => {
  await tmp.cleanup();
});

async function picture(dir: string, copies: Float32Copies | null, log: string[] = []): Promise<{ rgb: Uint8Array; sessions: ModelSessions }> {
  const folder = await loadModelFolder(dir, { devices: ["cpu"] });
  const sessions = new ModelSessions(folder, { devices: ["cpu"], float32Copies: copies, threads: 1, log: (level, line) => log.push(`${level}: ${line}`) });
  const model: LoadedModel = { folder, sessions, tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) };
  const [image] = await generate(model, { prompts: ["a red cube"], negativePrompts: [""], width: 64, height: 64, steps: 4, guidance: 7.5, scheduler: "euler", truncatePrompt: true }, new TorchGenerator(3));
  return { rgb: image!.rgb, sessions };
}

describe("float16 models on the CPU", () => {
  it("the replica is a float16 export", async () => {
    const folder = await loadModelFolder(fp16Dir, { devices: ["cpu"] });
    expect(folder.float16).toBe(true);
    expect(folder.io.textEncoder.hiddenStateType).toBe("float16");
    expect(folder.io.vaeDecoder.latentType).toBe("float16");
  });

  it("runs from a float32 copy made once, fused, and paints what the float32 model paints", { timeout: 120_000 }, async () => {
    const copies = new Float32Copies(path.join(tmp.dir, "cache", "float32"));
    const log: string[] = [];
    const half = await picture(fp16Dir, copies, log);
    const unet = await half.sessions.unet();
    expect(unet.io.sampleType).toBe("float32");
    expect(log.some((l) => /: \d+ attention blocks fused/.test(l))).toBe(true);
    await half.sessions.release();
    const made = await readdir(path.join(tmp.dir, "cache", "float32"));
    expect(made).toHaveLength(3); // text encoder, UNet, VAE decoder: txt2img needs no encoder

    const full = await picture(fixtureModelDir("tiny-sd"), null);
    await full.sessions.release();
    let worst = 0;
    let sum = 0;
    for (let i = 0; i < full.rgb.length; i++) {
      const d = Math.abs(full.rgb[i]! - half.rgb[i]!);
      worst = Math.max(worst, d);
      sum += d;
    }
    // float16 keeps ~3 decimal digits of each weight: the picture moves by a few levels at most.
    expect(sum / full.rgb.length).toBeLessThan(2);
    expect(worst).toBeLessThan(24);

    // Again: the copies are read, not made again.
    const again = await picture(fp16Dir, copies);
    await again.sessions.release();
    expect(await readdir(path.join(tmp.dir, "cache", "float32"))).toEqual(made);
    expect(Buffer.from(again.rgb).equals(Buffer.from(half.rgb))).toBe(true);
  });
});
