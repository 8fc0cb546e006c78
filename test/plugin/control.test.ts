/**
 * Control in the panel's operations: the real adapter on the in-memory Photoshop (UXP's rules),
 * the real protocol client over ws, and the real server with the deterministic test engine. The
 * control image is the chosen layer's own pixels over the canvas; the user's layers are left as
 * they were; a job whose layer is hidden or empty, or whose model cannot follow control, is
 * refused in a sentence before anything is sent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProtocolClient } from "../../plugin/src/client/client";
import { PanelError } from "../../plugin/src/errors";
import { controlOffer, controlReadSize, DEFAULT_CONTROL, estimatorSuggestion, parseControl, type ControlSettings } from "../../plugin/src/operations/control";
import { runOperation } from "../../plugin/src/operations/run";
import { DEFAULT_SETTINGS, type GenerationSettings } from "../../plugin/src/operations/settings";
import { createPhotoshopHost } from "../../plugin/src/photoshop/uxp-host";
import type { Capabilities, ModelInfo } from "../../protocol";
import { connectedPanel } from "../e2e/helpers";
import { TEST_MODEL, TestEngine } from "../helpers/test-engine";
import { FakePhotoshop, type FakeDocument } from "./fake-photoshop";

const TOKEN = "c".repeat(40);
const CONTROL_MODEL: ModelInfo = { ...TEST_MODEL, id: "control-model", name: "Control model", nativeResolution: 512, control: true };
const W = 96;
const H = 64;

let engine: TestEngine;
let panel: Awaited<ReturnType<typeof connectedPanel>>;
let client: ProtocolClient;

beforeAll(async () => {
  engine = new TestEngine({ models: [CONTROL_MODEL, TEST_MODEL], controlNets: [{ id: "controlnet-scribble", name: "ControlNet Scribble (SD 1.5)", kind: "scribble", registryId: "controlnet-scribble" }] });
  panel = await connectedPanel(engine, TOKEN);
  client = panel.client;
});
afterAll(() => panel?.close());

/** A 40x30 sketch at (10, 8): a black diagonal stroke on a transparent layer. */
function sketch(): { width: number; height: number; data: Uint8Array } {
  const data = new Uint8Array(40 * 30 * 4);
  for (let y = 0; y < 30; y++) for (let x = 0; x < 40; x++) if (Math.abs(x - y) < 3) data[(y * 40 + x) * 4 + 3] = 255;
  return { width: 40, height: 30, data };
}

function openDocument(ps: FakePhotoshop): FakeDocument {
  return ps.openDocument({
    title: "sketch.psd",
    width: W,
    height: H,
    layers: [
      { name: "Sketch", pixels: sketch(), left: 10, top: 8 },
      { name: "Hidden sketch", pixels: sketch(), left: 10, top: 8, visible: false },
      { name: "Empty" },
      { name: "Background", background: true, fill: [200, 180, 160, 255] },
    ],
  });
}

function setup() {
  const ps = new FakePhotoshop();
  const doc = openDocument(ps);
  const host = createPhotoshopHost(ps);
  const layer = (name: string) => doc.tree().find((l) => l.name === name)!.id;
  const control = (name: string, overrides: Partial<ControlSettings> = {}): ControlSettings => ({ ...DEFAULT_CONTROL, enabled: true, layerId: layer(name), layerName: name, documentId: doc.id, ...overrides });
  const settings = (overrides: Partial<GenerationSettings>): GenerationSettings => ({ ...DEFAULT_SETTINGS, model: CONTROL_MODEL.id, prompt: "a cat", steps: 1, seed: 3, ...overrides });
  return { ps, doc, host, control, settings, deps: { host, client } };
}

describe("a control job from the panel", () => {
  it("lists the document's layers as the Layers panel does: shown or hidden, empty or not; the control layers are its pixel layers", async () => {
    const { doc, host } = setup();
    const layers = await host.listLayers(doc.id);
    expect(layers.map((l) => [l.name, l.kind, l.visible, l.empty, l.depth])).toEqual([
      ["Sketch", "pixel", true, false, 0],
      ["Hidden sketch", "pixel", false, false, 0],
      ["Empty", "pixel", true, true, 0],
      ["Background", "pixel", true, false, 0],
    ]);
  });

  it("sends the chosen layer's own pixels over the canvas as the control image, with its kind, strength and range, and leaves the user's layers as they were", async () => {
    const { doc, host, control, settings, deps } = setup();
    const before = doc.snapshot();
    const jobs = engine.jobs.length;
    const outcome = await runOperation(deps, settings({ control: control("Sketch", { strength: 1.4, start: 0.1, end: 0.8 }) }));
    expect(outcome.status).toBe("completed");
    const job = engine.jobs.slice(jobs)[0]!;
    expect(job.control).toMatchObject({ kind: "scribble", strength: 1.4, start: 0.1, end: 0.8, controlNet: "controlnet-scribble" });
    // The layer read alone (not the composite, not the hidden copy), at the canvas's size and place.
    const image = job.control!.image;
    expect(controlReadSize(doc, CONTROL_MODEL)).toEqual({ width: W, height: H });
    expect([image.width, image.height, image.channels]).toEqual([W, H, 4]);
    const alpha = (x: number, y: number) => image.data[(y * W + x) * 4 + 3];
    const rgb = (x: number, y: number) => Array.from(image.data.subarray((y * W + x) * 4, (y * W + x) * 4 + 3));
    expect([alpha(10, 8), alpha(30, 28), alpha(39, 37)]).toEqual([255, 255, 255]);
    expect(rgb(30, 28)).toEqual([0, 0, 0]);
    // Off the stroke, and outside the layer: transparent (the daemon reads them over white), not the background's colour.
    expect([alpha(30, 10), alpha(2, 2), alpha(90, 60)]).toEqual([0, 0, 0]);
    // The result went in as a new group; the user's layers and the picture under it are as they were.
    const after = doc.snapshot();
    expect(after.tree.slice(1)).toEqual(before.tree);
    expect(after.history).toEqual([...before.history, "Underpaint Generate"]);
  });

  it("is refused in a sentence when the layer is hidden or empty, the model cannot follow control, or the kind's ControlNet is missing; nothing is sent or changed", async () => {
    const { doc, control, settings, deps } = setup();
    const before = doc.snapshot();
    const jobs = engine.jobs.length;
    const refusal = (s: GenerationSettings) => runOperation(deps, s).then(() => undefined, (error: PanelError) => [error.code, error.message]);
    expect(await refusal(settings({ control: control("Hidden sketch") }))).toEqual(["control_layer_hidden", "The control layer “Hidden sketch” is hidden: show it in the Layers panel, or choose another one."]);
    expect(await refusal(settings({ control: control("Empty") }))).toEqual(["control_layer_empty", "The control layer “Empty” is empty: draw on it, or choose another one."]);
    expect(await refusal(settings({ control: { ...DEFAULT_CONTROL, enabled: true } }))).toEqual(["no_control_layer", "No control layer is chosen: choose the layer to follow in the Control section."]);
    expect(await refusal(settings({ control: control("Sketch", { documentId: doc.id + 100, layerName: "Gone" }) }))).toEqual(["no_control_layer", "The control layer “Gone” is not in “sketch.psd”: choose the layer to follow in the Control section."]);
    expect(await refusal(settings({ model: TEST_MODEL.id, control: control("Sketch") }))).toEqual(["control_unsupported", "“Test model” cannot follow a control image: choose a model that can (pull sd-1.5-control), or turn Control off."]);
    expect(await refusal(settings({ control: control("Sketch", { kind: "canny" }) }))).toEqual(["model_not_found", "No edges (canny) ControlNet is installed: pull “ControlNet Canny edges (SD 1.5)” in the Control section, or choose another kind."]);
    expect(engine.jobs.length).toBe(jobs);
    expect(doc.snapshot()).toEqual(before);
  });

  it("finds the layer by its name in another document", async () => {
    const { control, doc, settings, deps } = setup();
    const jobs = engine.jobs.length;
    // A layer id of another document: the one named so in this document is used.
    expect((await runOperation(deps, settings({ control: control("Sketch", { documentId: doc.id + 100, layerId: 999 }) }))).status).toBe("completed");
    expect(engine.jobs.length).toBe(jobs + 1);
    expect(engine.jobs.at(-1)!.control?.image.width).toBe(W);
  });

  it("an inpaint follows the layer over the area its picture covers, an expand over the grown document (transparent in the growth)", async () => {
    const { ps, control, settings, deps } = setup();
    // A bigger document in front, for a selection whose context is a part of it.
    const big = ps.openDocument({ title: "big.psd", width: 480, height: 360, layers: [{ name: "Sketch", pixels: sketch(), left: 10, top: 8 }, { name: "Background", background: true, fill: [200, 180, 160, 255] }] });
    big.setSelection(Uint8Array.from({ length: 480 * 360 }, (_, i) => (i % 480 >= 20 && i % 480 < 50 && i < 480 * 60 ? 255 : 0)));
    const bigSketch = { ...control("Sketch"), documentId: big.id, layerId: big.tree().find((l) => l.name === "Sketch")!.id };
    expect((await runOperation(deps, settings({ mode: "inpaint", context: "selection", control: bigSketch }))).status).toBe("completed");
    const inpaint = engine.jobs.at(-1)!;
    if (inpaint.mode !== "inpaint") throw new Error("not an inpaint job");
    const image = inpaint.control!.image;
    expect([image.width, image.height]).toEqual([inpaint.image.width, inpaint.image.height]);
    // The stroke's pixel (30, 28) of the document, where it lies in the region the picture covers.
    const at = (x: number, y: number) => {
      const cx = Math.floor(((x - inpaint.region.x) * image.width) / inpaint.region.width);
      const cy = Math.floor(((y - inpaint.region.y) * image.height) / inpaint.region.height);
      return image.data[(cy * image.width + cx) * 4 + 3];
    };
    expect(inpaint.region.width).toBeLessThan(480);
    expect(at(30, 28)).toBe(255);
    expect(at(30, 10)).toBe(0);

    expect((await runOperation(deps, settings({ mode: "expand", expand: { left: 32, top: 0, right: 0, bottom: 0 }, control: bigSketch }))).status).toBe("completed");
    const expand = engine.jobs.at(-1)!;
    const grown = expand.control!.image;
    expect(grown.width / grown.height).toBeCloseTo((480 + 32) / 360, 2);
    expect([grown.width, grown.height]).toEqual([480 + 32, 360]);
    const alpha = (x: number, y: number) => grown.data[(y * grown.width + x) * 4 + 3];
    // The stroke moved right with the canvas; the growth on the left is empty.
    expect([alpha(30 + 32, 28), alpha(10 + 32, 8)]).toEqual([255, 255]);
    expect([alpha(5, 28), alpha(30, 28)]).toEqual([0, 0]);
  });
});

describe("the Control section's offer", () => {
  const capabilities = (models: ModelInfo[], extra: Partial<Capabilities> = {}): Capabilities => ({
    ...client.capabilities!,
    models,
    ...extra,
  });

  it("says which model to pull when the chosen one cannot follow control, or which installed one to choose", () => {
    const none = controlOffer(capabilities([TEST_MODEL]), TEST_MODEL);
    expect(none).toMatchObject({ kind: "unavailable", message: "“Test model” cannot follow a control image: pull “Stable Diffusion 1.5 (ControlNet)” (sd-1.5-control), a model that can, and choose it.", pull: { id: "sd-1.5-control" } });
    expect(controlOffer(capabilities([TEST_MODEL, CONTROL_MODEL]), TEST_MODEL)).toEqual({ kind: "unavailable", message: "“Test model” cannot follow a control image: choose “Control model” in the model menu." });
    // An SDXL model is offered SDXL's control model, of its own family.
    const sdxl = { ...TEST_MODEL, id: "sdxl-turbo", name: "SDXL Turbo", sdxl: true as const };
    expect(controlOffer(capabilities([sdxl]), sdxl)).toMatchObject({ kind: "unavailable", message: expect.stringMatching(/^“SDXL Turbo” cannot follow a control image: pull “.+” \(sdxl-control\), a model that can, and choose it\.$/), pull: { id: "sdxl-control" } });
  });

  it("lists the installed kinds and offers the others to pull", () => {
    const offer = controlOffer(capabilities([CONTROL_MODEL]), CONTROL_MODEL);
    expect(offer.kind === "ready" && [offer.installed, offer.pullable.map((e) => e.id)]).toEqual([["scribble"], ["controlnet-canny", "controlnet-depth", "controlnet-pose", "controlnet-lineart"]]);
  });

  it("offers the depth or pose estimator for depth or pose control when none is installed, and nothing when one is, for other kinds, or from a daemon that does not say", () => {
    const depth = { id: "depth-anything-v2-small", name: "Depth Anything V2 Small", repo: "onnx-community/depth-anything-v2-small", precision: "fp32" as const, approximateBytes: 99_173_660, license: "Apache-2.0", description: "d" };
    const none = capabilities([CONTROL_MODEL], { registryDepthEstimators: [depth], depthEstimator: null });
    expect(estimatorSuggestion(none, "depth")).toEqual({
      message: "The layer is followed as the depth map it holds (white near, black far): to follow the depth of a photo, pull “Depth Anything V2 Small”.",
      pull: { id: "depth-anything-v2-small", name: "Depth Anything V2 Small" },
    });
    expect(estimatorSuggestion(none, "canny")).toBeUndefined();
    expect(estimatorSuggestion(capabilities([CONTROL_MODEL], { registryDepthEstimators: [depth], depthEstimator: { id: "depth-anything-v2-small" } }), "depth")).toBeUndefined();
    expect(estimatorSuggestion(capabilities([CONTROL_MODEL], { registryDepthEstimators: [depth], depthEstimator: undefined }), "depth")).toBeUndefined();
    expect(estimatorSuggestion(capabilities([CONTROL_MODEL], { registryDepthEstimators: [], depthEstimator: null }), "depth")).toBeUndefined();
    expect(estimatorSuggestion(undefined, "depth")).toBeUndefined();
    const dwpose = { ...depth, id: "dwpose", name: "DWPose", repo: "yzd-v/DWPose" };
    const noPose = capabilities([CONTROL_MODEL], { registryPoseEstimators: [dwpose], poseEstimator: null });
    expect(estimatorSuggestion(noPose, "pose")).toEqual({
      message: "The layer is followed as the pose map it holds (OpenPose's coloured skeletons on black): to follow the poses of people in a photo, pull “DWPose”.",
      pull: { id: "dwpose", name: "DWPose" },
    });
    expect(estimatorSuggestion(capabilities([CONTROL_MODEL], { registryPoseEstimators: [dwpose], poseEstimator: { id: "dwpose" } }), "pose")).toBeUndefined();
  });

  it("reads saved settings back, damaged ones as the defaults (off)", () => {
    expect(parseControl({ enabled: true, kind: "canny", strength: 1.5, start: 0.2, end: 0.9, layerName: "Lines", layerId: 4 })).toEqual({ enabled: true, kind: "canny", strength: 1.5, start: 0.2, end: 0.9, layerName: "Lines" });
    expect(parseControl({ enabled: true, kind: "hed" })).toEqual(DEFAULT_CONTROL);
    expect(parseControl(undefined)).toEqual(DEFAULT_CONTROL);
    expect(parseControl({ start: 0.9, end: 0.2 })).toMatchObject({ start: 0, end: 1 });
  });
});
