/**
 * A model that makes pictures from a prompt only (an SDXL-Lightning export has no VAE encoder): the
 * panel, over the real protocol client and server, generates with it and refuses its other modes in
 * a sentence that names a model that can, before anything is sent or the document is touched.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProtocolClient } from "../../plugin/src/client/client";
import type { PanelError } from "../../plugin/src/errors";
import { runOperation } from "../../plugin/src/operations/run";
import { DEFAULT_SETTINGS, type GenerationSettings, type OperationMode } from "../../plugin/src/operations/settings";
import { createPhotoshopHost } from "../../plugin/src/photoshop/uxp-host";
import type { ModelInfo } from "../../protocol";
import { connectedPanel } from "../e2e/helpers";
import { TEST_MODEL, TestEngine } from "../helpers/test-engine";
import { FakePhotoshop } from "./fake-photoshop";

const TOKEN = "l".repeat(40);
const LIGHTNING: ModelInfo = {
  id: "sdxl-lightning",
  name: "SDXL-Lightning (4-step)",
  kind: "txt2img",
  modes: ["txt2img"],
  nativeResolution: 64,
  turbo: true,
  recommended: { steps: 4, guidance: 0, scheduler: "euler" },
  guidance: "none",
  registryId: "sdxl-lightning",
  sdxl: true,
};

let engine: TestEngine;
let panel: Awaited<ReturnType<typeof connectedPanel>>;
let client: ProtocolClient;

beforeAll(async () => {
  engine = new TestEngine({ models: [LIGHTNING, TEST_MODEL] });
  panel = await connectedPanel(engine, TOKEN);
  client = panel.client;
});
afterAll(() => panel?.close());

describe("a txt2img-only model in the panel", () => {
  it("generates, and refuses img2img, inpaint and expand in one sentence naming a model that can; nothing is sent or changed", async () => {
    const ps = new FakePhotoshop();
    const doc = ps.openDocument({ title: "photo.psd", width: 64, height: 64, layers: [{ name: "Background", background: true, fill: [120, 140, 160, 255] }] });
    const deps = { host: createPhotoshopHost(ps), client };
    const settings = (mode: OperationMode): GenerationSettings => ({ ...DEFAULT_SETTINGS, mode, model: LIGHTNING.id, prompt: "a lighthouse", steps: 4, guidance: 0, scheduler: "euler", seed: 5 });
    const jobs = engine.jobs.length;
    expect((await runOperation(deps, settings("generate"))).status).toBe("completed");
    expect(engine.jobs.length).toBe(jobs + 1);

    const before = doc.snapshot();
    const refusal = (s: GenerationSettings) => runOperation(deps, s).then(() => undefined, (error: PanelError) => [error.code, error.message]);
    expect(await refusal(settings("img2img"))).toEqual(["unsupported_mode", 'The model "SDXL-Lightning (4-step)" cannot repaint an image (img2img). Pick "Test model".']);
    expect(await refusal(settings("inpaint"))).toEqual(["unsupported_mode", 'The model "SDXL-Lightning (4-step)" cannot inpaint a selection. Pick "Test model".']);
    expect(await refusal(settings("expand"))).toEqual(["unsupported_mode", 'The model "SDXL-Lightning (4-step)" cannot expand the canvas. Pick "Test model".']);
    expect(engine.jobs.length).toBe(jobs + 1);
    expect(doc.snapshot()).toEqual(before);
  });
});
