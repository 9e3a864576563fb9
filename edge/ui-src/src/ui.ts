// Building blocks the screens share: error boxes, status badges, the
// pager, field errors and the live announcer.
import { ApiError, explain, request } from "./api";
import { Child, h, link, replace } from "./dom";

// announce speaks a short message through the page's polite live region.
export function announce(msg: string): void {
  const el = document.getElementById("announce");
  if (el) el.textContent = msg;
}

// errorBox shows what went wrong and what to do next. For a 429 it counts
// the wait down and, if given, keeps `retry` disabled until it is over.
export function errorBox(e: unknown, what: string, retry?: HTMLButtonElement): HTMLElement {
  const x = explain(e, what);
  const next = h("p", { class: "next" }, x.next);
  const box = h("div", { class: "alert", role: "alert" }, h("strong", null, x.title), h("p", null, x.text), next);
  if (e instanceof ApiError && e.status === 429) {
    let left = e.retryAfter || 60;
    box.classList.add("wait");
    const wait = h("p", { class: "countdown", "data-wait": left }, `You can retry in ${left} s.`);
    box.appendChild(wait);
    if (retry) retry.disabled = true;
    const t = setInterval(() => {
      left--;
      wait.setAttribute("data-wait", String(left));
      wait.textContent = left > 0 ? `You can retry in ${left} s.` : "You can retry now.";
      if (left <= 0) {
        clearInterval(t);
        if (retry) retry.disabled = false;
      }
    }, 1000);
  }
  return box;
}

const STATUS_TONE: Record<string, string> = {
  queued: "neutral", uploading: "info", submitted: "info", running: "info", collecting: "info",
  succeeded: "ok", failed: "bad", cancelled: "neutral",
};

export function badge(status: string): HTMLElement {
  return h("span", { class: `badge ${STATUS_TONE[status] || "neutral"}`, "data-status": status }, status);
}

export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export interface Page<T> {
  data: T[];
  next_cursor?: string;
}

// pager keeps the cursors seen so far, so "Previous" works with a
// forward-only cursor API.
export class Pager {
  private stack: string[] = [""];
  get cursor(): string {
    return this.stack[this.stack.length - 1];
  }
  reset(): void {
    this.stack = [""];
  }
  controls(next: string | undefined, load: () => void): HTMLElement {
    const page = this.stack.length;
    return h("nav", { class: "pager", "aria-label": "Pages" },
      h("button", { type: "button", class: "secondary", disabled: page === 1, onclick: () => { this.stack.pop(); load(); } }, "← Previous"),
      h("span", null, `Page ${page}`),
      h("button", { type: "button", class: "secondary", disabled: !next, onclick: () => { if (next) { this.stack.push(next); load(); } } }, "Next →"));
  }
}

// field builds a labelled control with a hint and a slot for the server's
// message about it (linked with aria-describedby).
export function field(id: string, label: string, control: HTMLElement, hint?: string): HTMLElement {
  control.id = id;
  const hintID = `${id}-hint`;
  const errID = `${id}-error`;
  control.setAttribute("aria-describedby", hint ? `${hintID} ${errID}` : errID);
  return h("div", { class: "field", "data-field": id },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { id: hintID, class: "hint" }, hint) : null,
    h("p", { id: errID, class: "field-error", "aria-live": "polite" }));
}

export function setFieldError(form: HTMLElement, id: string, msg: string): boolean {
  const box = form.querySelector<HTMLElement>(`[data-field="${id}"]`);
  if (!box) return false;
  box.classList.toggle("invalid", !!msg);
  const ctl = box.querySelector("input, select, textarea");
  if (msg) ctl?.setAttribute("aria-invalid", "true");
  else ctl?.removeAttribute("aria-invalid");
  replace(box.querySelector(".field-error")!, msg);
  return true;
}

export function clearFieldErrors(form: HTMLElement): void {
  form.querySelectorAll<HTMLElement>("[data-field]").forEach((b) => setFieldError(form, b.dataset.field!, ""));
}

export function loading(label = "Loading…"): HTMLElement {
  return h("p", { class: "loading", role: "status" }, label);
}

export function dl(rows: [string, unknown][]): HTMLElement {
  return h("dl", { class: "props" }, rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v instanceof Node ? v : String(v ?? "—"))]));
}

// Column is one table column: its header and how a row renders its cell.
export type Column<T> = [string, (x: T) => Child, boolean?]; // [header, cell, numeric]

// pagedList loads one page of a list endpoint into body as a table, with
// the pager under it; it returns the function that (re)loads it.
export function pagedList<T>(body: HTMLElement, pager: Pager, path: string, query: () => Record<string, string>, what: string, empty: () => string, cols: Column<T>[]): () => Promise<void> {
  const load = async () => {
    replace(body, loading());
    const q = new URLSearchParams({ limit: "20", ...query() });
    if (pager.cursor) q.set("cursor", pager.cursor);
    try {
      const page = await request<Page<T>>("GET", `${path}?${q}`);
      replace(body, page.data.length === 0 ? h("p", { class: "empty" }, empty()) : table(cols, page.data), pager.controls(page.next_cursor, load));
    } catch (e) {
      replace(body, errorBox(e, what));
    }
  };
  return load;
}

export function table<T>(cols: Column<T>[], rows: T[]): HTMLElement {
  return h("div", { class: "table-wrap" }, h("table", null,
    h("thead", null, h("tr", null, cols.map(([c]) => h("th", { scope: "col" }, c)))),
    h("tbody", null, rows.map((r) => h("tr", null, cols.map(([, cell, num]) => h("td", num ? { class: "num" } : null, cell(r))))))));
}

// loadItem fetches one resource for a detail page; on failure it shows the
// reason with a link back to the list and returns null.
export async function loadItem<T>(main: HTMLElement, path: string, title: string, back: string, backLabel: string): Promise<T | null> {
  try {
    return await request<T>("GET", path);
  } catch (e) {
    replace(main, h("h1", null, title), errorBox(e, title.toLowerCase()), h("p", null, link(back, backLabel)));
    return null;
  }
}
