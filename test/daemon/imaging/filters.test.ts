import { describe, expect, it } from "vitest";
import { blurReach, boxesForGauss, gaussianBlur, maxFilterOctagon, minFilterOctagon, octagonSegments } from "../../../daemon/imaging/filters";
import { random } from "./helpers";

/** The octagon's offsets: the Minkowski sum of the four segments, as a set of "dx,dy". */
function octagonOffsets(radius: number): Array<[number, number]> {
  const { axis, diagonal } = octagonSegments(radius);
  let set = new Set(["0,0"]);
  const segments: Array<[number, number, number]> = [
    [1, 0, axis],
    [0, 1, axis],
    [1, 1, diagonal],
    [1, -1, diagonal],
  ];
  for (const [dx, dy, h] of segments) {
    const next = new Set<string>();
    for (const key of set) {
      const [x, y] = key.split(",").map(Number) as [number, number];
      for (let t = -h; t <= h; t++) next.add(`${x + t * dx},${y + t * dy}`);
    }
    set = next;
  }
  return [...set].map((k) => k.split(",").map(Number) as [number, number]);
}

function bruteForce(src: Uint8Array, w: number, h: number, radius: number, max: boolean): Uint8Array {
  const offsets = octagonOffsets(radius);
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = max ? 0 : 255;
      for (const [dx, dy] of offsets) {
        const xx = x + dx;
        const yy = y + dy;
        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
        const s = src[yy * w + xx]!;
        v = max ? Math.max(v, s) : Math.min(v, s);
      }
      out[y * w + x] = v;
    }
  }
  return out;
}

describe("octagon max / min filter", () => {
  it("approximates a disk: contains it, and reaches at most 8% further (r >= 3; r <= 2 is a square)", () => {
    for (const r of [1, 2, 3, 5, 8, 13, 21, 40]) {
      const offsets = octagonOffsets(r);
      const farthest = Math.max(...offsets.map(([x, y]) => Math.hypot(x, y)));
      expect(farthest).toBeLessThanOrEqual(r < 3 ? r * Math.SQRT2 : r * 1.09 + 0.5);
      const keys = new Set(offsets.map(([x, y]) => `${x},${y}`));
      for (let y = -r; y <= r; y++) {
        for (let x = -r; x <= r; x++) {
          // Every point of the disk (less half a pixel of rounding) is inside the octagon.
          if (Math.hypot(x, y) <= r - 0.75) expect(keys.has(`${x},${y}`), `r=${r} (${x},${y})`).toBe(true);
        }
      }
    }
  });

  it("equals a brute-force max and min over the octagon, at the borders too", () => {
    const rand = random(7);
    for (const [w, h, r] of [
      [37, 23, 1],
      [40, 31, 4],
      [19, 45, 7],
      [64, 50, 12],
      [9, 9, 20],
    ] as const) {
      // Sparse soft blobs on zero, so both the crop logic and the soft values are exercised.
      const src = new Uint8Array(w * h);
      for (let i = 0; i < src.length; i++) if (rand() < 0.08) src[i] = Math.floor(rand() * 256);
      expect(maxFilterOctagon(src, w, h, r)).toEqual(bruteForce(src, w, h, r, true));
      const dense = src.map((v) => (rand() < 0.7 ? 255 : v));
      expect(minFilterOctagon(dense, w, h, r)).toEqual(bruteForce(dense, w, h, r, false));
      expect(maxFilterOctagon(dense, w, h, r)).toEqual(bruteForce(dense, w, h, r, true));
    }
  });

  it("leaves uniform images and radius 0 alone", () => {
    const flat = new Uint8Array(100).fill(77);
    expect(maxFilterOctagon(flat, 10, 10, 3)).toEqual(flat);
    expect(minFilterOctagon(flat, 10, 10, 3)).toEqual(flat);
    const some = Uint8Array.from({ length: 100 }, (_, i) => i);
    expect(maxFilterOctagon(some, 10, 10, 0)).toEqual(some);
  });
});

describe("gaussian blur", () => {
  it("chooses boxes whose variance is the gaussian's", () => {
    for (const sigma of [3, 3.3, 5, 8, 16, 50]) {
      const variance = boxesForGauss(sigma).reduce((sum, w) => sum + (w * w - 1) / 12, 0);
      expect(Math.sqrt(variance)).toBeCloseTo(sigma, 0);
      expect(Math.abs(Math.sqrt(variance) - sigma) / sigma).toBeLessThan(0.06);
    }
  });

  it("spreads an impulse like a gaussian and keeps its mass, within its reach", () => {
    for (const sigma of [1, 3, 10]) {
      const n = 201;
      const data = new Float32Array(n);
      data[100] = 1000;
      gaussianBlur(data, n, 1, 1, sigma);
      const total = data.reduce((a, b) => a + b, 0);
      expect(total).toBeCloseTo(1000, 1);
      const variance = data.reduce((s, v, i) => s + v * (i - 100) ** 2, 0) / total;
      expect(Math.sqrt(variance)).toBeGreaterThan(sigma * 0.93);
      expect(Math.sqrt(variance)).toBeLessThan(sigma * 1.07);
      const reach = blurReach(sigma);
      for (let i = 0; i < n; i++) if (Math.abs(i - 100) > reach) expect(data[i]).toBe(0);
    }
  });

  it("keeps a flat image flat, edges included, in every channel", () => {
    const w = 50;
    const h = 30;
    const data = new Float32Array(w * h * 3);
    for (let i = 0; i < data.length; i++) data[i] = [10, 128, 255][i % 3]!;
    gaussianBlur(data, w, h, 3, 6);
    for (let i = 0; i < data.length; i++) expect(data[i]).toBeCloseTo([10, 128, 255][i % 3]!, 3);
  });

  it("blurs columns as it blurs rows (separable and symmetric)", () => {
    const w = 41;
    const rows = new Float32Array(w * w);
    const cols = new Float32Array(w * w);
    rows[20 * w + 20] = cols[20 * w + 20] = 100;
    gaussianBlur(rows, w, w, 1, 4);
    gaussianBlur(cols, w, w, 1, 4);
    for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) expect(rows[y * w + x]).toBeCloseTo(rows[x * w + y]!, 5);
  });
});
