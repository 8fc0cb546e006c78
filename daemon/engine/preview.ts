/**
 * Pictures of latents while they are denoised. Without a preview decoder: the linear latent-to-RGB
 * approximation for SD 1.x latents that Automatic1111 and ComfyUI use, one pixel per latent (1/8
 * size). With one (TAESD, 8 pixels a latent): its picture, box-filtered down to the panel's preview
 * size; when the full decode would be shrunk anyway, decoded from the latents' 2x2 means instead.
 */
import type { Pixels } from "../../geometry";

// Per output colour (R, G, B): the weights of latent channels 0..3.
const RED = [0.3512, 0.325, -0.2829, -0.212] as const;
const GREEN = [0.2297, 0.4974, 0.1762, -0.2616] as const;
const BLUE = [0.3227, 0.235, 0.2721, -0.7177] as const;

/** latents [1, 4, h, w] (unscaled by the VAE factor, as the scheduler holds them) -> 8-bit RGB w x h. */
export function latentPreview(latents: Float32Array, width: number, height: number): Pixels {
  const plane = width * height;
  const data = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    const l0 = latents[i]!;
    const l1 = latents[plane + i]!;
    const l2 = latents[2 * plane + i]!;
    const l3 = latents[3 * plane + i]!;
    data[i * 3] = toByte(l0 * RED[0] + l1 * RED[1] + l2 * RED[2] + l3 * RED[3]);
    data[i * 3 + 1] = toByte(l0 * GREEN[0] + l1 * GREEN[1] + l2 * GREEN[2] + l3 * GREEN[3]);
    data[i * 3 + 2] = toByte(l0 * BLUE[0] + l1 * BLUE[1] + l2 * BLUE[2] + l3 * BLUE[3]);
  }
  return { width, height, channels: 3, data };
}

/** The longest side of a decoded preview: the panel shows it across its width (300-320 px docked or floating, plugin/manifest.json). */
export const PREVIEW_MAX_SIDE = 320;

/**
 * A decoder's output [3, height, width] in [-1, 1] -> 8-bit RGB, shrunk by the smallest whole factor
 * that brings its longest side to PREVIEW_MAX_SIDE or less (the mean of each factor x factor box).
 */
export function decodedPreview(decoded: Float32Array, width: number, height: number, maxSide = PREVIEW_MAX_SIDE): Pixels {
  const factor = Math.max(1, Math.ceil(Math.max(width, height) / maxSide));
  const outWidth = Math.floor(width / factor);
  const outHeight = Math.floor(height / factor);
  const plane = width * height;
  const data = new Uint8Array(outWidth * outHeight * 3);
  const area = factor * factor;
  for (let c = 0; c < 3; c++) {
    const channel = c * plane;
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < outWidth; x++) {
        let sum = 0;
        for (let dy = 0; dy < factor; dy++) {
          const row = channel + (y * factor + dy) * width + x * factor;
          for (let dx = 0; dx < factor; dx++) sum += decoded[row + dx]!;
        }
        data[(y * outWidth + x) * 3 + c] = toByte(sum / area);
      }
    }
  }
  return { width: outWidth, height: outHeight, channels: 3, data };
}

/** Whether a TAESD preview of w x h latents is decoded from their 2x2 means: its full decode (8w x 8h) would be shrunk to the preview anyway. */
export function previewFromHalfLatents(latentWidth: number, latentHeight: number, maxSide = PREVIEW_MAX_SIDE): boolean {
  return 8 * Math.max(latentWidth, latentHeight) > maxSide && Math.min(latentWidth, latentHeight) >= 2;
}

/**
 * One image's latents [1, 4, h, w] -> the means of their 2x2 boxes [1, 4, ceil(h/2), ceil(w/2)] (an
 * odd last row or column averages the latents it has). Means keep TAESD's latent scale (factor 1),
 * and its decoder's tanh clamp acts on them as on any latents: a half-size picture of the same
 * latents for a quarter of the decoder's work.
 */
export function halfLatents(latents: Float32Array, width: number, height: number): { latents: Float32Array; width: number; height: number } {
  const outWidth = Math.ceil(width / 2);
  const outHeight = Math.ceil(height / 2);
  const out = new Float32Array(4 * outWidth * outHeight);
  for (let c = 0; c < 4; c++) {
    const channel = c * width * height;
    for (let y = 0; y < outHeight; y++) {
      const rows = Math.min(2, height - 2 * y);
      for (let x = 0; x < outWidth; x++) {
        const columns = Math.min(2, width - 2 * x);
        let sum = 0;
        for (let dy = 0; dy < rows; dy++) for (let dx = 0; dx < columns; dx++) sum += latents[channel + (2 * y + dy) * width + 2 * x + dx]!;
        out[(c * outHeight + y) * outWidth + x] = sum / (rows * columns);
      }
    }
  }
  return { latents: out, width: outWidth, height: outHeight };
}

/** [-1, 1] -> 0..255 */
function toByte(v: number): number {
  const unit = (v + 1) / 2;
  return Math.round((unit < 0 ? 0 : unit > 1 ? 1 : unit) * 255);
}
