/**
 * The panel: wires the view to the protocol client and the operations. Everything it touches in
 * Photoshop goes through the DocumentHost it is given.
 */
import { DEFAULT_HOST, DEFAULT_PORT, type ImageFrame } from "../../../protocol";
import { ProtocolClient, type JobHandle } from "../client/client";
import type { SocketFactory } from "../client/socket";
import { PanelError, sentenceOf } from "../errors";
import type { DocumentHost, SettingsStore } from "../photoshop/host";
import { runOperation, type OperationOutcome } from "../operations/run";
import { Library, type DataFolder } from "../operations/library";
import { DEFAULT_SETTINGS, MODE_LABELS, PROTOCOL_MODE, type GenerationSettings } from "../operations/settings";
import { shortenPrompt } from "../operations/naming";
import { parseControl } from "../operations/control";
import { wireControl } from "./control-view";
import { wireDraft } from "./draft-view";
import { LibraryView } from "./library-view";
import { wireModels } from "./models";
import { describeState, formatStepTime, GenerationQueue } from "./queue";
import { serialHost } from "./serial-host";
import { PanelView, type ResultCard } from "./view";

export interface PanelEnvironment {
  host: DocumentHost;
  settings: SettingsStore;
  /** The plugin's data folder: prompt history, styles, recent seeds. */
  data: DataFolder;
  socketFactory: SocketFactory;
  document: Document;
  /** The panel's window: its focus says the artist may have switched documents meanwhile. */
  window?: Pick<Window, "addEventListener">;
  version: string;
}

export interface Panel {
  client: ProtocolClient;
  view: PanelView;
}

export async function startPanel(env: PanelEnvironment): Promise<Panel> {
  const { host, settings, document } = env;
  const view = new PanelView(document);
  const saved = parseSettings(await settings.get("settings"));
  const url = (await settings.get("daemonUrl")) ?? `ws://${DEFAULT_HOST}:${DEFAULT_PORT}`;
  const token = await settings.get("token");
  const client = new ProtocolClient({ url, socketFactory: env.socketFactory, clientName: "underpaint-panel", clientVersion: env.version, ...(token ? { token } : {}) });

  const library = await Library.open(env.data);
  view.restore(saved);
  view.syncSeed();
  view.applyMode(view.mode);
  view.preview(undefined);
  view.showError(undefined);
  view.showNotices(library.problems);
  view.setBusy(false);
  view.showQueue([], () => {});
  view.watchToken();

  const refreshHint = () => {
    const model = view.model;
    const mode = view.mode;
    if (model && !model.modes.includes(PROTOCOL_MODE[mode])) {
      const able = (client.capabilities?.models ?? []).filter((m) => m.modes.includes(PROTOCOL_MODE[mode]));
      view.setHint(`“${model.name}” cannot do ${MODE_LABELS[mode]}${able.length ? `; ${able.map((m) => `“${m.name}”`).join(", ")} can` : ""}.`);
    } else if (mode === "inpaint") {
      view.setHint("Repaints the selection (feathered edges are kept).");
    } else if (mode === "expand") {
      view.setHint("Adds pixels on the sides you choose and paints them.");
    } else {
      view.setHint("");
    }
  };

  // An error that only said the daemon was away goes once it is back.
  let connectionError = false;
  const showError = (error: unknown) => {
    view.showError(sentenceOf(error));
    connectionError = error instanceof PanelError && CONNECTION_CODES.has(error.code);
  };
  client.onStatus((status) => {
    view.showStatus(status);
    if (status.state === "ready" && connectionError) {
      view.showError(undefined);
      connectionError = false;
    }
    const capabilities = client.capabilities;
    if (capabilities) view.setSchedulers(capabilities.schedulers, saved.scheduler ?? DEFAULT_SETTINGS.scheduler);
  });
  client.onModels(({ models, unavailable }) => {
    view.setModels(models, view.model?.id ?? saved.model);
    view.setUnavailableModels(unavailable);
    refreshHint();
  });
  view.showStatus(client.status);
  const models = await wireModels(view, client, settings, refreshHint);

  view.on("mode", "change", () => {
    view.applyMode(view.mode);
    refreshHint();
  });
  view.on("random-seed", "change", () => view.syncSeed());
  view.on("seed", "input", () => view.syncSeed());
  const useSeed = (seed: number) => view.setSeed(seed);
  view.showRecentSeeds(library.seeds, (record) => useSeed(record.seed));
  const libraryView = new LibraryView(view, library, {
    usePrompt: (entry) => view.restore({ prompt: entry.prompt, negativePrompt: entry.negativePrompt }),
    applyStyle: (style) => {
      if (style.settings.model && style.settings.model !== view.model?.id && view.selectModel(style.settings.model)) models.modelChanged();
      view.restore({ prompt: style.prompt, negativePrompt: style.negativePrompt, ...style.settings });
      view.selectScheduler(style.settings.scheduler);
      models.settingsChanged();
    },
    currentStyle: (name) => {
      const { prompt, negativePrompt, steps, guidance, scheduler, strength, variations, model } = view.read();
      return { name, prompt, negativePrompt, settings: { steps, guidance, scheduler, strength, variations, ...(model ? { model } : {}) } };
    },
    showError: (sentence) => view.showError(sentence),
  });
  view.on("change-token", "click", () => view.showPairing(!view.pairingVisible));
  view.on("pair", "click", () => {
    const value = view.token;
    if (!value) return view.showError("Paste the token that `npx underpaint token` prints.");
    view.showError(undefined);
    view.clearToken();
    void settings.set("token", value).catch((error: unknown) => view.showError(`The token could not be stored: ${sentenceOf(error)}`));
    client.setToken(value);
  });

  // Generations queue: each press of Generate reads the document then and sends its own job.
  const documents = serialHost(host);
  const control = wireControl({ view, client, host: documents, models, saved: parseControl(saved.control) });
  const queue = new GenerationQueue();
  const controls = new Map<number, { cancelled: boolean; handle?: JobHandle }>();
  const previews = previewer(host, (url) => view.preview(url));

  const renderQueue = () => {
    view.showQueue(
      queue.entries.map((e) => ({ id: e.id, label: e.label, state: describeState(e.state), cancelling: e.state.kind === "cancelling" })),
      cancelGeneration,
    );
    view.setBusy(queue.entries.length > 0);
    const head = queue.head;
    if (head) view.progress(head.progress.fraction, head.progress.label);
    const step = queue.lastStep;
    const device = client.status.daemon?.device;
    view.showStepTime(step ? `Last step: ${formatStepTime(step.ms)}${device ? ` on ${device}` : ""}.` : undefined);
  };
  client.onJobEvent((event) => {
    if (event.type === "position") queue.position(event.jobId, event.position);
    else queue.progress(event.jobId, event.progress);
    renderQueue();
  });

  function cancelGeneration(id: number): void {
    const control = controls.get(id);
    if (!control || control.cancelled) return;
    control.cancelled = true;
    control.handle?.cancel();
    queue.cancelling(id);
    renderQueue();
  }

  view.on("cancel", "click", () => {
    for (const entry of [...queue.entries]) cancelGeneration(entry.id);
  });
  view.on("generate", "click", () => {
    const seed = view.seedChoice();
    if (seed.kind === "invalid") {
      view.syncSeed();
      return view.showError(seed.message);
    }
    models.settingsChanged();
    const current = view.read();
    void settings.set("settings", JSON.stringify(current)).catch(() => {});
    void libraryView.remember(current.prompt, current.negativePrompt);
    void generate(current);
  });

  wireDraft(view, client, models, (draft) => {
    const current = view.read();
    void settings.set("settings", JSON.stringify(current)).catch(() => {});
    void libraryView.remember(current.prompt, current.negativePrompt);
    void generate(draft);
  });

  async function generate(current: GenerationSettings): Promise<void> {
    const entry = queue.add(`${current.draft ? "Draft " : ""}“${shortenPrompt(current.prompt, 28) || MODE_LABELS[current.mode]}”${current.variations > 1 ? ` ×${current.variations}` : ""}`, current.variations);
    const control: { cancelled: boolean; handle?: JobHandle } = { cancelled: false };
    controls.set(entry.id, control);
    const isHead = () => queue.head === entry;
    view.showError(undefined);
    view.showNotices([]);
    renderQueue();
    try {
      const outcome = await runOperation({ host: documents, client }, current, {
        onProgress: (fraction, label) => {
          entry.progress = { fraction, label };
          if (isHead()) view.progress(fraction, label);
        },
        onPreview: (frame) => {
          if (isHead()) previews(frame);
        },
        onJob: (handle) => {
          control.handle = handle;
          queue.sent(entry.id, handle.jobId);
          void handle.done.then((o) => {
            if (o.status === "completed") queue.placing(entry.id);
            renderQueue();
          });
          renderQueue();
        },
      }, control);
      const last = queue.entries.length === 1;
      queue.remove(entry.id);
      await showOutcome(outcome, current, last);
    } catch (error) {
      if (queue.entries.length === 1) view.progress(0, "Stopped.");
      showError(error);
    } finally {
      queue.remove(entry.id);
      controls.delete(entry.id);
      renderQueue();
    }
  }

  /** `last`: nothing else is queued, so the progress bar and the preview are this job's to clear. */
  async function showOutcome(outcome: OperationOutcome, current: GenerationSettings, last: boolean): Promise<void> {
    if (outcome.status === "cancelled") {
      if (last) {
        view.preview(undefined);
        view.progress(0, "Cancelled; the document is as it was.");
      }
      return;
    }
    view.showNotices(outcome.notices);
    const cards: ResultCard[] = [];
    for (const variation of outcome.variations) {
      cards.push({ layerId: variation.layerId, seed: variation.seed, thumbnail: await host.encodeThumbnail({ ...variation.thumbnail, channels: 4 }) });
    }
    strip = { documentId: outcome.documentId, title: (await host.documentInfo(outcome.documentId).catch(() => null))?.title ?? "The document" };
    view.showResults(
      cards,
      (card) => {
        // Only ever the document the variations are in, and only while it is in front.
        void inFront(outcome.documentId).then((front) => {
          if (!front) return forgetStrip(true);
          return documents.showOnly(outcome.documentId, outcome.groupId, card.layerId);
        }).catch((error: unknown) => showError(error));
      },
      (card) => useSeed(card.seed),
    );
    const seeds = library.rememberSeeds(outcome.variations.map((v) => ({ seed: v.seed, prompt: current.prompt, model: current.model })));
    view.showRecentSeeds(library.seeds, (record) => useSeed(record.seed));
    await seeds.catch((error: unknown) => view.showError((error as Error).message));
  }

  /** The strip's variations are layers of this document. */
  let strip: { documentId: number; title: string } | undefined;
  let front: number | undefined;
  const inFront = async (documentId: number) => (await host.activeDocument())?.id === documentId;
  function forgetStrip(clicked: boolean): void {
    if (!strip) return;
    if (clicked) view.showNotices([`“${strip.title}” is no longer in front, so its variations left the strip; they stay in its layers.`]);
    strip = undefined;
    view.showResults([], () => {}, () => {});
    view.preview(undefined);
  }
  /** Another document came to the front: the preview and the strip were about the one before. */
  const checkFront = () => {
    void host.activeDocument().then((doc) => {
      const id = doc?.id;
      if (id !== front && front !== undefined && queue.entries.length === 0) view.preview(undefined);
      front = id;
      if (strip && strip.documentId !== id) forgetStrip(false);
    }, () => {});
    // The layers may have changed meanwhile (the artist drew on one, or another document is in front).
    void control.refreshLayers().then(() => control.refreshPreview(true));
  };
  env.window?.addEventListener("focus", checkFront);
  document.body?.addEventListener("mouseenter", checkFront);
  document.body?.addEventListener("pointerenter", checkFront);
  checkFront();

  client.start();
  return { client, view };
}

/** Errors that only mean the daemon was out of reach. */
const CONNECTION_CODES = new Set(["not_connected", "connection_lost", "interrupted"]);

/** Shows previews as they come, dropping those that arrive while one is still being encoded. */
function previewer(host: DocumentHost, show: (url: string) => void): (frame: ImageFrame) => void {
  let busy = false;
  return (frame) => {
    if (busy || frame.bitsPerChannel !== 8) return;
    busy = true;
    host
      .encodeThumbnail({ width: frame.width, height: frame.height, channels: frame.channels === 1 ? 3 : frame.channels, data: frame.channels === 1 ? grayToRgb(frame.data) : frame.data })
      .then(show, () => {})
      .finally(() => {
        busy = false;
      });
  };
}

function grayToRgb(gray: Uint8Array): Uint8Array {
  const out = new Uint8Array(gray.length * 3);
  for (let i = 0; i < gray.length; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = gray[i]!;
  return out;
}

function parseSettings(text: string | undefined): Partial<GenerationSettings> {
  if (!text) return {};
  try {
    const value = JSON.parse(text) as Partial<GenerationSettings>;
    return typeof value === "object" && value !== null ? value : {};
  } catch {
    return {};
  }
}
