/**
 * The installed pose estimator as the control image's PoseRunner: the person detector run once on
 * the letterbox, the pose model once per person. Each session is made for the job that needs it and
 * released after its run (a pose map is made once per job, before the UNet runs, so their weights
 * never sit beside the UNet's).
 */
import type { Detections, PoseRunner, Simcc } from "../imaging/pose";
import type { Device, ModelLog } from "../models/execution-provider";
import { createPoseDetectorSession, createPoseModelSession, type PoseEstimatorFolder } from "../models/pose-estimator-folder";
import { makeTensor } from "../models/session-io";

type Output = { type: string; dims: readonly number[]; data: unknown } | undefined;

function rank3(folder: PoseEstimatorFolder, what: string, out: Output): { data: Float32Array; dims: [number, number, number] } {
  if (!out || out.type !== "float32" || out.dims.length !== 3 || out.dims[0] !== 1) {
    throw new Error(`pose estimator "${folder.id}" gave ${out ? `${out.type} [${out.dims.join(", ")}]` : `no ${what}`} for ${what}, not float32 [1, n, m]`);
  }
  return { data: out.data as Float32Array, dims: [1, out.dims[1]!, out.dims[2]!] };
}

/** Runs `folder`'s two networks on `devices`, a session per run, released after it. */
export function poseRunner(folder: PoseEstimatorFolder, devices: readonly Device[], log: ModelLog): PoseRunner {
  const detectorInput = folder.detector.io.size;
  const poseInput = folder.pose.io.size;
  return {
    detectorInput,
    poseInput,
    async detect(letterbox: Float32Array): Promise<Detections> {
      log("info", `pose estimator "${folder.id}" makes the pose map from the control layer (it is a picture, not a pose map)`);
      const part = await createPoseDetectorSession(folder, devices, { log });
      try {
        const out = await part.session.run({ [part.io.input]: makeTensor("float32", letterbox, [1, 3, detectorInput.height, detectorInput.width]) });
        const { data, dims } = rank3(folder, "the detections", out[part.io.output]);
        return { data, anchors: dims[1], values: dims[2] };
      } finally {
        await part.session.release().catch(() => {});
      }
    },
    async estimate(crops: readonly Float32Array[]): Promise<Simcc[]> {
      const part = await createPoseModelSession(folder, devices, { log });
      try {
        const poses: Simcc[] = [];
        for (const crop of crops) {
          const out = await part.session.run({ [part.io.input]: makeTensor("float32", crop, [1, 3, poseInput.height, poseInput.width]) });
          const x = rank3(folder, "simcc_x", out[part.io.simccX]);
          const y = rank3(folder, "simcc_y", out[part.io.simccY]);
          if (x.dims[1] !== y.dims[1]) throw new Error(`pose estimator "${folder.id}" gave ${x.dims[1]} keypoints in x and ${y.dims[1]} in y`);
          poses.push({ x: x.data, y: y.data, keypoints: x.dims[1], binsX: x.dims[2], binsY: y.dims[2] });
        }
        return poses;
      } finally {
        await part.session.release().catch(() => {});
      }
    },
  };
}
