/**
 * SDXL's conditioning, as diffusers' StableDiffusionXLPipeline computes it (encode_prompt,
 * _get_add_time_ids):
 *
 *   encoder_hidden_states = concat(penultimate hidden state of text_encoder,
 *                                  penultimate hidden state of text_encoder_2)   on the last axis
 *   text_embeds           = text_encoder_2's pooled, projected output
 *   time_ids              = [original height, original width, crop top, crop left, target height, target width]
 *
 * With guidance the rows are [uncond; cond]; an empty negative prompt gives zero uncond rows when
 * the model says force_zeros_for_empty_prompt (SDXL base and turbo do). Long prompts are encoded in
 * 77-token windows as for SD (text.ts); the pooled embedding is the first window's.
 */
import type { InferenceSession, Tensor } from "onnxruntime-node";
import type { PartSession } from "../../models/model-sessions";
import { makeTensor, tensorToFloat32, type AddedConditionIO, type TextEncoderIO } from "../../models/session-io";
import { EngineError } from "../engine";
import type { ClipTokenizer } from "../tokenizer";
import { concatArrays, concatBatch } from "./tensor";
import { tokenize, type PromptEncoding } from "./text";

/** Where SDXL's two text encoders come from: a model's sessions. */
export interface SdxlTextEncoders {
  textEncoder(): Promise<PartSession<TextEncoderIO>>;
  textEncoder2(): Promise<PartSession<TextEncoderIO>>;
}

/** What one encoder gives per prompt: the penultimate hidden state of every window, and the first window's pooled output. */
interface EncoderOutput {
  /** [prompts, windows · 77, dim] */
  hidden: Float32Array;
  dim: number;
  /** [prompts, pooledWidth], or null when the encoder has no pooled output. */
  pooled: Float32Array | null;
  pooledWidth: number;
}

/** Runs one text encoder on [prompts][windows] ids, reading hidden_states[-2] (and the pooled output when asked). */
export async function runPenultimate(encoder: PartSession<TextEncoderIO>, ids: Int32Array[][], wantPooled: boolean): Promise<EncoderOutput> {
  const { io } = encoder;
  const penultimate = io.hiddenStates[io.hiddenStates.length - 2];
  if (!penultimate) throw new EngineError("model_unavailable", `${encoder.path} gives no hidden_states.N outputs, and SDXL reads the penultimate one.`);
  if (wantPooled && !io.pooled) throw new EngineError("model_unavailable", `${encoder.path} gives no pooled text_embeds output.`);
  const prompts = ids.length;
  const windows = ids[0]!.length;
  const length = ids[0]![0]!.length;
  const flat = concatArrays(Int32Array, ids.flat());
  const names = wantPooled && io.pooled ? [penultimate, io.pooled] : [penultimate];
  const outputs = await (encoder.session as InferenceSession).run({ [io.inputIds]: makeTensor(io.inputIdsType, flat, [prompts * windows, length]) }, names);
  const hidden = tensorToFloat32(outputs[penultimate]!);
  const dim = hidden.length / (prompts * windows * length);
  if (!wantPooled || !io.pooled) return { hidden, dim, pooled: null, pooledWidth: 0 };
  const allPooled = tensorToFloat32(outputs[io.pooled]!);
  const pooledWidth = allPooled.length / (prompts * windows);
  // Each prompt's first window: rows p · windows of the [prompts · windows, width] output.
  const pooled = new Float32Array(prompts * pooledWidth);
  for (let p = 0; p < prompts; p++) pooled.set(allPooled.subarray(p * windows * pooledWidth, (p * windows + 1) * pooledWidth), p * pooledWidth);
  return { hidden, dim, pooled, pooledWidth };
}

/** [rows, tokens, a] ‖ [rows, tokens, b] -> [rows, tokens, a + b] (torch.concat(..., dim=-1)). */
export function concatLastAxis(first: Float32Array, firstDim: number, second: Float32Array, secondDim: number): Float32Array {
  const tokens = first.length / firstDim;
  if (second.length / secondDim !== tokens) throw new RangeError("concatLastAxis: the two inputs hold different numbers of tokens");
  const width = firstDim + secondDim;
  const out = new Float32Array(tokens * width);
  for (let t = 0; t < tokens; t++) {
    out.set(first.subarray(t * firstDim, (t + 1) * firstDim), t * width);
    out.set(second.subarray(t * secondDim, (t + 1) * secondDim), t * width + firstDim);
  }
  return out;
}

/** SDXL's six size conditions: what size the picture was, where it was cropped, what size to make. */
export interface SizeConditions {
  originalHeight: number;
  originalWidth: number;
  cropTop: number;
  cropLeft: number;
  targetHeight: number;
  targetWidth: number;
}

/** diffusers' defaults: original and target size are the output's, no crop. */
export function defaultSizeConditions(width: number, height: number): SizeConditions {
  return { originalHeight: height, originalWidth: width, cropTop: 0, cropLeft: 0, targetHeight: height, targetWidth: width };
}

/** add_time_ids = list(original_size + crops_coords_top_left + target_size), one row per UNet batch row (the uncond rows the same). */
export function sdxlTimeIds(size: SizeConditions, rows: number): Float32Array {
  const row = [size.originalHeight, size.originalWidth, size.cropTop, size.cropLeft, size.targetHeight, size.targetWidth];
  const out = new Float32Array(rows * row.length);
  for (let r = 0; r < rows; r++) out.set(row, r * row.length);
  return out;
}

export interface SdxlPromptEncoding {
  positive: PromptEncoding;
  negative: PromptEncoding | null;
  /** encoder_hidden_states: [rows, sequence, dim], [uncond; cond] with guidance. */
  hidden: Float32Array;
  sequence: number;
  dim: number;
  /** text_embeds: [rows, pooledWidth], in the same row order. */
  pooled: Float32Array;
  pooledWidth: number;
}

async function encodeBoth(encoders: SdxlTextEncoders, ids: Int32Array[][], ids2: Int32Array[][]): Promise<{ hidden: Float32Array; dim: number; pooled: Float32Array; pooledWidth: number }> {
  const first = await runPenultimate(await encoders.textEncoder(), ids, false);
  const second = await runPenultimate(await encoders.textEncoder2(), ids2, true);
  return { hidden: concatLastAxis(first.hidden, first.dim, second.hidden, second.dim), dim: first.dim + second.dim, pooled: second.pooled!, pooledWidth: second.pooledWidth };
}

/**
 * Both encoders' embeddings for the UNet. `negativePrompts` null: no guidance (one row a prompt).
 * With forceZerosForEmptyPrompt, an empty (or blank) negative prompt's rows are zeros, as
 * diffusers does when no negative prompt is given.
 */
export async function encodeSdxlPrompts(
  tokenizers: { first: ClipTokenizer; second: ClipTokenizer },
  encoders: SdxlTextEncoders,
  prompts: readonly string[],
  negativePrompts: readonly string[] | null,
  options: { truncate: boolean; forceZerosForEmptyPrompt: boolean },
): Promise<SdxlPromptEncoding> {
  const { truncate } = options;
  const windows = (enc: { ids: Int32Array[][] }) => enc.ids[0]!.length;
  // Every row gets as many windows as the longest prompt or negative prompt needs.
  const needed = Math.max(windows(tokenize(tokenizers.first, prompts, { truncate })), negativePrompts ? windows(tokenize(tokenizers.first, negativePrompts, { truncate })) : 1);
  const pos = tokenize(tokenizers.first, prompts, { truncate, minWindows: needed });
  const pos2 = tokenize(tokenizers.second, prompts, { truncate, minWindows: needed });
  const cond = await encodeBoth(encoders, pos.ids, pos2.ids);
  const sequence = cond.hidden.length / (prompts.length * cond.dim);
  const positive: PromptEncoding = { embeddings: cond.hidden, sequence, dim: cond.dim, ...pos };
  if (!negativePrompts) return { positive, negative: null, hidden: cond.hidden, sequence, dim: cond.dim, pooled: cond.pooled, pooledWidth: cond.pooledWidth };

  const zero = negativePrompts.map((n) => options.forceZerosForEmptyPrompt && n.trim() === "");
  const neg = tokenize(tokenizers.first, negativePrompts, { truncate, minWindows: needed });
  const neg2 = tokenize(tokenizers.second, negativePrompts, { truncate, minWindows: needed });
  let uncondHidden: Float32Array = new Float32Array(cond.hidden.length);
  let uncondPooled: Float32Array = new Float32Array(cond.pooled.length);
  if (!zero.every(Boolean)) {
    const uncond = await encodeBoth(encoders, neg.ids, neg2.ids);
    uncondHidden = uncond.hidden;
    uncondPooled = uncond.pooled;
    const rowHidden = uncondHidden.length / negativePrompts.length;
    zero.forEach((z, i) => {
      if (!z) return;
      uncondHidden.fill(0, i * rowHidden, (i + 1) * rowHidden);
      uncondPooled.fill(0, i * cond.pooledWidth, (i + 1) * cond.pooledWidth);
    });
  }
  const negative: PromptEncoding = { embeddings: uncondHidden, sequence, dim: cond.dim, ...neg };
  return {
    positive,
    negative,
    hidden: concatBatch([uncondHidden, cond.hidden]),
    sequence,
    dim: cond.dim,
    pooled: concatBatch([uncondPooled, cond.pooled]),
    pooledWidth: cond.pooledWidth,
  };
}

/** The UNet's text_embeds and time_ids feeds for `rows` batch rows, in the dtypes the session declares. */
export function addedConditionFeeds(io: AddedConditionIO, text: { pooled: Float32Array; pooledWidth: number }, size: SizeConditions, rows: number): Record<string, Tensor> {
  if (io.textEmbedsWidth !== null && io.textEmbedsWidth !== text.pooledWidth) {
    throw new EngineError("model_unavailable", `The UNet takes ${io.textEmbedsWidth}-wide text_embeds, and the second text encoder gives ${text.pooledWidth}.`);
  }
  return {
    [io.textEmbeds]: makeTensor(io.textEmbedsType, text.pooled, [rows, text.pooledWidth]),
    [io.timeIds]: makeTensor(io.timeIdsType, sdxlTimeIds(size, rows), [rows, io.timeIdsWidth]),
  };
}
