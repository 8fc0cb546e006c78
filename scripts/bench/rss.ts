/** The process's peak resident set: VmHWM on Linux, getrusage's maxRSS elsewhere. */
import { readFileSync } from "node:fs";

export function peakRssBytes(): number {
  try {
    const kib = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (kib) return Number(kib) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}
