/**
 * What the pipeline needs to know about each ONNX module's inputs and outputs, derived from
 * a plain list of {name, type, shape}. The same rules serve the protobuf view
 * (onnx-inspect, before any session exists) and onnxruntime's `session.inputMetadata`
 * (session-io), so a folder that loads is a folder whose sessions can be fed.
 *
 * Export variants covered (../shared/notes/onnx-diffusion-pipeline.md section 1):
 * diffusers script (input_ids int32, timestep float32 [batch] or int64 in old exports),
 * Optimum (input_ids int64, timestep int64 [steps] or scalar float, vae encoder
 * `latent_parameters`), Olive DirectML (everything float16).
 */
import { ModelFolderError } from "./errors";

/** One input or output: onnxruntime's type name ("float32", "int64", ...) and dims (null if unknown). */
export interface IoValue {
  name: string;
  type: string;
  shape: readonly (number | string)[] | null;
}

export type FloatType = "float32" | "float16";
export type TokenIdType = "int32" | "int64";
export type TimestepType = "float32" | "float16" | "int64";

export interface TextEncoderIO {
  inputIds: string;
  inputIdsType: TokenIdType;
  /** last_hidden_state: the UNet's encoder_hidden_states. */
  hiddenState: string;
  hiddenStateType: FloatType;
  /** pooler_output / text_embeds when present (unused by SD 1.x/2.x; SDXL's text_embeds from text_encoder_2). */
  pooled: string | null;
  /** Optimum's hidden_states.0 .. hidden_states.N outputs in order (SDXL exports them all), [] when absent. */
  hiddenStates: string[];
}

export interface UnetIO {
  sample: string;
  sampleType: FloatType;
  timestep: string;
  timestepType: TimestepType;
  /** 0: a scalar; 1: [batch] or [1] (broadcast in the graph). */
  timestepRank: 0 | 1;
  /** Rank 1 with a fixed length (e.g. [1]): feed exactly that many; null: one per batch item (or [1], broadcast). */
  timestepLength: number | null;
  encoderHiddenStates: string;
  encoderHiddenStatesType: FloatType;
  /** LCM's guidance embedding input [B, width], when the export has it. */
  timestepCond: string | null;
  timestepCondType: FloatType | null;
  /** Its width (the UNet's time_cond_proj_dim, 256 for LCM Dreamshaper v7). */
  timestepCondWidth: number | null;
  /** SDXL's added conditions: the pooled text embeddings [B, width] and time_ids [B, 6 (5 for the refiner)]; null otherwise. */
  added: AddedConditionIO | null;
  output: string;
  outputType: FloatType;
}

export interface AddedConditionIO {
  textEmbeds: string;
  textEmbedsType: FloatType;
  /** text_embeds' width when the export fixes it (1280 for SDXL). */
  textEmbedsWidth: number | null;
  timeIds: string;
  timeIdsType: FloatType;
  /** time_ids per row: 6 (original size, crop, target size) unless the export says otherwise. */
  timeIdsWidth: number;
}

export interface VaeEncoderIO {
  sample: string;
  sampleType: FloatType;
  output: string;
  outputType: FloatType;
  /**
   * latent_sample: a posterior sample (diffusers script, Olive; the noise is drawn inside the graph).
   * latent_parameters: [B, 8, h, w] = mean ‖ logvar (Optimum since d3c56cd5).
   */
  outputKind: "latent_sample" | "latent_parameters";
}

export interface VaeDecoderIO {
  latent: string;
  latentType: FloatType;
  output: string;
  outputType: FloatType;
}

export interface ModelIO {
  textEncoder: TextEncoderIO;
  /** SDXL's text_encoder_2 (CLIPTextModelWithProjection); null for SD 1.x / 2.x. */
  textEncoder2: TextEncoderIO | null;
  unet: UnetIO;
  vaeEncoder: VaeEncoderIO | null;
  vaeDecoder: VaeDecoderIO;
}

function unsupported(file: string, what: string): ModelFolderError {
  return new ModelFolderError("model_unsupported", file, `${file}: ${what}`);
}

function list(values: readonly IoValue[]): string {
  return values.map((v) => `${v.name} (${v.type})`).join(", ") || "none";
}

/** By name (first alias that exists), else the only value when there is exactly one. */
function pick(values: readonly IoValue[], names: readonly string[], soleFallback: boolean): IoValue | undefined {
  for (const n of names) {
    const v = values.find((x) => x.name === n);
    if (v) return v;
  }
  return soleFallback && values.length === 1 ? values[0] : undefined;
}

function floatType(file: string, v: IoValue, role: string): FloatType {
  if (v.type === "float32" || v.type === "float16") return v.type;
  throw unsupported(file, `${role} "${v.name}" is ${v.type}; only float32 and float16 are supported`);
}

export function describeTextEncoder(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): TextEncoderIO {
  const ids = pick(inputs, ["input_ids"], true);
  if (!ids) throw unsupported(file, `no input_ids input (inputs: ${list(inputs)})`);
  if (ids.type !== "int32" && ids.type !== "int64") {
    throw unsupported(file, `the text encoder's ${ids.name} is ${ids.type}; only int32 and int64 token ids are supported`);
  }
  const extra = inputs.filter((v) => v !== ids);
  if (extra.length > 0) throw unsupported(file, `unexpected text encoder inputs ${list(extra)}`);
  const hidden = pick(outputs, ["last_hidden_state", "text_embeddings"], false) ?? outputs[0];
  if (!hidden) throw unsupported(file, "the text encoder has no outputs");
  const pooled = pick(outputs, ["text_embeds", "pooler_output"], false);
  const hiddenStates = outputs
    .map((v) => ({ v, index: /^hidden_states\.(\d+)$/.exec(v.name)?.[1] }))
    .filter((x): x is { v: IoValue; index: string } => x.index !== undefined)
    .sort((a, b) => Number(a.index) - Number(b.index));
  hiddenStates.forEach((x, i) => {
    if (Number(x.index) !== i) throw unsupported(file, `the text encoder's hidden states skip hidden_states.${i}`);
  });
  return {
    inputIds: ids.name,
    inputIdsType: ids.type,
    hiddenState: hidden.name,
    hiddenStateType: floatType(file, hidden, "output"),
    pooled: pooled?.name ?? null,
    hiddenStates: hiddenStates.map((x) => x.v.name),
  };
}

export function describeUnet(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): UnetIO {
  const sample = pick(inputs, ["sample"], false);
  const timestep = pick(inputs, ["timestep"], false);
  const ehs = pick(inputs, ["encoder_hidden_states"], false);
  if (!sample || !timestep || !ehs) {
    throw unsupported(file, `expected UNet inputs sample, timestep, encoder_hidden_states (found: ${list(inputs)})`);
  }
  const cond = pick(inputs, ["timestep_cond"], false);
  const textEmbeds = pick(inputs, ["text_embeds"], false);
  const timeIds = pick(inputs, ["time_ids"], false);
  if ((textEmbeds === undefined) !== (timeIds === undefined)) {
    throw unsupported(file, `the UNet takes ${textEmbeds ? "text_embeds without time_ids" : "time_ids without text_embeds"}; SDXL's UNet takes both`);
  }
  const extra = inputs.filter((v) => v !== sample && v !== timestep && v !== ehs && v !== cond && v !== textEmbeds && v !== timeIds);
  if (extra.length > 0) {
    // Olive's unnamed SDXL inputs (onnx::Concat_4) and the like: inputs the engine cannot feed.
    throw unsupported(file, `unsupported UNet inputs ${list(extra)}`);
  }
  const fixed = (v: IoValue | undefined, axis: number) => (typeof v?.shape?.[axis] === "number" ? (v.shape[axis] as number) : null);
  if (timestep.type !== "float32" && timestep.type !== "float16" && timestep.type !== "int64") {
    throw unsupported(file, `the UNet's timestep is ${timestep.type}; only float32, float16 and int64 are supported`);
  }
  const condWidth = cond?.shape?.[1];
  if (cond && (cond.shape === null || cond.shape.length !== 2 || typeof condWidth !== "number" || condWidth <= 0)) {
    throw unsupported(
      file,
      `the UNet's ${cond.name} input has no fixed width (shape ${JSON.stringify(cond.shape)}), so the size of the guidance embedding it takes is unknown`,
    );
  }
  const rank = timestep.shape === null ? 1 : timestep.shape.length;
  const length = timestep.shape?.[0];
  if (rank > 1) throw unsupported(file, `the UNet's timestep has rank ${rank}; expected a scalar or [batch]`);
  const out = pick(outputs, ["out_sample", "latent"], true) ?? outputs[0];
  if (!out) throw unsupported(file, "the UNet has no outputs");
  return {
    sample: sample.name,
    sampleType: floatType(file, sample, "input"),
    timestep: timestep.name,
    timestepType: timestep.type,
    timestepRank: rank === 0 ? 0 : 1,
    timestepLength: rank === 1 && typeof length === "number" && length > 0 ? length : null,
    encoderHiddenStates: ehs.name,
    encoderHiddenStatesType: floatType(file, ehs, "input"),
    timestepCond: cond?.name ?? null,
    timestepCondType: cond ? floatType(file, cond, "input") : null,
    timestepCondWidth: typeof condWidth === "number" ? condWidth : null,
    added:
      textEmbeds && timeIds
        ? {
            textEmbeds: textEmbeds.name,
            textEmbedsType: floatType(file, textEmbeds, "input"),
            textEmbedsWidth: fixed(textEmbeds, 1),
            timeIds: timeIds.name,
            timeIdsType: floatType(file, timeIds, "input"),
            timeIdsWidth: fixed(timeIds, 1) ?? 6,
          }
        : null,
    output: out.name,
    outputType: floatType(file, out, "output"),
  };
}

export function describeVaeEncoder(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): VaeEncoderIO {
  const sample = pick(inputs, ["sample", "images"], true);
  if (!sample || inputs.length !== 1) throw unsupported(file, `expected one image input (found: ${list(inputs)})`);
  const params = pick(outputs, ["latent_parameters"], false);
  const latent = params ?? pick(outputs, ["latent_sample", "latent"], true);
  if (!latent) throw unsupported(file, `expected a latent_sample or latent_parameters output (found: ${list(outputs)})`);
  // An unnamed single output with 8 channels is mean ‖ logvar.
  const kind = params || latent.shape?.[1] === 8 ? "latent_parameters" : "latent_sample";
  return {
    sample: sample.name,
    sampleType: floatType(file, sample, "input"),
    output: latent.name,
    outputType: floatType(file, latent, "output"),
    outputKind: kind,
  };
}

export function describeVaeDecoder(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): VaeDecoderIO {
  const latent = pick(inputs, ["latent_sample", "latent"], true);
  if (!latent || inputs.length !== 1) throw unsupported(file, `expected one latent input (found: ${list(inputs)})`);
  const out = pick(outputs, ["sample", "images"], true) ?? outputs[0];
  if (!out) throw unsupported(file, "the VAE decoder has no outputs");
  return {
    latent: latent.name,
    latentType: floatType(file, latent, "input"),
    output: out.name,
    outputType: floatType(file, out, "output"),
  };
}
