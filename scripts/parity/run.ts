/**
 * Runs reference cases through the engine's own pipeline (the same model loading, tokenizer,
 * schedulers and sessions as the daemon) and compares every stage with diffusers' numbers.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { generate, type GenerateParams, type GenerateTrace, type LoadedModel } from "../../daemon/engine/pipeline/generate";
import { concatArrays } from "../../daemon/engine/pipeline/tensor";
import type { PromptEncoding } from "../../daemon/engine/pipeline/text";
import { TorchGenerator } from "../../daemon/engine/rng";
import type { NoiseSource } from "../../daemon/engine/schedulers";
import { ClipTokenizer } from "../../daemon/engine/tokenizer";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { ModelSessions } from "../../daemon/models/model-sessions";
import { compare, Tolerance, type StageResult } from "./compare";
import { caseScheduler, ReferenceCase, ReferenceIndex } from "./reference";

export interface CaseReport {
  name: string;
  kind: string;
  run: "recorded draws" | "seed only" | "-";
  stages: StageResult[];
}

/** Kinds the engine runs; any other prints SKIP. */
const SUPPORTED_KINDS = new Set(["txt2img", "img2img", "inpaint", "inpaint_legacy"]);

/** Hands out the case's recorded torch.randn draws in order. */
class RecordedDraws implements NoiseSource {
  private next = 0;
  constructor(private readonly draws: Float32Array[]) {}
  randn(shape: readonly number[]): Float32Array {
    const draw = this.draws[this.next++];
    const count = shape.reduce((a, b) => a * b, 1);
    if (!draw) throw new Error(`the pipeline drew noise #${this.next} but the case recorded only ${this.draws.length}`);
    if (draw.length !== count) throw new Error(`noise draw #${this.next} has ${draw.length} values; the pipeline asked for [${shape.join(", ")}]`);
    return draw;
  }
  get used(): number {
    return this.next;
  }
}

class ModelPool {
  private readonly loaded = new Map<string, Promise<LoadedModel>>();
  constructor(private readonly fixtures: string) {}
  get(name: string): Promise<LoadedModel> {
    let model = this.loaded.get(name);
    if (!model) {
      model = (async () => {
        const folder = await loadModelFolder(path.join(this.fixtures, name));
        return { folder, sessions: new ModelSessions(folder, { devices: ["cpu"] }), tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) };
      })();
      this.loaded.set(name, model);
    }
    return model;
  }
  async release(): Promise<void> {
    for (const model of this.loaded.values()) await (await model).sessions.release();
  }
}

interface Captured {
  positive?: PromptEncoding;
  negative?: PromptEncoding | null;
  steps: Float32Array[];
  decoded: Float32Array[];
  encodedMeans: Float32Array[];
}

function capture(): { trace: GenerateTrace; got: Captured } {
  const got: Captured = { steps: [], decoded: [], encodedMeans: [] };
  return {
    got,
    trace: {
      prompt: (positive, negative) => {
        got.positive = positive;
        got.negative = negative;
      },
      encoded: (mean) => got.encodedMeans.push(mean.slice()),
      step: (_i, _n, latents) => got.steps.push(latents.slice()),
      decoded: (_b, unit) => got.decoded.push(unit.slice()),
    },
  };
}

/** CHW planes of each image -> the reference's [B, H, W, 3]. */
function toNhwc(images: Float32Array[], width: number, height: number): Float32Array {
  const plane = width * height;
  const out = new Float32Array(images.length * plane * 3);
  images.forEach((chw, b) => {
    for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[(b * plane + i) * 3 + c] = chw[c * plane + i]!;
  });
  return out;
}

function flatIds(encoding: PromptEncoding | null | undefined): Int32Array | undefined {
  return encoding ? concatArrays(Int32Array, encoding.ids.flat()) : undefined;
}

async function runOnce(reference: ReferenceCase, model: LoadedModel, noise: NoiseSource, latents?: Float32Array): Promise<{ stages: StageResult[]; error?: string }> {
  const m = reference.manifest;
  const { prompts, negatives } = reference.prompts();
  const kind = caseScheduler(m)!;
  const strength = m.params.strength ?? 1;
  let init: GenerateParams["init"];
  let inpaint: GenerateParams["inpaint"];
  if (m.kind === "img2img") {
    init = { rgb: Uint8Array.from(await reference.floats("init_image_u8")), strength };
  } else if (m.kind === "inpaint" || m.kind === "inpaint_legacy") {
    inpaint = {
      rgb: Uint8Array.from(await reference.floats("init_image_u8")),
      mask: Uint8Array.from(await reference.floats("mask_u8")),
      strength,
      variant: m.kind === "inpaint_legacy" ? "legacy" : "blend",
    };
  }
  const { trace, got } = capture();
  const stages: StageResult[] = [];
  try {
    await generate(
      model,
      {
        prompts,
        negativePrompts: negatives,
        width: m.params.width,
        height: m.params.height,
        steps: m.params.num_inference_steps,
        guidance: m.params.guidance_scale,
        scheduler: kind,
        eta: m.params.eta ?? 0,
        truncatePrompt: true,
        ...(init ? { init } : {}),
        ...(inpaint ? { inpaint } : {}),
      },
      noise,
      // A case built from the model folder's own file replays it through the engine's from_config;
      // the others replay the config diffusers recorded.
      { trace, ...(m.scheduler.config_file ? {} : { schedulerConfig: m.scheduler.config }), ...(latents ? { latents } : {}) },
    );
  } catch (error) {
    return { stages, error: error instanceof Error ? error.message : String(error) };
  }
  const ids = await reference.tensor("prompt_input_ids");
  stages.push(compare("token ids", flatIds(got.positive), ids.data, Tolerance.tokens));
  const embeds = await reference.floats("prompt_embeds");
  stages.push(compare("text embeddings", got.positive?.embeddings, embeds, Tolerance.module(embeds)));
  if (reference.has("negative_input_ids")) {
    stages.push(compare("negative token ids", flatIds(got.negative), (await reference.tensor("negative_input_ids")).data, Tolerance.tokens));
    const negative = await reference.floats("negative_embeds");
    stages.push(compare("negative embeddings", got.negative?.embeddings ?? undefined, negative, Tolerance.module(negative)));
  }
  if (reference.has("vae_encoder_posterior_mean")) {
    const mean = await reference.floats("vae_encoder_posterior_mean");
    const ours = got.encodedMeans.length ? Float32Array.from(got.encodedMeans.flatMap((x) => Array.from(x))) : undefined;
    stages.push(compare(`vae encoder (${got.encodedMeans.length} calls)`, ours, mean, Tolerance.vaeEncoder));
  }
  const after = await reference.tensor("latents_after_step");
  const steps = after.shape[0]!;
  const size = after.data.length / steps;
  if (got.steps.length !== steps) {
    stages.push({ stage: "step count", verdict: "FAIL", maxAbsError: Infinity, tolerance: 0, note: `ran ${got.steps.length} steps, expected ${steps}` });
  }
  for (let i = 0; i < steps; i++) {
    const expected = after.data.subarray(i * size, (i + 1) * size);
    stages.push(compare(`latents step ${i + 1}/${steps}`, got.steps[i], expected, Tolerance.latents(expected)));
  }
  const image = await reference.floats("image");
  stages.push(compare("final image", toNhwc(got.decoded, m.params.width, m.params.height), image, Tolerance.image));
  return { stages };
}

/** Our generator must reproduce every draw diffusers made, in order. */
async function checkGenerator(reference: ReferenceCase): Promise<StageResult> {
  const { seed, draws } = reference.manifest.rng;
  const generator = new TorchGenerator(seed);
  let worst = 0;
  for (const draw of draws) {
    if (draw.from_generator === false) continue;
    const ours = generator.randn(draw.shape);
    const recorded = await reference.floats(draw.tensor);
    worst = Math.max(worst, compare("", ours, recorded, 0).maxAbsError);
  }
  return { stage: `rng: ${draws.length} draws from seed ${seed}`, verdict: worst === 0 ? "PASS" : "FAIL", maxAbsError: worst, tolerance: 0 };
}

export async function runCase(dir: string, pool: ModelPool): Promise<CaseReport[]> {
  const reference = await ReferenceCase.load(dir);
  const m = reference.manifest;
  if (!SUPPORTED_KINDS.has(m.kind)) {
    return [{ name: m.case, kind: m.kind, run: "-", stages: [{ stage: `${m.kind} (masked editing)`, verdict: "SKIP", maxAbsError: NaN, tolerance: NaN }] }];
  }
  if (!caseScheduler(m)) {
    return [{ name: m.case, kind: m.kind, run: "-", stages: [{ stage: `scheduler ${m.scheduler.kind}`, verdict: "FAIL", maxAbsError: NaN, tolerance: NaN, note: "unknown scheduler" }] }];
  }
  const model = await pool.get(m.model);
  // A case that passed `latents=` drew them itself (the "oracle" draw); the pipeline then draws the rest.
  const given = reference.has("latents_init") ? await reference.floats("latents_init") : undefined;
  const pipelineDraws = m.rng.draws.filter((d) => !(given && d.caller?.startsWith("oracle")));
  const draws = await Promise.all(pipelineDraws.map((d) => reference.floats(d.tensor)));
  const recorded = new RecordedDraws(draws);
  const reports: CaseReport[] = [];
  const first = await runOnce(reference, model, recorded, given);
  if (!first.error && recorded.used !== draws.length) {
    first.stages.push({ stage: "noise draws", verdict: "FAIL", maxAbsError: Infinity, tolerance: 0, note: `used ${recorded.used} of ${draws.length} recorded draws` });
  }
  if (first.error) first.stages.push({ stage: "run", verdict: "FAIL", maxAbsError: Infinity, tolerance: 0, note: first.error });
  first.stages.push(await checkGenerator(reference));
  reports.push({ name: m.case, kind: m.kind, run: "recorded draws", stages: first.stages });
  if (m.identical_to_generator_only_run) {
    const seeded = await runOnce(reference, model, new TorchGenerator(m.rng.seed));
    if (seeded.error) seeded.stages.push({ stage: "run", verdict: "FAIL", maxAbsError: Infinity, tolerance: 0, note: seeded.error });
    reports.push({ name: m.case, kind: m.kind, run: "seed only", stages: seeded.stages });
  }
  return reports;
}

const GoldenFile = z.object({
  cases: z.array(z.object({ id: z.string(), text: z.string(), input_ids: z.array(z.number().int()) })),
});

/** Every prompt of a tokenizer-golden.json, tokenized with a fixture model's tokenizer. */
export async function runTokenizerGolden(file: string, pool: ModelPool, modelName = "tiny-sd"): Promise<CaseReport[]> {
  const golden = GoldenFile.parse(JSON.parse(await readFile(file, "utf8")));
  const { tokenizer } = await pool.get(modelName);
  return golden.cases.map((c) => ({
    name: `tokenizer ${c.id}`,
    kind: "tokenizer",
    run: "-" as const,
    stages: [compare("token ids", tokenizer.tokenizeTruncated(c.text).ids, c.input_ids, 0)],
  }));
}

export async function runFolder(folder: string, fixtures: string, onReport: (r: CaseReport) => void = () => {}): Promise<CaseReport[]> {
  const index = ReferenceIndex.parse(JSON.parse(await readFile(path.join(folder, "index.json"), "utf8")));
  const pool = new ModelPool(fixtures);
  const reports: CaseReport[] = [];
  try {
    for (const entry of index.cases) {
      for (const report of await runCase(path.join(folder, entry.dir), pool)) {
        reports.push(report);
        onReport(report);
      }
    }
    const golden = path.join(folder, "tokenizer-golden.json");
    if (await stat(golden).then(() => true, () => false)) {
      for (const report of await runTokenizerGolden(golden, pool)) {
        reports.push(report);
        onReport(report);
      }
    }
  } finally {
    await pool.release();
  }
  return reports;
}
