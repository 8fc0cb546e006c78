/**
 * Seeded Gaussian noise that reproduces PyTorch's CPU generator bit-for-bit:
 *
 *     torch.randn(shape, generator=torch.Generator().manual_seed(seed))
 *
 * as produced by torch 1.13 on x86-64 with the AVX2 kernels (the build the
 * reference fixture `shared/fixtures/torch-randn.json` was recorded with).
 *
 * What torch does (verified against the fixture, every value and the sha256):
 *
 * - Engine: a plain mt19937. `manual_seed(s)` stores s as uint64 and seeds the
 *   engine with the standard mt19937 init on the low 32 bits of s. The 64-bit
 *   draw `random64()` is `(first << 32) | second`.
 * - Uniforms: float32 `uniform_real` keeps the LOW 24 bits of one 32-bit draw
 *   (`(u32 & 0xffffff) * 2^-24`); float64 keeps the low 53 bits of random64().
 * - `normal_` on a contiguous tensor with numel >= 16 (`normal_fill`): first
 *   fill the whole tensor with uniforms, then for each full block of 16 turn
 *   pair (j, j+8), j < 8, into `u1 = 1 - d[j]`, `u2 = d[j+8]`,
 *   `r = sqrt(-2 log u1)`, `theta = 2 pi u2`, `d[j] = r cos theta`,
 *   `d[j+8] = r sin theta`. If numel % 16 != 0, 16 FRESH uniforms overwrite
 *   the last 16 elements, which are then transformed again.
 *   For float32 with AVX2 the transform is `normal_fill_16_AVX2`: log and
 *   sincos are the Cephes-style polynomials of avx_mathfun.h, evaluated in
 *   float32, and the compiler (GCC, -mfma, -ffp-contract=fast) fused every
 *   `a*b + c` whose product has no other use into one FMA. Both are emulated
 *   here exactly (float32 ops via Math.fround, FMA via an exact correction).
 *   The fixture proves the fusion at the log and sin/cos polynomial sites;
 *   the `x + y*DP3` step of the sin/cos argument reduction is fused by the
 *   same rule but the fixture cannot tell (it changes the result for only 3
 *   of the 2^24 possible theta values, all next to 3*pi/2).
 * - numel < 16 (or float64 with numel < 16): the scalar path
 *   `at::normal_distribution<double>`: u1, u2 from random64 (53 bits),
 *   `r = sqrt(-2 log(1 - u2))`, `theta = 2 pi u1`, return `r cos theta` and
 *   cache `r sin theta` in the generator; the next scalar draw returns the
 *   cached value first. The cache survives across calls (only manual_seed
 *   clears it) and is not touched by the batched path.
 *   torch calls glibc's log/sin/cos there. V8's Math.log/sin/cos differ
 *   from glibc in ~7% / ~3% / ~3% of inputs (seed 1234 of the fixture hits
 *   one), so the double path uses correctly rounded double-double versions
 *   below; glibc itself is off the correctly rounded value in ~0.1% of
 *   inputs (measured on 2M draws against glibc 2.36), which leaves a ~0.3%
 *   chance per Box-Muller pair of a 1-ulp difference in float64 output. For
 *   float32 output that only matters if the double lands within 1 ulp of a
 *   float32 rounding boundary (~2^-29), i.e. practically never.
 * - Finally torch adds `mean` (0) after scaling by `std` (1), which turns -0
 *   into +0; we do the same.
 */

const fround = Math.fround;

// ---------------------------------------------------------------------------
// mt19937 (torch's at::mt19937)
// ---------------------------------------------------------------------------

const MT_N = 624;
const MT_M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

class Mt19937 {
  readonly state = new Uint32Array(MT_N);
  /** index of the next state word to temper; MT_N means "twist first" */
  index = MT_N;

  constructor(seed32: number) {
    const s = this.state;
    s[0] = seed32 >>> 0;
    for (let i = 1; i < MT_N; i++) {
      const prev = s[i - 1]!;
      s[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.index = MT_N;
  }

  twist(): void {
    const s = this.state;
    let k = 0;
    for (; k < MT_N - MT_M; k++) {
      const y = (s[k]! & UPPER_MASK) | (s[k + 1]! & LOWER_MASK);
      s[k] = s[k + MT_M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < MT_N - 1; k++) {
      const y = (s[k]! & UPPER_MASK) | (s[k + 1]! & LOWER_MASK);
      s[k] = s[k + MT_M - MT_N]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (s[MT_N - 1]! & UPPER_MASK) | (s[0]! & LOWER_MASK);
    s[MT_N - 1] = s[MT_M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }

  /** next tempered 32-bit output, as an unsigned number */
  nextUint32(): number {
    if (this.index >= MT_N) this.twist();
    let y = this.state[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** dst[offset .. offset+count) = float32 uniform_real(0, 1) draws */
  fillUniform24(dst: Float32Array, offset: number, count: number): void {
    const s = this.state;
    let idx = this.index;
    const end = offset + count;
    for (let i = offset; i < end; i++) {
      if (idx >= MT_N) {
        this.twist();
        idx = 0;
      }
      let y = s[idx++]!;
      y ^= y >>> 11;
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= y >>> 18;
      dst[i] = (y & 0xffffff) * 5.9604644775390625e-8; // 2^-24, exact
    }
    this.index = idx;
  }

  /** dst[offset .. offset+count) = float64 uniform_real(0, 1) draws (53 bits of random64) */
  fillUniform53(dst: Float64Array, offset: number, count: number): void {
    const end = offset + count;
    for (let i = offset; i < end; i++) dst[i] = this.uniform53();
  }

  uniform53(): number {
    const hi = this.nextUint32();
    const lo = this.nextUint32();
    // ((hi << 32 | lo) & (2^53 - 1)) * 2^-53, exact in double
    return ((hi & 0x1fffff) * 4294967296 + lo) * 1.1102230246251565e-16;
  }
}

// ---------------------------------------------------------------------------
// float32 emulation of avx_mathfun.h as compiled into torch's AVX2 kernel
// ---------------------------------------------------------------------------

/**
 * Exactly rounded float32 fused multiply-add for float32 inputs.
 * a*b is exact in double; a*b + c is rounded once to double, which can only
 * differ from direct rounding to float32 when that double lands exactly on a
 * float32 midpoint; that case is resolved with the exact TwoSum error.
 */
function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  if (r === s) return r;
  const other = 2 * s - r; // the float on the other side, if s is a midpoint
  if (fround(other) !== other) return r;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  if (err === 0) return r; // a true tie: fround already rounded to even
  return err > 0 === other > r ? other : r;
}

const F32_BITS = new Uint32Array(1);
const F32_VIEW = new Float32Array(F32_BITS.buffer);

const SQRTHF = fround(0.707106781186547524);
const LOG_P0 = fround(7.0376836292e-2);
const LOG_P1 = fround(-1.151461031e-1);
const LOG_P2 = fround(1.167699874e-1);
const LOG_P3 = fround(-1.2420140846e-1);
const LOG_P4 = fround(1.4249322787e-1);
const LOG_P5 = fround(-1.6668057665e-1);
const LOG_P6 = fround(2.0000714765e-1);
const LOG_P7 = fround(-2.4999993993e-1);
const LOG_P8 = fround(3.3333331174e-1);
const LOG_Q1 = fround(-2.1219444e-4);
const LOG_Q2 = fround(0.693359375);

/** log256_ps for one positive, normal float32 lane */
function logAvx(v: number): number {
  F32_VIEW[0] = v;
  const bits = F32_BITS[0]!;
  F32_BITS[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa, exponent of 0.5
  let x = F32_VIEW[0]!;
  let e = (bits >>> 23) - 127 + 1; // small integer: exact as float
  const below = x < SQRTHF;
  const tmp = below ? x : 0;
  x = fround(x - 1);
  if (below) e -= 1;
  x = fround(x + tmp);

  const z = fround(x * x);
  let y = LOG_P0;
  y = fma32(y, x, LOG_P1);
  y = fma32(y, x, LOG_P2);
  y = fma32(y, x, LOG_P3);
  y = fma32(y, x, LOG_P4);
  y = fma32(y, x, LOG_P5);
  y = fma32(y, x, LOG_P6);
  y = fma32(y, x, LOG_P7);
  y = fma32(y, x, LOG_P8);
  y = fround(y * x);
  y = fma32(y, z, fround(e * LOG_Q1)); // y*z + e*q1, the y*z product fused
  y = fround(y - fround(z * 0.5)); // z*0.5 is exact: fused or not is the same
  x = fround(x + y);
  x = fround(x + e * LOG_Q2); // e*q2 is exact
  return x;
}

const DP1 = fround(-0.78515625);
const DP2 = fround(-2.4187564849853515625e-4);
const DP3 = fround(-3.77489497744594108e-8);
const SIN_P0 = fround(-1.9515295891e-4);
const SIN_P1 = fround(8.3321608736e-3);
const SIN_P2 = fround(-1.6666654611e-1);
const COS_P0 = fround(2.443315711809948e-5);
const COS_P1 = fround(-1.388731625493765e-3);
const COS_P2 = fround(4.166664568298827e-2);
const FOPI = fround(1.27323954473516); // 4 / pi

let sinAvxOut = 0;
let cosAvxOut = 0;

/** sincos256_ps for one float32 lane; results in sinAvxOut / cosAvxOut */
function sinCosAvx(v: number): void {
  let sinNegative = v < 0 || Object.is(v, -0);
  let x = Math.abs(v);
  let j = Math.trunc(fround(x * FOPI)) | 0;
  j = (j + 1) & ~1;
  const y = j; // exact as float for the ranges used here
  if (j & 4) sinNegative = !sinNegative;
  const cosNegative = ((~(j - 2)) & 4) !== 0;
  const sinPolyIsSin = (j & 2) === 0;

  x = fma32(y, DP1, x);
  x = fma32(y, DP2, x);
  x = fma32(y, DP3, x);

  const z = fround(x * x);
  let yc = COS_P0;
  yc = fma32(yc, z, COS_P1);
  yc = fma32(yc, z, COS_P2);
  yc = fround(yc * z);
  yc = fma32(yc, z, -fround(z * 0.5));
  yc = fround(yc + 1);

  let ys = SIN_P0;
  ys = fma32(ys, z, SIN_P1);
  ys = fma32(ys, z, SIN_P2);
  ys = fround(ys * z);
  ys = fma32(ys, x, x);

  // the masked selects add an exact zero: (+0) + (-0) = +0
  let s = 0 + (sinPolyIsSin ? ys : yc);
  let c = 0 + (sinPolyIsSin ? yc : ys);
  if (sinNegative) s = -s;
  if (cosNegative) c = -c;
  sinAvxOut = s;
  cosAvxOut = c;
}

const TWO_PI_F32 = fround(2 * Math.PI);

/** normal_fill_16_AVX2 on data[o .. o+16) with mean 0, std 1 */
function normalFill16F32(data: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = fround(1 - data[o + j]!);
    const u2 = data[o + j + 8]!;
    const radius = fround(Math.sqrt(fround(-2 * logAvx(u1))));
    const theta = fround(TWO_PI_F32 * u2);
    sinCosAvx(theta);
    // fmadd(n, std=1, mean=0): exact, except that -0 becomes +0
    data[o + j] = fround(radius * cosAvxOut) + 0;
    data[o + j + 8] = fround(radius * sinAvxOut) + 0;
  }
}

// ---------------------------------------------------------------------------
// correctly rounded double log / sin / cos (glibc agrees; V8's Math.* do not
// always). Double-double arithmetic, results in DD_H / DD_L.
// ---------------------------------------------------------------------------

let DD_H = 0;
let DD_L = 0;
const SPLITTER = 134217729; // 2^27 + 1

/** error of the double product p = fl(a*b) (Dekker) */
function twoProdErr(a: number, b: number, p: number): number {
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return ah * bh - p + ah * bl + al * bh + al * bl;
}

function ddMul(ah: number, al: number, bh: number, bl: number): void {
  const p = ah * bh;
  const e = twoProdErr(ah, bh, p) + (ah * bl + al * bh);
  const h = p + e;
  DD_L = e - (h - p);
  DD_H = h;
}

function ddAdd(ah: number, al: number, bh: number, bl: number): void {
  let s = ah + bh;
  let bb = s - ah;
  let e = ah - (s - bb) + (bh - bb);
  const t = al + bl;
  bb = t - al;
  const f = al - (t - bb) + (bl - bb);
  e += t;
  let h = s + e;
  e -= h - s;
  e += f;
  s = h + e;
  DD_L = e - (s - h);
  DD_H = s;
}

/** 1/n as a double-double, n a small positive integer */
function ddRecip(n: number): [number, number] {
  const h = 1 / n;
  const p = h * n;
  const pe = twoProdErr(h, n, p);
  return [h, (1 - p - pe) / n];
}

/** 1/(2k+1), k = 0..21: the atanh series of log */
const ATANH_COEF: ReadonlyArray<readonly [number, number]> = Array.from({ length: 22 }, (_, k) =>
  ddRecip(2 * k + 1),
);

/** 1/n! as double-doubles, n = 0..31 */
const INV_FACT: ReadonlyArray<readonly [number, number]> = [
  [1, 0],
  [1, 0],
  [0.5, 0],
  [0.16666666666666666, 9.25185853854297e-18],
  [0.041666666666666664, 2.3129646346357427e-18],
  [0.008333333333333333, 1.1564823173178714e-19],
  [0.001388888888888889, -5.300543954373577e-20],
  [0.0001984126984126984, 1.7209558293420705e-22],
  [2.48015873015873e-5, 2.1511947866775882e-23],
  [2.7557319223985893e-6, -1.858393274046472e-22],
  [2.755731922398589e-7, 2.3767714622250297e-23],
  [2.505210838544172e-8, -1.448814070935912e-24],
  [2.08767569878681e-9, -1.20734505911326e-25],
  [1.6059043836821613e-10, 1.2585294588752098e-26],
  [1.1470745597729725e-11, 2.0655512752830745e-28],
  [7.647163731819816e-13, 7.03872877733453e-30],
  [4.779477332387385e-14, 4.399205485834081e-31],
  [2.8114572543455206e-15, 1.6508842730861433e-31],
  [1.5619206968586225e-16, 1.1910679660273754e-32],
  [8.22063524662433e-18, 2.2141894119604265e-34],
  [4.110317623312165e-19, 1.4412973378659527e-36],
  [1.9572941063391263e-20, -1.3643503830087908e-36],
  [8.896791392450574e-22, -7.911402614872376e-38],
  [3.868170170630684e-23, -8.843177655482344e-40],
  [1.6117375710961184e-24, -3.6846573564509766e-41],
  [6.446950284384474e-26, -1.9330404233703465e-42],
  [2.4795962632247976e-27, -1.2953730964765229e-43],
  [9.183689863795546e-29, 1.4303150396787322e-45],
  [3.279889237069838e-30, 1.5117542744029879e-46],
  [1.1309962886447716e-31, 1.0498015412959506e-47],
  [3.7699876288159054e-33, 2.5870347832750324e-49],
  [1.216125041553518e-34, 5.586290567888806e-51],
];

const LN2_HI = 0.6931471805599453;
const LN2_LO = 2.3190468138462996e-17;

const F64_VIEW = new Float64Array(1);
const F64_WORDS = new Uint32Array(F64_VIEW.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI_WORD = LITTLE_ENDIAN ? 1 : 0;

/** natural log, correctly rounded (up to ~2^-100 hard cases), for finite x > 0 */
function logRN(x: number): number {
  if (!(x > 0) || x === Infinity) return Math.log(x);
  let k = 0;
  if (x < 2.2250738585072014e-308) {
    x *= 18014398509481984; // 2^54
    k = -54;
  }
  F64_VIEW[0] = x;
  const hw = F64_WORDS[HI_WORD]!;
  k += ((hw >>> 20) & 0x7ff) - 1023;
  F64_WORDS[HI_WORD] = (hw & 0x000fffff) | 0x3ff00000; // m in [1, 2)
  let m = F64_VIEW[0]!;
  if (m > Math.SQRT2) {
    m *= 0.5;
    k += 1;
  }
  // f = (m - 1) / (m + 1) in double-double; m - 1 is exact (Sterbenz)
  const num = m - 1;
  const dh = m + 1;
  const dl = m - (dh - 1) + (1 - (dh - (dh - 1)));
  const q1 = num / dh;
  const p = q1 * dh;
  const pe = twoProdErr(q1, dh, p);
  const rem = num - p - pe - q1 * dl;
  const q2 = rem / dh;
  const fh = q1 + q2;
  const fl = q2 - (fh - q1);
  // log m = 2 atanh f = 2 f (1 + w/3 + w^2/5 + ...), w = f^2 <= 0.0295
  ddMul(fh, fl, fh, fl);
  const wh = DD_H;
  const wl = DD_L;
  let sh = ATANH_COEF[ATANH_COEF.length - 1]![0];
  let sl = ATANH_COEF[ATANH_COEF.length - 1]![1];
  for (let i = ATANH_COEF.length - 2; i >= 0; i--) {
    ddMul(sh, sl, wh, wl);
    const c = ATANH_COEF[i]!;
    ddAdd(DD_H, DD_L, c[0], c[1]);
    sh = DD_H;
    sl = DD_L;
  }
  ddMul(sh, sl, 2 * fh, 2 * fl);
  const lh = DD_H;
  const ll = DD_L;
  if (k === 0) return lh + ll;
  ddMul(k, 0, LN2_HI, LN2_LO);
  ddAdd(DD_H, DD_L, lh, ll);
  return DD_H + DD_L;
}

// pi/2 in pieces: the first three have 33 significant bits, so k * piece is
// exact for |k| < 2^20
const PIO2_1 = 1.5707963267341256;
const PIO2_2 = 6.077100506303966e-11;
const PIO2_3 = 2.0222662487111665e-21;
const PIO2_4 = 8.4784276603689e-32;
const INV_PIO2 = 0.6366197723675814;

let sinRNOut = 0;
let cosRNOut = 0;

/** sin r and cos r for a double-double |r| <= ~pi/4, rounded to double; results in sinRNOut / cosRNOut */
function sinCosReduced(rh: number, rl: number): void {
  ddMul(rh, rl, rh, rl);
  const wh = DD_H;
  const wl = DD_L;
  // sin r = r * sum (-1)^i w^i / (2i+1)!,  cos r = sum (-1)^i w^i / (2i)!
  const TERMS = 15;
  let sh = (TERMS & 1 ? -1 : 1) * INV_FACT[2 * TERMS + 1]![0];
  let sl = (TERMS & 1 ? -1 : 1) * INV_FACT[2 * TERMS + 1]![1];
  let ch = (TERMS & 1 ? -1 : 1) * INV_FACT[2 * TERMS]![0];
  let cl = (TERMS & 1 ? -1 : 1) * INV_FACT[2 * TERMS]![1];
  for (let i = TERMS - 1; i >= 0; i--) {
    const sign = i & 1 ? -1 : 1;
    const fs = INV_FACT[2 * i + 1]!;
    const fc = INV_FACT[2 * i]!;
    ddMul(sh, sl, wh, wl);
    ddAdd(DD_H, DD_L, sign * fs[0], sign * fs[1]);
    sh = DD_H;
    sl = DD_L;
    ddMul(ch, cl, wh, wl);
    ddAdd(DD_H, DD_L, sign * fc[0], sign * fc[1]);
    ch = DD_H;
    cl = DD_L;
  }
  ddMul(sh, sl, rh, rl);
  sinRNOut = DD_H + DD_L;
  cosRNOut = ch + cl;
}

/** correctly rounded sin and cos of a double |theta| < 2^19; results in sinRNOut / cosRNOut */
function sinCosRN(theta: number): void {
  if (!Number.isFinite(theta) || Math.abs(theta) >= 524288) {
    sinRNOut = Math.sin(theta);
    cosRNOut = Math.cos(theta);
    return;
  }
  const k = Math.round(theta * INV_PIO2);
  // r = theta - k pi/2 as a double-double; theta - k*PIO2_1 is exact
  // (Sterbenz for k != 0), the other products are exact
  const t = theta - k * PIO2_1;
  const b = -k * PIO2_2;
  let rh = t + b;
  let bb = rh - t;
  let rl = t - (rh - bb) + (b - bb);
  ddAdd(rh, rl, -k * PIO2_3, -k * PIO2_4);
  rh = DD_H;
  rl = DD_L;
  sinCosReduced(rh, rl);
  const s = sinRNOut;
  const c = cosRNOut;
  switch (((k % 4) + 4) % 4) {
    case 0:
      sinRNOut = s;
      cosRNOut = c;
      break;
    case 1:
      sinRNOut = c;
      cosRNOut = -s;
      break;
    case 2:
      sinRNOut = -s;
      cosRNOut = -c;
      break;
    default:
      sinRNOut = -c;
      cosRNOut = s;
      break;
  }
}

/** normal_fill_16<double> on data[o .. o+16) with mean 0, std 1 */
function normalFill16F64(data: Float64Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = 1 - data[o + j]!;
    const u2 = data[o + j + 8]!;
    const radius = Math.sqrt(-2 * logRN(u1));
    const theta = 2 * Math.PI * u2;
    sinCosRN(theta);
    data[o + j] = radius * cosRNOut + 0;
    data[o + j + 8] = radius * sinRNOut + 0;
  }
}

// ---------------------------------------------------------------------------
// public API
// ---------------------------------------------------------------------------

const UINT64_MOD = 1n << 64n;
const INT64_MIN = -(1n << 63n);

function normalizeSeed(seed: number | bigint): bigint {
  let s: bigint;
  if (typeof seed === "number") {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`seed must be a safe integer or a bigint, got ${seed}`);
    }
    s = BigInt(seed);
  } else if (typeof seed === "bigint") {
    s = seed;
  } else {
    throw new TypeError("seed must be a number or a bigint");
  }
  if (s < INT64_MIN || s >= UINT64_MOD) {
    throw new RangeError(`seed ${s} is outside the int64/uint64 range torch accepts`);
  }
  // torch reinterprets a negative (int64) seed as uint64
  return s < 0n ? s + UINT64_MOD : s;
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new RangeError(`invalid dimension ${String(d)} in shape [${shape.join(", ")}]`);
    }
    n *= d;
  }
  if (!Number.isSafeInteger(n) || n > 0x7fffffff) {
    throw new RangeError(`shape [${shape.join(", ")}] is too large`);
  }
  return n;
}

/**
 * `torch.Generator().manual_seed(seed)` on CPU. Every draw advances the state
 * exactly as torch does, so a sequence of calls reproduces the same sequence
 * of torch calls on one generator.
 */
export class TorchGenerator {
  readonly #seed: bigint;
  readonly #engine: Mt19937;
  /** torch's next_double_normal_sample (the cached Box-Muller sine) */
  #nextDoubleNormal: number | undefined = undefined;

  constructor(seed: number | bigint) {
    this.#seed = normalizeSeed(seed);
    this.#engine = new Mt19937(Number(this.#seed & 0xffffffffn));
  }

  /** the seed as torch reports it (`initial_seed()`, uint64) */
  get seed(): bigint {
    return this.#seed;
  }

  /** torch.randn(shape, generator=this) as float32, C order. */
  randn(shape: readonly number[]): Float32Array {
    const n = numelOf(shape);
    const out = new Float32Array(n);
    if (n >= 16) {
      const engine = this.#engine;
      engine.fillUniform24(out, 0, n);
      for (let i = 0; i + 16 <= n; i += 16) normalFill16F32(out, i);
      if (n % 16 !== 0) {
        engine.fillUniform24(out, n - 16, 16);
        normalFill16F32(out, n - 16);
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = this.#scalarNormal(); // double -> float rounding
    }
    return out;
  }

  /** torch.randn(shape, generator=this, dtype=torch.float64), C order. */
  randnFloat64(shape: readonly number[]): Float64Array {
    const n = numelOf(shape);
    const out = new Float64Array(n);
    if (n >= 16) {
      const engine = this.#engine;
      engine.fillUniform53(out, 0, n);
      for (let i = 0; i + 16 <= n; i += 16) normalFill16F64(out, i);
      if (n % 16 !== 0) {
        engine.fillUniform53(out, n - 16, 16);
        normalFill16F64(out, n - 16);
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = this.#scalarNormal();
    }
    return out;
  }

  /** at::normal_distribution<double>(0, 1)(generator) */
  #scalarNormal(): number {
    const cached = this.#nextDoubleNormal;
    if (cached !== undefined) {
      this.#nextDoubleNormal = undefined;
      return cached + 0;
    }
    const u1 = this.#engine.uniform53();
    const u2 = this.#engine.uniform53();
    const r = Math.sqrt(-2 * logRN(1 - u2));
    const theta = 2 * Math.PI * u1;
    sinCosRN(theta);
    this.#nextDoubleNormal = r * sinRNOut;
    return r * cosRNOut + 0;
  }
}

/**
 * Internals exposed for tests only (libm parity checks); not part of the API.
 * @internal
 */
export const __rngInternals = {
  logRN,
  sinCosRN(theta: number): [number, number] {
    sinCosRN(theta);
    return [sinRNOut, cosRNOut];
  },
  logAvx,
  sinCosAvx(theta: number): [number, number] {
    sinCosAvx(theta);
    return [sinAvxOut, cosAvxOut];
  },
  fma32,
};
