/** The panel's queue bookkeeping: positions, steps, the head, cancelling, step timing; and the host that takes modal calls in turn. */
import { describe, expect, it } from "vitest";
import type { DocumentHost } from "../../plugin/src/photoshop/host";
import { describeState, formatStepTime, GenerationQueue } from "../../plugin/src/panel/queue";
import { serialHost } from "../../plugin/src/panel/serial-host";

describe("the generation queue", () => {
  it("follows three jobs from reading the document to their steps, in the order Generate was pressed", () => {
    let now = 1000;
    const queue = new GenerationQueue(() => now);
    const [a, b, c] = [queue.add("“a”", 1), queue.add("“b”", 2), queue.add("“c”", 1)];
    expect(queue.entries.map((e) => describeState(e.state))).toEqual(["reading the document", "reading the document", "reading the document"]);
    queue.sent(a.id, 7);
    queue.sent(b.id, 8);
    queue.sent(c.id, 9);
    expect(describeState(c.state)).toBe("sent to the daemon");
    queue.position(7, 0);
    queue.position(8, 1);
    queue.position(9, 2);
    expect(queue.entries.map((e) => describeState(e.state))).toEqual(["next", "1 ahead", "2 ahead"]);
    queue.progress(7, { variation: 0, stage: "loading", step: 0, total: 20 });
    expect(describeState(a.state)).toBe("running: loading the model");
    queue.progress(7, { variation: 0, stage: "denoising", step: 3, total: 20 });
    expect(describeState(a.state)).toBe("running: step 3 of 20");
    expect(queue.head).toBe(a);

    // The artist cancels the middle one: it says so until the daemon confirms, and no position overrides that.
    queue.cancelling(b.id);
    queue.position(8, 0);
    expect(describeState(b.state)).toBe("cancelling…");
    queue.remove(b.id);
    queue.position(9, 1);
    expect(queue.entries.map((e) => describeState(e.state))).toEqual(["running: step 3 of 20", "1 ahead"]);

    // A late position report does not move a running job back to waiting.
    queue.position(7, 0);
    expect(describeState(a.state)).toBe("running: step 3 of 20");
    queue.placing(a.id);
    expect(describeState(a.state)).toBe("placing the layers");
    queue.remove(a.id);
    expect(queue.head).toBe(c);
    queue.progress(9, { variation: 0, stage: "denoising", step: 1, total: 2 });
    now += 420;
    queue.progress(9, { variation: 0, stage: "denoising", step: 2, total: 2 });
    expect(queue.lastStep).toEqual({ ms: 420, jobId: 9 });
    queue.remove(c.id);
    expect(queue.entries).toEqual([]);
    // Reports for jobs the queue does not hold change nothing.
    queue.progress(9, { variation: 0, stage: "denoising", step: 1, total: 2 });
    expect(queue.entries).toEqual([]);
  });

  it("times steps only between consecutive steps of one variation", () => {
    let now = 0;
    const queue = new GenerationQueue(() => now);
    const entry = queue.add("“x”", 2);
    queue.sent(entry.id, 1);
    queue.progress(1, { variation: 0, stage: "denoising", step: 1, total: 2 });
    now = 100;
    queue.progress(1, { variation: 0, stage: "denoising", step: 2, total: 2 });
    now = 5000; // decoding and the next variation's start in between: not a step
    queue.progress(1, { variation: 1, stage: "denoising", step: 1, total: 2 });
    expect(queue.lastStep?.ms).toBe(100);
    expect(describeState(entry.state)).toBe("running: variation 2 of 2, step 1 of 2");
    now = 5250;
    queue.progress(1, { variation: 1, stage: "denoising", step: 2, total: 2 });
    expect(queue.lastStep?.ms).toBe(250);
  });

  it("writes step times as an artist reads them", () => {
    expect(formatStepTime(420)).toBe("0.42 s");
    expect(formatStepTime(1340)).toBe("1.3 s");
    expect(formatStepTime(12_400)).toBe("12 s");
  });
});

describe("the host that queued generations share", () => {
  it("runs modal calls one at a time in the order asked, a failing one not blocking the next", async () => {
    const log: string[] = [];
    let open = 0;
    const slow = (name: string, fail = false) => async () => {
      open++;
      log.push(`${name} start (${open} open)`);
      await new Promise((r) => setTimeout(r, 5));
      open--;
      log.push(`${name} end`);
      if (fail) throw new Error(name);
      return null;
    };
    const host = {
      activeDocument: slow("active"),
      documentInfo: slow("info", true),
      listLayers: slow("layers"),
      readPixels: slow("read"),
      readSelection: slow("selection"),
      applyEdit: slow("apply"),
      showOnly: slow("show"),
      encodeThumbnail: async () => "data:",
    } as unknown as DocumentHost;
    const serial = serialHost(host);
    const calls = [
      serial.activeDocument(),
      serial.documentInfo(1).catch(() => "failed"),
      serial.applyEdit(1, { historyName: "h", groupName: "g", layers: [] }),
      serial.showOnly(1, 2, 3),
    ];
    expect(await serial.encodeThumbnail({ width: 1, height: 1, channels: 3, data: new Uint8Array(3) })).toBe("data:");
    expect(await Promise.all(calls)).toEqual([null, "failed", null, null]);
    expect(log).toEqual(["active start (1 open)", "active end", "info start (1 open)", "info end", "apply start (1 open)", "apply end", "show start (1 open)", "show end"]);
  });
});
