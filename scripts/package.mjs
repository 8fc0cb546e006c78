#!/usr/bin/env node
// Packages the panel as an installable .ccx (a zip of the built plugin/dist folder, as Adobe's
// UXP Developer Tool makes it): `npm run package` [-- --out FILE] [--no-build].
// fflate writes the zip: pure JavaScript with no dependencies of its own, and it reads zips
// back too, which the tests use.
import { execFileSync } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { zipSync } from "fflate";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = path.join(root, "plugin", "dist");
const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const out = path.resolve(outIndex >= 0 && args[outIndex + 1] ? args[outIndex + 1] : path.join(root, "underpaint.ccx"));

if (!args.includes("--no-build")) execFileSync(process.execPath, [path.join(root, "scripts", "build.mjs")], { stdio: "inherit" });

async function collect(dir, prefix = "") {
  const files = {};
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const name = prefix + entry.name;
    if (entry.isDirectory()) Object.assign(files, await collect(path.join(dir, entry.name), `${name}/`));
    else files[name] = new Uint8Array(await readFile(path.join(dir, entry.name)));
  }
  return files;
}

const files = await collect(dist);
const manifest = JSON.parse(new TextDecoder().decode(files["manifest.json"] ?? new Uint8Array()) || "null");
const needed = ["manifest.json", manifest?.main ?? "index.html", "index.js", ...(manifest?.icons ?? []).map((i) => i.path)];
const missing = needed.filter((name) => !files[name]);
if (missing.length) {
  console.error(`plugin/dist lacks ${missing.join(", ")}: run \`npm run build\` first.`);
  process.exit(1);
}
// A fixed date keeps the package byte-identical from build to build.
const zip = zipSync(files, { level: 9, mtime: new Date("2024-01-01T00:00:00Z") });
await writeFile(out, zip);
console.log(`wrote ${path.relative(process.cwd(), out) || out} (${Object.keys(files).length} files, ${Math.round(zip.byteLength / 1024)} KiB)`);
