/**
 * One FIFO queue per execution device: one running job at a time, positions pushed to their
 * owners whenever they change, cancel of queued and running jobs.
 */

export interface QueueEntry {
  /** Unique across all clients. */
  key: string;
  owner: string;
  /** Runs the job; must settle soon after the signal aborts. */
  run(signal: AbortSignal): Promise<void>;
  /** Jobs ahead of this one; 0 = running or next. */
  onPosition(position: number): void;
  /** Called instead of run when the job is cancelled while still queued. */
  onCancelledWhileQueued(): void;
}

export class JobQueue {
  private readonly waiting: QueueEntry[] = [];
  private running: { entry: QueueEntry; controller: AbortController; done: Promise<void> } | undefined;
  private lastPositions = new Map<string, number>();

  constructor(readonly device: string) {}

  /** Adds a job and returns its position. */
  enqueue(entry: QueueEntry): number {
    this.waiting.push(entry);
    const position = this.positionOf(entry.key);
    this.lastPositions.set(entry.key, position);
    queueMicrotask(() => this.pump());
    return position;
  }

  countOwnedBy(owner: string): number {
    return this.waiting.filter((e) => e.owner === owner).length + (this.running?.entry.owner === owner ? 1 : 0);
  }

  get size(): number {
    return this.waiting.length + (this.running ? 1 : 0);
  }

  /** Cancels a queued or running job; returns false if the queue does not hold it. */
  cancel(key: string): boolean {
    if (this.running?.entry.key === key) {
      this.running.controller.abort();
      return true;
    }
    const index = this.waiting.findIndex((e) => e.key === key);
    if (index < 0) return false;
    const [entry] = this.waiting.splice(index, 1);
    this.lastPositions.delete(key);
    entry!.onCancelledWhileQueued();
    this.publishPositions();
    return true;
  }

  cancelOwnedBy(owner: string): void {
    for (const entry of [...this.waiting]) if (entry.owner === owner) this.cancel(entry.key);
    if (this.running?.entry.owner === owner) this.running.controller.abort();
  }

  /** Cancels everything and waits for the running job to settle. */
  async drain(): Promise<void> {
    for (const entry of [...this.waiting]) this.cancel(entry.key);
    const running = this.running;
    if (running) {
      running.controller.abort();
      await running.done;
    }
  }

  private positionOf(key: string): number {
    const index = this.waiting.findIndex((e) => e.key === key);
    return index + (this.running ? 1 : 0);
  }

  private publishPositions(): void {
    for (const entry of this.waiting) {
      const position = this.positionOf(entry.key);
      if (this.lastPositions.get(entry.key) !== position) {
        this.lastPositions.set(entry.key, position);
        entry.onPosition(position);
      }
    }
  }

  private pump(): void {
    if (this.running) return;
    const entry = this.waiting.shift();
    if (!entry) return;
    this.lastPositions.delete(entry.key);
    const controller = new AbortController();
    const done = entry
      .run(controller.signal)
      .catch(() => undefined) // the entry reports its own failures
      .finally(() => {
        this.running = undefined;
        this.publishPositions();
        this.pump();
      });
    this.running = { entry, controller, done };
    this.publishPositions();
  }
}
