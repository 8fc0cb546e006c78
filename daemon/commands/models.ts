/**
 * `underpaint models list | pull | remove | verify | add`: the models folder from the command line.
 * Results go to stdout, progress and problems to stderr; every failure is one sentence with a
 * code and a non-zero exit status.
 */
import { lstat, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { discoverModels } from "../models/discover";
import { ModelInstallError } from "../models/install-errors";
import { addLocalModel, removeModel } from "../models/local";
import { readManifest } from "../models/manifest";
import { PARTIAL_PREFIX, PROGRESS_FILE, STATE_FILE, formatBytes, lockOwner, pidAlive } from "../models/model-store";
import { pullModel } from "../models/pull";
import { loadRegistry } from "../models/registry";
import { findDepthEstimators } from "../models/depth-estimator-folder";
import { findPoseEstimators } from "../models/pose-estimator-folder";
import { findControlNets } from "../models/controlnet-folder";
import { findPreviewDecoders } from "../models/taesd-folder";
import { verifyModel } from "../models/verify";
import { defaultModelsDir } from "../paths";
import { UsageError } from "./args";
import { DownloadProgress } from "./download-progress";

export const MODELS_USAGE = `underpaint models list [--json]                         installed models, and the ones the registry knows
  underpaint models pull ID|OWNER/NAME [--revision REV] [--as NAME] [--force]
                                                          install a model from the Hugging Face Hub
  underpaint models remove ID                             delete an installed model
  underpaint models verify ID                             re-check every byte of an installed model
  underpaint models add PATH [--as NAME] [--copy]         use a model folder you already have
      (each takes --models DIR; HF_ENDPOINT picks the hub, HF_TOKEN is sent for gated repos)`;

const out = (line = "") => process.stdout.write(`${line}\n`);
const err = (line: string) => process.stderr.write(`${line}\n`);

export async function modelsCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case "list":
        return await list(rest);
      case "pull":
        return await pull(rest);
      case "remove":
      case "rm":
        return await remove(rest);
      case "verify":
        return await verify(rest);
      case "add":
        return await add(rest);
      case undefined:
        throw new UsageError("models needs a subcommand: list, pull, remove, verify or add.");
      default:
        throw new UsageError(`Unknown models subcommand "${sub}" (list, pull, remove, verify, add).`);
    }
  } catch (error) {
    if (error instanceof ModelInstallError) {
      err(`error (${error.code}): ${error.message}`);
      process.exitCode = error.code === "cancelled" ? 130 : 1;
      return;
    }
    throw error;
  }
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`models needs exactly one ${what}${positionals.length ? ` (got ${positionals.join(" ")})` : ""}.`);
  return positionals[0]!;
}

// ---- list ----

interface Unfinished {
  id: string;
  bytes: number | null;
  total: number | null;
  running: boolean;
  request: string | null;
}

async function unfinishedDownloads(modelsDir: string): Promise<Unfinished[]> {
  let names: string[];
  try {
    names = await readdir(modelsDir);
  } catch {
    return [];
  }
  const found: Unfinished[] = [];
  for (const name of names.filter((n) => n.startsWith(PARTIAL_PREFIX)).sort()) {
    const dir = join(modelsDir, name);
    const read = async (file: string) => {
      try {
        return JSON.parse(await readFile(join(dir, file), "utf8")) as Record<string, unknown>;
      } catch {
        return null;
      }
    };
    const progress = await read(PROGRESS_FILE);
    const state = await read(STATE_FILE);
    const owner = await lockOwner(dir);
    found.push({
      id: name.slice(PARTIAL_PREFIX.length),
      bytes: typeof progress?.bytes === "number" ? progress.bytes : null,
      total: typeof progress?.total === "number" ? progress.total : null,
      running: owner !== null && pidAlive(owner),
      request: typeof state?.request === "string" ? state.request : null,
    });
  }
  return found;
}

async function list(argv: string[]): Promise<void> {
  // `models list | head` closes the pipe early: that is not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
  const { values, positionals } = parseArgs({ args: argv, options: { models: { type: "string" }, json: { type: "boolean" } }, allowPositionals: true, strict: true });
  if (positionals.length) throw new UsageError(`models list takes no arguments (got ${positionals.join(" ")}).`);
  const modelsDir = values.models ?? defaultModelsDir();
  const { models, broken } = await discoverModels(modelsDir);
  const registry = loadRegistry();
  const installed = await Promise.all(
    models.map(async (m) => {
      const manifest = await readManifest(m.dir);
      const linked = await lstat(join(modelsDir, m.id)).then((s) => s.isSymbolicLink(), () => false);
      const source = manifest?.source.kind === "hub" ? `${manifest.source.repo}@${manifest.source.commit.slice(0, 12)}` : linked ? `link to ${m.dir}` : manifest?.source.kind === "local" ? `copy of ${manifest.source.path}` : "added by hand";
      return { id: m.id, kind: m.kind, modes: m.modes, nativeResolution: m.nativeResolution, turbo: m.turbo, bytes: m.weightsBytes, source };
    }),
  );
  const previews = await findPreviewDecoders(modelsDir);
  const previewFolders = [...(previews.found ? [previews.found] : []), ...previews.broken];
  const controlNets = await findControlNets(modelsDir, {});
  const depth = await findDepthEstimators(modelsDir, {});
  const depthFolders = [...(depth.found ? [depth.found] : []), ...depth.broken];
  const pose = await findPoseEstimators(modelsDir, {});
  const poseFolders = [...(pose.found ? [pose.found] : []), ...pose.broken];
  const ids = new Set([
    ...models.map((m) => m.id),
    ...broken.map((b) => b.id),
    ...previewFolders.map((p) => p.id),
    ...controlNets.found.map((c) => c.id),
    ...controlNets.broken.map((c) => c.id),
    ...depthFolders.map((d) => d.id),
    ...poseFolders.map((d) => d.id),
  ]);
  const available = registry.models.filter((e) => !ids.has(e.id));
  const availablePreviewDecoders = registry.previewDecoders.filter((e) => !ids.has(e.id));
  const availableControlNets = registry.controlNets.filter((e) => !ids.has(e.id));
  const availableDepthEstimators = registry.depthEstimators.filter((e) => !ids.has(e.id));
  const availablePoseEstimators = registry.poseEstimators.filter((e) => !ids.has(e.id));
  const unfinished = await unfinishedDownloads(modelsDir);

  if (values.json) {
    out(
      JSON.stringify(
        {
          modelsDir,
          installed,
          broken: broken.map((b) => ({ id: b.id, code: b.error.code, message: b.error.message })),
          unfinished,
          available: available.map(({ id, name, repo, revision, pinned, kind, nativeResolution, turbo, recommended, license }) => ({
            id, name, repo, revision, pinned, kind, nativeResolution, turbo, recommended, license,
          })),
          previewDecoder: previews.found ? { id: previews.found.id, dir: previews.found.dir, bytes: previews.found.weightsBytes, registryId: previews.found.registryId } : null,
          brokenPreviewDecoders: previews.broken.map((b) => ({ id: b.id, code: b.error.code, message: b.error.message })),
          availablePreviewDecoders: availablePreviewDecoders.map(({ id, name, repo, revision, pinned, kind, license }) => ({ id, name, repo, revision, pinned, kind, license })),
          controlNets: controlNets.found.map((c) => ({ id: c.id, name: c.name, kind: c.kind, dir: c.dir, bytes: c.weightsBytes, registryId: c.registryId })),
          brokenControlNets: controlNets.broken.map((b) => ({ id: b.id, code: b.error.code, message: b.error.message })),
          availableControlNets: availableControlNets.map(({ id, name, repo, revision, pinned, control, license }) => ({ id, name, repo, revision, pinned, control, license })),
          depthEstimator: depth.found ? { id: depth.found.id, dir: depth.found.dir, bytes: depth.found.weightsBytes, registryId: depth.found.registryId } : null,
          brokenDepthEstimators: depth.broken.map((b) => ({ id: b.id, code: b.error.code, message: b.error.message })),
          availableDepthEstimators: availableDepthEstimators.map(({ id, name, repo, revision, pinned, license }) => ({ id, name, repo, revision, pinned, license })),
          poseEstimator: pose.found ? { id: pose.found.id, dir: pose.found.dir, bytes: pose.found.weightsBytes, registryId: pose.found.registryId } : null,
          brokenPoseEstimators: pose.broken.map((b) => ({ id: b.id, code: b.error.code, message: b.error.message })),
          availablePoseEstimators: availablePoseEstimators.map(({ id, name, repo, revision, pinned, license }) => ({ id, name, repo, revision, pinned, license })),
        },
        null,
        2,
      ),
    );
    return;
  }
  out(`Models in ${modelsDir}:`);
  if (!installed.length && !broken.length && !previewFolders.length && !depthFolders.length && !poseFolders.length) out("  (none yet)");
  const width = Math.max(12, ...installed.map((m) => m.id.length), ...broken.map((b) => b.id.length));
  for (const m of installed) {
    const abilities = [m.kind, `${m.nativeResolution}px`, ...(m.turbo ? ["turbo"] : [])].join(", ");
    out(`  ${m.id.padEnd(width)}  ${abilities.padEnd(26)}  ${formatBytes(m.bytes).padStart(8)}  ${m.source}`);
  }
  for (const b of broken) out(`  ${b.id.padEnd(width)}  BROKEN: ${b.error.message}`);
  if (previews.found) out(`  ${previews.found.id.padEnd(width)}  ${"preview decoder (in use)".padEnd(26)}  ${formatBytes(previews.found.weightsBytes).padStart(8)}  previews every step, decodes drafts`);
  for (const b of previews.broken) out(`  ${b.id.padEnd(width)}  BROKEN preview decoder: ${b.error.message}`);
  for (const c of controlNets.found) out(`  ${c.id.padEnd(width)}  ${`ControlNet: ${c.kind}`.padEnd(26)}  ${formatBytes(c.weightsBytes).padStart(8)}  --control-kind ${c.kind} on control-capable models`);
  for (const b of controlNets.broken) out(`  ${b.id.padEnd(width)}  BROKEN ControlNet: ${b.error.message}`);
  if (depth.found) out(`  ${depth.found.id.padEnd(width)}  ${"depth estimator (in use)".padEnd(26)}  ${formatBytes(depth.found.weightsBytes).padStart(8)}  depth maps from pictures for --control-kind depth`);
  for (const b of depth.broken) out(`  ${b.id.padEnd(width)}  BROKEN depth estimator: ${b.error.message}`);
  if (pose.found) out(`  ${pose.found.id.padEnd(width)}  ${"pose estimator (in use)".padEnd(26)}  ${formatBytes(pose.found.weightsBytes).padStart(8)}  pose maps from pictures for --control-kind pose`);
  for (const b of pose.broken) out(`  ${b.id.padEnd(width)}  BROKEN pose estimator: ${b.error.message}`);
  for (const u of unfinished) {
    const amount = u.bytes !== null && u.total ? ` (${formatBytes(u.bytes)} of ${formatBytes(u.total)})` : "";
    out(
      u.running
        ? `  ${u.id.padEnd(width)}  downloading${amount}`
        : `  ${u.id.padEnd(width)}  unfinished download${amount}: \`npx underpaint models pull ${u.request ?? u.id}\` resumes it`,
    );
  }
  if (available.length || availablePreviewDecoders.length || availableControlNets.length || availableDepthEstimators.length || availablePoseEstimators.length) {
    out("");
    out("Available to pull (npx underpaint models pull ID):");
    const w = Math.max(...[...available, ...availablePreviewDecoders, ...availableControlNets, ...availableDepthEstimators, ...availablePoseEstimators].map((e) => e.id.length));
    for (const e of available) {
      const r = e.recommended;
      out(`  ${e.id.padEnd(w)}  ${e.name}: ${e.kind}, ${e.nativeResolution}px, ${r.steps} steps, guidance ${r.guidance}, ${r.scheduler}; ${e.license}`);
    }
    for (const e of availablePreviewDecoders) out(`  ${e.id.padEnd(w)}  ${e.name}: preview decoder (a picture of every step, fast drafts); ${e.license}`);
    for (const e of availableControlNets) out(`  ${e.id.padEnd(w)}  ${e.name}: ControlNet (${e.control}) for control-capable ${e.architecture} models; ${e.license}`);
    for (const e of availableDepthEstimators) out(`  ${e.id.padEnd(w)}  ${e.name}: depth estimator (depth maps from pictures for depth ControlNets); ${e.license}`);
    for (const e of availablePoseEstimators) out(`  ${e.id.padEnd(w)}  ${e.name}: pose estimator (OpenPose maps from pictures for pose ControlNets); ${e.license}`);
  }
}

// ---- pull ----

async function pull(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { models: { type: "string" }, revision: { type: "string" }, as: { type: "string" }, force: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  const request = one(positionals, "model id (from `models list`) or Hugging Face repo id (owner/name)");
  const modelsDir = values.models ?? defaultModelsDir();
  const progress = new DownloadProgress();
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const result = await pullModel(request, {
      modelsDir,
      ...(values.revision ? { revision: values.revision } : {}),
      ...(values.as ? { as: values.as } : {}),
      ...(values.force ? { force: true } : {}),
      signal: controller.signal,
      onProgress: (p) => progress.update(p),
      log: (line) => progress.log(line),
    });
    progress.done();
    if (result.alreadyInstalled) {
      out(`"${result.id}" is already installed in ${result.dir}: \`npx underpaint models verify ${result.id}\` checks it, --force downloads it again.`);
      return;
    }
    const fetched = result.downloaded < result.bytes ? ` (${formatBytes(result.downloaded)} downloaded now, the rest resumed)` : "";
    out(`installed ${result.id} in ${result.dir}: ${result.files} files, ${formatBytes(result.bytes)}${fetched}, from ${result.repo}@${result.commit.slice(0, 12)}`);
  } catch (error) {
    progress.done();
    if (error instanceof ModelInstallError && error.code === "cancelled") {
      err(`stopped; \`npx underpaint models pull ${request}\` resumes where it left off.`);
    }
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

// ---- remove / verify / add ----

async function remove(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { models: { type: "string" } }, allowPositionals: true, strict: true });
  const id = one(positionals, "model id");
  const modelsDir = values.models ?? defaultModelsDir();
  const { models, broken } = await discoverModels(modelsDir);
  const result = await removeModel(modelsDir, id, [...models, ...broken].map((m) => m.id).sort());
  out(`removed ${result.removed.join(" and ")} "${id}" from ${modelsDir}`);
}

async function verify(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { models: { type: "string" } }, allowPositionals: true, strict: true });
  const id = one(positionals, "model id");
  const modelsDir = values.models ?? defaultModelsDir();
  const tty = Boolean(process.stderr.isTTY);
  const report = await verifyModel(modelsDir, id, (file, i, n) => {
    if (tty) process.stderr.write(`\rchecking ${i + 1}/${n} ${file}`.padEnd(80).slice(0, 100));
  });
  if (tty) process.stderr.write(`\r${" ".repeat(100)}\r`);
  if (report.problems.length) {
    const lines = report.problems.map((p) => `  ${p.file}: ${p.problem}`).join("\n");
    throw new ModelInstallError(
      "verify_failed",
      `"${id}" failed verification (${report.dir}):\n${lines}\n` +
        (report.manifest?.source.kind === "hub" ? `\`npx underpaint models pull ${report.manifest.source.registryId ?? report.manifest.source.repo} --force\` downloads it again.` : "Replace the damaged files."),
      { file: report.problems[0]!.file },
    );
  }
  const how = report.manifest
    ? `${report.checked} files, ${formatBytes(report.bytes)}, sha256 of every file matches`
    : `no checksums were recorded for it (${report.linked ? "added as a link" : "added by hand"}), so only its structure was checked`;
  const p = report.previewDecoder;
  if (p) {
    out(`${id}: OK (${how}); preview decoder (tiny autoencoder), ${(p.parameters / 1e6).toFixed(2)} M weights`);
    return;
  }
  const d = report.depthEstimator;
  if (d) {
    out(`${id}: OK (${how}); depth estimator (makes depth maps from pictures for depth ControlNets)`);
    return;
  }
  if (report.poseEstimator) {
    out(`${id}: OK (${how}); pose estimator (makes OpenPose maps from pictures for pose ControlNets)`);
    return;
  }
  const f = report.folder!;
  out(`${id}: OK (${how}); ${f.kind}, ${f.nativeResolution}px${f.turbo ? ", turbo" : ""}, modes ${f.modes.join(", ")}`);
}

async function add(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { models: { type: "string" }, as: { type: "string" }, copy: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  const source = one(positionals, "folder path");
  const modelsDir = values.models ?? defaultModelsDir();
  const result = await addLocalModel(source, { modelsDir, ...(values.as ? { as: values.as } : {}), ...(values.copy ? { copy: true } : {}) });
  out(
    result.linked
      ? `added "${result.id}": ${result.dir} links to ${source} (the folder stays where it is; \`models remove ${result.id}\` removes only the link)`
      : `added "${result.id}": copied ${formatBytes(result.bytes)} to ${result.dir}`,
  );
}
