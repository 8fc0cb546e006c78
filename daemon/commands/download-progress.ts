/**
 * Shows a pull on the terminal: one line redrawn in place (bar, bytes, rate, ETA, file) when
 * stderr is a terminal; otherwise a plain line per stage and per file, for logs.
 */
import { formatBytes } from "../models/model-store";
import type { PullProgress } from "../models/pull";

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** The terminal line for one progress report, at most `columns` wide. */
export function progressLine(p: PullProgress, columns = 100): string {
  const width = 24;
  const fraction = p.total > 0 ? Math.min(1, p.bytes / p.total) : 0;
  const filled = Math.round(fraction * width);
  const parts = [
    p.model,
    `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`,
    `${String(Math.floor(fraction * 100)).padStart(3)}%`,
    `${formatBytes(p.bytes)} / ${formatBytes(p.total)}`,
  ];
  if (p.stage === "downloading") {
    if (p.bytesPerSecond !== undefined) parts.push(`${formatBytes(p.bytesPerSecond)}/s`);
    if (p.etaSeconds !== undefined && p.bytesPerSecond) parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
    if (p.file) parts.push(p.file);
  } else {
    parts.push(p.stage);
  }
  const line = parts.join("  ");
  return line.length > columns ? `${line.slice(0, Math.max(0, columns - 1))}…` : line;
}

export class DownloadProgress {
  private readonly tty: boolean;
  private shown = "";
  private stage = "";
  private file = "";

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(stream.isTTY);
  }

  update(p: PullProgress): void {
    if (this.tty) {
      if (p.stage === "failed" || p.stage === "cancelled") return;
      const line = progressLine(p, (this.stream.columns || 100) - 1);
      if (line === this.shown) return;
      this.stream.write(`\r${line.padEnd(this.shown.length)}`);
      this.shown = line;
      return;
    }
    if (p.stage !== this.stage) {
      this.stage = p.stage;
      if (p.stage === "downloading") this.stream.write(`downloading ${p.model} from ${p.source ?? p.request}: ${formatBytes(p.total)}\n`);
      else if (p.stage === "verifying" || p.stage === "installing") this.stream.write(`${p.stage} ${p.model}\n`);
    }
    if (p.stage === "downloading" && p.file && p.file !== this.file) {
      this.file = p.file;
      this.stream.write(`  ${p.file}\n`);
    }
  }

  /** A line of its own, without breaking the bar. */
  log(line: string): void {
    if (this.tty && this.shown) {
      this.stream.write(`\r${" ".repeat(this.shown.length)}\r${line}\n${this.shown}`);
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  done(): void {
    if (this.tty && this.shown) this.stream.write("\n");
    this.shown = "";
  }
}
