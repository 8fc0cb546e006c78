/**
 * The Draft button: one click, a quick picture from a Turbo or LCM model decoded by TAESD (see
 * operations/draft.ts for which model and settings). Under it a line says what a draft will do,
 * with a Pull button for what is missing: a Turbo/LCM model, or TAESD.
 */
import type { ProtocolClient } from "../client/client";
import { planDraft, type DraftPlan } from "../operations/draft";
import type { GenerationSettings } from "../operations/settings";
import type { PanelModels } from "./models";
import type { PanelView } from "./view";

const RUNNING = new Set(["listing", "downloading", "verifying", "installing"]);

export function wireDraft(view: PanelView, client: ProtocolClient, models: PanelModels, run: (settings: GenerationSettings) => void): void {
  const plan = (): DraftPlan | undefined => {
    const capabilities = client.capabilities;
    return capabilities ? planDraft(capabilities, view.read(), (m) => models.settingsFor(m)) : undefined;
  };

  /** The registry id the Pull button asks for: the model drafts need, or TAESD. */
  let offer: string | undefined;
  const render = () => {
    const current = plan();
    view.show(view.el("draft-row"), current !== undefined);
    if (!current) return;
    view.el("draft-note").textContent = current.kind === "ready" ? current.summary : current.message;
    const taesd = client.capabilities?.registryPreviewDecoders?.[0];
    const wanted = current.kind === "refused" ? current.pull && { id: current.pull.id, name: current.pull.name } : current.taesd === false && taesd ? { id: taesd.id, name: "TAESD" } : undefined;
    const pulling = wanted && client.downloads.some((d) => (d.model === wanted.id || d.request === wanted.id) && RUNNING.has(d.stage));
    offer = wanted && !pulling ? wanted.id : undefined;
    const button = view.el("draft-pull");
    button.textContent = wanted ? (pulling ? `Pulling ${wanted.name}…` : `Pull ${wanted.name}`) : "Pull";
    button.disabled = Boolean(pulling);
    view.show(button, wanted !== undefined);
  };

  view.on("draft", "click", () => {
    const current = plan();
    if (!current) return view.showError(client.status.message);
    if (current.kind === "refused") return view.showError(current.message);
    const seed = view.seedChoice();
    if (seed.kind === "invalid") return view.showError(seed.message);
    models.settingsChanged();
    run(current.settings);
  });
  view.on("draft-pull", "click", () => {
    if (offer) models.pull(offer);
    render();
  });
  for (const id of ["model", "mode", "scheduler"]) view.on(id, "change", render);
  view.on("steps", "change", render);
  client.onStatus(render);
  client.onModels(render);
  client.onDownload(render);
  render();
}
