/**
 * The Control section: off by default; when on, a pixel layer of the document in front steers the
 * picture through a ControlNet of the chosen kind, with its strength and the part of the steps it
 * steers. Usable only with a model that can follow a control image (else one sentence says which
 * to pull); kinds whose ControlNet is not installed offer a Pull. Under it, the control image as the
 * daemon makes it from the layer (control-preview): exactly what the ControlNet follows.
 */
import type { ControlKind } from "../../../protocol";
import type { ProtocolClient } from "../client/client";
import { sentenceOf } from "../errors";
import {
  CONTROL_KIND_LABELS,
  controlLayers,
  controlOffer,
  controlArea,
  estimatorSuggestion,
  readControlImage,
  type ControlOffer,
  type ControlSettings,
} from "../operations/control";
import type { DocumentHost, DocumentLayer } from "../photoshop/host";
import type { PanelModels } from "./models";
import type { PanelView } from "./view";

const RUNNING = new Set(["listing", "downloading", "verifying", "installing"]);

export interface ControlSection {
  /** Reads the front document's layers again (another document may be in front, layers added). */
  refreshLayers(): Promise<void>;
  /** Makes the control image preview again from the layer as it is now (`force` false: only when the layer or kind changed). */
  refreshPreview(force?: boolean): Promise<void>;
}

export interface ControlDeps {
  view: PanelView;
  client: ProtocolClient;
  /** The panel's serial host: reads take Photoshop's modal scope in turn with the jobs'. */
  host: DocumentHost;
  models: PanelModels;
  saved: ControlSettings;
}

export function wireControl({ view, client, host, models, saved }: ControlDeps): ControlSection {
  let settings: ControlSettings = { ...saved };
  /** The front document's pixel layers, as the layer menu lists them. */
  let layers: DocumentLayer[] = [];
  let documentId: number | undefined;
  /** The layer chosen in each document this session. */
  const chosen = new Map<number, number>();
  /** The kinds the kind menu lists. */
  let kinds: ControlKind[] = [];
  let offer: ControlOffer = controlOffer(undefined, undefined);
  /** What the Pull button asks for. */
  let pullId: string | undefined;
  let previewTurn = 0;
  /** The layer and kind the preview shows, so a refresh of the same does not redo it. */
  let previewed: string | undefined;

  const on = () => view.el("control-on").checked;
  view.el("control-on").checked = settings.enabled;
  view.el("control-strength").value = settings.strength;
  view.el("control-start").value = Math.round(settings.start * 100);
  view.el("control-end").value = Math.round(settings.end * 100);

  const read = (): ControlSettings => {
    const number = (id: string, fallback: number) => {
      const value = Number(view.el(id).value);
      return Number.isFinite(value) ? value : fallback;
    };
    const layer = layers[view.el("control-layer").selectedIndex];
    return {
      enabled: on(),
      kind: kinds[view.el("control-kind").selectedIndex] ?? settings.kind,
      strength: Math.min(2, Math.max(0, number("control-strength", 1))),
      start: Math.min(1, Math.max(0, number("control-start", 0) / 100)),
      end: Math.min(1, Math.max(0, number("control-end", 100) / 100)),
      ...(layer && documentId !== undefined ? { layerId: layer.id, layerName: layer.name, documentId } : settings.layerName !== undefined ? { layerName: settings.layerName } : {}),
    };
  };
  view.controlReader = read;

  const render = () => {
    offer = controlOffer(client.capabilities, view.model);
    const note = view.el("control-note");
    let sentence = "";
    let wanted: { id: string; name: string } | undefined;
    if (offer.kind === "unavailable") {
      sentence = offer.message;
      if (offer.pull) wanted = { id: offer.pull.id, name: offer.pull.name };
    } else {
      const ready = offer;
      const label = (k: ControlKind) => `${CONTROL_KIND_LABELS[k]}${ready.installed.includes(k) ? "" : " (not installed)"}`;
      const next = [...ready.installed, ...ready.pullable.map((e) => e.kind).filter((k, i, all) => !ready.installed.includes(k) && all.indexOf(k) === i)];
      if (next.join() !== kinds.join()) {
        kinds = next;
        const index = Math.max(0, kinds.indexOf(settings.kind));
        view.fillMenu(
          "control-kind-menu",
          kinds.map((k) => ({ value: k, label: label(k) })),
          index,
        );
        view.el("control-kind").selectedIndex = kinds.length ? index : -1;
      } else {
        // The labels say which are installed.
        const items = Array.from(view.el("control-kind-menu").querySelectorAll("sp-menu-item"));
        items.forEach((item, i) => {
          const text = label(kinds[i]!);
          if (item.textContent !== text) item.textContent = text;
        });
      }
      const kind = read().kind;
      if (on()) {
        if (kinds.length === 0) sentence = "No ControlNet is installed, and the daemon offers none to pull: add one to its models folder.";
        else if (!ready.installed.includes(kind)) {
          const entry = ready.pullable.find((e) => e.kind === kind);
          sentence = `The ${CONTROL_KIND_LABELS[kind].toLowerCase()} ControlNet is not installed${entry ? ": pull it to use it" : ""}.`;
          if (entry) wanted = { id: entry.id, name: entry.name };
        } else if (layers.length === 0 && documentId !== undefined) sentence = "This document has no pixel layer: add a layer and draw what the picture should follow.";
        else {
          const estimator = estimatorSuggestion(client.capabilities, kind);
          if (estimator) [sentence, wanted] = [estimator.message, estimator.pull];
        }
      }
    }
    note.textContent = sentence;
    view.show(note, sentence !== "");
    const pulling = wanted && client.downloads.some((d) => (d.model === wanted.id || d.request === wanted.id) && RUNNING.has(d.stage));
    pullId = wanted && !pulling ? wanted.id : undefined;
    const button = view.el("control-pull");
    button.textContent = wanted ? (pulling ? `Pulling ${wanted.name}…` : `Pull ${wanted.name}`) : "Pull";
    button.disabled = Boolean(pulling);
    view.show(button, wanted !== undefined);
    view.show(view.el("control-fields"), on() && offer.kind === "ready");
  };

  const refreshLayers = async () => {
    if (!on()) return;
    const doc = await host.activeDocument().catch(() => null);
    const list = doc ? controlLayers(await host.listLayers(doc.id).catch(() => [])) : [];
    const before = `${documentId}:${layers.map((l) => `${l.id}/${l.name}/${l.visible}/${l.empty}`).join()}`;
    const current = read();
    if (documentId !== undefined && current.layerId !== undefined) chosen.set(documentId, current.layerId);
    documentId = doc?.id;
    layers = list;
    const remembered = doc ? chosen.get(doc.id) : undefined;
    let index = list.findIndex((l) => l.id === remembered);
    if (index < 0 && current.layerName !== undefined) index = list.findIndex((l) => l.name === current.layerName);
    if (index < 0 && doc?.activeLayer) index = list.findIndex((l) => l.id === doc.activeLayer!.id);
    if (index < 0) index = list.length ? 0 : -1;
    const after = `${documentId}:${list.map((l) => `${l.id}/${l.name}/${l.visible}/${l.empty}`).join()}`;
    if (before !== after) {
      view.fillMenu("control-layer-menu", list.map((l) => ({ value: String(l.id), label: layerLabel(l) })), index);
      view.el("control-layer").selectedIndex = index;
    }
    render();
  };

  const refreshPreview = async (force = true) => {
    const turn = ++previewTurn;
    const img = view.el("control-preview") as unknown as HTMLImageElement;
    const caption = view.el("control-preview-note");
    const hide = (why: string) => {
      previewed = undefined;
      view.show(img, false);
      caption.textContent = why;
      view.show(caption, why !== "");
    };
    const current = read();
    const model = view.model;
    if (!on() || offer.kind !== "ready" || !model || !offer.installed.includes(current.kind)) return hide("");
    if (current.layerId === undefined) return hide("");
    const key = `${documentId}:${current.layerId}:${current.kind}:${model.nativeResolution}`;
    if (!force && key === previewed) return;
    if (!client.capabilities?.controlPreview) return hide("This daemon cannot show the control image; update it.");
    try {
      const doc = await host.activeDocument();
      if (!doc) return hide("");
      const image = await readControlImage(host, doc, current, controlArea("generate", doc, model, {}));
      const frame = await client.controlPreview(current.kind, image);
      const url = await host.encodeThumbnail({ width: frame.width, height: frame.height, channels: 3, data: frame.data });
      if (turn !== previewTurn) return;
      previewed = key;
      img.src = url;
      view.show(img, true);
      caption.textContent = `What the ControlNet follows: ${CONTROL_KIND_LABELS[current.kind].toLowerCase()} from “${doc.title}” › “${current.layerName ?? ""}”.`;
      view.show(caption, true);
    } catch (error) {
      if (turn === previewTurn) hide(sentenceOf(error));
    }
  };

  const changed = () => {
    settings = read();
    render();
    void refreshPreview(false);
  };
  view.on("control-on", "change", () => {
    settings = read();
    void refreshLayers().then(() => refreshPreview(false));
    render();
  });
  view.on("control-layer", "change", changed);
  view.on("control-kind", "change", changed);
  for (const id of ["control-strength", "control-start", "control-end"]) view.on(id, "change", () => (settings = read()));
  view.on("control-refresh", "click", () => void refreshLayers().then(() => refreshPreview(true)));
  view.on("control-pull", "click", () => {
    if (pullId) models.pull(pullId);
    render();
  });
  for (const id of ["model", "mode"]) view.on(id, "change", changed);
  client.onStatus(() => {
    render();
    if (client.capabilities) void refreshLayers().then(() => refreshPreview(false));
  });
  client.onModels(changed);
  client.onDownload(render);
  render();

  return { refreshLayers, refreshPreview };
}

function layerLabel(layer: DocumentLayer): string {
  const notes = [layer.visible ? undefined : "hidden", layer.empty ? "empty" : undefined].filter(Boolean);
  return `${"  ".repeat(layer.depth)}${layer.name}${notes.length ? ` (${notes.join(", ")})` : ""}`;
}
