/**
 * A ControlNet in the models folder: one ONNX graph with OnnxStack's inputs and outputs (see
 * control-io.ts), beside the models but not one of them (never in the model menu). Where its
 * model.onnx is:
 *
 *   <subfolder>/model.onnx   pulled from the registry: the entry's folder of its repo, as the repo has it
 *   model.onnx               a folder copied in by hand (or controlnet/model.onnx)
 *
 * A folder is a ControlNet when its manifest names a ControlNet entry, or when it has no
 * model_index.json, unet/, text_encoder/ or vae_decoder/ and its model.onnx takes controlnet_cond.
 * What it follows (canny, scribble, ...) is its entry's, else read from the folder's name.
 */
import { readdir, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { ControlKind } from "../../protocol";
import { describeControlNet, type ControlNetIO } from "./control-io";
import { ModelFolderError } from "./errors";
import type { Device } from "./execution-provider";
import { readManifest } from "./manifest";
import { checkDevices, checkExternalData, defaultDevices, fileSize, inspectPart, invalid, missing } from "./model-folder";
import { controlNetEntryForSource, type ControlNetEntry } from "./registry";

export interface ControlNetFolder {
  /** The folder's name: what jobs name it by. */
  id: string;
  /** Display name: its entry's, else the folder's. */
  name: string;
  dir: string;
  /** Its model.onnx. */
  path: string;
  externalData: string[];
  io: ControlNetIO;
  kind: ControlKind;
  /** The base models it is for, when its entry says (a folder added by hand: unknown). */
  architecture: ControlNetEntry["architecture"] | null;
  /** The width of the text embeddings it reads, when the graph fixes it (768 for SD 1.5, 1024 for SD 2.x). */
  contextWidth: number | null;
  weightsBytes: number;
  registryId: string | null;
}

/** Folder names say what a ControlNet follows: "controlnet-canny", "sd15-OpenPose", "control_v11p_sd15_lineart". */
const KIND_WORDS: [RegExp, ControlKind][] = [
  [/canny/i, "canny"],
  [/scribble/i, "scribble"],
  [/line[-_ ]?art/i, "lineart"],
  [/depth/i, "depth"],
  [/pose/i, "pose"],
];

export function kindFromName(name: string): ControlKind | null {
  return KIND_WORDS.find(([pattern]) => pattern.test(name))?.[1] ?? null;
}

async function isDir(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isDirectory(), () => false);
}

/** Where a ControlNet folder's graph is: the entry's subfolder, else model.onnx, else controlnet/model.onnx. */
function candidates(dir: string, entry: ControlNetEntry | undefined): string[] {
  if (entry) return [join(dir, ...entry.subfolder.split("/"), "model.onnx")];
  return [join(dir, "model.onnx"), join(dir, "controlnet", "model.onnx")];
}

/** Whether a folder in the models folder is a ControlNet (see the module comment), not a model. */
export async function isControlNetFolder(dir: string): Promise<boolean> {
  if (controlNetEntryForSource((await readManifest(dir))?.source)) return true;
  for (const part of ["model_index.json", "unet", "text_encoder", "vae_decoder"]) if ((await fileSize(join(dir, part))) !== null || (await isDir(join(dir, part)))) return false;
  for (const file of candidates(dir, undefined)) {
    if ((await fileSize(file)) === null) continue;
    try {
      return (await inspectPart(dir, file)).inputs.some((v) => v.name === "controlnet_cond");
    } catch {
      // A damaged graph is reported when the folder is loaded.
      return true;
    }
  }
  return false;
}

/**
 * Reads and checks a ControlNet folder. Throws ModelFolderError: model_file_missing (no model.onnx
 * where it should be), model_file_invalid (a damaged file), model_unsupported (not a ControlNet of
 * OnnxStack's layout, operators none of the devices has, or a kind its name does not tell).
 */
export async function loadControlNetFolder(folder: string, options: { devices?: readonly Device[] } = {}): Promise<ControlNetFolder> {
  const dir = resolve(folder);
  const id = basename(dir);
  const entry = controlNetEntryForSource((await readManifest(dir))?.source);
  const places = candidates(dir, entry);
  let path: string | undefined;
  for (const file of places) if ((await fileSize(file)) !== null) path = path ?? file;
  if (!path) throw missing(dir, places[0]!, "a ControlNet is its model.onnx");
  const info = await inspectPart(dir, path);
  checkDevices(dir, info, options.devices ?? (await defaultDevices()));
  const external = await checkExternalData(dir, info);
  const io = describeControlNet(path, info.inputs, info.outputs);
  const kind = entry?.control ?? kindFromName(id);
  if (!kind) {
    throw new ModelFolderError(
      "model_unsupported",
      dir,
      `ControlNet "${id}" does not say what it follows: name its folder after its kind (canny, scribble, lineart, depth or pose), e.g. "${id}-canny".`,
    );
  }
  const width = info.inputs.find((v) => v.name === io.unet.encoderHiddenStates)?.shape?.[2];
  return {
    id,
    name: entry?.name ?? id,
    dir,
    path,
    externalData: external.paths,
    io,
    kind,
    architecture: entry?.architecture ?? null,
    contextWidth: typeof width === "number" ? width : null,
    weightsBytes: info.fileBytes + external.bytes,
    registryId: entry?.id ?? null,
  };
}

export interface FoundControlNets {
  /** Sorted by id. */
  found: ControlNetFolder[];
  broken: { id: string; dir: string; error: ModelFolderError }[];
}

/** The ControlNets in a models folder (one that does not exist has none). */
export async function findControlNets(modelsDir: string, options: { devices?: readonly Device[] } = {}): Promise<FoundControlNets> {
  const root = resolve(modelsDir);
  const names = await readdir(root).catch(() => [] as string[]);
  const found: ControlNetFolder[] = [];
  const broken: FoundControlNets["broken"] = [];
  for (const id of names.filter((n) => !n.startsWith(".")).sort()) {
    const dir = join(root, id);
    if (!(await isDir(dir)) || !(await isControlNetFolder(dir))) continue;
    try {
      found.push(await loadControlNetFolder(dir, options));
    } catch (error) {
      const wrapped = error instanceof ModelFolderError ? error : invalid(dir, `unreadable (${(error as Error).message})`, error);
      broken.push({ id, dir, error: wrapped });
    }
  }
  return { found, broken };
}
