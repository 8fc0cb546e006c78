/**
 * Seams and colour shift at the mask edge: an inpainted selection on a real photograph, composited
 * with Underpaint's defaults (feathered blend mask inside the selection + colour match) and with
 * compositing switched off (the model's pixels pasted into the hard selection).
 */
import path from "node:path";
import sharp from "sharp";
import { finishMaskedEdit, planInpaint, type MaskedEditPlan } from "../../daemon/engine/masked-edit";
import { generate, type LoadedModel } from "../../daemon/engine/pipeline/generate";
import { TorchGenerator } from "../../daemon/engine/rng";
import { ClipTokenizer } from "../../daemon/engine/tokenizer";
import { deltaE76, ringAround, seamScore } from "../../daemon/imaging/metrics";
import { regionOf, type Pixels } from "../../geometry";
import { loadModelFolder } from "../../daemon/models/model-folder";
import { ModelSessions } from "../../daemon/models/model-sessions";
import { printSection, type Figures } from "./report";

export interface CompositingFigures {
  seamRatio: number;
  ringDeltaE: number;
  /** Pixels where the blend mask is 0 but the picture changed (must be 0). */
  changedOutside: number;
}

/** A soft elliptical selection, as a feathered marquee gives. */
export function ellipseSelection(width: number, height: number, cx: number, cy: number, rx: number, ry: number, feather = 6): Pixels {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const edge = (1 - Math.hypot((x - cx) / rx, (y - cy) / ry)) * Math.min(rx, ry);
      data[y * width + x] = Math.round(255 * Math.min(1, Math.max(0, edge / feather + 0.5)));
    }
  }
  return { width, height, channels: 1, data };
}

/** Inpaints one selection of a photograph and measures both ways of putting the result back. */
export async function measureCompositing(fixtures: string, options: { model?: string; budget?: number; steps?: number } = {}): Promise<Record<"seamless" | "off", CompositingFigures>> {
  const folder = await loadModelFolder(path.join(fixtures, options.model ?? "tiny-sd"));
  const model: LoadedModel = { folder, sessions: new ModelSessions(folder, { devices: ["cpu"] }), tokenizer: await ClipTokenizer.fromFolder(folder.paths.tokenizer.dir) };
  try {
    const { data, info } = await sharp(path.join(fixtures, "images", "chelsea.png")).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const photo: Pixels = { width: info.width, height: info.height, channels: 3, data: new Uint8Array(data) };
    const selection = ellipseSelection(photo.width, photo.height, 230, 120, 80, 55);
    const budget = options.budget ?? 256 * 256;
    const plan = await planInpaint(photo, selection, { canvas: photo, region: regionOf(photo) }, { nativeResolution: folder.nativeResolution, budget, strength: 1 });
    const [generated] = await generate(
      model,
      {
        prompts: ["a cat wearing a knitted hat"],
        negativePrompts: [""],
        ...plan.size,
        steps: options.steps ?? 4,
        guidance: 7.5,
        scheduler: "euler_a",
        truncatePrompt: false,
        inpaint: { rgb: plan.modelImage.data, mask: plan.modelMask.data, strength: 1, variant: "blend" },
      },
      new TorchGenerator(1234),
    );
    const measure = async (compositing: "seamless" | "off"): Promise<CompositingFigures> => {
      const { picture, blend } = await finishMaskedEdit(plan, generated!.rgb, { compositing });
      return figuresFor(plan, picture, blend);
    };
    return { seamless: await measure("seamless"), off: await measure("off") };
  } finally {
    await model.sessions.release();
  }
}

function figuresFor(plan: MaskedEditPlan, picture: Pixels, blend: Pixels): CompositingFigures {
  let changedOutside = 0;
  for (let i = 0; i < blend.data.length; i++) {
    if (blend.data[i] !== 0) continue;
    for (let c = 0; c < 3; c++) if (picture.data[i * picture.channels + c] !== plan.canvas.data[i * 3 + c]) changedOutside++;
  }
  // The same ring (around the artist's selection) judges both ways of compositing.
  const ring = ringAround(plan.selection, 8);
  return { seamRatio: seamScore(picture, plan.selection).ratio, ringDeltaE: deltaE76(picture, plan.canvas, ring), changedOutside };
}

export async function benchCompositing(fixtures: string, quick: boolean): Promise<Figures> {
  const figures = await measureCompositing(fixtures, quick ? { budget: 128 * 128, steps: 2 } : {});
  const row = (name: string, f: CompositingFigures) => ({
    what: name,
    value: `seam ratio ${f.seamRatio.toFixed(2)}   ring ΔE ${f.ringDeltaE.toFixed(1)}   changed outside ${f.changedOutside}`,
  });
  printSection("Compositing: an inpainted selection on chelsea.png (tiny model: its pixels are noise)", [
    row("default (blend mask + colour match)", figures.seamless),
    row("compositing off (hard paste)", figures.off),
  ]);
  return {
    "compositing.seamRatio": figures.seamless.seamRatio,
    "compositing.ringDeltaE": figures.seamless.ringDeltaE,
    "compositing.changedOutside": figures.seamless.changedOutside,
    "compositing.off.seamRatio": figures.off.seamRatio,
    "compositing.off.ringDeltaE": figures.off.ringDeltaE,
  };
}
