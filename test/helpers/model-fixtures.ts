/** The tiny diffusers-layout models in ../shared/fixtures, and writable temp copies of them. */
import { chmod, cp, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../shared/fixtures");

export type FixtureModel = "tiny-sd" | "tiny-sd-inpaint" | "tiny-lcm" | "tiny-sd-turbo-config";

export function fixtureModelDir(name: FixtureModel): string {
  return path.join(FIXTURES_DIR, name);
}

/** The fixtures are read-only; copies are made writable so tests can break them. */
async function makeWritable(p: string): Promise<void> {
  const s = await stat(p);
  if (s.isDirectory()) {
    await chmod(p, 0o755);
    for (const entry of await readdir(p)) await makeWritable(path.join(p, entry));
  } else {
    await chmod(p, 0o644);
  }
}

export interface TempDir {
  dir: string;
  cleanup(): Promise<void>;
}

export async function makeTempDir(prefix = "underpaint-test-"): Promise<TempDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Copies a fixture model to `parent/as` (writable) and returns the copy's path. */
export async function copyFixtureModel(name: FixtureModel, parent: string, as: string = name): Promise<string> {
  const dest = path.join(parent, as);
  await cp(fixtureModelDir(name), dest, { recursive: true });
  await makeWritable(dest);
  return dest;
}
