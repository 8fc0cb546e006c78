/** A one-line progress bar on a terminal; silent when stderr is not a terminal (logs, CI). */
export class ProgressBar {
  private readonly tty = Boolean(process.stderr.isTTY);
  private last = "";

  update(label: string, step: number, total: number): void {
    if (!this.tty) return;
    const width = 30;
    const filled = total > 0 ? Math.round((step / total) * width) : 0;
    const line = `${label.padEnd(12)} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${step}/${total}`;
    if (line === this.last) return;
    this.last = line;
    process.stderr.write(`\r${line}`);
  }

  /** A line of its own on stderr (terminal or not), the bar drawn again below it. */
  note(line: string): void {
    if (this.tty && this.last) process.stderr.write(`\r\x1b[K${line}\n${this.last}`);
    else process.stderr.write(`${line}\n`);
  }

  done(): void {
    if (this.tty && this.last) process.stderr.write("\n");
    this.last = "";
  }
}
