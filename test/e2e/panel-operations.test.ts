/**
 * The panel's operations end to end: the real adapter on the in-memory Photoshop, the real
 * protocol client over ws, and the real daemon with the tiny fixture models.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProtocolClient } from "../../plugin/src/client/client";
import { PanelError } from "../../plugin/src/errors";
import { runOperation } from "../../plugin/src/operations/run";
import { DEFAULT_SETTINGS, type GenerationSettings } from "../../plugin/src/operations/settings";
import { createPhotoshopHost } from "../../plugin/src/photoshop/uxp-host";
import { FakePhotoshop, type FakeDocument } from "../plugin/fake-photoshop";
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

    const outcome = await runOperation(deps, { ...base, mode: "inpaint", strength: 1, variations: 2 });

    expect(outcome.status).toBe("completed");
    if (outcome.status !== "completed") return;
    expect(ps.violations).toEqual([]);
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

    const after = doc.composite8();
    let changedInside = 0;
    for (let i = 0; i < selection.length; i++) {
      const same = [0, 1, 2, 3].every((k) => after.data[i * 4 + k] === before.data[i * 4 + k]);
      if (selection[i] === 0) expect(same, `pixel ${i % doc.width},${Math.floor(i / doc.width)} outside the selection`).toBe(true);
      else if (!same) changedInside++;
    }
    expect(changedInside).toBeGreaterThan(1000);
  });

  it("expands the canvas by 128 px on the left: the canvas grows, the old pixels stay in place, the new area is filled", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = catDocument(ps);
    const before = doc.composite8();

    const outcome = await runOperation(deps, { ...base, mode: "expand", prompt: "a wooden floor", expand: { left: 128, top: 0, right: 0, bottom: 0 } });

    expect(outcome.status).toBe("completed");
    expect(ps.violations).toEqual([]);
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

  it("writes text-to-image results at the document's exact size, and img2img from the active layer", SLOW, async () => {
    const { ps, deps } = setup();
    const doc = catDocument(ps);
    const generated = await runOperation(deps, { ...base, mode: "generate", variations: 1 });
    expect(generated.status).toBe("completed");
    const [group] = doc.tree();
    expect(group!.children![0]!.bounds).toEqual({ left: 0, top: 0, right: doc.width, bottom: doc.height });
    expect(group!.children![0]!.hasMask).toBe(false);

    doc.setActive([doc.tree()[1]!.id]);
    const repainted = await runOperation(deps, { ...base, mode: "img2img", source: "layer", strength: 0.6 });
    expect(repainted.status).toBe("completed");
    expect(doc.tree().filter((l) => l.kind === "group")).toHaveLength(2);
    expect(doc.history.filter((h) => h.startsWith("Underpaint"))).toEqual(["Underpaint Generate", "Underpaint Img2img"]);
    expect(ps.violations).toEqual([]);
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

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
