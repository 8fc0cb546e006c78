/**
 * The engine's use of an installed preview decoder (TAESD): a picture after every step (from the
 * latents' 2x2 means when the full decode would be shrunk to the preview anyway) and the final
 * decode of drafts (always at the latents' full size, 8x), from the latents as the UNet makes them.
 * The last full decode is remembered, so a draft's final picture costs nothing more when its last
 * step's preview already decoded the same latents at full size.
 */
import type { Pixels } from "../../geometry";
import type { ModelLog } from "../models/execution-provider";
import { DEFAULT_VAE_SCALING_FACTOR, type ModelFolder } from "../models/model-folder";
import type { PreviewDecoderSessions } from "../models/taesd-folder";
import { decodeTinyLatents } from "./pipeline/vae";
import { decodedPreview, halfLatents, previewFromHalfLatents } from "./preview";

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class TinyDecoder {
  private last: { latents: Float32Array; width: number; height: number; decoded: Float32Array } | null = null;
  /** Why it stopped being used (a decode failed); null while it works. */
  private failure: string | null = null;

  constructor(
    readonly sessions: PreviewDecoderSessions,
    private readonly log: ModelLog,
  ) {}

  get folder() {
    return this.sessions.folder;
  }

  /** Whether it can decode `model`'s latents: SD 1.x / 2.x's (VAE scaling 0.18215), and it has not failed. */
  suits(model: ModelFolder): boolean {
    return this.failure === null && Math.abs(model.vaeScalingFactor - DEFAULT_VAE_SCALING_FACTOR) < 1e-6;
  }

  /** One image's latents [1, 4, h, w] -> [3, 8h, 8w] in [-1, 1]. The result is shared: do not change it. */
  async decode(latents: Float32Array, latentWidth: number, latentHeight: number): Promise<Float32Array> {
    const last = this.last;
    if (last && last.width === latentWidth && last.height === latentHeight && sameValues(last.latents, latents)) return last.decoded;
    const decoder = await this.sessions.decoder(latentHeight, latentWidth);
    const decoded = await decodeTinyLatents(decoder, latents, latentWidth, latentHeight, this.folder.imageRange);
    this.last = { latents: Float32Array.from(latents), width: latentWidth, height: latentHeight, decoded };
    return decoded;
  }

  /**
   * The preview of one image's latents, at most PREVIEW_MAX_SIDE on its longest side: decoded from
   * their 2x2 means when a full decode would be shrunk anyway (a quarter of the work), not remembered.
   * `full`: decoded at full size and remembered (a draft's last step: its final picture reuses it).
   */
  async preview(latents: Float32Array, latentWidth: number, latentHeight: number, full = false): Promise<Pixels> {
    if (full || !previewFromHalfLatents(latentWidth, latentHeight)) {
      return decodedPreview(await this.decode(latents, latentWidth, latentHeight), 8 * latentWidth, 8 * latentHeight);
    }
    const half = halfLatents(latents, latentWidth, latentHeight);
    const decoder = await this.sessions.decoder(half.height, half.width);
    const decoded = await decodeTinyLatents(decoder, half.latents, half.width, half.height, this.folder.imageRange);
    return decodedPreview(decoded, 8 * half.width, 8 * half.height);
  }

  /** After a failed decode: logged once, and not used again until the folder changes. */
  fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = error instanceof Error ? error.message : String(error);
    this.log("warn", `preview decoder "${this.folder.id}" failed, so previews and drafts go without it: ${this.failure}`);
  }

  async release(): Promise<void> {
    this.last = null;
    await this.sessions.release();
  }
}
