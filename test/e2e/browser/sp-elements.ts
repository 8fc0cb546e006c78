/// <reference lib="dom" />
/**
 * Test-only stand-ins for Photoshop's built-in Spectrum widgets (sp-textfield, sp-slider,
 * sp-dropdown + sp-menu, sp-checkbox, sp-button, sp-progressbar, sp-body…), so the panel's
 * HTML and bundle run in a browser. They offer the properties and events the panel uses in
 * UXP: value, checked, disabled, selectedIndex; input / change / click.
 */

const BASE_CSS = `:host { font: 12px sans-serif; color: #ddd; } :host([disabled]) { opacity: 0.5; pointer-events: none; }`;

function shadow(host: HTMLElement, html: string): ShadowRoot {
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `<style>${BASE_CSS}</style>${html}`;
  return root;
}

class SpText extends HTMLElement {
  constructor() {
    super();
    shadow(this, `<style>:host{display:block}</style><slot></slot>`);
  }
}

class SpTextfield extends HTMLElement {
  private input: HTMLInputElement;
  constructor() {
    super();
    const root = shadow(this, `<style>:host{display:inline-block} input{width:100%;box-sizing:border-box;background:#1e1e1e;color:#eee;border:1px solid #555;padding:3px}</style><slot name="label"></slot><input>`);
    this.input = root.querySelector("input")!;
    this.input.addEventListener("input", () => this.dispatchEvent(new Event("input", { bubbles: true })));
    this.input.addEventListener("change", () => this.dispatchEvent(new Event("change", { bubbles: true })));
  }
  static get observedAttributes() {
    return ["value", "type", "placeholder", "disabled"];
  }
  attributeChangedCallback(name: string, _old: string | null, value: string | null) {
    if (name === "value") this.input.value = value ?? "";
    else if (name === "disabled") this.input.disabled = value !== null;
    else if (value !== null) this.input.setAttribute(name, value);
  }
  get value(): string {
    // As in Photoshop on macOS: a password field's value cannot be read.
    return this.getAttribute("type") === "password" ? "" : this.input.value;
  }
  set value(v: string | number) {
    this.input.value = String(v);
  }
  get disabled(): boolean {
    return this.hasAttribute("disabled");
  }
  set disabled(v: boolean) {
    this.toggleAttribute("disabled", v);
  }
}

class SpSlider extends HTMLElement {
  private input: HTMLInputElement;
  private shown: HTMLElement;
  constructor() {
    super();
    const root = shadow(this, `<style>:host{display:block} input{width:100%}</style><slot name="label"></slot> <span id="v"></span><input type="range">`);
    this.input = root.querySelector("input")!;
    this.shown = root.querySelector("#v")!;
    this.input.addEventListener("input", () => {
      this.sync();
      this.dispatchEvent(new Event("input", { bubbles: true }));
    });
    this.input.addEventListener("change", () => this.dispatchEvent(new Event("change", { bubbles: true })));
  }
  static get observedAttributes() {
    return ["value", "min", "max", "step", "disabled"];
  }
  attributeChangedCallback(name: string, _old: string | null, value: string | null) {
    if (name === "disabled") this.input.disabled = value !== null;
    else if (value !== null) this.input.setAttribute(name, value);
    if (name === "value" && value !== null) this.input.value = value;
    this.sync();
  }
  get disabled(): boolean {
    return this.hasAttribute("disabled");
  }
  set disabled(v: boolean) {
    this.toggleAttribute("disabled", v);
  }
  get max(): number {
    return Number(this.input.max);
  }
  set max(v: number) {
    this.setAttribute("max", String(v));
  }
  private sync() {
    this.shown.textContent = this.input.value;
  }
  get value(): number {
    return Number(this.input.value);
  }
  set value(v: number | string) {
    this.input.value = String(v);
    this.sync();
  }
}

class SpDropdown extends HTMLElement {
  private select: HTMLSelectElement;
  private observer: MutationObserver;
  constructor() {
    super();
    const root = shadow(this, `<style>:host{display:inline-block} select{width:100%;background:#1e1e1e;color:#eee;border:1px solid #555;padding:2px}</style><select></select><slot hidden></slot>`);
    this.select = root.querySelector("select")!;
    this.select.addEventListener("change", () => this.dispatchEvent(new Event("change", { bubbles: true })));
    this.observer = new MutationObserver(() => this.rebuild());
  }
  connectedCallback() {
    this.observer.observe(this, { childList: true, subtree: true, attributes: true, characterData: true });
    this.rebuild();
  }
  private items(): Element[] {
    return Array.from(this.querySelectorAll("sp-menu-item"));
  }
  private rebuild() {
    const keep = this.select.selectedIndex;
    const items = this.items();
    this.select.textContent = "";
    let selected = -1;
    items.forEach((item, i) => {
      const option = document.createElement("option");
      option.value = item.getAttribute("value") ?? item.textContent ?? "";
      option.textContent = item.textContent;
      this.select.appendChild(option);
      if (item.hasAttribute("selected")) selected = i;
    });
    this.select.selectedIndex = selected >= 0 ? selected : Math.min(keep, items.length - 1);
  }
  get selectedIndex(): number {
    return this.select.selectedIndex;
  }
  set selectedIndex(i: number) {
    this.rebuild();
    this.select.selectedIndex = i;
  }
  get value(): string {
    return this.select.value;
  }
}

class SpCheckbox extends HTMLElement {
  private input: HTMLInputElement;
  constructor() {
    super();
    const root = shadow(this, `<style>:host{display:inline-flex;align-items:center}</style><label><input type="checkbox"><slot></slot></label>`);
    this.input = root.querySelector("input")!;
    this.input.addEventListener("change", () => this.dispatchEvent(new Event("change", { bubbles: true })));
  }
  static get observedAttributes() {
    return ["checked"];
  }
  attributeChangedCallback(_name: string, _old: string | null, value: string | null) {
    this.input.checked = value !== null;
  }
  get checked(): boolean {
    return this.input.checked;
  }
  set checked(v: boolean) {
    this.input.checked = v;
  }
}

class SpButton extends HTMLElement {
  constructor() {
    super();
    shadow(
      this,
      `<style>:host{display:inline-block;padding:4px 12px;border-radius:14px;background:#4b4b4b;cursor:pointer;user-select:none;text-align:center}:host([variant=cta]){background:#1473e6;color:#fff}:host([quiet]){background:transparent;border:1px solid #666}:host([size=s]){padding:1px 8px;font-size:11px}</style><slot></slot>`,
    );
    // A disabled widget swallows clicks, as Photoshop's does.
    this.addEventListener("click", (event) => {
      if (this.hasAttribute("disabled")) event.stopImmediatePropagation();
    }, true);
  }
  connectedCallback() {
    this.setAttribute("role", "button");
  }
  get disabled(): boolean {
    return this.hasAttribute("disabled");
  }
  set disabled(v: boolean) {
    this.toggleAttribute("disabled", v);
  }
}

class SpProgressbar extends HTMLElement {
  private bar: HTMLElement;
  constructor() {
    super();
    const root = shadow(this, `<style>:host{display:block} #track{height:4px;background:#555;border-radius:2px;margin-top:3px} #bar{height:4px;background:#378ef0;border-radius:2px;width:0}</style><slot name="label"></slot><div id="track"><div id="bar"></div></div>`);
    this.bar = root.querySelector("#bar")!;
  }
  static get observedAttributes() {
    return ["value", "max"];
  }
  attributeChangedCallback() {
    this.sync();
  }
  private sync() {
    const max = Number(this.getAttribute("max") ?? 100) || 100;
    this.bar.style.width = `${Math.min(100, (this.value / max) * 100)}%`;
  }
  get value(): number {
    return Number(this.getAttribute("value") ?? 0);
  }
  set value(v: number) {
    this.setAttribute("value", String(v));
  }
}

export function defineSpectrumWidgets(): void {
  const define = (name: string, element: CustomElementConstructor) => {
    if (!customElements.get(name)) customElements.define(name, element);
  };
  define("sp-textfield", SpTextfield);
  define("sp-slider", SpSlider);
  define("sp-dropdown", SpDropdown);
  define("sp-checkbox", SpCheckbox);
  define("sp-button", SpButton);
  define("sp-progressbar", SpProgressbar);
  for (const name of ["sp-body", "sp-heading", "sp-detail", "sp-label", "sp-divider", "sp-menu", "sp-menu-item"]) {
    define(name, class extends SpText {});
  }
}
