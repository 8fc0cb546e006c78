/** Runs scripts/bench/memory-probe.ts in a fresh process (see its modes) and returns what it measured. */
import { fork } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

const ProbeResult = z.object({ peakRssBytes: z.number().positive(), rssBeforeBytes: z.number().positive() });
export type ProbeResult = z.infer<typeof ProbeResult>;

export async function probe(args: string[]): Promise<ProbeResult> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const child = fork(path.join(here, "memory-probe.ts"), args, { execArgv: ["--import", "tsx"], stdio: ["ignore", "pipe", "inherit", "ipc"] });
  let out = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  const line = out.trim().split("\n").at(-1) ?? "";
  if (code !== 0) throw new Error(`memory probe ${args[0]} exited with ${code}: ${line}`);
  return ProbeResult.parse(JSON.parse(line));
}
