/**
 * What the Draft button runs: a quick picture from a Turbo or LCM model (few steps), decoded by the
 * daemon's TAESD when it has one. The chosen model drafts when it is such a model; otherwise an
 * installed one that can do the mode does, with its own settings (the model menu stays as it is);
 * with none installed, one sentence says which to pull.
 */
import type { Capabilities, ModelInfo, RegistryModel } from "../../../protocol";
import { fitModel, type ModelSettings } from "./model-settings";
import { MODE_LABELS, PROTOCOL_MODE, type GenerationSettings } from "./settings";

/** A model that makes its picture in a few steps: distilled (Turbo) or a latent consistency model. */
export function isFewStep(model: Pick<ModelInfo, "turbo" | "recommended"> & { guidance?: ModelInfo["guidance"] }): boolean {
  return model.turbo || model.guidance === "embedded" || model.recommended.scheduler === "lcm";
}

export type DraftPlan =
  | {
      kind: "ready";
      model: ModelInfo;
      /** The job's settings: the artist's, with the drafting model and its settings, and draft on. */
      settings: GenerationSettings;
      /** Whether the daemon has TAESD to decode it (else the VAE does, slower). */
      taesd: boolean | undefined;
      /** What the button will do, in a sentence. */
      summary: string;
    }
  | { kind: "refused"; message: string; /** A registry model to pull for drafts. */ pull?: RegistryModel };

/**
 * `settingsFor`: the model's settings as the panel keeps them (recommended, with the artist's own
 * changes for it). Turbo models come before LCM ones (one step against four).
 */
export function planDraft(capabilities: Capabilities, current: GenerationSettings, settingsFor: (model: ModelInfo) => ModelSettings): DraftPlan {
  const mode = PROTOCOL_MODE[current.mode];
  const chosen = capabilities.models.find((m) => m.id === current.model);
  const able = capabilities.models.filter((m) => isFewStep(m) && m.modes.includes(mode)).sort((a, b) => Number(b.turbo) - Number(a.turbo));
  const model = chosen && able.includes(chosen) ? chosen : able[0];
  if (!model) {
    const pull = capabilities.registry.filter((e) => isFewStep(e) && e.kind === "txt2img").sort((a, b) => Number(b.turbo) - Number(a.turbo))[0];
    const anyFast = capabilities.models.some(isFewStep);
    const why = anyFast ? `No installed Turbo or LCM model can do ${MODE_LABELS[current.mode]}` : "Drafts need a Turbo or LCM model";
    const what = pull ? `pull “${pull.name}” in Models${pull.turbo ? " (a picture in 1 to 4 steps)" : ""}.` : "add one to the daemon's models folder.";
    return { kind: "refused", message: `${why}: ${what}`, ...(pull ? { pull } : {}) };
  }
  // The daemon's steps, guidance and scheduler for the drafting model, as the panel would set them.
  const own = model.id === current.model ? fitModel(model, { steps: current.steps, guidance: current.guidance, scheduler: current.scheduler }) : settingsFor(model);
  const taesd = capabilities.previewDecoder === undefined ? undefined : capabilities.previewDecoder !== null;
  const decoder = taesd === false ? "the full VAE (pull TAESD for faster drafts)" : "TAESD";
  return {
    kind: "ready",
    model,
    taesd,
    // Drafting models follow no control image: a draft runs without Control.
    settings: { ...withoutControl(current), ...own, model: model.id, draft: true },
    summary: `Draft: “${model.name}”, ${own.steps} step${own.steps === 1 ? "" : "s"}, decoded by ${decoder}.`,
  };
}

function withoutControl(settings: GenerationSettings): GenerationSettings {
  const { control: _control, ...rest } = settings;
  return rest;
}
