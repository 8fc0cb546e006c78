import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { TorchGenerator, __rngInternals } from "../../../daemon/engine/rng";

// /work/main/test/daemon/engine -> /work/shared/fixtures
const FIXTURE_PATH = fileURLToPath(new URL("../../../../shared/fixtures/torch-randn.json", import.meta.url));

const values = z.array(z.number());
const SeedEntry = z.object({
  seed: z.number().int().nonnegative(),
  randn_1x4x8x8: values.length(256),
  randn_1x4x8x8_second_call_same_generator: values.length(256),
  randn_1x4x64x64: z.object({
    first16: values.length(16),
    last16: values.length(16),
    values_at: z.record(z.string().regex(/^\d+$/), z.number()),
    mean: z.number(),
    std: z.number(),
    sha256_f32le: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  randn_1d_small_sizes: z.record(z.string().regex(/^\d+$/), values),
  randn_8_float64: values.length(8),
});
const Fixture = z.object({
  generated_by: z.string(),
  torch_version: z.string(),
  torch_build: z.string(),
  call: z.string(),
  notes: z.array(z.string()),
  seeds: z.array(SeedEntry).min(1),
});

const fixture = Fixture.parse(JSON.parse(readFileSync(FIXTURE_PATH, "utf8")));

/** index of the first mismatch (float32 exact, -0 !== +0), or -1 */
function firstF32Mismatch(actual: Float32Array | number[], expected: readonly number[]): number {
  if (actual.length !== expected.length) return Math.min(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], Math.fround(expected[i]!))) return i;
  }
  return -1;
}

function expectF32Equal(actual: Float32Array, expected: readonly number[], label: string): void {
  const at = firstF32Mismatch(actual, expected);
  expect(at, `${label}: first mismatch at ${at}: got ${actual[at]}, want ${Math.fround(expected[at] ?? NaN)}`).toBe(
    -1,
  );
}

function sha256F32le(a: Float32Array): string {
  const bytes = new Uint8Array(a.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < a.length; i++) view.setFloat32(i * 4, a[i]!, true);
  return createHash("sha256").update(bytes).digest("hex");
}

function concat(...parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

describe("TorchGenerator vs torch 1.13 CPU (fixture)", () => {
  it("fixture covers seeds 0, 42 and 1234 and every documented size", () => {
    expect(fixture.seeds.map((s) => s.seed)).toEqual([0, 42, 1234]);
    for (const s of fixture.seeds) {
      expect(Object.keys(s.randn_1d_small_sizes).map(Number).sort((a, b) => a - b)).toEqual([1, 5, 15, 16, 17, 31]);
      for (const [n, v] of Object.entries(s.randn_1d_small_sizes)) expect(v).toHaveLength(Number(n));
    }
  });

  for (const entry of fixture.seeds) {
    describe(`seed ${entry.seed}`, () => {
      it("reports its seed", () => {
        expect(new TorchGenerator(entry.seed).seed).toBe(BigInt(entry.seed));
      });

      it("[1,4,8,8]: all 256 values, then the second call on the same generator", () => {
        const g = new TorchGenerator(entry.seed);
        expectF32Equal(g.randn([1, 4, 8, 8]), entry.randn_1x4x8x8, "first call");
        expectF32Equal(g.randn([1, 4, 8, 8]), entry.randn_1x4x8x8_second_call_same_generator, "second call");
      });

      it("[1,4,64,64]: first/last 16, sampled values, sha256 of the float32 bytes, mean/std", () => {
        const ref = entry.randn_1x4x64x64;
        const a = new TorchGenerator(entry.seed).randn([1, 4, 64, 64]);
        expect(a).toHaveLength(16384);
        expectF32Equal(a.subarray(0, 16), ref.first16, "first16");
        expectF32Equal(a.subarray(a.length - 16), ref.last16, "last16");
        for (const [index, value] of Object.entries(ref.values_at)) {
          expect(a[Number(index)], `value at ${index}`).toBe(Math.fround(value));
        }
        expect(sha256F32le(a)).toBe(ref.sha256_f32le);

        let sum = 0;
        for (const v of a) sum += v;
        const mean = sum / a.length;
        let ss = 0;
        for (const v of a) ss += (v - mean) * (v - mean);
        const std = Math.sqrt(ss / (a.length - 1)); // ddof=1 per the fixture notes
        expect(mean).toBeCloseTo(ref.mean, 10);
        expect(std).toBeCloseTo(ref.std, 10);
      });

      for (const [size, expected] of Object.entries(entry.randn_1d_small_sizes)) {
        const n = Number(size);
        it(`1-D size ${n} (${n < 16 ? "scalar" : "batched"} path)`, () => {
          expectF32Equal(new TorchGenerator(entry.seed).randn([n]), expected, `size ${n}`);
        });
      }

      it("float64 [8]: exact doubles", () => {
        const a = new TorchGenerator(entry.seed).randnFloat64([8]);
        expect(Array.from(a)).toEqual(entry.randn_8_float64);
        // and the float32 scalar path is the same doubles rounded
        const f = new TorchGenerator(entry.seed).randn([8]);
        expect(Array.from(f)).toEqual(entry.randn_8_float64.map(Math.fround));
      });

      it("the scalar path's cached Box-Muller value carries over to the next call", () => {
        // 5 draws leave r*sin(theta) cached in the generator; a 15-element
        // stream split 5 + 10 must equal the single 15-element draw.
        const g = new TorchGenerator(entry.seed);
        const joined = concat(g.randn([5]), g.randn([10]));
        expectF32Equal(joined, entry.randn_1d_small_sizes["15"]!, "5 + 10");
        const g2 = new TorchGenerator(entry.seed);
        const d = [...g2.randnFloat64([3]), ...g2.randnFloat64([5])];
        expect(d).toEqual(entry.randn_8_float64);
      });
    });
  }
});

describe("TorchGenerator behaviour", () => {
  it("same seed repeats, different seeds differ", () => {
    const a = new TorchGenerator(7).randn([2, 4, 16, 16]);
    const b = new TorchGenerator(7).randn([2, 4, 16, 16]);
    const c = new TorchGenerator(8).randn([2, 4, 16, 16]);
    expect(b).toEqual(a);
    let differing = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== c[i]) differing++;
    expect(differing).toBeGreaterThan(a.length * 0.99);
    const small = new TorchGenerator(7).randn([7]);
    expect(new TorchGenerator(7).randn([7])).toEqual(small);
    expect(new TorchGenerator(8).randn([7])).not.toEqual(small);
  });

  it("accepts bigint and negative seeds the way torch does (uint64, low 32 bits seed mt19937)", () => {
    expect(new TorchGenerator(42n).randn([16])).toEqual(new TorchGenerator(42).randn([16]));
    expect(new TorchGenerator(-1).seed).toBe((1n << 64n) - 1n);
    const low = new TorchGenerator(0xffffffff).randn([20]);
    expect(new TorchGenerator(-1).randn([20])).toEqual(low);
    expect(new TorchGenerator((5n << 32n) | 0xffffffffn).randn([20])).toEqual(low);
    expect(() => new TorchGenerator(1.5)).toThrow(RangeError);
    expect(() => new TorchGenerator(1n << 64n)).toThrow(RangeError);
    expect(() => new TorchGenerator(-(1n << 63n) - 1n)).toThrow(RangeError);
  });

  it("handles empty and odd shapes and rejects invalid ones", () => {
    expect(new TorchGenerator(0).randn([0, 4])).toHaveLength(0);
    expect(new TorchGenerator(0).randn([])).toHaveLength(1); // a 0-d tensor has one element
    expect(new TorchGenerator(0).randn([3, 7, 5])).toHaveLength(105);
    expect(() => new TorchGenerator(0).randn([-1])).toThrow(RangeError);
    expect(() => new TorchGenerator(0).randn([2.5])).toThrow(RangeError);
  });

  it("never emits -0, NaN or infinities", () => {
    const a = new TorchGenerator(3).randn([2, 4, 96, 96]);
    let bad = 0;
    for (const v of a) if (!Number.isFinite(v) || Object.is(v, -0)) bad++;
    expect(bad).toBe(0);
  });

  it("draws latent-sized tensors ([1,4,128,128], [2,4,96,96]) of the right length, all finite", () => {
    const g = new TorchGenerator(1);
    const a = g.randn([1, 4, 128, 128]);
    const b = g.randn([2, 4, 96, 96]);
    expect(a).toHaveLength(65536);
    expect(b).toHaveLength(73728);
    expect(a.every(Number.isFinite) && b.every(Number.isFinite)).toBe(true);
  });
});

describe("libm emulation", () => {
  it("double log is correctly rounded where V8's Math.log is not (seed 1234 draw)", () => {
    // log(1 - u2) for the 2nd Box-Muller pair of seed 1234; glibc (and the
    // exact value -0.53508328909009222591...) give ...0922, Math.log ...0923.
    expect(__rngInternals.logRN(1 - 0.41437948768611854)).toBe(-0.5350832890900922);
    expect(__rngInternals.logRN(1)).toBe(0);
    expect(__rngInternals.logRN(Math.E)).toBe(1);
    expect(__rngInternals.logRN(2)).toBe(Math.LN2);
    expect(__rngInternals.logRN(2 ** -53)).toBe(-53 * Math.LN2);
  });

  it("double sin/cos on [0, 2pi) stay within rounding of Math.sin/cos", () => {
    for (let i = 0; i < 1000; i++) {
      const theta = (2 * Math.PI * i) / 1000;
      const [s, c] = __rngInternals.sinCosRN(theta);
      expect(Math.abs(s - Math.sin(theta))).toBeLessThanOrEqual(2 ** -52);
      expect(Math.abs(c - Math.cos(theta))).toBeLessThanOrEqual(2 ** -52);
    }
    expect(__rngInternals.sinCosRN(0)).toEqual([0, 1]);
  });

  it("float32 fma is exactly rounded, including double-rounding midpoints", () => {
    const f = Math.fround;
    // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: exactly halfway between two floats
    const a = f(1 + 2 ** -12);
    const tiny = f(2 ** -80);
    // + tiny: the double sum still sits on the midpoint (tie-to-even would go
    // down); the exact value is above it, so a real FMA rounds up
    expect(__rngInternals.fma32(a, a, tiny)).toBe(f(1 + 2 ** -11 + 2 ** -23));
    expect(__rngInternals.fma32(a, a, -tiny)).toBe(f(1 + 2 ** -11));
    expect(__rngInternals.fma32(a, a, 0)).toBe(f(1 + 2 ** -11)); // true tie: to even
    expect(__rngInternals.fma32(2, 3, 1)).toBe(7);
  });
});
