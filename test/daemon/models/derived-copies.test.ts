import { mkdtemp, readdir, readFile, rm, writeFile, mkdir, utimes } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { DERIVED_MODEL_FILE, DerivedCopies, DerivedEntry } from "../../../daemon/models/derived-copies";

let work: string;
let source: string;
const Entry = DerivedEntry.extend({ made: z.literal("by-test") });

beforeEach(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-derived-"));
  await mkdir(path.join(work, "model"));
  source = path.join(work, "model", "model.onnx");
  await writeFile(source, "graph v1");
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const writeCopy = (text: string) => async (dir: string) => {
  await writeFile(path.join(dir, DERIVED_MODEL_FILE), text);
  return { made: "by-test" as const };
};

describe("a cache of derived model copies", () => {
  it("keeps a finished copy under the source's key, and a changed source gets a new one while the old goes", async () => {
    const copies = new DerivedCopies(path.join(work, "cache"), Entry, "test-rewrite");
    const key = await copies.key(source);
    expect(await copies.existing(key)).toBeNull();
    const copy = await copies.make(key, source, writeCopy("copy v1"));
    expect(await copies.existing(key)).toBe(copy);
    expect(await readFile(copy, "utf8")).toBe("copy v1");
    await writeFile(source, "graph v2, longer");
    await utimes(source, new Date(), new Date(Date.now() + 5000));
    const next = await copies.key(source);
    expect(next).not.toBe(key);
    await copies.make(next, source, writeCopy("copy v2"));
    expect(await readdir(path.join(work, "cache"))).toEqual([next]);
  });

  it("never offers a copy whose writing failed or whose entry is damaged or of another kind", async () => {
    const root = path.join(work, "cache");
    const copies = new DerivedCopies(root, Entry, "test-rewrite");
    const key = await copies.key(source);
    await expect(copies.make(key, source, async () => Promise.reject(new Error("disk full")))).rejects.toThrow("disk full");
    expect(await copies.existing(key)).toBeNull();
    expect(await readdir(root)).toEqual([]);
    await copies.make(key, source, writeCopy("copy"));
    await writeFile(path.join(root, key, "entry.json"), "{ not json");
    expect(await copies.existing(key)).toBeNull();
    await writeFile(path.join(root, key, "entry.json"), JSON.stringify({ source, createdAt: "now", made: "elsewhere" }));
    expect(await copies.existing(key)).toBeNull();
  });

  it("keys copies made another way apart", async () => {
    const a = new DerivedCopies(path.join(work, "cache"), Entry, "rewrite-a");
    const b = new DerivedCopies(path.join(work, "cache"), Entry, "rewrite-b");
    expect(await a.key(source)).not.toBe(await b.key(source));
  });
});
