import { mkdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  DEFAULT_VAE_SCALING_FACTOR,
  isTurbo,
  lightningSteps,
  loadModelFolder,
  ModelFolderError,
  nativeResolutionOf,
  toModelInfo,
  type ModelFolder,
} from "../../../daemon/models/model-folder";
import { ModelInfo } from "../../../protocol";
import { copyFixtureModel, fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

async function loadError(dir: string): Promise<ModelFolderError> {
  const error = await loadModelFolder(dir).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelFolderError);
  return error as ModelFolderError;
}

function expectNames(error: ModelFolderError, file: string): void {
  expect(error.file).toBe(file);
  expect(error.message).toContain(file);
}

/** Rewrites text_encoder/model.onnx's graph input input_ids from int32 to float (one byte). */
async function makeTextEncoderInputFloat(file: string): Promise<void> {
  const data = await readFile(file);
  const name = Buffer.concat([Buffer.from([0x0a, 9]), Buffer.from("input_ids"), Buffer.from([0x12])]);
  // ValueInfoProto: name, then type { tensor_type { elem_type = 6 (INT32) ... } }.
  for (let i = data.indexOf(name); i >= 0; i = data.indexOf(name, i + 1)) {
    const at = i + name.length;
    if (data[at + 1] === 0x0a && data[at + 3] === 0x08 && data[at + 4] === 6) {
      data[at + 4] = 1;
      await writeFile(file, data);
      return;
    }
  }
  throw new Error("input_ids value info not found");
}

describe("loadModelFolder on the fixtures", () => {
  it("tiny-sd: a txt2img model with a 4-channel UNet read from the ONNX file", async () => {
    const model = await loadModelFolder(fixtureModelDir("tiny-sd"));
    expect(model.id).toBe("tiny-sd");
    expect(model.dir).toBe(fixtureModelDir("tiny-sd"));
    expect(model.unetInChannels).toBe(4);
    expect(model.unetInChannelsSource).toBe("onnx_conv_in");
    expect(model.kind).toBe("txt2img");
    expect(model.modes).toEqual(["txt2img", "img2img", "inpaint", "outpaint"]);
    expect(model.hasVaeEncoder).toBe(true);
    expect(model.modelIndex._class_name).toBe("OnnxStableDiffusionPipeline");
    expect(model.schedulerConfig._class_name).toBe("PNDMScheduler");
    expect(model.schedulerConfig.steps_offset).toBe(1);
    expect(model.predictionType).toBe("epsilon");
    expect(model.vaeScalingFactor).toBe(DEFAULT_VAE_SCALING_FACTOR);
    expect(model.vaeScaleFactor).toBe(8);
    expect(model.nativeResolution).toBe(512);
    expect(model.nativeResolutionSource).toBe("heuristic");
    expect(model.turbo).toBe(false);
    expect(model.float16).toBe(false);
    expect(model.tokenizerConfig.model_max_length).toBe(77);
  });

  it("tiny-sd-inpaint: inpainting with 9 channels, although model_index.json says OnnxStableDiffusionPipeline", async () => {
    const model = await loadModelFolder(fixtureModelDir("tiny-sd-inpaint"));
    expect(model.modelIndex._class_name).toBe("OnnxStableDiffusionPipeline");
    expect(model.unetInChannels).toBe(9);
    expect(model.kind).toBe("inpainting");
    expect(model.modes).toEqual(["inpaint", "outpaint"]);
  });

  it("records the paths of every part and the bytes of all weights", async () => {
    const dir = fixtureModelDir("tiny-sd");
    const model = await loadModelFolder(dir);
    expect(model.paths.unet).toBe(path.join(dir, "unet", "model.onnx"));
    expect(model.paths.vaeEncoder).toBe(path.join(dir, "vae_encoder", "model.onnx"));
    expect(model.paths.externalData).toEqual([path.join(dir, "unet", "weights.pb")]);
    expect(model.paths.tokenizer.merges).toBe(path.join(dir, "tokenizer", "merges.txt"));
    expect(model.paths.schedulerConfig).toBe(path.join(dir, "scheduler", "scheduler_config.json"));
    expect(model.paths.configs).toEqual({ unet: null, vaeDecoder: null, vaeEncoder: null });
    let bytes = 0;
    for (const f of ["text_encoder/model.onnx", "unet/model.onnx", "unet/weights.pb", "vae_encoder/model.onnx", "vae_decoder/model.onnx"]) {
      bytes += (await stat(path.join(dir, f))).size;
    }
    expect(model.weightsBytes).toBe(bytes);
  });

  it("describes the I/O from the ONNX files: input_ids int32, timestep float32 rank 1, latent_sample", async () => {
    const { io } = await loadModelFolder(fixtureModelDir("tiny-sd"));
    expect(io.textEncoder).toEqual({
      inputIds: "input_ids",
      inputIdsType: "int32",
      hiddenState: "last_hidden_state",
      hiddenStateType: "float32",
      pooled: "pooler_output",
      hiddenStates: [],
    });
    expect(io.unet).toMatchObject({ timestep: "timestep", timestepType: "float32", timestepRank: 1, timestepLength: null, output: "out_sample" });
    expect(io.vaeEncoder).toMatchObject({ output: "latent_sample", outputKind: "latent_sample" });
    expect(io.vaeDecoder).toEqual({ latent: "latent_sample", latentType: "float32", output: "sample", outputType: "float32" });
  });

  it("gives the protocol's ModelInfo", async () => {
    const info = toModelInfo(await loadModelFolder(fixtureModelDir("tiny-sd-inpaint")));
    expect(ModelInfo.parse(info)).toEqual({
      id: "tiny-sd-inpaint",
      name: "tiny-sd-inpaint",
      kind: "inpainting",
      modes: ["inpaint", "outpaint"],
      nativeResolution: 512,
      turbo: false,
      recommended: { steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" },
      guidance: "classifier-free",
    });
  });

  it("recommends settings and tells the guidance kind by what the folder is, without a manifest", async () => {
    const of = async (name: Parameters<typeof fixtureModelDir>[0]) => {
      const info = toModelInfo(await loadModelFolder(fixtureModelDir(name)));
      return [info.recommended, info.guidance, info.registryId];
    };
    expect(await of("tiny-sd-turbo-config")).toEqual([{ steps: 1, guidance: 0, scheduler: "euler_a" }, "none", undefined]);
    // LCM's UNet takes the guidance as an input (timestep_cond).
    expect(await of("tiny-lcm")).toEqual([{ steps: 4, guidance: 8, scheduler: "lcm" }, "embedded", undefined]);
    expect(await of("tiny-sd")).toEqual([{ steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" }, "classifier-free", undefined]);
  });
});

describe("loadModelFolder on broken copies", () => {
  let tmp: TempDir;
  let dir: string;
  beforeEach(async () => {
    tmp = await makeTempDir();
    dir = await copyFixtureModel("tiny-sd", tmp.dir);
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  it("the untouched copy loads", async () => {
    expect((await loadModelFolder(dir)).id).toBe("tiny-sd");
  });

  it("missing unet/model.onnx -> model_file_missing naming it", async () => {
    const file = path.join(dir, "unet", "model.onnx");
    await rm(file);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, file);
  });

  it("missing tokenizer/merges.txt -> model_file_missing naming it", async () => {
    const file = path.join(dir, "tokenizer", "merges.txt");
    await rm(file);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, file);
  });

  it("missing model_index.json: read from the parts (Amuse-style exports); with no UNet either -> model_file_missing naming it", async () => {
    const file = path.join(dir, "model_index.json");
    await rm(file);
    const folder = await loadModelFolder(dir, { devices: ["cpu"] });
    expect(folder.modelIndex._class_name).toBe("OnnxStableDiffusionPipeline");
    expect(folder.kind).toBe("txt2img");
    await rm(path.join(dir, "unet"), { recursive: true });
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, file);
  });

  it("corrupt scheduler_config.json -> model_file_invalid naming it", async () => {
    const file = path.join(dir, "scheduler", "scheduler_config.json");
    await writeFile(file, '{"_class_name": "PNDMScheduler", "beta_end": 0.0');
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, file);
    expect(error.message).toMatch(/not valid JSON/);
  });

  it("a scheduler config of the wrong shape -> model_file_invalid (zod)", async () => {
    const file = path.join(dir, "scheduler", "scheduler_config.json");
    await writeFile(file, JSON.stringify({ _class_name: 42 }));
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, file);
    expect(error.message).toContain("_class_name");
  });

  it("a vocab.json that is not token -> id -> model_file_invalid", async () => {
    const file = path.join(dir, "tokenizer", "vocab.json");
    await writeFile(file, JSON.stringify(["a", "b"]));
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, file);
  });

  it("unet/model.onnx truncated to half its size -> model_file_invalid naming it", async () => {
    const file = path.join(dir, "unet", "model.onnx");
    await truncate(file, (await stat(file)).size >> 1);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, file);
    expect(error.message).toMatch(/truncated/);
  });

  it("text_encoder/model.onnx truncated to half its size -> model_file_invalid naming it", async () => {
    const file = path.join(dir, "text_encoder", "model.onnx");
    await truncate(file, (await stat(file)).size >> 1);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, file);
  });

  it("missing unet/weights.pb -> model_file_missing naming it", async () => {
    const file = path.join(dir, "unet", "weights.pb");
    await rm(file);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, file);
  });

  it("unet/weights.pb cut short -> model_file_invalid naming it", async () => {
    const file = path.join(dir, "unet", "weights.pb");
    await truncate(file, 1000);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, file);
  });

  it("a text encoder whose input_ids is float -> model_unsupported naming it", async () => {
    const file = path.join(dir, "text_encoder", "model.onnx");
    await makeTextEncoderInputFloat(file);
    const error = await loadError(dir);
    expect(error.code).toBe("model_unsupported");
    expectNames(error, file);
    expect(error.message).toMatch(/input_ids is float32/);
  });

  it("an SDXL model_index.json without text_encoder_2/ -> model_file_missing naming it; SDXL's refiner -> model_unsupported", async () => {
    const file = path.join(dir, "model_index.json");
    const index = JSON.parse(await readFile(file, "utf8"));
    await writeFile(
      file,
      JSON.stringify({ ...index, _class_name: "ORTStableDiffusionXLPipeline", text_encoder_2: ["optimum", "ORTModelTextEncoder"] }),
    );
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, path.join(dir, "text_encoder_2", "model.onnx"));
    await writeFile(file, JSON.stringify({ ...index, _class_name: "StableDiffusionXLImg2ImgPipeline", text_encoder_2: ["transformers", "CLIPTextModelWithProjection"], requires_aesthetics_score: true }));
    const refiner = await loadError(dir);
    expect(refiner.code).toBe("model_unsupported");
    expect(refiner.message).toMatch(/SDXL refiner/);
    expectNames(refiner, file);
  });

  it("an unknown prediction_type -> model_unsupported naming the scheduler config", async () => {
    const file = path.join(dir, "scheduler", "scheduler_config.json");
    const config = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify({ ...config, prediction_type: "flow" }));
    const error = await loadError(dir);
    expect(error.code).toBe("model_unsupported");
    expectNames(error, file);
  });

  it("no vae_encoder/ -> a txt2img-only model", async () => {
    await rm(path.join(dir, "vae_encoder"), { recursive: true });
    const index = path.join(dir, "model_index.json");
    const { vae_encoder: _, ...rest } = JSON.parse(await readFile(index, "utf8"));
    await writeFile(index, JSON.stringify(rest));
    const model = await loadModelFolder(dir);
    expect(model.hasVaeEncoder).toBe(false);
    expect(model.paths.vaeEncoder).toBeNull();
    expect(model.io.vaeEncoder).toBeNull();
    expect(model.modes).toEqual(["txt2img"]);
  });

  it("vae_encoder/model.onnx missing while model_index.json lists it -> model_file_missing", async () => {
    const file = path.join(dir, "vae_encoder", "model.onnx");
    await rm(file);
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, file);
  });

  it("reads Optimum's per-folder configs: scaling factor, sample sizes", async () => {
    await writeFile(path.join(dir, "vae_decoder", "config.json"), JSON.stringify({ scaling_factor: 0.13025, sample_size: 1024, block_out_channels: [128, 256, 512, 512] }));
    await writeFile(path.join(dir, "unet", "config.json"), JSON.stringify({ sample_size: 96, in_channels: 4, cross_attention_dim: 1024 }));
    const model = await loadModelFolder(dir);
    expect(model.vaeScalingFactor).toBe(0.13025);
    expect(model.nativeResolution).toBe(768);
    expect(model.nativeResolutionSource).toBe("unet_config");
    expect(model.paths.configs.unet).toBe(path.join(dir, "unet", "config.json"));
    await writeFile(path.join(dir, "vae_decoder", "config.json"), "{ not json");
    const error = await loadError(dir);
    expect(error.code).toBe("model_file_invalid");
    expectNames(error, path.join(dir, "vae_decoder", "config.json"));
  });

  it("v_prediction without configs -> 768; turbo in the folder name -> turbo, 512", async () => {
    const file = path.join(dir, "scheduler", "scheduler_config.json");
    const config = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify({ ...config, prediction_type: "v_prediction" }));
    const v: ModelFolder = await loadModelFolder(dir);
    expect(v.predictionType).toBe("v_prediction");
    expect(v.nativeResolution).toBe(768);
    const turboDir = await copyFixtureModel("tiny-sd", tmp.dir, "sd-turbo-onnx");
    await writeFile(path.join(turboDir, "scheduler", "scheduler_config.json"), JSON.stringify({ ...config, prediction_type: "v_prediction" }));
    const turbo = await loadModelFolder(turboDir);
    expect(turbo.id).toBe("sd-turbo-onnx");
    expect(turbo.turbo).toBe(true);
    expect(turbo.nativeResolution).toBe(512);
  });

  it("an LCM scheduler on a UNet without the guidance embedding (an LCM-LoRA merge) -> 4 steps of lcm at guidance 1", async () => {
    const file = path.join(dir, "scheduler", "scheduler_config.json");
    const config = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify({ ...config, _class_name: "LCMScheduler" }));
    const info = toModelInfo(await loadModelFolder(dir));
    expect([info.recommended, info.guidance]).toEqual([{ steps: 4, guidance: 1, scheduler: "lcm" }, "classifier-free"]);
  });

  it("a folder that is not a model at all -> model_file_missing for model_index.json", async () => {
    const empty = path.join(tmp.dir, "empty");
    await mkdir(empty);
    const error = await loadError(empty);
    expect(error.code).toBe("model_file_missing");
    expectNames(error, path.join(empty, "model_index.json"));
  });
});

describe("nativeResolutionOf", () => {
  const base = { unetSampleSize: null, vaeSampleSize: null, vaeScaleFactor: 8, predictionType: "epsilon" as const, turbo: false };
  it("prefers the UNet config, then the VAE config, then the heuristic", () => {
    expect(nativeResolutionOf({ ...base, unetSampleSize: 64, vaeSampleSize: 768 })).toEqual({ resolution: 512, source: "unet_config" });
    expect(nativeResolutionOf({ ...base, vaeSampleSize: 768 })).toEqual({ resolution: 768, source: "vae_config" });
    expect(nativeResolutionOf(base)).toEqual({ resolution: 512, source: "heuristic" });
    expect(nativeResolutionOf({ ...base, predictionType: "v_prediction" }).resolution).toBe(768);
  });
});

describe("few-step distilled models by name", () => {
  const index = (nameOrPath?: string) => ({ _class_name: "StableDiffusionXLPipeline", ...(nameOrPath ? { _name_or_path: nameOrPath } : {}) });
  it("turbo and lightning in the folder name or _name_or_path are few-step models", () => {
    expect(isTurbo("my-sdxl-turbo", index())).toBe(true);
    expect(isTurbo("sdxl-lightning", index())).toBe(true);
    expect(isTurbo("xl", index("ByteDance/SDXL-Lightning"))).toBe(true);
    expect(isTurbo("sdxl-base", index("stabilityai/stable-diffusion-xl-base-1.0"))).toBe(false);
  });
  it("SDXL-Lightning's steps: the N-step its name says (1, 2, 4 or 8), else 4; null when not Lightning", () => {
    expect(lightningSteps("sdxl-lightning", index())).toBe(4);
    expect(lightningSteps("sdxl-lightning-8step", index())).toBe(8);
    expect(lightningSteps("xl", index("sdxl_lightning_2step_unet"))).toBe(2);
    expect(lightningSteps("sdxl-lightning-4-steps", index())).toBe(4);
    expect(lightningSteps("sdxl-turbo", index())).toBeNull();
  });
});
