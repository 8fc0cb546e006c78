/** Runs a bench script in a fresh process (scripts/bench/memory-probe.ts, see its modes; or another) and returns what it measured. */
import { fork } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

const ProbeResult = z.object({ peakRssBytes: z.number().positive(), rssBeforeBytes: z.number().positive() });
export type ProbeResult = z.infer<typeof ProbeResult>;

/** Runs `script` (a file beside this one) with `args`; its last stdout line is JSON that `schema` checks. */
export async function probeScript<T>(script: string, args: string[], schema: z.ZodType<T>): Promise<T> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const child = fork(path.join(here, script), args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "inherit", "ipc"] });
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  const line = out.trim().split("\n").at(-1) ?? "";
  if (code !== 0) throw new Error(`${script} ${args[0] ?? ""} exited with ${code}: ${line}`);
  return schema.parse(JSON.parse(line));
}

export function probe(args: string[]): Promise<ProbeResult> {
  return probeScript("memory-probe.ts", args, ProbeResult);
}
