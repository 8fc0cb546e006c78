/**
 * The model setup as rows to show: every model the daemon's registry offers (installed or not,
 * with its size, license and what it is for), where its pull stands (bytes, rate, time left) and
 * what the artist can do (Pull, Cancel, Resume); other pulls the daemon knows of; and the
 * installed models with what each can do. Pure: the view draws these rows.
 */
import type { ControlNetInfo, DownloadStatus, Mode, ModelInfo, PreviewDecoderInfo, RegistryControlNet, RegistryDepthEstimator, RegistryModel, RegistryPoseEstimator, RegistryPreviewDecoder } from "../../../protocol";
import { MODE_LABELS, PROTOCOL_MODE, OPERATION_MODES } from "../operations/settings";

export type SetupAction = "pull" | "cancel" | "resume";

export interface DownloadView {
  /** 0..1 when the total is known. */
  fraction?: number;
  /** Where it stands in words: "1.2 GB of 2.6 GB · 24.8 MB/s · about 1 min left". */
  text: string;
  /** Why it stopped, the daemon's sentence (failed / cancelled). */
  problem?: string;
}

export interface SetupRow {
  /** What pull-model and cancel-pull take: the registry id, or what was asked for. */
  id: string;
  name: string;
  /** "about 4.3 GB · CreativeML Open RAIL-M", for registry entries. */
  facts?: string;
  description?: string;
  installed: boolean;
  download?: DownloadView;
  action?: SetupAction;
}

const RUNNING = new Set(["listing", "downloading", "verifying", "installing"]);

/**
 * What the daemon says of a kind of helper network beside the models (preview decoders, depth or
 * pose estimators): what it can pull, and the one installed (null: none; undefined: it does not say).
 */
export interface HelperNetworks {
  registry: readonly (RegistryPreviewDecoder | RegistryDepthEstimator | RegistryPoseEstimator)[];
  installed: PreviewDecoderInfo | null | undefined;
}
export type PreviewDecoders = HelperNetworks;
export type DepthEstimators = HelperNetworks;
export type PoseEstimators = HelperNetworks;

/** What the daemon says of ControlNets: what it can pull, and the ones installed (undefined: it does not say). */
export interface ControlNets {
  registry: readonly RegistryControlNet[];
  installed: readonly ControlNetInfo[] | undefined;
}

/** The panel's name for a depth estimator's row: what it does for the artist. */
export const DEPTH_FROM_PICTURES = "Depth from pictures (depth control)";

/** The panel's name for a pose estimator's row: what it does for the artist. */
export const POSE_FROM_PICTURES = "Pose from pictures (pose control)";

/** The panel's name for a preview decoder's row: what it does for the artist. */
export const FAST_PREVIEWS = "Fast previews and drafts";

/** `pending`: ids whose Pull or Cancel the artist pressed and the daemon has not answered yet. */
export function setupRows(
  registry: readonly RegistryModel[],
  models: readonly ModelInfo[],
  downloads: readonly DownloadStatus[],
  pending: ReadonlySet<string> = new Set(),
  previews: PreviewDecoders = { registry: [], installed: undefined },
  controlNets: ControlNets = { registry: [], installed: undefined },
  depth: DepthEstimators = { registry: [], installed: undefined },
  pose: PoseEstimators = { registry: [], installed: undefined },
): SetupRow[] {
  const downloadFor = (id: string) => downloads.find((d) => d.model === id || d.request === id);
  /** The rows of a helper network (one installed at most), named for what it does; none for a daemon that does not say what is installed. */
  const helperRows = (helpers: HelperNetworks, name: string): SetupRow[] =>
    (helpers.installed === undefined ? [] : helpers.registry).map((entry) => ({
      id: entry.id,
      name,
      facts: [entry.name, `about ${formatBytes(entry.approximateBytes)}`, entry.license].join(" · "),
      description: entry.description,
      ...rowState(helpers.installed?.registryId === entry.id || helpers.installed?.id === entry.id, downloadFor(entry.id), pending.has(entry.id)),
    }));
  const rows: SetupRow[] = registry.map((entry) => {
    const installed = models.some((m) => m.registryId === entry.id || m.id === entry.id);
    return {
      id: entry.id,
      name: entry.name,
      facts: [`about ${formatBytes(entry.approximateBytes)}`, entry.turbo ? "1–4 steps" : undefined, `${entry.nativeResolution} px`, entry.license].filter(Boolean).join(" · "),
      description: entry.description,
      ...rowState(installed, downloadFor(entry.id), pending.has(entry.id)),
    };
  });
  rows.push(...helperRows(previews, FAST_PREVIEWS));
  // A daemon that does not say what is installed offers no ControlNet rows.
  for (const entry of controlNets.installed === undefined ? [] : controlNets.registry) {
    const installed = controlNets.installed!.some((c) => c.registryId === entry.id || c.id === entry.id);
    rows.push({
      id: entry.id,
      name: entry.name,
      facts: [`about ${formatBytes(entry.approximateBytes)}`, entry.license].join(" · "),
      description: entry.description,
      ...rowState(installed, downloadFor(entry.id), pending.has(entry.id)),
    });
  }
  rows.push(...helperRows(depth, DEPTH_FROM_PICTURES), ...helperRows(pose, POSE_FROM_PICTURES));
  // Pulls of repos outside the registry (owner/name), from this panel or a terminal.
  for (const download of downloads) {
    if ([...registry, ...previews.registry, ...controlNets.registry, ...depth.registry, ...pose.registry].some((e) => e.id === download.model || e.id === download.request)) continue;
    const id = download.request ?? download.model;
    const installed = models.some((m) => m.id === download.model);
    if (installed && download.stage === "done") continue;
    rows.push({ id, name: download.model, ...(download.source ? { facts: download.source } : {}), ...rowState(installed, download, pending.has(id)) });
  }
  return rows;
}

function rowState(installed: boolean, download: DownloadStatus | undefined, pending: boolean): Pick<SetupRow, "installed" | "download" | "action"> {
  if (download && RUNNING.has(download.stage)) {
    return { installed, download: downloadView(download), ...(pending ? {} : { action: "cancel" as const }) };
  }
  if (pending) return { installed, download: { text: "Asking the daemon…" } };
  if (installed) return { installed };
  if (download?.stage === "done") return { installed, download: { fraction: 1, text: "Installed; the daemon is reading the folder…" } };
  if (download && (download.stage === "failed" || download.stage === "cancelled")) {
    return { installed, download: downloadView(download), action: download.bytes > 0 ? "resume" : "pull" };
  }
  return { installed, action: "pull" };
}

export function downloadView(d: DownloadStatus): DownloadView {
  const fraction = d.total > 0 ? Math.min(1, d.bytes / d.total) : undefined;
  const of = d.total > 0 ? `${formatBytes(d.bytes)} of ${formatBytes(d.total)}` : formatBytes(d.bytes);
  const base = fraction === undefined ? {} : { fraction };
  switch (d.stage) {
    case "listing":
      return { text: "Listing the files…" };
    case "downloading": {
      const parts = [of];
      if (d.bytesPerSecond) parts.push(`${formatBytes(d.bytesPerSecond)}/s`);
      if (d.etaSeconds !== undefined && d.bytesPerSecond) parts.push(`about ${formatDuration(d.etaSeconds)} left`);
      return { ...base, text: parts.join(" · ") };
    }
    case "verifying":
      return { ...base, text: "Checking the downloaded files…" };
    case "installing":
      return { ...base, text: "Installing…" };
    case "done":
      return { fraction: 1, text: "Installed." };
    case "failed":
    case "cancelled": {
      const stopped = d.bytes > 0 ? `${d.stage === "cancelled" ? "Cancelled" : "Stopped"} at ${of}; Resume goes on from there.` : d.stage === "cancelled" ? "Cancelled." : "The pull failed.";
      return { ...base, text: stopped, ...(d.error && d.error.code !== "cancelled" ? { problem: d.error.message } : {}) };
    }
  }
}

/** What an installed model can do, in the panel's words: "Generate, Img2img". */
export function abilities(modes: readonly Mode[]): string {
  return OPERATION_MODES.filter((m) => modes.includes(PROTOCOL_MODE[m]))
    .map((m) => MODE_LABELS[m])
    .join(", ");
}

/** 4.3 GB, 16.2 MB, 512 KB: decimal units, as disks and downloads are sold. */
export function formatBytes(bytes: number): string {
  const units: Array<[number, string]> = [
    [1e12, "TB"],
    [1e9, "GB"],
    [1e6, "MB"],
    [1e3, "KB"],
  ];
  for (const [size, unit] of units) {
    if (bytes >= size) {
      const value = bytes / size;
      return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${unit}`;
    }
  }
  return `${Math.round(bytes)} bytes`;
}

/** 57 s, 4 min, 1 h 20 min. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  const h = Math.floor(s / 3600);
  const min = Math.round((s % 3600) / 60);
  return min ? `${h} h ${min} min` : `${h} h`;
}
