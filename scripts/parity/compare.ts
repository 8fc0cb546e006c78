/** Stage-by-stage comparison against the reference, with the tolerances of fixtures/README.md. */

export type Verdict = "PASS" | "FAIL" | "SKIP";

export interface StageResult {
  stage: string;
  verdict: Verdict;
  maxAbsError: number;
  tolerance: number;
  note?: string;
}

export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return m;
}

export function maxAbsError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let m = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function compare(stage: string, actual: ArrayLike<number> | undefined, expected: ArrayLike<number>, tolerance: number): StageResult {
  if (!actual) return { stage, verdict: "FAIL", maxAbsError: Infinity, tolerance, note: "not produced" };
  const error = maxAbsError(actual, expected);
  const note = actual.length !== expected.length ? `${actual.length} values, expected ${expected.length}` : undefined;
  return { stage, verdict: error <= tolerance ? "PASS" : "FAIL", maxAbsError: error, tolerance, ...(note ? { note } : {}) };
}

export const Tolerance = {
  tokens: 0,
  module: (ref: ArrayLike<number>) => 2e-5 * Math.max(1, maxAbs(ref)),
  vaeEncoder: 1e-4,
  latents: (ref: ArrayLike<number>) => 1e-5 * maxAbs(ref),
  image: 1e-4,
} as const;
