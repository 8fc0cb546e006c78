/**
 * The Photoshop adapter (uxp-host.ts) on the in-memory Photoshop, and that in-memory Photoshop
 * keeping UXP's rules: writes only in a modal scope, trimmed reads, pixel layers only, history
 * states counted, canvas growth moving layers by the anchor.
 */
import { describe, expect, it } from "vitest";
import { PanelError } from "../../plugin/src/errors";
import type { NewLayer } from "../../plugin/src/photoshop/host";
import { createPhotoshopHost } from "../../plugin/src/photoshop/uxp-host";
import { FakePhotoshop, type FakeDepth, type FakeMode } from "./fake-photoshop";

function solid(width: number, height: number, rgba: [number, number, number, number]) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) data.set(rgba, i * 4);
  return { width, height, data };
}

function gradient(width: number, height: number) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) data.set([(i * 7) % 256, (i * 13) % 256, (i * 29) % 256, 255], i * 4);
  return { width, height, data };
}

function photo(options: { mode?: FakeMode; depth?: FakeDepth; width?: number; height?: number } = {}) {
  const ps = new FakePhotoshop();
  const width = options.width ?? 40;
  const height = options.height ?? 30;
  const doc = ps.openDocument({
    width,
    height,
    mode: options.mode ?? "RGBColorMode",
    depth: options.depth ?? 8,
    layers: [
      { name: "Sticker", pixels: solid(10, 5, [255, 0, 0, 255]), left: 20, top: 10 },
      { name: "Background", background: true, pixels: gradient(width, height) },
    ],
  });
  return { ps, doc, host: createPhotoshopHost(ps) };
}

const whole = (doc: { width: number; height: number }) => ({ x: 0, y: 0, width: doc.width, height: doc.height });

describe("the in-memory Photoshop keeps UXP's rules", () => {
  it("changes documents only inside executeAsModal, one modal scope at a time", async () => {
    const { ps, doc } = photo();
    await expect(doc.createPixelLayer({ name: "x" })).rejects.toThrow(/only be changed inside executeAsModal/);
    expect(ps.violations).toEqual(["createPixelLayer outside executeAsModal"]);
    await ps.core.executeAsModal(async () => {
      await expect(ps.core.executeAsModal(async () => undefined, { commandName: "inner" })).rejects.toThrow("host is in a modal state");
    }, { commandName: "outer" });
  });

  it("trims reads to where pixels exist, refuses empty areas, and writes into pixel layers only", async () => {
    const { ps, doc } = photo();
    const sticker = doc.layers[0]!;
    const read = await ps.imaging.getPixels({ layerID: sticker.id, sourceBounds: { left: 0, top: 0, right: 40, bottom: 30 } });
    expect(read.sourceBounds).toEqual({ left: 20, top: 10, right: 30, bottom: 15 });
    expect([read.imageData.width, read.imageData.height, read.imageData.components]).toEqual([10, 5, 4]);
    await expect(ps.imaging.getPixels({ layerID: sticker.id, sourceBounds: { left: 0, top: 0, right: 5, bottom: 5 } })).rejects.toThrow(/no pixels/);
    await ps.core.executeAsModal(async () => {
      const group = await doc.createLayerGroup({ name: "g" });
      const data = await ps.imaging.createImageDataFromBuffer(new Uint8Array(4), { width: 1, height: 1, components: 4, colorSpace: "RGB" });
      await expect(ps.imaging.putPixels({ layerID: group.id, imageData: data })).rejects.toThrow(/pixel layer/);
      const layer = await doc.createPixelLayer();
      const deep = await ps.imaging.createImageDataFromBuffer(new Uint16Array(4), { width: 1, height: 1, components: 4, colorSpace: "RGB" });
      await expect(ps.imaging.putPixels({ layerID: layer.id, imageData: deep })).rejects.toThrow(/16 bits does not fit a 8-bit document/);
    }, { commandName: "t" });
    expect(doc.history).toEqual(["Group Layers", "New Layer"]);
  });

  it("moves every layer and the selection by the anchor when the canvas grows", async () => {
    const { ps, doc } = photo();
    doc.setSelection(Uint8Array.from({ length: 40 * 30 }, (_, i) => (i === 0 ? 255 : 0)));
    await ps.core.executeAsModal(() => doc.resizeCanvas(50, 40, ps.constants.AnchorPosition.BOTTOMRIGHT), { commandName: "t" });
    expect(doc.tree().map((l) => l.bounds)).toEqual([
      { left: 30, top: 20, right: 40, bottom: 25 },
      { left: 0, top: 0, right: 50, bottom: 40 },
    ]);
    expect(doc.selection.bounds).toEqual({ left: 10, top: 10, right: 11, bottom: 11 });
    // The background grew with white; the old pixels moved with it.
    const composite = doc.composite8();
    expect([...composite.data.subarray(0, 4)]).toEqual([255, 255, 255, 255]);
    const at = (10 * 50 + 10) * 4;
    expect([...composite.data.subarray(at, at + 4)]).toEqual([...gradient(40, 30).data.subarray(0, 4)]);
  });
});

describe("the Photoshop adapter", () => {
  it("describes the document in front", async () => {
    const { host, doc } = photo({ depth: 16, mode: "grayscaleMode" });
    doc.setSelection(Uint8Array.from({ length: 40 * 30 }, (_, i) => (i % 40 >= 5 && i % 40 < 8 && i < 40 * 4 ? 200 : 0)));
    expect(await host.activeDocument()).toMatchObject({
      width: 40,
      height: 30,
      mode: "grayscale",
      bitsPerChannel: 16,
      selection: { x: 5, y: 0, width: 3, height: 4 },
      activeLayer: { name: "Sticker", kind: "pixel" },
    });
    expect(await createPhotoshopHost(new FakePhotoshop()).activeDocument()).toBeNull();
  });

  it("pads a layer's trimmed pixels back to the rectangle asked for, and reads nothing where it has none", async () => {
    const { host, doc } = photo();
    const sticker = doc.layers[0]!;
    const pixels = await host.readPixels(doc.id, { kind: "layer", layerId: sticker.id }, { x: 15, y: 5, width: 20, height: 20 });
    expect([pixels.width, pixels.height]).toEqual([20, 20]);
    const px = (x: number, y: number) => [...pixels.data.subarray((y * 20 + x) * 4, (y * 20 + x) * 4 + 4)];
    expect(px(0, 0)).toEqual([0, 0, 0, 0]);
    expect(px(5, 5)).toEqual([255, 0, 0, 255]);
    expect(px(14, 9)).toEqual([255, 0, 0, 255]);
    expect(px(15, 10)).toEqual([0, 0, 0, 0]);
    const empty = await host.readPixels(doc.id, { kind: "layer", layerId: sticker.id }, { x: 0, y: 0, width: 5, height: 5 });
    expect(empty.data.every((v) => v === 0)).toBe(true);
  });

  it("reads the merged image of 16- and 32-bit documents as the same 8-bit sRGB as an 8-bit one", async () => {
    const eight = photo();
    const reference = await eight.host.readPixels(eight.doc.id, { kind: "composite" }, whole(eight.doc));
    for (const depth of [16, 32] as const) {
      const { host, doc } = photo({ depth });
      const pixels = await host.readPixels(doc.id, { kind: "composite" }, whole(doc));
      let worst = 0;
      for (let i = 0; i < pixels.data.length; i++) worst = Math.max(worst, Math.abs(pixels.data[i]! - reference.data[i]!));
      expect(worst, `${depth}-bit`).toBeLessThanOrEqual(1);
    }
  });

  it("reads the selection as a soft mask over the rectangle asked for, or null without one", async () => {
    const { host, doc } = photo();
    expect(await host.readSelection(doc.id, whole(doc))).toBeNull();
    const mask = new Uint8Array(40 * 30);
    mask[3 * 40 + 4] = 255;
    mask[3 * 40 + 5] = 128;
    doc.setSelection(mask);
    const read = await host.readSelection(doc.id, whole(doc));
    expect(read!.data[3 * 40 + 4]).toBe(255);
    expect(read!.data[3 * 40 + 5]).toBe(128);
    expect(read!.data.reduce((n, v) => n + (v > 0 ? 1 : 0), 0)).toBe(2);
  });

  const layers = (count: number): NewLayer[] =>
    Array.from({ length: count }, (_, i) => ({
      name: `v${i}`,
      x: 2 + i,
      y: 3,
      pixels: solid(6, 4, [10 * i, 100, 200, 255]),
      mask: { width: 6, height: 4, data: new Uint8Array(24).fill(i === 0 ? 255 : 64) },
      visible: i === 0,
    }));

  it("adds a group of masked layers above the active layer in one history state, at any depth and in Grayscale", async () => {
    for (const [mode, depth] of [["RGBColorMode", 8], ["RGBColorMode", 16], ["RGBColorMode", 32], ["grayscaleMode", 8]] as const) {
      const { ps, host, doc } = photo({ mode, depth });
      doc.setActive([doc.layers[1]!.id]);
      const written = await host.applyEdit(doc.id, { historyName: "Underpaint Test", groupName: "results", layers: layers(3) });
      expect(ps.violations).toEqual([]);
      expect(doc.history).toEqual(["Underpaint Test"]);
      const [sticker, group, background] = doc.tree();
      expect([sticker!.name, group!.name, background!.name]).toEqual(["Sticker", "results", "Background"]);
      expect(group!.id).toBe(written.groupId);
      expect(group!.children!.map((l) => [l.id, l.name, l.visible, l.hasMask])).toEqual([
        [written.layerIds[0], "v0", true, true],
        [written.layerIds[1], "v1", false, true],
        [written.layerIds[2], "v2", false, true],
      ]);
      expect(group!.children![1]!.bounds).toEqual({ left: 3, top: 3, right: 9, bottom: 7 });
      const read = await host.readPixels(doc.id, { kind: "layer", layerId: written.layerIds[0]! }, { x: 2, y: 3, width: 6, height: 4 });
      const expected = mode === "grayscaleMode" ? [Math.round(0.7152 * 100 + 0.0722 * 200), Math.round(0.7152 * 100 + 0.0722 * 200)] : [0, 100];
      expect([...read.data.subarray(0, 2)], `${mode} ${depth}`).toEqual(expected);
      expect(doc.layerMask(written.layerIds[1]!)!.data[0]).toBe(64);
    }
  });

  it("grows the canvas first, in the same history state", async () => {
    const { host, doc } = photo();
    await host.applyEdit(doc.id, { historyName: "Underpaint Expand", grow: { left: 8, top: 0, right: 4, bottom: 2 }, groupName: "g", layers: layers(1) });
    expect([doc.width, doc.height]).toEqual([52, 32]);
    expect(doc.history).toEqual(["Underpaint Expand"]);
    expect(doc.tree().at(-1)!.bounds).toEqual({ left: 0, top: 0, right: 52, bottom: 32 });
    expect(doc.tree()[1]!.bounds).toEqual({ left: 28, top: 10, right: 38, bottom: 15 });
  });

  it("rolls the document back when anything fails or the artist presses Esc", async () => {
    const { ps, host, doc } = photo();
    const before = { tree: doc.tree(), pixels: doc.composite8(), width: doc.width };
    ps.injectFault("putPixels", 2);
    await expect(host.applyEdit(doc.id, { historyName: "x", grow: { left: 10, top: 0, right: 0, bottom: 0 }, groupName: "g", layers: layers(3) })).rejects.toThrow(/scratch disk full/);
    expect(doc.tree()).toEqual(before.tree);
    expect(doc.width).toBe(before.width);
    expect(doc.history).toEqual([]);

    ps.cancelNextModal = true;
    const error = await host.applyEdit(doc.id, { historyName: "x", groupName: "g", layers: layers(2) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PanelError);
    expect((error as Error).message).toBe("Placing the results was cancelled; the document is as it was.");
    expect(doc.tree()).toEqual(before.tree);
    expect(Buffer.from(doc.composite8().data).equals(Buffer.from(before.pixels.data))).toBe(true);
    expect(doc.history).toEqual([]);
    expect(ps.violations).toEqual([]);
  });

  it("says Photoshop is busy when another modal operation is running", async () => {
    const { ps, host, doc } = photo();
    let release!: () => void;
    const held = ps.core.executeAsModal(() => new Promise<void>((resolve) => (release = resolve)), { commandName: "Free Transform" });
    const error = await host.readPixels(doc.id, { kind: "composite" }, whole(doc)).catch((e: unknown) => e);
    release();
    await held;
    expect((error as Error).message).toBe("Photoshop is busy with another task (a dialog, a tool or an action): finish it and try again.");
  });

  it("shows one variation of a group and hides the others, as one history state", async () => {
    const { host, doc } = photo();
    const written = await host.applyEdit(doc.id, { historyName: "gen", groupName: "g", layers: layers(3) });
    await host.showOnly(doc.id, written.groupId, written.layerIds[2]!);
    expect(doc.tree()[0]!.children!.map((l) => l.visible)).toEqual([false, false, true]);
    expect(doc.history).toEqual(["gen", "Underpaint: choose a variation"]);
  });

  it("encodes thumbnails as data URLs the panel's <img> can show", async () => {
    const { host } = photo();
    const url = await host.encodeThumbnail({ width: 2, height: 2, channels: 4, data: new Uint8Array(16).fill(200) });
    expect(url).toMatch(/^data:image\/jpeg;base64,[A-Za-z0-9+/]+=*$/);
  });
});
