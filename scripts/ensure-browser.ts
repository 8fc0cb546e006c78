#!/usr/bin/env node
/**
 * `npm test`'s pretest step: the panel's browser test needs a Chromium. Finds one; when there is
 * none and this is Debian or Ubuntu run as root, installs Debian's `chromium` with apt-get; on any
 * other system stops with the one command to run. The test itself still fails, never skips, when
 * the browser is missing, so a skipped install cannot pass unnoticed.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { findChromium } from "./browser";

function say(line: string): void {
  process.stdout.write(`ensure-browser: ${line}\n`);
}

function installCommand(): string {
  switch (process.platform) {
    case "darwin":
      return "brew install --cask chromium (or install Google Chrome), or set CHROME_PATH to a Chrome binary";
    case "win32":
      return "winget install Google.Chrome, or set CHROME_PATH to chrome.exe";
    default:
      return existsSync("/etc/debian_version")
        ? "sudo apt-get install chromium (Ubuntu: sudo apt-get install chromium-browser), or set CHROME_PATH to a Chromium binary"
        : "install Chromium with your system's package manager, or set CHROME_PATH to a Chromium binary";
  }
}

function aptInstallChromium(): boolean {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  for (const args of [["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", "chromium"]]) {
    say(`apt-get ${args.join(" ")}`);
    const run = spawnSync("apt-get", args, { env, stdio: ["ignore", "ignore", "inherit"] });
    if (run.error || run.status !== 0) return false;
  }
  return true;
}

const first = findChromium();
if (first.found) {
  say(`Chromium for the panel's browser test: ${first.path}`);
  process.exit(0);
}
if (process.env.CHROME_PATH || process.env.CHROMIUM_PATH) {
  say(`${first.reason}: fix the variable or unset it.`);
  process.exit(1);
}

const canInstall = process.platform === "linux" && existsSync("/etc/debian_version") && process.getuid?.() === 0;
if (canInstall) {
  say("no Chromium yet for the panel's browser test: installing Debian's chromium package.");
  const installed = aptInstallChromium();
  const second = findChromium();
  if (installed && second.found) {
    say(`installed ${second.path}`);
    process.exit(0);
  }
  say(`apt-get could not install chromium; run: ${installCommand()}`);
  process.exit(1);
}

say(`the panel's browser test needs Chromium and ${first.reason}. Run: ${installCommand()}`);
process.exit(1);
