import { describe, expect, it } from "vitest";
import { SCHEDULERS } from "../../../protocol";
import { isEngineFile, selectEngineFiles } from "../../../daemon/models/engine-files";
import type { HubFile } from "../../../daemon/models/hub";
import { hubConfigFromEnv, hubHeaders, resolveUrl } from "../../../daemon/models/hub";
import { ModelInstallError } from "../../../daemon/models/install-errors";
import {
  ARCHITECTURE_PARAMETERS,
  Registry,
  approximateBytes,
  findRegistryEntry,
  loadRegistry,
  pullTarget,
  registryEntryForSource,
  registryModels,
} from "../../../daemon/models/registry";
import { SDXL_PUBLISHED_PARAMS } from "../../../scripts/onnx-builder/counts";
import { sd15Config, sd21Config, textEncoder, unet, vaeDecoder, vaeEncoder } from "../../../scripts/onnx-builder/sd15";
import { formatDuration, progressLine } from "../../../daemon/commands/download-progress";
import registryJson from "../../../daemon/models/registry.json";

describe("the registry", () => {
  it("is valid and covers SD 1.5, an inpainting model, SD-Turbo, an LCM and SDXL (Turbo and base)", () => {
    const registry = loadRegistry();
    expect(registry.models.map((m) => m.id)).toEqual(["sd-1.5", "sd-1.5-inpainting", "sd-turbo", "lcm-dreamshaper-v7", "sd-1.5-control", "sdxl-turbo", "sdxl-base-1.0", "sdxl-control", "sdxl-lightning"]);
    expect(findRegistryEntry("sdxl-turbo")).toMatchObject({ architecture: "sdxl", turbo: true, nativeResolution: 512, recommended: { steps: 1, guidance: 0, scheduler: "euler_a" } });
    expect(findRegistryEntry("sdxl-base-1.0")).toMatchObject({ architecture: "sdxl", turbo: false, nativeResolution: 1024, recommended: { steps: 25, guidance: 5 } });
    // SDXL-Lightning 4-step: few steps without guidance, Euler (the repo's EulerDiscreteScheduler, trailing spacing), float16.
    expect(findRegistryEntry("sdxl-lightning")).toMatchObject({ repo: "Cyronius/sdxl-lightning-4step-onnx-web", pinned: false, revision: "main", kind: "txt2img", architecture: "sdxl", turbo: true, nativeResolution: 1024, precision: "fp16", recommended: { steps: 4, guidance: 0, scheduler: "euler" } });
    expect(registry.models.some((m) => m.kind === "inpainting")).toBe(true);
    expect(findRegistryEntry("sd-turbo")).toMatchObject({ turbo: true, recommended: { steps: 1, guidance: 0 } });
    expect(findRegistryEntry("lcm-dreamshaper-v7")?.recommended.scheduler).toBe("lcm");
    for (const m of registry.models) {
      expect(SCHEDULERS).toContain(m.recommended.scheduler);
      expect(m.license.length).toBeGreaterThan(2);
      if (m.pinned) expect(m.revision).toMatch(/^[0-9a-f]{40}$/);
      else expect(m.note).toMatch(/not pinned/i);
    }
  });

  it("sizes each entry from its architecture's weights and its precision", () => {
    // The counts are those of the networks built from each architecture's published config.
    const sd15 = sd15Config(1);
    // SD 2.1: OpenCLIP ViT-H/14's text tower as diffusers ships it (1024 wide, 23 layers), 1024-wide cross-attention.
    const sd21 = sd21Config(1);
    for (const [architecture, config] of [["sd15", sd15], ["sd21", sd21]] as const) {
      const built = {
        text_encoder: textEncoder(config).counts().params,
        unet: unet(config).counts().params,
        vae_decoder: vaeDecoder(config).counts().params,
        vae_encoder: vaeEncoder(config).counts().params,
      };
      expect(built, architecture).toEqual(ARCHITECTURE_PARAMETERS[architecture]);
    }
    const sd = findRegistryEntry("sd-1.5")!;
    expect(approximateBytes(sd)).toBe(1_066_235_307 * 4);
    expect(approximateBytes({ ...sd, precision: "fp16" })).toBe(1_066_235_307 * 2);
    expect(approximateBytes(findRegistryEntry("sd-turbo")!)).toBe(1_289_952_427 * 2);
    // SDXL: its five networks' published counts (which the builder's SDXL graphs match), both text encoders included.
    expect(ARCHITECTURE_PARAMETERS.sdxl).toEqual(SDXL_PUBLISHED_PARAMS);
    expect(approximateBytes(findRegistryEntry("sdxl-base-1.0")!)).toBe(3_468_837_867 * 4);
    // OnnxStack's SDXL: the pipeline and its control UNet, in float16.
    expect(approximateBytes(findRegistryEntry("sdxl-control")!)).toBe((3_468_837_867 + 2_567_463_684) * 2);
    expect(approximateBytes(findRegistryEntry("sdxl-turbo")!)).toBe(3_468_837_867 * 4);
    // SDXL-Lightning: SDXL's networks in float16 (its VAE encoder's 34 M weights, which the repo lacks, included: approximate); the README says about 6.5 GB.
    expect(approximateBytes(findRegistryEntry("sdxl-lightning")!)).toBe(3_468_837_867 * 2);
    expect(registryModels().map((m) => [m.id, m.approximateBytes])).toEqual(loadRegistry().models.map((m) => [m.id, approximateBytes(m)]));
  });

  it("knows which entry a model folder was installed as from its manifest's source", () => {
    const hub = { kind: "hub", endpoint: "https://huggingface.co", revision: "main", commit: "0".repeat(40) } as const;
    expect(registryEntryForSource({ ...hub, repo: "someone/else", registryId: "sd-turbo" })?.id).toBe("sd-turbo");
    // A manifest without registryId (pulled by owner/name): the entry whose repo it is, in any case.
    expect(registryEntryForSource({ ...hub, repo: "tensorstack/sd-turbo-onnx" })?.id).toBe("sd-turbo");
    expect(registryEntryForSource({ ...hub, repo: "someone/else" })).toBeUndefined();
    expect(registryEntryForSource({ kind: "local", path: "/models/x" })).toBeUndefined();
    expect(registryEntryForSource(undefined)).toBeUndefined();
  });

  it("rejects entries that claim a pin without a commit, or leave an unpinned revision unexplained", () => {
    const base = structuredClone(registryJson) as { version: 1; models: Array<Record<string, unknown>> };
    base.models[1]!.revision = "main";
    expect(Registry.safeParse(base).success).toBe(false);
    const unexplained = structuredClone(registryJson) as { version: 1; models: Array<Record<string, unknown>> };
    delete unexplained.models[0]!.note;
    expect(Registry.safeParse(unexplained).success).toBe(false);
    const duplicate = structuredClone(registryJson) as { version: 1; models: Array<Record<string, unknown>> };
    duplicate.models.push(duplicate.models[0]!);
    expect(Registry.safeParse(duplicate).success).toBe(false);
  });

  it("turns what the artist typed into a repo, a revision and a folder name", () => {
    expect(pullTarget("sd-turbo")).toMatchObject({ id: "sd-turbo", repo: "TensorStack/SD-Turbo-onnx", revision: "8f9288d1ecfc10a3618fbd4138982e0987e764cd" });
    expect(pullTarget("TensorStack/SD-Turbo-onnx").id).toBe("sd-turbo");
    expect(pullTarget("someone/My-Model_v2")).toEqual({ id: "My-Model_v2", repo: "someone/My-Model_v2", revision: "main" });
    expect(pullTarget("someone/model", { revision: "refs/pr/3", as: "mine" })).toEqual({ id: "mine", repo: "someone/model", revision: "refs/pr/3" });
    expect(() => pullTarget("sd-2000")).toThrow(ModelInstallError);
    expect(() => pullTarget("someone/model", { as: "../evil" })).toThrow(/cannot name a model folder/);
    expect(() => pullTarget("someone/model", { as: ".hidden" })).toThrow(/cannot name a model folder/);
  });
});

describe("the files a pull fetches", () => {
  const file = (path: string): HubFile => ({ path, size: 1, sha256: null, gitSha1: null });

  it("are the ONNX parts, tokenizer, scheduler and model_index.json, nothing else", () => {
    const take = [
      "model_index.json",
      "unet/model.onnx",
      "unet/weights.pb",
      "unet/config.json",
      "unet/model.onnx_data",
      "text_encoder/model.onnx",
      "vae_decoder/model.onnx",
      "vae_encoder/model.onnx.data",
      "tokenizer/vocab.json",
      "tokenizer/merges.txt",
      "tokenizer/tokenizer_config.json",
      "tokenizer/special_tokens_map.json",
      "scheduler/scheduler_config.json",
    ];
    const leave = [
      "README.md",
      ".gitattributes",
      "Sample.png",
      "unet/diffusion_pytorch_model.safetensors",
      "text_encoder/model.safetensors",
      "text_encoder/pytorch_model.bin",
      "safety_checker/model.onnx",
      "feature_extractor/preprocessor_config.json",
      "controlnet/model.onnx",
      "tokenizer/model.onnx",
      "unet/sub/model.onnx",
    ];
    for (const p of take) expect(isEngineFile(p), p).toBe(true);
    for (const p of leave) expect(isEngineFile(p), p).toBe(false);
    expect(selectEngineFiles("a/b", [...take, ...leave].map(file)).map((f) => f.path)).toEqual([...take].sort());
  });

  it("are refused early for an SDXL export missing its second tokenizer, SDXL's refiner and repos without an ONNX export", () => {
    const sdxl = ["model_index.json", "unet/model.onnx", "text_encoder/model.onnx", "text_encoder_2/model.onnx", "vae_decoder/model.onnx"].map(file);
    expect(() => selectEngineFiles("x/sdxl", sdxl)).toThrow(/SDXL model without all of its ONNX parts \(it lacks tokenizer_2\/vocab.json, tokenizer_2\/merges.txt\)/);
    const refiner = ["model_index.json", "unet/model.onnx", "text_encoder_2/model.onnx", "vae_decoder/model.onnx"].map(file);
    expect(() => selectEngineFiles("x/refiner", refiner)).toThrow(/SDXL refiner/);
    const complete = [...sdxl, ...["tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt", "text_encoder_2/model.onnx_data", "text_encoder_2/model.fp16.safetensors"].map(file)];
    expect(selectEngineFiles("x/sdxl", complete).map((f) => f.path)).toContain("text_encoder_2/model.onnx_data");
    expect(selectEngineFiles("x/sdxl", complete).map((f) => f.path)).not.toContain("text_encoder_2/model.fp16.safetensors");
    expect(() => selectEngineFiles("x/torch", ["model_index.json", "unet/diffusion_pytorch_model.safetensors"].map(file))).toThrow(
      /not an ONNX model in the diffusers layout \(it lacks unet\/model.onnx, text_encoder\/model.onnx, vae_decoder\/model.onnx\); it holds PyTorch weights/,
    );
  });
});

describe("the hub client", () => {
  it("takes the endpoint and token from the environment, and keeps the token at the hub", () => {
    const config = hubConfigFromEnv({ HF_ENDPOINT: "https://mirror.example/", HF_TOKEN: "hf_x" });
    expect(config.endpoint).toBe("https://mirror.example");
    expect(hubConfigFromEnv({}).endpoint).toBe("https://huggingface.co");
    const url = resolveUrl(config, "o/n", "0".repeat(40), "unet/model name.onnx");
    expect(url).toBe(`https://mirror.example/o/n/resolve/${"0".repeat(40)}/unet/model%20name.onnx`);
    expect(hubHeaders(config, url).authorization).toBe("Bearer hf_x");
    expect(hubHeaders(config, "https://cdn-lfs.example/abc").authorization).toBeUndefined();
  });
});

describe("the terminal progress line", () => {
  it("shows bytes, rate, ETA and the file, within the terminal's width", () => {
    const line = progressLine(
      { model: "sd-turbo", request: "sd-turbo", stage: "downloading", file: "unet/model.onnx", bytes: 1_200_000_000, total: 2_400_000_000, bytesPerSecond: 25_000_000, etaSeconds: 48 },
      200,
    );
    expect(line).toBe("sd-turbo  [############------------]   50%  1.20 GB / 2.40 GB  25.0 MB/s  ETA 0:48  unet/model.onnx");
    expect(progressLine({ model: "m", request: "m", stage: "verifying", bytes: 5, total: 5 }, 200)).toMatch(/100%.*verifying$/);
    expect(progressLine({ model: "m", request: "m", stage: "downloading", bytes: 0, total: 0, file: "x".repeat(300) }, 60).length).toBe(60);
    expect(formatDuration(3725)).toBe("1:02:05");
  });
});
