/**
 * CLIP's byte-level BPE tokenizer, giving exactly the ids of openai's `SimpleTokenizer` and of
 * transformers' slow `CLIPTokenizer` with ftfy installed (the one diffusers' pipelines use):
 *
 *   clean = whitespace_clean(basic_clean(text)).lower()
 *     basic_clean      = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
 *     whitespace_clean = re.sub(r"\s+", " ", text).strip()       (the `regex` module's \s)
 *   words = regex.findall(<CLIP pattern>, clean, IGNORECASE)
 *   ids   = BPE over the UTF-8 bytes of each word (bytes_to_unicode alphabet, "</w>" on its last
 *           symbol), merges applied by rank from merges.txt lines [1 : 49152 - 256 - 2 + 1].
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { fixText } from "./ftfy";
import { pyHtmlUnescape } from "./py-html";
import { TokenizerJsonSchema } from "../../models/tokenizer-json";

export interface TokenizerSettings {
  bosId: number;
  eosId: number;
  /** SD 1.x pads with eos 49407 ("<|endoftext|>"), SD 2.x / SDXL's second encoder with "!" = 0. */
  padId: number;
  /** model_max_length (77 for every Stable Diffusion text encoder). */
  maxLength: number;
}

export interface WindowOptions {
  /**
   * How many tokens a window may give back so that it ends after a comma, or else at the end of a
   * word, instead of in the middle of a phrase (A1111's `comma_padding_backtrack`, default 20).
   * 0 cuts every window at exactly maxLength - 2 tokens.
   */
  backtrack?: number;
}

const DEFAULT_MAX_LENGTH = 77;
/** transformers' CLIPTokenizer reads only this many merges, whatever merges.txt holds. */
const MERGES_TO_READ = 49152 - 256 - 2;
const BPE_CACHE_LIMIT = 50_000;

// Python's str.isspace() (str.strip) and the `regex` module's \s (Unicode White_Space), which
// differ in U+001C..U+001F; JS's own \s would add U+FEFF, which Python keeps as a character.
const PY_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const REGEX_SPACE = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_SPACE_CHAR_RE = new RegExp(`[${PY_SPACE}]`);
const WHITESPACE_RUN_RE = new RegExp(`[${REGEX_SPACE}]+`, "g");
/**
 * The CLIP pattern, compiled by the `regex` module with IGNORECASE. Spelled out here without the
 * `i` flag, because JS's case-insensitive classes differ from `regex`'s: there, IGNORECASE adds only
 * the ASCII case pairs and U+017F LONG S (for "s") to the literals, leaves [\p{L}] and [\p{N}] as
 * they are, and keeps U+0345 (which folds to a Greek iota) out of the negated class, so that
 * character is matched by no alternative and dropped.
 */
const WORD_RE = new RegExp(
  [
    "<\\|[sS\u017f][tT][aA][rR][tT][oO][fF][tT][eE][xX][tT]\\|>",
    "<\\|[eE][nN][dD][oO][fF][tT][eE][xX][tT]\\|>",
    "'[sS\u017f]",
    "'[tT]",
    "'[rR][eE]",
    "'[vV][eE]",
    "'[mM]",
    "'[lL][lL]",
    "'[dD]",
    "\\p{L}+",
    "\\p{N}",
    `[^${REGEX_SPACE}\\p{L}\\p{N}\\u0345]+`,
  ].join("|"),
  "gu",
);

const UTF8_LENIENT = new TextDecoder("utf-8");

/** transformers' `clean_up_tokenization`. */
function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** Python's str.strip(). */
function pyStrip(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && PY_SPACE_CHAR_RE.test(text[start]!)) start++;
  while (end > start && PY_SPACE_CHAR_RE.test(text[end - 1]!)) end--;
  return text.slice(start, end);
}

/** The text exactly as CLIP sees it before splitting into words (openai's cleaning + lower()). */
export function clipCleanText(text: string): string {
  const basic = pyStrip(pyHtmlUnescape(pyHtmlUnescape(fixText(text))));
  return pyStrip(basic.replace(WHITESPACE_RUN_RE, " ")).toLowerCase();
}

/** GPT-2's reversible map from the 256 byte values to printable characters. */
function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  const direct = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(direct(b) ? b : 256 + n++);
  return table;
}

// ---------------------------------------------------------------------------------------------
// Reading a model folder's tokenizer/ directory.

const tokenSpec = z.union([z.string(), z.object({ content: z.string() })]).nullable().optional();
const specialTokensSchema = z.object({
  bos_token: tokenSpec,
  eos_token: tokenSpec,
  pad_token: tokenSpec,
  unk_token: tokenSpec,
});
const tokenizerConfigSchema = specialTokensSchema.extend({
  model_max_length: z.number().optional(),
  clean_up_tokenization_spaces: z.boolean().optional(),
});
// Only the outer shape goes through zod; the 49k entries are checked in a plain loop (parseVocab),
// because zod's record parsing copies every entry (~100 ms).
const vocabSchema = z.custom<Record<string, unknown>>(
  (v) => typeof v === "object" && v !== null && !Array.isArray(v),
  "expected an object mapping tokens to ids",
);

type TokenSpec = z.infer<typeof tokenSpec>;

/**
 * vocab.json's and merges.txt's texts from a tokenizer.json: CLIPTokenizerFast's converter writes the
 * slow tokenizer's vocab and its (already truncated) merges in rank order, so merges.txt's version
 * line is put back for parseMerges to skip.
 */
export function bpeTextsFromTokenizerJson(path: string, text: string): { vocabText: string; mergesText: string } {
  const { model } = parseJson(path, text, TokenizerJsonSchema);
  const merges = model.merges.map((m) => (typeof m === "string" ? m : `${m[0]} ${m[1]}`));
  return { vocabText: JSON.stringify(model.vocab), mergesText: ["#version: 0.2", ...merges].join("\n") };
}

function tokenContent(spec: TokenSpec): string | undefined {
  if (spec === null || spec === undefined) return undefined;
  return typeof spec === "string" ? spec : spec.content;
}

async function readText(path: string, required: true): Promise<string>;
async function readText(path: string, required: false): Promise<string | undefined>;
async function readText(path: string, required: boolean): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!required && code === "ENOENT") return undefined;
    throw new Error(`CLIP tokenizer: cannot read ${path}: ${(err as Error).message}`);
  }
}

function parseJson<T>(path: string, text: string, schema: z.ZodType<T>): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`CLIP tokenizer: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    throw new Error(`CLIP tokenizer: ${path} has an unexpected shape${where}: ${issue?.message ?? "invalid"}`);
  }
  return parsed.data;
}

function parseVocab(path: string, text: string): { encoder: Map<string, number>; decoder: (string | undefined)[] } {
  const raw = parseJson(path, text, vocabSchema);
  const encoder = new Map<string, number>();
  const decoder: (string | undefined)[] = [];
  for (const token in raw) {
    const id = raw[token];
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id > 0xffffff) {
      throw new Error(`CLIP tokenizer: ${path} has an unexpected shape at ${JSON.stringify(token)}: expected a token id, got ${JSON.stringify(id)}`);
    }
    encoder.set(token, id);
    decoder[id] = token;
  }
  if (encoder.size === 0) throw new Error(`CLIP tokenizer: ${path} has no tokens`);
  return { encoder, decoder };
}

/** merges.txt -> Map("first second" -> rank), as transformers reads it. */
function parseMerges(path: string, text: string): Map<string, number> {
  // merges_handle.read().strip().split("\n")[1:49152-256-2+1], then tuple(merge.split())
  const lines = text.trim().split("\n");
  const count = Math.min(lines.length - 1, MERGES_TO_READ);
  const ranks = new Map<string, number>();
  for (let rank = 0; rank < count; rank++) {
    let line = lines[rank + 1]!;
    const space = line.indexOf(" ");
    if (space <= 0 || space === line.length - 1 || line.includes(" ", space + 1) || /[^\S ]/.test(line)) {
      const pair = line.trim().split(/\s+/);
      if (pair.length !== 2) {
        throw new Error(`CLIP tokenizer: ${path} line ${rank + 2} is not a merge pair: ${JSON.stringify(line)}`);
      }
      line = `${pair[0]} ${pair[1]}`;
    }
    ranks.set(line, rank); // a repeated pair keeps its last rank, as dict(zip(merges, range(n))) does
  }
  return ranks;
}

// ---------------------------------------------------------------------------------------------

export class ClipTokenizer {
  readonly settings: TokenizerSettings;

  private readonly encoder: ReadonlyMap<string, number>;
  /** id -> token (sparse only if the vocabulary skips ids) */
  private readonly decoder: readonly (string | undefined)[];
  /** "first second" -> rank */
  private readonly ranks: ReadonlyMap<string, number>;
  private readonly byteEncoder = bytesToUnicode();
  private readonly byteDecoder: ReadonlyMap<string, number>;
  private readonly utf8 = new TextEncoder();
  private readonly unkId: number;
  private readonly cleanUpSpaces: boolean;
  private readonly commaId: number | undefined;
  /** The literal special tokens, which the reference never splits. */
  private readonly specials = new Map<string, readonly number[]>();
  /** Words already split: bytes-to-unicode word -> ids. */
  private readonly cache = new Map<string, readonly number[]>();

  private constructor(
    vocab: { encoder: Map<string, number>; decoder: (string | undefined)[] },
    ranks: Map<string, number>,
    settings: TokenizerSettings,
    unkId: number,
    cleanUpSpaces: boolean,
  ) {
    this.cleanUpSpaces = cleanUpSpaces;
    this.encoder = vocab.encoder;
    this.decoder = vocab.decoder;
    this.ranks = ranks;
    this.byteDecoder = new Map(this.byteEncoder.map((ch, b) => [ch, b] as const));
    this.settings = settings;
    this.unkId = unkId;
    this.commaId = this.encoder.get(",</w>");
    for (const special of ["<|startoftext|>", "<|endoftext|>"]) {
      const id = this.encoder.get(special);
      if (id !== undefined) this.specials.set(special, [id]);
    }
  }

  /**
   * Reads vocab.json and merges.txt (required; a fast tokenizer's tokenizer.json stands in for
   * both when they are absent) and tokenizer_config.json / special_tokens_map.json
   * (optional; special_tokens_map.json wins, as in transformers). Errors name the file.
   */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    let vocabPath = join(dir, "vocab.json");
    let mergesPath = join(dir, "merges.txt");
    const configPath = join(dir, "tokenizer_config.json");
    const specialPath = join(dir, "special_tokens_map.json");
    let [vocabText, mergesText, configText, specialText] = await Promise.all([
      readText(vocabPath, false),
      readText(mergesPath, false),
      readText(configPath, false),
      readText(specialPath, false),
    ]);
    if (vocabText === undefined || mergesText === undefined) {
      const jsonPath = join(dir, "tokenizer.json");
      const jsonText = await readText(jsonPath, false);
      if (jsonText === undefined) {
        throw new Error(`CLIP tokenizer: cannot read ${vocabText === undefined ? vocabPath : mergesPath}: it is missing, and there is no tokenizer.json to stand in for it`);
      }
      ({ vocabText, mergesText } = bpeTextsFromTokenizerJson(jsonPath, jsonText));
      vocabPath = mergesPath = jsonPath;
    }
    const vocab = parseVocab(vocabPath, vocabText);
    const merges = parseMerges(mergesPath, mergesText);
    const config: z.infer<typeof tokenizerConfigSchema> =
      configText === undefined ? {} : parseJson(configPath, configText, tokenizerConfigSchema);
    const special: z.infer<typeof specialTokensSchema> =
      specialText === undefined ? {} : parseJson(specialPath, specialText, specialTokensSchema);

    const resolve = (key: "bos_token" | "eos_token" | "pad_token" | "unk_token", fallback: string): number => {
      const fromSpecial = tokenContent(special[key]);
      const fromConfig = tokenContent(config[key]);
      const token = fromSpecial ?? fromConfig ?? fallback;
      const id = vocab.encoder.get(token);
      if (id === undefined) {
        const source = fromSpecial !== undefined ? specialPath : fromConfig !== undefined ? configPath : vocabPath;
        throw new Error(`CLIP tokenizer: ${key} ${JSON.stringify(token)} (from ${source}) is not in ${vocabPath}`);
      }
      return id;
    };
    const eosToken = tokenContent(special.eos_token) ?? tokenContent(config.eos_token) ?? "<|endoftext|>";
    const bosId = resolve("bos_token", "<|startoftext|>");
    const eosId = resolve("eos_token", "<|endoftext|>");
    const padId = resolve("pad_token", eosToken);
    const unkId = resolve("unk_token", "<|endoftext|>");

    const mml = config.model_max_length;
    // Unset limits are written as 1e30 by transformers; Stable Diffusion's encoders all take 77.
    const maxLength = mml !== undefined && Number.isInteger(mml) && mml >= 3 && mml <= 1_000_000 ? mml : DEFAULT_MAX_LENGTH;
    const cleanUp = config.clean_up_tokenization_spaces ?? true;
    return new ClipTokenizer(vocab, merges, { bosId, eosId, padId, maxLength }, unkId, cleanUp);
  }

  /** BPE ids of the text, without bos/eos, untruncated. */
  encode(text: string): number[] {
    const ids: number[] = [];
    const clean = clipCleanText(text);
    for (const match of clean.matchAll(WORD_RE)) {
      let word = "";
      for (const b of this.utf8.encode(match[0])) word += this.byteEncoder[b];
      for (const id of this.bpe(word)) ids.push(id);
    }
    return ids;
  }

  /**
   * diffusers-exact: [bos] + ids[:maxLength-2] + [eos], right-padded with padId to maxLength.
   * `dropped` is the text of the tokens cut off ('' if none).
   */
  tokenizeTruncated(text: string): { ids: Int32Array; dropped: string } {
    const ids = this.encode(text);
    const room = this.settings.maxLength - 2;
    return { ids: this.frame(ids.slice(0, room)), dropped: ids.length > room ? this.decode(ids.slice(room)) : "" };
  }

  /**
   * Automatic1111/ComfyUI style for long prompts: the ids in windows of at most maxLength-2 tokens,
   * each framed as [bos] + window + [eos] and padded with padId to maxLength; an empty prompt
   * gives one window. A window that would end inside a phrase gives back up to `backtrack` tokens
   * (default 20, as A1111) to end after the last comma, or else after the last complete word.
   */
  tokenizeWindows(text: string, options: WindowOptions = {}): Int32Array[] {
    const ids = this.encode(text);
    const size = this.settings.maxLength - 2;
    const backtrack = Math.max(0, Math.min(options.backtrack ?? 20, size - 1));
    const windows: Int32Array[] = [];
    let start = 0;
    do {
      let end = Math.min(start + size, ids.length);
      if (end < ids.length && backtrack > 0) end = this.windowEnd(ids, start, end, backtrack);
      windows.push(this.frame(ids.slice(start, end)));
      start = end;
    } while (start < ids.length);
    return windows;
  }

  /**
   * Text of the ids, as transformers' `tokenizer.decode(ids)`: "</w>" ends a word, special tokens
   * stay as their literal text separated by spaces, and (clean_up_tokenization_spaces, on unless the
   * config turns it off) " ," becomes "," and " 's" becomes "'s".
   */
  decode(ids: readonly number[]): string {
    const pieces: string[] = [];
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length === 0) return;
      pieces.push(UTF8_LENIENT.decode(Uint8Array.from(bytes)).replaceAll("</w>", " ").trim());
      bytes = [];
    };
    for (const id of ids) {
      const token = this.decoder[id];
      if (token === undefined) throw new RangeError(`CLIP tokenizer: id ${id} is not in the vocabulary`);
      if (this.specials.has(token)) {
        flush();
        pieces.push(token);
        continue;
      }
      for (const ch of token) {
        const b = this.byteDecoder.get(ch);
        if (b !== undefined) bytes.push(b);
        else for (const u of this.utf8.encode(ch)) bytes.push(u);
      }
    }
    flush();
    const text = pieces.join(" ");
    return this.cleanUpSpaces ? cleanUpTokenization(text) : text;
  }

  private frame(window: readonly number[]): Int32Array {
    const { bosId, eosId, padId, maxLength } = this.settings;
    const out = new Int32Array(maxLength).fill(padId);
    out[0] = bosId;
    out.set(window, 1);
    out[window.length + 1] = eosId;
    return out;
  }

  private isWordEnd(id: number): boolean {
    const token = this.decoder[id];
    return token === undefined || token.endsWith("</w>") || id === this.settings.bosId || id === this.settings.eosId;
  }

  /** Where a full window that does not reach the end of the prompt should stop. */
  private windowEnd(ids: readonly number[], start: number, end: number, backtrack: number): number {
    const lowest = Math.max(start + 1, end - backtrack);
    if (this.commaId !== undefined && ids[end] !== this.commaId) {
      for (let i = end - 1; i >= lowest - 1; i--) if (ids[i] === this.commaId) return i + 1;
    }
    if (this.isWordEnd(ids[end - 1]!)) return end;
    for (let i = end - 2; i >= lowest - 1; i--) if (this.isWordEnd(ids[i]!)) return i + 1;
    return end;
  }

  /** Rank-greedy merging of one word (already in the bytes-to-unicode alphabet). */
  private bpe(token: string): readonly number[] {
    const cached = this.specials.get(token) ?? this.cache.get(token);
    if (cached) return cached;

    const word = Array.from(token);
    word[word.length - 1] += "</w>";
    while (word.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      const first = word[best]!;
      const second = word[best + 1]!;
      // Merge every occurrence of the pair, left to right, as the reference does.
      const merged: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]!);
          i += 1;
        }
      }
      word.splice(0, word.length, ...merged);
    }

    const ids = word.map((piece) => this.encoder.get(piece) ?? this.unkId);
    if (this.cache.size >= BPE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(token, ids);
    return ids;
  }
}
