/** Seeds typed as text: the whole range exactly, a sentence for anything else, and the recent-seeds list. */
import { describe, expect, it } from "vitest";
import { MAX_SEED, parseSeed, rememberSeed, seedText } from "../../plugin/src/operations/seed";

describe("reading a typed seed", () => {
  it("takes every whole number from 0 to 4,294,967,295 exactly, spaces around it ignored", () => {
    for (const [text, seed] of [
      ["0", 0],
      ["42", 42],
      ["214749", 214_749],
      ["4000000000", 4_000_000_000],
      ["4294967295", MAX_SEED],
      ["  77 ", 77],
      ["007", 7],
      ["00000000004294967295", MAX_SEED],
    ] as const) {
      expect(parseSeed(text), text).toEqual({ kind: "fixed", seed });
    }
  });

  it("says why anything else is no seed", () => {
    expect(parseSeed("4294967296")).toEqual({ kind: "invalid", message: "“4294967296” is larger than the largest seed, 4,294,967,295." });
    expect(parseSeed("99999999999999999999").kind).toBe("invalid");
    for (const text of ["-1", "1.5", "abc", "1e9", "4 000", "0x10", "+5"]) {
      const choice = parseSeed(text);
      expect(choice.kind, text).toBe("invalid");
      if (choice.kind === "invalid") expect(choice.message).toBe(`A seed is a whole number from 0 to 4,294,967,295; “${text}” is not.`);
    }
    expect(parseSeed("   ")).toEqual({ kind: "invalid", message: "Type a seed (a whole number from 0 to 4,294,967,295) or tick Random." });
  });

  it("writes seeds back as plain digits that read as the same seed", () => {
    for (const seed of [0, 1, 214_748, 4_000_000_000, MAX_SEED]) {
      expect(seedText(seed)).toMatch(/^\d+$/);
      expect(parseSeed(seedText(seed))).toEqual({ kind: "fixed", seed });
    }
  });
});

describe("the recent seeds", () => {
  it("keeps the newest first, once per seed and prompt, at most the limit", () => {
    let list = rememberSeed([], { seed: 1, prompt: "a", model: "m" });
    list = rememberSeed(list, { seed: 2, prompt: "a", model: "m" });
    list = rememberSeed(list, { seed: 1, prompt: "b", model: "m" });
    list = rememberSeed(list, { seed: 1, prompt: "a", model: "m" });
    expect(list.map((r) => `${r.seed}:${r.prompt}`)).toEqual(["1:a", "1:b", "2:a"]);
    for (let seed = 10; seed < 30; seed++) list = rememberSeed(list, { seed, prompt: "x", model: "m" }, 5);
    expect(list.map((r) => r.seed)).toEqual([29, 28, 27, 26, 25]);
  });
});
