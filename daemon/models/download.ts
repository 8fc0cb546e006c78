/**
 * Downloads one file so that a bad network cannot corrupt it: bytes go to `<dest>.part` and are
 * hashed as they arrive; a dropped or stalled connection is retried with exponential backoff and
 * resumed with an HTTP Range request from the last byte on disk (also across runs: a `.part`
 * left by an interrupted pull is re-hashed and continued). Only a file whose size and checksums
 * match what the hub published is renamed to `dest`.
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { bareEtag, hubHeaders, hubHttpError, isRetryable, networkError, type HubConfig } from "./hub";
import { ModelInstallError } from "./install-errors";

export interface ExpectedFile {
  /** Repo path, for messages. */
  path: string;
  size: number | null;
  sha256: string | null;
  gitSha1: string | null;
}

export interface RetryPolicy {
  /** Tries in a row, per file, that may fail without delivering a byte (dropped connections, 5xx, 429). */
  retries: number;
  /** The first pause; it doubles each try (with jitter), up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** A connection that delivers no byte for this long is dropped and retried. */
  stallMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 6, backoffMs: 1000, maxBackoffMs: 30_000, stallMs: 30_000 };

type Env = Record<string, string | undefined>;

/** UNDERPAINT_PULL_RETRIES / _BACKOFF_MS / _STALL_MS tune the policy (tests make it fast). */
export function retryPolicyFromEnv(env: Env = process.env): RetryPolicy {
  const num = (value: string | undefined, fallback: number) => {
    const n = value === undefined || value === "" ? NaN : Number(value);
    return Number.isFinite(n) && n >= 0 ? n : fallback;
  };
  return {
    retries: num(env.UNDERPAINT_PULL_RETRIES, DEFAULT_RETRY_POLICY.retries),
    backoffMs: num(env.UNDERPAINT_PULL_BACKOFF_MS, DEFAULT_RETRY_POLICY.backoffMs),
    maxBackoffMs: DEFAULT_RETRY_POLICY.maxBackoffMs,
    stallMs: num(env.UNDERPAINT_PULL_STALL_MS, DEFAULT_RETRY_POLICY.stallMs),
  };
}

export interface DownloadOptions {
  hub: HubConfig;
  repo: string;
  revision: string;
  url: string;
  dest: string;
  expected: ExpectedFile;
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** Bytes added to the file (negative when a restart throws bytes away). */
  onBytes?(delta: number): void;
  log?(line: string): void;
}

export interface DownloadedFile {
  size: number;
  sha256: string;
  gitSha1: string | null;
  /** Bytes that were already on disk when this call started. */
  resumedFrom: number;
}

/** Streaming checksums of a file's bytes, in order. */
class Digests {
  sha256: Hash = createHash("sha256");
  git: Hash | null;

  constructor(private readonly expected: ExpectedFile) {
    this.git = this.makeGit();
  }

  private makeGit(): Hash | null {
    if (!this.expected.gitSha1 || this.expected.size === null) return null;
    return createHash("sha1").update(`blob ${this.expected.size}\0`);
  }

  update(chunk: Uint8Array): void {
    this.sha256.update(chunk);
    this.git?.update(chunk);
  }

  reset(): void {
    this.sha256 = createHash("sha256");
    this.git = this.makeGit();
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function hashInto(path: string, digests: Digests, signal?: AbortSignal): Promise<void> {
  for await (const chunk of createReadStream(path, signal ? { signal } : {})) digests.update(chunk as Buffer);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export function backoffDelay(policy: RetryPolicy, attempt: number): number {
  const base = Math.min(policy.maxBackoffMs, policy.backoffMs * 2 ** (attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

interface HubResponse {
  response: Response;
  /** X-Linked-Etag / ETag of the hub's own answer (before any CDN redirect). */
  etag: string | null;
  linkedSize: number | null;
}

/**
 * Follows the hub's redirects by hand: the resolve answer carries the checksum headers, and the
 * token must not follow the request to a CDN on another origin.
 */
async function fetchResolving(options: DownloadOptions, headers: Record<string, string>, signal: AbortSignal): Promise<HubResponse> {
  let url = options.url;
  let etag: string | null = null;
  let linkedSize: number | null = null;
  for (let hop = 0; hop < 6; hop++) {
    const response = await fetch(url, { headers: hubHeaders(options.hub, url, headers), redirect: "manual", signal });
    if (hop === 0) {
      etag = bareEtag(response.headers.get("x-linked-etag")) ?? bareEtag(response.headers.get("etag"));
      const size = Number(response.headers.get("x-linked-size") ?? NaN);
      linkedSize = Number.isSafeInteger(size) && size >= 0 ? size : null;
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel().catch(() => {});
      url = new URL(location, url).toString();
      continue;
    }
    return { response, etag, linkedSize };
  }
  throw new ModelInstallError("http", `Too many redirects for ${options.expected.path}.`);
}

function parseContentRange(value: string | null): { start: number; total: number | null } | null {
  const m = value ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim()) : null;
  if (!m) return null;
  return { start: Number(m[1]), total: m[3] === "*" ? null : Number(m[3]) };
}

function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/** Downloads (or finishes downloading) one file; see the module comment. */
export async function downloadFile(options: DownloadOptions): Promise<DownloadedFile> {
  const { expected, policy, signal, dest } = options;
  const part = `${dest}.part`;
  const onBytes = options.onBytes ?? (() => {});
  let expectedSize = expected.size;
  let expectedSha = expected.sha256;
  let expectedGit = expected.gitSha1;
  const digests = new Digests(expected);

  // A .part from an earlier run: keep its bytes if they can still be right.
  let have = await sizeOf(part);
  if (expectedSize !== null && have > expectedSize) {
    await rm(part, { force: true });
    have = 0;
  }
  if (have > 0) await hashInto(part, digests, signal);
  const resumedFrom = have;
  onBytes(have);

  let failures = 0;
  // A .part that is already whole (a run stopped between the last byte and the rename) needs no request.
  const whole = expectedSize !== null && have === expectedSize && have > 0;
  for (;;) {
    if (whole) break;
    if (signal?.aborted) throw new ModelInstallError("cancelled", "The download was cancelled.");
    const stall = new AbortController();
    const combined = signal ? AbortSignal.any([signal, stall.signal]) : stall.signal;
    let stallTimer: ReturnType<typeof setTimeout> | undefined;
    const armStall = () => {
      clearTimeout(stallTimer);
      stallTimer = setTimeout(() => stall.abort(new Error(`no data for ${policy.stallMs} ms`)), policy.stallMs);
    };
    let file: FileHandle | undefined;
    const haveBefore = have;
    try {
      // Opened before the request, so that reading starts the moment the answer does (see drain).
      file = await open(part, "a");
      if (have === 0) await file.truncate(0);
      armStall();
      const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
      let hub: HubResponse;
      try {
        hub = await fetchResolving(options, headers, combined);
      } catch (error) {
        if (error instanceof ModelInstallError) throw error;
        throw stall.signal.aborted && !signal?.aborted
          ? new ModelInstallError("network", `the connection stalled`, { retryable: true })
          : networkError(options.hub, error, signal);
      }
      const { response } = hub;
      if (hub.etag && expectedSha === null && /^[0-9a-f]{64}$/.test(hub.etag)) expectedSha = hub.etag;
      if (hub.etag && expectedGit === null && expectedSha === null && /^[0-9a-f]{40}$/.test(hub.etag) && hub.linkedSize === null) {
        expectedGit = hub.etag;
      }
      if (expectedSize === null && hub.linkedSize !== null) expectedSize = hub.linkedSize;

      if (response.status === 416 && have > 0) {
        // Nothing left to send: either the .part is complete, or it is longer than the file.
        await response.body?.cancel().catch(() => {});
        const total = parseContentRange(response.headers.get("content-range"))?.total ?? expectedSize;
        if (total !== null && total === have) break;
        await file.truncate(0);
        onBytes(-have);
        have = 0;
        digests.reset();
        continue;
      }
      if (!response.ok) {
        await response.body?.cancel().catch(() => {});
        throw hubHttpError(options.hub, options.repo, options.revision, response, expected.path);
      }
      if (response.status === 206) {
        const range = parseContentRange(response.headers.get("content-range"));
        if (!range || range.start !== have) {
          await response.body?.cancel().catch(() => {});
          throw new ModelInstallError("network", `the server resumed ${expected.path} at the wrong byte`, { retryable: true });
        }
        if (expectedSize === null && range.total !== null) expectedSize = range.total;
      } else {
        // 200: the whole file, from byte 0, even if we asked for a range.
        if (have > 0) {
          options.log?.(`${expected.path}: the server ignored the range request; starting over`);
          onBytes(-have);
          have = 0;
          digests.reset();
          await file.truncate(0);
        }
        const length = Number(response.headers.get("content-length") ?? NaN);
        if (expectedSize === null && Number.isSafeInteger(length)) expectedSize = length;
      }
      if (!response.body) throw new ModelInstallError("network", `no body for ${expected.path}`, { retryable: true });

      const target = file;
      await drain(response.body, async (chunk) => {
        armStall();
        digests.update(chunk);
        await writeAll(target, chunk, part);
        have += chunk.byteLength;
        onBytes(chunk.byteLength);
        if (expectedSize !== null && have > expectedSize) {
          throw new ModelInstallError(
            "verify_failed",
            `${expected.path} is longer than the ${formatCount(expectedSize)} bytes the hub lists; it was not installed.`,
            { file: expected.path },
          );
        }
      });
      await file.close();
      file = undefined;
      if (expectedSize !== null && have < expectedSize) {
        throw new ModelInstallError("network", `the connection closed early`, { retryable: true });
      }
      break;
    } catch (caught) {
      let error = caught;
      if (signal?.aborted) throw new ModelInstallError("cancelled", "The download was cancelled.", { cause: error });
      if (!(error instanceof ModelInstallError)) {
        // The body stream broke (reset, terminated) or stalled.
        error = new ModelInstallError("network", stall.signal.aborted ? "the connection stalled" : describeStreamError(error), {
          retryable: true,
          cause: error,
        });
      }
      if (error instanceof ModelInstallError && error.code === "verify_failed") {
        await rm(part, { force: true });
      }
      if (!isRetryable(error)) throw error;
      // A connection that delivered something before it broke is progress: only tries in a row that
      // deliver nothing count toward giving up, so a long download on a flaky line still finishes.
      if (have > haveBefore) failures = 0;
      failures++;
      if (failures > policy.retries) {
        const total = expectedSize === null ? "" : ` of ${formatCount(expectedSize)}`;
        throw new ModelInstallError(
          "network",
          `The download of ${expected.path} stopped at byte ${formatCount(have)}${total} (${(error as Error).message}) after ${failures} tries. ` +
            `Run the same command again to resume from there.`,
          { cause: error, file: expected.path },
        );
      }
      const delay = backoffDelay(policy, failures);
      options.log?.(`${expected.path}: ${(error as Error).message} at byte ${have}; retrying in ${delay} ms (try ${failures + 1} of ${policy.retries + 1})`);
      try {
        await sleep(delay, signal);
      } catch {
        throw new ModelInstallError("cancelled", "The download was cancelled.");
      }
    } finally {
      clearTimeout(stallTimer);
      await file?.close().catch(() => {});
    }
  }

  const sha256 = digests.sha256.digest("hex");
  const gitSha1 = digests.git ? digests.git.digest("hex") : null;
  const fail = (why: string) => rm(part, { force: true }).then(() => {
    throw new ModelInstallError("verify_failed", `${expected.path} is corrupt: ${why}. It was not installed; pull again to download it afresh.`, {
      file: expected.path,
    });
  });
  if (expectedSize !== null && have !== expectedSize) await fail(`it has ${formatCount(have)} bytes, the hub lists ${formatCount(expectedSize)}`);
  if (expectedSha !== null && sha256 !== expectedSha) await fail(`its sha256 is ${sha256}, the hub publishes ${expectedSha}`);
  if (expectedGit !== null && gitSha1 !== null && gitSha1 !== expectedGit) await fail(`its git blob id is ${gitSha1}, the hub publishes ${expectedGit}`);
  await rename(part, dest);
  return { size: have, sha256, gitSha1, resumedFrom };
}

/** Reading ahead of the disk, up to this much: the bytes a dying connection delivered are all kept. */
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/**
 * Feeds a response body to `write`, chunk by chunk, in order. The body is read eagerly into a small
 * queue while the disk catches up: a web stream that errors (connection dropped) throws away the
 * chunks still queued inside it, and each of those would be a byte to download again.
 */
async function drain(body: ReadableStream<Uint8Array>, write: (chunk: Uint8Array) => Promise<void>): Promise<void> {
  const reader = body.getReader();
  const queue: Uint8Array[] = [];
  let queued = 0;
  let finished = false;
  let failure: unknown = null;
  // In an object, so that TypeScript does not narrow what the closures set to null.
  const wake: { writer: (() => void) | null; reader: (() => void) | null } = { writer: null, reader: null };
  let stopped = false;
  const pump = (async () => {
    try {
      while (!stopped) {
        if (queued > READ_AHEAD_BYTES) {
          await new Promise<void>((resolve) => {
            wake.reader = resolve;
            if (queued <= READ_AHEAD_BYTES || stopped) resolve();
          });
          continue;
        }
        const { done, value } = await reader.read();
        if (done) break;
        queue.push(value);
        queued += value.byteLength;
        wake.writer?.();
      }
    } catch (error) {
      failure = error;
    } finally {
      finished = true;
      wake.writer?.();
    }
  })();
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.byteLength;
        wake.reader?.();
        await write(chunk);
        continue;
      }
      if (finished) break;
      await new Promise<void>((resolve) => {
        wake.writer = resolve;
        if (queue.length || finished) resolve();
      });
    }
  } catch (error) {
    stopped = true;
    wake.reader?.();
    await reader.cancel().catch(() => {});
    await pump;
    throw error;
  }
  await pump;
  if (failure) throw failure;
}

async function writeAll(file: FileHandle, chunk: Uint8Array, path: string): Promise<void> {
  try {
    let offset = 0;
    while (offset < chunk.byteLength) {
      const { bytesWritten } = await file.write(chunk, offset, chunk.byteLength - offset);
      offset += bytesWritten;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOSPC") {
      throw new ModelInstallError("disk_full", `The disk is full: cannot write ${path}. Free some space and run the same command again to resume.`, {
        cause: error,
      });
    }
    throw error;
  }
}

function describeStreamError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message ?? String(error);
}

/** sha256 (and optionally the git blob id) of a file on disk. */
export async function hashFile(path: string, withGit = false, signal?: AbortSignal): Promise<{ size: number; sha256: string; gitSha1: string | null }> {
  const size = (await stat(path)).size;
  const digests = new Digests({ path, size, sha256: null, gitSha1: withGit ? "x" : null });
  await hashInto(path, digests, signal);
  return { size, sha256: digests.sha256.digest("hex"), gitSha1: digests.git ? digests.git.digest("hex") : null };
}
