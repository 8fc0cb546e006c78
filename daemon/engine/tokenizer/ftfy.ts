/**
 * `ftfy.fix_text(text)` with its default settings, as CLIP's tokenizer calls it (ftfy 6.1): per
 * line, repeated until nothing changes: HTML unescaping (only where the line has no '<'), mojibake
 * repair (UTF-8 read as Latin-1 / Windows-125x / MacRoman / cp437), C1 controls, Latin ligatures,
 * full/half-width forms, curly quotes, line breaks, surrogates, terminal escapes, control
 * characters, then NFC.
 *
 * Written from ftfy's documented behaviour and source; the heuristic's data (which character pairs
 * look like mojibake) is in ftfy-data.ts.
 */
import { BADNESS_SOURCE, CHARMAP_ENCODINGS, UTF8_DETECTOR_SOURCE } from "./ftfy-data";
import { ftfyUnescapeHtml } from "./py-html";

// ---------------------------------------------------------------------------------------------
// Single-byte codecs ("sloppy" ones decode unmapped bytes as Latin-1 and byte 0x1A as U+FFFD).

interface Charmap {
  readonly name: string;
  readonly sloppy: boolean;
  /** byte -> char */
  readonly decode: readonly string[];
  /** code point -> byte */
  readonly encode: ReadonlyMap<number, number>;
}

const CHARMAPS: readonly Charmap[] = CHARMAP_ENCODINGS.map(({ name, sloppy, high }) => {
  const decode: string[] = [];
  for (let b = 0; b < 128; b++) decode.push(String.fromCharCode(b));
  if (sloppy) decode[0x1a] = "\ufffd";
  for (const ch of high) decode.push(ch);
  if (decode.length !== 256) throw new Error(`ftfy charmap ${name} has ${decode.length} entries`);
  const encode = new Map<number, number>();
  decode.forEach((ch, b) => encode.set(ch.codePointAt(0)!, b));
  return { name, sloppy, decode, encode };
});

const SLOPPY_1252 = CHARMAPS.find((c) => c.name === "sloppy-windows-1252")!;

function possibleEncoding(text: string, cm: Charmap): boolean {
  for (const ch of text) {
    if (!cm.encode.has(ch.codePointAt(0)!)) return false;
  }
  return true;
}

function isAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text);
}

/** Bytes as a "binary string" (one char per byte), so that byte regexes can be JS regexes. */
function encodeBinary(text: string, cm: Charmap): string {
  let out = "";
  for (const ch of text) out += String.fromCharCode(cm.encode.get(ch.codePointAt(0)!)!);
  return out;
}

function binaryToBytes(bin: string): Uint8Array {
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Python's strict UTF-8 decoding; undefined where Python raises UnicodeDecodeError. */
function decodeUtf8Strict(bytes: Uint8Array): string | undefined {
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    return undefined;
  }
}

// ftfy's "utf-8-variants" codec, on binary strings. Python's `$` also matches before a final "\n",
// hence `(?=\n?$)`; that quirk lets "\xc0\n" at the end decode as U+0000, swallowing the newline.
const PY_END = "(?=\\n?$)";
const CESU8_SRC =
  `\\xed(?:[\\xa0-\\xaf]|${PY_END})(?:[\\x80-\\xbf]|${PY_END})(?:\\xed|${PY_END})` +
  `(?:[\\xb0-\\xbf]|${PY_END})(?:[\\x80-\\xbf]|${PY_END})`;
const SPECIAL_BYTES_RE = new RegExp(
  `\\xc0(?:\\x80|${PY_END})|${CESU8_SRC}|\\xed(?:[\\xa0-\\xbf]|${PY_END})(?:[\\x80-\\xbf]|${PY_END})`,
);
const CESU8_AT_START_RE = new RegExp(`^(?:${CESU8_SRC})`);

/**
 * ftfy's "utf-8-variants": strict UTF-8 that also accepts CESU-8 surrogate pairs (six bytes
 * ED Ax xx ED Bx xx for one astral character) and Java's C0 80 for U+0000.
 */
function decodeUtf8Variants(bin: string): string | undefined {
  let out = "";
  let rest = bin;
  for (;;) {
    const match = SPECIAL_BYTES_RE.exec(rest);
    if (!match) {
      const tail = decodeUtf8Strict(binaryToBytes(rest));
      return tail === undefined ? undefined : out + tail;
    }
    if (match.index > 0) {
      const head = decodeUtf8Strict(binaryToBytes(rest.slice(0, match.index)));
      if (head === undefined) return undefined;
      out += head;
      rest = rest.slice(match.index);
      continue;
    }
    if (rest.charCodeAt(0) === 0xc0) {
      if (rest.length < 2) return undefined;
      out += "\u0000";
      rest = rest.slice(2);
      continue;
    }
    if (rest.length < 6 || !CESU8_AT_START_RE.test(rest)) return undefined;
    const b = (i: number) => rest.charCodeAt(i);
    const cp = ((b(1) & 0x0f) << 16) + ((b(2) & 0x3f) << 10) + ((b(4) & 0x0f) << 6) + (b(5) & 0x3f) + 0x10000;
    out += String.fromCodePoint(cp);
    rest = rest.slice(6);
  }
}

// ---------------------------------------------------------------------------------------------
// The heuristic and the byte-level repairs.

const BADNESS_RE = new RegExp(BADNESS_SOURCE, "u");
const UTF8_DETECTOR_RE = new RegExp(UTF8_DETECTOR_SOURCE, "gu");
const UTF8_DETECTOR_TEST = new RegExp(UTF8_DETECTOR_SOURCE, "u");

/** ftfy.badness.is_bad: does the text contain a character sequence that looks like mojibake? */
export function isBad(text: string): boolean {
  return BADNESS_RE.test(text);
}

const ALTERED_UTF8_RE =
  /[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]/;
const ALTERED_UTF8_RE_G = new RegExp(ALTERED_UTF8_RE.source, "g");
const A_GRAVE_WORD_RE = /\xc3 (?! |quele|quela|quilo|s )/g;
const LOSSY_UTF8_RE =
  /[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a/g;
const C1_CONTROL_RE = /[\x80-\x9f]/;
const C1_CONTROL_RE_G = /[\x80-\x9f]/g;

/** A 0xA0 byte that some program turned into a space, inside what would be UTF-8. */
function restoreByteA0(bin: string): string {
  return bin.replace(A_GRAVE_WORD_RE, "\xc3\xa0 ").replace(ALTERED_UTF8_RE_G, (m) => m.replace(/ /g, "\xa0"));
}

/** UTF-8 sequences whose continuation bytes were lost (byte 0x1A stands for U+FFFD) -> U+FFFD. */
function replaceLossySequences(bin: string): string {
  return bin.replace(LOSSY_UTF8_RE, "\xef\xbf\xbd");
}

function fixC1Controls(text: string): string {
  return text.replace(C1_CONTROL_RE_G, (c) => SLOPPY_1252.decode[c.charCodeAt(0)]!);
}

/** Mojibake embedded in otherwise consistent text is fixed piece by piece. */
function decodeInconsistentUtf8(text: string): string {
  return text.replace(UTF8_DETECTOR_RE, (sub) => (sub.length < text.length && isBad(sub) ? fixEncoding(sub) : sub));
}

/** Python's text.encode("latin-1").decode("windows-1252") (strict); undefined where it raises. */
function latin1AsWindows1252(text: string): string | undefined {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x80 && c <= 0x9f) {
      if (c === 0x81 || c === 0x8d || c === 0x8f || c === 0x90 || c === 0x9d) return undefined;
      out += SLOPPY_1252.decode[c]!;
    } else {
      out += ch;
    }
  }
  return out;
}

function fixEncodingOneStep(text: string): string {
  if (text.length === 0) return text;
  if (isAscii(text) || !isBad(text)) return text;

  const possible: string[] = [];
  for (const cm of CHARMAPS) {
    if (!possibleEncoding(text, cm)) continue;
    possible.push(cm.name);
    let bin = encodeBinary(text, cm);
    if (ALTERED_UTF8_RE.test(bin)) bin = restoreByteA0(bin);
    if (cm.sloppy) bin = replaceLossySequences(bin);
    const variants = bin.includes("\xed") || bin.includes("\xc0");
    const fixed = variants ? decodeUtf8Variants(bin) : decodeUtf8Strict(binaryToBytes(bin));
    if (fixed !== undefined) return fixed;
  }

  if (UTF8_DETECTOR_TEST.test(text)) {
    const fixed = decodeInconsistentUtf8(text);
    if (fixed !== text) return fixed;
  }

  // Latin-1 that was meant to be Windows-1252 (ftfy checks for a "windows-1252" entry that its
  // list never has, so the text is always re-decoded when that succeeds).
  if (possible.includes("latin-1")) {
    const fixed = latin1AsWindows1252(text);
    if (fixed !== undefined && fixed !== text) return fixed;
  }

  if (C1_CONTROL_RE.test(text)) return fixC1Controls(text);
  return text;
}

/** ftfy.fix_encoding: repeat the one-step repair until it changes nothing. */
export function fixEncoding(text: string): string {
  for (;;) {
    const prev = text;
    text = fixEncodingOneStep(text);
    if (text === prev) return text;
  }
}

// ---------------------------------------------------------------------------------------------
// The simple fixers.

const LIGATURES: ReadonlyMap<string, string> = new Map([
  ["\u0132", "IJ"],
  ["\u0133", "ij"],
  ["\u0149", "\u02bcn"],
  ["\u01f1", "DZ"],
  ["\u01f2", "Dz"],
  ["\u01f3", "dz"],
  ["\u01c4", "D\u017d"],
  ["\u01c5", "D\u017e"],
  ["\u01c6", "d\u017e"],
  ["\u01c7", "LJ"],
  ["\u01c8", "Lj"],
  ["\u01c9", "lj"],
  ["\u01ca", "NJ"],
  ["\u01cb", "Nj"],
  ["\u01cc", "nj"],
  ["\ufb00", "ff"],
  ["\ufb01", "fi"],
  ["\ufb02", "fl"],
  ["\ufb03", "ffi"],
  ["\ufb04", "ffl"],
  ["\ufb05", "\u017ft"],
  ["\ufb06", "st"],
]);
const LIGATURE_RE = /[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g;

/** U+3000 and the NFKC forms of U+FF01..U+FFEF (fullwidth ASCII, halfwidth katakana and hangul). */
const WIDTH_MAP: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>([["\u3000", " "]]);
  for (let c = 0xff01; c < 0xfff0; c++) {
    const ch = String.fromCharCode(c);
    const alt = ch.normalize("NFKC");
    if (alt !== ch) map.set(ch, alt);
  }
  return map;
})();
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;

const SINGLE_QUOTE_RE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE_RE = /[\u201c-\u201f]/g;
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// Python's \d in a str pattern is any Unicode decimal digit.
const ANSI_RE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;
const CONTROL_CHARS_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

function fixLineBreaks(text: string): string {
  return text
    .replace(/\r\n/g, "\n")
    .replace(/\r/g, "\n")
    .replace(/\u2028/g, "\n")
    .replace(/\u2029/g, "\n")
    .replace(/\u0085/g, "\n");
}

function fixSegment(text: string, unescapeHtml: boolean): string {
  for (;;) {
    const orig = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES.get(c) ?? c);
    text = text.replace(WIDTH_RE, (c) => WIDTH_MAP.get(c) ?? c);
    text = text.replace(DOUBLE_QUOTE_RE, '"').replace(SINGLE_QUOTE_RE, "'");
    text = fixLineBreaks(text);
    text = text.replace(LONE_SURROGATE_RE, "\ufffd");
    text = text.replace(ANSI_RE, "");
    text = text.replace(CONTROL_CHARS_RE, "");
    text = text.normalize("NFC");
    if (text === orig) return text;
  }
}

const MAX_DECODE_LENGTH = 1_000_000;

/**
 * `ftfy.fix_text(text)` with the default TextFixerConfig. The text is fixed one line at a time;
 * once a line contains '<', HTML entities are left alone in it and in every later line.
 */
export function fixText(text: string): string {
  let unescapeHtml = true;
  let out = "";
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos) + 1;
    if (end === 0) end = text.length;
    if (end - pos > MAX_DECODE_LENGTH) end = pos + MAX_DECODE_LENGTH;
    const segment = text.slice(pos, end);
    if (segment.includes("<")) unescapeHtml = false;
    out += fixSegment(segment, unescapeHtml);
    pos = end;
  }
  return out;
}
