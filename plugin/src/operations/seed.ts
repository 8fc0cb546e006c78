/**
 * Seeds as the artist types them. They go up to 4,294,967,295, past what UXP's number fields
 * hold (about ±214,748), so the panel keeps them as text and reads them here, exactly.
 */

/** The largest seed every engine and the CLI take (2^32 - 1). */
export const MAX_SEED = 0xffffffff;

export type SeedChoice =
  /** A new random seed for each generation. */
  | { kind: "random" }
  | { kind: "fixed"; seed: number }
  /** What was typed is no seed: `message` says why, in a sentence. */
  | { kind: "invalid"; message: string };

const RANGE = `a whole number from 0 to ${MAX_SEED.toLocaleString("en-US")}`;

/** Reads a typed seed: digits only (spaces around them are ignored), 0 to MAX_SEED. */
export function parseSeed(text: string): SeedChoice {
  const typed = text.trim();
  if (typed === "") return { kind: "invalid", message: `Type a seed (${RANGE}) or tick Random.` };
  if (!/^\d+$/.test(typed)) return { kind: "invalid", message: `A seed is ${RANGE}; “${shorten(typed)}” is not.` };
  // Digits beyond 10 are over the limit whatever they are (and would lose precision as a number).
  const seed = typed.replace(/^0+(?=\d)/, "").length > 10 ? Infinity : Number(typed);
  if (seed > MAX_SEED) return { kind: "invalid", message: `“${shorten(typed)}” is larger than the largest seed, ${MAX_SEED.toLocaleString("en-US")}.` };
  return { kind: "fixed", seed };
}

/** The seed field's text for a seed: plain digits, exactly (never 4e9 or a rounded value). */
export function seedText(seed: number): string {
  // Whole numbers below 1e21 print as plain digits.
  return String(Math.trunc(seed));
}

function shorten(text: string): string {
  return text.length > 24 ? `${text.slice(0, 24)}…` : text;
}

/** A seed the panel made a picture with, and what it was asked for. */
export interface SeedRecord {
  seed: number;
  prompt: string;
  model: string;
}

export const RECENT_SEEDS = 12;

/** The list with `record` first (once: an older entry for the same seed and prompt goes), at most `max` long. */
export function rememberSeed(list: readonly SeedRecord[], record: SeedRecord, max = RECENT_SEEDS): SeedRecord[] {
  const rest = list.filter((r) => r.seed !== record.seed || r.prompt !== record.prompt);
  return [record, ...rest].slice(0, max);
}
