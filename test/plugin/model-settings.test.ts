/** Per-model settings (recommended, the artist's changes kept per model), the controls a model takes, and the model setup's rows. */
import { describe, expect, it } from "vitest";
import type { Capabilities, DownloadStatus, ModelInfo, RegistryControlNet, RegistryDepthEstimator, RegistryModel, RegistryPoseEstimator, RegistryPreviewDecoder } from "../../protocol";
import { planDraft } from "../../plugin/src/operations/draft";
import { DEFAULT_SETTINGS } from "../../plugin/src/operations/settings";
import { controlsForModel, parseOverrides, rememberChange, settingsForModel, type ModelOverrides } from "../../plugin/src/operations/model-settings";
import { abilities, downloadView, formatBytes, formatDuration, setupRows } from "../../plugin/src/panel/model-setup";

const model = (id: string, over: Partial<ModelInfo> = {}): ModelInfo => ({
  id,
  name: id,
  kind: "txt2img",
  modes: ["txt2img", "img2img"],
  nativeResolution: 512,
  turbo: false,
  recommended: { steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" },
  guidance: "classifier-free",
  ...over,
});
const turbo = model("sd-turbo", { turbo: true, guidance: "none", recommended: { steps: 1, guidance: 0, scheduler: "euler_a" }, registryId: "sd-turbo" });
const lcm = model("lcm", { guidance: "embedded", recommended: { steps: 4, guidance: 8, scheduler: "lcm" } });
const sd = model("sd-1.5");

describe("a model's settings", () => {
  it("are its recommended ones until the artist changes them, and the changes stay with that model", () => {
    let overrides: ModelOverrides = {};
    expect(settingsForModel(turbo, overrides)).toEqual({ steps: 1, guidance: 0, scheduler: "euler_a" });
    expect(settingsForModel(sd, overrides)).toEqual({ steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" });
    overrides = rememberChange(overrides, sd, { steps: 30, guidance: 7.5, scheduler: "euler" });
    expect(overrides).toEqual({ "sd-1.5": { steps: 30, scheduler: "euler" } });
    overrides = rememberChange(overrides, turbo, { steps: 3, guidance: 0, scheduler: "euler_a" });
    // Switching back and forth restores each model's own.
    expect(settingsForModel(sd, overrides)).toEqual({ steps: 30, guidance: 7.5, scheduler: "euler" });
    expect(settingsForModel(turbo, overrides)).toEqual({ steps: 3, guidance: 0, scheduler: "euler_a" });
    // Back to the recommended values: nothing kept.
    overrides = rememberChange(overrides, sd, { steps: 25, guidance: 7.5, scheduler: "dpmpp_2m_karras" });
    expect(overrides).toEqual({ "sd-turbo": { steps: 3 } });
  });

  it("keep turbo models at 1 to 4 steps and guidance off where the model has none", () => {
    expect(settingsForModel(turbo, { "sd-turbo": { steps: 20, guidance: 7.5 } })).toEqual({ steps: 4, guidance: 0, scheduler: "euler_a" });
    expect(rememberChange({}, turbo, { steps: 20, guidance: 9, scheduler: "euler_a" })).toEqual({ "sd-turbo": { steps: 4 } });
    // Embedded guidance is kept as set.
    expect(settingsForModel(lcm, rememberChange({}, lcm, { steps: 6, guidance: 2, scheduler: "lcm" }))).toEqual({ steps: 6, guidance: 2, scheduler: "lcm" });
  });

  it("read back from what was saved; anything damaged is none", () => {
    expect(parseOverrides('{"sd-1.5": {"steps": 30}}')).toEqual({ "sd-1.5": { steps: 30 } });
    for (const text of [undefined, "", "{", '{"sd-1.5": {"steps": "many"}}', '{"x": {"scheduler": "warp"}}', "[1]"]) expect(parseOverrides(text), String(text)).toEqual({});
  });
});

describe("the controls a model takes", () => {
  it("turn guidance and the negative prompt off for turbo, with why, and allow 1 to 4 steps", () => {
    const controls = controlsForModel(turbo);
    expect(controls.maxSteps).toBe(4);
    expect(controls.stepsNote).toBe("“sd-turbo” makes its picture in 1 to 4 steps.");
    expect(controls.guidance.enabled).toBe(false);
    expect(controls.guidance.note).toMatch(/works without guidance/);
    expect(controls.negativePrompt).toEqual({ enabled: false, note: "“sd-turbo” reads no negative prompt: without guidance it has no effect." });
  });

  it("keep embedded guidance, shown as such, without a negative prompt", () => {
    const controls = controlsForModel(lcm);
    expect(controls.guidance).toMatchObject({ enabled: true, label: "Guidance (built into the model)" });
    expect(controls.negativePrompt.enabled).toBe(false);
    expect(controls.maxSteps).toBe(100);
  });

  it("leave everything on for classifier-free guidance", () => {
    expect(controlsForModel(sd)).toEqual({ maxSteps: 100, guidance: { enabled: true, label: "Guidance" }, negativePrompt: { enabled: true } });
  });
});

const entry = (id: string, over: Partial<RegistryModel> = {}): RegistryModel => ({
  id,
  name: `The ${id}`,
  repo: `owner/${id}`,
  kind: "txt2img",
  nativeResolution: 512,
  turbo: false,
  precision: "fp16",
  approximateBytes: 2_580_000_000,
  license: "MIT",
  description: `What ${id} is for.`,
  recommended: { steps: 25, guidance: 7.5, scheduler: "euler" },
  ...over,
});

describe("the model setup", () => {
  it("lists the registry with sizes, licenses and uses, and what can be done with each", () => {
    const registry = [entry("sd-turbo", { turbo: true }), entry("sd-1.5", { approximateBytes: 4_264_941_228, license: "CreativeML Open RAIL-M" }), entry("lcm"), entry("inpaint")];
    const downloads: DownloadStatus[] = [
      { model: "sd-1.5", request: "sd-1.5", stage: "downloading", file: "unet/model.onnx", bytes: 1_203_765_248, total: 2_610_745_635, bytesPerSecond: 24_800_000, etaSeconds: 57 },
      { model: "lcm", request: "lcm", stage: "failed", bytes: 1_730_150_400, total: 4_265_617_792, error: { code: "network", message: "The download stopped; run it again to resume." } },
      { model: "someone-model", request: "someone/model", stage: "cancelled", bytes: 0, total: 0, error: { code: "cancelled", message: "Cancelled." } },
    ];
    const rows = setupRows(registry, [turbo], downloads, new Set(["inpaint"]));
    expect(rows.map((r) => [r.id, r.installed, r.action ?? null])).toEqual([
      ["sd-turbo", true, null],
      ["sd-1.5", false, "cancel"],
      ["lcm", false, "resume"],
      ["inpaint", false, null],
      ["someone/model", false, "pull"],
    ]);
    expect(rows[0]!.facts).toBe("about 2.6 GB · 1–4 steps · 512 px · MIT");
    expect(rows[1]!.facts).toBe("about 4.3 GB · 512 px · CreativeML Open RAIL-M");
    expect(rows[1]!.description).toBe("What sd-1.5 is for.");
    expect(rows[1]!.download).toEqual({ fraction: 1_203_765_248 / 2_610_745_635, text: "1.2 GB of 2.6 GB · 24.8 MB/s · about 57 s left" });
    expect(rows[2]!.download).toEqual({ fraction: 1_730_150_400 / 4_265_617_792, text: "Stopped at 1.7 GB of 4.3 GB; Resume goes on from there.", problem: "The download stopped; run it again to resume." });
    expect(rows[3]!.download).toEqual({ text: "Asking the daemon…" });
    expect(rows[4]!.download).toEqual({ text: "Cancelled." });
  });

  it("says a pull is done before the daemon lists the model, and nothing more once it does", () => {
    const done: DownloadStatus = { model: "sd-turbo", request: "sd-turbo", stage: "done", bytes: 10, total: 10 };
    expect(setupRows([entry("sd-turbo")], [], [done])[0]).toMatchObject({ installed: false, download: { text: "Installed; the daemon is reading the folder…" } });
    expect(setupRows([entry("sd-turbo")], [turbo], [done])[0]).toEqual(expect.objectContaining({ installed: true }));
    expect(setupRows([entry("sd-turbo")], [turbo], [done])[0]!.action).toBeUndefined();
  });

  it("offers TAESD as fast previews and drafts when it is not installed, follows its pull, and says nothing of it to a daemon that does not say", () => {
    const taesd: RegistryPreviewDecoder = { id: "taesd", name: "TAESD (tiny autoencoder)", repo: "deinferno/taesd-onnx", precision: "fp32", approximateBytes: 9_780_252, license: "MIT", description: "Previews of every step and fast drafts." };
    const registry = [entry("sd-turbo")];
    const missing = setupRows(registry, [], [], new Set(), { registry: [taesd], installed: null });
    expect(missing.map((r) => [r.id, r.name, r.installed, r.action ?? null])).toEqual([["sd-turbo", "The sd-turbo", false, "pull"], ["taesd", "Fast previews and drafts", false, "pull"]]);
    expect(missing[1]!.facts).toBe("TAESD (tiny autoencoder) · about 9.8 MB · MIT");
    const pulling: DownloadStatus = { model: "taesd", request: "taesd", stage: "downloading", bytes: 4_890_126, total: 9_780_252 };
    // Its pull is its row's, not a row of its own.
    expect(setupRows(registry, [], [pulling], new Set(), { registry: [taesd], installed: null }).map((r) => [r.id, r.action ?? null, r.download?.fraction ?? null])).toEqual([["sd-turbo", "pull", null], ["taesd", "cancel", 0.5]]);
    expect(setupRows(registry, [], [{ ...pulling, stage: "done", bytes: 9_780_252 }], new Set(), { registry: [taesd], installed: { id: "taesd", registryId: "taesd" } })[1]).toMatchObject({ installed: true });
    expect(setupRows(registry, [], [], new Set(), { registry: [taesd], installed: undefined }).map((r) => r.id)).toEqual(["sd-turbo"]);
  });

  it("offers the registry's ControlNets, follows their pulls, marks the installed ones, and says nothing of them to a daemon that does not say", () => {
    const registry = [entry("sd-turbo")];
    const scribble: RegistryControlNet = { id: "controlnet-scribble", name: "ControlNet Scribble (SD 1.5)", repo: "TensorStack/ControlNet-onnx", kind: "scribble", precision: "fp16", approximateBytes: 722_558_240, license: "OpenRAIL", description: "Follows rough strokes on a layer." };
    const canny: RegistryControlNet = { ...scribble, id: "controlnet-canny", name: "ControlNet Canny edges (SD 1.5)", kind: "canny" };
    const none = { registry: [], installed: undefined };
    const rows = setupRows(registry, [], [{ model: "controlnet-canny", request: "controlnet-canny", stage: "downloading", bytes: 1, total: 4 }], new Set(), none, { registry: [scribble, canny], installed: [{ id: "controlnet-scribble", name: "n", kind: "scribble", registryId: "controlnet-scribble" }] });
    expect(rows.map((r) => [r.id, r.name, r.facts, r.installed, r.action ?? null, r.download?.fraction ?? null])).toEqual([
      ["sd-turbo", "The sd-turbo", expect.any(String), false, "pull", null],
      ["controlnet-scribble", "ControlNet Scribble (SD 1.5)", "about 723 MB · OpenRAIL", true, null, null],
      ["controlnet-canny", "ControlNet Canny edges (SD 1.5)", "about 723 MB · OpenRAIL", false, "cancel", 0.25],
    ]);
    expect(setupRows(registry, [], [], new Set(), none, { registry: [scribble], installed: undefined }).map((r) => r.id)).toEqual(["sd-turbo"]);
  });

  it("offers a depth estimator as depth from pictures, follows its pull, marks it installed, and says nothing of it to a daemon that does not say", () => {
    const registry = [entry("sd-turbo")];
    const depth: RegistryDepthEstimator = { id: "depth-anything-v2-small", name: "Depth Anything V2 Small", repo: "onnx-community/depth-anything-v2-small", precision: "fp32", approximateBytes: 99_173_660, license: "Apache-2.0", description: "Estimates depth from a picture." };
    const noPreviews = { registry: [], installed: undefined };
    const noControl = { registry: [], installed: undefined };
    const missing = setupRows(registry, [], [], new Set(), noPreviews, noControl, { registry: [depth], installed: null });
    expect(missing.map((r) => [r.id, r.name, r.facts, r.installed, r.action ?? null])).toEqual([
      ["sd-turbo", "The sd-turbo", expect.any(String), false, "pull"],
      ["depth-anything-v2-small", "Depth from pictures (depth control)", "Depth Anything V2 Small · about 99.2 MB · Apache-2.0", false, "pull"],
    ]);
    const pulling: DownloadStatus = { model: "depth-anything-v2-small", request: "depth-anything-v2-small", stage: "downloading", bytes: 24_793_415, total: 99_173_660 };
    // Its pull is its row's, not a row of its own.
    expect(setupRows(registry, [], [pulling], new Set(), noPreviews, noControl, { registry: [depth], installed: null }).map((r) => [r.id, r.action ?? null, r.download?.fraction ?? null])).toEqual([["sd-turbo", "pull", null], ["depth-anything-v2-small", "cancel", 0.25]]);
    expect(setupRows(registry, [], [], new Set(), noPreviews, noControl, { registry: [depth], installed: { id: "depth-anything-v2-small", registryId: "depth-anything-v2-small" } })[1]).toMatchObject({ installed: true });
    expect(setupRows(registry, [], [], new Set(), noPreviews, noControl, { registry: [depth], installed: undefined }).map((r) => r.id)).toEqual(["sd-turbo"]);
  });

  it("offers a pose estimator as pose from pictures after the depth estimator, follows its pull, marks it installed, and says nothing of it to a daemon that does not say", () => {
    const registry = [entry("sd-turbo")];
    const depth: RegistryDepthEstimator = { id: "depth-anything-v2-small", name: "Depth Anything V2 Small", repo: "onnx-community/depth-anything-v2-small", precision: "fp32", approximateBytes: 99_200_000, license: "Apache-2.0", description: "Estimates depth from a picture." };
    const pose: RegistryPoseEstimator = { id: "dwpose", name: "DWPose", repo: "yzd-v/DWPose", precision: "fp32", approximateBytes: 350_800_000, license: "Apache-2.0", description: "Finds poses in a picture." };
    const none = { registry: [], installed: undefined };
    const noDepth = { registry: [depth], installed: null };
    const missing = setupRows(registry, [], [], new Set(), none, none, noDepth, { registry: [pose], installed: null });
    expect(missing.map((r) => [r.id, r.name, r.facts, r.installed, r.action ?? null])).toEqual([
      ["sd-turbo", "The sd-turbo", expect.any(String), false, "pull"],
      ["depth-anything-v2-small", "Depth from pictures (depth control)", "Depth Anything V2 Small · about 99.2 MB · Apache-2.0", false, "pull"],
      ["dwpose", "Pose from pictures (pose control)", "DWPose · about 351 MB · Apache-2.0", false, "pull"],
    ]);
    const pulling: DownloadStatus = { model: "dwpose", request: "dwpose", stage: "downloading", bytes: 87_700_000, total: 350_800_000 };
    // Its pull is its row's, not a row of its own.
    expect(setupRows(registry, [], [pulling], new Set(), none, none, none, { registry: [pose], installed: null }).map((r) => [r.id, r.action ?? null, r.download?.fraction ?? null])).toEqual([["sd-turbo", "pull", null], ["dwpose", "cancel", 0.25]]);
    expect(setupRows(registry, [], [], new Set(), none, none, none, { registry: [pose], installed: { id: "dwpose", registryId: "dwpose" } })[1]).toMatchObject({ installed: true });
    expect(setupRows(registry, [], [], new Set(), none, none, none, { registry: [pose], installed: undefined }).map((r) => r.id)).toEqual(["sd-turbo"]);
  });

  it("words the stages, sizes and times as an artist reads them", () => {
    expect(downloadView({ model: "m", stage: "listing", bytes: 0, total: 0 }).text).toBe("Listing the files…");
    expect(downloadView({ model: "m", stage: "verifying", bytes: 5, total: 10 })).toEqual({ fraction: 0.5, text: "Checking the downloaded files…" });
    expect(downloadView({ model: "m", stage: "cancelled", bytes: 3_000_000, total: 16_200_000 }).text).toBe("Cancelled at 3.0 MB of 16.2 MB; Resume goes on from there.");
    expect([formatBytes(512), formatBytes(16_200_000), formatBytes(4_264_941_228), formatBytes(123_456_789_012)]).toEqual(["512 bytes", "16.2 MB", "4.3 GB", "123 GB"]);
    expect([formatDuration(57), formatDuration(240), formatDuration(4800), formatDuration(7200)]).toEqual(["57 s", "4 min", "1 h 20 min", "2 h"]);
    expect(abilities(["txt2img", "img2img"])).toBe("Generate, Img2img");
    expect(abilities(["inpaint", "outpaint"])).toBe("Inpaint selection, Expand canvas");
  });
});

describe("the Draft button's plan", () => {
  const capabilities = (models: ModelInfo[], over: Partial<Capabilities> = {}): Capabilities => ({
    models,
    unavailable: [],
    registry: [entry("sd-1.5"), { ...entry("sd-turbo", { turbo: true }), name: "SD-Turbo" }, entry("lcm", { recommended: { steps: 4, guidance: 8, scheduler: "lcm" } })],
    previewDecoder: { id: "taesd", registryId: "taesd" },
    downloads: [],
    schedulers: ["euler_a", "lcm", "dpmpp_2m_karras"],
    modes: ["txt2img", "img2img", "inpaint", "outpaint"],
    limits: { maxMessageBytes: 1, maxImagePixels: 1, maxQueuedJobsPerClient: 1, maxVariations: 8, chunkBytes: 1 },
    device: { name: "cpu", description: "CPU" },
    ...over,
  });
  const current = { ...DEFAULT_SETTINGS, prompt: "a lighthouse", model: "sd-1.5", steps: 30, guidance: 6, scheduler: "dpmpp_2m_karras" as const };
  const own = (m: ModelInfo) => settingsForModel(m, { "sd-turbo": { steps: 2 } });

  it("drafts with the chosen model when it takes few steps, with the artist's settings and draft on", () => {
    const plan = planDraft(capabilities([sd, turbo]), { ...current, model: "sd-turbo", steps: 3, guidance: 0, scheduler: "euler_a" }, own);
    expect(plan).toMatchObject({ kind: "ready", taesd: true, settings: { model: "sd-turbo", steps: 3, guidance: 0, scheduler: "euler_a", draft: true, prompt: "a lighthouse" } });
    if (plan.kind === "ready") expect(plan.summary).toBe("Draft: “sd-turbo”, 3 steps, decoded by TAESD.");
    // Drafting models follow no control image: a draft leaves Control out.
    const controlled = planDraft(capabilities([sd, turbo]), { ...current, control: { enabled: true, kind: "scribble", strength: 1, start: 0, end: 1, layerId: 3 } }, own);
    expect(controlled.kind === "ready" && "control" in controlled.settings).toBe(false);
  });

  it("picks an installed Turbo model (before an LCM one) with its own settings when the chosen one needs many steps", () => {
    expect(planDraft(capabilities([sd, lcm, turbo]), current, own)).toMatchObject({ kind: "ready", model: { id: "sd-turbo" }, settings: { model: "sd-turbo", steps: 2, guidance: 0, scheduler: "euler_a", draft: true } });
    expect(planDraft(capabilities([sd, lcm]), current, own)).toMatchObject({ kind: "ready", model: { id: "lcm" }, settings: { steps: 4, guidance: 8, scheduler: "lcm" } });
  });

  it("says which model to pull when none installed takes few steps, and which decoder a draft gets", () => {
    expect(planDraft(capabilities([sd]), current, own)).toEqual({ kind: "refused", message: "Drafts need a Turbo or LCM model: pull “SD-Turbo” in Models (a picture in 1 to 4 steps).", pull: expect.objectContaining({ id: "sd-turbo" }) });
    // Turbo cannot inpaint here: the sentence says what is missing.
    expect(planDraft(capabilities([sd, turbo]), { ...current, mode: "inpaint" }, own)).toMatchObject({ kind: "refused", message: expect.stringMatching(/^No installed Turbo or LCM model can do Inpaint selection: pull/) });
    // The chosen turbo model's settings as its controls hold them (at most 4 steps).
    const noTaesd = planDraft(capabilities([turbo], { previewDecoder: null }), { ...current, model: "sd-turbo" }, own);
    expect(noTaesd).toMatchObject({ kind: "ready", taesd: false, summary: "Draft: “sd-turbo”, 4 steps, decoded by the full VAE (pull TAESD for faster drafts)." });
  });
});
