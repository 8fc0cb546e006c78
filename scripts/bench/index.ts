/**
 * `npm run bench [-- --quick]`: every measured figure in one run, printed as a table and
 * written to bench/results.json. Ratios are against baselines measured in the same run.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { benchCompositing } from "./compositing";
import { benchProtocol } from "./protocol";
import { machine, writeResults, type Figures } from "./report";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const fixtures = process.env.UNDERPAINT_FIXTURES ?? path.resolve(root, "..", "shared", "fixtures");
const quick = process.argv.includes("--quick");

const figures: Figures = { ...machine(), "bench.quick": quick };
Object.assign(figures, await benchProtocol(fixtures, quick ? { size: 1024, runs: 2 } : { size: 4096, runs: 5 }));
Object.assign(figures, await benchCompositing(fixtures, quick));
const file = await writeResults(root, figures);
console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
