/** `underpaint generate`: one job through the engine, without the daemon, written to PNG files. */
import { randomInt } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { z } from "zod";
import { ControlKind, SchedulerName, type Expansion } from "../../protocol";
import { composite } from "../imaging/composite";
import { expandCanvas } from "../imaging/outpaint";
import { regionOf, type Pixels } from "../../geometry";
import { cropImage, pasteImage } from "../imaging/image";
import { DiffusionEngine } from "../engine/diffusion-engine";
import type { EngineResult, GenerationJob, GenerationSettings } from "../engine/engine";
import { Int8Unets } from "../models/int8-unets";
import { Float32Copies } from "../models/float32-copies";
import { OptimizedModelCache, optimizedCacheSwitchedOff } from "../models/optimized-models";
import { cacheDir, defaultModelsDir } from "../paths";
import { intFlag, numberFlag, parseWith, UsageError } from "./args";
import { ProgressBar } from "./progress-bar";

export const GENERATE_USAGE = `underpaint generate --model DIR|ID --prompt TEXT [--negative TEXT] [--steps N] [--guidance G]
    [--scheduler ${SchedulerName.options.join("|")}] [--seed S] [--width W --height H]
    [--init IMAGE [--strength F] [--mask MASK.png | --expand LEFT,TOP,RIGHT,BOTTOM]]
    [--control-image FILE --control-kind ${ControlKind.options.join("|")} [--control-net ID]
     [--control-strength S] [--control-start A --control-end B]]
    [--variations N] [--truncate] [--models DIR] [--no-optimized-cache] [--unet-int8] --out FILE.png
      --control-image: a ControlNet follows this picture (txt2img, img2img; a control-capable model)
      --mask: inpaint where the mask is white (black = keep); writes the picture at the input's size
      --context automatic|selection|image: what the model sees around the mask (default automatic)
      --expand: extend the canvas by that many pixels per side; writes the enlarged picture
      --unet-int8: run the UNet on the CPU in int8 (quantized copy cached; pictures differ slightly from float32)
      (with --mask or --expand, W x H caps the pixels the model works on; default 1.5 x its native area)`;

export async function generateCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" },
      prompt: { type: "string" },
      negative: { type: "string", default: "" },
      steps: { type: "string", default: "20" },
      guidance: { type: "string", default: "7.5" },
      scheduler: { type: "string", default: "dpmpp_2m_karras" },
      seed: { type: "string" },
      width: { type: "string" },
      height: { type: "string" },
      init: { type: "string" },
      strength: { type: "string" },
      mask: { type: "string" },
      context: { type: "string", default: "automatic" },
      expand: { type: "string" },
      variations: { type: "string", default: "1" },
      truncate: { type: "boolean", default: false },
      models: { type: "string" },
      "no-optimized-cache": { type: "boolean", default: false },
      "unet-int8": { type: "boolean", default: false },
      out: { type: "string" },
      "control-image": { type: "string" },
      "control-kind": { type: "string" },
      "control-net": { type: "string" },
      "control-strength": { type: "string", default: "1" },
      "control-start": { type: "string", default: "0" },
      "control-end": { type: "string", default: "1" },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model is required: a model folder or the id of an installed model.");
  if (values.prompt === undefined) throw new UsageError("--prompt is required.");
  if (!values.out) throw new UsageError("--out FILE.png is required.");

  const bar = new ProgressBar();
  const optimizedModels =
    values["no-optimized-cache"] || optimizedCacheSwitchedOff()
      ? null
      : // Only what went wrong: which copy was written or read is the daemon log's business.
        new OptimizedModelCache({ dir: cacheDir(), log: (level, message) => level === "warn" && bar.note(`warning: ${message}`) });
  const warn = (level: "info" | "warn", message: string) => level === "warn" && bar.note(`warning: ${message}`);
  const unetInt8 = values["unet-int8"] ? new Int8Unets(path.join(cacheDir(), "int8"), warn) : null;
  // float16 parts cannot run on the CPU as they are: their float32 copies are kept even with the optimized cache off.
  const float32Copies = new Float32Copies(path.join(cacheDir(), "float32"), warn);
  const engine = new DiffusionEngine({ modelsDir: values.models ?? defaultModelsDir(), optimizedModels, unetInt8, float32Copies });
  const isFolder = await stat(values.model).then((s) => s.isDirectory(), () => false);
  const modelId = isFolder ? await engine.useFolder(values.model) : values.model;
  const { models, unavailable } = await engine.capabilities();
  const model = models.find((m) => m.id === modelId);
  const refused = unavailable.find((m) => m.id === modelId);
  if (!model && refused) throw new UsageError(`The model "${modelId}" cannot run here: ${refused.message}`);
  if (!model) throw new UsageError(`There is no model "${modelId}"; installed: ${models.map((m) => m.id).join(", ") || "none"}.`);

  const size = model.nativeResolution;
  const width = parseWith(intFlag(64, 4096), values.width ?? size, "width");
  const height = parseWith(intFlag(64, 4096), values.height ?? size, "height");
  const seed = parseWith(intFlag(0, Number.MAX_SAFE_INTEGER), values.seed ?? randomInt(0, 2 ** 32), "seed");
  if ((values.mask || values.expand) && !values.init) throw new UsageError("--mask and --expand need --init IMAGE.");
  if (values.mask && values.expand) throw new UsageError("Use either --mask (inpaint) or --expand (outpaint), not both.");
  const image = values.init ? await readPixels(values.init, 3) : undefined;
  const mask = values.mask ? await readPixels(values.mask, 1) : undefined;
  const expand = values.expand ? parseExpansion(values.expand) : undefined;
  const strength = parseWith(numberFlag(0, 1), values.strength ?? (image && !mask && !expand ? 0.75 : 1), "strength");
  const control = await controlOf(values);
  const settings: GenerationSettings = {
    model: modelId,
    prompt: values.prompt,
    negativePrompt: values.negative,
    seed,
    steps: parseWith(intFlag(1, 200), values.steps, "steps"),
    guidance: parseWith(numberFlag(0, 50), values.guidance, "guidance"),
    scheduler: parseWith(SchedulerName, values.scheduler, "scheduler"),
    variations: parseWith(intFlag(1, 8), values.variations, "variations"),
    truncatePrompt: values.truncate,
    previews: false,
    ...(control ? { control } : {}),
  };
  // --width/--height: the picture's size and the model's working size for whole pictures; the budget for edits.
  const wanted = { width, height };
  const whole = { output: wanted, size: wanted };
  const placement = image ? { canvas: { width: image.width, height: image.height }, region: regionOf(image) } : undefined;
  const budget = values.width || values.height ? { budget: width * height } : {};
  const job: GenerationJob =
    image && mask
      ? { ...settings, mode: "inpaint", image, mask, strength, context: parseWith(z.enum(["automatic", "selection", "image"]), values.context, "context"), ...placement!, ...budget }
      : image && expand
        ? { ...settings, mode: "outpaint", image, expand, ...placement!, ...budget }
        : image
          ? { ...settings, mode: "img2img", image, strength, ...whole }
          : { ...settings, mode: "txt2img", ...whole };
  const notices: string[] = [];
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  try {
    const results = await engine.run(job, {
      signal: controller.signal,
      onProgress: (p) => bar.update(p.stage, p.step, p.total),
      onNotice: (notice) => notices.push(notice),
    });
    bar.done();
    for (const notice of notices) process.stderr.write(`note: ${notice}\n`);
    for (const result of results) {
      const file = results.length > 1 ? variationFile(values.out, result.variation) : values.out;
      const { data, width: w, height: h, channels } = image && (mask || expand) ? pictureOf(image, result, expand) : result.image;
      await sharp(data, { raw: { width: w, height: h, channels } }).png().toFile(file);
      console.log(`wrote ${file} (seed ${result.seed})`);
    }
  } finally {
    await engine.dispose();
  }
}

/** The --control-* flags as the job's control, or undefined without --control-image. */
async function controlOf(values: Record<string, string | boolean | undefined>): Promise<GenerationSettings["control"]> {
  const file = values["control-image"];
  if (typeof file !== "string") {
    if (values["control-kind"] !== undefined || values["control-net"] !== undefined) throw new UsageError("--control-kind and --control-net need --control-image FILE.");
    return undefined;
  }
  if (values["control-kind"] === undefined) throw new UsageError(`--control-image needs --control-kind ${ControlKind.options.join("|")}.`);
  const kind = parseWith(ControlKind, values["control-kind"], "control-kind");
  const start = parseWith(numberFlag(0, 1), values["control-start"], "control-start");
  const end = parseWith(numberFlag(0, 1), values["control-end"], "control-end");
  if (start >= end) throw new UsageError(`--control-end (${end}) must be after --control-start (${start}).`);
  const net = values["control-net"];
  return {
    kind,
    image: await readPixels(file, 3),
    strength: parseWith(numberFlag(0, 2), values["control-strength"], "control-strength"),
    start,
    end,
    ...(typeof net === "string" ? { controlNet: net } : {}),
  };
}

/** FILE.png -> FILE-i.png */
export function variationFile(out: string, variation: number): string {
  const ext = path.extname(out);
  return `${out.slice(0, out.length - ext.length)}-${variation}${ext || ".png"}`;
}

async function readPixels(file: string, channels: 1 | 3): Promise<Pixels> {
  let image = sharp(file).flatten({ background: { r: 255, g: 255, b: 255 } });
  image = channels === 1 ? image.greyscale().extractChannel(0) : image.removeAlpha();
  const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function parseExpansion(text: string): Expansion {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length !== 4) throw new UsageError(`--expand takes LEFT,TOP,RIGHT,BOTTOM in pixels (got "${text}").`);
  const [left, top, right, bottom] = parts.map((p, i) => parseWith(intFlag(0, 100_000), p, `expand (${["left", "top", "right", "bottom"][i]})`));
  return { left: left!, top: top!, right: right!, bottom: bottom! };
}

/** The whole picture a masked edit makes: the result layer composited over the (enlarged) input at its place. */
function pictureOf(input: Pixels, result: EngineResult, expand: Expansion | undefined): Pixels {
  const base = expand ? expandCanvas(input, expand).canvas : input;
  const { image: layer, region } = result;
  const under = cropImage(base, region);
  const plane = layer.width * layer.height;
  const rgb = new Uint8Array(plane * 3);
  const alpha = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) {
    rgb[i * 3] = layer.data[i * 4]!;
    rgb[i * 3 + 1] = layer.data[i * 4 + 1]!;
    rgb[i * 3 + 2] = layer.data[i * 4 + 2]!;
    alpha[i] = layer.data[i * 4 + 3]!;
  }
  const patch = composite(under, { width: layer.width, height: layer.height, channels: 3, data: rgb }, { width: layer.width, height: layer.height, channels: 1, data: alpha });
  return pasteImage(base, patch, region);
}
