/**
 * The step-index bookkeeping of diffusers' sigma schedulers (Euler, Euler ancestral, DPM-Solver) and
 * LCM: the index starts at the begin index if the pipeline set one, else where the first timestep is
 * found, and goes up by one per step whatever timestep is passed afterwards.
 */

/**
 * EulerDiscreteScheduler.index_for_timestep: the first match, or the second when the timestep occurs
 * more than once (so img2img never skips a sigma). Throws when the timestep is not in the schedule.
 */
export function indexForTimestep(schedule: Float64Array, timestep: number, className: string): number {
  const found: number[] = [];
  for (let i = 0; i < schedule.length && found.length < 2; i++) if (schedule[i] === timestep) found.push(i);
  if (found.length === 0) throw new RangeError(`${className}: timestep ${timestep} is not in the schedule`);
  return found.length > 1 ? found[1]! : found[0]!;
}

export class StepIndex {
  stepIndex: number | null = null;
  beginIndex: number | null = null;

  constructor(private readonly lookup: (timestep: number) => number) {}

  reset(): void {
    this.stepIndex = null;
    this.beginIndex = null;
  }

  setBegin(index: number): void {
    if (!Number.isInteger(index) || index < 0) throw new RangeError(`invalid begin index ${index}`);
    this.beginIndex = index;
  }

  /** _init_step_index when needed; returns the current step index. */
  current(timestep: number): number {
    if (this.stepIndex === null) this.stepIndex = this.beginIndex ?? this.lookup(timestep);
    return this.stepIndex;
  }

  advance(): void {
    if (this.stepIndex === null) throw new Error("step index is not initialised");
    this.stepIndex += 1;
  }

  /**
   * The index add_noise uses: by timestep when no begin index is set (training / pipelines without
   * set_begin_index), the current step index once stepping has begun (inpainting blends after each step),
   * else the begin index (img2img's initial noise).
   */
  forAddNoise(timestep: number): number {
    if (this.beginIndex === null) return this.lookup(timestep);
    if (this.stepIndex !== null) return this.stepIndex;
    return this.beginIndex;
  }
}
