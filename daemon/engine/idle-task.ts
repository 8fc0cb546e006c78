/**
 * Work done a moment after the last job ends, when no other job has begun: the engine loads the
 * CPU's text encoders again there (a job releases them after reading its prompt, to share the
 * machine's memory with the UNet), so that the next prompt does not wait for them. The delay lets
 * the job's results leave first: onnxruntime-node makes a session on the main thread.
 */
export class IdleTask {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private waiting: Array<() => void> = [];

  constructor(private readonly delayMs: number) {}

  /** Runs `task` after the delay, unless schedule or cancel comes first. Its failure is only the task's. */
  schedule(task: () => Promise<void>): void {
    this.cancel();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = task()
        .catch(() => {})
        .finally(() => {
          this.running = null;
          if (!this.timer) this.settle();
        });
    }, this.delayMs);
    this.timer.unref();
  }

  /** Drops the scheduled task if it has not started (a started one runs to its end). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running) this.settle();
  }

  /** Resolves once nothing is scheduled or running (a scheduled task then keeps the process alive). */
  idle(): Promise<void> {
    if (!this.timer && !this.running) return Promise.resolve();
    this.timer?.ref();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private settle(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }
}
