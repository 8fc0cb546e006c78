import path from "node:path";
import { Tensor } from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { profiledFlop } from "../../scripts/bench/graph-flop";
import { countGraphs, ensureModelFolder } from "../../scripts/onnx-builder/folder";
import { makeTempDir } from "../helpers/model-fixtures";
import { FIXTURES_DIR } from "../helpers/paths";

describe("FLOP counted from onnxruntime's profile of a run (bench --model)", () => {
  it("gives the builder's own counts for the builder's networks", { timeout: 120_000 }, async () => {
    const { dir, cleanup } = await makeTempDir("underpaint-flop-");
    try {
      const built = await ensureModelFolder(dir, { width: 0.05, tokenizerDir: path.join(FIXTURES_DIR, "tiny-sd", "tokenizer") });
      const folder = await loadModelFolder(built.dir);
      const latent = 16;
      const dim = built.config.text.hidden;
      const counts = countGraphs(0.05, { textBatch: 2, sequence: 77, unetBatch: 1, latent });
      const work = path.join(dir, "profiles");
      const text = await profiledFlop(folder.paths.textEncoder, { input_ids: new Tensor("int32", new Int32Array(2 * 77).fill(49407), [2, 77]) }, work);
      const unet = await profiledFlop(
        folder.paths.unet,
        {
          sample: new Tensor("float32", new Float32Array(4 * latent * latent), [1, 4, latent, latent]),
          timestep: new Tensor("float32", new Float32Array([981]), [1]),
          encoder_hidden_states: new Tensor("float32", new Float32Array(77 * dim), [1, 77, dim]),
        },
        work,
      );
      const vae = await profiledFlop(folder.paths.vaeDecoder, { latent_sample: new Tensor("float32", new Float32Array(4 * latent * latent), [1, 4, latent, latent]) }, work);
      expect(text).toBe(counts.text_encoder.flop);
      expect(unet).toBe(counts.unet.flop);
      expect(vae).toBe(counts.vae_decoder.flop);
    } finally {
      await cleanup();
    }
  });
});
