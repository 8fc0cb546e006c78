/** Canny edges (daemon/imaging/canny.ts) on pictures drawn by sharp: edges where the shapes' borders are, nowhere else. */
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { cannyEdges } from "../../../daemon/imaging/canny";
import type { Pixels } from "../../../geometry";

async function draw(svg: string, size: number): Promise<Pixels> {
  const { data, info } = await sharp(Buffer.from(svg)).resize(size, size).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

const at = (p: Pixels, x: number, y: number) => p.data[y * p.width + x]!;

describe("canny edges", () => {
  it("outline a white square on black along its border, with nothing inside or outside", async () => {
    const image = await draw(`<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="black"/><rect x="16" y="16" width="32" height="32" fill="white"/></svg>`, 64);
    const edges = cannyEdges(image);
    expect(edges.channels).toBe(1);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++) {
        const v = at(edges, x, y);
        const nearBorder = (Math.abs(x - 16) <= 1 || Math.abs(x - 47) <= 1) && y >= 15 && y <= 48 || (Math.abs(y - 16) <= 1 || Math.abs(y - 47) <= 1) && x >= 15 && x <= 48;
        if (!nearBorder) expect(v, `${x},${y}`).toBe(0);
      }
    // Every side has a thin continuous edge: one pixel per row (or column) after non-maximum suppression.
    for (let y = 20; y < 44; y++) {
      expect([15, 16, 17].filter((x) => at(edges, x, y) === 255), `left side, row ${y}`).toHaveLength(1);
      expect([46, 47, 48].filter((x) => at(edges, x, y) === 255), `right side, row ${y}`).toHaveLength(1);
    }
    for (let x = 20; x < 44; x++) expect([15, 16, 17].filter((y) => at(edges, x, y) === 255), `top, column ${x}`).toHaveLength(1);
  });

  it("keeps a faint step only when it touches a strong edge (hysteresis), and finds no edges on flat grey", async () => {
    const flat = cannyEdges({ width: 16, height: 16, channels: 1, data: new Uint8Array(256).fill(128) });
    expect(flat.data.every((v) => v === 0)).toBe(true);
    // A step of 30 grey levels: Sobel's L1 magnitude 120, between the thresholds, alone: no edge.
    const faint = new Uint8Array(32 * 32).map((_, i) => (i % 32 < 16 ? 100 : 130));
    expect(cannyEdges({ width: 32, height: 32, channels: 1, data: faint }).data.some((v) => v > 0)).toBe(false);
    // The same step whose upper half is strong (a step of 100): the faint half is kept through the connection.
    const mixed = new Uint8Array(32 * 32).map((_, i) => (i % 32 < 16 ? 100 : Math.floor(i / 32) < 16 ? 200 : 130));
    const edges = cannyEdges({ width: 32, height: 32, channels: 1, data: mixed });
    const column = (y: number) => [14, 15, 16].some((x) => edges.data[y * 32 + x] === 255);
    expect(column(4)).toBe(true);
    expect(column(28)).toBe(true);
  });
});
