/**
 * The Models section: the registry's models with their size, license and use, each with Pull,
 * its progress, Cancel and Resume; a field to pull any owner/name ONNX repo; the installed models
 * with what each can do. Rows are updated in place while a pull reports, so buttons stay put.
 */
import type { ModelInfo } from "../../../protocol";
import { abilities, type SetupAction, type SetupRow } from "./model-setup";
import type { PanelView } from "./view";

interface RowElements {
  root: HTMLElement;
  state: HTMLElement;
  action: HTMLElement & { disabled: boolean };
  facts: HTMLElement;
  description: HTMLElement;
  progress: HTMLElement & { value: number };
  download: HTMLElement;
  problem: HTMLElement;
}

const ACTION_LABELS: Record<SetupAction, string> = { pull: "Pull", cancel: "Cancel", resume: "Resume" };

export class ModelSetupView {
  private readonly rows = new Map<string, RowElements>();
  private order: string[] = [];

  constructor(
    private readonly view: PanelView,
    private readonly onAction: (id: string, action: SetupAction) => void,
  ) {
    view.on("toggle-models", "click", () => this.open(!this.isOpen));
    view.on("pull-repo-button", "click", () => {
      const field = view.el("pull-repo");
      const repo = String(field.value ?? "").trim();
      if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
        view.el("pull-repo-message").textContent = "Type a Hugging Face repo as owner/name (an ONNX export in the diffusers layout).";
        return;
      }
      view.el("pull-repo-message").textContent = "";
      field.value = "";
      onAction(repo, "pull");
    });
  }

  get isOpen(): boolean {
    return this.view.el("model-setup").style.display !== "none";
  }

  open(show: boolean): void {
    this.view.show(this.view.el("model-setup"), show);
    this.view.el("toggle-models").textContent = show ? "Hide models" : "Models…";
  }

  /** `connected`: buttons work only while the daemon is there to answer. */
  showRows(rows: readonly SetupRow[], connected: boolean): void {
    const list = this.view.el("registry-models");
    const ids = rows.map((r) => r.id);
    if (ids.join("\n") !== this.order.join("\n")) {
      list.textContent = "";
      for (const id of [...this.rows.keys()]) if (!ids.includes(id)) this.rows.delete(id);
      for (const row of rows) list.appendChild((this.rows.get(row.id) ?? this.makeRow(row.id)).root);
      this.order = ids;
    }
    for (const row of rows) this.update(this.rows.get(row.id)!, row, connected);
    const empty = this.view.el("registry-empty");
    this.view.show(empty, rows.length === 0);
  }

  showInstalled(models: readonly ModelInfo[]): void {
    const list = this.view.el("installed-models");
    list.textContent = "";
    for (const model of models) {
      const can = abilities(model.modes);
      const row = this.view.listRow("installed-model", `${model.name} · ${can || "nothing this panel offers"}${model.turbo ? " · few steps" : ""}`, []);
      row.setAttribute("data-model-id", model.id);
      list.appendChild(row);
    }
    if (models.length === 0) {
      const none = this.view.doc.createElement("sp-detail");
      none.className = "note";
      none.textContent = "None yet: pull one above (SD-Turbo is the quickest to try).";
      list.appendChild(none);
    }
  }

  private makeRow(id: string): RowElements {
    const doc = this.view.doc;
    const detail = (className: string) => {
      const element = doc.createElement("sp-detail");
      element.className = className;
      return element;
    };
    const root = doc.createElement("div");
    root.className = "setup-model";
    root.setAttribute("data-model-id", id);
    const head = doc.createElement("div");
    head.className = "row";
    const name = doc.createElement("sp-body");
    name.className = "setup-name grow";
    name.setAttribute("size", "S");
    const state = detail("setup-state");
    const elements: RowElements = {
      root,
      state,
      action: this.view.button("Pull", "setup-action", () => {
        const action = root.getAttribute("data-action") as SetupAction | null;
        if (action) this.onAction(id, action);
      }) as RowElements["action"],
      facts: detail("setup-facts"),
      description: detail("setup-description"),
      progress: doc.createElement("sp-progressbar") as RowElements["progress"],
      download: detail("setup-download"),
      problem: detail("setup-problem"),
    };
    elements.progress.className = "setup-progress";
    elements.progress.setAttribute("max", "100");
    head.appendChild(name);
    head.appendChild(state);
    head.appendChild(elements.action);
    for (const part of [head, elements.facts, elements.description, elements.progress, elements.download, elements.problem]) root.appendChild(part);
    this.rows.set(id, elements);
    return elements;
  }

  private update(elements: RowElements, row: SetupRow, connected: boolean): void {
    const { root, state, action, facts, description, progress, download, problem } = elements;
    (root.querySelector(".setup-name") as HTMLElement).textContent = row.name;
    state.textContent = row.installed ? "Installed" : "";
    this.view.show(state, row.installed);
    setText(this.view, facts, row.facts);
    setText(this.view, description, row.description);
    if (row.action) {
      root.setAttribute("data-action", row.action);
      action.textContent = ACTION_LABELS[row.action];
    } else {
      root.removeAttribute("data-action");
    }
    action.disabled = !connected;
    this.view.show(action, row.action !== undefined);
    const fraction = row.download?.fraction;
    if (fraction !== undefined) progress.value = Math.round(fraction * 100);
    this.view.show(progress, fraction !== undefined && row.download !== undefined);
    setText(this.view, download, row.download?.text);
    setText(this.view, problem, row.download?.problem);
  }
}

function setText(view: PanelView, element: HTMLElement, text: string | undefined): void {
  element.textContent = text ?? "";
  view.show(element, Boolean(text));
}
