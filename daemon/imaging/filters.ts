/**
 * The two filters everything else is built from, on plain typed arrays:
 * - a max filter by an octagon (a near-disk) in O(1) per pixel per pass (van Herk / Gil-Werman),
 * - a gaussian blur as three box blurs (O(1) per pixel per pass, any sigma), clamped at the edges.
 */

/** Half-lengths of the four line segments whose Minkowski sum is an octagon with inradius r. */
export function octagonSegments(radius: number): { axis: number; diagonal: number } {
  const r = Math.max(0, Math.round(radius));
  // Support along x is axis + 2*diagonal, along (1,1)/sqrt2 it is sqrt2*(axis + diagonal): both ~r.
  let diagonal = Math.round(r * (1 - Math.SQRT1_2));
  // Diagonal steps alone reach only every other pixel: keep at least a 3x3 square in the sum.
  if (diagonal > 0 && r - 2 * diagonal < 1) diagonal--;
  return { axis: r - 2 * diagonal, diagonal };
}

/**
 * Max filter of a one-channel image by an octagon of inradius `radius` (a disk to within 8%);
 * outside the image counts as 0, so nothing grows in from the edges.
 */
export function maxFilterOctagon(src: Uint8Array, width: number, height: number, radius: number): Uint8Array {
  return octagonFilter(src, width, height, radius, false);
}

/** Min filter by the same octagon; outside the image counts as 255, so edges touching the canvas stay. */
export function minFilterOctagon(src: Uint8Array, width: number, height: number, radius: number): Uint8Array {
  return octagonFilter(src, width, height, radius, true);
}

/**
 * A min filter is a max filter of 255 - v. Only a crop can change: a pixel changes only if it is not
 * already extreme and a pixel within r is not neutral, so the work is limited to
 * bounds(not extreme) intersected with bounds(not neutral) + r, computed on that crop + r.
 */
function octagonFilter(src: Uint8Array, width: number, height: number, radius: number, invert: boolean): Uint8Array {
  const { axis, diagonal } = octagonSegments(radius);
  const out = new Uint8Array(src);
  if (axis === 0 && diagonal === 0) return out;
  const r = axis + 2 * diagonal;
  const neutral = invert ? 255 : 0;
  const extreme = 255 - neutral;
  const active = valueBounds(src, width, height, (v) => v !== neutral);
  const open = valueBounds(src, width, height, (v) => v !== extreme);
  if (!active || !open) return out;
  const cx0 = Math.max(open.x0, active.x0 - r);
  const cy0 = Math.max(open.y0, active.y0 - r);
  const cx1 = Math.min(open.x1, active.x1 + r);
  const cy1 = Math.min(open.y1, active.y1 + r);
  if (cx0 >= cx1 || cy0 >= cy1) return out;
  // The crop the filter reads: the changing area + r, clamped to the image.
  const x0 = Math.max(0, cx0 - r);
  const y0 = Math.max(0, cy0 - r);
  const x1 = Math.min(width, cx1 + r);
  const y1 = Math.min(height, cy1 + r);
  const w = x1 - x0;
  const h = y1 - y0;
  // Each pass leaves its half-length of border invalid; pad by all of them so the crop stays exact.
  const pad = 2 * axis + 2 * diagonal;
  const wp = w + 2 * pad;
  const hp = h + 2 * pad;
  const buf = new Uint8Array(wp * hp);
  for (let y = 0; y < h; y++) {
    const from = (y0 + y) * width + x0;
    const to = (y + pad) * wp + pad;
    if (invert) for (let x = 0; x < w; x++) buf[to + x] = 255 - src[from + x]!;
    else buf.set(src.subarray(from, from + w), to);
  }
  const scratch = { r: new Uint8Array(0), s: new Uint8Array(0) };
  if (axis > 0) {
    rowPass(buf, wp, hp, axis);
    linePass(buf, wp, hp, 0, axis, scratch);
  }
  if (diagonal > 0) {
    linePass(buf, wp, hp, 1, diagonal, scratch);
    linePass(buf, wp, hp, -1, diagonal, scratch);
  }
  for (let y = cy0; y < cy1; y++) {
    const from = (y - y0 + pad) * wp + pad - x0;
    const to = y * width;
    if (invert) for (let x = cx0; x < cx1; x++) out[to + x] = 255 - buf[from + x]!;
    else out.set(buf.subarray(from + cx0, from + cx1), to + cx0);
  }
  return out;
}

/** Half-open bounds [x0, x1) x [y0, y1) of the pixels that pass the test, or null. */
function valueBounds(src: Uint8Array, width: number, height: number, test: (v: number) => boolean): { x0: number; y0: number; x1: number; y1: number } | null {
  let y0 = -1;
  let y1 = -1;
  let x0 = width;
  let x1 = 0;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    let first = -1;
    for (let x = 0; x < width; x++) if (test(src[row + x]!)) { first = x; break; }
    if (first < 0) continue;
    if (y0 < 0) y0 = y;
    y1 = y + 1;
    if (first < x0) x0 = first;
    for (let x = width - 1; x >= x1; x--) if (test(src[row + x]!)) { x1 = x + 1; break; }
  }
  return y0 < 0 ? null : { x0, y0, x1, y1 };
}

/** Horizontal running max over [x-h, x+h], in place; the h columns at each end become 0. */
function rowPass(buf: Uint8Array, wp: number, hp: number, h: number): void {
  const k = 2 * h + 1;
  const r = new Uint8Array(wp);
  const s = new Uint8Array(wp);
  for (let y = 0; y < hp; y++) {
    const row = y * wp;
    for (let start = 0; start < wp; start += k) {
      const end = Math.min(wp, start + k);
      let m = 0;
      for (let x = start; x < end; x++) {
        const v = buf[row + x]!;
        if (v > m) m = v;
        r[x] = m;
      }
      m = 0;
      for (let x = end - 1; x >= start; x--) {
        const v = buf[row + x]!;
        if (v > m) m = v;
        s[x] = m;
      }
    }
    for (let x = 0; x < h; x++) buf[row + x] = 0;
    for (let x = h; x < wp - h; x++) {
      const a = s[x - h]!;
      const b = r[x + h]!;
      buf[row + x] = a > b ? a : b;
    }
    for (let x = wp - h; x < wp; x++) buf[row + x] = 0;
  }
}

/**
 * Running max along the lines of direction (dx, 1), in place, whole rows at a time so memory is read
 * in order: prefix maxima R and suffix maxima S within blocks of 2h+1 rows, then max(S[start], R[end]).
 */
function linePass(buf: Uint8Array, wp: number, hp: number, dx: -1 | 0 | 1, h: number, scratch: { r: Uint8Array; s: Uint8Array }): void {
  const k = 2 * h + 1;
  if (scratch.r.length !== buf.length) {
    scratch.r = new Uint8Array(buf.length);
    scratch.s = new Uint8Array(buf.length);
  }
  const { r: R, s: S } = scratch;
  const xs = dx === 1 ? 1 : 0;
  const xe = dx === -1 ? wp - 1 : wp;
  for (let y = 0; y < hp; y++) {
    const cur = y * wp;
    if (y % k === 0) {
      R.set(buf.subarray(cur, cur + wp), cur);
      continue;
    }
    const prev = cur - wp - dx;
    if (dx === 1) R[cur] = buf[cur]!;
    if (dx === -1) R[cur + wp - 1] = buf[cur + wp - 1]!;
    for (let x = xs; x < xe; x++) {
      const v = buf[cur + x]!;
      const p = R[prev + x]!;
      R[cur + x] = v > p ? v : p;
    }
  }
  // S walks the line the other way: (x + dx, y + 1) follows (x, y).
  const ss = dx === -1 ? 1 : 0;
  const se = dx === 1 ? wp - 1 : wp;
  for (let y = hp - 1; y >= 0; y--) {
    const cur = y * wp;
    if (y % k === k - 1 || y === hp - 1) {
      S.set(buf.subarray(cur, cur + wp), cur);
      continue;
    }
    const next = cur + wp + dx;
    if (dx === 1) S[cur + wp - 1] = buf[cur + wp - 1]!;
    if (dx === -1) S[cur] = buf[cur]!;
    for (let x = ss; x < se; x++) {
      const v = buf[cur + x]!;
      const n = S[next + x]!;
      S[cur + x] = v > n ? v : n;
    }
  }
  const x0 = dx === 0 ? 0 : h;
  const x1 = dx === 0 ? wp : wp - h;
  buf.fill(0, 0, h * wp);
  buf.fill(0, (hp - h) * wp);
  for (let y = h; y < hp - h; y++) {
    const cur = y * wp;
    const start = (y - h) * wp - h * dx;
    const end = (y + h) * wp + h * dx;
    for (let x = 0; x < x0; x++) buf[cur + x] = 0;
    for (let x = x0; x < x1; x++) {
      const a = S[start + x]!;
      const b = R[end + x]!;
      buf[cur + x] = a > b ? a : b;
    }
    for (let x = x1; x < wp; x++) buf[cur + x] = 0;
  }
}

/** Widths (odd) of n box blurs whose succession has the variance of a gaussian of this sigma. */
export function boxesForGauss(sigma: number, n = 3): number[] {
  const ideal = Math.sqrt((12 * sigma * sigma) / n + 1);
  let wl = Math.floor(ideal);
  if (wl % 2 === 0) wl--;
  const wu = wl + 2;
  // m boxes of width wl, the rest wu: the m whose total variance is nearest sigma^2.
  let best = 0;
  let bestError = Infinity;
  for (let m = 0; m <= n; m++) {
    const variance = (m * (wl * wl - 1) + (n - m) * (wu * wu - 1)) / 12;
    const error = Math.abs(variance - sigma * sigma);
    if (error < bestError) [best, bestError] = [m, error];
  }
  return Array.from({ length: n }, (_, i) => (i < best ? wl : wu));
}

/** Below this sigma three boxes are too coarse (>5% off): an exact kernel of at most 19 taps is used. */
const EXACT_BELOW = 3;

/** How far a blur of this sigma reaches, in pixels (its kernel is 0 beyond). */
export function blurReach(sigma: number): number {
  if (sigma <= 0) return 0;
  if (sigma < EXACT_BELOW) return Math.ceil(3 * sigma);
  return boxesForGauss(sigma).reduce((sum, w) => sum + (w - 1) / 2, 0);
}

/**
 * Gaussian blur of interleaved float channels, in place, edges clamped (replicated). Three box
 * blurs for sigma >= 3 (sigma within ~5% of the asked one, compact support), an exact kernel below that.
 */
export function gaussianBlur(data: Float32Array, width: number, height: number, channels: number, sigma: number): void {
  if (!(sigma > 0)) return;
  if (sigma < EXACT_BELOW) {
    const other = new Float32Array(data.length);
    const kernel = gaussianKernel(sigma);
    convolveRows(data, other, width, height, channels, kernel);
    convolveColumns(other, data, width, height, channels, kernel);
    return;
  }
  const boxes = boxesForGauss(sigma);
  const rowA = new Float32Array(width * channels);
  const rowB = new Float32Array(width * channels);
  for (let y = 0; y < height; y++) {
    // All three horizontal boxes while the row is in cache.
    const row = data.subarray(y * width * channels, (y + 1) * width * channels);
    boxRow(row, rowA, width, channels, (boxes[0]! - 1) / 2);
    boxRow(rowA, rowB, width, channels, (boxes[1]! - 1) / 2);
    boxRow(rowB, row, width, channels, (boxes[2]! - 1) / 2);
  }
  for (const w of boxes) boxColumnsInPlace(data, width, height, channels, (w - 1) / 2);
}

function gaussianKernel(sigma: number): Float64Array {
  const r = Math.ceil(3 * sigma);
  const k = new Float64Array(2 * r + 1);
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i]! /= sum;
  return k;
}

function convolveRows(src: Float32Array, dst: Float32Array, width: number, height: number, c: number, k: Float64Array): void {
  const r = (k.length - 1) / 2;
  const last = width - 1;
  for (let y = 0; y < height; y++) {
    const row = y * width * c;
    for (let x = 0; x < width; x++) {
      // Only the first and last r pixels need their taps clamped to the row.
      const inside = x >= r && x + r <= last;
      for (let ch = 0; ch < c; ch++) {
        let sum = 0;
        if (inside) {
          for (let i = -r, p = row + (x - r) * c + ch; i <= r; i++, p += c) sum += k[i + r]! * src[p]!;
        } else {
          for (let i = -r; i <= r; i++) {
            const xx = x + i < 0 ? 0 : x + i > last ? last : x + i;
            sum += k[i + r]! * src[row + xx * c + ch]!;
          }
        }
        dst[row + x * c + ch] = sum;
      }
    }
  }
}

function convolveColumns(src: Float32Array, dst: Float32Array, width: number, height: number, c: number, k: Float64Array): void {
  const r = (k.length - 1) / 2;
  const stride = width * c;
  const acc = new Float64Array(stride);
  for (let y = 0; y < height; y++) {
    acc.fill(0);
    for (let i = -r; i <= r; i++) {
      const yy = y + i < 0 ? 0 : y + i >= height ? height - 1 : y + i;
      const wgt = k[i + r]!;
      const from = yy * stride;
      for (let j = 0; j < stride; j++) acc[j]! += wgt * src[from + j]!;
    }
    dst.set(acc, y * stride);
  }
}

/** Box blur of radius r along one row, src -> dst (running sum in double precision, edges clamped). */
function boxRow(src: Float32Array, dst: Float32Array, width: number, c: number, r: number): void {
  if (r === 0) {
    dst.set(src);
    return;
  }
  const inv = 1 / (2 * r + 1);
  const last = width - 1;
  // [0, xa): the window's left end is clamped; [xb, width): its right end is.
  const xa = Math.min(width, r);
  const xb = Math.max(xa, last - r);
  for (let ch = 0; ch < c; ch++) {
    let sum = (r + 1) * src[ch]!;
    for (let j = 1; j <= r; j++) sum += src[(j > last ? last : j) * c + ch]!;
    const first = src[ch]!;
    const final = src[last * c + ch]!;
    let x = 0;
    for (; x < xa; x++) {
      dst[x * c + ch] = sum * inv;
      sum += src[(x + r + 1 > last ? last : x + r + 1) * c + ch]! - first;
    }
    for (; x < xb; x++) {
      dst[x * c + ch] = sum * inv;
      sum += src[(x + r + 1) * c + ch]! - src[(x - r) * c + ch]!;
    }
    for (; x < width; x++) {
      dst[x * c + ch] = sum * inv;
      sum += final - src[(x - r < 0 ? 0 : x - r) * c + ch]!;
    }
  }
}

/**
 * Box blur of radius r down the columns, in place, whole rows at a time so memory is read in order.
 * The original rows still needed (the r+1 above the current one, and the first and last) are kept
 * in a small ring instead of a second full-size buffer.
 */
function boxColumnsInPlace(data: Float32Array, width: number, height: number, c: number, r: number): void {
  if (r === 0) return;
  const stride = width * c;
  const inv = 1 / (2 * r + 1);
  const last = height - 1;
  const firstRow = data.slice(0, stride);
  const lastRow = data.slice(last * stride, (last + 1) * stride);
  const slots = r + 1;
  const ring = new Float32Array(slots * stride);
  const acc = new Float64Array(stride);
  for (let j = 0; j < stride; j++) acc[j] = (r + 1) * firstRow[j]!;
  for (let i = 1; i <= r; i++) {
    const from = (i > last ? last : i) * stride;
    for (let j = 0; j < stride; j++) acc[j]! += data[from + j]!;
  }
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    ring.set(data.subarray(row, row + stride), (y % slots) * stride);
    for (let j = 0; j < stride; j++) data[row + j] = acc[j]! * inv;
    const addRow = y + r + 1;
    const add = addRow > last ? lastRow : data.subarray(addRow * stride, (addRow + 1) * stride);
    const subRow = y - r;
    const sub = subRow < 0 ? firstRow : ring.subarray((subRow % slots) * stride, (subRow % slots + 1) * stride);
    for (let j = 0; j < stride; j++) acc[j] = acc[j]! + add[j]! - sub[j]!;
  }
}
