/**
 * Latent-resolution masks for inpainting, exactly as the two diffusers pipelines compute them.
 * Input masks are 8-bit, one channel, 255 = repaint.
 */

/**
 * StableDiffusionInpaintPipeline: mask / 255 binarized at 0.5, then torch's nearest interpolation
 * to latent size, which picks source pixel floor(i * 8). 1 = repaint.
 */
export function binaryLatentMask(mask: Uint8Array, width: number, height: number): Float32Array {
  const w = width / 8;
  const h = height / 8;
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) out[y * w + x] = mask[y * 8 * width + x * 8]! / 255 >= 0.5 ? 1 : 0;
  }
  return out;
}

/** The same binarized mask at full size, for the masked image (pixels where it is 1 become 0, i.e. grey). */
export function binaryPixelMask(mask: Uint8Array): Uint8Array {
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = mask[i]! / 255 >= 0.5 ? 1 : 0;
  return out;
}

/**
 * The legacy pipeline's mask: PIL NEAREST resize to latent size (source pixel floor((i + 0.5) * 8)),
 * / 255 (soft values kept), inverted: 1 = keep.
 */
export function legacyKeepMask(mask: Uint8Array, width: number, height: number): Float32Array {
  const w = width / 8;
  const h = height / 8;
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    const sy = Math.floor((y + 0.5) * 8);
    for (let x = 0; x < w; x++) {
      const sx = Math.floor((x + 0.5) * 8);
      out[y * w + x] = 1 - Math.fround(mask[sy * width + sx]! / 255);
    }
  }
  return out;
}

/** image [1, 3, H, W] in [-1, 1] with repaint pixels zeroed: diffusers' init_image * (mask < 0.5). */
export function maskedImage(image: Float32Array, binary: Uint8Array): Float32Array {
  const plane = binary.length;
  const out = new Float32Array(image.length);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) out[c * plane + i] = binary[i] ? 0 : image[c * plane + i]!;
  }
  return out;
}
