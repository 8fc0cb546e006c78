/**
 * What the panel keeps for the artist between sessions, in the plugin's data folder: the last
 * prompts (searchable), named styles (prompt, negative prompt and settings) and the recent seeds.
 * One JSON file per kind, validated when read back: a damaged file is set aside and the panel
 * starts that list afresh, saying so, instead of breaking.
 */
import { z } from "zod";
import { SchedulerName } from "../../../protocol";
import { MAX_SEED, rememberSeed, type SeedRecord } from "./seed";
import type { GenerationSettings } from "./settings";

/** Files in the plugin's data folder, by name. uxp.ts implements it on UXP's localFileSystem. */
export interface DataFolder {
  /** The file's text, or undefined when there is no such file. */
  read(name: string): Promise<string | undefined>;
  /** Replaces the file's text (written beside it and renamed over it where the host can). */
  write(name: string, text: string): Promise<void>;
}

export const PROMPT_HISTORY = 50;

export interface PromptEntry {
  prompt: string;
  negativePrompt: string;
  /** When it was last used (ms since 1970). */
  at: number;
}

/** The settings a style keeps besides its prompts. */
export type StyleSettings = Pick<GenerationSettings, "steps" | "guidance" | "scheduler" | "strength" | "variations"> & { model?: string };

export interface Style {
  name: string;
  prompt: string;
  negativePrompt: string;
  settings: StyleSettings;
}

const text = z.string().max(10_000);
const PromptEntrySchema = z.object({ prompt: text, negativePrompt: text.default(""), at: z.number().finite() });
const StyleSchema = z.object({
  name: z.string().min(1).max(100),
  prompt: text,
  negativePrompt: text.default(""),
  settings: z.object({
    steps: z.number().int().min(1).max(200),
    guidance: z.number().min(0).max(50),
    scheduler: SchedulerName,
    strength: z.number().min(0).max(1),
    variations: z.number().int().min(1).max(8),
    model: z.string().max(256).optional(),
  }),
});
const SeedSchema = z.object({ seed: z.number().int().min(0).max(MAX_SEED), prompt: text, model: z.string().max(256) });

/** One kind of list, as its file holds it: {"version": 1, "items": [...]}. */
interface ListFile<T> {
  file: string;
  item: z.ZodType<T, unknown>;
  /** What it is, for sentences: "prompt history". */
  what: string;
}

const PROMPTS: ListFile<PromptEntry> = { file: "prompt-history.json", item: PromptEntrySchema, what: "prompt history" };
const STYLES: ListFile<Style> = { file: "styles.json", item: StyleSchema, what: "saved styles" };
const SEEDS: ListFile<SeedRecord> = { file: "recent-seeds.json", item: SeedSchema, what: "recent seeds" };

const Envelope = z.object({ version: z.literal(1), items: z.array(z.unknown()) });

/**
 * Reads one list back: what validates is kept, item by item. A file that is not such a list at all
 * is copied aside (name + ".damaged") so nothing the artist had is overwritten unseen.
 */
async function readList<T>(folder: DataFolder, kind: ListFile<T>): Promise<{ items: T[]; problem?: string }> {
  let raw: string | undefined;
  try {
    raw = await folder.read(kind.file);
  } catch (error) {
    return { items: [], problem: `The ${kind.what} could not be read (${messageOf(error)}); starting with none.` };
  }
  if (raw === undefined) return { items: [] };
  let envelope: z.infer<typeof Envelope>;
  try {
    envelope = Envelope.parse(JSON.parse(raw));
  } catch {
    await folder.write(`${kind.file}.damaged`, raw).catch(() => {});
    return { items: [], problem: `The ${kind.what} file was damaged; it was set aside as ${kind.file}.damaged and a new one is started.` };
  }
  const items: T[] = [];
  for (const value of envelope.items) {
    const parsed = kind.item.safeParse(value);
    if (parsed.success) items.push(parsed.data);
  }
  const dropped = envelope.items.length - items.length;
  return dropped > 0 ? { items, problem: `${dropped} damaged ${dropped === 1 ? "entry was" : "entries were"} left out of the ${kind.what}.` } : { items };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---- the lists' rules, pure ----

/** The history with `entry` first (an older copy of the same prompts goes), at most `max` long. */
export function addPrompt(list: readonly PromptEntry[], entry: PromptEntry, max = PROMPT_HISTORY): PromptEntry[] {
  const prompt = entry.prompt.trim();
  if (!prompt) return [...list];
  const same = (e: PromptEntry) => e.prompt.trim() === prompt && e.negativePrompt.trim() === entry.negativePrompt.trim();
  return [{ ...entry, prompt }, ...list.filter((e) => !same(e))].slice(0, max);
}

/** Prompts holding every word of `query` (any case, any order), newest first; all of them for an empty query. */
export function searchPrompts(list: readonly PromptEntry[], query: string): PromptEntry[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return list.filter((e) => {
    const haystack = `${e.prompt} ${e.negativePrompt}`.toLowerCase();
    return words.every((w) => haystack.includes(w));
  });
}

/** The styles with `style` saved under its name (replacing one of the same name, any case), sorted by name. */
export function saveStyle(list: readonly Style[], style: Style): Style[] {
  const name = style.name.trim();
  const rest = list.filter((s) => s.name.toLowerCase() !== name.toLowerCase());
  return [...rest, { ...style, name }].sort((a, b) => a.name.localeCompare(b.name));
}

export function deleteStyle(list: readonly Style[], name: string): Style[] {
  return list.filter((s) => s.name !== name);
}

// ---- the library: the lists, loaded once and saved on each change ----

export class Library {
  /** Sentences about files that could not be read back (shown once, as notices). */
  readonly problems: string[];
  private writing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly folder: DataFolder,
    private promptList: PromptEntry[],
    private styleList: Style[],
    private seedList: SeedRecord[],
    problems: string[],
  ) {
    this.problems = problems;
  }

  static async open(folder: DataFolder): Promise<Library> {
    const [prompts, styles, seeds] = await Promise.all([readList(folder, PROMPTS), readList(folder, STYLES), readList(folder, SEEDS)]);
    const problems = [prompts.problem, styles.problem, seeds.problem].filter((p): p is string => p !== undefined);
    return new Library(folder, prompts.items.slice(0, PROMPT_HISTORY), styles.items, seeds.items, problems);
  }

  get prompts(): readonly PromptEntry[] {
    return this.promptList;
  }

  get styles(): readonly Style[] {
    return this.styleList;
  }

  get seeds(): readonly SeedRecord[] {
    return this.seedList;
  }

  addPrompt(prompt: string, negativePrompt: string, at = Date.now()): Promise<void> {
    this.promptList = addPrompt(this.promptList, { prompt, negativePrompt, at });
    return this.save(PROMPTS, this.promptList);
  }

  saveStyle(style: Style): Promise<void> {
    this.styleList = saveStyle(this.styleList, style);
    return this.save(STYLES, this.styleList);
  }

  deleteStyle(name: string): Promise<void> {
    this.styleList = deleteStyle(this.styleList, name);
    return this.save(STYLES, this.styleList);
  }

  /** Seeds of one generation's variations (first variation first). */
  rememberSeeds(records: readonly SeedRecord[]): Promise<void> {
    for (const record of [...records].reverse()) this.seedList = rememberSeed(this.seedList, record);
    return this.save(SEEDS, this.seedList);
  }

  /** Writes one after another, so an older list never lands after a newer one. */
  private save<T>(kind: ListFile<T>, items: readonly T[]): Promise<void> {
    const text = JSON.stringify({ version: 1, items });
    const write = this.writing.then(() => this.folder.write(kind.file, text));
    this.writing = write.catch(() => undefined);
    return write.catch((error: unknown) => {
      throw new Error(`The ${kind.what} could not be saved: ${messageOf(error)}`);
    });
  }
}
