/**
 * float16 weights behind float32 inputs and outputs (onnxconverter-common's keep_io_types, common
 * in hand-converted repos): the io says float32, yet on the CPU the model is a float16 one and
 * must run from its float32 copy, like an fp16 export.
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
let dir: string;

beforeAll(async () => {
  tmp = await makeTempDir("underpaint-fp16-weights-");
  dir = await copyFixtureModel("tiny-sd", tmp.dir, "tiny-sd-fp16-weights");
  for (const part of ["text_encoder", "unet", "vae_encoder", "vae_decoder"]) await toFloat16(path.join(dir, part), { keepIoTypes: true });
}, 60_000);
afterAll(async () => {
  await tmp.cleanup();
});

async function picture(folderDir: string, copies: Float32Copies | null): Promise<Uint8Array> {
  const folder = await loadModelFolder(folderDir, { devices: ["cpu"] });
  const sessions = new ModelSessions(folder, { devices: ["cpu"], float32Copies: copies, threads: 1 });
  try {
    const model: LoadedModel = { folder, sessions, tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) };
    const [image] = await generate(model, { prompts: ["a red cube"], negativePrompts: [""], width: 64, height: 64, steps: 3, guidance: 7.5, scheduler: "euler", truncatePrompt: true }, new TorchGenerator(3));
    return image!.rgb;
  } finally {
    await sessions.release();
  }
}

describe("float16 weights behind float32 inputs and outputs", () => {
  it("are read as float16 parts although every input and output is float32", async () => {
    const folder = await loadModelFolder(dir, { devices: ["cpu"] });
    expect(folder.io.unet.sampleType).toBe("float32");
    expect(folder.io.textEncoder.hiddenStateType).toBe("float32");
    expect(folder.float16).toBe(false);
    expect(folder.weightTypes).toEqual({ textEncoder: "float16", textEncoder2: null, unet: "float16", vaeEncoder: "float16", vaeDecoder: "float16" });
    const original = await loadModelFolder(fixtureModelDir("tiny-sd"), { devices: ["cpu"] });
    expect(original.weightTypes.unet).toBe("float32");
  });

  it("run from float32 copies and paint what the float32 model paints", { timeout: 120_000 }, async () => {
    const cache = path.join(tmp.dir, "cache", "float32");
    const half = await picture(dir, new Float32Copies(cache));
    // txt2img: text encoder, UNet and VAE decoder, each copied once.
    expect(await readdir(cache)).toHaveLength(3);
    const full = await picture(fixtureModelDir("tiny-sd"), null);
    let sum = 0;
    for (let i = 0; i < full.length; i++) sum += Math.abs(full[i]! - half[i]!);
    expect(sum / full.length).toBeLessThan(2);
  });
});
