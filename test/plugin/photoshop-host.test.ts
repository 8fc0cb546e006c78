/**
 * The Photoshop adapter (uxp-host.ts) on the in-memory Photoshop, and that in-memory Photoshop
 * keeping UXP's rules: writes only in a modal scope, trimmed reads, pixel layers only, history
 * states counted, canvas growth moving layers by the anchor.
 */
import { describe, expect, it } from "vitest";
import { readSize, regionOf, wholePictureSize } from "../../geometry";
import { PanelError } from "../../plugin/src/errors";
import { resizeRgba } from "../../plugin/src/operations/layer-pixels";
import type { Mask8, NewLayer, Rgba8 } from "../../plugin/src/photoshop/host";
import { conversionMemory, levelToDocument, PS16_MAX, resizeMask, scaledPlacement } from "../../plugin/src/photoshop/pixels";
import { createPhotoshopHost, WRITE_BAND_BYTES } from "../../plugin/src/photoshop/uxp-host";
import { addToDigest, emptyDigest, FakePhotoshop, type FakeDepth, type FakeMode } from "./fake-photoshop";

function solid(width: number, height: number, rgba: [number, number, number, number]) {
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) data.set(rgba, i * 4);
  return { width, height, channels: 4 as const, data };
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
    expect(doc.history).toEqual(["New Group", "New Layer"]);
  });

  it("scales reads down with targetSize: the trimmed area at targetSize / sourceBounds, area-averaged", async () => {
    const { ps, doc } = photo();
    const sticker = doc.layers[0]!;
    // One side given: the same scale for both (the aspect ratio kept), here 1/2.
    const half = await ps.imaging.getPixels({ layerID: sticker.id, sourceBounds: { left: 0, top: 0, right: 40, bottom: 30 }, targetSize: { height: 15 } });
    expect(half.sourceBounds).toEqual({ left: 20, top: 10, right: 30, bottom: 15 });
    expect(half.level).toBe(0);
    expect([half.imageData.width, half.imageData.height]).toEqual([5, 3]);
    const red = await half.imageData.getData({ chunky: true });
    expect(Array.from({ length: 15 }, (_, i) => [...red.subarray(i * 4, i * 4 + 4)])).toEqual(Array(15).fill([255, 0, 0, 255]));
    // The background's gradient: each pixel the mean of the 2x2 it covers.
    const background = doc.layers[1]!;
    const shrunk = await ps.imaging.getPixels({ layerID: background.id, sourceBounds: { left: 0, top: 0, right: 40, bottom: 30 }, targetSize: { width: 20, height: 15 } });
    expect([shrunk.imageData.width, shrunk.imageData.height, shrunk.imageData.components]).toEqual([20, 15, 3]);
    const source = gradient(40, 30).data;
    const mean = [0, 1, 40, 41].reduce((n, i) => n + source[i * 4]!, 0) / 4;
    expect((await shrunk.imageData.getData({ chunky: true }))[0]).toBe(Math.round(mean));
    doc.setSelection(Uint8Array.from({ length: 40 * 30 }, (_, i) => (i % 40 < 2 && i < 40 * 2 ? 255 : 0)));
    const selection = await ps.imaging.getSelection({ sourceBounds: { left: 0, top: 0, right: 40, bottom: 30 }, targetSize: { width: 10 } });
    expect(selection.sourceBounds).toEqual({ left: 0, top: 0, right: 2, bottom: 2 });
    expect([selection.imageData.width, selection.imageData.height]).toEqual([1, 1]);
    expect([...(await selection.imageData.getData({ chunky: true }))]).toEqual([255]);
    expect(ps.reads.map((r) => [r.api, r.samples])).toEqual([["getPixels", 60], ["getPixels", 900], ["getSelection", 1]]);
    await expect(ps.imaging.getPixels({ sourceBounds: { left: 0, top: 0, right: 40, bottom: 30 }, targetSize: { width: 80 } })).rejects.toThrow(/enlarging/);
  });

  it("plays batchPlay commands on what they name by id, on the front document where they name none, and answers failures with an error descriptor", async () => {
    const { ps, doc: behind } = photo();
    const front = ps.openDocument({ title: "front.psd", width: 20, height: 20, layers: [{ name: "Sketch", pixels: solid(4, 4, [0, 0, 0, 255]) }, { name: "Background", background: true, pixels: gradient(20, 20) }] });
    const mask = { _ref: "channel", _enum: "channel", _value: "mask" };
    const revealAll = { _enum: "userMaskEnabled", _value: "revealAll" };
    const sticker = behind.layers[0]!.id;
    const results = await ps.core.executeAsModal(
      () =>
        ps.action.batchPlay([
          // No layer or document named: the front document's active layer.
          { _obj: "make", new: { _class: "channel" }, at: mask, using: revealAll },
          { _obj: "make", new: { _class: "channel" }, at: [mask, { _ref: "layer", _id: sticker }, { _ref: "document", _id: behind.id }], using: revealAll },
          { _obj: "make", new: { _class: "channel" }, at: [mask, { _ref: "layer", _id: 999 }, { _ref: "document", _id: behind.id }], using: revealAll },
          // Not played: batchPlay stops at the first failure.
          { _obj: "make", new: { _class: "channel" }, at: [mask, { _ref: "layer", _id: behind.layers[1]!.id }, { _ref: "document", _id: behind.id }], using: revealAll },
        ]),
      { commandName: "t" },
    );
    expect(results).toEqual([{ _obj: "make" }, { _obj: "make" }, { _obj: "error", message: 'The document "Untitled-1" has no layer with id 999.', result: -25920 }]);
    expect(front.tree().map((l) => [l.name, l.hasMask])).toEqual([["Sketch", true], ["Background", false]]);
    expect(behind.tree().map((l) => [l.name, l.hasMask])).toEqual([["Sticker", true], ["Background", false]]);
    expect([front.history, behind.history]).toEqual([["Add Layer Mask"], ["Add Layer Mask"]]);
  });

  it("lets Document methods change only the document in front, and batchPlay's make and canvasSize the document they name", async () => {
    const { ps, doc: behind } = photo();
    const front = ps.openDocument({ title: "front.psd", width: 20, height: 20, layers: [{ name: "Background", background: true, pixels: gradient(20, 20) }] });
    const pixels = (value: number) => ({ _unit: "pixelsUnit", _value: value });
    await ps.core.executeAsModal(async () => {
      await behind.createPixelLayer({ name: "misdirected" });
      const results = await ps.action.batchPlay([
        { _obj: "make", _target: [{ _ref: "layer" }, { _ref: "document", _id: behind.id }], using: { _obj: "layer", name: "named" } },
        { _obj: "canvasSize", _target: [{ _ref: "document", _id: behind.id }], width: pixels(50), height: pixels(30), horizontal: { _enum: "horizontalLocation", _value: "left" }, vertical: { _enum: "verticalLocation", _value: "top" } },
      ]);
      expect(results).toEqual([{ _obj: "make" }, { _obj: "canvasSize" }]);
    }, { commandName: "t" });
    expect(front.tree().map((l) => l.name)).toEqual(["misdirected", "Background"]);
    expect(ps.violations).toEqual(['createPixelLayer of "Untitled-1" changed "front.psd", the document in front']);
    expect(behind.tree().map((l) => l.name)).toEqual(["named", "Sticker", "Background"]);
    expect(behind.activeLayers.map((l) => l.name)).toEqual(["named"]);
    expect([behind.width, behind.height, front.width]).toEqual([50, 30, 20]);
    expect(behind.history).toEqual(["New Layer", "Canvas Size"]);
  });

  it("moves every layer and the selection by the anchor when the canvas grows", async () => {
    const { ps, doc } = photo();
    doc.setSelection(Uint8Array.from({ length: 40 * 30 }, (_, i) => (i === 0 ? 255 : 0)));
    const canvasSize = { _obj: "canvasSize", _target: { _ref: "document", _id: doc.id }, width: { _unit: "pixelsUnit", _value: 50 }, height: { _unit: "pixelsUnit", _value: 40 } };
    const anchor = { horizontal: { _enum: "horizontalLocation", _value: "right" }, vertical: { _enum: "verticalLocation", _value: "bottom" } };
    await ps.core.executeAsModal(() => ps.action.batchPlay([{ ...canvasSize, ...anchor }]), { commandName: "t" });
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

  it("refuses to read at a size bigger than the region, and reads the region's own size unscaled", async () => {
    const { ps, host, doc } = photo();
    doc.setSelection(new Uint8Array(40 * 30).fill(255));
    const region = { x: 5, y: 5, width: 30, height: 20 };
    await expect(host.readPixels(doc.id, { kind: "composite" }, region, { width: 31, height: 10 })).rejects.toThrow("Reads only scale down: 31x10 is bigger than the 30x20 region read.");
    await expect(host.readSelection(doc.id, region, { width: 10, height: 21 })).rejects.toThrow("Reads only scale down: 10x21 is bigger than the 30x20 region read.");
    await expect(host.readPixels(doc.id, { kind: "composite" }, region, { width: 0, height: 10 })).rejects.toThrow(/whole pixels, at least 1x1/);
    await expect(host.readPixels(doc.id, { kind: "composite" }, region, { width: 2.5, height: 10 })).rejects.toThrow(/whole pixels/);
    expect(ps.reads).toEqual([]);
    const same = await host.readPixels(doc.id, { kind: "composite" }, region, { width: 30, height: 20 });
    expect(ps.reads.at(-1)!.targetSize).toBeUndefined();
    expect(Buffer.from(same.data).equals(Buffer.from((await host.readPixels(doc.id, { kind: "composite" }, region)).data))).toBe(true);
  });

  it("places scaled reads by rounding each edge, and reads pyramid-level bounds as document pixels", () => {
    const region = { x: 100, y: 50, width: 1000, height: 500 };
    expect(scaledPlacement({ left: 100, top: 50, right: 1100, bottom: 550 }, region, { width: 300, height: 7 })).toEqual({ left: 0, top: 0, width: 300, height: 7 });
    expect(scaledPlacement({ left: 433, top: 50, right: 767, bottom: 300 }, region, { width: 300, height: 100 })).toEqual({ left: 100, top: 0, width: 100, height: 50 });
    // A sliver keeps one pixel.
    expect(scaledPlacement({ left: 1099, top: 549, right: 1100, bottom: 550 }, region, { width: 10, height: 5 })).toEqual({ left: 9, top: 4, width: 1, height: 1 });
    expect(levelToDocument({ left: 10, top: 5, right: 60, bottom: 40 }, 2)).toEqual({ left: 40, top: 20, right: 240, bottom: 160 });
    expect(levelToDocument({ left: 10, top: 5, right: 60, bottom: 40 }, 0)).toEqual({ left: 10, top: 5, right: 60, bottom: 40 });
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
      mask: { width: 6, height: 4, channels: 1, data: new Uint8Array(24).fill(i === 0 ? 255 : 64) },
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

  it("puts the new group at the top level, above the earlier (hidden) group the active layer sits in", async () => {
    const { ps, host, doc } = photo();
    doc.setActive([doc.layers[1]!.id]);
    const first = await host.applyEdit(doc.id, { historyName: "one", groupName: "first", layers: layers(2) });
    const inner = await host.applyEdit(doc.id, { historyName: "two", groupName: "inner", layers: layers(1) });
    // The artist tucks "inner" into "first", hides "first" and picks a variation deep inside it.
    await ps.core.executeAsModal(async () => {
      const group = (id: number) => doc.layers.find((l) => l.id === id)!;
      group(inner.groupId).move(group(first.groupId).layers![0]!, ps.constants.ElementPlacement.PLACEBEFORE);
      group(first.groupId).visible = false;
    }, { commandName: "t" });
    doc.setActive([inner.layerIds[0]!]);
    const third = await host.applyEdit(doc.id, { historyName: "three", groupName: "third", layers: layers(2) });
    const outline = (l: { name: string; visible: boolean; children?: Array<{ name: string; visible: boolean; children?: unknown[] }> }): unknown => [l.name, l.visible, ...(l.children ?? []).map((c) => outline(c as never))];
    expect(doc.tree().map(outline)).toEqual([
      ["Sticker", true],
      ["third", true, ["v0", true], ["v1", false]],
      ["first", false, ["inner", true, ["v0", true]], ["v0", true], ["v1", false]],
      ["Background", true],
    ]);
    expect(doc.tree().map((l) => l.id).slice(1, 3)).toEqual([third.groupId, first.groupId]);
    expect(ps.violations).toEqual([]);
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

  it("writes into the document it names while another document is in front, and leaves that one alone", async () => {
    const { ps, host, doc } = photo();
    const other = ps.openDocument({ title: "other.psd", width: 20, height: 20, layers: [{ name: "Sketch", pixels: solid(4, 4, [0, 0, 0, 255]) }, { name: "Background", background: true, pixels: gradient(20, 20) }] });
    const before = other.snapshot();
    expect(ps.app.activeDocument).toBe(other);
    const written = await host.applyEdit(doc.id, { historyName: "Underpaint Inpaint selection", groupName: "g", layers: layers(2) });
    expect(doc.history).toEqual(["Underpaint Inpaint selection"]);
    expect(doc.tree()[0]!.children!.map((l) => [l.id, l.hasMask])).toEqual(written.layerIds.map((id) => [id, true]));
    expect(other.snapshot()).toEqual(before);
    expect(ps.violations).toEqual([]);
  });

  it("turns a command Photoshop answers with an error into a sentence, and rolls the document back", async () => {
    const { ps, host, doc } = photo();
    const before = doc.snapshot();
    // Commands: the group, then per layer (bottom first) "make layer" and "add a layer mask": the second layer's mask fails.
    ps.injectFault("batchPlay", 5);
    const error = await host.applyEdit(doc.id, { historyName: "x", groupName: "g", layers: layers(3) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PanelError);
    expect((error as Error).message).toBe("Photoshop could not add the layer mask: Photoshop could not complete the command (scratch disk full) (error -25920); the document is as it was.");
    expect(doc.snapshot()).toEqual(before);
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

describe("reading a big document scaled down", () => {
  // 3000x2000 with one painted layer that covers only part of the region read: Photoshop trims.
  const canvas = { width: 3000, height: 2000 };
  const paint = { left: 700, top: 500, width: 2000, height: 1400 };
  const region = { x: 400, y: 300, width: 2400, height: 1600 };
  const trimmed = { left: 700, top: 500, right: 2700, bottom: 1900 };
  // Where the painting lands at each size (each edge scaled by size/region and rounded), and the
  // size the fake Photoshop answers with (the trimmed area scaled and rounded as a whole): at
  // 333x222 that is a pixel wider than its place, so the host resamples it.
  const sizes = [
    { size: { width: 240, height: 160 }, place: { left: 30, top: 20, right: 230, bottom: 160 }, handed: [200, 140] },
    { size: { width: 333, height: 222 }, place: { left: 42, top: 28, right: 319, bottom: 222 }, handed: [278, 194] },
  ];

  function painting() {
    const { width, height } = paint;
    const data = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 4;
        data[o] = Math.round(40 + (170 * x) / width);
        data[o + 1] = Math.round(40 + (170 * y) / height);
        data[o + 2] = Math.round(128 + 60 * Math.sin((2 * Math.PI * x) / 400) * Math.cos((2 * Math.PI * y) / 300));
        data[o + 3] = 255;
      }
    }
    return { width, height, data };
  }

  let made: { ps: FakePhotoshop; doc: ReturnType<FakePhotoshop["openDocument"]>; host: ReturnType<typeof createPhotoshopHost> } | undefined;
  function big() {
    if (made) return made;
    const ps = new FakePhotoshop();
    const doc = ps.openDocument({ ...canvas, layers: [{ name: "Painting", pixels: painting(), left: paint.left, top: paint.top }] });
    made = { ps, doc, host: createPhotoshopHost(ps) };
    return made;
  }

  const inside = (place: { left: number; top: number; right: number; bottom: number }, x: number, y: number, margin = 0) =>
    x >= place.left + margin && x < place.right - margin && y >= place.top + margin && y < place.bottom - margin;

  it("gives exactly the size asked for, like a full read downscaled, transparent where the document has no pixels", async () => {
    const { ps, doc, host } = big();
    const full = await host.readPixels(doc.id, { kind: "composite" }, region);
    expect(ps.reads.at(-1)).toMatchObject({ api: "getPixels", targetSize: undefined, sourceBounds: trimmed, samples: 2000 * 1400 * 4 });
    for (const { size, place, handed } of sizes) {
      const small = await host.readPixels(doc.id, { kind: "composite" }, region, size);
      expect([small.width, small.height]).toEqual([size.width, size.height]);
      // Photoshop did the scaling: it was asked for targetSize and handed over only the small image.
      const read = ps.reads.at(-1)!;
      expect(read).toMatchObject({ api: "getPixels", targetSize: size, sourceBounds: trimmed });
      expect([read.width, read.height]).toEqual(handed);
      expect(read.samples).toBe(handed[0]! * handed[1]! * 4);
      expect(read.samples).toBeLessThan((2000 * 1400 * 4) / 50);

      const reference = resizeRgba(full, size.width, size.height);
      const wrong: string[] = [];
      let worst = 0;
      let total = 0;
      let compared = 0;
      for (let y = 0; y < size.height; y++) {
        for (let x = 0; x < size.width; x++) {
          const o = (y * size.width + x) * 4;
          const px = small.data.subarray(o, o + 4);
          if (!inside(place, x, y)) {
            if (px.some((v) => v !== 0)) wrong.push(`padding at ${x},${y} is ${[...px]}`);
            continue;
          }
          if (px[3] !== 255) wrong.push(`alpha at ${x},${y} is ${px[3]}`);
          // Edge pixels blend with the transparent padding differently in the two filters.
          if (!inside(place, x, y, 2)) continue;
          for (let k = 0; k < 3; k++) {
            const d = Math.abs(px[k]! - reference.data[o + k]!);
            worst = Math.max(worst, d);
            total += d;
            compared++;
          }
        }
      }
      expect(wrong.slice(0, 5), `${size.width}x${size.height}`).toEqual([]);
      expect(worst, `${size.width}x${size.height}`).toBeLessThanOrEqual(4);
      expect(total / compared, `${size.width}x${size.height}`).toBeLessThan(0.75);
    }
  });

  it("reads a layer at a size the same way", async () => {
    const { ps, doc, host } = big();
    const layer = doc.layers[0]!;
    const { size } = sizes[1]!;
    const fromLayer = await host.readPixels(doc.id, { kind: "layer", layerId: layer.id }, region, size);
    expect(ps.reads.at(-1)).toMatchObject({ api: "getPixels", targetSize: size, sourceBounds: trimmed });
    const composite = await host.readPixels(doc.id, { kind: "composite" }, region, size);
    expect(Buffer.from(fromLayer.data).equals(Buffer.from(composite.data))).toBe(true);
  });

  it("reads the selection at a size like a full read downscaled", async () => {
    const { ps, doc, host } = big();
    // A soft disc: fully selected within 300 px of (1500, 1100), fading out by 700 (a wide
    // feather: a scaled read lands on whole output pixels, up to half of one off, and the
    // tolerance below allows for that over this ramp).
    const selection = new Uint8Array(canvas.width * canvas.height);
    for (let y = 0; y < canvas.height; y++) {
      for (let x = 0; x < canvas.width; x++) {
        const d = Math.hypot(x + 0.5 - 1500, y + 0.5 - 1100);
        selection[y * canvas.width + x] = Math.round(Math.min(1, Math.max(0, (700 - d) / 400)) * 255);
      }
    }
    doc.setSelection(selection);
    try {
      const full = (await host.readSelection(doc.id, region)) as Mask8;
      const selected = ps.reads.at(-1)!;
      expect(selected.api).toBe("getSelection");
      expect(selected.sourceBounds).toEqual({ left: 801, top: 401, right: 2199, bottom: 1799 });
      for (const { size } of sizes) {
        const small = (await host.readSelection(doc.id, region, size)) as Mask8;
        expect([small.width, small.height]).toEqual([size.width, size.height]);
        const read = ps.reads.at(-1)!;
        expect(read).toMatchObject({ api: "getSelection", targetSize: size, sourceBounds: selected.sourceBounds });
        expect(read.samples).toBeLessThanOrEqual(size.width * size.height);
        const reference = resizeMask(full, size.width, size.height);
        let worst = 0;
        for (let i = 0; i < small.data.length; i++) worst = Math.max(worst, Math.abs(small.data[i]! - reference.data[i]!));
        expect(worst, `${size.width}x${size.height}`).toBeLessThanOrEqual(3);
        // Unselected where the region has no selection; selected in the middle.
        expect(small.data[0]).toBe(0);
        expect(small.data[small.data.length - 1]).toBe(0);
        expect(small.data[Math.floor(size.height / 2) * size.width + Math.floor(size.width / 2)]).toBe(255);
      }
    } finally {
      doc.setSelection(null);
    }
  });

  it("reads nothing from Photoshop for a layer with no pixels in the region, at the size asked for", async () => {
    const { ps, doc, host } = big();
    const before = ps.reads.length;
    const empty: Rgba8 = await host.readPixels(doc.id, { kind: "layer", layerId: doc.layers[0]!.id }, { x: 0, y: 0, width: 600, height: 400 }, { width: 60, height: 40 });
    expect([empty.width, empty.height]).toEqual([60, 40]);
    expect(empty.data.every((v) => v === 0)).toBe(true);
    expect(ps.reads.length).toBe(before);
  });
});

describe("writing big layers a band of rows at a time", () => {
  it("writes pixels and mask in bands that add up to the same layer as one piece", async () => {
    const pixels = { width: 6, height: 5, channels: 4 as const, data: Uint8Array.from({ length: 6 * 5 * 4 }, (_, i) => (i * 37) % 256) };
    const layer = (mask: NewLayer["mask"]): NewLayer => ({ name: "v", x: 3, y: 4, pixels, mask, visible: true });
    for (const mask of ["alpha", { width: 6, height: 5, channels: 1 as const, data: Uint8Array.from({ length: 30 }, (_, i) => i * 8) }, undefined] as const) {
      const written = [];
      for (const writeBandBytes of [undefined, 100]) {
        const { ps, doc } = photo({ depth: 16 });
        const host = createPhotoshopHost(ps, writeBandBytes ? { writeBandBytes } : {});
        const { layerIds } = await host.applyEdit(doc.id, { historyName: "h", groupName: "g", layers: [layer(mask)] });
        written.push({ pixels: await host.readPixels(doc.id, { kind: "layer", layerId: layerIds[0]! }, { x: 3, y: 4, width: 6, height: 5 }), mask: doc.layerMask(layerIds[0]!), writes: ps.writes, history: doc.history });
      }
      const [whole, banded] = written;
      // 6 pixels x 4 (or 3) samples x 2 bytes a row: 2 rows a band of 100 bytes, so bands of 2, 2 and 1 rows.
      expect(whole!.writes.map((w) => w.bounds.bottom - w.bounds.top)).toEqual(mask ? [5, 5] : [5]);
      expect(banded!.writes.map((w) => [w.api, w.bounds.top, w.bounds.bottom - w.bounds.top])).toEqual(
        (mask ? (["putPixels", "putLayerMask"] as const) : (["putPixels"] as const)).flatMap((api) => [[api, 4, 2], [api, 6, 2], [api, 8, 1]]),
      );
      expect(Math.max(...banded!.writes.map((w) => w.bytes))).toBeLessThanOrEqual(100);
      expect(banded!.pixels).toEqual(whole!.pixels);
      expect(banded!.mask).toEqual(whole!.mask);
      expect(banded!.history).toEqual(["h"]);
    }
  });

  it("reads, and writes a whole-picture result into, an 8000x6000 16-bit document within the stated bound", { timeout: 120_000 }, async () => {
    // The fake keeps this document's background as one colour and what is written into it as a
    // digest of every sample (a full 16-bit layer would be 384 MB in the fake alone).
    const canvas = { width: 8000, height: 6000 };
    const ps = new FakePhotoshop();
    const doc = ps.openDocument({ title: "poster.psd", ...canvas, depth: 16, store: "digest", layers: [{ name: "Background", background: true, fill: [180, 140, 90, 255] }] });
    const host = createPhotoshopHost(ps);

    // Reading for img2img: Photoshop scales the read to the model's size; the panel holds only that.
    const size = readSize(canvas, wholePictureSize(canvas, 512));
    conversionMemory.reset();
    const read = await host.readPixels(doc.id, { kind: "composite" }, regionOf(canvas), size);
    expect([read.width, read.height]).toEqual([size.width, size.height]);
    expect(ps.reads.at(-1)!.samples).toBe(size.width * size.height * 3);
    expect(conversionMemory.allocated).toBe(size.width * size.height * 4);
    expect([...read.data.subarray(0, 4)]).toEqual([180, 140, 90, 255]);

    // Writing the result as the daemon sends it (RGB at document resolution: 144 MB).
    const result = { ...canvas, channels: 3 as const, data: new Uint8Array(canvas.width * canvas.height * 3) };
    for (let i = 0; i < result.data.length; i++) result.data[i] = (i * 7 + Math.floor(i / 24000) * 3) & 255;
    conversionMemory.reset();
    const written = await host.applyEdit(doc.id, { historyName: "Underpaint Img2img", groupName: "g", layers: [{ name: "v", x: 0, y: 0, pixels: result, visible: true }] });

    // One band buffer, reused for every band: 349 rows of 8000 RGB pixels at 16 bits (48,000 bytes a row), 16,752,000 bytes.
    const rowBytes = canvas.width * 3 * 2;
    const rows = Math.floor(WRITE_BAND_BYTES / rowBytes);
    expect(conversionMemory.allocated).toBe(rows * rowBytes);
    expect(conversionMemory.largest).toBeLessThanOrEqual(WRITE_BAND_BYTES);
    const writes = ps.writes.filter((w) => w.layerId === written.layerIds[0]);
    expect(writes).toHaveLength(Math.ceil(canvas.height / rows));
    expect(Math.max(...writes.map((w) => w.bytes))).toBeLessThanOrEqual(WRITE_BAND_BYTES);
    expect(doc.history).toEqual(["Underpaint Img2img"]);

    // Every sample landed once, where it belongs, at the document's depth (16-bit: 0..32768).
    const expected = emptyDigest();
    const to16 = Array.from({ length: 256 }, (_, v) => Math.round((v / 255) * PS16_MAX));
    for (let y = 0, s = 0; y < canvas.height; y++) {
      for (let x = 0; x < canvas.width; x++, s += 3) {
        for (let k = 0; k < 3; k++) addToDigest(expected, x, y, k, to16[result.data[s + k]!]!);
        addToDigest(expected, x, y, 3, PS16_MAX);
      }
    }
    expected.bounds = { left: 0, top: 0, right: canvas.width, bottom: canvas.height };
    const layer = doc.tree()[0]!.children![0]!;
    expect(layer.bounds).toEqual(expected.bounds);
    expect(doc.digest(written.layerIds[0]!)!.pixels).toEqual(expected);
  });
});

