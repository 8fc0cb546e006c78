/**
 * SDXL in a fresh process, so that its peak memory is its own (run by scripts/bench/sdxl.ts):
 *   load <folder> <cacheDir>            every session created through the daemon's ModelSessions and
 *                                       optimized-model cache (writing the optimized copies the first
 *                                       time), one after the other, each released before the next
 *   step <folder> <cacheDir> <latent>   what one picture's guidance step takes, as the pipeline runs it:
 *                                       both text encoders on a prompt and a negative prompt
 *                                       (encodeSdxlPrompts), released as the CPU engine releases them,
 *                                       one UNet call at batch 2 on latent x latent latents with
 *                                       SDXL's text_embeds and time_ids, and the VAE decode of one
 *                                       latent to (8 latent)^2 pixels, the UNet still loaded
 * Prints one JSON line: times in ms, the peak resident set after each stage and at the end.
 */
import { ClipTokenizer } from "../../daemon/engine/tokenizer/clip-tokenizer";
import { addedConditionFeeds, defaultSizeConditions, encodeSdxlPrompts } from "../../daemon/engine/pipeline/sdxl-conditioning";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { MODEL_PARTS, ModelSessions } from "../../daemon/models/model-sessions";
import { OptimizedModelCache, optimizedCacheSwitchedOff } from "../../daemon/models/optimized-models";
import { makeTensor, makeTimestep } from "../../daemon/models/session-io";
import { fillRandom } from "../onnx-builder/graph";
import { peakRssBytes } from "./rss";

const now = () => Number(process.hrtime.bigint()) / 1e6;
const randn = (n: number, name: string) => {
  const a = new Float32Array(n);
  fillRandom(a, name, 1);
  return a;
};

const rssBeforeBytes = process.memoryUsage().rss;
const [what, dir, cacheDir, latentArg] = process.argv.slice(2);
if (!dir || !cacheDir) throw new Error("sdxl-probe: usage: load|step <folder> <cacheDir> [latent]");
const folder = await loadModelFolder(dir);
if (!folder.sdxl || !folder.paths.textEncoder2 || !folder.paths.tokenizer2) throw new Error(`sdxl-probe: ${dir} is not an SDXL folder`);
const written: string[] = [];
// UNDERPAINT_OPTIMIZED_CACHE=off, as for the daemon: every session optimised at load, no copies written.
const optimizedModels = optimizedCacheSwitchedOff() ? null : new OptimizedModelCache({ dir: cacheDir, log: (_level, message) => void (message.startsWith("optimized ") && written.push(message)) });
const sessions = new ModelSessions(folder, { devices: ["cpu"], optimizedModels });

if (what === "load") {
  // One part at a time, each let go before the next: at full size the five together would hold
  // about 13 GiB of weights at once, which no job does (the text encoders go before the UNet runs).
  const start = now();
  for (const part of MODEL_PARTS) {
    if (part === "vaeEncoder" && !folder.paths.vaeEncoder) continue;
    await { textEncoder: () => sessions.textEncoder(), textEncoder2: () => sessions.textEncoder2(), unet: () => sessions.unet(), vaeEncoder: () => sessions.vaeEncoder(), vaeDecoder: () => sessions.vaeDecoder() }[part]();
    await sessions.releasePart(part);
  }
  const loadMs = now() - start;
  console.log(JSON.stringify({ loadMs, optimizedCopiesWritten: written.length, peakRssBytes: peakRssBytes(), rssBeforeBytes }));
} else if (what === "step") {
  const latent = Number(latentArg);
  if (!Number.isInteger(latent) || latent <= 0) throw new Error(`sdxl-probe: step needs a latent side, not "${latentArg}"`);
  const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
    const start = now();
    const value = await fn();
    return [value, now() - start];
  };
  const tokenizers = { first: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir), second: await ClipTokenizer.fromFolder(folder.paths.tokenizer2.dir) };
  const [, textLoadMs] = await timed(async () => {
    await sessions.textEncoder();
    await sessions.textEncoder2();
  });
  // A negative prompt that is not empty: both encoders run on both prompts (no zero rows).
  const [text, textMs] = await timed(() =>
    encodeSdxlPrompts(tokenizers, sessions, ["a lighthouse on a cliff at dusk, oil painting"], ["blurry, low quality"], { truncate: true, forceZerosForEmptyPrompt: folder.sdxl!.forceZerosForEmptyPrompt }),
  );
  await sessions.releasePart("textEncoder");
  await sessions.releasePart("textEncoder2");
  const peakAfterTextBytes = peakRssBytes();

  const [unet, unetLoadMs] = await timed(() => sessions.unet());
  const { io } = unet;
  if (!io.added) throw new Error(`sdxl-probe: ${folder.paths.unet} takes no text_embeds / time_ids`);
  const batch = 2;
  const channels = folder.unetInChannels;
  const feeds = {
    [io.sample]: makeTensor(io.sampleType, randn(batch * channels * latent * latent, "sample"), [batch, channels, latent, latent]),
    [io.timestep]: makeTimestep(io, 999, batch),
    [io.encoderHiddenStates]: makeTensor(io.encoderHiddenStatesType, text.hidden, [batch, text.sequence, text.dim]),
    ...addedConditionFeeds(io.added, text, defaultSizeConditions(8 * latent, 8 * latent), batch),
  };
  const [, unetMs] = await timed(() => unet.session.run(feeds));
  const peakAfterUnetBytes = peakRssBytes();

  const [decoder, vaeLoadMs] = await timed(() => sessions.vaeDecoder());
  const latents = makeTensor(decoder.io.latentType, randn(4 * latent * latent, "latent"), [1, 4, latent, latent]);
  const [, vaeMs] = await timed(() => decoder.session.run({ [decoder.io.latent]: latents }));
  await sessions.release();
  console.log(
    JSON.stringify({ textLoadMs, textMs, unetLoadMs, unetMs, vaeLoadMs, vaeMs, optimizedCopiesWritten: written.length, peakAfterTextBytes, peakAfterUnetBytes, peakRssBytes: peakRssBytes(), rssBeforeBytes }),
  );
} else {
  throw new Error(`sdxl-probe: unknown probe "${what}"`);
}
