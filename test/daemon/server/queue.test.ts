import { describe, expect, it } from "vitest";
import { JobQueue } from "../../../daemon/server/queue";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe("JobQueue", () => {
  it("runs one job at a time in FIFO order and pushes new positions", async () => {
    const queue = new JobQueue("cpu");
    const order: string[] = [];
    const gates = [deferred(), deferred(), deferred()];
    const positions: Record<string, number[]> = { a: [], b: [], c: [] };
    const entry = (key: string, gate: ReturnType<typeof deferred>) => ({
      key,
      owner: key === "c" ? "other" : "me",
      run: async () => {
        order.push(key);
        await gate.promise;
      },
      onPosition: (p: number) => positions[key]!.push(p),
      onCancelledWhileQueued: () => order.push(`cancelled ${key}`),
    });
    expect(queue.enqueue(entry("a", gates[0]!))).toBe(0);
    await Promise.resolve();
    expect(queue.enqueue(entry("b", gates[1]!))).toBe(1);
    expect(queue.enqueue(entry("c", gates[2]!))).toBe(2);
    expect(queue.countOwnedBy("me")).toBe(2);
    gates[0]!.resolve();
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(["a", "b"]);
    expect(positions.c).toEqual([1]);
    gates[1]!.resolve();
    gates[2]!.resolve();
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(["a", "b", "c"]);
    expect(queue.size).toBe(0);
  });

  it("cancels queued jobs without running them and aborts the running one", async () => {
    const queue = new JobQueue("cpu");
    const events: string[] = [];
    queue.enqueue({
      key: "long",
      owner: "x",
      run: (signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => { events.push("aborted"); resolve(); })),
      onPosition: () => {},
      onCancelledWhileQueued: () => events.push("never"),
    });
    queue.enqueue({ key: "next", owner: "y", run: async () => void events.push("ran next"), onPosition: () => {}, onCancelledWhileQueued: () => events.push("cancelled next") });
    await Promise.resolve();
    expect(queue.cancel("next")).toBe(true);
    expect(queue.cancel("missing")).toBe(false);
    queue.cancelOwnedBy("x");
    await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual(["cancelled next", "aborted"]);
  });
});
