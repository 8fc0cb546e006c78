/**
 * The WebSocket the client needs: the browser's shape, which UXP's WebSocket and Node's `ws`
 * both have. Binary messages arrive as ArrayBuffer (binaryType "arraybuffer").
 */
export interface SocketMessageEvent {
  data: unknown;
}

export interface SocketCloseEvent {
  code: number;
  reason: string;
}

export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: SocketMessageEvent) => void) | null;
  onclose: ((event: SocketCloseEvent) => void) | null;
  onerror: ((event: unknown) => void) | null;
  /** Must copy the bytes before returning (as browsers do): pixels are sent as views of the caller's image. */
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type SocketFactory = (url: string) => WebSocketLike;

export const SOCKET_OPEN = 1;

/** Binary payloads as bytes, whatever the socket delivered (ArrayBuffer, a view, a Node Buffer). */
export function bytesOf(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}
