/**
 * SDXL conditioning, tested against diffusers' published formulas (pipeline_stable_diffusion_xl.py:
 * encode_prompt, _get_add_time_ids); diffusers itself cannot run here, so there are no recorded
 * reference outputs. The engine runs on the tiny SDXL replica (scripts/replicas.ts) through
 * loadModelFolder and ModelSessions, as a pulled model is run.
 */
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generate, type LoadedModel } from "../../../daemon/engine/pipeline/generate";
import { concatLastAxis, defaultSizeConditions, encodeSdxlPrompts, sdxlTimeIds } from "../../../daemon/engine/pipeline/sdxl-conditioning";
import { TorchGenerator } from "../../../daemon/engine/rng";
import { ClipTokenizer } from "../../../daemon/engine/tokenizer";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { replicas, writeReplica, type SdxlReplica } from "../../../scripts/replicas";
import { makeTempDir, type TempDir } from "../../helpers/model-fixtures";

let temp: TempDir;
const loaded: LoadedModel[] = [];

async function replica(repo: string, inChannels: 4 | 9 = 4): Promise<LoadedModel> {
  const base = (await replicas()).find((r) => r.repo === repo) as SdxlReplica;
  const dir = path.join(temp.dir, `${repo.replace("/", "--")}-${inChannels}`);
  await writeReplica({ ...base, inChannels }, dir);
  const folder = await loadModelFolder(dir, { devices: ["cpu"] });
  const model: LoadedModel = {
    folder,
    sessions: new ModelSessions(folder, { devices: ["cpu"], threads: 1 }),
    tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir),
    tokenizer2: await ClipTokenizer.fromFolder(folder.paths.tokenizer2!.dir),
  };
  loaded.push(model);
  return model;
}

beforeAll(async () => {
  temp = await makeTempDir("sdxl-engine-");
});
afterAll(async () => {
  for (const m of loaded) await m.sessions.release();
  await temp.cleanup();
});

describe("SDXL conditioning formulas", () => {
  it("time_ids are [orig_h, orig_w, crop_top, crop_left, target_h, target_w] on every row", () => {
    const ids = sdxlTimeIds({ originalHeight: 768, originalWidth: 1024, cropTop: 8, cropLeft: 16, targetHeight: 512, targetWidth: 640 }, 2);
    expect(Array.from(ids)).toEqual([768, 1024, 8, 16, 512, 640, 768, 1024, 8, 16, 512, 640]);
    // diffusers' defaults: original = target = (height, width), no crop.
    expect(Array.from(sdxlTimeIds(defaultSizeConditions(1024, 768), 1))).toEqual([768, 1024, 0, 0, 768, 1024]);
  });

  it("concatenates per token on the last axis", () => {
    const a = Float32Array.from([1, 2, 3, 4]); // 2 tokens x 2
    const b = Float32Array.from([5, 6, 7, 8, 9, 10]); // 2 tokens x 3
    expect(Array.from(concatLastAxis(a, 2, b, 3))).toEqual([1, 2, 5, 6, 7, 3, 4, 8, 9, 10]);
  });

  it("encoder_hidden_states = hidden_states[-2] of both encoders side by side, text_embeds = encoder 2's projected pool; an empty negative prompt gives zeros", async () => {
    const model = await replica("stabilityai/sdxl-turbo");
    expect(model.folder.sdxl).toEqual({ forceZerosForEmptyPrompt: true });
    expect(model.folder.vaeScalingFactor).toBe(0.13025);
    expect(model.folder.nativeResolution).toBe(512);
    const prompt = "a red fox in snow";
    const enc = await encodeSdxlPrompts({ first: model.tokenizer, second: model.tokenizer2! }, model.sessions, [prompt], [""], { truncate: true, forceZerosForEmptyPrompt: true });
    expect(enc.dim).toBe(64);
    expect(enc.sequence).toBe(77);
    // The oracle: each ONNX encoder run directly on the tokenizers' ids (tokenizer_2 pads with "!" = 0).
    const ids1 = model.tokenizer.tokenizeTruncated(prompt).ids;
    const ids2 = model.tokenizer2!.tokenizeTruncated(prompt).ids;
    expect(ids2[ids2.length - 1]).toBe(0);
    expect(ids1[ids1.length - 1]).toBe(49407);
    const run = async (part: "text_encoder" | "text_encoder_2", ids: Int32Array) => {
      const s = await ort.InferenceSession.create(path.join(model.folder.dir, part, "model.onnx"));
      const out = await s.run({ input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, 77]) });
      await s.release();
      return out;
    };
    const o1 = await run("text_encoder", ids1);
    const o2 = await run("text_encoder_2", ids2);
    // 5 layers: hidden_states.0..5, penultimate = hidden_states.4 (not last_hidden_state, which is final-layer-normed).
    const h1 = o1["hidden_states.4"]!.data as Float32Array;
    const h2 = o2["hidden_states.4"]!.data as Float32Array;
    const cond = enc.hidden.subarray(77 * 64);
    for (const t of [0, 5, 76]) {
      expect(Array.from(cond.subarray(t * 64, t * 64 + 32))).toEqual(Array.from(h1.subarray(t * 32, (t + 1) * 32)));
      expect(Array.from(cond.subarray(t * 64 + 32, (t + 1) * 64))).toEqual(Array.from(h2.subarray(t * 32, (t + 1) * 32)));
    }
    expect(Array.from(enc.pooled.subarray(32))).toEqual(Array.from(o2.text_embeds!.data as Float32Array));
    // force_zeros_for_empty_prompt: the uncond row is zeros, hidden and pooled.
    expect(enc.hidden.subarray(0, 77 * 64).every((v) => v === 0)).toBe(true);
    expect(enc.pooled.subarray(0, 32).every((v) => v === 0)).toBe(true);
    // A negative prompt that is given is encoded.
    const withNeg = await encodeSdxlPrompts({ first: model.tokenizer, second: model.tokenizer2! }, model.sessions, [prompt], ["blurry"], { truncate: true, forceZerosForEmptyPrompt: true });
    expect(withNeg.pooled.subarray(0, 32).some((v) => v !== 0)).toBe(true);
  });
});

describe("SDXL generation on the tiny replica", () => {
  const base = { negativePrompts: [""], width: 64, height: 64, truncatePrompt: true } as const;

  it("txt2img (turbo: 1 step, euler_a, no guidance) and with guidance, deterministic per seed; time_ids reach the UNet", async () => {
    const model = await replica("stabilityai/sdxl-turbo");
    const one = await generate(model, { ...base, prompts: ["a fox"], steps: 1, guidance: 0, scheduler: "euler_a" }, new TorchGenerator(3));
    const again = await generate(model, { ...base, prompts: ["a fox"], steps: 1, guidance: 0, scheduler: "euler_a" }, new TorchGenerator(3));
    expect(one[0]!.rgb.length).toBe(64 * 64 * 3);
    expect(Buffer.from(one[0]!.rgb).equals(Buffer.from(again[0]!.rgb))).toBe(true);
    let rows = 0;
    const guided = await generate(model, { ...base, prompts: ["a fox"], steps: 2, guidance: 5, scheduler: "euler" }, new TorchGenerator(3), {
      trace: { prompt: (_p, n) => (rows = n ? 2 : 1) },
    });
    expect(rows).toBe(2);
    expect(guided).toHaveLength(1);
    // Another size is another time_ids row: 64x64 and 64x128 differ in more than the shape (checked via the UNet's own input).
    const unet = await model.sessions.unet();
    expect(unet.io.added).toMatchObject({ textEmbeds: "text_embeds", timeIds: "time_ids", timeIdsWidth: 6 });
  });

  it("img2img from an init image", async () => {
    const model = await replica("stabilityai/stable-diffusion-xl-base-1.0");
    expect(model.folder.nativeResolution).toBe(1024);
    const rgb = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 7) % 256);
    const out = await generate(model, { ...base, prompts: ["a fox"], steps: 4, guidance: 0, scheduler: "euler", init: { rgb, strength: 0.5 } }, new TorchGenerator(5));
    expect(out[0]!.rgb.length).toBe(64 * 64 * 3);
  });

  it("inpaints with a 9-channel SDXL UNet ([latents, mask, masked-image latents])", async () => {
    const model = await replica("stabilityai/stable-diffusion-xl-base-1.0", 9);
    expect(model.folder.kind).toBe("inpainting");
    const rgb = new Uint8Array(64 * 64 * 3).fill(128);
    const mask = new Uint8Array(64 * 64).map((_, i) => (i % 64 < 32 ? 255 : 0));
    const out = await generate(model, { ...base, prompts: ["a fox"], steps: 2, guidance: 0, scheduler: "euler", inpaint: { rgb, mask, strength: 1, variant: "blend" } }, new TorchGenerator(9));
    expect(out[0]!.rgb.length).toBe(64 * 64 * 3);
  });
});
