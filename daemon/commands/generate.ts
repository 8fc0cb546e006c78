/** `underpaint generate`: one job through the engine, without the daemon, written to PNG files. */
import { randomInt } from "node:crypto";
import { stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { SchedulerName } from "../../protocol";
import { DiffusionEngine } from "../engine/diffusion-engine";
import type { Raster } from "../engine/engine";
import { defaultModelsDir } from "../paths";
import { intFlag, numberFlag, parseWith, UsageError } from "./args";
import { ProgressBar } from "./progress-bar";

export const GENERATE_USAGE = `underpaint generate --model DIR|ID --prompt TEXT [--negative TEXT] [--steps N] [--guidance G]
    [--scheduler ${SchedulerName.options.join("|")}] [--seed S] [--width W --height H]
    [--init IMAGE --strength F] [--variations N] [--truncate] [--models DIR] --out FILE.png`;

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
      strength: { type: "string", default: "0.75" },
      variations: { type: "string", default: "1" },
      truncate: { type: "boolean", default: false },
      models: { type: "string" },
      out: { type: "string" },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError("--model is required: a model folder or the id of an installed model.");
  if (values.prompt === undefined) throw new UsageError("--prompt is required.");
  if (!values.out) throw new UsageError("--out FILE.png is required.");

  const engine = new DiffusionEngine({ modelsDir: values.models ?? defaultModelsDir() });
  const isFolder = await stat(values.model).then((s) => s.isDirectory(), () => false);
  const modelId = isFolder ? await engine.useFolder(values.model) : values.model;
  const { models } = await engine.capabilities();
  const model = models.find((m) => m.id === modelId);
  if (!model) throw new UsageError(`There is no model "${modelId}"; installed: ${models.map((m) => m.id).join(", ") || "none"}.`);

  const size = model.nativeResolution;
  const width = parseWith(intFlag(64, 4096), values.width ?? size, "width");
  const height = parseWith(intFlag(64, 4096), values.height ?? size, "height");
  const seed = parseWith(intFlag(0, Number.MAX_SAFE_INTEGER), values.seed ?? randomInt(0, 2 ** 32), "seed");
  let image: Raster | undefined;
  if (values.init) {
    const { data, info } = await sharp(values.init).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    image = { width: info.width, height: info.height, channels: 3, bitsPerChannel: 8, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  }
  const bar = new ProgressBar();
  const controller = new AbortController();
  process.once("SIGINT", () => controller.abort());
  try {
    const results = await engine.run(
      {
        jobId: 1,
        mode: image ? "img2img" : "txt2img",
        model: modelId,
        prompt: values.prompt,
        negativePrompt: values.negative,
        seed,
        steps: parseWith(intFlag(1, 200), values.steps, "steps"),
        guidance: parseWith(numberFlag(0, 50), values.guidance, "guidance"),
        strength: parseWith(numberFlag(0, 1), values.strength, "strength"),
        scheduler: parseWith(SchedulerName, values.scheduler, "scheduler"),
        width,
        height,
        variations: parseWith(intFlag(1, 8), values.variations, "variations"),
        truncatePrompt: values.truncate,
        previews: false,
        ...(image ? { image } : {}),
      },
      { signal: controller.signal, onProgress: (p) => bar.update(p.stage, p.step, p.total) },
    );
    bar.done();
    for (const result of results) {
      const file = results.length > 1 ? variationFile(values.out, result.variation) : values.out;
      const { data, width: w, height: h, channels } = result.image;
      await sharp(data, { raw: { width: w, height: h, channels } }).png().toFile(file);
      console.log(`wrote ${file} (seed ${result.seed})`);
    }
  } finally {
    await engine.dispose();
  }
}

/** FILE.png -> FILE-i.png */
export function variationFile(out: string, variation: number): string {
  const ext = path.extname(out);
  return `${out.slice(0, out.length - ext.length)}-${variation}${ext || ".png"}`;
}
