/**
 * The built panel (plugin/dist: manifest, index.html, bundle, icons) and its .ccx package; then
 * the panel's HTML and bundle in headless Chromium against the real daemon: type a prompt,
 * click Generate, see progress, the live preview and the strip of results. Photoshop is the
 * in-memory one and the sp-* widgets are test stand-ins; the bundle is the one that ships.
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
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PORT } from "../../protocol";
import { findChromium } from "../../scripts/browser";
import { ROOT } from "../helpers/paths";
import { startTestDaemon, TOKEN, type TestDaemon } from "./helpers";
import { startRelay, type Relay } from "./relay";

const browser = findChromium();
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

describe("the panel in headless Chromium against the real daemon", () => {
  let daemon: TestDaemon;
  let relay: Relay;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    // npm test's pretest step installs or asks for a Chromium; a missing browser is a failure, not a reason to skip.
    if (!browser.found) throw new Error(`the panel's browser test needs Chromium: ${browser.reason} (npm test's pretest step says how to install it)`);
    daemon = await startTestDaemon();
    relay = await startRelay(daemon.server.url);
    const harness = await build({
      entryPoints: [path.join(ROOT, "test", "e2e", "browser", "harness.ts")],
      bundle: true,
      format: "iife",
      platform: "browser",
      target: "es2020",
      write: false,
      logLevel: "warning",
    });
    const config = { daemonUrl: relay.url, token: TOKEN, width: 320, height: 240 };
    context = await chromium.launchPersistentContext(path.join(work, "profile"), {
      executablePath: browser.path,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      viewport: { width: 320, height: 900 },
    });
    await context.addInitScript({ content: `window.__underpaintTest = ${JSON.stringify(config)};\n${harness.outputFiles[0]!.text}` });
    page = context.pages()[0] ?? (await context.newPage());
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await relay?.close();
    await daemon?.close();
  });

  it("generates from a prompt: progress, live preview, a strip of results and new layers", { timeout: 240_000 }, async () => {
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(pathToFileURL(path.join(DIST, "index.html")).href);

    await expect.poll(() => page.textContent("#status"), { timeout: 20_000 }).toMatch(/^Connected to the Underpaint daemon/);
    await expect.poll(() => page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value")))).toContain("tiny-sd");
    await page.selectOption("#model select", "tiny-sd");
    await page.fill("#prompt input", "a lighthouse on a cliff at dusk");
    // Sliders: set as the artist would drag them.
    await page.$eval("#steps", (slider) => ((slider as unknown as { value: number }).value = 2));
    await page.$eval("#guidance", (slider) => ((slider as unknown as { value: number }).value = 1));
    await page.$eval("#variations", (slider) => ((slider as unknown as { value: number }).value = 3));
    await page.click("#generate");

    await page.waitForFunction(() => document.querySelector("#results .result") || document.getElementById("error")!.textContent, undefined, { timeout: 200_000 });
    expect(await page.textContent("#error")).toBe("");
    expect(await page.$$eval("#results .result", (items) => items.length)).toBe(3);
    const labels = await page.evaluate(() => (window as unknown as { __progressLabels: string[] }).__progressLabels);
    expect(labels.some((l) => /step 1 of 2/.test(l))).toBe(true);
    // Each step says which variation it belongs to, as the daemon reports it.
    for (const v of [1, 2, 3]) expect(labels, `variation ${v}`).toContain(`Variation ${v} of 3 · step 2 of 2`);
    const steps = labels.filter((l) => /^Variation \d of 3 · step/.test(l));
    expect(steps).toEqual([...steps].sort());
    expect(labels.at(-1)).toBe("Added 3 layers.");
    expect(await page.getAttribute("#progress", "value")).toBe("100");
    const preview = await page.$eval("#preview", (img) => ({ src: (img as HTMLImageElement).src, width: (img as HTMLImageElement).naturalWidth, shown: (img as HTMLElement).style.display !== "none" }));
    expect(preview.src).toMatch(/^data:image\/jpeg;base64,/);
    expect(preview.width).toBeGreaterThan(0);
    expect(preview.shown).toBe(true);
    const thumbnails = await page.$$eval("#results img", (imgs) => imgs.map((img) => (img as HTMLImageElement).naturalWidth));
    expect(thumbnails.every((w) => w > 0)).toBe(true);
    expect(await page.textContent("#error")).toBe("");

    const tree = await page.evaluate(() => {
      const ps = (window as unknown as { __fakePhotoshop: { documents: Array<{ tree(): unknown; history: string[] }> } }).__fakePhotoshop;
      return { tree: ps.documents[0]!.tree(), history: ps.documents[0]!.history };
    });
    const [group] = tree.tree as Array<{ kind: string; children: Array<{ name: string; visible: boolean }> }>;
    expect(group!.kind).toBe("group");
    expect(group!.children.map((l) => l.visible)).toEqual([true, false, false]);
    expect(group!.children[0]!.name).toMatch(/^a lighthouse on a cliff at dusk · seed \d+$/);
    expect(tree.history).toEqual(["Underpaint Generate"]);

    // Choosing another variation shows it alone; "Use seed" fixes the seed field to it.
    await page.click("#results .result:nth-child(2) img");
    await expect
      .poll(() => page.evaluate(() => ((window as unknown as { __fakePhotoshop: { documents: Array<{ tree(): Array<{ children: Array<{ visible: boolean }> }> }> } }).__fakePhotoshop.documents[0]!.tree()[0]!.children.map((l) => l.visible))))
      .toEqual([false, true, false]);
    await page.click("#results .result:nth-child(2) .use-seed");
    const seedText = await page.textContent("#results .result:nth-child(2) sp-detail");
    expect(await page.$eval("#seed input", (input) => (input as HTMLInputElement).value)).toBe(seedText!.replace("seed ", ""));
    expect(await page.$eval("#random-seed", (box) => (box as unknown as { checked: boolean }).checked)).toBe(false);

    await mkdir(path.join(ROOT, "test-results"), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, "test-results", "panel.png"), fullPage: true });
    expect(errors).toEqual([]);
  });

  it("hides the controls a mode does not use", async () => {
    const visible = async (selector: string) => page.$eval(selector, (el) => (el as HTMLElement).style.display !== "none");
    await page.selectOption("#mode select", "expand");
    expect(await visible('[data-control="expand"]')).toBe(true);
    expect(await visible('[data-control="strength"]')).toBe(false);
    expect(await visible('[data-control="source"]')).toBe(false);
    await page.selectOption("#mode select", "img2img");
    expect(await visible('[data-control="expand"]')).toBe(false);
    expect(await visible('[data-control="strength"]')).toBe(true);
    expect(await visible('[data-control="source"]')).toBe(true);
    expect(await visible('[data-control="context"]')).toBe(false);
    await page.selectOption("#mode select", "inpaint");
    expect(await visible('[data-control="context"]')).toBe(true);
    expect(await visible('[data-control="strength"]')).toBe(true);
    expect(await visible('[data-control="source"]')).toBe(false);
  });

  it("lists a model folder that cannot run under the model menu, with the daemon's sentence, and keeps the good ones", { timeout: 30_000 }, async () => {
    // A copy stopped half-way: the UNet's folder is there, model_index.json is not.
    const half = path.join(work, "half-copied");
    await mkdir(path.join(half, "unet"), { recursive: true });
    await writeFile(path.join(half, "unet", "model.onnx"), "");
    await rename(half, path.join(daemon.modelsDir, "half-copied"));
    await expect.poll(() => page.textContent("#unavailable-models"), { timeout: 20_000 }).toMatch(/“half-copied” cannot run here: .*model_index\.json/);
    expect(await page.$eval("#unavailable-models", (el) => (el as HTMLElement).style.display)).not.toBe("none");
    expect(await page.$$eval("#model sp-menu-item", (items) => items.map((i) => i.getAttribute("value")))).toEqual(["tiny-sd", "tiny-sd-inpaint"]);
    await rm(path.join(daemon.modelsDir, "half-copied"), { recursive: true, force: true });
    await expect.poll(() => page.$eval("#unavailable-models", (el) => (el as HTMLElement).style.display), { timeout: 20_000 }).toBe("none");
  });
});
