/**
 * The one interface every scheduler implements. Ports of diffusers 0.27.2 schedulers; tensors are flat
 * Float32Array in C order with the batch included ([B, C, H, W]).
 */
import { SCHEDULERS } from "../../../protocol";
import type { SchedulerName as ProtocolSchedulerName } from "../../../protocol";

export type SchedulerName = ProtocolSchedulerName;

/** Every scheduler the engine offers, in the protocol's order. */
export const SCHEDULER_NAMES: readonly SchedulerName[] = SCHEDULERS;

/**
 * torch.randn with the pipeline's generator. A scheduler calls it exactly where diffusers calls
 * randn_tensor, with the sample's shape:
 * - Euler: one draw on EVERY step (s_churn = 0 throws it away, but the generator advances);
 * - Euler ancestral: one draw every step;
 * - DDIM: one draw per step only when eta > 0;
 * - LCM: one draw per step except the last;
 * - PNDM, DPM++ 2M: never.
 */
export interface NoiseSource {
  randn(shape: readonly number[]): Float32Array;
}

export type TimestepSpacing = "leading" | "linspace" | "trailing";

export interface SchedulerOptions {
  /** DDIM's eta (the pipelines' `eta`, default 0). Ignored by the other schedulers. */
  eta?: number;
  /**
   * Overrides the timestep spacing whatever the config says (LCM has no spacing and ignores it).
   * Without it, see createScheduler for how the spacing is chosen.
   */
  timestepSpacing?: TimestepSpacing;
}

export interface Scheduler {
  readonly name: SchedulerName;
  /** diffusers' `scheduler.order`: 1 for all of these (PNDM's PLMS included). */
  readonly order: number;
  /** The pipeline multiplies the initial noise by this (txt2img / 9-channel inpaint). */
  readonly initNoiseSigma: number;
  /**
   * diffusers' `scheduler.timesteps` after setTimesteps, values exactly as torch holds them
   * (int64 for PNDM/DDIM/DPM/LCM, float32 for Euler / Euler ancestral). These are also the UNet's timesteps.
   */
  readonly timesteps: Float64Array;
  /** Sigma schedulers only (Euler, Euler ancestral, DPM++): float32, one more entry than timesteps. */
  readonly sigmas?: Float32Array;
  /** The training schedule's cumulative alpha products (float32, num_train_timesteps values). */
  readonly alphasCumprod: Float32Array;
  /** Resets all state (multistep history, step index, begin index). */
  setTimesteps(steps: number): void;
  /**
   * diffusers' set_begin_index (img2img / inpaint: `t_start * order`). Sigma schedulers and LCM start their
   * step index there; PNDM and DDIM have no such state and ignore it.
   */
  setBeginIndex(index: number): void;
  /** The UNet input for this step (Euler family divides by sqrt(sigma^2 + 1); others return the sample). */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  /**
   * One denoising step: modelOutput (after CFG) and sample have the same `shape` ([B, 4, h, w]); returns
   * prev_sample. Noise is drawn from `noise` with `shape` where diffusers draws it.
   */
  step(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    shape: readonly number[],
    noise: NoiseSource,
  ): Float32Array;
  /** diffusers' add_noise with one timestep for the whole batch. */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number): Float32Array;
}
