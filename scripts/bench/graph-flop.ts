/**
 * FLOP of one call of any ONNX model, counted from what onnxruntime itself ran: the graph as it is
 * (optimisation off, so the nodes are the file's own) runs once on the bench's feeds with
 * profiling on, and every Conv, MatMul and Gemm is counted from the shapes its profile event
 * records (2 x multiply-adds, as the builder counts: the attention products are MatMuls). It
 * costs one unoptimised call, and serves models the builder did not make (`--model DIR`).
 */
import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { InferenceSession, type Tensor } from "onnxruntime-node";
import { z } from "zod";
import { sessionOptionsFor, withSessionConfig } from "../../daemon/models/execution-provider";

const Shapes = z.array(z.record(z.string(), z.array(z.number())));
const NodeEvent = z.object({
  cat: z.literal("Node"),
  name: z.string(),
  args: z.object({ op_name: z.string(), input_type_shape: Shapes.optional(), output_type_shape: Shapes.optional() }).passthrough(),
});

const prod = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
const dimsOf = (shapes: z.infer<typeof Shapes> | undefined, i: number): number[] | null => {
  const entry = shapes?.[i];
  return entry ? (Object.values(entry)[0] ?? null) : null;
};

/** 2 x multiply-adds of the Conv, MatMul and Gemm kernels in an onnxruntime profile (its JSON events). */
export function flopOfProfile(events: unknown[]): number {
  let flop = 0;
  for (const raw of events) {
    const event = NodeEvent.safeParse(raw);
    if (!event.success || !event.data.name.endsWith("_kernel_time")) continue;
    const { op_name: op, input_type_shape: inputs, output_type_shape: outputs } = event.data.args;
    const out = dimsOf(outputs, 0);
    const a = dimsOf(inputs, 0);
    if (!out || !a) continue;
    if (op === "Conv") {
      // Weight [out, in / group, kh, kw]: each output element is in/group x kh x kw multiply-adds.
      const w = dimsOf(inputs, 1);
      if (!w) throw new Error(`the profile of ${event.data.name} does not give its weight's shape`);
      flop += 2 * prod(out) * prod(w.slice(1));
    } else if (op === "MatMul") {
      flop += 2 * prod(out) * a.at(-1)!;
    } else if (op === "Gemm") {
      // A is [M, K] or, transposed, [K, M]; the output [M, N].
      flop += 2 * prod(out) * (prod(a) / out[0]!);
    }
  }
  return flop;
}

/** FLOP of one `session.run(feeds)` of `file`, measured in a scratch folder under `workDir`. */
export async function profiledFlop(file: string, feeds: Record<string, Tensor>, workDir: string): Promise<number> {
  await mkdir(workDir, { recursive: true });
  const dir = await mkdtemp(path.join(workDir, "profile-"));
  try {
    // Prepacked weights drop out of the profile's input shapes: keep them as they are.
    const options = withSessionConfig({ ...sessionOptionsFor("cpu"), graphOptimizationLevel: "disabled", enableProfiling: true, profileFilePrefix: path.join(dir, "run") }, { disable_prepacking: "1" });
    const session = await InferenceSession.create(file, options);
    try {
      await session.run(feeds);
    } finally {
      session.endProfiling();
      await session.release();
    }
    const [profile] = (await readdir(dir)).filter((f) => f.endsWith(".json"));
    if (!profile) throw new Error("onnxruntime wrote no profile");
    return flopOfProfile(z.array(z.unknown()).parse(JSON.parse(await readFile(path.join(dir, profile), "utf8"))));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
