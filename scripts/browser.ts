/**
 * Where the panel's browser test finds a Chromium: CHROME_PATH (or CHROMIUM_PATH) when set, else
 * the usual names on PATH, else the usual install places. Shared by `npm test`'s pretest step
 * (scripts/ensure-browser.ts) and the test itself, so both look in the same places.
 */
import { accessSync, constants, existsSync } from "node:fs";
import path from "node:path";

const NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"];

const PLACES: Partial<Record<NodeJS.Platform, string[]>> = {
  linux: ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome", "/snap/bin/chromium"],
  darwin: [
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
  ],
  win32: [
    "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
    "C:\\Program Files (x86)\\Google\\Chrome\\Application\\chrome.exe",
  ],
};

export type BrowserLookup =
  | { found: true; path: string; from: string }
  | { found: false; reason: string };

function executable(file: string): boolean {
  try {
    accessSync(file, process.platform === "win32" ? constants.F_OK : constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  const suffixes = process.platform === "win32" ? [".exe", ""] : [""];
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    for (const suffix of suffixes) {
      const file = path.join(dir, name + suffix);
      if (existsSync(file) && executable(file)) return file;
    }
  }
  return undefined;
}

/** The Chromium the browser test should drive, or why there is none. A path set by hand is never second-guessed. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): BrowserLookup {
  for (const variable of ["CHROME_PATH", "CHROMIUM_PATH"]) {
    const given = env[variable];
    if (!given) continue;
    if (existsSync(given) && executable(given)) return { found: true, path: given, from: variable };
    return { found: false, reason: `${variable} is ${given}, which is not an executable file` };
  }
  for (const name of NAMES) {
    const file = onPath(name, env);
    if (file) return { found: true, path: file, from: "PATH" };
  }
  for (const file of PLACES[process.platform] ?? []) {
    if (existsSync(file) && executable(file)) return { found: true, path: file, from: "install place" };
  }
  return { found: false, reason: `no Chromium or Chrome was found (CHROME_PATH, ${NAMES.join(", ")} on PATH, ${(PLACES[process.platform] ?? []).join(", ") || "no usual places on this system"})` };
}
