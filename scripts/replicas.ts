/**
 * Replicas of the real repos the registry offers: tiny random-weight model folders (made from the
 * Stable-Diffusion-shaped fixtures in ../shared/fixtures) laid out as each repo publishes them, with
 * its file names, where its weights live (weights.pb, model.onnx_data, embedded in model.onnx),
 * Optimum's per-part config.json, int64 input_ids and latent_parameters VAE encoder, its extra UNet
 * inputs and its published model_index.json and scheduler config. Tests serve them from a local hub imitation and pull them through the same code
 * a real download takes.
 *
 * float16 repos get float16 graphs made by casting the fixtures' (float32 torch exports) weights and
 * types: the structure of an fp16 export, not torch's fp16 tracing. Other differences from the real
 * repo are said in each replica's `gaps`.
 *
 * The TAESD repo (a preview decoder, not a pipeline) is built at full size by
 * scripts/onnx-builder/taesd.ts with random weights: TAESD's own are 4.9 MB per part, but cannot be
 * fetched here.
 *
 *   npx tsx scripts/replicas.ts OUT_DIR     writes one folder per replica, named by its repo
 */
import { cp, mkdir, readFile, rename, rm, writeFile, chmod, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import onnxProto from "onnx-proto";
import { convertModelFloats, externalizeInitializers, FLOAT, FLOAT16, initializerReader } from "../daemon/models/float-precision";
import { writeTaesdFolder, type TaesdImageRange } from "./onnx-builder/taesd";
import { tinySdxlConfig } from "./onnx-builder/sdxl";
import { SDXL_BASE_SCHEDULER, SDXL_TURBO_SCHEDULER, writeSdxlFolder } from "./onnx-builder/sdxl-folder";
import { tinySdxlAsSd15, writeControlNetFolder, writeControlUnet } from "./onnx-builder/control-folder";
import { writeDepthAnythingFolder } from "./onnx-builder/depth-anything";
import { writeDwposeFolder } from "./onnx-builder/dwpose";

const { onnx } = onnxProto;
type Model = onnxProto.onnx.ModelProto;
type Graph = onnxProto.onnx.IGraphProto;
const here = path.dirname(fileURLToPath(import.meta.url));
export const FIXTURES_DIR = process.env.UNDERPAINT_FIXTURES ?? path.resolve(here, "../../shared/fixtures");

/** A replica of a Stable Diffusion pipeline repo, made from a fixture. */
export interface PipelineReplica {
  /** The hub repo it replicates. */
  repo: string;
  /** The fixture it is made from. */
  from: "tiny-sd" | "tiny-sd-inpaint" | "tiny-lcm" | "tiny-sd-turbo-config";
  /** Where the parts' weights live. */
  weights: "weights.pb" | "model.onnx_data" | "embedded";
  /** Every part a float16 export, as the repo ships it. */
  float16: boolean;
  /** Optimum writes each part's diffusers config.json beside its model.onnx. */
  partConfigs: boolean;
  /**
   * The parts' inputs and outputs as this exporter writes them: diffusers' script (int32 input_ids; a
   * VAE encoder that samples the posterior itself, latent_sample) or Optimum (int64 input_ids; a VAE
   * encoder that gives the posterior's parameters, latent_parameters = mean ‖ logvar).
   */
  io: "diffusers-script" | "optimum";
  /** The repo's scheduler/scheduler_config.json, as published. */
  scheduler: Record<string, unknown>;
  /** The repo's model_index.json pipeline class. */
  pipeline: string;
  /**
   * OnnxStack's layout for a ControlNet-capable base (TensorStack's repos): controlnet/model.onnx, a
   * copy of the UNet that takes the ControlNet's residuals as inputs, beside unet/. Both are the
   * builder's tiny-sd-configuration UNet (same weight names, so the same weights).
   */
  controlUnet?: boolean;
  gaps: string[];
}

/** A replica of a repo of ONNX ControlNets, one per subfolder (TensorStack/ControlNet-onnx's SD/Canny/, ...). */
export interface ControlNetReplica {
  repo: string;
  from: "controlnet";
  /** Subfolders holding a model.onnx each, as the repo names them. */
  subfolders: string[];
  /** Subfolders holding an SDXL ControlNet each: model.onnx with its float16 weights in model.onnx.data. */
  sdxlSubfolders?: string[];
  /** Files the repo ships beside each model.onnx (a pull leaves them on the hub): name -> text. */
  extraFiles: Record<string, string>;
  gaps: string[];
}

/** runwayml's SD 1.5 scheduler config, as the SD 1.5 ONNX repos copy it (no timestep_spacing). */
const SD15_SCHEDULER = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.6.0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

/** A replica of an ONNX TAESD repo: vae_decoder/ and vae_encoder/ of diffusers' AutoencoderTiny, built by scripts/onnx-builder/taesd.ts. */
export interface TaesdReplica {
  repo: string;
  from: "taesd";
  /** What the graphs' image ends hold. */
  imageRange: TaesdImageRange;
  /** Files the repo ships beside its ONNX parts (a pull leaves them on the hub): path -> text. */
  extraFiles: Record<string, string>;
  gaps: string[];
}

/**
 * A replica of an SDXL repo's ONNX files (Optimum's export, as the hub's SDXL repos ship it beside
 * their PyTorch weights): the builder's tiny SDXL (scripts/onnx-builder/sdxl.ts, the shape of
 * diffusers' SDXL tests) with random weights, written by sdxl-folder.ts.
 */
export interface SdxlReplica {
  repo: string;
  from: "tiny-sdxl";
  /** 9: an inpainting UNet ([latents, mask, masked-image latents]). */
  inChannels: 4 | 9;
  scheduler: Record<string, unknown>;
  /** unet/config.json sample_size, as the repo's (native resolution = 8 x it). */
  sampleSize: number;
  /** Files the repo ships that a pull leaves on the hub (PyTorch weights and the like): path -> text. */
  extraFiles: Record<string, string>;
  /** OnnxStack's layout: controlnet/model.onnx (the UNet with the residual inputs) beside unet/. */
  controlUnet?: boolean;
  /** Where parts over 2 GB keep their weights (default Optimum's model.onnx_data). */
  weightsFile?: string;
  /**
   * Every part a float16 export: true, weights, inputs and outputs (as OnnxStack's SDXL repos ship
   * them); "float32-io", float16 weights behind float32 inputs and outputs (onnxconverter-common's
   * keep_io_types=True, as the ControlNet replicas).
   */
  float16?: boolean | "float32-io";
  /** Which parts keep their weights in `weightsFile`: Optimum's over-2 GB parts (default), or every part. */
  externalParts?: "over-2gb" | "every-part";
  /** false: the repo has no vae_encoder/ (a text-to-image-only export). */
  vaeEncoder?: boolean;
  /** The tokenizers are saved as fast ones: tokenizer.json beside vocab.json and merges.txt. */
  tokenizerJson?: boolean;
  gaps: string[];
}

/**
 * A replica of a depth estimator repo in the Transformers.js layout (onnx-community/depth-anything-v2-small):
 * config.json, preprocessor_config.json and onnx/model.onnx from scripts/onnx-builder/depth-anything.ts
 * (Depth Anything's structure in a tiny configuration, random weights), and stand-ins for the other precisions' files a pull leaves on the hub.
 */
export interface DepthEstimatorReplica {
  repo: string;
  from: "depth-anything";
  /** Files the repo ships that a pull leaves on the hub: path -> text. */
  extraFiles: Record<string, string>;
  gaps: string[];
}

/**
 * A replica of the pose estimator repo (yzd-v/DWPose): yolox_l.onnx and dw-ll_ucoco_384.onnx from
 * scripts/onnx-builder/dwpose.ts (I/O-faithful stand-ins, random weights; the detector finds one
 * person wherever it looks), and stand-ins for the repo's other files, which a pull leaves on the hub.
 */
export interface PoseEstimatorReplica {
  repo: string;
  from: "dwpose";
  /** Files the repo ships that a pull leaves on the hub: path -> text. */
  extraFiles: Record<string, string>;
  gaps: string[];
}

export type Replica = PipelineReplica | TaesdReplica | SdxlReplica | ControlNetReplica | DepthEstimatorReplica | PoseEstimatorReplica;

/**
 * Cyronius/sdxl-lightning-4step-onnx-web's scheduler/scheduler_config.json: its README says
 * EulerDiscrete with timestep_spacing "trailing" (as ByteDance's README sets it on SDXL base's config);
 * the other values are SDXL base's, which the export started from (the file itself was not read).
 */
export const SDXL_LIGHTNING_SCHEDULER = { ...SDXL_BASE_SCHEDULER, timestep_spacing: "trailing" };

const SDXL_GAPS = [
  "random weights in the shape of diffusers' tiny SDXL test model (UNet blocks 32/64, two 32-wide text encoders), not the repo's networks; part configs carry the builder's sizes with the repo's sample_size and VAE scaling_factor 0.13025",
  "the file list, model_index.json and scheduler config are as the hub's pages and diffusers' SDXL docs give them (read here from memory and public mirrors, not from the hub API); the ONNX files' timestep type (int64 [steps], Optimum before Nov 2024) and VAE encoder output (latent_parameters) were not read from the published files",
];

async function fixtureScheduler(name: PipelineReplica["from"]): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(FIXTURES_DIR, name, "scheduler", "scheduler_config.json"), "utf8")) as Record<string, unknown>;
}

export async function replicas(): Promise<Replica[]> {
  return [
    {
      repo: "onnx-community/stable-diffusion-v1-5-ONNX",
      from: "tiny-sd",
      weights: "weights.pb",
      partConfigs: false,
      io: "diffusers-script",
      float16: false,
      scheduler: SD15_SCHEDULER,
      pipeline: "OnnxStableDiffusionPipeline",
      gaps: [],
    },
    {
      // An SD 1.5 export by Optimum (optimum-cli export onnx), as most community ONNX repos are.
      repo: "underpaint-replicas/optimum-sd-1.5",
      from: "tiny-sd",
      weights: "model.onnx_data",
      partConfigs: true,
      io: "optimum",
      float16: false,
      scheduler: SD15_SCHEDULER,
      pipeline: "ORTStableDiffusionPipeline",
      gaps: [],
    },
    {
      repo: "RanaLLC/stable-diffusion-v1-5-inpainting-onnx-fp16",
      from: "tiny-sd-inpaint",
      weights: "embedded",
      partConfigs: false,
      io: "diffusers-script",
      float16: true,
      scheduler: SD15_SCHEDULER,
      pipeline: "OnnxStableDiffusionInpaintPipeline",
      gaps: [],
    },
    {
      repo: "TensorStack/SD-Turbo-onnx",
      from: "tiny-sd-turbo-config",
      weights: "weights.pb",
      partConfigs: false,
      io: "diffusers-script",
      float16: true,
      scheduler: await fixtureScheduler("tiny-sd-turbo-config"),
      pipeline: "OnnxStableDiffusionPipeline",
      gaps: [],
    },
    {
      repo: "TheyCallMeHex/LCM-Dreamshaper-V7-ONNX",
      from: "tiny-lcm",
      weights: "model.onnx_data",
      partConfigs: false,
      io: "diffusers-script",
      float16: false,
      scheduler: await fixtureScheduler("tiny-lcm"),
      pipeline: "LatentConsistencyModelPipeline",
      gaps: [],
    },
    {
      // The hub lists controlnet/ (config.json, model.onnx 1.72 GB: the control UNet, float16, weights inside), safety_checker/,
      // scheduler/, text_encoder/, tokenizer/, unet/, vae_decoder/, vae_encoder/, model_index.json (4.46 GB in all: float16).
      repo: "TensorStack/stable-diffusion-v1-5-onnx",
      from: "tiny-sd",
      weights: "embedded",
      partConfigs: false,
      io: "diffusers-script",
      float16: true,
      controlUnet: true,
      scheduler: SD15_SCHEDULER,
      pipeline: "OnnxStableDiffusionPipeline",
      gaps: [
        "unet/ and controlnet/ are the builder's tiny-sd-configuration UNets, not the fixture's torch export (the control UNet needs the residual inputs, and both must share weights)",
        "the ONNX files' I/O types were not read: float16 inputs and outputs are assumed, as for TensorStack/SD-Turbo-onnx's replica; controlnet/config.json's text was not read (the UNet's diffusers config is written)",
        "safety_checker/ is not replicated (a pull does not fetch it)",
      ],
    },
    {
      // The hub lists SD/{Canny, Depth, HED, MLSD, Normal, OpenPose, Scribble, Seg}/ with model.onnx (736 MB: ControlNet's 361 M weights in float16, inside the file), Icon.png and Sample*.png, and a README.md of 36 bytes.
      repo: "TensorStack/ControlNet-onnx",
      from: "controlnet",
      subfolders: ["SD/Canny", "SD/Depth", "SD/OpenPose", "SD/Scribble"],
      extraFiles: { "Icon.png": "not a picture: stands in for the repo's icon\n", "Sample.png": "not a picture: stands in for the repo's sample\n" },
      gaps: [
        "random weights in tiny-sd's configuration (ControlNet's 361 M cannot be fetched here; scripts/onnx-builder/controlnet.ts builds the full size)",
        "the I/O names are those of OnnxStack's converter (OnnxStack.Converter/ControlNet: sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale -> down_block_N_additional_residual, mid_block_additional_residual); float32 inputs and outputs around float16 weights (its convertIO.py) and a float64 [1] conditioning_scale (what OnnxStack's ControlNetDiffuser feeds) are assumed, not read from the published files",
        "SD/HED, SD/MLSD, SD/Normal and SD/Seg are not replicated (no control kind of ours uses them)",
      ],
    },
    {
      // The hub lists StableDiffusion/{Canny, Depth, Inpaint, Instruct, LineArt, LineArtAnime, MLSD, Normal, OpenPose, Scribble, Segmentation, Shuffle, SoftEdge, Tile}/ (model.onnx 723 MB, amuse_template.json, Icon.png, Sample*.png) and StableDiffusionXL/.
      repo: "TensorStack/ControlNet-amuse",
      from: "controlnet",
      subfolders: ["StableDiffusion/LineArt", "StableDiffusion/Scribble"],
      // The hub lists StableDiffusionXL/{Canny, Depth, LineArt, LineArtAnime, OpenPose, Scribble, SoftEdge, Tile, Union}/ with
      // model.onnx (400 kB) and model.onnx.data (2.5 GB: an SDXL ControlNet's 1.25 B weights in float16), Icon.png, Sample*.png.
      sdxlSubfolders: ["StableDiffusionXL/Canny", "StableDiffusionXL/Depth", "StableDiffusionXL/OpenPose"],
      extraFiles: { "amuse_template.json": "{}\n", "Icon.png": "not a picture: stands in for the repo's icon\n" },
      gaps: [
        "random weights in tiny-sd's configuration (StableDiffusionXL/: in the tiny SDXL's, sdxl.ts)",
        "the same I/O assumptions as TensorStack/ControlNet-onnx's replica (the files were not read); amuse_template.json's text was not read",
        "StableDiffusionXL/'s I/O are those of OnnxStack.Converter/ControlNetXL (sample, timestep, encoder_hidden_states, text_embeds, time_ids, controlnet_cond, conditioning_scale -> down_block_{0..8}_additional_residual, mid_block_additional_residual), float32 around float16 weights as the SD ones: assumed, not read from the published files; amuse_template.json is not written in StableDiffusionXL/ (not listed there)",
        "only the subfolders the registry names, and StableDiffusionXL/{Canny, Depth, OpenPose}, are replicated",
      ],
    },
    {
      // The hub lists vae_decoder/model.onnx and vae_encoder/model.onnx (4.91 MB each), README.md and
      // convert_to_onnx.py; its README plugs the two folders into optimum's ORTStableDiffusionPipeline
      // as vae_decoder_session / vae_encoder_session, i.e. diffusers' AutoencoderTiny I/O.
      repo: "deinferno/taesd-onnx",
      from: "taesd",
      imageRange: "minus-one-to-one",
      extraFiles: {
        "README.md": "Replica of deinferno/taesd-onnx (random weights): ONNX files of madebyollin's Tiny AutoEncoder for Stable Diffusion.\n",
        "convert_to_onnx.py": "# Stand-in for the repo's conversion script (not replicated: its text was not read).\n",
      },
      gaps: [
        "random weights (TAESD's trained weights cannot be fetched here)",
        "the graphs' opset (14), I/O names, axis names and image range are those of an Optimum export of diffusers' AutoencoderTiny, as the same author's taesd-openvino conversion script makes it, not read from the published ONNX files",
      ],
    },
    {
      // The hub lists config.json, preprocessor_config.json, README.md and onnx/ with model.onnx (fp32, ~99 MB),
      // model_fp16.onnx, model_quantized.onnx, model_int8.onnx, model_uint8.onnx, model_q4.onnx and model_bnb4.onnx.
      repo: "onnx-community/depth-anything-v2-small",
      from: "depth-anything",
      extraFiles: Object.fromEntries([
        ["README.md", "Replica of onnx-community/depth-anything-v2-small (random weights).\n"],
        ...["fp16", "quantized", "int8", "uint8", "q4", "bnb4"].map((v) => [`onnx/model_${v}.onnx`, `not a graph: stands in for the repo's ${v} variant, which a pull leaves on the hub\n`]),
      ]),
      gaps: [
        "random weights in a tiny configuration of Depth Anything's structure (DINOv2 ViT 32 wide, 4 layers, 2 heads; DPT neck [8, 16, 32, 32], fusion 16), not ViT-S/14's 24.8 M trained weights (scripts/onnx-builder/depth-anything.ts builds the full size); its inputs, outputs, dtypes and dynamic axes are those of Transformers.js' export",
        "the ONNX files' I/O were not read here (taken from Transformers.js' depth-estimation convention); config.json carries only model_type and a few names, not the repo's full config; the other precisions are text stand-ins",
      ],
    },
    {
      // The repo's file list was not read here; the annotators download yolox_l.onnx and dw-ll_ucoco_384.onnx
      // from it, and it is known for DWPose's PyTorch checkpoints too (stood in for by one file).
      repo: "yzd-v/DWPose",
      from: "dwpose",
      extraFiles: {
        "README.md": "Replica of yzd-v/DWPose (random weights).\n",
        "dw-ll_ucoco_384.pth": "not a checkpoint: stands in for the repo's PyTorch weights, which a pull leaves on the hub\n",
      },
      gaps: [
        "I/O-faithful stand-ins with tiny random convolutions, not YOLOX-L and RTMPose-l: the shapes and dtypes the annotators' code reads ([1, 3, 640, 640] -> [1, 8400, 85] with the sigmoid applied to objectness and classes; [1, 3, 384, 288] -> simcc_x [1, 133, 576], simcc_y [1, 133, 768]); the detector is biased to find one person on one 20x20 anchor whatever the picture",
        "the graphs' input and output names (images/output, input/simcc_x/simcc_y) and the repo's other files were not read from the hub",
      ],
    },
    {
      // Stability AI's SDXL-Turbo: ONNX files (Optimum) beside the PyTorch weights in the same repo.
      repo: "stabilityai/sdxl-turbo",
      from: "tiny-sdxl",
      inChannels: 4,
      scheduler: SDXL_TURBO_SCHEDULER,
      sampleSize: 64,
      extraFiles: {
        "unet/diffusion_pytorch_model.fp16.safetensors": "stand-in for the PyTorch weights a pull leaves on the hub\n",
        "vae/config.json": "{}\n",
        "README.md": "Replica of stabilityai/sdxl-turbo's ONNX files (random weights).\n",
      },
      gaps: SDXL_GAPS,
    },
    {
      // SDXL base 1.0: the Optimum ONNX export in the repo beside the PyTorch weights.
      repo: "stabilityai/stable-diffusion-xl-base-1.0",
      from: "tiny-sdxl",
      inChannels: 4,
      scheduler: SDXL_BASE_SCHEDULER,
      sampleSize: 128,
      extraFiles: {
        "unet/diffusion_pytorch_model.safetensors": "stand-in for the PyTorch weights a pull leaves on the hub\n",
        "sd_xl_base_1.0.safetensors": "stand-in\n",
        "README.md": "Replica of stabilityai/stable-diffusion-xl-base-1.0's ONNX files (random weights).\n",
      },
      gaps: SDXL_GAPS,
    },
    {
      // Cyronius/sdxl-lightning-4step-onnx-web (its README): ByteDance's SDXL-Lightning 4-step UNet in SDXL base 1.0 with
      // sdxl-vae-fp16-fix's decoder, Optimum's export converted to float16 with keep_io_types=True (float32 inputs and outputs);
      // text_encoder/ (236 MB), text_encoder_2/ (1.3 GB), unet/ (4.8 GB), vae_decoder/ (95 MB), tokenizer/ and tokenizer_2/
      // (fast tokenizers, tokenizer.json present), scheduler/ (EulerDiscrete, trailing), model_index.json; no vae_encoder/.
      repo: "Cyronius/sdxl-lightning-4step-onnx-web",
      from: "tiny-sdxl",
      inChannels: 4,
      scheduler: SDXL_LIGHTNING_SCHEDULER,
      sampleSize: 128,
      float16: "float32-io",
      externalParts: "every-part",
      vaeEncoder: false,
      tokenizerJson: true,
      extraFiles: {
        "README.md": "Replica of Cyronius/sdxl-lightning-4step-onnx-web's files (random weights): SDXL-Lightning 4-step, ONNX float16 with float32 inputs and outputs.\n",
        ".gitattributes": "*.onnx_data filter=lfs diff=lfs merge=lfs -text\n",
      },
      gaps: [
        ...SDXL_GAPS,
        "the repo's file list was not read: every part's weights are put in model.onnx_data beside its model.onnx, as the sibling repo Cyronius/sdxl-lightning-4step-onnx-web-fp16-3shard lists them (text_encoder/model.onnx + .onnx_data, ...; its UNet's weights in three shards, this repo's in one file is assumed); that tokenizer/ and tokenizer_2/ hold vocab.json and merges.txt beside tokenizer.json (as CLIPTokenizerFast.save_pretrained writes them) is assumed; tokenizer.json is a stand-in written from them",
        "scheduler_config.json and model_index.json were not read: the README's EulerDiscrete with trailing spacing on SDXL base's values; model_index.json as the other SDXL replicas' (StableDiffusionXLPipeline), without _name_or_path being known",
        "float16 by casting the builder's float32 graphs with float32 casts at the inputs and outputs, not onnxconverter-common's conversion (which keeps Resize's scales in float32 and block-lists some ops); the UNet's timestep is the other SDXL replicas' int64 [steps]",
      ],
    },
    {
      // OnnxStack's SDXL base (TensorStack/stable-diffusion-xl-base-1.0-onnx): controlnet/ (config.json, model.onnx 1.24 MB,
      // model.onnx.data 5.13 GB: the control UNet in float16), scheduler/, text_encoder/, text_encoder_2/, tokenizer/,
      // tokenizer_2/, unet/, vae_decoder/, vae_encoder/, model_index.json, Icon.png, Sample*.png, README.md, Licence.txt.
      repo: "TensorStack/stable-diffusion-xl-base-1.0-onnx",
      from: "tiny-sdxl",
      inChannels: 4,
      scheduler: SDXL_BASE_SCHEDULER,
      sampleSize: 128,
      controlUnet: true,
      weightsFile: "model.onnx.data",
      float16: true,
      extraFiles: {
        "Icon.png": "not a picture: stands in for the repo's icon\n",
        "Sample.png": "not a picture: stands in for the repo's sample\n",
        "Licence.txt": "stand-in for the repo's licence text (CreativeML Open RAIL++-M, SDXL base 1.0's)\n",
        "README.md": "Replica of TensorStack/stable-diffusion-xl-base-1.0-onnx (random weights).\n",
      },
      gaps: [
        ...SDXL_GAPS,
        "unet/ and controlnet/ are the builder's tiny SDXL UNet (the control UNet with the 9 + 1 residual inputs, the same weights); their weights go to model.onnx.data as controlnet/'s on the hub (unet/'s file names and every file's I/O types were not read); every part float16 with float16 inputs and outputs (the size of the repo's files says float16; the I/O types are assumed, as for TensorStack/SD-Turbo-onnx's replica); the timestep is the other SDXL replicas' int64 [steps], not read from OnnxStack's export",
        "controlnet/config.json's text was not read (the UNet's diffusers config is written); README.md's and Licence.txt's texts are stand-ins",
      ],
    },
  ];
}

const PARTS = ["text_encoder", "unet", "vae_encoder", "vae_decoder"] as const;
type PartFolder = (typeof PARTS)[number] | "controlnet";

async function makeWritable(p: string): Promise<void> {
  const s = await stat(p);
  await chmod(p, s.isDirectory() ? 0o755 : 0o644);
  if (s.isDirectory()) for (const entry of await readdir(p)) await makeWritable(path.join(p, entry));
}

/** The files a model's external initializers are in. */
function externalFiles(model: Model): string[] {
  const locations = (model.graph?.initializer ?? [])
    .filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    .flatMap((t) => (t.externalData ?? []).filter((e) => e.key === "location").map((e) => e.value ?? ""));
  return [...new Set(locations)];
}

/** Moves a part's external weights to `target` (a new file name, or into model.onnx itself). */
async function placeWeights(partDir: string, target: PipelineReplica["weights"]): Promise<void> {
  const file = path.join(partDir, "model.onnx");
  const model = onnx.ModelProto.decode(await readFile(file));
  const files = externalFiles(model);
  if (files.length === 0 || target === "weights.pb") return;
  const [only] = files;
  if (files.length !== 1 || !only) throw new Error(`${file}: expected one external weights file`);
  const external = model.graph!.initializer!.filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
  if (target === "embedded") {
    const read = initializerReader(partDir);
    try {
      for (const tensor of external) {
        tensor.rawData = read(tensor);
        tensor.externalData = [];
        tensor.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
      }
    } finally {
      read.close();
    }
    await rm(path.join(partDir, only));
  } else {
    for (const tensor of external) for (const e of tensor.externalData ?? []) if (e.key === "location") e.value = target;
    if (only !== target) await rename(path.join(partDir, only), path.join(partDir, target));
  }
  await writeFile(file, onnx.ModelProto.encode(model).finish());
}

/** Rewrites a part as a float16 export (weights, inputs and outputs in float16), its weights kept where they were. */
export async function toFloat16(partDir: string, options: { keepIoTypes?: boolean } = {}): Promise<void> {
  const file = path.join(partDir, "model.onnx");
  const model = onnx.ModelProto.decode(await readFile(file));
  const [location] = externalFiles(model);
  const reader = initializerReader(partDir);
  try {
    convertModelFloats(model, FLOAT, FLOAT16, reader);
  } finally {
    reader.close();
  }
  if (options.keepIoTypes) keepFloat32Io(model.graph!);
  if (location) {
    const chunks: Uint8Array[] = [];
    await externalizeInitializers(model, location, async (chunk) => {
      chunks.push(chunk);
    });
    await writeFile(path.join(partDir, location), Buffer.concat(chunks));
  }
  await writeFile(file, onnx.ModelProto.encode(model).finish());
}

/**
 * float16 weights behind float32 inputs and outputs, as onnxconverter-common's
 * convert_float_to_float16(keep_io_types=True) writes them: each float input is cast to float16
 * on the way in, each float output cast back to float32 on the way out.
 */
function keepFloat32Io(graph: Graph): void {
  const casts: onnxProto.onnx.INodeProto[] = [];
  for (const input of graph.input ?? []) {
    const type = input.type?.tensorType;
    if (type?.elemType !== FLOAT16) continue;
    const inside = `${input.name}_float16`;
    for (const node of graph.node ?? []) node.input = (node.input ?? []).map((name) => (name === input.name ? inside : name));
    casts.push(onnx.NodeProto.create({ opType: "Cast", name: `${input.name}_to_float16`, input: [input.name!], output: [inside], attribute: [onnx.AttributeProto.create({ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: FLOAT16 })] }));
    type.elemType = FLOAT;
  }
  const ends: onnxProto.onnx.INodeProto[] = [];
  for (const output of graph.output ?? []) {
    const type = output.type?.tensorType;
    if (type?.elemType !== FLOAT16) continue;
    const inside = `${output.name}_float16`;
    for (const node of graph.node ?? []) node.output = (node.output ?? []).map((name) => (name === output.name ? inside : name));
    for (const node of graph.node ?? []) node.input = (node.input ?? []).map((name) => (name === output.name ? inside : name));
    ends.push(onnx.NodeProto.create({ opType: "Cast", name: `${output.name}_to_float32`, input: [inside], output: [output.name!], attribute: [onnx.AttributeProto.create({ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: FLOAT })] }));
    type.elemType = FLOAT;
  }
  graph.node = [...casts, ...(graph.node ?? []), ...ends];
}

/** Drops the nodes, initializers and value infos the graph's outputs do not read (nodes are in topological order). */
function keepWhatOutputsRead(graph: Graph): void {
  const read = new Set((graph.output ?? []).map((o) => o.name ?? ""));
  const kept = [...(graph.node ?? [])].reverse().filter((node) => {
    if (!(node.output ?? []).some((o) => read.has(o))) return false;
    for (const input of node.input ?? []) read.add(input);
    return true;
  });
  graph.node = kept.reverse();
  graph.initializer = (graph.initializer ?? []).filter((t) => read.has(t.name ?? ""));
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => read.has(v.name ?? ""));
}

/**
 * Gives the fixture's (diffusers-script) text encoder and VAE encoder Optimum's inputs and outputs:
 * input_ids int64, and a VAE encoder that ends at quant_conv's output, the posterior's mean ‖ logvar
 * [B, 8, h, w], named latent_parameters (Optimum since d3c56cd5), leaving the sampling to the pipeline.
 */
async function toOptimumIo(partDir: string, part: PartFolder): Promise<void> {
  if (part !== "text_encoder" && part !== "vae_encoder") return;
  const file = path.join(partDir, "model.onnx");
  const model = onnx.ModelProto.decode(await readFile(file));
  const graph = model.graph!;
  if (part === "text_encoder") {
    // Its readers take int64 as well: Shape, Reshape, then the embedding's Gather and the Casts (to int32) before ArgMax.
    const ids = graph.input!.find((v) => v.name === "input_ids")?.type?.tensorType;
    if (!ids) throw new Error(`${file}: no input_ids input`);
    ids.elemType = onnx.TensorProto.DataType.INT64;
  } else {
    // latent_sample = Add(Slice(moments) = mean, std · noise): the Slice's data input is the moments.
    const producer = (value: string | undefined) => graph.node!.find((n) => n.output!.includes(value ?? ""));
    const slice = producer(producer("latent_sample")?.input?.[0]);
    const moments = slice?.opType === "Slice" ? slice.input![0] : undefined;
    if (!moments) throw new Error(`${file}: latent_sample is not Add(Slice(moments), ·)`);
    for (const node of graph.node!) {
      node.input = node.input!.map((v) => (v === moments ? "latent_parameters" : v));
      node.output = node.output!.map((v) => (v === moments ? "latent_parameters" : v));
    }
    const dims = ["batch_size", 8, "height_latent", "width_latent"].map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d }));
    graph.output = [{ name: "latent_parameters", type: { tensorType: { elemType: FLOAT, shape: { dim: dims } } } }];
    keepWhatOutputsRead(graph);
  }
  await writeFile(file, onnx.ModelProto.encode(model).finish());
}

/** The diffusers configs Optimum writes per part (what the loader reads of them). */
function partConfig(part: PartFolder, replica: PipelineReplica): Record<string, unknown> | null {
  switch (part) {
    case "unet":
    case "controlnet":
      return {
        _class_name: "UNet2DConditionModel",
        in_channels: replica.from === "tiny-sd-inpaint" ? 9 : 4,
        out_channels: 4,
        sample_size: 32,
        block_out_channels: [32, 64],
        cross_attention_dim: 32,
        ...(replica.from === "tiny-lcm" ? { time_cond_proj_dim: 256 } : {}),
      };
    case "vae_decoder":
    case "vae_encoder":
      return { _class_name: "AutoencoderKL", block_out_channels: [32, 32, 32, 32], latent_channels: 4, sample_size: 64, scaling_factor: 0.18215 };
    case "text_encoder":
      return { architectures: ["CLIPTextModel"], hidden_size: 32, max_position_embeddings: 77, model_type: "clip_text_model" };
  }
}

/** Writes one replica folder at `dest` (replacing what is there). */
export async function writeReplica(replica: Replica, dest: string): Promise<void> {
  await rm(dest, { recursive: true, force: true });
  if (replica.from === "controlnet") {
    for (const sub of replica.subfolders) {
      await writeControlNetFolder(path.join(dest, sub));
      await toFloat16(path.join(dest, sub), { keepIoTypes: true });
      for (const [file, text] of Object.entries(replica.extraFiles)) await writeFile(path.join(dest, sub, file), text);
    }
    for (const sub of replica.sdxlSubfolders ?? []) {
      await writeControlNetFolder(path.join(dest, sub), tinySdxlAsSd15(), { externalData: "model.onnx.data" });
      await toFloat16(path.join(dest, sub), { keepIoTypes: true });
      await writeFile(path.join(dest, sub, "Icon.png"), "not a picture: stands in for the repo's icon\n");
      await writeFile(path.join(dest, sub, "Sample.png"), "not a picture: stands in for the repo's sample\n");
    }
    await writeFile(path.join(dest, "README.md"), `Replica of ${replica.repo} (random weights).\n`);
    return;
  }
  if (replica.from === "dwpose") {
    await writeDwposeFolder(dest);
    for (const [file, text] of Object.entries(replica.extraFiles)) await writeFile(path.join(dest, file), text);
    return;
  }
  if (replica.from === "depth-anything") {
    await writeDepthAnythingFolder(dest);
    for (const [file, text] of Object.entries(replica.extraFiles)) await writeFile(path.join(dest, file), text);
    return;
  }
  if (replica.from === "taesd") {
    await writeTaesdFolder(dest, { imageRange: replica.imageRange });
    for (const [file, text] of Object.entries(replica.extraFiles)) await writeFile(path.join(dest, file), text);
    return;
  }
  if (replica.from === "tiny-sdxl") {
    await writeSdxlFolder(dest, {
      config: tinySdxlConfig(replica.inChannels),
      scheduler: replica.scheduler,
      tokenizerDir: path.join(FIXTURES_DIR, "tiny-sd", "tokenizer"),
      sampleSize: replica.sampleSize,
      nameOrPath: replica.repo,
      ...(replica.controlUnet ? { controlUnet: true } : {}),
      ...(replica.weightsFile ? { weightsFile: replica.weightsFile } : {}),
      ...(replica.externalParts ? { externalParts: replica.externalParts } : {}),
      ...(replica.vaeEncoder === false ? { vaeEncoder: false } : {}),
      ...(replica.tokenizerJson ? { tokenizerJson: true } : {}),
    });
    if (replica.float16) {
      const keepIoTypes = replica.float16 === "float32-io";
      for (const part of await readdir(dest, { withFileTypes: true })) {
        if (part.isDirectory() && (await stat(path.join(dest, part.name, "model.onnx")).then(() => true, () => false))) await toFloat16(path.join(dest, part.name), { keepIoTypes });
      }
    }
    for (const [file, text] of Object.entries(replica.extraFiles)) {
      await mkdir(path.dirname(path.join(dest, file)), { recursive: true });
      await writeFile(path.join(dest, file), text);
    }
    return;
  }
  await cp(path.join(FIXTURES_DIR, replica.from), dest, { recursive: true });
  await makeWritable(dest);
  if (replica.controlUnet) await writeControlUnet(dest);
  for (const part of [...PARTS, ...(replica.controlUnet ? (["controlnet"] as const) : [])]) {
    await placeWeights(path.join(dest, part), replica.weights);
    if (replica.io === "optimum") await toOptimumIo(path.join(dest, part), part);
    if (replica.float16) await toFloat16(path.join(dest, part));
    const config = replica.partConfigs || part === "controlnet" ? partConfig(part, replica) : null;
    if (config) await writeFile(path.join(dest, part, "config.json"), JSON.stringify(config, null, 2));
  }
  await writeFile(path.join(dest, "scheduler", "scheduler_config.json"), JSON.stringify(replica.scheduler, null, 2));
  const index = JSON.parse(await readFile(path.join(dest, "model_index.json"), "utf8")) as Record<string, unknown>;
  const scheduler = String(replica.scheduler._class_name);
  await writeFile(path.join(dest, "model_index.json"), JSON.stringify({ ...index, _class_name: replica.pipeline, scheduler: ["diffusers", scheduler] }, null, 2));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: npx tsx scripts/replicas.ts OUT_DIR");
    process.exit(2);
  }
  await mkdir(out, { recursive: true });
  for (const replica of await replicas()) {
    const dest = path.join(out, replica.repo.replace("/", "--"));
    await writeReplica(replica, dest);
    console.log(`${replica.repo} -> ${dest}${replica.gaps.length ? ` (not replicated: ${replica.gaps.join("; ")})` : ""}`);
  }
}
