import type { z } from "zod";
import { CLIENT_MESSAGE_TYPES, ClientMessage, DaemonMessage, type ErrorCode } from "./messages";

export type ParseOutcome<T> = { ok: true; message: T } | { ok: false; code: ErrorCode; message: string };

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join(".") : "message"}: ${i.message}`)
    .join("; ");
}

function parseWith<T>(schema: z.ZodType<T>, text: string, knownTypes: readonly string[]): ParseOutcome<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, code: "malformed_json", message: "The message is not valid JSON." };
  }
  const type = typeof raw === "object" && raw !== null ? (raw as { type?: unknown }).type : undefined;
  if (typeof type !== "string" || !knownTypes.includes(type)) {
    return { ok: false, code: "unknown_message", message: `Unknown message type ${JSON.stringify(type ?? null)}.` };
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    return { ok: false, code: "invalid_message", message: `The ${type} message is invalid: ${describeIssues(result.error)}.` };
  }
  return { ok: true, message: result.data };
}

export function parseClientMessage(text: string): ParseOutcome<ClientMessage> {
  return parseWith(ClientMessage, text, CLIENT_MESSAGE_TYPES);
}

const DAEMON_MESSAGE_TYPES = DaemonMessage.options.map((o) => o.shape.type.value);

export function parseDaemonMessage(text: string): ParseOutcome<DaemonMessage> {
  return parseWith(DaemonMessage, text, DAEMON_MESSAGE_TYPES);
}
