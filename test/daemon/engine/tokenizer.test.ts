/**
 * CLIP BPE tokenizer against openai's SimpleTokenizer / transformers' CLIPTokenizer (ftfy 6.1.1):
 * the 25 shared golden prompts (shared/fixtures/tokenizer-golden.json), more prompts of the hidden
 * set's kinds (ids recorded from the Python reference), truncation, long-prompt windows, configs.
 */
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ClipTokenizer, clipCleanText, fixText, pyHtmlUnescape } from "../../../daemon/engine/tokenizer";
import { FIXTURES_DIR, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

const TOKENIZER_DIR = path.join(FIXTURES_DIR, "tiny-sd", "tokenizer");
const BOS = 49406;
const EOS = 49407;

const GoldenSchema = z.looseObject({
  bos_token_id: z.number(),
  eos_token_id: z.number(),
  pad_token_id: z.number(),
  max_length: z.number(),
  cases: z.array(
    z.looseObject({
      id: z.string(),
      text: z.string(),
      input_ids: z.array(z.number()),
      bpe_ids: z.array(z.number()),
      num_bpe_tokens: z.number(),
      truncated: z.boolean(),
      openai_clean_text: z.string(),
    }),
  ),
});
const golden = GoldenSchema.parse(JSON.parse(readFileSync(path.join(FIXTURES_DIR, "tokenizer-golden.json"), "utf8")));
const goldenCase = (id: string) => {
  const found = golden.cases.find((c) => c.id === id);
  if (!found) throw new Error(`no golden case ${id}`);
  return found;
};

/** More prompts like the hidden ones; clean text and ids recorded from the Python reference. */
const EXTRA_CASES: { id: string; text: string; clean: string; ids: number[] }[] = [
  { id: "zwj_skin_tone", text: "family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 and thumbs \ud83d\udc4d\ud83c\udffd, flag \ud83c\udff4\udb40\udc67\udb40\udc62\udb40\udc73\udb40\udc63\udb40\udc74\udb40\udc7f", clean: "family \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 and thumbs \ud83d\udc4d\ud83c\udffd, flag \ud83c\udff4\udb40\udc67\udb40\udc62\udb40\udc73\udb40\udc63\udb40\udc74\udb40\udc7f", ids: [1315, 25023, 26304, 48938, 4244, 964, 355, 537, 17599, 4686, 8514, 267, 4859, 39690, 175, 254, 223, 100, 175, 254, 223, 95, 175, 254, 223, 111, 175, 254, 223, 96, 175, 254, 223, 112, 175, 254, 223, 379] },
  { id: "arabic_hebrew", text: "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 and \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", clean: "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 and \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", ids: [12986, 10948, 25722, 16378, 22625, 16378, 12973, 18843, 12973, 29945, 537, 147, 102, 147, 250, 147, 243, 147, 507, 147, 95, 147, 243, 147, 250, 147, 507] },
  { id: "double_escaped", text: "Tom &amp;amp; Jerry &amp;lt;3 &amp;quot;hi&amp;quot;", clean: "tom & jerry <3 \"hi\"", ids: [2435, 261, 9164, 283, 274, 257, 1883, 257] },
  { id: "html_tag_line", text: "<b>bold</b> &NTILDE; &amp; stays\nnext &NTILDE;", clean: "<b>bold</b> &ntilde; & stays next &ntilde;", ids: [283, 321, 285, 8911, 34308, 321, 285, 261, 77, 6124, 654, 282, 261, 13311, 1131, 261, 77, 6124, 654, 282] },
  { id: "mojibake_mixed", text: "\u00c3\u00bcber na\u00c3\u00afve caf\u00c3\u00a9 \u00e2\u20ac\u0153smart\u00e2\u20ac\u009d don\u00e2\u20ac\u2122t", clean: "\u00fcber na\u00efve caf\u00e9 \"smart\" don't", ids: [6522, 1516, 1097, 35689, 563, 15304, 257, 4115, 257, 847, 713] },
  { id: "mojibake_with_real_accent", text: "caf\u00e9\u0092s menu, don\u00e2\u20ac\u2122t stop", clean: "caf\u00e9's menu, don't stop", ids: [15304, 568, 6225, 267, 847, 713, 1691] },
  { id: "mojibake_cyrillic", text: "\u00d0\u00bf\u00d1\u20ac\u00d0\u00b8\u00d0\u00b2\u00d0\u00b5\u00d1\u201a \u00d0\u00bc\u00d0\u00b8\u00d1\u20ac", clean: "\u043f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", ids: [26302, 16370, 29503, 110, 22176, 141, 480, 38018, 16701, 141, 478] },
  { id: "a_grave_nbsp_lost", text: "\u00c3\u00a9t\u00c3\u00a9 \u00c3 Paris", clean: "\u00e9t\u00e9 \u00e0 paris", ids: [3459, 39694, 21259, 3445] },
  { id: "ligatures", text: "\ufb01ne \ufb02owers in the o\ufb03ce, \u0132sselmeer \u01c6ungla", clean: "fine flowers in the office, ijsselmeer d\u017eungla", ids: [3797, 4023, 530, 518, 2171, 267, 7337, 17402, 27555, 67, 129, 122, 10439, 1210] },
  { id: "spaces", text: "non\u00a0breaking\u2003em\u2009thin\u3000ideographic", clean: "non breaking em thin ideographic", ids: [3353, 2755, 2270, 7847, 1909, 78, 4245] },
  { id: "zero_width", text: "zero\u200bwidth\u200cjoin\u200dx\ufeffbom", clean: "zero\u200bwidth\u200cjoin\u200dxbom", ids: [5848, 9844, 23571, 728, 490, 1384, 728, 491, 87, 19469] },
  { id: "turkish_sharp_s", text: "\u0130stanbul D\u0130YARBAKIR Stra\u00dfe \u1e9e", clean: "i\u0307stanbul di\u0307yarbakir stra\u00dfe \u00df", ids: [328, 16384, 11231, 1618, 16384, 6786, 4059, 742, 1894, 127, 253, 324, 127, 509] },
  { id: "fullwidth", text: "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 \uff54\uff45\uff58\uff54 \uff11\uff12\uff13 \uff01 \uff76\uff80\uff76\uff85", clean: "fullwidth text 123 ! \u30ab\u30bf\u30ab\u30ca", ids: [9407, 23571, 4160, 272, 273, 274, 256, 37367, 34941, 37367, 2429, 488] },
  { id: "controls", text: "\u001b[31mred\u001b[0m\u0007 line\r\nbreak\u0085end", clean: "red line break\u2026end", ids: [736, 1148, 2568, 959, 806] },
  { id: "numeric_refs", text: "&#x1F600; &#8220;q&#8221; &#150; &#1; &notit; &amp", clean: "\ud83d\ude00 \"q\" \u2013 \u00acit; &", ids: [7334, 257, 336, 257, 1224, 126, 361, 585, 282, 261] },
  { id: "special_literals", text: "<|startoftext|>a<|endoftext|> <|ENDOFTEXT|>", clean: "<|startoftext|>a<|endoftext|> <|endoftext|>", ids: [49406, 320, 49407, 49407] },
  { id: "ypogegrammeni", text: "a\u0345b .\u0345.", clean: "a\u0345b .\u0345.", ids: [320, 321, 269, 269] },
];

/** 105 tokens: the golden 82-token prompt plus more comma-separated phrases. */
const PROMPT_105 =
  goldenCase("long_truncated").text +
  ", golden hour lighting, reflections on wet asphalt, lens flare, depth of field, soft bokeh, film grain";

let tok: ClipTokenizer;
beforeAll(async () => {
  tok = await ClipTokenizer.fromFolder(TOKENIZER_DIR);
});

function expectFramed(window: Int32Array, content: readonly number[], padId: number, maxLength = 77): void {
  expect(window.length).toBe(maxLength);
  expect(window[0]).toBe(BOS);
  expect(Array.from(window.subarray(1, 1 + content.length))).toEqual(content);
  expect(window[1 + content.length]).toBe(EOS);
  for (let i = content.length + 2; i < maxLength; i++) expect(window[i]).toBe(padId);
}

describe("settings", () => {
  it("reads the SD 1.x tokenizer folder", () => {
    expect(tok.settings).toEqual({ bosId: BOS, eosId: EOS, padId: EOS, maxLength: 77 });
    expect(golden.pad_token_id).toBe(tok.settings.padId);
    expect(golden.max_length).toBe(tok.settings.maxLength);
  });
});

describe("golden prompts (openai SimpleTokenizer, ftfy 6.1.1)", () => {
  it("has the 25 shared cases", () => {
    expect(golden.cases.length).toBe(25);
  });

  for (const c of golden.cases) {
    it(`${c.id}: clean text, bpe_ids and input_ids`, () => {
      expect(clipCleanText(c.text)).toBe(c.openai_clean_text);
      const ids = tok.encode(c.text);
      expect(ids).toEqual(c.bpe_ids);
      expect(ids.length).toBe(c.num_bpe_tokens);
      const { ids: input, dropped } = tok.tokenizeTruncated(c.text);
      expect(input).toBeInstanceOf(Int32Array);
      expect(Array.from(input)).toEqual(c.input_ids);
      expect(dropped !== "").toBe(c.truncated);
    });
  }
});

describe("prompts of the hidden set's kinds (Python reference ids)", () => {
  for (const c of EXTRA_CASES) {
    it(c.id, () => {
      expect(clipCleanText(c.text)).toBe(c.clean);
      expect(tok.encode(c.text)).toEqual(c.ids);
    });
  }
});

describe("cleaning details", () => {
  it("unescapes HTML like Python's html.unescape", () => {
    expect(pyHtmlUnescape("&notit; &amp &ampx &lt3 &#39; &#x27;")).toBe("\u00acit; & &x <3 ' '");
    expect(pyHtmlUnescape("&#0;|&#1;|&#128;|&#x110000;|&#xD800;|&#65279;")).toBe("\ufffd||\u20ac|\ufffd|\ufffd|\ufeff");
    expect(pyHtmlUnescape("&nosuch; & &#; &#x;")).toBe("&nosuch; & &#; &#x;");
  });

  it("applies ftfy's fixes", () => {
    expect(fixText("cafÃ© donâ€™t")).toBe("caf\u00e9 don't");
    expect(fixText("&amp;amp; &EACUTE;")).toBe("& \u00c9");
    expect(fixText("<p>&amp;</p>")).toBe("<p>&amp;</p>");
    expect(fixText("\ufb01 \uff21 \u201cq\u201d")).toBe('fi A "q"');
    expect(fixText("e\u0301")).toBe("\u00e9");
  });
});

describe("truncation", () => {
  it("cuts the 82-token prompt to 75 and reports the dropped words", () => {
    const c = goldenCase("long_truncated");
    const { ids, dropped } = tok.tokenizeTruncated(c.text);
    expectFramed(ids, c.bpe_ids.slice(0, 75), EOS);
    expect(dropped).toBe("sharp focus, award winning, masterpiece");
    expect(dropped).toBe(tok.decode(c.bpe_ids.slice(75)));
  });

  it("drops nothing at exactly 75 tokens and one word at 76", () => {
    expect(tok.tokenizeTruncated(goldenCase("exactly_75_tokens").text).dropped).toBe("");
    expect(tok.tokenizeTruncated(goldenCase("exactly_76_tokens").text).dropped).toBe("cat");
  });

  it("frames the empty prompt as [bos, eos, pad...]", () => {
    expectFramed(tok.tokenizeTruncated("").ids, [], EOS);
  });
});

describe("windows for long prompts", () => {
  function checkWindows(text: string, expectedTokens: number, expectedWindows: number) {
    const ids = tok.encode(text);
    expect(ids.length).toBe(expectedTokens);
    for (const backtrack of [undefined, 0]) {
      const windows = tok.tokenizeWindows(text, backtrack === undefined ? {} : { backtrack });
      expect(windows.length).toBe(expectedWindows);
      const contents: number[][] = [];
      for (const w of windows) {
        const eosAt = Array.from(w).indexOf(EOS, 1);
        expect(eosAt).toBeGreaterThan(0);
        expect(eosAt).toBeLessThanOrEqual(76);
        const content = Array.from(w.subarray(1, eosAt));
        expectFramed(w, content, EOS);
        contents.push(content);
      }
      // Every token once, in order.
      expect(contents.flat()).toEqual(ids);
      if (backtrack === 0) expect(contents[0]).toEqual(ids.slice(0, 75));
    }
  }

  it("splits the 82-token prompt into two windows", () => {
    checkWindows(goldenCase("long_truncated").text, 82, 2);
  });

  it("splits a 105-token prompt into two windows", () => {
    checkWindows(PROMPT_105, 105, 2);
  });

  it("ends a window after a comma when one is near", () => {
    const text = "masterpiece, " + PROMPT_105; // the 75th token is now inside a phrase
    const ids = tok.encode(text);
    expect(tok.decode(ids.slice(74, 75))).not.toBe(",");
    const [first, second] = tok.tokenizeWindows(text);
    const eosAt = Array.from(first!).indexOf(EOS, 1);
    expect(eosAt - 1).toBeLessThan(75); // gave tokens back ...
    expect(eosAt - 1).toBeGreaterThanOrEqual(75 - 20); // ... but at most 20
    expect(tok.decode([first![eosAt - 1]!])).toBe(","); // and ends after a comma
    expect(second![1]).toBe(ids[eosAt - 1]);
  });

  it("ends a window at a word boundary when there is no comma", () => {
    const text = Array.from({ length: 60 }, () => "supercalifragilistic").join(" ");
    const ids = tok.encode(text);
    const windows = tok.tokenizeWindows(text);
    const first = Array.from(windows[0]!);
    const eosAt = first.indexOf(EOS, 1);
    const perWord = tok.encode("supercalifragilistic").length;
    expect(perWord).toBeGreaterThan(1);
    expect((eosAt - 1) % perWord).toBe(0);
    expect(windows.flatMap((w) => Array.from(w.subarray(1, Array.from(w).indexOf(EOS, 1))))).toEqual(ids);
  });

  it("gives one window for short and empty prompts", () => {
    const short = tok.tokenizeWindows("a photograph of an astronaut riding a horse");
    expect(short.length).toBe(1);
    expectFramed(short[0]!, goldenCase("basic").bpe_ids, EOS);
    const empty = tok.tokenizeWindows("");
    expect(empty.length).toBe(1);
    expectFramed(empty[0]!, [], EOS);
  });
});

describe("decode", () => {
  it("turns ids back into text", () => {
    expect(tok.decode(goldenCase("basic").bpe_ids)).toBe("a photograph of an astronaut riding a horse");
    expect(tok.decode(tok.encode("Café naïve 東京 👍🏽, it's"))).toBe("café naïve 東京 👍🏽, it's");
    expect(tok.decode([BOS, ...tok.encode("a cat"), EOS])).toBe("<|startoftext|> a cat <|endoftext|>");
  });

  it("rejects unknown ids", () => {
    expect(() => tok.decode([1_000_000])).toThrow(/1000000/);
  });
});

describe("tokenizer folders", () => {
  let tmp: TempDir;
  beforeAll(async () => {
    tmp = await makeTempDir("underpaint-tokenizer-");
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  async function folder(name: string, files: Record<string, string | null>): Promise<string> {
    const dir = path.join(tmp.dir, name);
    await mkdir(dir, { recursive: true });
    for (const base of ["vocab.json", "merges.txt"]) {
      if (files[base] === undefined) await copyFile(path.join(TOKENIZER_DIR, base), path.join(dir, base));
    }
    for (const [base, content] of Object.entries(files)) {
      if (content !== null) await writeFile(path.join(dir, base), content);
    }
    return dir;
  }

  it('pads with "!" = 0 for an SD 2.x config', async () => {
    const sd2 = JSON.stringify({
      bos_token: { content: "<|startoftext|>", lstrip: false, normalized: true, rstrip: false, single_word: false },
      eos_token: { content: "<|endoftext|>", lstrip: false, normalized: true, rstrip: false, single_word: false },
      pad_token: "!",
      unk_token: { content: "<|endoftext|>", lstrip: false, normalized: true, rstrip: false, single_word: false },
      model_max_length: 77,
      tokenizer_class: "CLIPTokenizer",
    });
    const dir = await folder("sd2", { "tokenizer_config.json": sd2, "special_tokens_map.json": sd2 });
    const sd2tok = await ClipTokenizer.fromFolder(dir);
    expect(sd2tok.settings).toEqual({ bosId: BOS, eosId: EOS, padId: 0, maxLength: 77 });
    const c = goldenCase("basic");
    expectFramed(sd2tok.tokenizeTruncated(c.text).ids, c.bpe_ids, 0);
    for (const w of sd2tok.tokenizeWindows(goldenCase("long_truncated").text)) {
      const eosAt = Array.from(w).indexOf(EOS, 1);
      expect(Array.from(w.subarray(eosAt + 1)).every((id) => id === 0)).toBe(true);
    }
  });

  it("reads pad_token from tokenizer_config.json alone, and lets special_tokens_map.json win", async () => {
    const only = await folder("config-only", { "tokenizer_config.json": JSON.stringify({ pad_token: { content: "!" } }) });
    expect((await ClipTokenizer.fromFolder(only)).settings.padId).toBe(0);
    const both = await folder("both", {
      "tokenizer_config.json": JSON.stringify({ pad_token: "!", model_max_length: 77 }),
      "special_tokens_map.json": JSON.stringify({ pad_token: "<|endoftext|>" }),
    });
    expect((await ClipTokenizer.fromFolder(both)).settings.padId).toBe(EOS);
    const none = await folder("no-configs", {});
    expect((await ClipTokenizer.fromFolder(none)).settings).toEqual({ bosId: BOS, eosId: EOS, padId: EOS, maxLength: 77 });
  });

  it("reads a fast tokenizer's tokenizer.json when vocab.json and merges.txt are absent (merges as strings or as pairs), tokenizing alike", async () => {
    const vocab = JSON.parse(readFileSync(path.join(TOKENIZER_DIR, "vocab.json"), "utf8")) as Record<string, number>;
    const merges = readFileSync(path.join(TOKENIZER_DIR, "merges.txt"), "utf8").trim().split("\n").slice(1);
    const json = (m: unknown[]) => JSON.stringify({ version: "1.0", added_tokens: [], model: { type: "BPE", unk_token: "<|endoftext|>", end_of_word_suffix: "</w>", vocab, merges: m } });
    const strings = await folder("fast-strings", { "vocab.json": null, "merges.txt": null, "tokenizer.json": json(merges) });
    const pairs = await folder("fast-pairs", { "vocab.json": null, "merges.txt": null, "tokenizer.json": json(merges.map((line) => line.split(" "))) });
    for (const dir of [strings, pairs]) {
      const fast = await ClipTokenizer.fromFolder(dir);
      expect(fast.settings).toEqual(tok.settings);
      for (const name of ["basic", "long_truncated"]) {
        const c = goldenCase(name);
        expect(Array.from(fast.tokenizeTruncated(c.text).ids), `${name} from ${path.basename(dir)}`).toEqual(Array.from(tok.tokenizeTruncated(c.text).ids));
      }
    }
    const notBpe = await folder("fast-wordpiece", { "vocab.json": null, "merges.txt": null, "tokenizer.json": JSON.stringify({ model: { type: "WordPiece", vocab } }) });
    await expect(ClipTokenizer.fromFolder(notBpe)).rejects.toThrow(path.join(notBpe, "tokenizer.json"));
  });

  it("names the file when merges.txt is missing", async () => {
    const dir = await folder("no-merges", { "merges.txt": null });
    await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(path.join(dir, "merges.txt"));
  });

  it("names the file when vocab.json is corrupt", async () => {
    const dir = await folder("bad-vocab", { "vocab.json": '{"a</w>": 1, "b": ' });
    await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(path.join(dir, "vocab.json"));
    const wrong = await folder("wrong-vocab", { "vocab.json": JSON.stringify({ "a</w>": "one" }) });
    await expect(ClipTokenizer.fromFolder(wrong)).rejects.toThrow(path.join(wrong, "vocab.json"));
  });

  it("names the file when tokenizer_config.json is corrupt", async () => {
    const dir = await folder("bad-config", { "tokenizer_config.json": "{ not json" });
    await expect(ClipTokenizer.fromFolder(dir)).rejects.toThrow(path.join(dir, "tokenizer_config.json"));
    const wrong = await folder("wrong-config", { "tokenizer_config.json": JSON.stringify({ pad_token: 5 }) });
    await expect(ClipTokenizer.fromFolder(wrong)).rejects.toThrow(path.join(wrong, "tokenizer_config.json"));
  });
});

describe("repeated prompts", () => {
  it("gives the same ids from its per-word cache as on first encoding", async () => {
    const fresh = await ClipTokenizer.fromFolder(TOKENIZER_DIR);
    const prompt = goldenCase("long_truncated").text;
    const first = fresh.encode(prompt);
    for (let i = 0; i < 20; i++) expect(fresh.encode(prompt)).toEqual(first);
  });
});
