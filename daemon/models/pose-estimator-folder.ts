/**
 * A pose estimator in the models folder (DWPose as yzd-v/DWPose publishes it for ControlNet
 * preprocessors), beside the models but not one of them (never in the model menu):
 *
 *   yolox_l.onnx          the person detector: one float32 input [1, 3, 640, 640] -> one float32 output
 *                         [1, anchors, 85] (YOLOX: box, objectness, 80 classes)
 *   dw-ll_ucoco_384.onnx  the pose model: one float32 input [1, 3, 384, 288] -> simcc_x [1, 133, 576] and
 *                         simcc_y [1, 133, 768] (SimCC, split ratio 2)
 *
 * The names of the graphs' inputs and outputs are not relied on (those of the published files were
 * not read here; the annotators feed inputs()[0] and read the outputs in order): the detector's one
 * input and output, the pose model's one input and its outputs named simcc_x / simcc_y, or else its
 * first output for x and second for y. The input sizes are read from the graphs where fixed
 * (640 x 640 and 288 x 384 otherwise). A folder is one when its manifest names a pose estimator of
 * the registry, or when it holds both files. Its files are checked as a model folder's are
 * (onnx-inspect, operators, external weights, I/O).
 */
import { basename, join, resolve } from "node:path";
import type { Size } from "../../geometry";
import { ModelFolderError } from "./errors";
import type { Device, ModelLog } from "./execution-provider";
import { createHelperSession, findHelperFolders, type FoundHelpers } from "./helper-folders";
import type { IoValue } from "./io-spec";
import { readManifest } from "./manifest";
import { checkDevices, checkExternalData, defaultDevices, fileSize, inspectPart, missing } from "./model-folder";
import type { PartSession } from "./model-sessions";
import { poseEstimatorEntryForSource } from "./registry";

export const DETECTOR_FILE = "yolox_l.onnx";
export const POSE_FILE = "dw-ll_ucoco_384.onnx";
const DEFAULT_DETECTOR_INPUT: Size = { width: 640, height: 640 };
const DEFAULT_POSE_INPUT: Size = { width: 288, height: 384 };

export interface PoseDetectorIO {
  input: string;
  output: string;
  /** Its input's size where the graph fixes it (else 640 x 640). */
  size: Size;
}

export interface PoseModelIO {
  input: string;
  simccX: string;
  simccY: string;
  /** Its input's size where the graph fixes it (else 288 x 384). */
  size: Size;
}

export interface PoseEstimatorFolder {
  id: string;
  dir: string;
  detector: { path: string; externalData: string[]; io: PoseDetectorIO };
  pose: { path: string; externalData: string[]; io: PoseModelIO };
  weightsBytes: number;
  registryId: string | null;
}

const unsupported = (file: string, why: string) => new ModelFolderError("model_unsupported", file, `Pose estimator unsupported: ${file} ${why}.`);

const names = (values: readonly IoValue[]) => values.map((v) => v.name).join(", ") || "none";

/** One float32 picture input [1, 3, height, width]: its size where fixed, else `fallback`. */
function pictureInput(file: string, inputs: readonly IoValue[], fallback: Size): { name: string; size: Size } {
  if (inputs.length !== 1) throw unsupported(file, `takes ${inputs.length} inputs (${names(inputs)}); it should take one picture`);
  const input = inputs[0]!;
  // "unknown": an onnxruntime without session metadata; the graph's types were checked when the folder was read.
  if (input.type !== "float32" && input.type !== "unknown") throw unsupported(file, `takes ${input.name} as ${input.type}, not float32`);
  if (input.shape && input.shape.length !== 4) throw unsupported(file, `takes ${input.name} of rank ${input.shape.length}, not [batch, 3, height, width]`);
  if (input.shape && typeof input.shape[1] === "number" && input.shape[1] !== 3) throw unsupported(file, `takes ${input.shape[1]}-channel pictures, not RGB`);
  const [h, w] = [input.shape?.[2], input.shape?.[3]];
  return { name: input.name, size: typeof h === "number" && typeof w === "number" ? { width: w, height: h } : fallback };
}

function checkFloatOutput(file: string, output: IoValue, rank: number, what: string): void {
  if (output.type !== "float32" && output.type !== "unknown") throw unsupported(file, `gives ${output.name} as ${output.type}, not float32`);
  if (output.shape && output.shape.length !== rank) throw unsupported(file, `gives ${output.name} of rank ${output.shape.length}, not ${what}`);
}

/** The person detector's I/O (YOLOX): one picture in, [batch, anchors, 4 + 1 + classes] out. */
export function describePoseDetector(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): PoseDetectorIO {
  const input = pictureInput(file, inputs, DEFAULT_DETECTOR_INPUT);
  if (outputs.length !== 1) throw unsupported(file, `gives ${outputs.length} outputs (${names(outputs)}); a YOLOX person detector gives one`);
  const output = outputs[0]!;
  checkFloatOutput(file, output, 3, "[batch, anchors, 85]");
  const values = output.shape?.[2];
  if (typeof values === "number" && values < 6) throw unsupported(file, `gives ${values} values an anchor; YOLOX gives 4 box values, the objectness and the class scores`);
  return { input: input.name, output: output.name, size: input.size };
}

/** The pose model's I/O (RTMPose): one picture in, SimCC x and y [batch, keypoints, bins] out. */
export function describePoseModel(file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]): PoseModelIO {
  const input = pictureInput(file, inputs, DEFAULT_POSE_INPUT);
  if (outputs.length !== 2) throw unsupported(file, `gives ${outputs.length} outputs (${names(outputs)}); an RTMPose model gives simcc_x and simcc_y`);
  const x = outputs.find((o) => o.name === "simcc_x") ?? outputs[0]!;
  const y = outputs.find((o) => o.name === "simcc_y") ?? outputs.find((o) => o !== x)!;
  for (const o of [x, y]) checkFloatOutput(file, o, 3, "[batch, keypoints, bins]");
  const keypoints = x.shape?.[1];
  if (typeof keypoints === "number" && keypoints < 17) throw unsupported(file, `gives ${keypoints} keypoints; the OpenPose body needs COCO's 17 first`);
  return { input: input.name, simccX: x.name, simccY: y.name, size: input.size };
}

/** Whether a folder in the models folder is a pose estimator (see the module comment), not a model. */
export async function isPoseEstimatorFolder(dir: string): Promise<boolean> {
  if (poseEstimatorEntryForSource((await readManifest(dir))?.source)) return true;
  return (await fileSize(join(dir, DETECTOR_FILE))) !== null && (await fileSize(join(dir, POSE_FILE))) !== null;
}

/**
 * Reads and checks a pose estimator's folder. Throws ModelFolderError: model_file_missing (either
 * graph), model_file_invalid (a damaged file), model_unsupported (I/O it cannot be fed with,
 * operators none of the devices has).
 */
export async function loadPoseEstimatorFolder(folder: string, options: { devices?: readonly Device[] } = {}): Promise<PoseEstimatorFolder> {
  const dir = resolve(folder);
  const devices = options.devices ?? (await defaultDevices());
  const part = async <IO>(file: string, why: string, describe: (file: string, inputs: readonly IoValue[], outputs: readonly IoValue[]) => IO) => {
    const path = join(dir, file);
    if ((await fileSize(path)) === null) throw missing(dir, path, why);
    const info = await inspectPart(dir, path);
    checkDevices(dir, info, devices);
    const external = await checkExternalData(dir, info);
    return { path, externalData: external.paths, io: describe(path, info.inputs, info.outputs), bytes: info.fileBytes + external.bytes };
  };
  const detector = await part(DETECTOR_FILE, "a pose estimator finds people with it", describePoseDetector);
  const pose = await part(POSE_FILE, "a pose estimator finds each person's keypoints with it", describePoseModel);
  const entry = poseEstimatorEntryForSource((await readManifest(dir))?.source);
  return {
    id: basename(dir),
    dir,
    detector: { path: detector.path, externalData: detector.externalData, io: detector.io },
    pose: { path: pose.path, externalData: pose.externalData, io: pose.io },
    weightsBytes: detector.bytes + pose.bytes,
    registryId: entry?.id ?? null,
  };
}

export type FoundPoseEstimators = FoundHelpers<PoseEstimatorFolder>;

/** The pose estimators in a models folder (one that does not exist has none). */
export async function findPoseEstimators(modelsDir: string, options: { devices?: readonly Device[] } = {}): Promise<FoundPoseEstimators> {
  return findHelperFolders(modelsDir, isPoseEstimatorFolder, (dir) => loadPoseEstimatorFolder(dir, options));
}

/** The person detector's session on `devices`, its I/O checked again on the session. */
export function createPoseDetectorSession(folder: PoseEstimatorFolder, devices: readonly Device[], options: { log?: ModelLog; threads?: number } = {}): Promise<PartSession<PoseDetectorIO>> {
  const { path } = folder.detector;
  return createHelperSession(path, devices, (inputs, outputs) => ({ ...describePoseDetector(path, inputs, outputs), size: folder.detector.io.size }), (device) => `pose estimator "${folder.id}": person detector loaded on ${device}`, options);
}

/** The pose model's session on `devices`, its I/O checked again on the session. */
export function createPoseModelSession(folder: PoseEstimatorFolder, devices: readonly Device[], options: { log?: ModelLog; threads?: number } = {}): Promise<PartSession<PoseModelIO>> {
  const { path } = folder.pose;
  return createHelperSession(path, devices, (inputs, outputs) => ({ ...describePoseModel(path, inputs, outputs), size: folder.pose.io.size }), (device) => `pose estimator "${folder.id}": pose model loaded on ${device}`, options);
}
