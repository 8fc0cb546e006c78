/**
 * Which onnxruntime execution provider runs the models, and session creation that falls
 * back to the CPU, with the reason logged, when the preferred provider cannot start.
 *
 * onnxruntime-node's prebuilt binaries: DirectML on Windows, CoreML on macOS, CUDA on
 * Linux x64 only when its provider library was installed next to the binding (its
 * install script downloads it; it is not in the npm package), CPU everywhere.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { InferenceSession, listSupportedBackends } from "onnxruntime-node";
import { ModelFolderError } from "./errors";

export const DEVICES = ["cpu", "cuda", "dml", "coreml"] as const;
export type Device = (typeof DEVICES)[number];

type Env = Record<string, string | undefined>;

/** How daemon/models reports what it decided; adapt any logger to it. */
export type ModelLog = (level: "info" | "warn", message: string) => void;

export const silentLog: ModelLog = () => {};

/** Linux name of the CUDA provider library onnxruntime loads on demand. */
export const CUDA_PROVIDER_LIBRARY = "libonnxruntime_providers_cuda.so";

/** onnxruntime-node's native folder for this platform (bin/napi-v6/<platform>/<arch>). */
export function ortBinDir(platform: NodeJS.Platform = process.platform, arch: string = process.arch): string {
  const pkg = createRequire(import.meta.url).resolve("onnxruntime-node/package.json");
  return path.join(path.dirname(pkg), "bin", "napi-v6", platform, arch);
}

export function cudaProviderAvailable(binDir: string = ortBinDir()): boolean {
  return existsSync(path.join(binDir, CUDA_PROVIDER_LIBRARY));
}

export interface DeviceChoice {
  /** In order of preference; always ends with "cpu". */
  devices: Device[];
  source: "override" | "platform";
  /** A sentence to log when the override was ignored. */
  warning: string | null;
}

/**
 * UNDERPAINT_DEVICE=cpu|cuda|dml|coreml overrides; otherwise Windows -> dml, macOS ->
 * coreml, Linux -> cuda when the CUDA provider library is installed, else cpu. A bad
 * override is ignored with a warning rather than stopping the daemon.
 */
export function chooseDevices(
  options: { env?: Env; platform?: NodeJS.Platform; cudaAvailable?: () => boolean } = {},
): DeviceChoice {
  const env = options.env ?? process.env;
  const platform = options.platform ?? process.platform;
  const withCpu = (d: Device): Device[] => (d === "cpu" ? ["cpu"] : [d, "cpu"]);
  const raw = env.UNDERPAINT_DEVICE?.trim().toLowerCase();
  let warning: string | null = null;
  if (raw) {
    if ((DEVICES as readonly string[]).includes(raw)) {
      return { devices: withCpu(raw as Device), source: "override", warning: null };
    }
    warning = `UNDERPAINT_DEVICE="${env.UNDERPAINT_DEVICE}" is not one of ${DEVICES.join(", ")}; choosing the device automatically.`;
  }
  let device: Device = "cpu";
  if (platform === "win32") device = "dml";
  else if (platform === "darwin") device = "coreml";
  else if (platform === "linux" && (options.cudaAvailable ?? (() => cudaProviderAvailable()))()) device = "cuda";
  return { devices: withCpu(device), source: "platform", warning };
}

/**
 * Physical cores: onnxruntime's CPU provider gains nothing from hyper-threads. Linux:
 * distinct (physical id, core id) pairs of /proc/cpuinfo; elsewhere, or when that fails,
 * os.availableParallelism(). Never more than availableParallelism (cgroup/affinity limits).
 */
export function physicalCoreCount(
  platform: NodeJS.Platform = process.platform,
  cpuinfo: () => string = () => readFileSync("/proc/cpuinfo", "utf8"),
): number {
  const logical = os.availableParallelism();
  if (platform !== "linux") return logical;
  try {
    const cores = new Set<string>();
    for (const block of cpuinfo().split(/\n\s*\n/)) {
      const physical = /^physical id\s*:\s*(\d+)/m.exec(block)?.[1];
      const core = /^core id\s*:\s*(\d+)/m.exec(block)?.[1];
      if (physical !== undefined && core !== undefined) cores.add(`${physical}:${core}`);
    }
    return cores.size > 0 ? Math.min(cores.size, logical) : logical;
  } catch {
    return logical;
  }
}

export function sessionOptionsFor(
  device: Device,
  threads: number = physicalCoreCount(),
  freeDimensions?: Readonly<Record<string, number>>,
): InferenceSession.SessionOptions {
  return {
    // DirectML sessions are planned for fixed shapes (see free-dimensions.ts); other providers take any.
    ...(device === "dml" && freeDimensions ? { freeDimensionOverrides: { ...freeDimensions } } : {}),
    executionProviders: device === "cpu" ? ["cpu"] : [device, "cpu"],
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    intraOpNumThreads: threads,
    // Memory patterns plan one block for all of a call's intermediate tensors from its first
    // run. Off, each tensor is allocated from the arena when needed. Measured on SD 1.5 at
    // 512x512 (scripts/bench, 2 vCPUs): the VAE decoder then needs 1.4 instead of 2.0 GiB and
    // runs no slower; the UNet with fused attention needs 0.13 GiB less at the same speed; the
    // UNet as exported (unfused attention) runs a guidance step in 5.5 instead of 11-13.5 s.
    // DirectML requires them off anyway.
    enableMemPattern: false,
  };
}

export interface CreatedSession {
  session: InferenceSession;
  device: Device;
  /** Why a preferred provider was skipped, when one was. */
  fallbackReason: string | null;
}

export type SessionFactory = (path: string, options: InferenceSession.SessionOptions) => Promise<InferenceSession>;

/** `options` with more onnxruntime session config entries (`extra.session.*`), keeping those it had. */
export function withSessionConfig(options: InferenceSession.SessionOptions, entries: Record<string, string>): InferenceSession.SessionOptions {
  const prior = options.extra?.session;
  return { ...options, extra: { ...options.extra, session: { ...(typeof prior === "object" && prior !== null ? prior : {}), ...entries } } };
}

/** `inner`, asked for every session with these session config entries as well. */
export function withSessionEntries(inner: SessionFactory, entries: Readonly<Record<string, string>>): SessionFactory {
  return (file, options) => inner(file, withSessionConfig(options, { ...entries }));
}

/** The first line of an error's message: onnxruntime's messages go on with C++ detail. */
export function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
}

/** onnxruntime's own InferenceSession.create. */
export const defaultSessionFactory: SessionFactory = (p, options) => InferenceSession.create(p, options);

/**
 * Execution providers compiled into this onnxruntime-node binary. Asked for one that is
 * not, onnxruntime-common silently drops it and runs on the CPU, so createSession checks
 * first, to report the device truthfully.
 */
export function compiledProviders(): string[] {
  return listSupportedBackends().map((b) => b.name);
}

/**
 * Creates a session on the first device of `preferred` that works, then CPU. A failure on
 * CPU is the model's fault: ModelFolderError "model_file_invalid" naming the file.
 */
export async function createSession(
  modelPath: string,
  preferred: Device | readonly Device[],
  log: ModelLog = silentLog,
  options: { threads?: number; factory?: SessionFactory; compiled?: () => readonly string[]; freeDimensions?: Readonly<Record<string, number>> } = {},
): Promise<CreatedSession> {
  const wanted = (typeof preferred === "string" ? [preferred] : [...preferred]).filter((d) => d !== "cpu");
  const factory = options.factory ?? defaultSessionFactory;
  const compiled = (options.compiled ?? compiledProviders)();
  const reasons: string[] = [];
  for (const device of wanted) {
    if (!compiled.includes(device)) {
      const reason = `${device} is not available in this onnxruntime-node build (it has ${compiled.join(", ")})`;
      reasons.push(reason);
      log("warn", `${reason}; falling back${wanted.at(-1) === device ? " to cpu" : ""}.`);
      continue;
    }
    try {
      const session = await factory(modelPath, sessionOptionsFor(device, options.threads, options.freeDimensions));
      return { session, device, fallbackReason: reasons.length ? reasons.join("; ") : null };
    } catch (error) {
      const reason = `${device} could not load ${path.basename(path.dirname(modelPath))}: ${(error as Error).message}`;
      reasons.push(reason);
      log("warn", `${reason}; falling back${wanted.at(-1) === device ? " to cpu" : ""}.`);
    }
  }
  try {
    const session = await factory(modelPath, sessionOptionsFor("cpu", options.threads));
    return { session, device: "cpu", fallbackReason: reasons.length ? reasons.join("; ") : null };
  } catch (error) {
    throw new ModelFolderError(
      "model_file_invalid",
      modelPath,
      `Model file invalid: onnxruntime cannot load ${modelPath}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}
