/**
 * A local imitation of the Hugging Face Hub HTTP API for pull tests, over node:http:
 *
 *   GET /api/models/{owner}/{name}/revision/{rev}[?blobs=true]  -> { sha, siblings: [{ rfilename, size, blobId, lfs }] }
 *   GET /{owner}/{name}/resolve/{rev}/{path}   LFS: 302 to the "CDN" (another origin: localhost vs
 *       127.0.0.1) with X-Linked-Etag / X-Linked-Size; other files: 200 with the git blob id as ETag
 *   GET /cdn/{sha256}?path=…                     the LFS bytes
 *
 * Both honour Range. Private repos answer 401 without the right Bearer token (and 404 for unknown
 * repos, X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound as the hub does). Faults can be
 * injected per file: a connection dropped at a byte, a flipped byte, a throttle, ignored ranges,
 * HTTP errors.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readdir, readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";

export interface FakeFile {
  data: Buffer;
  lfs: boolean;
  sha256: string;
  gitSha1: string;
}

export interface FakeRepo {
  id: string;
  commit: string;
  files: Map<string, FakeFile>;
  private: boolean;
  gated: boolean;
}

export interface RecordedRequest {
  method: string;
  path: string;
  /** The repo file this request was for, if any. */
  file: string | null;
  host: string;
  range: string | null;
  authorization: string | null;
}

export interface Faults {
  /** Drop the connection when the body reaches this absolute byte of the file, `times` times. */
  dropAt: Map<string, { byte: number; times: number }>;
  /** Drop the connection after this many bytes of each response, `times` times. */
  dropEvery: Map<string, { bytes: number; times: number }>;
  /** Stop sending (without closing) when the body reaches this byte, `times` times. */
  stallAt: Map<string, { byte: number; times: number }>;
  /** Flip the byte at this offset whenever the file is served. */
  corrupt: Map<string, number>;
  /** Answer this status `times` times. */
  status: Map<string, { status: number; times: number }>;
  /** Serve whole files even when a range is asked for. */
  ignoreRange: boolean;
  /** Bytes per second for file bodies (0: as fast as possible). */
  throttle: number;
  /** Hold every file request this long before answering (ms). */
  delayMs: number;
}

const LFS_EXT = /\.(onnx|pb|onnx_data|safetensors|bin|ckpt)$/;

export function gitBlobSha1(data: Buffer): string {
  return createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
}

function fakeFile(data: Buffer, name: string): FakeFile {
  return { data, lfs: LFS_EXT.test(name), sha256: createHash("sha256").update(data).digest("hex"), gitSha1: gitBlobSha1(data) };
}

async function readTree(root: string, dir = root): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) for (const [k, v] of await readTree(root, p)) files.set(k, v);
    else files.set(path.relative(root, p).split(path.sep).join("/"), await readFile(p));
  }
  return files;
}

export class FakeHub {
  readonly requests: RecordedRequest[] = [];
  readonly repos = new Map<string, FakeRepo>();
  readonly faults: Faults = { dropAt: new Map(), dropEvery: new Map(), stallAt: new Map(), corrupt: new Map(), status: new Map(), ignoreRange: false, throttle: 0, delayMs: 0 };
  /** The token private and gated repos accept. */
  token = "hf_good_token";
  private readonly sockets = new Set<import("node:net").Socket>();

  private constructor(private readonly server: Server) {
    server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  static async start(): Promise<FakeHub> {
    const server = createServer();
    const hub = new FakeHub(server);
    server.on("request", (req, res) => void hub.handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
      else res.destroy();
    }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return hub;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** What HF_ENDPOINT is set to. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Serves a folder (e.g. a fixture model) as a repo, plus `extra` files the engine does not need. */
  async addRepo(
    id: string,
    options: { dir?: string; files?: Record<string, Buffer | string>; extra?: Record<string, Buffer | string>; private?: boolean; gated?: boolean; commit?: string } = {},
  ): Promise<FakeRepo> {
    const files = new Map<string, FakeFile>();
    if (options.dir) for (const [k, v] of await readTree(options.dir)) files.set(k, fakeFile(v, k));
    for (const [k, v] of Object.entries({ ...options.files, ...options.extra })) files.set(k, fakeFile(Buffer.from(v), k));
    const commit = options.commit ?? createHash("sha1").update(`${id}:${[...files.values()].map((f) => f.gitSha1).join()}`).digest("hex");
    const repo = { id, commit, files, private: options.private ?? false, gated: options.gated ?? false };
    this.repos.set(id, repo);
    return repo;
  }

  /** Requests for one repo file (resolve and CDN alike). */
  requestsFor(file: string): RecordedRequest[] {
    return this.requests.filter((r) => r.file === file);
  }

  reset(): void {
    this.requests.length = 0;
    this.faults.dropAt.clear();
    this.faults.dropEvery.clear();
    this.faults.stallAt.clear();
    this.faults.corrupt.clear();
    this.faults.status.clear();
    this.faults.ignoreRange = false;
    this.faults.throttle = 0;
    this.faults.delayMs = 0;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private authorized(repo: FakeRepo, req: IncomingMessage): boolean {
    if (!repo.private && !repo.gated) return true;
    return req.headers.authorization === `Bearer ${this.token}`;
  }

  private refuse(res: ServerResponse, repo: FakeRepo, req: IncomingMessage): void {
    if (repo.gated && req.headers.authorization) {
      res.writeHead(403, { "x-error-code": "GatedRepo", "content-type": "application/json" }).end(JSON.stringify({ error: "Access to this repo is restricted." }));
      return;
    }
    res.writeHead(401, { "x-error-code": "RepoNotFound", "content-type": "application/json" }).end(JSON.stringify({ error: "Repository Not Found" }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", `http://${req.headers.host}`);
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      file: null,
      host: req.headers.host ?? "",
      range: req.headers.range ?? null,
      authorization: req.headers.authorization ?? null,
    };
    this.requests.push(record);

    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (m) {
      const repo = this.repos.get(decodeURIComponent(m[1]!));
      if (!repo) return void res.writeHead(404, { "x-error-code": "RepoNotFound" }).end(JSON.stringify({ error: "Repository not found" }));
      if (!this.authorized(repo, req)) return this.refuse(res, repo, req);
      const rev = decodeURIComponent(m[2]!);
      if (rev !== "main" && rev !== repo.commit) return void res.writeHead(404, { "x-error-code": "RevisionNotFound" }).end(JSON.stringify({ error: "Invalid rev id" }));
      const blobs = url.searchParams.get("blobs") === "true";
      const siblings = [...repo.files].map(([rfilename, f]) => ({
        rfilename,
        ...(blobs ? { blobId: f.gitSha1, size: f.data.length } : {}),
        ...(blobs && f.lfs ? { lfs: { sha256: f.sha256, size: f.data.length, pointerSize: 134 } } : {}),
      }));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ _id: "x", id: repo.id, modelId: repo.id, sha: repo.commit, private: repo.private, gated: repo.gated, siblings }));
      return;
    }

    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (m) {
      const repo = this.repos.get(decodeURIComponent(m[1]!));
      if (!repo) return void res.writeHead(404, { "x-error-code": "RepoNotFound" }).end();
      if (!this.authorized(repo, req)) return this.refuse(res, repo, req);
      const rev = decodeURIComponent(m[2]!);
      const file = m[3]!.split("/").map(decodeURIComponent).join("/");
      record.file = file;
      if (rev !== "main" && rev !== repo.commit) return void res.writeHead(404, { "x-error-code": "RevisionNotFound" }).end();
      const f = repo.files.get(file);
      if (!f) return void res.writeHead(404, { "x-error-code": "EntryNotFound" }).end();
      if (this.injectedStatus(file, res)) return;
      if (f.lfs) {
        // Another origin, as the real CDN is: the token must not follow.
        const cdn = `http://localhost:${this.port}/cdn/${f.sha256}?path=${encodeURIComponent(file)}`;
        res.writeHead(302, {
          location: cdn,
          "x-linked-etag": `"${f.sha256}"`,
          "x-linked-size": String(f.data.length),
          "x-repo-commit": repo.commit,
          etag: `"${f.gitSha1}"`,
        });
        res.end();
        return;
      }
      return this.serveBytes(req, res, file, f, { etag: `"${f.gitSha1}"`, "x-repo-commit": repo.commit });
    }

    m = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
    if (m) {
      const file = url.searchParams.get("path") ?? "";
      record.file = file;
      for (const repo of this.repos.values()) {
        const f = repo.files.get(file);
        if (f && f.sha256 === m[1]) return this.serveBytes(req, res, file, f, { etag: `"${f.sha256}"` });
      }
      return void res.writeHead(404).end();
    }
    res.writeHead(404).end();
  }

  private injectedStatus(file: string, res: ServerResponse): boolean {
    const fault = this.faults.status.get(file);
    if (!fault || fault.times <= 0) return false;
    fault.times--;
    res.writeHead(fault.status, { "content-type": "text/plain" }).end("injected failure");
    return true;
  }

  private async serveBytes(req: IncomingMessage, res: ServerResponse, file: string, f: FakeFile, headers: Record<string, string>): Promise<void> {
    if (this.faults.delayMs) await new Promise((r) => setTimeout(r, this.faults.delayMs));
    let data = f.data;
    const flip = this.faults.corrupt.get(file);
    if (flip !== undefined) {
      data = Buffer.from(data);
      data[flip] = data[flip]! ^ 0xff;
    }
    let start = 0;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (range && !this.faults.ignoreRange) {
      start = Number(range[1]);
      if (start >= data.length) {
        res.writeHead(416, { "content-range": `bytes */${data.length}` }).end();
        return;
      }
      res.writeHead(206, { ...headers, "content-length": String(data.length - start), "content-range": `bytes ${start}-${data.length - 1}/${data.length}`, "accept-ranges": "bytes" });
    } else {
      res.writeHead(200, { ...headers, "content-length": String(data.length), "accept-ranges": "bytes" });
    }
    const drop = this.faults.dropAt.get(file);
    const every = this.faults.dropEvery.get(file);
    let dropAt = drop && drop.times > 0 && drop.byte >= start ? drop.byte : null;
    if (dropAt !== null) drop!.times--;
    else if (every && every.times > 0 && start + every.bytes < data.length) {
      every.times--;
      dropAt = start + every.bytes;
    }
    const stall = this.faults.stallAt.get(file);
    const stallAt = dropAt === null && stall && stall.times > 0 && stall.byte >= start ? stall.byte : null;
    if (stallAt !== null) stall!.times--;
    const end = dropAt ?? stallAt ?? data.length;
    const chunk = 64 * 1024;
    for (let at = start; at < end; at += chunk) {
      const piece = data.subarray(at, Math.min(end, at + chunk));
      const flushed = new Promise<void>((resolve) => res.write(piece, () => resolve()));
      if (this.faults.throttle) await new Promise((r) => setTimeout(r, (piece.length / this.faults.throttle) * 1000));
      await flushed;
      if (res.destroyed) return;
    }
    if (dropAt !== null) {
      res.socket?.destroy();
      return;
    }
    if (stallAt !== null) return; // the client gives up on the silence and closes
    res.end();
  }
}
