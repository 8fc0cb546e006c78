/**
 * The panel's controls (Photoshop's built-in Spectrum widgets in index.html): reads what the
 * artist set, shows status, progress, the preview, results and errors. No logic of its own.
 */
import type { ModelInfo, SchedulerName, UnavailableModel } from "../../../protocol";
import type { ConnectionStatus } from "../client/client";
import type { ModelControls, ModelSettings } from "../operations/model-settings";
import type { ControlSettings } from "../operations/control";
import { parseSeed, seedText, type SeedChoice, type SeedRecord } from "../operations/seed";
import { controlsFor, DEFAULT_SETTINGS, OPERATION_MODES, type GenerationSettings, type OperationMode } from "../operations/settings";

/** The properties the built-in widgets have (sp-textfield, sp-slider, sp-dropdown, sp-checkbox…). */
interface Widget extends HTMLElement {
  value: string | number;
  checked: boolean;
  disabled: boolean;
  selectedIndex: number;
}

export interface ResultCard {
  layerId: number;
  seed: number;
  thumbnail: string;
}

const SCHEDULER_LABELS: Record<SchedulerName, string> = {
  pndm: "PNDM",
  ddim: "DDIM",
  euler: "Euler",
  euler_a: "Euler ancestral",
  dpmpp_2m: "DPM++ 2M",
  dpmpp_2m_karras: "DPM++ 2M Karras",
  lcm: "LCM",
};

const CONTEXTS = ["automatic", "selection", "image"] as const;

export class PanelView {
  private models: ModelInfo[] = [];
  private schedulers: SchedulerName[] = [];
  private typedToken = "";
  /** The Control section's settings, read with the others (set by the section once it is wired). */
  controlReader: (() => ControlSettings) | undefined;

  constructor(readonly doc: Document) {}

  el(id: string): Widget {
    const element = this.doc.getElementById(id);
    if (!element) throw new Error(`The panel has no #${id}.`);
    return element as Widget;
  }

  on(id: string, event: string, handler: () => void): void {
    this.el(id).addEventListener(event, () => handler());
  }

  // ---- connection ----

  showStatus(status: ConnectionStatus): void {
    this.el("status").textContent = status.message;
    const dot = this.el("status-dot");
    dot.className = status.state === "ready" ? "ready" : status.state === "refused" || status.state === "unpaired" ? "refused" : "waiting";
    const needsToken = status.state === "unpaired" || (status.state === "refused" && /token/i.test(status.message));
    if (needsToken) this.showPairing(true);
    if (status.state === "ready") this.showPairing(false);
  }

  showPairing(show: boolean): void {
    this.show(this.el("pairing"), show);
  }

  get pairingVisible(): boolean {
    return this.el("pairing").style.display !== "none";
  }

  /**
   * The token field shows what is typed while it has the focus and hides it after: a password
   * field's value cannot be read on macOS, so what is typed is kept as it is typed.
   */
  watchToken(): void {
    const field = this.el("token");
    const keep = () => {
      this.typedToken = String(field.value ?? "");
    };
    field.addEventListener("focus", () => field.setAttribute("type", "text"));
    field.addEventListener("input", keep);
    field.addEventListener("change", keep);
    field.addEventListener("blur", () => {
      keep();
      field.setAttribute("type", "password");
    });
  }

  get token(): string {
    const field = this.el("token");
    // Read while it is a text field; in a password field only what was kept from typing counts.
    return (field.getAttribute("type") === "password" ? this.typedToken : String(field.value ?? "") || this.typedToken).trim();
  }

  clearToken(): void {
    this.el("token").value = "";
    this.typedToken = "";
  }

  // ---- settings ----

  setModels(models: ModelInfo[], preferred?: string): void {
    const current = preferred ?? this.models[this.el("model").selectedIndex]?.id;
    this.models = models;
    const index = Math.max(0, models.findIndex((m) => m.id === current));
    this.fillMenu("model-menu", models.map((m) => ({ value: m.id, label: m.name })), index);
    this.el("model").selectedIndex = models.length ? index : -1;
  }

  /** The folders that cannot run here, each with the daemon's sentence saying why, under the model menu. */
  setUnavailableModels(unavailable: UnavailableModel[]): void {
    const list = this.el("unavailable-models");
    list.textContent = "";
    for (const model of unavailable) {
      const line = this.doc.createElement("sp-detail");
      line.setAttribute("data-model-id", model.id);
      line.textContent = `“${model.id}” cannot run here: ${model.message}`;
      list.appendChild(line);
    }
    this.show(list, unavailable.length > 0);
  }

  setSchedulers(schedulers: SchedulerName[], preferred: SchedulerName): void {
    if (schedulers.join() === this.schedulers.join()) return;
    this.schedulers = schedulers;
    const index = Math.max(0, schedulers.indexOf(preferred));
    this.fillMenu("scheduler-menu", schedulers.map((s) => ({ value: s, label: SCHEDULER_LABELS[s] ?? s })), index);
    this.el("scheduler").selectedIndex = index;
  }

  get model(): ModelInfo | undefined {
    return this.models[this.el("model").selectedIndex];
  }

  get mode(): OperationMode {
    return OPERATION_MODES[this.el("mode").selectedIndex] ?? "generate";
  }

  /** Hides the controls that mean nothing in this mode. */
  applyMode(mode: OperationMode): void {
    const used = controlsFor(mode);
    for (const element of Array.from(this.doc.querySelectorAll<HTMLElement>("[data-control]"))) {
      this.show(element, used.has(element.getAttribute("data-control") as never));
    }
  }

  setHint(text: string): void {
    this.el("hint").textContent = text;
  }

  read(): GenerationSettings {
    const number = (id: string, fallback: number) => {
      const value = Number(this.el(id).value);
      return Number.isFinite(value) ? value : fallback;
    };
    const side = (id: string) => Math.max(0, Math.round(number(id, 0)));
    const seed = this.seedChoice();
    return {
      mode: this.mode,
      model: this.model?.id ?? "",
      prompt: String(this.el("prompt").value ?? ""),
      negativePrompt: String(this.el("negative").value ?? ""),
      strength: Math.min(1, Math.max(0, number("strength", 75) / 100)),
      steps: Math.max(1, Math.round(number("steps", DEFAULT_SETTINGS.steps))),
      guidance: number("guidance", DEFAULT_SETTINGS.guidance),
      scheduler: this.schedulers[this.el("scheduler").selectedIndex] ?? DEFAULT_SETTINGS.scheduler,
      ...(seed.kind === "fixed" ? { seed: seed.seed } : {}),
      variations: Math.min(8, Math.max(1, Math.round(number("variations", 1)))),
      source: this.el("source").selectedIndex === 1 ? "layer" : "visible",
      context: CONTEXTS[this.el("context").selectedIndex] ?? "automatic",
      expand: { left: side("expand-left"), top: side("expand-top"), right: side("expand-right"), bottom: side("expand-bottom") },
      ...(this.controlReader ? { control: this.controlReader() } : {}),
    };
  }

  /** Puts saved settings back (the model and scheduler once their lists arrive). */
  restore(settings: Partial<GenerationSettings>): void {
    if (settings.mode) this.select("mode", OPERATION_MODES.indexOf(settings.mode));
    if (settings.prompt !== undefined) this.el("prompt").value = settings.prompt;
    if (settings.negativePrompt !== undefined) this.el("negative").value = settings.negativePrompt;
    if (settings.strength !== undefined) this.el("strength").value = Math.round(settings.strength * 100);
    if (settings.steps !== undefined) this.el("steps").value = settings.steps;
    if (settings.guidance !== undefined) this.el("guidance").value = settings.guidance;
    if (settings.variations !== undefined) this.el("variations").value = settings.variations;
    if (settings.source) this.select("source", settings.source === "layer" ? 1 : 0);
    if (settings.context) this.select("context", CONTEXTS.indexOf(settings.context));
    if (settings.expand) {
      for (const side of ["left", "top", "right", "bottom"] as const) this.el(`expand-${side}`).value = settings.expand[side];
    }
    // A fixed seed only when one is given: prompts and styles leave the seed as it is.
    if (settings.seed !== undefined) this.setSeed(settings.seed);
  }

  /** Selects a scheduler the daemon offers (others are left as they are). */
  selectScheduler(scheduler: SchedulerName): void {
    const index = this.schedulers.indexOf(scheduler);
    if (index >= 0) this.select("scheduler", index);
  }

  /** Selects an installed model by id; false when there is none such. */
  selectModel(id: string): boolean {
    const index = this.models.findIndex((m) => m.id === id);
    if (index < 0) return false;
    this.select("model", index);
    return true;
  }

  /** The controls as the chosen model takes them: the steps it needs, guidance and negative prompt off where it has none, and why. */
  applyModelControls(controls: ModelControls): void {
    const steps = this.el("steps");
    steps.setAttribute("max", String(controls.maxSteps));
    if (Number(steps.value) > controls.maxSteps) steps.value = controls.maxSteps;
    this.note("steps-note", controls.stepsNote);
    this.el("guidance").disabled = !controls.guidance.enabled;
    this.el("guidance-label").textContent = controls.guidance.label;
    this.note("guidance-note", controls.guidance.note);
    this.el("negative").disabled = !controls.negativePrompt.enabled;
    this.note("negative-note", controls.negativePrompt.note);
  }

  /** The model's settings in the controls. */
  showModelSettings(settings: ModelSettings): void {
    this.el("steps").value = settings.steps;
    this.el("guidance").value = settings.guidance;
    this.selectScheduler(settings.scheduler);
  }

  /** Random, the typed seed, or why what was typed is no seed. */
  seedChoice(): SeedChoice {
    if (this.el("random-seed").checked) return { kind: "random" };
    return parseSeed(String(this.el("seed").value ?? ""));
  }

  /** A fixed seed (reusing a result's), or undefined for random. */
  setSeed(seed: number | undefined): void {
    this.el("random-seed").checked = seed === undefined;
    if (seed !== undefined) this.el("seed").value = seedText(seed);
    this.syncSeed();
  }

  /** The seed field follows the Random box; a typed seed that is no seed says why under it. */
  syncSeed(): void {
    this.el("seed").disabled = this.el("random-seed").checked;
    const choice = this.seedChoice();
    const message = this.el("seed-message");
    message.textContent = choice.kind === "invalid" ? choice.message : "";
    this.show(message, choice.kind === "invalid");
  }

  /** The seeds of recent pictures with their prompts, newest first, each to use again. */
  showRecentSeeds(records: readonly SeedRecord[], onUse: (record: SeedRecord) => void): void {
    const list = this.el("recent-seeds");
    list.textContent = "";
    for (const record of records) {
      const row = this.listRow("recent-seed", `${seedText(record.seed)} · ${record.prompt || "(no prompt)"}`, [this.button("Use", "use-seed", () => onUse(record))]);
      row.setAttribute("data-seed", seedText(record.seed));
      list.appendChild(row);
    }
    this.show(this.el("recent-seeds-section"), records.length > 0);
  }

  // ---- a generation ----

  /** Generate stays available while jobs run (they queue); Cancel all only while there are some. */
  setBusy(busy: boolean): void {
    this.el("cancel").disabled = !busy;
  }

  /** The queued generations, oldest first, each with where it stands and its own Cancel. */
  showQueue(entries: ReadonlyArray<{ id: number; label: string; state: string; cancelling: boolean }>, onCancel: (id: number) => void): void {
    const list = this.el("queue");
    list.textContent = "";
    for (const entry of entries) {
      const row = this.doc.createElement("div");
      row.className = "queued";
      row.setAttribute("data-queue-id", String(entry.id));
      const label = this.doc.createElement("sp-detail");
      label.className = "queued-label";
      label.textContent = entry.label;
      const state = this.doc.createElement("sp-detail");
      state.className = "queued-state";
      state.textContent = entry.state;
      const cancel = this.button("Cancel", "cancel-job", () => onCancel(entry.id));
      (cancel as Widget).disabled = entry.cancelling;
      row.appendChild(label);
      row.appendChild(state);
      row.appendChild(cancel);
      list.appendChild(row);
    }
    this.show(list, entries.length > 0);
  }

  /** How long the last step took and where the daemon runs, so the artist knows what to expect. */
  showStepTime(text: string | undefined): void {
    this.note("step-time", text);
  }

  progress(fraction: number, label: string): void {
    this.el("progress").value = Math.round(Math.min(1, Math.max(0, fraction)) * 100);
    this.el("progress-label").textContent = label;
  }

  preview(url: string | undefined): void {
    const img = this.el("preview") as unknown as HTMLImageElement;
    if (url) img.src = url;
    this.show(img, url !== undefined);
  }

  showError(sentence: string | undefined): void {
    const error = this.el("error");
    error.textContent = sentence ?? "";
    this.show(error, sentence !== undefined);
  }

  /** Sentences about a finished job that are not errors. */
  showNotices(notices: string[]): void {
    const notice = this.el("notice");
    notice.textContent = notices.join(" ");
    this.show(notice, notices.length > 0);
  }

  showResults(cards: ResultCard[], onChoose: (card: ResultCard) => void, onUseSeed: (card: ResultCard) => void): void {
    const strip = this.el("results");
    strip.textContent = "";
    cards.forEach((card, i) => {
      const item = this.doc.createElement("div");
      item.className = i === 0 ? "result chosen" : "result";
      item.setAttribute("data-layer-id", String(card.layerId));
      const img = this.doc.createElement("img");
      img.src = card.thumbnail;
      img.alt = `seed ${card.seed}`;
      img.title = "Show this variation";
      img.addEventListener("click", () => {
        for (const other of Array.from(strip.children)) other.classList.remove("chosen");
        item.classList.add("chosen");
        onChoose(card);
      });
      const caption = this.doc.createElement("sp-detail");
      caption.textContent = `seed ${seedText(card.seed)}`;
      // appendChild one by one: UXP's DOM has no append().
      item.appendChild(img);
      item.appendChild(caption);
      item.appendChild(this.button("Use seed", "use-seed", () => onUseSeed(card)));
      strip.appendChild(item);
    });
  }

  // ---- helpers ----

  /** A small line of text under a control, hidden when there is nothing to say. */
  private note(id: string, text: string | undefined): void {
    const note = this.el(id);
    note.textContent = text ?? "";
    this.show(note, Boolean(text));
  }

  /** One line of a list: its text (cut with an ellipsis when long, whole in the tooltip) and its buttons. */
  listRow(className: string, text: string, buttons: HTMLElement[]): HTMLElement {
    const row = this.doc.createElement("div");
    row.className = `list-row ${className}`;
    const label = this.doc.createElement("sp-detail");
    label.className = "list-text";
    label.textContent = text;
    label.title = text;
    row.appendChild(label);
    for (const button of buttons) row.appendChild(button);
    return row;
  }

  /** A small quiet button (the strip's and the lists'). */
  button(label: string, className: string, onClick: () => void): HTMLElement {
    const button = this.doc.createElement("sp-button");
    button.setAttribute("variant", "secondary");
    button.setAttribute("quiet", "");
    button.setAttribute("size", "s");
    button.className = className;
    button.textContent = label;
    button.addEventListener("click", () => onClick());
    return button;
  }

  select(id: string, index: number): void {
    if (index < 0) return;
    const items = Array.from(this.el(id).querySelectorAll("sp-menu-item"));
    items.forEach((item, i) => (i === index ? item.setAttribute("selected", "") : item.removeAttribute("selected")));
    this.el(id).selectedIndex = index;
  }

  fillMenu(menuId: string, items: Array<{ value: string; label: string }>, selected: number): void {
    const menu = this.el(menuId);
    menu.textContent = "";
    items.forEach((item, i) => {
      const element = this.doc.createElement("sp-menu-item");
      element.setAttribute("value", item.value);
      if (i === selected) element.setAttribute("selected", "");
      element.textContent = item.label;
      menu.appendChild(element);
    });
  }

  show(element: HTMLElement, visible: boolean): void {
    element.style.display = visible ? "" : "none";
  }
}
