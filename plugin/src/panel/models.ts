/**
 * The panel's models: choosing one applies its recommended steps, guidance and scheduler (with the
 * artist's own changes for that model, kept per model and saved), and sets the controls to what
 * it supports; the Models section pulls, cancels and resumes installs and lists what is installed.
 */
import type { ProtocolClient } from "../client/client";
import type { SettingsStore } from "../photoshop/host";
import type { ModelInfo } from "../../../protocol";
import { controlsForModel, parseOverrides, rememberChange, settingsForModel, type ModelOverrides, type ModelSettings } from "../operations/model-settings";
import { setupRows, type SetupAction } from "./model-setup";
import { ModelSetupView } from "./model-setup-view";
import type { PanelView } from "./view";

export interface PanelModels {
  /** The artist picked another model (or a style did): its settings and controls. */
  modelChanged(): void;
  /** The artist changed steps, guidance or the scheduler: kept for the chosen model. */
  settingsChanged(): void;
  /** A model's settings as the panel keeps them: recommended, with the artist's changes for it. */
  settingsFor(model: ModelInfo): ModelSettings;
  /** Pulls a registry entry (a model, TAESD or a ControlNet) and opens the Models section, where its progress shows. */
  pull(id: string): void;
}

export async function wireModels(view: PanelView, client: ProtocolClient, settings: SettingsStore, onModel: () => void): Promise<PanelModels> {
  let overrides: ModelOverrides = parseOverrides(await settings.get("modelSettings"));
  let applied: string | undefined;
  const pending = new Set<string>();

  const modelChanged = () => {
    const model = view.model;
    applied = model?.id;
    if (model) {
      // The controls' ranges first: a turbo model's 4-step slider would cut a 25 to 4.
      view.applyModelControls(controlsForModel(model));
      view.showModelSettings(settingsForModel(model, overrides));
    }
    onModel();
  };

  const settingsChanged = () => {
    const model = view.model;
    if (!model) return;
    const { steps, guidance, scheduler } = view.read();
    const next = rememberChange(overrides, model, { steps, guidance, scheduler });
    if (JSON.stringify(next) === JSON.stringify(overrides)) return;
    overrides = next;
    void settings.set("modelSettings", JSON.stringify(overrides)).catch(() => {});
  };

  const act = (id: string, action: SetupAction) => {
    try {
      if (action === "cancel") client.cancelPull(id);
      else client.pullModel(id);
      pending.add(id);
    } catch (error) {
      view.showError((error as Error).message);
    }
    render();
  };
  const setup = new ModelSetupView(view, act);

  const render = () => {
    const capabilities = client.capabilities;
    const models = capabilities?.models ?? [];
    const previews = { registry: capabilities?.registryPreviewDecoders ?? [], installed: capabilities?.previewDecoder };
    const controlNets = { registry: capabilities?.registryControlNets ?? [], installed: capabilities?.controlNets };
    const depth = { registry: capabilities?.registryDepthEstimators ?? [], installed: capabilities?.depthEstimator };
    const pose = { registry: capabilities?.registryPoseEstimators ?? [], installed: capabilities?.poseEstimator };
    setup.showRows(setupRows(capabilities?.registry ?? [], models, client.downloads, pending, previews, controlNets, depth, pose), capabilities !== undefined);
    setup.showInstalled(models);
  };

  client.onStatus(() => {
    pending.clear();
    render();
    // A first run: nothing to generate with until a model is pulled, so the setup is where to start.
    if (client.capabilities && client.capabilities.models.length === 0 && !setup.isOpen) setup.open(true);
  });
  client.onModels(() => {
    if (view.model?.id !== applied) modelChanged();
    render();
  });
  client.onDownload((status) => {
    pending.delete(status.model);
    if (status.request) pending.delete(status.request);
    render();
  });
  client.onDaemonError(({ message }) => {
    pending.clear();
    view.showError(message);
    render();
  });

  view.on("model", "change", modelChanged);
  for (const id of ["steps", "guidance"]) {
    view.on(id, "input", settingsChanged);
    view.on(id, "change", settingsChanged);
  }
  view.on("scheduler", "change", settingsChanged);
  render();
  return {
    modelChanged,
    settingsChanged,
    settingsFor: (model) => settingsForModel(model, overrides),
    pull: (id) => {
      setup.open(true);
      act(id, "pull");
    },
  };
}
