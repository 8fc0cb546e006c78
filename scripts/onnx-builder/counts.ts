/** The builder's parameter and FLOP counts beside the published SD 1.5 numbers. */
import type { GraphCounts } from "./graph";
import type { PartName } from "./folder";

/** SD 1.5 (diffusers), FLOP = 2 x multiply-adds: text encoder on [2, 77], UNet batch 1 and VAE decoder at 64x64 latents. */
export const SD15_REFERENCE: Record<PartName, { params: number; flop: number | null }> = {
  text_encoder: { params: 123.06e6, flop: 26.6e9 },
  unet: { params: 859.52e6, flop: 803.3e9 },
  vae_decoder: { params: 49.49e6, flop: 2514.5e9 },
  vae_encoder: { params: 34.16e6, flop: null },
};

export interface CountRow {
  part: PartName;
  params: number;
  flop: number;
  refParams: number;
  refFlop: number | null;
  /** ours / reference - 1 */
  paramsError: number;
  flopError: number | null;
}

export function compareCounts(counts: Record<PartName, GraphCounts>): CountRow[] {
  return (Object.keys(SD15_REFERENCE) as PartName[]).map((part) => {
    const ref = SD15_REFERENCE[part];
    const c = counts[part];
    return {
      part,
      params: c.params,
      flop: c.flop,
      refParams: ref.params,
      refFlop: ref.flop,
      paramsError: c.params / ref.params - 1,
      flopError: ref.flop === null ? null : c.flop / ref.flop - 1,
    };
  });
}

export function formatCounts(rows: CountRow[]): string[] {
  const pct = (e: number | null) => (e === null ? "   -" : `${(e * 100).toFixed(2)}%`);
  return rows.map(
    (r) =>
      `${r.part.padEnd(13)} params ${(r.params / 1e6).toFixed(2).padStart(8)}M (SD 1.5 ${(r.refParams / 1e6).toFixed(2)}M, ${pct(r.paramsError)})` +
      `  GFLOP ${(r.flop / 1e9).toFixed(1).padStart(7)} (SD 1.5 ${r.refFlop === null ? "-" : (r.refFlop / 1e9).toFixed(1)}, ${pct(r.flopError)})`,
  );
}

/**
 * SDXL base 1.0's published weight counts: UNet 2,567,463,684 (2.6 B, the SDXL report's figure),
 * CLIP ViT-L text encoder 123.06 M (as SD 1.5's), OpenCLIP ViT-bigG with projection 694.66 M, SD's VAE.
 */
export const SDXL_PUBLISHED_PARAMS = {
  text_encoder: 123_060_480,
  text_encoder_2: 694_659_840,
  unet: 2_567_463_684,
  vae_decoder: 49_490_199,
  vae_encoder: 34_163_664,
} as const;

/** The builder's SDXL counts beside the published ones, one line a part. */
export function formatSdxlCounts(counts: Record<keyof typeof SDXL_PUBLISHED_PARAMS, GraphCounts>): string[] {
  return (Object.keys(SDXL_PUBLISHED_PARAMS) as (keyof typeof SDXL_PUBLISHED_PARAMS)[]).map((part) => {
    const ref = SDXL_PUBLISHED_PARAMS[part];
    const c = counts[part];
    return `${part.padEnd(15)} params ${(c.params / 1e6).toFixed(2).padStart(8)}M (SDXL ${(ref / 1e6).toFixed(2)}M, ${((c.params / ref - 1) * 100).toFixed(2)}%)  GFLOP ${(c.flop / 1e9).toFixed(1).padStart(8)}`;
  });
}
