/**
 * `models verify`: re-checks an installed model byte for byte against the manifest written when
 * it was installed (size and sha256 of every file), then loads it as the engine would.
 */
import { lstat, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { hashFile } from "./download";
import { ModelFolderError } from "./errors";
import { ModelInstallError } from "./install-errors";
import { readManifest, type ModelManifest } from "./manifest";
import { loadModelFolder, type ModelFolder } from "./model-folder";
import { exists, modelDir } from "./model-store";
import { checkModelId } from "./registry";
import { isPreviewDecoderFolder, loadPreviewDecoderFolder, type PreviewDecoderFolder } from "./taesd-folder";
import { isDepthEstimatorFolder, loadDepthEstimatorFolder, type DepthEstimatorFolder } from "./depth-estimator-folder";
import { isPoseEstimatorFolder, loadPoseEstimatorFolder, type PoseEstimatorFolder } from "./pose-estimator-folder";

export interface VerifyProblem {
  /** Relative to the model folder, "/"-separated. */
  file: string;
  problem: string;
}

export interface VerifyReport {
  id: string;
  dir: string;
  manifest: ModelManifest | null;
  linked: boolean;
  /** Files whose checksum was compared. */
  checked: number;
  bytes: number;
  problems: VerifyProblem[];
  folder: ModelFolder | null;
  /** The folder as a preview decoder (TAESD), when it is one. */
  previewDecoder: PreviewDecoderFolder | null;
  /** The folder as a depth estimator (Depth Anything), when it is one. */
  depthEstimator?: DepthEstimatorFolder | null;
  /** The folder as a pose estimator (DWPose), when it is one. */
  poseEstimator?: PoseEstimatorFolder | null;
}

export async function verifyModel(
  modelsDir: string,
  id: string,
  onFile?: (file: string, index: number, count: number) => void,
): Promise<VerifyReport> {
  checkModelId(id);
  const dir = modelDir(modelsDir, id);
  if (!(await exists(dir))) throw new ModelInstallError("not_installed", `There is no model "${id}" in ${modelsDir}.`);
  const linked = (await lstat(dir)).isSymbolicLink();
  const manifest = await readManifest(dir);
  const problems: VerifyProblem[] = [];
  let checked = 0;
  let bytes = 0;
  if (manifest) {
    let index = 0;
    for (const file of manifest.files) {
      onFile?.(file.path, index++, manifest.files.length);
      const path = join(dir, ...file.path.split("/"));
      let size: number;
      try {
        size = (await stat(path)).size;
      } catch {
        problems.push({ file: file.path, problem: "missing" });
        continue;
      }
      if (size !== file.size) {
        problems.push({ file: file.path, problem: `has ${size} bytes, ${file.size} were installed` });
        continue;
      }
      const got = await hashFile(path);
      checked++;
      bytes += size;
      if (got.sha256 !== file.sha256) problems.push({ file: file.path, problem: `sha256 is ${got.sha256}, ${file.sha256} was installed (the file changed or is corrupt)` });
    }
  }
  let folder: ModelFolder | null = null;
  let previewDecoder: PreviewDecoderFolder | null = null;
  let depthEstimator: DepthEstimatorFolder | null = null;
  let poseEstimator: PoseEstimatorFolder | null = null;
  try {
    if (await isDepthEstimatorFolder(dir)) depthEstimator = await loadDepthEstimatorFolder(dir);
    else if (await isPoseEstimatorFolder(dir)) poseEstimator = await loadPoseEstimatorFolder(dir);
    else if (await isPreviewDecoderFolder(dir)) previewDecoder = await loadPreviewDecoderFolder(dir);
    else folder = await loadModelFolder(dir);
  } catch (error) {
    if (!(error instanceof ModelFolderError)) throw error;
    const file = relative(dir, error.file).split(sep).join("/") || ".";
    if (!problems.some((p) => p.file === file)) problems.push({ file, problem: error.message });
  }
  return { id, dir, manifest, linked, checked, bytes, problems, folder, previewDecoder, depthEstimator, poseEstimator };
}
