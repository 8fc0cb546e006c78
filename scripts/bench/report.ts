/** Bench bookkeeping: timing helpers, a printed table, and bench/results.json. */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export type Figures = Record<string, number | string | boolean | null>;

export interface Row {
  what: string;
  value: string;
  note?: string;
}

export async function timeIt(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Best of n runs after one warm-up: the least disturbed measurement on a shared machine. */
export async function bestOf(n: number, fn: () => Promise<void>): Promise<number> {
  await fn();
  let best = Infinity;
  for (let i = 0; i < n; i++) best = Math.min(best, await timeIt(fn));
  return best;
}

export function printSection(title: string, rows: Row[]): void {
  const width = Math.max(...rows.map((r) => r.what.length));
  console.log(`\n## ${title}`);
  for (const row of rows) console.log(`  ${row.what.padEnd(width)}  ${row.value}${row.note ? `   (${row.note})` : ""}`);
}

export function machine(): Figures {
  const cpus = os.cpus();
  return {
    "machine.cpu": cpus[0]?.model ?? "unknown",
    "machine.logicalCores": cpus.length,
    "machine.memoryGiB": Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    "machine.platform": `${process.platform}-${process.arch}`,
    "machine.node": process.version,
  };
}

/** With `merge`, figures of sections not run this time are kept from the file's last run. */
export async function writeResults(root: string, figures: Figures, merge = false): Promise<string> {
  const file = path.join(root, "bench", "results.json");
  await mkdir(path.dirname(file), { recursive: true });
  const earlier = merge ? await readEarlier(file) : {};
  const sorted = Object.fromEntries(Object.entries({ ...earlier, ...figures }).sort(([a], [b]) => a.localeCompare(b)));
  await writeFile(file, JSON.stringify({ date: new Date().toISOString(), ...sorted }, null, 2) + "\n");
  return file;
}

async function readEarlier(file: string): Promise<Figures> {
  try {
    const { date: _date, ...figures } = JSON.parse(await readFile(file, "utf8")) as Figures;
    return figures;
  } catch {
    return {}; // no earlier run, or a damaged file: nothing to keep
  }
}

export const mib = (bytes: number) => bytes / 2 ** 20;
export const fmtMs = (ms: number) => `${ms.toFixed(1)} ms`;
export const fmtRate = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
