/** The bench's inputs for a model's sessions, in the dtypes and ranks its files declare (as the daemon feeds them). */
import type { Tensor } from "onnxruntime-node";
import type { UnetIO } from "../../daemon/models/io-spec";
import { makeTensor, makeTimestep } from "../../daemon/models/session-io";

export interface UnetInput {
  batch: number;
  channels: number;
  latent: number;
  /** [batch, channels, latent, latent] and [batch, 77, width] values. */
  sample: Float32Array;
  context: Float32Array;
}

/** One UNet call at timestep 981; an LCM export's guidance embedding input gets zeros. */
export function unetFeeds(io: UnetIO, input: UnetInput): Record<string, Tensor> {
  const { batch, channels, latent } = input;
  const width = input.context.length / (batch * 77);
  const feeds: Record<string, Tensor> = {
    [io.sample]: makeTensor(io.sampleType, input.sample, [batch, channels, latent, latent]),
    [io.timestep]: makeTimestep(io, 981, batch),
    [io.encoderHiddenStates]: makeTensor(io.encoderHiddenStatesType, input.context, [batch, 77, width]),
  };
  if (io.timestepCond && io.timestepCondType && io.timestepCondWidth) {
    feeds[io.timestepCond] = makeTensor(io.timestepCondType, new Float32Array(batch * io.timestepCondWidth), [batch, io.timestepCondWidth]);
  }
  return feeds;
}
