#!/usr/bin/env node
// Builds the daemon (daemon/dist/) and the panel (plugin/dist/) with esbuild.
// --if-needed skips the build when every output is newer than every source.
import { build } from "esbuild";
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const at = (...parts) => path.join(root, ...parts);
const ifNeeded = process.argv.includes("--if-needed");

async function newestMtime(dir) {
  let newest = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (entry.name === "dist" || entry.name === "node_modules") continue;
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? await newestMtime(full) : (await stat(full)).mtimeMs);
  }
  return newest;
}

async function mtime(file) {
  try {
    return (await stat(file)).mtimeMs;
  } catch {
    return 0;
  }
}

const outputs = [at("daemon/dist/cli.js"), at("plugin/dist/index.js"), at("plugin/dist/manifest.json")];
if (ifNeeded) {
  const sources = Math.max(
    ...(await Promise.all(["protocol", "daemon", "plugin", "scripts/build.mjs", "package.json"].map((p) => newestMtime(at(p))))),
    await mtime(at("scripts/build.mjs")),
    await mtime(at("package.json")),
  );
  const built = Math.min(...(await Promise.all(outputs.map(mtime))));
  if (built > sources) process.exit(0);
}

const pkg = JSON.parse(await readFile(at("package.json"), "utf8"));

// The daemon: one ESM file for Node; npm dependencies stay in node_modules (native addons).
await build({
  entryPoints: [at("daemon/cli.ts")],
  outfile: at("daemon/dist/cli.js"),
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  sourcemap: true,
  logLevel: "warning",
});

// The panel: one CommonJS script for UXP (no top-level await); Photoshop's modules come from the host.
await rm(at("plugin/dist"), { recursive: true, force: true });
await build({
  entryPoints: [at("plugin/src/index.ts")],
  outfile: at("plugin/dist/index.js"),
  bundle: true,
  platform: "browser",
  format: "cjs",
  target: "es2020",
  external: ["photoshop", "uxp"],
  supported: { "top-level-await": false },
  define: { __UNDERPAINT_VERSION__: JSON.stringify(pkg.version) },
  sourcemap: "inline",
  logLevel: "warning",
});
// The manifest's network permission is generated from the protocol's port, never "all".
const versionModule = await build({
  entryPoints: [at("protocol/version.ts")],
  bundle: true,
  format: "esm",
  write: false,
  logLevel: "warning",
});
const { DEFAULT_PORT } = await import(
  "data:text/javascript;base64," + Buffer.from(versionModule.outputFiles[0].text).toString("base64")
);
const manifest = JSON.parse(await readFile(at("plugin/manifest.json"), "utf8"));
manifest.version = pkg.version;
manifest.requiredPermissions = {
  ...manifest.requiredPermissions,
  network: { domains: [`ws://127.0.0.1:${DEFAULT_PORT}`, `ws://localhost:${DEFAULT_PORT}`] },
};
await mkdir(at("plugin/dist"), { recursive: true });
await writeFile(at("plugin/dist/manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
await cp(at("plugin/index.html"), at("plugin/dist/index.html"));
await cp(at("plugin/icons"), at("plugin/dist/icons"), { recursive: true });
