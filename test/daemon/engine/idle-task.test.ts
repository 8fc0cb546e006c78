import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { IdleTask } from "../../../daemon/engine/idle-task";
import { ROOT, TSX } from "../../helpers/paths";

describe("work done between jobs", () => {
  it("runs after its delay, and idle() waits for it", async () => {
    const task = new IdleTask(30);
    const done: string[] = [];
    task.schedule(async () => void done.push("ran"));
    expect(done).toEqual([]);
    await task.idle();
    expect(done).toEqual(["ran"]);
  });

  it("a cancel or a new schedule before the delay drops it; a failing task only fails itself", async () => {
    const task = new IdleTask(30);
    const done: string[] = [];
    task.schedule(async () => void done.push("first"));
    task.cancel();
    await task.idle();
    task.schedule(async () => void done.push("second"));
    task.schedule(async () => {
      done.push("third");
      throw new Error("no memory");
    });
    await task.idle();
    expect(done).toEqual(["third"]);
  });

  it("keeps a script alive while something waits for it (its timer alone does not)", () => {
    const script = `import { IdleTask } from ${JSON.stringify(path.join(ROOT, "daemon/engine/idle-task.ts"))};
const task = new IdleTask(50);
task.schedule(async () => console.log("ran"));
await task.idle();
console.log("idle");`;
    const run = spawnSync(TSX, ["--input-type=module", "-e", script], { encoding: "utf8", cwd: ROOT });
    expect(run.stdout.trim().split("\n")).toEqual(["ran", "idle"]);
    expect(run.status).toBe(0);
  });
});
