/** The pairing token: created once in the user's config dir, readable by the user alone. */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { mkdir, readFile, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { configDir } from "../paths";

const TOKEN_FILE = "pairing-token";
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{32,128}$/;

/** Reads the token, creating it (mode 0600) on first use. */
export async function loadOrCreateToken(dir = configDir()): Promise<string> {
  const file = path.join(dir, TOKEN_FILE);
  try {
    const existing = (await readFile(file, "utf8")).trim();
    if (TOKEN_PATTERN.test(existing)) return existing;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const token = randomBytes(24).toString("base64url");
  await writeFile(file, token + "\n", { mode: 0o600 });
  await chmod(file, 0o600); // writeFile's mode is ignored when the file already existed
  return token;
}

export function tokensMatch(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
