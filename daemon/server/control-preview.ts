/**
 * The control-preview answer: the control image a ControlNet would follow, made from the artist's
 * layer by the same code a job's control image is (imaging/control-image.ts, with the estimators
 * the engine would use for it), as 8-bit RGB pixels the panel can show.
 */
import type { Pixels } from "../../geometry";
import type { ControlKind } from "../../protocol";
import { controlImage, type ControlImageOptions } from "../imaging/control-image";

/** `kind`'s control image of `layer` at the layer's own size, RGB 8-bit interleaved. */
export async function controlPreview(kind: ControlKind, layer: Pixels, options: ControlImageOptions = {}): Promise<Pixels & { channels: 3 }> {
  const size = { width: layer.width, height: layer.height };
  const planes = await controlImage(kind, layer, size, options);
  const plane = size.width * size.height;
  const data = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) data[i * 3 + c] = Math.round(planes[c * plane + i]! * 255);
  }
  return { ...size, channels: 3, data };
}
