/**
 * Python's `html.unescape` (CPython 3.11, HTML5 rules), byte for byte, and ftfy's narrower
 * `unescape_html` fixer. CLIP's text cleaning calls both, so the details (longest-prefix matching of
 * legacy names without ';', Windows-1252 numeric references, characters that are dropped) decide
 * which BPE ids a prompt gets.
 */
import { HTML5_ENTITIES_RAW } from "./html5-entities";

const HTML5 = new Map<string, string>(Object.entries(HTML5_ENTITIES_RAW));

/** html._invalid_charrefs: numeric references the HTML5 spec remaps (0x80..0x9F as Windows-1252). */
const INVALID_CHARREFS = new Map<number, string>([
  [0x00, "\ufffd"],
  [0x0d, "\r"],
  [0x80, "\u20ac"],
  [0x81, "\x81"],
  [0x82, "\u201a"],
  [0x83, "\u0192"],
  [0x84, "\u201e"],
  [0x85, "\u2026"],
  [0x86, "\u2020"],
  [0x87, "\u2021"],
  [0x88, "\u02c6"],
  [0x89, "\u2030"],
  [0x8a, "\u0160"],
  [0x8b, "\u2039"],
  [0x8c, "\u0152"],
  [0x8d, "\x8d"],
  [0x8e, "\u017d"],
  [0x8f, "\x8f"],
  [0x90, "\x90"],
  [0x91, "\u2018"],
  [0x92, "\u2019"],
  [0x93, "\u201c"],
  [0x94, "\u201d"],
  [0x95, "\u2022"],
  [0x96, "\u2013"],
  [0x97, "\u2014"],
  [0x98, "\u02dc"],
  [0x99, "\u2122"],
  [0x9a, "\u0161"],
  [0x9b, "\u203a"],
  [0x9c, "\u0153"],
  [0x9d, "\x9d"],
  [0x9e, "\u017e"],
  [0x9f, "\u0178"],
]);

/** html._invalid_codepoints: numeric references to these code points decode to nothing. */
function isInvalidCodepoint(n: number): boolean {
  if ((n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f)) return true;
  if (n >= 0x7f && n <= 0x9f) return true;
  if (n >= 0xfdd0 && n <= 0xfdef) return true;
  return (n & 0xfffe) === 0xfffe && n <= 0x10ffff; // U+xFFFE and U+xFFFF of every plane
}

function numericCharref(num: number): string {
  const mapped = INVALID_CHARREFS.get(num);
  if (mapped !== undefined) return mapped;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff || !Number.isFinite(num)) return "\ufffd";
  if (isInvalidCodepoint(num)) return "";
  return String.fromCodePoint(num);
}

// html._charref, with `u` so that {1,32} counts code points as Python does.
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(_m: string, s: string): string {
  if (s[0] === "#") {
    const hex = s[1] === "x" || s[1] === "X";
    const digits = (hex ? s.slice(2) : s.slice(1)).replace(/;+$/, "");
    return numericCharref(parseInt(digits, hex ? 16 : 10));
  }
  const full = HTML5.get(s);
  if (full !== undefined) return full;
  // The longest name that is a prefix (legacy names such as "amp" or "eacute" need no ';').
  for (let x = s.length - 1; x > 1; x--) {
    const hit = HTML5.get(s.slice(0, x));
    if (hit !== undefined) return hit + s.slice(x);
  }
  return "&" + s;
}

/** Python's `html.unescape(s)`. */
export function pyHtmlUnescape(s: string): string {
  if (!s.includes("&")) return s;
  return s.replace(CHARREF_RE, replaceCharref);
}

let ftfyEntities: Map<string, string> | undefined;

/** ftfy.chardata.HTML_ENTITIES: "&name;" for every HTML5 name ending in ';', plus all-caps forms. */
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const table = new Map<string, string>();
  for (const [name, char] of HTML5) {
    if (!name.endsWith(";")) continue;
    table.set("&" + name, char);
    if (name === name.toLowerCase()) {
      const upper = "&" + name.toUpperCase();
      if (pyHtmlUnescape(upper) === upper) table.set(upper, char.toUpperCase());
    }
  }
  ftfyEntities = table;
  return table;
}

const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy.fixes.unescape_html: only complete `&...;` references, never the ambiguous legacy forms. */
export function ftfyUnescapeHtml(text: string): string {
  if (!text.includes("&")) return text;
  const table = ftfyEntityTable();
  return text.replace(FTFY_ENTITY_RE, (ref) => {
    const named = table.get(ref);
    if (named !== undefined) return named;
    if (ref.startsWith("&#")) {
      const unescaped = pyHtmlUnescape(ref);
      // html.unescape decoded only part of it: keep the reference as it was.
      return unescaped.includes(";") ? ref : unescaped;
    }
    return ref;
  });
}
