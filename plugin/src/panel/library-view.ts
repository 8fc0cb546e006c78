/**
 * The prompt history (searchable) and the saved styles, as lists in the panel. Picking a prompt
 * puts it (and its negative prompt) back in the fields; a style puts back its prompts and settings.
 */
import { searchPrompts, type Library, type PromptEntry, type Style } from "../operations/library";
import type { PanelView } from "./view";

export interface LibraryActions {
  usePrompt(entry: PromptEntry): void;
  applyStyle(style: Style): void;
  /** The settings and prompts in the panel now, to save under a name. */
  currentStyle(name: string): Style;
  /** A sentence when saving fails. */
  showError(sentence: string): void;
}

export class LibraryView {
  constructor(
    private readonly view: PanelView,
    private readonly library: Library,
    private readonly actions: LibraryActions,
  ) {
    view.on("show-history", "click", () => {
      const history = view.el("history");
      view.show(history, history.style.display === "none");
      this.showHistory();
    });
    view.on("history-search", "input", () => this.showHistory());
    view.on("save-style", "click", () => this.saveStyle());
    this.showHistory();
    this.showStyles();
  }

  /** The history as the search field filters it, newest first. */
  showHistory(): void {
    const list = this.view.el("history-list");
    list.textContent = "";
    const query = String(this.view.el("history-search").value ?? "");
    const found = searchPrompts(this.library.prompts, query);
    for (const entry of found) {
      const text = entry.negativePrompt ? `${entry.prompt} — not: ${entry.negativePrompt}` : entry.prompt;
      list.appendChild(this.view.listRow("history-entry", text, [this.view.button("Use", "use-prompt", () => this.actions.usePrompt(entry))]));
    }
    if (found.length === 0) {
      const empty = this.view.doc.createElement("sp-detail");
      empty.className = "note";
      empty.textContent = this.library.prompts.length ? "No prompt in the history has those words." : "Prompts you generate with are kept here (the last 50).";
      list.appendChild(empty);
    }
  }

  showStyles(): void {
    const list = this.view.el("style-list");
    list.textContent = "";
    for (const style of this.library.styles) {
      const row = this.view.listRow("style", style.name, [
        this.view.button("Apply", "apply-style", () => this.actions.applyStyle(style)),
        this.view.button("Delete", "delete-style", () => this.deleteStyle(style.name)),
      ]);
      row.setAttribute("data-style", style.name);
      list.appendChild(row);
    }
  }

  /** After a generation: its prompts join the history. */
  async remember(prompt: string, negativePrompt: string): Promise<void> {
    await this.library.addPrompt(prompt, negativePrompt).catch((error: unknown) => this.actions.showError((error as Error).message));
    this.showHistory();
  }

  private saveStyle(): void {
    const field = this.view.el("style-name");
    const name = String(field.value ?? "").trim();
    if (!name) return this.actions.showError("Give the style a name first (in the field beside Save style).");
    field.value = "";
    void this.library.saveStyle(this.actions.currentStyle(name)).catch((error: unknown) => this.actions.showError((error as Error).message));
    this.showStyles();
  }

  private deleteStyle(name: string): void {
    void this.library.deleteStyle(name).catch((error: unknown) => this.actions.showError((error as Error).message));
    this.showStyles();
  }
}
