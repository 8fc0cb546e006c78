#!/usr/bin/env node
/** `underpaint serve | token | generate`: the daemon's command line. */
import { CancelledError, EngineError } from "./engine/engine";
import { ModelFolderError } from "./models/errors";
import { UsageError } from "./commands/args";
import { generateCommand, GENERATE_USAGE } from "./commands/generate";
import { modelsCommand, MODELS_USAGE } from "./commands/models";
import { serve } from "./commands/serve";
import { token } from "./commands/token";

const USAGE = `Underpaint: local Stable Diffusion for Photoshop.

  underpaint serve [--port N] [--host H] [--models DIR] [--no-optimized-cache] [--unet-int8]
                                                          start the daemon the panel connects to
  underpaint token                                        print the pairing token for the panel
  ${GENERATE_USAGE}
  ${MODELS_USAGE}
`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "token":
      return token();
    case "generate":
      return generateCommand(rest);
    case "models":
      return modelsCommand(rest);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`Unknown command "${command}".`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (error instanceof CancelledError) {
    process.stderr.write("\ncancelled\n");
    process.exit(130);
  }
  if (error instanceof EngineError || error instanceof ModelFolderError) {
    process.stderr.write(`error (${error.code}): ${error.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
