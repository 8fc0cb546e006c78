#!/usr/bin/env node
// The `underpaint` command: runs the built daemon CLI (npm install builds it; `npm run build` rebuilds).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../daemon/dist/cli.js", import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write("underpaint is not built yet: run `npm run build` in the underpaint folder.\n");
  process.exit(1);
}
await import(cli);
