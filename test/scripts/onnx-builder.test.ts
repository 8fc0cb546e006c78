import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { InferenceSession, Tensor } from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { compareCounts } from "../../scripts/onnx-builder/counts";
import { differingOps, formatOpTable, loadedOpCounts } from "../../scripts/bench/graph-structure";
import { countGraphs, ensureModelFolder, graphsFor, type PartName } from "../../scripts/onnx-builder/folder";
import { REFERENCE, tinySdConfig } from "../../scripts/onnx-builder/sd15";
import type { ModelPart } from "../../daemon/models/model-sessions";
import { FIXTURES_DIR } from "../helpers/paths";

const temps: string[] = [];
afterAll(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

describe("onnx-builder", () => {
  it("builds SD 1.5's architecture: parameters and FLOP within 1% of the published counts", () => {
    for (const row of compareCounts(countGraphs(1, REFERENCE))) {
      expect(Math.abs(row.paramsError), row.part).toBeLessThan(0.01);
      if (row.flopError !== null) expect(Math.abs(row.flopError), row.part).toBeLessThan(0.01);
    }
  });

  it("writes a reduced-width inpainting folder that the daemon loads, with the diffusers export's I/O", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "underpaint-builder-"));
    temps.push(dir);
    const built = await ensureModelFolder(dir, { width: 0.05, inChannels: 9, tokenizerDir: path.join(FIXTURES_DIR, "tiny-sd", "tokenizer") });
    expect(built.built).toBe(true);
    expect((await ensureModelFolder(dir, { width: 0.05, inChannels: 9, tokenizerDir: path.join(FIXTURES_DIR, "tiny-sd", "tokenizer") })).built).toBe(false);
    const folder = await loadModelFolder(built.dir);
    expect(folder.kind).toBe("inpainting");
    expect(folder.unetInChannels).toBe(9);
    expect(folder.io.textEncoder.inputIdsType).toBe("int32");
    expect(folder.io.unet).toMatchObject({ sample: "sample", timestep: "timestep", timestepType: "float32", encoderHiddenStates: "encoder_hidden_states", output: "out_sample" });
    expect(folder.io.vaeEncoder?.output).toBe("latent_sample");
    expect(folder.paths.externalData.map((p) => path.basename(p))).toEqual(["weights.pb"]);

    // Dynamic axes: a non-square latent at batch 2 runs, and the output is finite.
    const unet = await InferenceSession.create(folder.paths.unet);
    try {
      const dim = built.config.text.hidden;
      const out = await unet.run({
        sample: new Tensor("float32", new Float32Array(2 * 9 * 8 * 16).fill(0.5), [2, 9, 8, 16]),
        timestep: new Tensor("float32", new Float32Array([500]), [1]),
        encoder_hidden_states: new Tensor("float32", new Float32Array(2 * 77 * dim).fill(0.1), [2, 77, dim]),
      });
      const sample = out.out_sample!;
      expect(sample.dims).toEqual([2, 4, 8, 16]);
      expect((sample.data as Float32Array).every(Number.isFinite)).toBe(true);
    } finally {
      await unet.release();
    }
  });

  it("in tiny-sd's configuration, builds the diffusers export's graphs: the same nodes by op type once onnxruntime has optimised them, as exported and as the daemon loads them", { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "underpaint-builder-structure-"));
    temps.push(dir);
    const graphs = graphsFor(tinySdConfig(), { ...REFERENCE, latent: 8 });
    const parts: [PartName, ModelPart][] = [["unet", "unet"], ["text_encoder", "textEncoder"], ["vae_decoder", "vaeDecoder"], ["vae_encoder", "vaeEncoder"]];
    for (const [name, part] of parts) {
      const file = path.join(dir, name, "model.onnx");
      await graphs[name].write(file, name === "unet" ? { externalData: "weights.pb" } : {});
      for (const form of ["exported", "daemon"] as const) {
        const built = await loadedOpCounts(file, part, form, path.join(dir, "cache"));
        const exported = await loadedOpCounts(path.join(FIXTURES_DIR, "tiny-sd", name, "model.onnx"), part, form, path.join(dir, "cache"));
        const table = formatOpTable([{ title: "builder", counts: built }, { title: "export", counts: exported }]).join("\n");
        expect(differingOps(built, exported), `${name}, ${form}:\n${table}`).toEqual([]);
      }
    }
  });
});
