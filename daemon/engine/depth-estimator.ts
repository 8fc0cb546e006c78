/**
 * The installed depth estimator as the control image's DepthRunner: its preprocessor_config.json in
 * depth.ts' words, and one run of its session per picture. The session is made for the job that
 * needs it and released after the run (a depth map is estimated once per job, before the UNet runs,
 * so its weights never sit beside the UNet's).
 */
import type { Size } from "../../geometry";
import type { DepthPreprocessing, DepthRunner } from "../imaging/depth";
import { createDepthEstimatorSession, type DepthEstimatorFolder, type DptPreprocessor } from "../models/depth-estimator-folder";
import type { Device, ModelLog } from "../models/execution-provider";
import { makeTensor } from "../models/session-io";

export function depthPreprocessing(p: DptPreprocessor): DepthPreprocessing {
  return {
    resize: p.do_resize ? { width: p.size.width, height: p.size.height } : null,
    keepAspectRatio: p.keep_aspect_ratio,
    multipleOf: p.ensure_multiple_of,
    resample: p.resample,
    rescaleFactor: p.do_rescale ? p.rescale_factor : null,
    normalize: p.do_normalize ? { mean: p.image_mean, std: p.image_std } : null,
  };
}

/** Runs `folder`'s estimator on `devices`, a session per run, released after it. */
export function depthRunner(folder: DepthEstimatorFolder, devices: readonly Device[], log: ModelLog): DepthRunner {
  return {
    preprocessing: depthPreprocessing(folder.preprocessor),
    async run(pixelValues: Float32Array, size: Size) {
      log("info", `depth estimator "${folder.id}" makes the depth map from the control layer (it is a picture, not a grey depth map)`);
      const part = await createDepthEstimatorSession(folder, devices, { log });
      try {
        const out = await part.session.run({ [part.io.input]: makeTensor("float32", pixelValues, [1, 3, size.height, size.width]) });
        const depth = out[part.io.output];
        if (!depth || depth.type !== "float32" || depth.dims.length !== 3 || depth.dims[0] !== 1) {
          throw new Error(`depth estimator "${folder.id}" gave ${depth ? `${depth.type} [${depth.dims.join(", ")}]` : "no predicted_depth"}, not float32 [1, height, width]`);
        }
        return { data: depth.data as Float32Array, height: depth.dims[1]!, width: depth.dims[2]! };
      } finally {
        await part.session.release().catch(() => {});
      }
    },
  };
}
