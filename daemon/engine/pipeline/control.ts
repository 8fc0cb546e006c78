/**
 * The ControlNet half of a step, as diffusers' StableDiffusionControlNetPipeline runs it: the
 * ControlNet reads the same scaled latent input, timestep and text embeddings as the UNet, plus
 * the control image (one copy per UNet batch row), at conditioning scale strength x keep[i]; its
 * residuals go to the control UNet's inputs. Where the scale is 0 the ControlNet is not run and
 * the residuals are zeros. An SDXL ControlNet (StableDiffusionXLControlNetPipeline) also reads the
 * UNet's added conditions: the pooled text embeddings and the size conditions (time ids).
 */
import { Tensor } from "onnxruntime-node";
import type { ControlNetIO, ControlUnetIO } from "../../models/control-io";
import type { PartSession } from "../../models/model-sessions";
import { makeTensor, makeTimestep, tensorToFloat32 } from "../../models/session-io";
import { EngineError } from "../engine";
import { addedConditionFeeds, type SizeConditions } from "./sdxl-conditioning";

export interface ControlRun {
  /** The model's UNet that takes the residuals. */
  unet: PartSession<ControlUnetIO>;
  net: PartSession<ControlNetIO>;
  /** The control image at the generation size: [3, height, width] in [0, 1]. */
  image: Float32Array;
  strength: number;
  /** Fractions of the steps where control begins and ends. */
  start: number;
  end: number;
}

/** diffusers' controlnet_keep[i]: 1.0 - float(i / n < start or (i + 1) / n > end). */
export function controlKeep(index: number, steps: number, start: number, end: number): number {
  return 1 - Number(index / steps < start || (index + 1) / steps > end);
}

/** The conditioning scale of step `index` of `steps`. */
export function controlScale(run: Pick<ControlRun, "strength" | "start" | "end">, index: number, steps: number): number {
  return run.strength * controlKeep(index, steps, run.start, run.end);
}

export interface StepInputs {
  index: number;
  steps: number;
  /** The UNet's 4-channel latent input after scaling, all rows. */
  sample: Float32Array;
  timestep: number;
  hidden: Float32Array;
  rows: number;
  sequence: number;
  width: number;
  latentHeight: number;
  latentWidth: number;
  /** SDXL: the pooled text embeddings and time ids, for a ControlNet that takes them (text_embeds, time_ids). */
  added?: { pooled: Float32Array; pooledWidth: number; size: SizeConditions };
}

function scaleTensor(type: NonNullable<ControlNetIO["scale"]>["type"], value: number, rank: 0 | 1): Tensor {
  const dims = rank === 0 ? [] : [1];
  return type === "float64" ? new Tensor("float64", Float64Array.from([value]), dims) : makeTensor(type, [value], dims);
}

/** Runs the ControlNet for each step that needs it; remembers the residuals' shapes for the zero ones. */
export class ControlResiduals {
  private shapes: Map<string, number[]> | null = null;
  private imageTensor: Tensor | null = null;

  constructor(private readonly run: ControlRun) {}

  /** The residual feeds of the control UNet for one step. */
  async feeds(step: StepInputs): Promise<Record<string, Tensor>> {
    const scale = controlScale(this.run, step.index, step.steps);
    if (scale === 0) return this.zeros(step);
    return this.residuals(step, scale);
  }

  private async residuals(step: StepInputs, scale: number): Promise<Record<string, Tensor>> {
    const { net, unet } = this.run;
    const io = net.io;
    const plane = this.run.image.length / 3;
    if (!this.imageTensor) {
      const rows = new Float32Array(step.rows * this.run.image.length);
      for (let r = 0; r < step.rows; r++) rows.set(this.run.image, r * this.run.image.length);
      this.imageTensor = makeTensor(io.condType, rows, [step.rows, 3, plane / (step.latentWidth * 8), step.latentWidth * 8]);
    }
    const feeds: Record<string, Tensor> = {
      [io.unet.sample]: makeTensor(io.unet.sampleType, step.sample, [step.rows, 4, step.latentHeight, step.latentWidth]),
      [io.unet.timestep]: makeTimestep(io.unet, step.timestep, step.rows),
      [io.unet.encoderHiddenStates]: makeTensor(io.unet.encoderHiddenStatesType, step.hidden, [step.rows, step.sequence, step.width]),
      [io.cond]: this.imageTensor,
      ...(io.scale ? { [io.scale.name]: scaleTensor(io.scale.type, scale, io.scale.rank) } : {}),
      ...this.addedFeeds(step),
    };
    const names = [...io.residuals.down, io.residuals.mid].map((r) => r.name);
    const outputs = await net.session.run(feeds, names);
    const taken = [...unet.io.residuals.down, unet.io.residuals.mid];
    this.shapes = new Map(names.map((name) => [name, [...outputs[name]!.dims]]));
    const out: Record<string, Tensor> = {};
    taken.forEach((residual, i) => {
      const given = outputs[names[i]!]!;
      // An export without conditioning_scale gives the residuals at scale 1.
      if (!io.scale && scale !== 1) {
        const values = Float32Array.from(tensorToFloat32(given), (v) => v * scale);
        out[residual.name] = makeTensor(residual.type, values, given.dims);
      } else {
        out[residual.name] = given.type === residual.type ? given : makeTensor(residual.type, tensorToFloat32(given), given.dims);
      }
    });
    return out;
  }

  /** An SDXL ControlNet reads the UNet's added conditions as the UNet does (diffusers passes added_cond_kwargs to both). */
  private addedFeeds(step: StepInputs): Record<string, Tensor> {
    const added = this.run.net.io.unet.added;
    if (!added) return {};
    if (!step.added) throw new EngineError("invalid_job", "This ControlNet is for SDXL models (it reads text_embeds and time_ids): use it with an SDXL model.");
    return addedConditionFeeds(added, step.added, step.added.size, step.rows);
  }

  private async zeros(step: StepInputs): Promise<Record<string, Tensor>> {
    // The residuals' sizes depend on the UNet's blocks: one ControlNet run tells them, when no step has yet.
    if (!this.shapes) await this.residuals(step, 0);
    const { io } = this.run.unet;
    const given = [...this.run.net.io.residuals.down, this.run.net.io.residuals.mid];
    const out: Record<string, Tensor> = {};
    [...io.residuals.down, io.residuals.mid].forEach((residual, i) => {
      const dims = this.shapes!.get(given[i]!.name)!;
      out[residual.name] = makeTensor(residual.type, new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
    });
    return out;
  }
}
