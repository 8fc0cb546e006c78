/**
 * The little of the Hugging Face Hub HTTP API that a pull needs:
 *
 *   GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true
 *       -> { sha: commit, siblings: [{ rfilename, size, blobId, lfs?: { sha256, size } }] }
 *   GET {endpoint}/{repo}/resolve/{commit}/{path}
 *       -> LFS files: a redirect to the CDN carrying X-Linked-Etag (the sha256) and X-Linked-Size;
 *          other files: 200 with ETag = the git blob id. Both honour Range.
 *
 * The endpoint comes from HF_ENDPOINT (default https://huggingface.co), a token from HF_TOKEN.
 * The token goes to the hub only: never to a CDN on another origin.
 */
import { z } from "zod";
import { DAEMON_VERSION } from "../version";
import { ModelInstallError } from "./install-errors";

export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";

type Env = Record<string, string | undefined>;

export interface HubConfig {
  endpoint: string;
  token?: string;
  userAgent: string;
}

export function hubConfigFromEnv(env: Env = process.env): HubConfig {
  const endpoint = (env.HF_ENDPOINT?.trim() || DEFAULT_HF_ENDPOINT).replace(/\/+$/, "");
  const token = env.HF_TOKEN?.trim() || env.HUGGING_FACE_HUB_TOKEN?.trim() || undefined;
  return { endpoint, ...(token ? { token } : {}), userAgent: `underpaint/${DAEMON_VERSION}` };
}

/** One file of a repo at a commit, with what the hub says about its contents. */
export interface HubFile {
  /** Path inside the repo, "/"-separated. */
  path: string;
  size: number | null;
  /** LFS files: the sha256 of the contents. */
  sha256: string | null;
  /** Plain git files: the git blob id (sha1 of "blob <size>\0" + contents). */
  gitSha1: string | null;
}

export interface HubListing {
  repo: string;
  revision: string;
  /** The commit the revision pointed to: every file is fetched from it, so a moving branch cannot mix versions. */
  commit: string;
  files: HubFile[];
}

const Sibling = z.looseObject({
  rfilename: z.string().min(1),
  size: z.number().int().nonnegative().optional(),
  blobId: z.string().optional(),
  lfs: z.looseObject({ sha256: z.string().optional(), oid: z.string().optional(), size: z.number().int().nonnegative().optional() }).nullish(),
});
const RepoInfo = z.looseObject({
  sha: z.string().optional(),
  siblings: z.array(Sibling).optional(),
});

const HEX64 = /^[0-9a-f]{64}$/;
const HEX40 = /^[0-9a-f]{40}$/;

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

export function repoUrl(config: HubConfig, repo: string): string {
  return `${config.endpoint}/${repo}`;
}

export function apiUrl(config: HubConfig, repo: string, revision: string): string {
  return `${config.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
}

export function resolveUrl(config: HubConfig, repo: string, commit: string, path: string): string {
  return `${config.endpoint}/${repo}/resolve/${encodeURIComponent(commit)}/${encodePath(path)}`;
}

/** Headers for a request to `url`: the token only when it goes to the hub's own origin. */
export function hubHeaders(config: HubConfig, url: string, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = { "user-agent": config.userAgent, ...extra };
  if (config.token && sameOrigin(url, config.endpoint)) headers.authorization = `Bearer ${config.token}`;
  return headers;
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** An ETag value without W/ and quotes. */
export function bareEtag(value: string | null): string | null {
  if (!value) return null;
  return value.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/**
 * Turns an HTTP error from the hub into an error that says what to do. `what` names the
 * request ("the file list of X", "unet/model.onnx").
 */
export function hubHttpError(config: HubConfig, repo: string, revision: string, response: Response, what: string): ModelInstallError {
  const errorCode = response.headers.get("x-error-code") ?? "";
  const status = response.status;
  if (status === 401 || (status === 403 && errorCode !== "GatedRepo")) {
    return config.token
      ? new ModelInstallError(
          "unauthorized",
          `The Hugging Face Hub refused the token in HF_TOKEN for ${repo} (HTTP ${status}): check that it is valid and can read this repo, or that the repo id is right.`,
        )
      : new ModelInstallError(
          "unauthorized",
          `${repo} needs a Hugging Face token (HTTP ${status}): the repo is private or gated, or does not exist. Create a read token at ${config.endpoint}/settings/tokens and set HF_TOKEN to it.`,
        );
  }
  if (status === 403) {
    return new ModelInstallError(
      "gated",
      `${repo} is gated: accept its license at ${repoUrl(config, repo)} with the account whose token is in HF_TOKEN, then pull again.`,
    );
  }
  if (status === 404) {
    if (errorCode === "RevisionNotFound") {
      return new ModelInstallError("revision_not_found", `${repo} has no revision "${revision}" on ${config.endpoint}.`);
    }
    if (errorCode === "EntryNotFound") {
      return new ModelInstallError("http", `${repo} lists ${what} but the hub cannot find it (HTTP 404); try the pull again later.`);
    }
    return new ModelInstallError(
      "repo_not_found",
      `There is no model repository "${repo}" on ${config.endpoint} (HTTP 404): check the id (owner/name), or run \`npx underpaint models list\` for the known ones.`,
    );
  }
  return new ModelInstallError("http", `The Hugging Face Hub answered HTTP ${status} for ${what} of ${repo}.`, {
    retryable: isRetryableStatus(status),
  });
}

/** 429 and 5xx are worth another try; other HTTP errors are not. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** The file list of a repo at a revision, with sizes and checksums. */
export async function listRepoFiles(
  config: HubConfig,
  repo: string,
  revision: string,
  signal?: AbortSignal,
): Promise<HubListing> {
  const url = apiUrl(config, repo, revision);
  let response: Response;
  try {
    response = await fetch(url, { headers: hubHeaders(config, url, { accept: "application/json" }), ...(signal ? { signal } : {}) });
  } catch (error) {
    throw networkError(config, error, signal);
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => {});
    throw hubHttpError(config, repo, revision, response, "the file list");
  }
  let parsed;
  try {
    parsed = RepoInfo.safeParse(await response.json());
  } catch (error) {
    throw new ModelInstallError("http", `The hub's file list of ${repo} is not valid JSON (${(error as Error).message}).`, { cause: error });
  }
  if (!parsed.success) {
    throw new ModelInstallError("http", `The hub's file list of ${repo} is not what Underpaint expects: ${parsed.error.issues[0]?.message}.`);
  }
  const commit = parsed.data.sha && HEX40.test(parsed.data.sha) ? parsed.data.sha : revision;
  const files = (parsed.data.siblings ?? []).map((s): HubFile => {
    const sha256 = s.lfs?.sha256 ?? s.lfs?.oid ?? null;
    const lfs = Boolean(s.lfs);
    return {
      path: s.rfilename,
      size: s.lfs?.size ?? s.size ?? null,
      sha256: sha256 && HEX64.test(sha256) ? sha256 : null,
      gitSha1: !lfs && s.blobId && HEX40.test(s.blobId) ? s.blobId : null,
    };
  });
  return { repo, revision, commit, files };
}

/** A failed fetch (DNS, refused, reset) as a sentence; an abort stays an abort. */
export function networkError(config: HubConfig, error: unknown, signal?: AbortSignal): Error {
  if (signal?.aborted) return new ModelInstallError("cancelled", "The download was cancelled.");
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message ?? (error as Error).message;
  return new ModelInstallError(
    "network",
    `Cannot reach ${config.endpoint} (${detail}): check the connection, or HF_ENDPOINT if you use a mirror.`,
    { cause: error, retryable: true },
  );
}

export function isRetryable(error: unknown): boolean {
  return error instanceof ModelInstallError && error.retryable;
}
