/** Flat float32 tensors in C order, and the few operations the pipeline needs on them. */

/** The parts one after the other, in a new array of the given kind. */
export function concatArrays<T extends Float32Array | Int32Array>(Kind: new (length: number) => T, parts: readonly T[]): T {
  const out = new Kind(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Batch items (or whole batches) stacked along the batch axis. */
export function concatBatch(parts: readonly Float32Array[]): Float32Array {
  return concatArrays(Float32Array, parts);
}

/** Classifier-free guidance on a [uncond; cond] batch: u + g * (c - u), in float32 as torch does. */
export function guide(output: Float32Array, guidance: number): Float32Array {
  const half = output.length / 2;
  const result = new Float32Array(half);
  const g = Math.fround(guidance);
  for (let i = 0; i < half; i++) {
    const u = output[i]!;
    result[i] = u + Math.fround(g * Math.fround(output[half + i]! - u));
  }
  return result;
}

/** Every value times a float32 factor. */
export function scale(data: Float32Array, factor: number): Float32Array {
  const out = new Float32Array(data.length);
  const f = Math.fround(factor);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! * f;
  return out;
}
