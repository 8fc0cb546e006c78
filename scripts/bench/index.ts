/**
 * `npm run bench [-- --quick] [--steps N] [--width W] [--model DIR] [--only SECTION,...]`: every measured figure in one
 * run, printed as a table and written to bench/results.json. Ratios are against baselines
 * measured in the same run. The engine section runs on the builder's SD-1.5-architecture models
 * (channel width W), or with --model on any diffusers ONNX export folder, loaded as the daemon
 * loads it. The sdxl section runs the builder's SDXL base 1.0 architecture (full size, or channel
 * width W with --width; a small width with --quick) for one guidance step at 1024x1024 in a
 * process of its own. --only runs the named sections and keeps the other sections' figures in
 * results.json.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { benchCompositing } from "./compositing";
import { benchDraft } from "./draft";
import { benchEngine } from "./engine";
import { benchImaging } from "./imaging";
import { benchInt8 } from "./int8";
import { benchProtocol } from "./protocol";
import { benchSdxl } from "./sdxl";
import { benchTransfer } from "./transfer";
import { machine, writeResults, type Figures } from "./report";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const fixtures = process.env.UNDERPAINT_FIXTURES ?? path.resolve(root, "..", "shared", "fixtures");
const quick = process.argv.includes("--quick");
const stepsArg = process.argv.indexOf("--steps");
const widthArg = process.argv.indexOf("--width");
const modelArg = process.argv.indexOf("--model");
const model = modelArg > 0 ? process.argv[modelArg + 1] : undefined;
const SECTIONS = ["protocol", "compositing", "imaging", "transfer", "engine", "draft", "int8", "sdxl"] as const;
const onlyArg = process.argv.indexOf("--only");
const only = onlyArg > 0 ? new Set((process.argv[onlyArg + 1] ?? "").split(",").filter(Boolean)) : undefined;
for (const name of only ?? []) {
  if (!(SECTIONS as readonly string[]).includes(name)) throw new Error(`--only takes sections among ${SECTIONS.join(", ")}; "${name}" is none of them`);
}
if (only && only.size === 0) throw new Error(`--only needs sections: npm run bench -- --only protocol (among ${SECTIONS.join(", ")})`);
const runs = (name: (typeof SECTIONS)[number]) => !only || only.has(name);
if (modelArg > 0 && !model) throw new Error("--model needs a folder: npm run bench -- --model DIR");
// A folder the daemon would refuse is refused now, before the other sections' minutes.
if (model) await loadModelFolder(model);

const figures: Figures = { ...machine(), "bench.quick": quick };
if (runs("protocol")) Object.assign(figures, await benchProtocol(fixtures, quick ? { size: 1024, runs: 2 } : { size: 4096, runs: 5 }));
if (runs("compositing")) Object.assign(figures, await benchCompositing(fixtures, quick));
if (runs("imaging")) Object.assign(figures, benchImaging(quick));
if (runs("transfer")) Object.assign(figures, await benchTransfer(root, fixtures));
if (runs("engine")) {
  Object.assign(
    figures,
    await benchEngine(root, fixtures, {
      quick,
      ...(stepsArg > 0 ? { steps: Number(process.argv[stepsArg + 1]) } : {}),
      ...(widthArg > 0 ? { width: Number(process.argv[widthArg + 1]) } : {}),
      ...(model ? { model: path.resolve(model) } : {}),
    }),
  );
}
if (runs("draft")) Object.assign(figures, await benchDraft(root, fixtures, { quick }));
if (runs("int8")) Object.assign(figures, await benchInt8(root, fixtures, { quick }));
if (runs("sdxl")) Object.assign(figures, await benchSdxl(root, fixtures, { quick, ...(widthArg > 0 ? { width: Number(process.argv[widthArg + 1]) } : {}) }));
// UNDERPAINT_BENCH_ROOT: write bench/results.json under another folder (the bench test uses a temporary one).
const file = await writeResults(process.env.UNDERPAINT_BENCH_ROOT ?? root, figures, only !== undefined);
console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
