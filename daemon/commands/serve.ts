import path from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_HOST, DEFAULT_PORT } from "../../protocol";
import { DiffusionEngine } from "../engine/diffusion-engine";
import { ModelDownloads } from "../models/downloads";
import type { ModelLog } from "../models/execution-provider";
import { Int8Unets } from "../models/int8-unets";
import { Float32Copies } from "../models/float32-copies";
import { OptimizedModelCache, optimizedCacheSwitchedOff } from "../models/optimized-models";
import { cacheDir, defaultModelsDir } from "../paths";
import { startServer } from "../server/server";
import { loadOrCreateToken } from "../server/token";
import { intFlag, parseWith } from "./args";
import { DAEMON_VERSION } from "../version";

export async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      models: { type: "string" },
      "no-optimized-cache": { type: "boolean", default: false },
      "unet-int8": { type: "boolean", default: false },
    },
    strict: true,
  });
  const port = parseWith(intFlag(0, 65535), values.port ?? DEFAULT_PORT, "port");
  const host = values.host ?? DEFAULT_HOST;
  const modelsDir = values.models ?? defaultModelsDir();
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1") {
    log(`warning: listening on ${host} lets other machines reach the daemon; only the pairing token protects it`);
  }
  const token = await loadOrCreateToken();
  const modelLog: ModelLog = (level, message) => log(`${level}: ${message}`);
  const optimizedModels =
    values["no-optimized-cache"] || optimizedCacheSwitchedOff() ? null : new OptimizedModelCache({ dir: cacheDir(), log: modelLog });
  log(optimizedModels ? `optimized model copies in ${optimizedModels.root}` : "optimized-model cache off");
  const unetInt8 = values["unet-int8"] ? new Int8Unets(path.join(cacheDir(), "int8"), modelLog) : null;
  if (unetInt8) log(`UNet in int8 on the CPU (copies in ${unetInt8.root}): up to about 1.3x faster than float32 on the CPUs measured so far, and pictures differ slightly`);
  // float16 parts cannot run on the CPU as they are: their float32 copies are kept even with the optimized cache off.
  const float32Copies = new Float32Copies(path.join(cacheDir(), "float32"), modelLog);
  const engine = new DiffusionEngine({ modelsDir, log: modelLog, optimizedModels, unetInt8, float32Copies });
  const { models } = await engine.capabilities();
  log(`models folder ${modelsDir}: ${models.length ? models.map((m) => m.id).join(", ") : "no models yet"}`);
  const installer = new ModelDownloads({ modelsDir, log });
  const server = await startServer({ token, engine, host, port, log, daemonVersion: DAEMON_VERSION, installer });
  console.log(`listening on ${server.url}`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    await server.close();
    await installer.close();
    await engine.dispose();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}
