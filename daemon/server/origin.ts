/**
 * Web pages must never drive the daemon: a browser always sends an Origin header, http(s) for
 * pages and "null" for files and sandboxed frames. The UXP panel and Node clients send none
 * (or a non-web scheme).
 */
export function isBrowserOrigin(origin: string | undefined): boolean {
  if (origin === undefined || origin === "") return false;
  const lower = origin.trim().toLowerCase();
  return lower === "null" || lower.startsWith("http:") || lower.startsWith("https:") || lower.startsWith("file:");
}
