// A few DOM helpers instead of a view library: every screen builds real
// elements with h() and replaces its region's children when data changes.
// No innerHTML anywhere, so server text can never become markup.

export type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function s(tag: string, attrs?: Attrs | null, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el: Element, attrs?: Attrs | null): void {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(iso?: string): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function shortID(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}

// link is an in-app link: main.ts turns clicks on [data-nav] into history
// navigation instead of a page load.
export function link(href: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href, "data-nav": true }, ...children);
}

let ids = 0;
export function uid(prefix: string): string {
  ids++;
  return `${prefix}-${ids}`;
}

// confirmDialog asks a yes/no question in a modal <dialog> (keyboard and
// screen-reader friendly, unlike window.confirm in some embedders).
export function confirmDialog(title: string, body: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const titleID = uid("dlg");
    const dlg = h("dialog", { "aria-labelledby": titleID, class: "dialog" },
      h("h2", { id: titleID }, title),
      h("p", null, body),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", value: "no", onclick: () => dlg.close("no") }, "Keep it"),
        h("button", { type: "button", class: "danger", value: "yes", onclick: () => dlg.close("yes") }, confirmLabel)));
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(dlg.returnValue === "yes");
    });
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}
