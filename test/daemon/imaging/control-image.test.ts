/** Control images (daemon/imaging/control-image.ts) from layers drawn by sharp: canny finds edges, scribbles become white strokes on black. */
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { controlImage } from "../../../daemon/imaging/control-image";
import type { Pixels } from "../../../geometry";

async function draw(svg: string, size: number): Promise<Pixels> {
  const { data, info } = await sharp(Buffer.from(svg)).resize(size, size).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

const svg = (body: string, ground = "white") => `<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128"><rect width="128" height="128" fill="${ground}"/>${body}</svg>`;
const plane = 64 * 64;
const value = (img: Float32Array, c: number, x: number, y: number) => img[c * plane + y * 64 + x]!;

describe("control images", () => {
  it("canny: a filled square (drawn at 128, prepared at 64) becomes its one-pixel outline, white on black, in all three channels", async () => {
    const layer = await draw(svg(`<rect x="32" y="32" width="64" height="64" fill="black"/>`), 128);
    const img = await controlImage("canny", layer, { width: 64, height: 64 });
    expect(img.length).toBe(3 * plane);
    expect(new Set(img)).toEqual(new Set([0, 1]));
    expect(value(img, 0, 32, 8)).toBe(0); // outside
    expect(value(img, 0, 32, 32)).toBe(0); // inside the filled square
    const edgeRow = [14, 15, 16, 17].map((x) => value(img, 1, x, 32));
    expect(edgeRow).toContain(1);
    for (let i = 0; i < plane; i++) expect(img[i]).toBe(img[2 * plane + i]);
  });

  it("scribble: black strokes on white are inverted to white strokes on black, binary; canny of the same layer is a different image", async () => {
    const layer = await draw(svg(`<line x1="10" y1="64" x2="118" y2="64" stroke="black" stroke-width="12"/>`), 128);
    const img = await controlImage("scribble", layer, { width: 64, height: 64 });
    expect(new Set(img)).toEqual(new Set([0, 1]));
    // The ground is black; the stroke (rows 29..34 at 64) is white.
    expect(value(img, 0, 32, 10)).toBe(0);
    expect(value(img, 0, 32, 32)).toBe(1);
    const strokeRow = Array.from({ length: 64 }, (_, y) => value(img, 0, 32, y)).map((v, y) => (v === 1 ? y : -1)).filter((y) => y >= 0);
    expect(strokeRow.length).toBeGreaterThanOrEqual(5);
    expect(Math.min(...strokeRow)).toBeGreaterThanOrEqual(28);
    expect(Math.max(...strokeRow)).toBeLessThanOrEqual(35);
    const canny = await controlImage("canny", layer, { width: 64, height: 64 });
    expect(canny).not.toEqual(img);
    // Canny marks the stroke's two borders, not its middle.
    expect(value(canny, 0, 32, 32)).toBe(0);
    expect(Array.from({ length: 64 }, (_, y) => value(canny, 0, 32, y))).toContain(1);
  });

  it("scribble: white strokes on black are kept as they are; lineart keeps soft grey values", async () => {
    const layer = await draw(svg(`<line x1="10" y1="64" x2="118" y2="64" stroke="white" stroke-width="12"/>`, "black"), 128);
    const img = await controlImage("scribble", layer, { width: 64, height: 64 });
    expect(value(img, 0, 32, 32)).toBe(1);
    expect(value(img, 0, 32, 10)).toBe(0);
    const soft = await draw(svg(`<line x1="10" y1="64" x2="118" y2="64" stroke="rgb(100,100,100)" stroke-width="12"/>`, "black"), 128);
    const line = await controlImage("lineart", soft, { width: 64, height: 64 });
    expect(value(line, 0, 32, 32)).toBeCloseTo(100 / 255, 2);
    expect((await controlImage("scribble", soft, { width: 64, height: 64 }))[32 * 64 + 32]).toBe(0);
  });

  it("depth and pose: the layer's RGB as it is, channels first", async () => {
    const layer = await draw(svg(`<rect x="0" y="0" width="64" height="128" fill="rgb(255,0,0)"/><rect x="64" y="0" width="64" height="128" fill="rgb(0,0,255)"/>`), 128);
    for (const kind of ["depth", "pose"] as const) {
      const img = await controlImage(kind, layer, { width: 64, height: 64 });
      expect([value(img, 0, 10, 10), value(img, 1, 10, 10), value(img, 2, 10, 10)]).toEqual([1, 0, 0]);
      expect([value(img, 0, 54, 10), value(img, 1, 54, 10), value(img, 2, 54, 10)]).toEqual([0, 0, 1]);
    }
  });
});
