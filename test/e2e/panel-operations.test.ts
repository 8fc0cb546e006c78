/**
 * The panel's operations end to end: the real adapter on the in-memory Photoshop, the real
 * protocol client over ws, and the real daemon with the tiny fixture models.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  inpaintContext,
  intersect,
  maskedEditSize,
  oldCanvasIn,
  outpaintContext,
  readSize,
  regionOf,
  translate,
  wholePictureSize,
  type Expansion,
  type Region,
  type Size,
} from "../../geometry";
import { ProtocolClient } from "../../plugin/src/client/client";
import { PanelError } from "../../plugin/src/errors";
import { runOperation } from "../../plugin/src/operations/run";
import { historyName } from "../../plugin/src/operations/naming";
import { DEFAULT_SETTINGS, type GenerationSettings, type OperationMode } from "../../plugin/src/operations/settings";
import { createPhotoshopHost } from "../../plugin/src/photoshop/uxp-host";
import { FakePhotoshop, type FakeDocument, type FakeRead } from "../plugin/fake-photoshop";
import { ellipseSelection, loadPhoto, startTestDaemon, TOKEN, wsFactory, type TestDaemon } from "./helpers";

let daemon: TestDaemon;
let client: ProtocolClient;
let chelsea: { width: number; height: number; data: Uint8Array };

beforeAll(async () => {
  daemon = await startTestDaemon();
  client = new ProtocolClient({ url: daemon.server.url, socketFactory: wsFactory, token: TOKEN });
  client.start();
  await client.whenReady();
  chelsea = await loadPhoto("chelsea.png");
});

afterAll(async () => {
  client?.stop();
  await daemon?.close();
});

// Few steps and no classifier-free guidance (one UNet call per step): the tiny models on two
// shared CPU cores are still slow at their 512-pixel native size.
const base: GenerationSettings = { ...DEFAULT_SETTINGS, model: "tiny-sd", prompt: "a small red bird sitting on the cat's head", steps: 2, guidance: 1, scheduler: "euler", seed: 7 };
const SLOW = { timeout: 240_000 };

function catDocument(ps: FakePhotoshop, depth: 8 | 16 | 32 = 8): FakeDocument {
  return ps.openDocument({ title: "chelsea.png", width: chelsea.width, height: chelsea.height, depth, layers: [{ name: "Background", background: true, pixels: chelsea }] });
}

function setup() {
  const ps = new FakePhotoshop();
  const host = createPhotoshopHost(ps);
  return { ps, host, deps: { host, client } };
}

/** The cat photo mirrored over a larger canvas (no seams), as one big opaque background. */
function bigDocument(ps: FakePhotoshop, width: number, height: number): FakeDocument {
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    const ty = Math.floor(y / chelsea.height) % 2 ? chelsea.height - 1 - (y % chelsea.height) : y % chelsea.height;
    for (let x = 0; x < width; x++) {
      const tx = Math.floor(x / chelsea.width) % 2 ? chelsea.width - 1 - (x % chelsea.width) : x % chelsea.width;
      data.set(chelsea.data.subarray((ty * chelsea.width + tx) * 4, (ty * chelsea.width + tx) * 4 + 4), (y * width + x) * 4);
    }
  }
  return ps.openDocument({ title: "big.psd", width, height, layers: [{ name: "Background", background: true, pixels: { width, height, data } }] });
}

/** The model's native side, as the daemon reports it (the panel sizes its reads from it). */
function native(): number {
  return client.capabilities!.models.find((m) => m.id === base.model)!.nativeResolution;
}

/** Where a read lay in the document (as Photoshop answered it: trimmed to where there are pixels). */
function readRegion(read: FakeRead): Region {
  const b = read.sourceBounds;
  return { x: b.left, y: b.top, width: b.right - b.left, height: b.bottom - b.top };
}

function boundsRegion(bounds: { left: number; top: number; right: number; bottom: number }): Region {
  return { x: bounds.left, y: bounds.top, width: bounds.right - bounds.left, height: bounds.bottom - bounds.top };
}

function selectionBounds(mask: Uint8Array, width: number): Region {
  let [left, top, right, bottom] = [Infinity, Infinity, -1, -1];
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] === 0) continue;
    const x = i % width;
    const y = Math.floor(i / width);
    [left, top, right, bottom] = [Math.min(left, x), Math.min(top, y), Math.max(right, x), Math.max(bottom, y)];
  }
  return { x: left, y: top, width: right - left + 1, height: bottom - top + 1 };
}

function inside(outer: Region, inner: Region): boolean {
  return inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height;
}

/** Pixels that differ between two composites of the same size, outside the selection and inside it, and the largest difference outside. */
function changes(before: Uint8Array, after: Uint8Array, selection: Uint8Array): { outside: number; inside: number; outsideMax: number } {
  let outside = 0;
  let inside = 0;
  let outsideMax = 0;
  for (let i = 0; i < selection.length; i++) {
    const o = i * 4;
    const same = after[o] === before[o] && after[o + 1] === before[o + 1] && after[o + 2] === before[o + 2] && after[o + 3] === before[o + 3];
    if (same) continue;
    if (selection[i] !== 0) {
      inside++;
      continue;
    }
    outside++;
    for (let k = 0; k < 4; k++) outsideMax = Math.max(outsideMax, Math.abs(after[o + k]! - before[o + k]!));
  }
  return { outside, inside, outsideMax };
}

/** Inpaints `selection` in `doc` and checks what was read and where the layers went; returns the reads. */
async function inpaintAndCheckReads(ps: FakePhotoshop, doc: FakeDocument, selection: Uint8Array, deps: ReturnType<typeof setup>["deps"]) {
  doc.setSelection(selection);
  const canvas: Size = { width: doc.width, height: doc.height };
  const selected = selectionBounds(selection, doc.width);
  const context = inpaintContext(selected, canvas, "automatic");
  const size = readSize(context, maskedEditSize(context, native()));
  const before = doc.composite8();
  const readsBefore = ps.reads.length;

  const outcome = await runOperation(deps, { ...base, mode: "inpaint", strength: 1 });

  expect(outcome.status).toBe("completed");
  expect(ps.violations).toEqual([]);
  const reads = ps.reads.slice(readsBefore);
  const scaled = size.width !== context.width || size.height !== context.height;
  // The selection and the picture, over the context only (the selection's read is trimmed to the selection by Photoshop).
  expect(reads.map((r) => [r.api, r.targetSize])).toEqual([
    ["getSelection", scaled ? size : undefined],
    ["getPixels", scaled ? size : undefined],
  ]);
  expect(readRegion(reads[0]!)).toEqual(selected);
  expect(readRegion(reads[1]!)).toEqual(context);
  expect([reads[1]!.width, reads[1]!.height]).toEqual([size.width, size.height]);
  // Every layer lies inside the context, at document resolution.
  const [group] = doc.tree();
  for (const layer of group!.children!) expect(inside(context, boundsRegion(layer.bounds!)), JSON.stringify(layer.bounds)).toBe(true);
  const changed = changes(before.data, doc.composite8().data, selection);
  // Even from a scaled-down read: the daemon keeps the blend off the selection's outermost read pixels.
  expect(changed.outside).toBe(0);
  expect(changed.inside).toBeGreaterThan(1000);
  return { reads, context, size, selected };
}

describe("the panel's operations against the real daemon", () => {
  it("finds a daemon that can inpaint and expand", () => {
    expect(client.capabilities!.modes).toEqual(expect.arrayContaining(["inpaint", "outpaint"]));
  });

  it("inpaints a selection on the cat photo: one group, a layer per variation, one history step, nothing outside the selection changed", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = catDocument(ps);
    const selection = ellipseSelection(doc.width, doc.height, 230, 110, 70, 50);
    doc.setSelection(selection);
    const before = doc.composite8();
    const historyBefore = doc.history.length;

    const progress: Array<[number, string]> = [];
    const outcome = await runOperation(deps, { ...base, mode: "inpaint", strength: 1, variations: 2 }, { onProgress: (fraction, label) => progress.push([fraction, label]) });

    expect(outcome.status).toBe("completed");
    if (outcome.status !== "completed") return;
    expect(ps.violations).toEqual([]);
    // The photo is small: the selection's context is all of it, read at full resolution.
    const context = inpaintContext(selectionBounds(selection, doc.width), { width: doc.width, height: doc.height }, "automatic");
    expect(ps.reads.map((r) => [r.api, r.targetSize])).toEqual([
      ["getSelection", undefined],
      ["getPixels", undefined],
    ]);
    expect(readRegion(ps.reads[1]!)).toEqual(context);
    expect(doc.history.length).toBe(historyBefore + 1);
    expect(doc.history.at(-1)).toBe("Underpaint Inpaint selection");
    const [group, background] = doc.tree();
    expect(background!.name).toBe("Background");
    expect(group!.kind).toBe("group");
    expect(group!.id).toBe(outcome.groupId);
    expect(group!.children!.map((l) => l.name)).toEqual(["a small red bird sitting on the cat's… · seed 7", "a small red bird sitting on the cat's… · seed 8"]);
    expect(group!.children!.map((l) => [l.kind, l.visible, l.hasMask])).toEqual([
      ["pixel", true, true],
      ["pixel", false, true],
    ]);
    expect(outcome.variations.map((v) => v.seed)).toEqual([7, 8]);
    // Progress follows the variation each message names, and never goes back.
    const labels = progress.map(([, label]) => label);
    for (const v of [1, 2]) for (const step of [1, 2]) expect(labels).toContain(`Variation ${v} of 2 · step ${step} of 2`);
    const fractions = progress.map(([fraction]) => fraction);
    expect(fractions).toEqual([...fractions].sort((a, b) => a - b));

    const after = doc.composite8();
    let changedInside = 0;
    for (let i = 0; i < selection.length; i++) {
      const same = [0, 1, 2, 3].every((k) => after.data[i * 4 + k] === before.data[i * 4 + k]);
      if (selection[i] === 0) expect(same, `pixel ${i % doc.width},${Math.floor(i / doc.width)} outside the selection`).toBe(true);
      else if (!same) changedInside++;
    }
    expect(changedInside).toBeGreaterThan(1000);
    // Both layers lie inside the context, cut to where they show.
    for (const layer of group!.children!) expect(inside(context, boundsRegion(layer.bounds!))).toBe(true);
  });

  it("inpaints a selection whose bounds Photoshop reports past the canvas edge (a selection moved over it), reading only the canvas", SLOW, async () => {
    const { ps, host } = setup();
    const doc = catDocument(ps);
    const selection = ellipseSelection(doc.width, doc.height, 20, 20, 60, 50);
    doc.setSelection(selection);
    // Photoshop keeps the part of a selection that lies off the canvas: its bounds start at -40, -30.
    const overEdge = {
      ...host,
      activeDocument: async () => {
        const info = (await host.activeDocument())!;
        const s = info.selection!;
        return { ...info, selection: { x: -40, y: -30, width: s.x + s.width + 40, height: s.y + s.height + 30 } };
      },
    };
    const outcome = await runOperation({ host: overEdge, client }, { ...base, mode: "inpaint", strength: 1 });
    expect(outcome.status).toBe("completed");
    expect(ps.violations).toEqual([]);
    const context = inpaintContext(selectionBounds(selection, doc.width), { width: doc.width, height: doc.height }, "automatic");
    expect(readRegion(ps.reads[1]!)).toEqual(context);
    const layer = doc.tree()[0]!.children![0]!;
    expect(inside(regionOf(doc), boundsRegion(layer.bounds!))).toBe(true);
  });

  it("inpaints a small selection in a large document reading only the context around it, at full resolution", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = bigDocument(ps, 2400, 1600);
    const { reads, context } = await inpaintAndCheckReads(ps, doc, ellipseSelection(doc.width, doc.height, 1500, 900, 60, 40), deps);
    // A 512x512 context, not the 2400x1600 document: a fifteenth of the pixels.
    expect(context.width * context.height).toBeLessThan(0.1 * doc.width * doc.height);
    expect(reads[1]!.samples).toBe(context.width * context.height * 3);
    expect(reads.reduce((n, r) => n + r.samples, 0)).toBeLessThan(0.1 * doc.width * doc.height * 4);
  });

  it("inpaints a large selection reading its context scaled down to what the model can use, and places the result at document resolution", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = bigDocument(ps, 2400, 1600);
    const { reads, context, size, selected } = await inpaintAndCheckReads(ps, doc, ellipseSelection(doc.width, doc.height, 1200, 800, 400, 300), deps);
    // The context is most of the document, but Photoshop hands over at most twice the model's resolution per side.
    expect(context.width * context.height).toBeGreaterThan(0.5 * doc.width * doc.height);
    expect(size.width * size.height).toBeLessThan(0.6 * context.width * context.height);
    expect(reads[1]!.samples).toBe(size.width * size.height * 3);
    // The selection came over at the read's scale...
    const scale = size.width / context.width;
    expect(reads[0]!.width).toBeLessThan(0.8 * selected.width);
    expect(Math.abs(reads[0]!.width - selected.width * scale)).toBeLessThanOrEqual(2);
    // ...and the layer is placed at document resolution, over the selection at its full size.
    const placed = boundsRegion(doc.tree()[0]!.children![0]!.bounds!);
    expect(placed.width).toBeGreaterThan(0.9 * selected.width);
    expect(placed.height).toBeGreaterThan(0.9 * selected.height);
    expect(Math.abs(placed.x + placed.width / 2 - (selected.x + selected.width / 2))).toBeLessThanOrEqual(4);
    expect(Math.abs(placed.y + placed.height / 2 - (selected.y + selected.height / 2))).toBeLessThanOrEqual(4);
  });

  it("expands the canvas by 128 px on the left: the canvas grows, the old pixels stay in place, the new area is filled", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = catDocument(ps);
    const before = doc.composite8();

    const grow: Expansion = { left: 128, top: 0, right: 0, bottom: 0 };
    const outcome = await runOperation(deps, { ...base, mode: "expand", prompt: "a wooden floor", expand: grow });

    expect(outcome.status).toBe("completed");
    expect(ps.violations).toEqual([]);
    // One read: the old pixels the model sees next to the growth, at full resolution (here most of the small photo, not all).
    const seen = expectedExpandRead({ width: chelsea.width, height: chelsea.height }, grow);
    expect(ps.reads.map((r) => [r.api, r.targetSize, readRegion(r)])).toEqual([["getPixels", undefined, seen]]);
    expect(seen).toMatchObject({ x: 0, y: 0, height: chelsea.height });
    expect(seen.width).toBeLessThan(chelsea.width);
    expect([doc.width, doc.height]).toEqual([chelsea.width + 128, chelsea.height]);
    expect(doc.history.at(-1)).toBe("Underpaint Expand canvas");
    expect(doc.history.filter((h) => h.startsWith("Underpaint")).length).toBe(1);
    const [group, background] = doc.tree();
    // The photo moved with the canvas: the background layer holds it 128 px further right.
    expect(background!.bounds).toEqual({ left: 0, top: 0, right: chelsea.width + 128, bottom: chelsea.height });
    const layer = group!.children![0]!;
    expect(layer.bounds!.left).toBe(0);
    expect(layer.hasMask).toBe(true);
    const mask = doc.layerMask(layer.id)!;
    const after = doc.composite8();
    for (let y = 0; y < doc.height; y += 7) {
      // The new strip is covered by the generated layer, fully.
      for (let x = 0; x < 128; x += 5) expect(mask.data[(y - mask.top) * mask.width + (x - mask.left)]).toBe(255);
      // Far from the seam (beyond the overlap band), the photo is untouched.
      for (let x = 128 + 64; x < doc.width; x += 5) {
        const o = (y * doc.width + x) * 4;
        const i = (y * chelsea.width + (x - 128)) * 4;
        expect([...after.data.subarray(o, o + 4)]).toEqual([...before.data.subarray(i, i + 4)]);
      }
    }
    // The new area is not the canvas's blank background colour.
    let white = 0;
    for (let y = 0; y < doc.height; y++) for (let x = 0; x < 128; x++) if (after.data.subarray((y * doc.width + x) * 4, (y * doc.width + x) * 4 + 3).every((v) => v === 255)) white++;
    expect(white).toBeLessThan(128 * doc.height * 0.5);
  });

  it("expands a wide document on the right reading only the strip next to the growth", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = bigDocument(ps, 3000, 600);
    const before = doc.composite8();
    const grow: Expansion = { left: 0, top: 0, right: 128, bottom: 0 };

    const outcome = await runOperation(deps, { ...base, mode: "expand", prompt: "a wooden floor", expand: grow });

    expect(outcome.status).toBe("completed");
    expect(ps.violations).toEqual([]);
    expect([doc.width, doc.height]).toEqual([3128, 600]);
    const seen = expectedExpandRead({ width: 3000, height: 600 }, grow);
    expect(ps.reads.map((r) => [r.api, r.targetSize, readRegion(r)])).toEqual([["getPixels", undefined, seen]]);
    // The strip at the right edge, a third of the document or less.
    expect(seen.x + seen.width).toBe(3000);
    expect(seen.width * seen.height).toBeLessThan(0.35 * 3000 * 600);
    expect(ps.reads[0]!.samples).toBe(seen.width * seen.height * 3);
    // The layer covers the new strip and lies inside the context (grown-canvas pixels); the photo did not move.
    const layer = doc.tree()[0]!.children![0]!;
    const context = outpaintContext({ width: 3000, height: 600 }, grow)!;
    expect(inside(context, boundsRegion(layer.bounds!))).toBe(true);
    expect(layer.bounds!.right).toBe(3128);
    const mask = doc.layerMask(layer.id)!;
    const after = doc.composite8();
    for (let y = 0; y < 600; y += 7) {
      for (let x = 3000; x < 3128; x += 5) expect(mask.data[(y - mask.top) * mask.width + (x - mask.left)]).toBe(255);
      for (let x = 0; x < 3000 - 64; x += 11) {
        const o = (y * 3128 + x) * 4;
        const i = (y * 3000 + x) * 4;
        expect([...after.data.subarray(o, o + 4)]).toEqual([...before.data.subarray(i, i + 4)]);
      }
    }
  });

  it("writes text-to-image results at the document's exact size, and img2img from the active layer", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = catDocument(ps);
    const generated = await runOperation(deps, { ...base, mode: "generate", variations: 1 });
    expect(generated.status).toBe("completed");
    // Text to image reads nothing.
    expect(ps.reads).toEqual([]);
    const [group] = doc.tree();
    expect(group!.children![0]!.bounds).toEqual({ left: 0, top: 0, right: doc.width, bottom: doc.height });
    expect(group!.children![0]!.hasMask).toBe(false);

    doc.setActive([doc.tree()[1]!.id]);
    const repainted = await runOperation(deps, { ...base, mode: "img2img", source: "layer", strength: 0.6 });
    expect(repainted.status).toBe("completed");
    // The small photo is read whole and at full resolution: it is under twice the model's size per side.
    expect(ps.reads.map((r) => [r.api, r.targetSize, readRegion(r)])).toEqual([["getPixels", undefined, regionOf(doc)]]);
    expect(doc.tree()[0]!.children![0]!.bounds).toEqual({ left: 0, top: 0, right: doc.width, bottom: doc.height });
    expect(doc.tree().filter((l) => l.kind === "group")).toHaveLength(2);
    expect(doc.history.filter((h) => h.startsWith("Underpaint"))).toEqual(["Underpaint Generate", "Underpaint Img2img"]);
    expect(ps.violations).toEqual([]);
  });

  it("repaints a large document from a read scaled down to what the model can use, and places it at the document's exact size", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = bigDocument(ps, 2400, 1600);
    const canvas = { width: 2400, height: 1600 };
    const size = readSize(canvas, wholePictureSize(canvas, native()));
    const outcome = await runOperation(deps, { ...base, mode: "img2img", strength: 0.5 });
    expect(outcome.status).toBe("completed");
    expect(ps.violations).toEqual([]);
    expect(size.width).toBeLessThan(canvas.width);
    expect(ps.reads.map((r) => [r.api, r.targetSize, readRegion(r)])).toEqual([["getPixels", size, regionOf(canvas)]]);
    expect(ps.reads[0]!.samples).toBe(size.width * size.height * 3);
    expect(ps.reads[0]!.samples).toBeLessThan(0.3 * canvas.width * canvas.height * 3);
    const layer = doc.tree()[0]!.children![0]!;
    expect(layer.bounds).toEqual({ left: 0, top: 0, right: 2400, bottom: 1600 });
    expect(layer.hasMask).toBe(false);
  });

  it("leaves the document exactly as it was when the job is cancelled mid-way", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = catDocument(ps);
    const before = { history: [...doc.history], tree: doc.tree(), pixels: doc.composite8() };
    let cancelled = false;
    let stepped = false;
    const outcome = await runOperation(
      deps,
      { ...base, mode: "img2img", steps: 150, strength: 1 },
      {
        onJob: (handle) => {
          // Cancel once the daemon is stepping.
          const wait = setInterval(() => {
            if (stepped) {
              clearInterval(wait);
              cancelled = true;
              handle.cancel();
            }
          }, 5);
        },
        onProgress: (_fraction, label) => {
          if (/step \d+ of/.test(label)) stepped = true;
        },
      },
    );
    expect(cancelled).toBe(true);
    expect(outcome.status).toBe("cancelled");
    expect(doc.history).toEqual(before.history);
    expect(doc.tree()).toEqual(before.tree);
    expect(Buffer.from(doc.composite8().data).equals(Buffer.from(before.pixels.data))).toBe(true);
    expect(ps.modalCommands.every((c) => c.startsWith("Underpaint: reading"))).toBe(true);
  });

  it("refuses a CMYK document with a sentence that says how to convert it, and sends nothing", async () => {
    const { ps, deps } = setup();
    const doc = ps.openDocument({ title: "print.psd", width: 64, height: 64, mode: "CMYKColorMode", layers: [{ name: "Background", background: true }] });
    const error = await runOperation(deps, { ...base, mode: "img2img" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PanelError);
    expect((error as PanelError).message).toBe(
      "This document is in CMYK mode, and Underpaint works on RGB and Grayscale documents only. Convert it with Image > Mode > RGB Color (or work on a copy), then try again.",
    );
    expect(doc.history).toEqual([]);
    expect(ps.modalCommands).toEqual([]);
  });

  it("asks for a selection before inpainting", async () => {
    const { ps, deps } = setup();
    catDocument(ps);
    await expect(runOperation(deps, { ...base, mode: "inpaint" })).rejects.toThrow(/Select the area to repaint first/);
  });
});

describe("when the artist brings another document to the front while a job runs", () => {
  /** A small sketch over a background, its sketch layer active: where a write that does not name its document would go. */
  function otherDocument(ps: FakePhotoshop): FakeDocument {
    const sketch = { width: 40, height: 30, data: new Uint8Array(40 * 30 * 4).fill(90) };
    const background = { width: 320, height: 240, data: new Uint8Array(320 * 240 * 4).fill(255) };
    const doc = ps.openDocument({ title: "other.psd", width: 320, height: 240, layers: [{ name: "Sketch", pixels: sketch, left: 20, top: 20 }, { name: "Background", background: true, pixels: background }] });
    doc.setSelection(ellipseSelection(320, 240, 100, 100, 50, 40));
    return doc;
  }

  const modes: Array<[OperationMode, Partial<GenerationSettings>]> = [
    ["generate", {}],
    ["img2img", { strength: 0.6 }],
    ["inpaint", { strength: 1 }],
    ["expand", { prompt: "a wooden floor", expand: { left: 64, top: 0, right: 0, bottom: 0 } }],
  ];

  it.each(modes)("%s: the results land in the document the job started on, and the one in front is untouched", SLOW, async (mode, extra) => {
    const { ps, deps } = setup();
    const other = otherDocument(ps);
    const doc = catDocument(ps);
    if (mode === "inpaint") doc.setSelection(ellipseSelection(doc.width, doc.height, 230, 110, 70, 50));
    const untouched = other.snapshot();
    const started = { width: doc.width, history: doc.history.length };

    const outcome = await runOperation(deps, { ...base, ...extra, mode }, { onJob: () => ps.activate(other) });

    expect(outcome.status).toBe("completed");
    if (outcome.status !== "completed") return;
    expect(ps.app.activeDocument).toBe(other);
    expect(outcome.documentId).toBe(doc.id);
    expect(other.snapshot()).toEqual(untouched);
    expect(doc.history.slice(started.history)).toEqual([historyName(mode)]);
    const [group] = doc.tree();
    expect(group!.id).toBe(outcome.groupId);
    expect(group!.children!.map((l) => [l.id, l.hasMask])).toEqual(outcome.variations.map((v) => [v.layerId, mode === "inpaint" || mode === "expand"]));
    expect(doc.width).toBe(started.width + (mode === "expand" ? 64 : 0));
    expect(ps.violations).toEqual([]);
  });
});

describe("when the daemon is down", () => {
  it("says so in plain words, and reconnects by itself when the daemon comes back", SLOW, async () => {
    const down = await startTestDaemon();
    const port = down.server.port;
    await down.server.close();
    const flaky = new ProtocolClient({ url: `ws://127.0.0.1:${port}`, socketFactory: wsFactory, token: TOKEN, backoff: { initialMs: 100, maxMs: 300 } });
    const states: string[] = [];
    flaky.onStatus((s) => states.push(s.state));
    try {
      flaky.start();
      await waitFor(() => flaky.status.state === "retrying");
      expect(flaky.status.message).toMatch(new RegExp(`^Cannot reach the Underpaint daemon at ws://127\\.0\\.0\\.1:${port}\\. Start it with \`npx underpaint serve\``));
      expect(flaky.status.message).toMatch(/Trying again in \d+ s\.$/);

      const ps = new FakePhotoshop();
      const doc = catDocument(ps);
      const error = await runOperation({ host: createPhotoshopHost(ps), client: flaky }, { ...base, mode: "generate" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PanelError);
      expect((error as Error).message).toMatch(/^Cannot reach the Underpaint daemon/);
      expect(doc.history).toEqual([]);

      await down.restart();
      await flaky.whenReady(10_000);
      expect(flaky.status.state).toBe("ready");
      expect(flaky.status.message).toMatch(/^Connected to the Underpaint daemon/);
      const outcome = await runOperation({ host: createPhotoshopHost(ps), client: flaky }, { ...base, mode: "generate" });
      expect(outcome.status).toBe("completed");
      expect(states).toContain("retrying");
    } finally {
      flaky.stop();
      await down.close();
    }
  });
});

/** The old pixels an expand must read: the part of the old canvas inside the context, in the document as it is before growing. */
function expectedExpandRead(canvas: Size, grow: Expansion): Region {
  const seen = intersect(outpaintContext(canvas, grow)!, oldCanvasIn(canvas, grow))!;
  return translate(seen, -grow.left, -grow.top);
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
