/**
 * The built panel (plugin/dist: manifest, index.html, bundle, icons) and its .ccx package; then
 * the panel's HTML and bundle in headless Chromium against the real daemon (pulling from a local
 * hub imitation): set up a model (pull with progress, cancel, resume after a daemon restart),
 * choose models and see their settings applied, generate with a seed past UXP's number range,
 * queue generations and cancel one, switch documents. Photoshop is the in-memory one and the sp-*
 * widgets are test stand-ins; the bundle is the one that ships. Screenshots go to test-results/.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { unzipSync } from "fflate";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PORT } from "../../protocol";
import { findChromium } from "../../scripts/browser";
import { ROOT } from "../helpers/paths";
import type { FakePhotoshop } from "../plugin/fake-photoshop";
import { TOKEN } from "./helpers";
import { startPullingDaemon, type PullingDaemon } from "./pulling-daemon";
import { startRelay, type Relay } from "./relay";

const browser = findChromium();
/** The registry's ControlNets, listed in the Models section after the models and TAESD. */
const CONTROLNET_ROWS = ["controlnet-canny", "controlnet-depth", "controlnet-pose", "controlnet-scribble", "controlnet-lineart", "controlnet-sdxl-canny", "controlnet-sdxl-depth", "controlnet-sdxl-pose"];
const DIST = path.join(ROOT, "plugin", "dist");
let work: string;
let ccx: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "underpaint-panel-"));
  ccx = path.join(work, "underpaint.ccx");
  // `npm run package`: builds the daemon and the panel, then zips plugin/dist.
  execFileSync(process.execPath, [path.join(ROOT, "scripts", "package.mjs"), "--out", ccx], { cwd: ROOT, stdio: "pipe" });
}, 120_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const REQUIRED = [
  "manifest.json",
  "index.html",
  "index.js",
  "icons/plugin.png",
  "icons/plugin@2x.png",
  "icons/panel-dark.png",
  "icons/panel-dark@2x.png",
  "icons/panel-light.png",
  "icons/panel-light@2x.png",
];

describe("the built panel", () => {
  it("has the manifest, the page, the bundle and the icons in plugin/dist and in the .ccx", async () => {
    for (const file of REQUIRED) expect(existsSync(path.join(DIST, file)), file).toBe(true);
    const zip = unzipSync(new Uint8Array(await readFile(ccx)));
    expect(Object.keys(zip).sort()).toEqual([...REQUIRED].sort());
    expect(Buffer.from(zip["index.js"]!).equals(await readFile(path.join(DIST, "index.js")))).toBe(true);
  });

  it("declares a manifest v5 panel for Photoshop 25+ that may reach only the daemon's port", async () => {
    const manifest = JSON.parse(await readFile(path.join(DIST, "manifest.json"), "utf8"));
    expect(manifest).toMatchObject({ manifestVersion: 5, main: "index.html", host: { app: "PS", minVersion: "25.0.0", data: { apiVersion: 2 } } });
    expect(manifest.requiredPermissions.network.domains).toEqual([`ws://127.0.0.1:${DEFAULT_PORT}`, `ws://localhost:${DEFAULT_PORT}`]);
    const [panel] = manifest.entrypoints;
    expect(panel.type).toBe("panel");
    expect(panel.minimumSize.width).toBeGreaterThan(0);
    expect(panel.preferredDockedSize.height).toBeGreaterThan(0);
    expect(panel.icons.map((i: { theme: string[] }) => i.theme.join())).toEqual(["darkest,dark,medium", "lightest,light"]);
    for (const icon of [...panel.icons, ...manifest.icons]) expect(icon.scale).toEqual([1, 2]);
    expect(manifest.icons[0]).toMatchObject({ width: 48, height: 48 });
  });

  it("loads Photoshop's and UXP's modules only through require, left to the host", async () => {
    const bundle = await readFile(path.join(DIST, "index.js"), "utf8");
    const required = [...new Set([...bundle.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]))].sort();
    expect(required).toEqual(["photoshop", "uxp"]);
  });
});

/** What the harness leaves on the page's window: the in-memory Photoshop, the progress labels, the data folder. */
interface PageWindow {
  __fakePhotoshop: FakePhotoshop;
  __progressLabels: string[];
  __dataFiles: Map<string, string>;
}

describe("the panel in headless Chromium against the real daemon", () => {
  let daemon: PullingDaemon;
  let relay: Relay;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];
  const shots = path.join(ROOT, "test-results");
  const turboRow = '#registry-models .setup-model[data-model-id="sd-turbo"]';

  beforeAll(async () => {
    // npm test's pretest step installs or asks for a Chromium; a missing browser is a failure, not a reason to skip.
    if (!browser.found) throw new Error(`the panel's browser test needs Chromium: ${browser.reason} (npm test's pretest step says how to install it)`);
    // The daemon pulls SD-Turbo's replica from the local hub imitation; tiny-sd and its inpainting sibling are installed.
    daemon = await startPullingDaemon(["sd-turbo", "taesd", "sd-1.5-control", "controlnet-scribble"]);
    relay = await startRelay(daemon.url);
    const harness = await build({
      entryPoints: [path.join(ROOT, "test", "e2e", "browser", "harness.ts")],
      bundle: true,
      format: "iife",
      platform: "browser",
      target: "es2020",
      write: false,
      logLevel: "warning",
    });
    // A styles file damaged on disk: the panel must start anyway and say so.
    const config = { daemonUrl: relay.url, token: TOKEN, width: 320, height: 240, dataFiles: { "styles.json": '{"version": 1, "items": [{"name": "Du' } };
    context = await chromium.launchPersistentContext(path.join(work, "profile"), {
      executablePath: browser.path,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 320, height: 900 },
    });
    await context.addInitScript({ content: `window.__underpaintTest = ${JSON.stringify(config)};\n${harness.outputFiles[0]!.text}` });
    page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (error) => errors.push(error.message));
    await mkdir(shots, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await relay?.close();
    await daemon?.close();
  });

  afterEach((test) => {
    // The daemon's own log, for whoever reads a failure.
    if (test.task.result?.state === "fail" && daemon) console.error(daemon.log.join(""));
  });

  const text = (selector: string) => page.textContent(selector);
  const shown = (selector: string) => page.$eval(selector, (el) => (el as HTMLElement).style.display !== "none");
  const value = (selector: string) => page.$eval(selector, (el) => String((el as unknown as { value: unknown }).value));
  const disabled = (selector: string) => page.$eval(selector, (el) => el.hasAttribute("disabled"));
  /** Sets a slider as the artist's drag does: the value, then its change event. */
  const slide = (selector: string, to: number) =>
    page.$eval(
      selector,
      (slider, v) => {
        (slider as unknown as { value: number }).value = v;
        slider.dispatchEvent(new Event("change", { bubbles: true }));
      },
      to,
    );
  const documents = () =>
    page.evaluate(() => (window as unknown as PageWindow).__fakePhotoshop.documents.map((d) => ({ title: d.title, tree: d.tree() as Array<{ kind: string; name: string; children?: Array<{ name: string; visible: boolean }> }>, history: d.history })));
  const labels = () => page.evaluate(() => (window as unknown as PageWindow).__progressLabels);
  const queueStates = () => page.$$eval("#queue .queued .queued-state", (items) => items.map((i) => i.textContent ?? ""));

  it("pulls a model from the Models section with progress, cancels it, and resumes it after the daemon restarts", { timeout: 120_000 }, async () => {
    await page.goto(pathToFileURL(path.join(DIST, "index.html")).href);
    await expect.poll(() => text("#status"), { timeout: 20_000 }).toMatch(/^Connected to the Underpaint daemon .* on CPU\.$/);
    await expect.poll(() => page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value")))).toEqual(["tiny-sd", "tiny-sd-inpaint"]);
    // The damaged styles file did not stop the panel; it says what happened.
    expect(await text("#notice")).toMatch(/The saved styles file was damaged; it was set aside as styles\.json\.damaged/);

    await page.click("#toggle-models");
    expect(await shown("#model-setup")).toBe(true);
    // Every registry entry, with its size, license and what it is for.
    expect(await page.$$eval("#registry-models .setup-model", (rows) => rows.map((r) => r.getAttribute("data-model-id")))).toEqual(["sd-1.5", "sd-1.5-inpainting", "sd-turbo", "lcm-dreamshaper-v7", "sd-1.5-control", "sdxl-turbo", "sdxl-base-1.0", "sdxl-control", "sdxl-lightning", "taesd", ...CONTROLNET_ROWS, "depth-anything-v2-small", "dwpose"]);
    expect(await text('#registry-models [data-model-id="sd-1.5"] .setup-facts')).toBe("about 4.3 GB · 512 px · CreativeML Open RAIL-M");
    expect(await text(`${turboRow} .setup-facts`)).toMatch(/^about 2\.\d GB · 1–4 steps · 512 px · Stability AI Non-Commercial/);
    expect(await text(`${turboRow} .setup-description`)).toMatch(/1 to 4 steps/);
    // SDXL-Lightning: few steps, 1024 px, and that it makes pictures from text only.
    expect(await text('#registry-models [data-model-id="sdxl-lightning"] .setup-facts')).toMatch(/^about 6\.\d GB · 1–4 steps · 1024 px · CreativeML Open RAIL\+\+-M/);
    expect(await text('#registry-models [data-model-id="sdxl-lightning"] .setup-description')).toMatch(/in 4 steps, without guidance\. Text to image only/);
    expect(await page.$$eval("#installed-models .installed-model", (rows) => rows.map((r) => r.textContent))).toEqual(["tiny-sd · Generate, Img2img, Inpaint selection, Expand canvas", "tiny-sd-inpaint · Inpaint selection, Expand canvas"]);

    // Pull, slowly enough to watch: bytes, rate and time left; then Cancel.
    daemon.hub.faults.throttle = 1_000_000;
    expect(await text(`${turboRow} .setup-action`)).toBe("Pull");
    await page.click(`${turboRow} .setup-action`);
    await expect.poll(() => text(`${turboRow} .setup-download`), { timeout: 20_000 }).toMatch(/^[\d.]+ [KM]B of [\d.]+ MB · [\d.]+ [KM]B\/s · about \d+ s left$/);
    expect(Number(await page.getAttribute(`${turboRow} .setup-progress`, "value"))).toBeGreaterThanOrEqual(0);
    expect(await text(`${turboRow} .setup-action`)).toBe("Cancel");
    await page.screenshot({ path: path.join(shots, "panel-model-setup.png"), fullPage: true });
    await page.click(`${turboRow} .setup-action`);
    await expect.poll(() => text(`${turboRow} .setup-download`), { timeout: 20_000 }).toMatch(/^Cancelled at [\d.]+ [KM]B of [\d.]+ MB; Resume goes on from there\.$/);
    expect(await text(`${turboRow} .setup-action`)).toBe("Resume");

    // The daemon goes away: a Generate says why; when it is back, that error goes.
    await daemon.stop();
    await expect.poll(() => text("#status"), { timeout: 20_000 }).toMatch(/Trying again in \d+ s\.$/);
    await page.click("#generate");
    await expect.poll(() => text("#error")).toMatch(/Trying again in \d+ s\.$/);
    expect(await disabled(`${turboRow} .setup-action`)).toBe(true);
    await daemon.start();
    await expect.poll(() => text("#status"), { timeout: 30_000 }).toMatch(/^Connected/);
    await expect.poll(() => shown("#error")).toBe(false);
    // The restarted daemon reports the pull stopped part-way; Resume asks for the rest of the bytes only.
    await expect.poll(() => text(`${turboRow} .setup-download`)).toMatch(/^(Cancelled|Stopped) at [\d.]+ [KM]B of [\d.]+ MB; Resume goes on from there\.$/);
    expect(await text(`${turboRow} .setup-action`)).toBe("Resume");
    daemon.hub.faults.throttle = 0;
    daemon.hub.requests.length = 0;
    await page.click(`${turboRow} .setup-action`);
    await expect.poll(() => page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value"))), { timeout: 60_000 }).toContain("sd-turbo");
    expect(daemon.hub.requests.some((r) => r.range !== null && r.range !== "bytes=0-"), "a ranged request resumed a file").toBe(true);
    await expect.poll(() => shown(`${turboRow} .setup-state`)).toBe(true);
    expect(await shown(`${turboRow} .setup-action`)).toBe(false);
    expect(await text('#installed-models [data-model-id="sd-turbo"]')).toMatch(/Generate/);
  });

  it("applies a model's recommended settings when it is chosen, shows what it supports, and keeps the artist's changes per model", async () => {
    await page.selectOption("#model select", "sd-turbo");
    expect([await value("#steps"), await value("#guidance"), await value("#scheduler")]).toEqual(["1", "0", "euler_a"]);
    expect(await page.getAttribute("#steps", "max")).toBe("4");
    expect(await disabled("#guidance")).toBe(true);
    expect(await disabled("#negative")).toBe(true);
    expect(await text("#guidance-label")).toBe("Guidance (off for this model)");
    expect(await text("#negative-note")).toMatch(/reads no negative prompt/);
    expect(await text("#steps-note")).toMatch(/1 to 4 steps/);

    await page.selectOption("#model select", "tiny-sd");
    expect([await value("#steps"), await value("#guidance"), await value("#scheduler")]).toEqual(["25", "7.5", "dpmpp_2m_karras"]);
    expect(await disabled("#guidance")).toBe(false);
    expect(await disabled("#negative")).toBe(false);
    expect(await shown("#negative-note")).toBe(false);
    await slide("#steps", 2);
    await slide("#guidance", 1);
    await page.selectOption("#model select", "sd-turbo");
    expect(await value("#steps")).toBe("1");
    await slide("#steps", 3);
    await page.selectOption("#model select", "tiny-sd");
    expect([await value("#steps"), await value("#guidance")]).toEqual(["2", "1"]);
    await page.selectOption("#model select", "sd-turbo");
    expect(await value("#steps")).toBe("3");
    await page.selectOption("#model select", "tiny-sd");
  });

  it("generates with a seed of 4000000000: progress, preview, a strip whose seeds Use seed puts back exactly, recent seeds, the history", { timeout: 120_000 }, async () => {
    await page.fill("#prompt input", "a lighthouse on a cliff at dusk");
    await page.click("#random-seed");
    expect(await disabled("#seed")).toBe(false);
    // Anything but a seed says why, and Generate refuses it.
    await page.fill("#seed input", "4294967296");
    expect(await text("#seed-message")).toBe("“4294967296” is larger than the largest seed, 4,294,967,295.");
    await page.click("#generate");
    expect(await text("#error")).toBe("“4294967296” is larger than the largest seed, 4,294,967,295.");
    expect(await shown("#queue")).toBe(false);
    await page.fill("#seed input", "4000000000");
    expect(await shown("#seed-message")).toBe(false);
    await page.$eval("#variations", (slider) => ((slider as unknown as { value: number }).value = 3));
    await page.click("#generate");

    await page.waitForFunction(() => document.querySelector("#results .result") || document.getElementById("error")!.textContent, undefined, { timeout: 100_000 });
    expect(await text("#error")).toBe("");
    expect(await page.$$eval("#results .result sp-detail", (items) => items.map((i) => i.textContent))).toEqual(["seed 4000000000", "seed 4000000001", "seed 4000000002"]);
    const seen = await labels();
    for (const v of [1, 2, 3]) expect(seen, `variation ${v}`).toContain(`Variation ${v} of 3 · step 2 of 2`);
    const steps = seen.filter((l) => /^Variation \d of 3 · step/.test(l));
    expect(steps).toEqual([...steps].sort());
    // Text to image reads no picture; the last word says where the layers went.
    expect(seen.some((l) => /picture/.test(l))).toBe(false);
    expect(seen.at(-1)).toBe("Added 3 layers to “gradient.psd”.");
    expect(await page.getAttribute("#progress", "value")).toBe("100");
    const preview = await page.$eval("#preview", (img) => ({ src: (img as HTMLImageElement).src, width: (img as HTMLImageElement).naturalWidth, shown: (img as HTMLElement).style.display !== "none" }));
    expect(preview.src).toMatch(/^data:image\/jpeg;base64,/);
    expect(preview.width).toBeGreaterThan(0);
    expect(preview.shown).toBe(true);
    expect((await page.$$eval("#results img", (imgs) => imgs.map((img) => (img as HTMLImageElement).naturalWidth))).every((w) => w > 0)).toBe(true);
    expect(await text("#step-time")).toMatch(/^Last step: [\d.]+ s on CPU\.$/);

    const [doc] = await documents();
    const group = doc!.tree[0]!;
    expect(group.kind).toBe("group");
    expect(group.children!.map((l) => l.visible)).toEqual([true, false, false]);
    expect(group.children!.map((l) => l.name)).toEqual([0, 1, 2].map((i) => `a lighthouse on a cliff at dusk · seed ${4_000_000_000 + i}`));
    expect(doc!.history).toEqual(["Underpaint Generate"]);

    // Choosing another variation shows it alone; "Use seed" puts its seed in the field, digit for digit.
    await page.click("#results .result:nth-child(2) img");
    await expect.poll(async () => (await documents())[0]!.tree[0]!.children!.map((l) => l.visible)).toEqual([false, true, false]);
    await page.click("#random-seed");
    expect(await disabled("#seed")).toBe(true);
    await page.click("#results .result:nth-child(2) .use-seed");
    expect(await value("#seed input")).toBe("4000000001");
    expect(await page.$eval("#random-seed", (box) => (box as unknown as { checked: boolean }).checked)).toBe(false);
    // The recent seeds, with their prompts, each to use again.
    expect(await page.$$eval("#recent-seeds .recent-seed", (rows) => rows.map((r) => r.getAttribute("data-seed")))).toEqual(["4000000000", "4000000001", "4000000002"]);
    expect(await text('#recent-seeds [data-seed="4000000002"] .list-text')).toBe("4000000002 · a lighthouse on a cliff at dusk");
    await page.click('#recent-seeds [data-seed="4000000000"] .use-seed');
    expect(await value("#seed input")).toBe("4000000000");
    await page.screenshot({ path: path.join(shots, "panel-generation.png"), fullPage: true });

    // The prompt is in the searchable history, kept in the data folder with the seeds.
    await page.click("#show-history");
    expect(await page.$$eval("#history-list .history-entry .list-text", (rows) => rows.map((r) => r.textContent))).toEqual(["a lighthouse on a cliff at dusk"]);
    await page.fill("#history-search input", "castle");
    expect(await page.$$eval("#history-list .history-entry", (rows) => rows.length)).toBe(0);
    await page.fill("#history-search input", "DUSK cliff");
    expect(await page.$$eval("#history-list .history-entry", (rows) => rows.length)).toBe(1);
    // A style keeps the prompts and settings under a name; applying it puts them back.
    await page.fill("#style-name input", "Dusk, tiny");
    await page.click("#save-style");
    expect(await page.$$eval("#style-list .style", (rows) => rows.map((r) => r.getAttribute("data-style")))).toEqual(["Dusk, tiny"]);
    await page.fill("#prompt input", "something else");
    await slide("#steps", 5);
    await page.click('#style-list [data-style="Dusk, tiny"] .apply-style');
    expect([await value("#prompt input"), await value("#steps")]).toEqual(["a lighthouse on a cliff at dusk", "2"]);
    // A style has no seed: the fixed one stays.
    expect([await value("#seed input"), await page.$eval("#random-seed", (box) => (box as unknown as { checked: boolean }).checked)]).toEqual(["4000000000", false]);
    const files = await page.evaluate(() => Object.fromEntries((window as unknown as PageWindow).__dataFiles));
    expect(Object.keys(files).sort()).toEqual(["prompt-history.json", "recent-seeds.json", "styles.json", "styles.json.damaged"]);
    expect(JSON.parse(files["styles.json"]!).items[0]).toMatchObject({ name: "Dusk, tiny", prompt: "a lighthouse on a cliff at dusk", settings: { steps: 2, model: "tiny-sd" } });
    expect(JSON.parse(files["recent-seeds.json"]!).items.map((r: { seed: number }) => r.seed)).toEqual([4_000_000_000, 4_000_000_001, 4_000_000_002]);
  });

  it("queues three generations, shows each one's position, and cancels one of them", { timeout: 120_000 }, async () => {
    await page.$eval("#variations", (slider) => ((slider as unknown as { value: number }).value = 1));
    await slide("#steps", 12);
    for (let i = 0; i < 3; i++) await page.click("#generate");
    // Generate stays enabled: three rows, the first running, the others behind it.
    const positioned = await page
      .waitForFunction(() => {
        const states = Array.from(document.querySelectorAll("#queue .queued .queued-state")).map((s) => s.textContent ?? "");
        return states.length === 3 && /^running: step \d+ of 12$/.test(states[0]!) && states[1] === "1 ahead" && states[2] === "2 ahead";
      }, undefined, { timeout: 30_000, polling: 20 })
      .then(() => true, () => false);
    expect(positioned, `the first running, the others "1 ahead" and "2 ahead" (now: ${JSON.stringify(await queueStates())})`).toBe(true);
    await page.screenshot({ path: path.join(shots, "panel-queue.png"), fullPage: true });
    expect(await disabled("#generate")).toBe(false);
    await page.click("#queue .queued:nth-child(3) .cancel-job");
    await page.waitForFunction(() => document.querySelectorAll("#queue .queued").length === 0, undefined, { timeout: 100_000 });
    expect(await text("#error")).toBe("");
    const [doc] = await documents();
    // The first generation's group, then two more: the cancelled one wrote nothing.
    expect(doc!.tree.filter((l) => l.kind === "group")).toHaveLength(3);
    expect(doc!.history.filter((h) => h === "Underpaint Generate")).toHaveLength(3);
    expect(await page.$$eval("#results .result", (items) => items.length)).toBe(1);
    const seen = await labels();
    expect(seen).toContain("Added 1 layer to “gradient.psd”.");
  });

  it("clears the strip and the preview when another document comes to the front, and a strip click never touches another document", { timeout: 60_000 }, async () => {
    const open = (title: string) =>
      page.evaluate((t) => {
        const ps = (window as unknown as PageWindow).__fakePhotoshop;
        ps.openDocument({ title: t, width: 64, height: 64, layers: [{ name: "Background", background: true, pixels: { width: 64, height: 64, data: new Uint8Array(64 * 64 * 4).fill(200) } }] });
      }, title);
    const close = (title: string) =>
      page.evaluate((t) => {
        const ps = (window as unknown as PageWindow).__fakePhotoshop;
        ps.closeDocument(ps.documents.find((d) => d.title === t)!);
      }, title);
    // Back in the panel after switching documents.
    await open("second.psd");
    await page.evaluate(() => window.dispatchEvent(new Event("focus")));
    await expect.poll(() => page.$$eval("#results .result", (items) => items.length)).toBe(0);
    expect(await shown("#preview")).toBe(false);
    await close("second.psd");

    // A strip, then another document in front without the panel hearing of it: the click checks.
    await slide("#steps", 1);
    await page.click("#generate");
    await page.waitForFunction(() => document.querySelectorAll("#results .result").length === 1 && document.querySelectorAll("#queue .queued").length === 0, undefined, { timeout: 60_000 });
    const before = (await documents())[0]!.tree;
    await open("third.psd");
    await page.$eval("#results .result img", (img) => (img as HTMLElement).click());
    await expect.poll(() => text("#notice")).toBe("“gradient.psd” is no longer in front, so its variations left the strip; they stay in its layers.");
    expect(await page.$$eval("#results .result", (items) => items.length)).toBe(0);
    const after = await documents();
    expect(after[0]!.tree).toEqual(before);
    expect(after[1]!.tree).toEqual([{ kind: "pixel", name: "Background", visible: true }].map((l) => expect.objectContaining(l)));
    expect(after[1]!.history).toEqual([]);
    await close("third.psd");
  });

  it("shows the pairing token while it is typed and hides it after; pairing reads it even where a password field cannot be read", { timeout: 30_000 }, async () => {
    await page.click("#change-token");
    expect(await shown("#pairing")).toBe(true);
    expect(await page.getAttribute("#token", "type")).toBe("password");
    await page.focus("#token input");
    expect(await page.getAttribute("#token", "type")).toBe("text");
    await page.fill("#token input", TOKEN);
    await page.focus("#prompt input");
    expect(await page.getAttribute("#token", "type")).toBe("password");
    await page.click("#pair");
    expect(await text("#error")).toBe("");
    await expect.poll(() => text("#status"), { timeout: 20_000 }).toMatch(/^Connected/);
    expect(await shown("#pairing")).toBe(false);
  });

  it("hides the controls a mode does not use", async () => {
    await page.selectOption("#mode select", "expand");
    expect(await shown('[data-control="expand"]')).toBe(true);
    expect(await shown('[data-control="strength"]')).toBe(false);
    expect(await shown('[data-control="source"]')).toBe(false);
    await page.selectOption("#mode select", "img2img");
    expect(await shown('[data-control="expand"]')).toBe(false);
    expect(await shown('[data-control="strength"]')).toBe(true);
    expect(await shown('[data-control="source"]')).toBe(true);
    expect(await shown('[data-control="context"]')).toBe(false);
    await page.selectOption("#mode select", "inpaint");
    expect(await shown('[data-control="context"]')).toBe(true);
    expect(await shown('[data-control="strength"]')).toBe(true);
    expect(await shown('[data-control="source"]')).toBe(false);
  });

  it("lists a model folder that cannot run under the model menu, with the daemon's sentence, and keeps the good ones", { timeout: 30_000 }, async () => {
    // A copy stopped half-way: the UNet's folder is there, model_index.json is not.
    const half = path.join(work, "half-copied");
    await mkdir(path.join(half, "unet"), { recursive: true });
    await writeFile(path.join(half, "unet", "model.onnx"), "");
    await rename(half, path.join(daemon.modelsDir, "half-copied"));
    await expect.poll(() => text("#unavailable-models"), { timeout: 20_000 }).toMatch(/“half-copied” cannot run here: .*model_index\.json/);
    expect(await shown("#unavailable-models")).toBe(true);
    expect(await page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value")))).toEqual(["sd-turbo", "tiny-sd", "tiny-sd-inpaint"]);
    await rm(path.join(daemon.modelsDir, "half-copied"), { recursive: true, force: true });
    await expect.poll(() => shown("#unavailable-models"), { timeout: 20_000 }).toBe(false);
    expect(errors).toEqual([]);
  });

  it("offers TAESD in the Models section and pulls it; Draft on a model that needs many steps drafts with the installed Turbo model, draft: true, decoded by TAESD", { timeout: 120_000 }, async () => {
    const taesdRow = '#registry-models .setup-model[data-model-id="taesd"]';
    await page.selectOption("#mode select", "generate");
    await page.selectOption("#model select", "tiny-sd");
    if (!(await shown("#model-setup"))) await page.click("#toggle-models");
    // Not installed: offered in the Models section, and under the Draft button. (sd-turbo keeps the 3 steps set for it above.)
    expect(await text(`${taesdRow} .setup-name`)).toBe("Fast previews and drafts");
    expect(await text(`${taesdRow} .setup-facts`)).toBe("TAESD (tiny autoencoder) · about 9.8 MB · MIT");
    expect(await shown(`${taesdRow} .setup-state`)).toBe(false);
    expect(await text(`${taesdRow} .setup-action`)).toBe("Pull");
    expect(await text("#draft-note")).toBe("Draft: “sd-turbo”, 3 steps, decoded by the full VAE (pull TAESD for faster drafts).");
    expect(await text("#draft-pull")).toBe("Pull TAESD");
    await page.click(`${taesdRow} .setup-action`);
    await expect.poll(() => shown(`${taesdRow} .setup-state`), { timeout: 60_000 }).toBe(true);
    expect(await shown(`${taesdRow} .setup-action`)).toBe(false);
    // Installed beside the models, never among them.
    expect(await page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value")))).toEqual(["sd-turbo", "tiny-sd", "tiny-sd-inpaint"]);
    await expect.poll(() => text("#draft-note")).toBe("Draft: “sd-turbo”, 3 steps, decoded by TAESD.");
    expect(await shown("#draft-pull")).toBe(false);

    await page.fill("#prompt input", "a quick study of a harbour");
    const groups = (await documents())[0]!.tree.filter((l) => l.kind === "group").length;
    const submits = relay.sent.length;
    await page.click("#draft");
    await page.waitForFunction(() => document.querySelectorAll("#queue .queued").length === 0 && document.querySelector("#results .result"), undefined, { timeout: 100_000 });
    expect(await text("#error")).toBe("");
    // The job: the Turbo model with its settings as the panel keeps them for it, draft on; the model menu stays on tiny-sd.
    const submit = relay.sent.slice(submits).find((m): m is { type: "submit"; job: Record<string, unknown> } => (m as { type?: string }).type === "submit");
    expect(submit?.job).toMatchObject({ model: "sd-turbo", steps: 3, guidance: 0, scheduler: "euler_a", draft: true, prompt: "a quick study of a harbour" });
    expect(await value("#model")).toBe("tiny-sd");
    // TAESD decoded it: no notice that the VAE did, and previews at TAESD's size rather than one pixel a latent.
    expect(await text("#notice")).not.toMatch(/decoded by the VAE/);
    expect(await page.$eval("#preview", (img) => (img as HTMLImageElement).naturalWidth)).toBeGreaterThan(100);
    const [doc] = await documents();
    expect(doc!.tree.filter((l) => l.kind === "group")).toHaveLength(groups + 1);
    expect(doc!.tree[0]!.children!.map((l) => l.name)).toEqual([expect.stringMatching(/^a quick study of a harbour · seed \d+$/)]);
    await page.screenshot({ path: path.join(shots, "panel-draft.png"), fullPage: true });
    expect(errors).toEqual([]);
  });

  it("pulls sd-1.5-control and the scribble ControlNet from the Control section, previews the scribble as the ControlNet reads it, and runs a control job whose picture differs from the same job without control", { timeout: 300_000 }, async () => {
    await page.selectOption("#mode select", "generate");
    await page.selectOption("#model select", "tiny-sd");
    // Off by default; on, with a model that cannot follow control, one sentence says which to pull.
    expect(await page.$eval("#control-on", (box) => (box as unknown as { checked: boolean }).checked)).toBe(false);
    expect(await shown("#control-fields")).toBe(false);
    await page.click("#control-on");
    expect(await text("#control-note")).toMatch(/^“tiny-sd” cannot follow a control image: pull “Stable Diffusion 1\.5 \(ControlNet\)” \(sd-1\.5-control\), a model that can, and choose it\.$/);
    expect(await shown("#control-fields")).toBe(false);
    expect(await text("#control-pull")).toBe("Pull Stable Diffusion 1.5 (ControlNet)");
    await page.click("#control-pull");
    await expect.poll(() => page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value"))), { timeout: 120_000 }).toContain("sd-1.5-control");
    await page.selectOption("#model select", "sd-1.5-control");

    // The model can follow control; the scribble ControlNet is not installed yet: offered here and in the Models section.
    const scribbleRow = '#registry-models .setup-model[data-model-id="controlnet-scribble"]';
    expect(await text(`${scribbleRow} .setup-name`)).toBe("ControlNet Scribble (SD 1.5)");
    expect(await text(`${scribbleRow} .setup-action`)).toBe("Pull");
    await expect.poll(() => text("#control-note")).toBe("The scribble ControlNet is not installed: pull it to use it.");
    expect(await text("#control-pull")).toBe("Pull ControlNet Scribble (SD 1.5)");
    await page.click("#control-pull");
    await expect.poll(() => shown(`${scribbleRow} .setup-state`), { timeout: 120_000 }).toBe(true);
    await expect.poll(() => page.$$eval("#control-kind sp-menu-item", (items) => items.map((i) => i.textContent))).toContain("Scribble");
    expect(await shown("#control-fields")).toBe(true);
    expect(await shown("#control-note")).toBe(false);

    // The artist draws a scribble: black strokes (a cross and a box) on a transparent layer above a white background.
    await page.evaluate(() => {
      const ps = (window as unknown as PageWindow).__fakePhotoshop;
      const [w, h] = [160, 120];
      const strokes = new Uint8Array(w * h * 4);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const line = Math.abs(x - 80) < 3 || Math.abs(y - 60) < 3 || ((x === 20 || x === 140) && y >= 20 && y <= 100) || ((y === 20 || y === 100) && x >= 20 && x <= 140);
          if (line) strokes[(y * w + x) * 4 + 3] = 255;
        }
      }
      ps.openDocument({ title: "sketch.psd", width: w, height: h, layers: [{ name: "Scribble", pixels: { width: w, height: h, data: strokes } }, { name: "Background", background: true, fill: [255, 255, 255, 255] }] });
    });
    await page.evaluate(() => window.dispatchEvent(new Event("focus")));
    await expect.poll(() => page.$$eval("#control-layer sp-menu-item", (items) => items.map((i) => i.textContent))).toEqual(["Scribble", "Background"]);
    expect(await page.$eval("#control-layer", (d) => (d as unknown as { selectedIndex: number }).selectedIndex)).toBe(0);
    // The preview is the control image as the daemon makes it: the strokes white on black.
    await expect.poll(() => page.$eval("#control-preview", (img) => (img as HTMLImageElement).naturalWidth), { timeout: 20_000 }).toBeGreaterThan(0);
    expect(await text("#control-preview-note")).toBe("What the ControlNet follows: scribble from “sketch.psd” › “Scribble”.");
    const samples = await page.$eval("#control-preview", (img) => {
      const image = img as HTMLImageElement;
      const canvas = document.createElement("canvas");
      [canvas.width, canvas.height] = [image.naturalWidth, image.naturalHeight];
      const context = canvas.getContext("2d")!;
      context.drawImage(image, 0, 0);
      const at = (fx: number, fy: number) => context.getImageData(Math.floor(fx * canvas.width), Math.floor(fy * canvas.height), 1, 1).data[0];
      return { centre: at(0.5, 0.5), corner: at(0.05, 0.05), inside: at(0.3, 0.3) };
    });
    expect(samples).toEqual({ centre: 255, corner: 0, inside: 0 });

    // A control job: two steps, a fixed seed; the result layer arrives in the sketch.
    await page.fill("#prompt input", "a castle on a hill");
    await slide("#steps", 2);
    if (await page.$eval("#random-seed", (box) => (box as unknown as { checked: boolean }).checked)) await page.click("#random-seed");
    await page.fill("#seed input", "42");
    const layerPixels = () =>
      page.evaluate(() => {
        const doc = (window as unknown as PageWindow).__fakePhotoshop.documents.find((d) => d.title === "sketch.psd")!;
        const group = doc.tree()[0]!;
        const layer = doc.findState(group.children![0]!.id)!;
        let hash = 0x811c9dc5;
        for (const v of layer.content!.data) hash = Math.imul(hash ^ Math.round(v * 255), 0x01000193);
        return { group: group.name, layer: group.children![0]!.name, hash: hash >>> 0 };
      });
    const generate = async () => {
      const groups = (await documents()).find((d) => d.title === "sketch.psd")!.tree.filter((l) => l.kind === "group").length;
      await page.click("#generate");
      await page.waitForFunction(() => document.querySelectorAll("#queue .queued").length === 0, undefined, { timeout: 240_000 });
      expect(await text("#error")).toBe("");
      const doc = (await documents()).find((d) => d.title === "sketch.psd")!;
      expect(doc.tree.filter((l) => l.kind === "group")).toHaveLength(groups + 1);
      return layerPixels();
    };
    const submits = relay.sent.length;
    const steered = await generate();
    expect(steered.layer).toBe("a castle on a hill · seed 42");
    const submit = relay.sent.slice(submits).find((m): m is { type: "submit"; job: Record<string, unknown> } => (m as { type?: string }).type === "submit");
    expect(submit?.job).toMatchObject({ model: "sd-1.5-control", seed: 42, steps: 2, control: { kind: "scribble", strength: 1, start: 0, end: 1, controlNet: "controlnet-scribble", image: { width: 160, height: 120, channels: 4 } } });
    await page.screenshot({ path: path.join(shots, "panel-control.png"), fullPage: true });
    // The same job without control: another picture.
    await page.click("#control-on");
    expect(await shown("#control-fields")).toBe(false);
    const plain = await generate();
    const plainSubmit = relay.sent.slice(submits).filter((m) => (m as { type?: string }).type === "submit").at(-1) as { job: Record<string, unknown> };
    expect(plainSubmit.job.control).toBeUndefined();
    expect(plain.layer).toBe(steered.layer);
    expect(plain.hash).not.toBe(steered.hash);
    // The artist's scribble is as it was drawn.
    const sketch = (await documents()).find((d) => d.title === "sketch.psd")!;
    expect(sketch.tree.slice(-2).map((l) => [l.name, (l as unknown as { visible: boolean }).visible])).toEqual([["Scribble", true], ["Background", true]]);
    expect(errors).toEqual([]);
  });
});
