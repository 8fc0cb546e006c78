/**
 * Pictures of latents while they are denoised. Without a preview decoder: the linear latent-to-RGB
 * approximation for SD 1.x latents that Automatic1111 and ComfyUI use, one pixel per latent (1/8
 * size). With one (TAESD, decoding to the full size): its picture, box-filtered down to the panel's
 * preview size.
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

/** [-1, 1] -> 0..255 */
function toByte(v: number): number {
  const unit = (v + 1) / 2;
  return Math.round((unit < 0 ? 0 : unit > 1 ? 1 : unit) * 255);
}
