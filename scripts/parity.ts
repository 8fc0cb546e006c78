/**
 * `npm run parity -- FOLDER`: every reference case in FOLDER (index.json + cases/) through the
 * engine, per stage the max abs error and PASS/FAIL against fixtures/README.md's tolerances.
 * Exit code 1 on any FAIL. Models are resolved by name in the fixtures folder
 * (../shared/fixtures from the project root, or UNDERPAINT_FIXTURES).
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runFolder, type CaseReport } from "./parity/run";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const fixtures = process.env.UNDERPAINT_FIXTURES ?? path.resolve(root, "..", "shared", "fixtures");
const folder = path.resolve(process.argv[2] ?? path.join(fixtures, "reference"));

function print(report: CaseReport): void {
  const header = `${report.name} [${report.kind}${report.run !== "-" ? `, ${report.run}` : ""}]`;
  if (report.kind === "tokenizer") {
    const s = report.stages[0]!;
    console.log(`${s.verdict}  ${header}`);
    return;
  }
  console.log(header);
  for (const s of report.stages) {
    const figures = Number.isNaN(s.maxAbsError) ? "" : `max abs err ${s.maxAbsError.toExponential(2)}  tol ${s.tolerance.toExponential(2)}`;
    console.log(`  ${s.verdict}  ${s.stage.padEnd(34)} ${figures}${s.note ? `  (${s.note})` : ""}`);
  }
}

const reports = await runFolder(folder, fixtures, print);
const stages = reports.flatMap((r) => r.stages);
const count = (v: string) => stages.filter((s) => s.verdict === v).length;
console.log(`\nparity: ${count("PASS")} passed, ${count("FAIL")} failed, ${count("SKIP")} skipped (${reports.length} runs)`);
process.exit(count("FAIL") > 0 ? 1 : 0);
