/**
 * Prompt -> text embeddings: CLIP tokenizer + text encoder session, with the negative prompt for
 * classifier-free guidance. Long prompts are encoded in 75-token windows whose embeddings are
 * concatenated (as Automatic1111 and ComfyUI do), or cut at 77 as diffusers does (`truncate`).
 */
import type { InferenceSession } from "onnxruntime-node";
import type { ClipTokenizer } from "../tokenizer";
import type { PartSession } from "../../models/model-sessions";
import { makeTensor, tensorToFloat32, type TextEncoderIO } from "../../models/session-io";
import { concatArrays, concatBatch } from "./tensor";

export interface PromptEncoding {
  /** [batch, sequence, dim], sequence = 77 x windows */
  embeddings: Float32Array;
  sequence: number;
  dim: number;
  /** Token ids per prompt, one Int32Array per window. */
  ids: Int32Array[][];
  /** Words cut off by truncation, per prompt ('' when none). */
  dropped: string[];
}

export interface EncodeOptions {
  truncate: boolean;
  /** Pads every prompt to this many windows (so the negative and positive halves line up). */
  minWindows?: number;
}

export function tokenize(tokenizer: ClipTokenizer, prompts: readonly string[], options: EncodeOptions): { ids: Int32Array[][]; dropped: string[] } {
  const ids: Int32Array[][] = [];
  const dropped: string[] = [];
  for (const prompt of prompts) {
    if (options.truncate) {
      const t = tokenizer.tokenizeTruncated(prompt);
      ids.push([t.ids]);
      dropped.push(t.dropped);
    } else {
      ids.push(tokenizer.tokenizeWindows(prompt));
      dropped.push("");
    }
  }
  const windows = Math.max(options.minWindows ?? 1, ...ids.map((w) => w.length));
  const empty = tokenizer.tokenizeWindows("")[0]!;
  for (const w of ids) while (w.length < windows) w.push(empty);
  return { ids, dropped };
}

type Encoded = Omit<PromptEncoding, "ids" | "dropped">;

/** Where the text encoder comes from: a model's sessions, which load it when first asked. */
export interface TextEncoderSource {
  textEncoder(): Promise<PartSession<TextEncoderIO>>;
}

/**
 * The embeddings of the last prompts each model's text encoder made. Artists run the same
 * prompt again and again with new seeds, and the negative prompt rarely changes: those runs
 * skip the text encoder, without even loading it. Keyed by the model's sessions, so another
 * model (or the same one loaded again) never reuses them.
 */
const recentEmbeddings = new WeakMap<TextEncoderSource, Map<string, Encoded>>();
/** About 240 KB per 77-token window of SD 1.5 (768 floats per token). */
export const REMEMBERED_PROMPTS = 16;

/** Runs the text encoder on every window of every prompt in one call, or reuses a recent result. */
export async function encodeTokens(source: TextEncoderSource, ids: Int32Array[][]): Promise<Encoded> {
  let recent = recentEmbeddings.get(source);
  if (!recent) recentEmbeddings.set(source, (recent = new Map()));
  const key = ids.map((windows) => windows.map((w) => w.join(",")).join("|")).join("/");
  const known = recent.get(key);
  if (known) {
    // Most recently used last; a copy, so no caller can change what is remembered.
    recent.delete(key);
    recent.set(key, known);
    return { ...known, embeddings: known.embeddings.slice() };
  }
  const encoded = await runTextEncoder(await source.textEncoder(), ids);
  recent.set(key, { ...encoded, embeddings: encoded.embeddings.slice() });
  if (recent.size > REMEMBERED_PROMPTS) recent.delete(recent.keys().next().value!);
  return encoded;
}

async function runTextEncoder(encoder: PartSession<TextEncoderIO>, ids: Int32Array[][]): Promise<Encoded> {
  const windows = ids[0]!.length;
  const length = ids[0]![0]!.length;
  const flat = concatArrays(Int32Array, ids.flat());
  const feeds = { [encoder.io.inputIds]: makeTensor(encoder.io.inputIdsType, flat, [ids.length * windows, length]) };
  const outputs = await (encoder.session as InferenceSession).run(feeds, [encoder.io.hiddenState]);
  const hidden = tensorToFloat32(outputs[encoder.io.hiddenState]!);
  const dim = hidden.length / (ids.length * windows * length);
  // [prompts * windows, 77, dim] is already [prompts, windows * 77, dim] in C order.
  return { embeddings: hidden, sequence: windows * length, dim };
}

/** Embeddings for the UNet: [negative; positive] with guidance, else positive alone. */
export async function encodePrompts(
  tokenizer: ClipTokenizer,
  encoder: TextEncoderSource,
  prompts: readonly string[],
  negativePrompts: readonly string[] | null,
  truncate: boolean,
): Promise<{ positive: PromptEncoding; negative: PromptEncoding | null; hidden: Float32Array; sequence: number; dim: number }> {
  const pos = tokenize(tokenizer, prompts, { truncate });
  const neg = negativePrompts ? tokenize(tokenizer, negativePrompts, { truncate, minWindows: pos.ids[0]!.length }) : null;
  if (neg && neg.ids[0]!.length > pos.ids[0]!.length) {
    const empty = tokenizer.tokenizeWindows("")[0]!;
    for (const w of pos.ids) while (w.length < neg.ids[0]!.length) w.push(empty);
  }
  const positive = { ...(await encodeTokens(encoder, pos.ids)), ...pos };
  const negative = neg ? { ...(await encodeTokens(encoder, neg.ids)), ...neg } : null;
  const hidden = negative ? concatBatch([negative.embeddings, positive.embeddings]) : positive.embeddings;
  return { positive, negative, hidden, sequence: positive.sequence, dim: positive.dim };
}
