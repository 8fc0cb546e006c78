/** Command-line values checked with zod, so a typo gets a sentence rather than NaN. */
import { z } from "zod";

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function parseWith<T>(schema: z.ZodType<T>, value: unknown, flag: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    throw new UsageError(`--${flag}: ${result.error.issues[0]?.message ?? "invalid value"} (got ${JSON.stringify(value)})`);
  }
  return result.data;
}

export const intFlag = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
export const numberFlag = (min: number, max: number) => z.coerce.number().min(min).max(max);
