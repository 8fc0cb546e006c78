import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { SDXL_PUBLISHED_PARAMS } from "../../scripts/onnx-builder/counts";
import { sdxlConfig, sdxlGraphs, tinySdxlConfig } from "../../scripts/onnx-builder/sdxl";
import { ensureSdxlFolder, SDXL_TURBO_SCHEDULER, writeSdxlFolder } from "../../scripts/onnx-builder/sdxl-folder";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { FIXTURES_DIR } from "../../scripts/replicas";
import { makeTempDir } from "../helpers/model-fixtures";

describe("SDXL builder", () => {
  it("builds SDXL base 1.0's architecture with exactly the published weight counts", () => {
    const graphs = sdxlGraphs(sdxlConfig(1));
    for (const [part, published] of Object.entries(SDXL_PUBLISHED_PARAMS)) {
      expect(graphs[part as keyof typeof SDXL_PUBLISHED_PARAMS].counts().params, part).toBe(published);
    }
    // 2,567,463,684 UNet weights: SDXL's, with cross-attention 2048 and a 2816-wide add_embedding input.
    expect(sdxlConfig(1).unet.crossAttentionDim).toBe(2048);
    const a = sdxlConfig(1).unet.addition;
    expect(a.textEmbedsDim + a.timeIds * a.timeEmbedDim).toBe(2816);
  });

  it("writes the tiny SDXL in Optimum's layout, whose sessions take and give Optimum's names and dtypes", async () => {
    const temp = await makeTempDir("sdxl-builder-");
    const dir = temp.dir;
    await writeSdxlFolder(dir, { config: tinySdxlConfig(), scheduler: SDXL_TURBO_SCHEDULER, tokenizerDir: path.join(FIXTURES_DIR, "tiny-sd", "tokenizer"), sampleSize: 64 });
    const index = JSON.parse(await readFile(path.join(dir, "model_index.json"), "utf8"));
    expect(index._class_name).toBe("StableDiffusionXLPipeline");
    expect(index.force_zeros_for_empty_prompt).toBe(true);
    expect(JSON.parse(await readFile(path.join(dir, "tokenizer_2", "special_tokens_map.json"), "utf8")).pad_token).toBe("!");
    expect(JSON.parse(await readFile(path.join(dir, "vae_decoder", "config.json"), "utf8")).scaling_factor).toBe(0.13025);
    const open = (part: string) => ort.InferenceSession.create(path.join(dir, part, "model.onnx"));
    const te2 = await open("text_encoder_2");
    expect(te2.outputNames).toEqual(["text_embeds", "last_hidden_state", ...Array.from({ length: 6 }, (_, i) => `hidden_states.${i}`)]);
    const te = await open("text_encoder");
    expect(te.outputNames.slice(0, 2)).toEqual(["last_hidden_state", "pooler_output"]);
    expect(te.inputMetadata[0]).toMatchObject({ name: "input_ids", type: "int64" });
    const unet = await open("unet");
    expect(unet.inputNames).toEqual(["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]);
    const ids = new BigInt64Array(77);
    ids[0] = 49406n;
    ids[1] = 49407n;
    const out = await te2.run({ input_ids: new ort.Tensor("int64", ids, [1, 77]) });
    expect(out.text_embeds!.dims).toEqual([1, 32]);
    expect(out["hidden_states.4"]!.dims).toEqual([1, 77, 32]);
    // The last hidden state is the final layer norm of hidden_states.5 (the last layer's output), not of the penultimate.
    const last = out.last_hidden_state!.data as Float32Array;
    const penultimate = out["hidden_states.4"]!.data as Float32Array;
    expect(last.slice(0, 32)).not.toEqual(penultimate.slice(0, 32));
    const run = async (timeIds: number[]) => {
      const r = await unet.run({
        sample: new ort.Tensor("float32", new Float32Array(4 * 64).fill(0.5), [1, 4, 8, 8]),
        timestep: new ort.Tensor("int64", new BigInt64Array([999n]), [1]),
        encoder_hidden_states: new ort.Tensor("float32", new Float32Array(77 * 64).fill(0.1), [1, 77, 64]),
        text_embeds: new ort.Tensor("float32", new Float32Array(32).fill(0.2), [1, 32]),
        time_ids: new ort.Tensor("float32", Float32Array.from(timeIds), [1, 6]),
      });
      return r.out_sample!.data as Float32Array;
    };
    // time_ids reach the output through add_embedding.
    expect(await run([512, 512, 0, 0, 512, 512])).not.toEqual(await run([1024, 1024, 0, 0, 512, 512]));
    await temp.cleanup();
  });

  it("keeps a built SDXL folder in its cache (the bench's), and builds it again when its stamp is gone", { timeout: 60_000 }, async () => {
    const temp = await makeTempDir("sdxl-cache-");
    const tokenizerDir = path.join(FIXTURES_DIR, "tiny-sd", "tokenizer");
    const first = await ensureSdxlFolder(temp.dir, { width: 0.0625, tokenizerDir });
    expect([first.built, path.basename(first.dir)]).toEqual([true, "sdxl-w0.0625"]);
    // The daemon reads it as SDXL base: two text encoders, 1024 px, Euler with leading spacing.
    const folder = await loadModelFolder(first.dir);
    expect([folder.sdxl !== null, folder.nativeResolution, folder.turbo, folder.schedulerConfig._class_name]).toEqual([true, 1024, false, "EulerDiscreteScheduler"]);
    const again = await ensureSdxlFolder(temp.dir, { width: 0.0625, tokenizerDir });
    expect([again.built, again.counts]).toEqual([false, first.counts]);
    await rm(path.join(first.dir, "underpaint-build.json"));
    expect((await ensureSdxlFolder(temp.dir, { width: 0.0625, tokenizerDir })).built).toBe(true);
    await temp.cleanup();
  });
});
