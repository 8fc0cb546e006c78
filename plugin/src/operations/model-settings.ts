/**
 * Each model's settings: its recommended steps, guidance and scheduler (from the daemon), with the
 * artist's own changes kept per model on top, and which controls mean something for it.
 */
import { z } from "zod";
import { SchedulerName, type ModelInfo } from "../../../protocol";

export interface ModelSettings {
  steps: number;
  guidance: number;
  scheduler: SchedulerName;
}

/** The artist's changes to each model's recommended settings, by model id: only what differs. */
export type ModelOverrides = Record<string, Partial<ModelSettings>>;

/** Turbo models make their picture in this many steps at most. */
export const TURBO_MAX_STEPS = 4;
export const MAX_STEPS = 100;

const Overrides = z.record(
  z.string(),
  z.object({ steps: z.number().int().min(1).max(200).optional(), guidance: z.number().min(0).max(50).optional(), scheduler: SchedulerName.optional() }),
);

/** Saved overrides read back; anything damaged counts as none. */
export function parseOverrides(text: string | undefined): ModelOverrides {
  if (!text) return {};
  try {
    const parsed = Overrides.safeParse(JSON.parse(text));
    return parsed.success ? (parsed.data as ModelOverrides) : {};
  } catch {
    return {};
  }
}

/** What the model's controls are, and why a control is off. */
export interface ModelControls {
  maxSteps: number;
  /** A word about the steps (turbo: how few it needs). */
  stepsNote?: string;
  guidance: { enabled: boolean; label: string; note?: string };
  negativePrompt: { enabled: boolean; note?: string };
}

export function controlsForModel(model: ModelInfo): ModelControls {
  const name = `“${model.name}”`;
  const maxSteps = model.turbo ? TURBO_MAX_STEPS : MAX_STEPS;
  const stepsNote = model.turbo ? `${name} makes its picture in 1 to ${TURBO_MAX_STEPS} steps.` : undefined;
  const withSteps = (controls: Omit<ModelControls, "maxSteps" | "stepsNote">): ModelControls => ({ maxSteps, ...(stepsNote ? { stepsNote } : {}), ...controls });
  switch (model.guidance) {
    case "none":
      return withSteps({
        guidance: { enabled: false, label: "Guidance (off for this model)", note: `${name} works without guidance (it was distilled to need none), so guidance stays at ${model.recommended.guidance}.` },
        negativePrompt: { enabled: false, note: `${name} reads no negative prompt: without guidance it has no effect.` },
      });
    case "embedded":
      return withSteps({
        guidance: { enabled: true, label: "Guidance (built into the model)", note: `${name} takes the guidance as an input: one pass per step, and the value still matters.` },
        negativePrompt: { enabled: false, note: `${name} reads no negative prompt: its guidance is built in.` },
      });
    case "classifier-free":
      return withSteps({ guidance: { enabled: true, label: "Guidance" }, negativePrompt: { enabled: true } });
  }
}

/** The model's settings: recommended, with the artist's changes for it, kept within what it takes. */
export function settingsForModel(model: ModelInfo, overrides: ModelOverrides): ModelSettings {
  return fitModel(model, { ...model.recommended, ...overrides[model.id] });
}

/** Steps within the model's range; guidance at its recommended value where the model has none. */
export function fitModel(model: ModelInfo, settings: ModelSettings): ModelSettings {
  const maxSteps = model.turbo ? TURBO_MAX_STEPS : 200;
  return {
    steps: Math.min(maxSteps, Math.max(1, Math.round(settings.steps))),
    guidance: model.guidance === "none" ? model.recommended.guidance : settings.guidance,
    scheduler: settings.scheduler,
  };
}

/** The overrides after the artist set `current` for `model`: what differs from its recommended settings, nothing else. */
export function rememberChange(overrides: ModelOverrides, model: ModelInfo, current: ModelSettings): ModelOverrides {
  const fitted = fitModel(model, current);
  const changed: Partial<ModelSettings> = {};
  if (fitted.steps !== model.recommended.steps) changed.steps = fitted.steps;
  if (fitted.guidance !== model.recommended.guidance) changed.guidance = fitted.guidance;
  if (fitted.scheduler !== model.recommended.scheduler) changed.scheduler = fitted.scheduler;
  const { [model.id]: _old, ...others } = overrides;
  return Object.keys(changed).length ? { ...others, [model.id]: changed } : others;
}
