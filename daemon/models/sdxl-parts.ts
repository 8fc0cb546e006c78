/**
 * What an SDXL folder adds to an SD one (Optimum's layout, as the hub's SDXL repos ship it):
 * text_encoder_2/ (CLIPTextModelWithProjection: text_embeds, every hidden_states.N) and
 * tokenizer_2/, a UNet that takes text_embeds and time_ids, model_index.json's
 * force_zeros_for_empty_prompt. The refiner (5 time ids with an aesthetic score, no first text
 * encoder) is refused.
 */
import { join } from "node:path";
import { ModelFolderError } from "./errors";
import type { Device } from "./execution-provider";
import { describeTextEncoder, type TextEncoderIO, type UnetIO } from "./io-spec";
import { checkDevices, checkExternalData, checkTokenizerBpe, fileSize, inspectPart, missing, readJson, requireTokenizerBpe, TokenizerConfigSchema, type ModelIndex } from "./model-folder";
import type { OnnxInfo } from "./onnx-inspect";

/** SDXL's VAE scaling (sdxl-vae's config); the VAE config's own value wins where present. */
export const SDXL_VAE_SCALING_FACTOR = 0.13025;

export interface SdxlParts {
  textEncoder2: string;
  tokenizer2: { dir: string; vocab: string; merges: string; config: string };
  textEncoder2Info: OnnxInfo;
  textEncoder2Io: TextEncoderIO;
  /** model_index.json's force_zeros_for_empty_prompt: no negative prompt means zero uncond embeddings (true for SDXL base and turbo). */
  forceZerosForEmptyPrompt: boolean;
  externalData: string[];
  bytes: number;
}

/** An SDXL pipeline: model_index.json names one or lists text_encoder_2, or the folder has text_encoder_2/model.onnx. */
export async function isSdxlFolder(dir: string, modelIndex: ModelIndex): Promise<boolean> {
  const listed = modelIndex.text_encoder_2 !== undefined && (modelIndex.text_encoder_2[0] !== null || modelIndex.text_encoder_2[1] !== null);
  return listed || /XL/.test(modelIndex._class_name) || (await fileSize(join(dir, "text_encoder_2", "model.onnx"))) !== null;
}

function unsupported(file: string, sentence: string): ModelFolderError {
  return new ModelFolderError("model_unsupported", file, `Model unsupported: ${file}: ${sentence}`);
}

/** Refuses SDXL's refiner: its UNet conditions on an aesthetic score (5 time ids) and it has no first text encoder. */
export function checkNotRefiner(modelIndexPath: string, modelIndex: ModelIndex, hasTextEncoder: boolean): void {
  if (modelIndex.requires_aesthetics_score === true || !hasTextEncoder) {
    throw unsupported(modelIndexPath, "this is an SDXL refiner (it conditions on an aesthetic score and has no first text encoder), which Underpaint does not run; use an SDXL base or turbo model.");
  }
}

/** Checks text_encoder_2/ and tokenizer_2/ and that the UNet and both encoders have what SDXL's conditioning reads. */
export async function loadSdxlParts(
  dir: string,
  modelIndex: ModelIndex,
  io: { textEncoder: TextEncoderIO; unet: UnetIO; unetFile: string; textEncoderFile: string },
  devices: Device | readonly Device[],
): Promise<SdxlParts> {
  const p = (...parts: string[]) => join(dir, ...parts);
  const textEncoder2 = p("text_encoder_2", "model.onnx");
  const tokenizer2 = { dir: p("tokenizer_2"), vocab: p("tokenizer_2", "vocab.json"), merges: p("tokenizer_2", "merges.txt"), config: p("tokenizer_2", "tokenizer_config.json") };
  const why = "an SDXL model needs its second text encoder and tokenizer";
  const textEncoder2Size = await fileSize(textEncoder2);
  if (textEncoder2Size === null) throw missing(dir, textEncoder2, why);
  let bytes = textEncoder2Size;
  const bpe = await requireTokenizerBpe(dir, tokenizer2, why);
  if ((await fileSize(tokenizer2.config)) === null) throw missing(dir, tokenizer2.config, why);
  await readJson(dir, tokenizer2.config, TokenizerConfigSchema);
  await checkTokenizerBpe(dir, bpe);
  const info = await inspectPart(dir, textEncoder2);
  checkDevices(dir, info, devices);
  const ext = await checkExternalData(dir, info);
  const textEncoder2Io = describeTextEncoder(textEncoder2, info.inputs, info.outputs);

  const added = io.unet.added;
  if (!added) throw unsupported(io.unetFile, "an SDXL UNet takes text_embeds and time_ids, and this one does not.");
  if (added.timeIdsWidth === 5) checkNotRefiner(p("model_index.json"), { ...modelIndex, requires_aesthetics_score: true }, true);
  if (added.timeIdsWidth !== 6) throw unsupported(io.unetFile, `its time_ids hold ${added.timeIdsWidth} values a row; SDXL's hold 6 (original size, crop, target size).`);
  if (io.textEncoder.hiddenStates.length < 2) throw unsupported(io.textEncoderFile, "SDXL reads the text encoder's penultimate hidden state, and this export gives no hidden_states.N outputs.");
  if (textEncoder2Io.hiddenStates.length < 2) throw unsupported(textEncoder2, "SDXL reads the text encoder's penultimate hidden state, and this export gives no hidden_states.N outputs.");
  if (!textEncoder2Io.pooled) throw unsupported(textEncoder2, "SDXL's second text encoder gives the pooled text_embeds, and this export has no such output.");
  return {
    textEncoder2,
    tokenizer2,
    textEncoder2Info: info,
    textEncoder2Io,
    forceZerosForEmptyPrompt: modelIndex.force_zeros_for_empty_prompt ?? true,
    externalData: ext.paths,
    bytes: bytes + ext.bytes,
  };
}

/** A UNet that takes SDXL's added conditions in a folder that is not SDXL cannot be fed. */
export function checkNoAddedConditions(unetFile: string, unet: UnetIO): void {
  if (unet.added) throw unsupported(unetFile, "the UNet takes SDXL's text_embeds and time_ids, but the folder has no text_encoder_2/.");
}
