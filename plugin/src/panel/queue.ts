/**
 * The generations the artist has queued from the panel, in the order Generate was pressed: where
 * each one stands (reading the document, jobs ahead of it on the daemon, its step), which one the
 * progress bar follows, and how long the last denoising step took. Bookkeeping only: no DOM.
 */
import type { Stage } from "../../../protocol";

export type QueueState =
  | { kind: "reading" }
  /** Sent; the daemon has not said where it stands yet. */
  | { kind: "sent" }
  /** On the daemon, behind `ahead` jobs (0: it runs next). */
  | { kind: "waiting"; ahead: number }
  | { kind: "running"; stage: Stage; step: number; total: number; variation: number; variations: number }
  | { kind: "placing" }
  | { kind: "cancelling" };

export interface QueuedGeneration {
  /** The panel's own number for it (the daemon's job id comes later, once it is sent). */
  readonly id: number;
  /** What it was asked for, in a few words. */
  readonly label: string;
  readonly variations: number;
  state: QueueState;
  jobId?: number;
  /** The progress bar's last fraction and words for it. */
  progress: { fraction: number; label: string };
}

export interface StepTiming {
  /** Milliseconds between the last two denoising steps' reports. */
  ms: number;
  jobId: number;
}

interface LastStep {
  variation: number;
  step: number;
  at: number;
}

export class GenerationQueue {
  private readonly list: QueuedGeneration[] = [];
  private nextId = 1;
  private readonly lastSteps = new Map<number, LastStep>();
  private timing: StepTiming | undefined;

  constructor(private readonly now: () => number = () => Date.now()) {}

  get entries(): readonly QueuedGeneration[] {
    return this.list;
  }

  /** The oldest generation still going: the one the daemon runs first, which the progress bar follows. */
  get head(): QueuedGeneration | undefined {
    return this.list[0];
  }

  /** How long the last denoising step took (of any job), once two steps in a row were reported. */
  get lastStep(): StepTiming | undefined {
    return this.timing;
  }

  add(label: string, variations: number): QueuedGeneration {
    const entry: QueuedGeneration = { id: this.nextId++, label, variations, state: { kind: "reading" }, progress: { fraction: 0, label: "Starting…" } };
    this.list.push(entry);
    return entry;
  }

  get(id: number): QueuedGeneration | undefined {
    return this.list.find((e) => e.id === id);
  }

  byJob(jobId: number): QueuedGeneration | undefined {
    return this.list.find((e) => e.jobId === jobId);
  }

  /** The job went to the daemon with this id. */
  sent(id: number, jobId: number): void {
    const entry = this.get(id);
    if (!entry) return;
    entry.jobId = jobId;
    if (entry.state.kind === "reading") entry.state = { kind: "sent" };
  }

  /** The daemon's position for a job: the number of jobs ahead of it. */
  position(jobId: number, ahead: number): void {
    const entry = this.byJob(jobId);
    if (entry && entry.state.kind !== "cancelling" && entry.state.kind !== "running") entry.state = { kind: "waiting", ahead };
  }

  /** A progress report from the daemon; denoising steps in a row give the step time. */
  progress(jobId: number, report: { variation: number; stage: Stage; step: number; total: number }): void {
    const entry = this.byJob(jobId);
    if (!entry || entry.state.kind === "cancelling") return;
    entry.state = { kind: "running", ...report, variations: entry.variations };
    if (report.stage !== "denoising") return;
    const at = this.now();
    const last = this.lastSteps.get(jobId);
    if (last && last.variation === report.variation && report.step === last.step + 1) this.timing = { ms: at - last.at, jobId };
    this.lastSteps.set(jobId, { variation: report.variation, step: report.step, at });
  }

  placing(id: number): void {
    const entry = this.get(id);
    if (entry && entry.state.kind !== "cancelling") entry.state = { kind: "placing" };
  }

  cancelling(id: number): void {
    const entry = this.get(id);
    if (entry) entry.state = { kind: "cancelling" };
  }

  /** The generation ended (any way): it leaves the queue. */
  remove(id: number): void {
    const index = this.list.findIndex((e) => e.id === id);
    if (index < 0) return;
    const [entry] = this.list.splice(index, 1);
    if (entry?.jobId !== undefined) this.lastSteps.delete(entry.jobId);
  }
}

/** Where a queued generation stands, in a few words ("2 ahead", "running: step 3 of 20"). */
export function describeState(state: QueueState): string {
  switch (state.kind) {
    case "reading":
      return "reading the document";
    case "sent":
      return "sent to the daemon";
    case "waiting":
      return state.ahead === 0 ? "next" : `${state.ahead} ahead`;
    case "running": {
      const which = state.variations > 1 ? `variation ${state.variation + 1} of ${state.variations}, ` : "";
      if (state.stage === "loading") return "running: loading the model";
      if (state.stage === "denoising" && state.total > 0) return `running: ${which}step ${state.step} of ${state.total}`;
      if (state.stage === "encoding") return `running: ${which}reading the prompt`;
      if (state.stage === "decoding") return `running: ${which}decoding`;
      return `running: ${which}blending`;
    }
    case "placing":
      return "placing the layers";
    case "cancelling":
      return "cancelling…";
  }
}

/** "0.42 s" / "1.3 s" / "12 s": a step time as an artist reads it. */
export function formatStepTime(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 1) return `${seconds.toFixed(2)} s`;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  return `${Math.round(seconds)} s`;
}
