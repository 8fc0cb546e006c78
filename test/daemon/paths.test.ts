import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { cacheDir, configDir, defaultModelsDir } from "../../daemon/paths";

const home = os.homedir();

describe("cacheDir", () => {
  it("UNDERPAINT_CACHE_DIR overrides on every system", () => {
    for (const platform of ["linux", "darwin", "win32"] as const) {
      expect(cacheDir({ UNDERPAINT_CACHE_DIR: "/elsewhere", XDG_CACHE_HOME: "/xdg", LOCALAPPDATA: "C:\\Local" }, platform)).toBe("/elsewhere");
    }
  });

  it("Linux: $XDG_CACHE_HOME/underpaint, else ~/.cache/underpaint (an empty XDG_CACHE_HOME counts as unset)", () => {
    expect(cacheDir({ XDG_CACHE_HOME: "/xdg" }, "linux")).toBe(path.join("/xdg", "underpaint"));
    expect(cacheDir({}, "linux")).toBe(path.join(home, ".cache", "underpaint"));
    expect(cacheDir({ XDG_CACHE_HOME: "" }, "linux")).toBe(path.join(home, ".cache", "underpaint"));
  });

  it("macOS: ~/Library/Caches/Underpaint", () => {
    expect(cacheDir({ XDG_CACHE_HOME: "/xdg" }, "darwin")).toBe(path.join(home, "Library", "Caches", "Underpaint"));
  });

  it("Windows: %LOCALAPPDATA%/Underpaint/cache, else ~/AppData/Local/Underpaint/cache", () => {
    expect(cacheDir({ LOCALAPPDATA: "C:\\Users\\a\\AppData\\Local" }, "win32")).toBe(path.join("C:\\Users\\a\\AppData\\Local", "Underpaint", "cache"));
    expect(cacheDir({}, "win32")).toBe(path.join(home, "AppData", "Local", "Underpaint", "cache"));
  });

  it("is apart from the config and models folders", () => {
    for (const platform of ["linux", "darwin", "win32"] as const) {
      const cache = cacheDir({}, platform);
      expect(cache).not.toBe(configDir({}, platform));
      expect(defaultModelsDir({}, platform).startsWith(cache)).toBe(false);
    }
  });
});
