/** Prompt history, saved styles and recent seeds in the data folder (an in-memory one here), damaged files included. */
import { describe, expect, it } from "vitest";
import { addPrompt, Library, PROMPT_HISTORY, saveStyle, searchPrompts, type DataFolder, type Style } from "../../plugin/src/operations/library";

class MemoryFolder implements DataFolder {
  readonly files = new Map<string, string>();
  readonly writes: string[] = [];
  failWrites = false;
  constructor(files: Record<string, string> = {}) {
    for (const [k, v] of Object.entries(files)) this.files.set(k, v);
  }
  async read(name: string) {
    return this.files.get(name);
  }
  async write(name: string, text: string) {
    // Slow, uneven writes: a later save must still land last.
    await new Promise((r) => setTimeout(r, text.length % 7));
    if (this.failWrites) throw new Error("the disk is full");
    this.writes.push(name);
    this.files.set(name, text);
  }
  json(name: string) {
    return JSON.parse(this.files.get(name)!);
  }
}

const style = (name: string, steps = 20): Style => ({ name, prompt: `${name} prompt`, negativePrompt: "", settings: { steps, guidance: 7, scheduler: "euler", strength: 0.5, variations: 1 } });

describe("the prompt history", () => {
  it("keeps the last 50 prompts, newest first, each once", () => {
    let list = addPrompt([], { prompt: "a red fox", negativePrompt: "", at: 1 });
    list = addPrompt(list, { prompt: "a blue bird", negativePrompt: "", at: 2 });
    list = addPrompt(list, { prompt: "  a red fox ", negativePrompt: "", at: 3 });
    list = addPrompt(list, { prompt: "   ", negativePrompt: "", at: 4 });
    expect(list.map((e) => [e.prompt, e.at])).toEqual([["a red fox", 3], ["a blue bird", 2]]);
    for (let i = 0; i < 80; i++) list = addPrompt(list, { prompt: `prompt ${i}`, negativePrompt: "", at: 10 + i });
    expect(list).toHaveLength(PROMPT_HISTORY);
    expect(list[0]!.prompt).toBe("prompt 79");
    expect(list.at(-1)!.prompt).toBe("prompt 30");
  });

  it("finds prompts holding every word searched for, in any case and order", () => {
    const list = [
      { prompt: "A lighthouse at dusk, oil painting", negativePrompt: "blurry", at: 3 },
      { prompt: "a fox in the snow", negativePrompt: "", at: 2 },
      { prompt: "dusk over the sea", negativePrompt: "", at: 1 },
    ];
    expect(searchPrompts(list, "DUSK").map((e) => e.at)).toEqual([3, 1]);
    expect(searchPrompts(list, "painting lighthouse").map((e) => e.at)).toEqual([3]);
    expect(searchPrompts(list, "blurry").map((e) => e.at)).toEqual([3]);
    expect(searchPrompts(list, "  ")).toHaveLength(3);
    expect(searchPrompts(list, "castle")).toEqual([]);
  });
});

describe("the library in the data folder", () => {
  it("saves history, styles and seeds as one JSON file each and reads them back", async () => {
    const folder = new MemoryFolder();
    const library = await Library.open(folder);
    expect(library.problems).toEqual([]);
    await library.addPrompt("a lighthouse", "fog", 100);
    await library.saveStyle(style("Ink"));
    await library.saveStyle(style("charcoal"));
    await library.saveStyle(style("ink", 30)); // same name, other case: replaces
    await library.rememberSeeds([{ seed: 4_000_000_000, prompt: "a lighthouse", model: "tiny-sd" }, { seed: 4_000_000_001, prompt: "a lighthouse", model: "tiny-sd" }]);
    expect([...folder.files.keys()].sort()).toEqual(["prompt-history.json", "recent-seeds.json", "styles.json"]);
    expect(folder.json("prompt-history.json")).toEqual({ version: 1, items: [{ prompt: "a lighthouse", negativePrompt: "fog", at: 100 }] });

    const again = await Library.open(folder);
    expect(again.problems).toEqual([]);
    expect(again.prompts).toEqual([{ prompt: "a lighthouse", negativePrompt: "fog", at: 100 }]);
    expect(again.styles.map((s) => [s.name, s.settings.steps])).toEqual([["charcoal", 20], ["ink", 30]]);
    expect(again.seeds.map((s) => s.seed)).toEqual([4_000_000_000, 4_000_000_001]);
    await again.deleteStyle("charcoal");
    expect((await Library.open(folder)).styles.map((s) => s.name)).toEqual(["ink"]);
  });

  it("starts afresh from a damaged file, says so, and keeps the damaged one aside", async () => {
    const folder = new MemoryFolder({ "prompt-history.json": '{"version": 1, "items": [{"prompt": "half a wri', "styles.json": "[1, 2, 3]" });
    const library = await Library.open(folder);
    expect(library.prompts).toEqual([]);
    expect(library.styles).toEqual([]);
    expect(library.problems).toEqual([
      "The prompt history file was damaged; it was set aside as prompt-history.json.damaged and a new one is started.",
      "The saved styles file was damaged; it was set aside as styles.json.damaged and a new one is started.",
    ]);
    expect(folder.files.get("prompt-history.json.damaged")).toBe('{"version": 1, "items": [{"prompt": "half a wri');
    await library.addPrompt("a new start", "", 1);
    expect((await Library.open(folder)).prompts.map((e) => e.prompt)).toEqual(["a new start"]);
  });

  it("keeps the entries that still validate and leaves out the others", async () => {
    const items = [style("good"), { name: "", prompt: 3 }, { ...style("bad scheduler"), settings: { ...style("x").settings, scheduler: "warp" } }, style("fine")];
    const folder = new MemoryFolder({
      "styles.json": JSON.stringify({ version: 1, items }),
      "recent-seeds.json": JSON.stringify({ version: 1, items: [{ seed: 2 ** 32, prompt: "", model: "m" }, { seed: 5, prompt: "p", model: "m" }] }),
    });
    const library = await Library.open(folder);
    expect(library.styles.map((s) => s.name)).toEqual(["good", "fine"]);
    expect(library.seeds.map((s) => s.seed)).toEqual([5]);
    expect(library.problems).toEqual(["2 damaged entries were left out of the saved styles.", "1 damaged entry was left out of the recent seeds."]);
  });

  it("writes saves in order, and a failed write is a sentence", async () => {
    const folder = new MemoryFolder();
    const library = await Library.open(folder);
    await Promise.all(["a", "bb", "ccc", "dddd", "eeeee"].map((p, i) => library.addPrompt(p, "", i)));
    expect(folder.json("prompt-history.json").items.map((e: { prompt: string }) => e.prompt)).toEqual(["eeeee", "dddd", "ccc", "bb", "a"]);
    folder.failWrites = true;
    await expect(library.saveStyle(style("lost"))).rejects.toThrow("The saved styles could not be saved: the disk is full");
    folder.failWrites = false;
    await library.saveStyle(style("kept"));
    expect((await Library.open(folder)).styles.map((s) => s.name)).toEqual(["kept", "lost"]);
  });

  it("sorts styles by name", () => {
    expect(saveStyle([style("b"), style("a")], style("c")).map((s) => s.name)).toEqual(["a", "b", "c"]);
  });
});
