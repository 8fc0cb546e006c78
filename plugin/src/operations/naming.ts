/** Names of the layers and groups Underpaint adds, so the artist can tell them apart. */
import { MODE_LABELS, type OperationMode } from "./settings";

/** The prompt cut at a word boundary to about `max` characters, with an ellipsis when cut. */
export function shortenPrompt(prompt: string, max = 40): string {
  const text = prompt.replace(/\s+/g, " ").trim();
  if (text.length <= max) return text;
  const cut = text.slice(0, max + 1);
  const space = cut.lastIndexOf(" ");
  return `${(space > max / 2 ? cut.slice(0, space) : text.slice(0, max)).replace(/[\s,;:.]+$/, "")}…`;
}

/** "<prompt, shortened> · seed N" */
export function layerName(prompt: string, seed: number): string {
  const short = shortenPrompt(prompt);
  return short ? `${short} · seed ${seed}` : `Underpaint · seed ${seed}`;
}

export function groupName(mode: OperationMode, prompt: string): string {
  const short = shortenPrompt(prompt, 30);
  return short ? `Underpaint ${MODE_LABELS[mode]} · ${short}` : `Underpaint ${MODE_LABELS[mode]}`;
}

export function historyName(mode: OperationMode): string {
  return `Underpaint ${MODE_LABELS[mode]}`;
}
