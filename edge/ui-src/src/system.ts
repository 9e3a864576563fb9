// System: the edge's /health report (edge, app readiness, certificates'
// days left) for an operator's glance. It needs no token.
import { toError } from "./api";
import { h, replace } from "./dom";
import { errorBox, loading, table } from "./ui";

interface Check {
  componentId?: string;
  status: string;
  observedValue?: number;
  observedUnit?: string;
  time?: string;
  output?: string;
}

const NAMES: Record<string, string> = {
  "app:readiness": "App (API server)",
  "certificate:expiry": "TLS certificate",
  "edge:uptime": "Edge uptime",
};

export function systemPage(main: HTMLElement): () => void {
  const body = h("div", { id: "health" }, loading("Checking the stack…"));
  const refresh = h("button", { type: "button", class: "secondary" }, "Check again");
  replace(main, h("div", { class: "title-row" }, h("h1", null, "System status"), refresh), body);
  async function load() {
    replace(body, loading("Checking the stack…"));
    try {
      const res = await fetch("/health", { headers: { Accept: "application/health+json" }, cache: "no-store" });
      const text = await res.text();
      let rep: { status: string; checks?: Record<string, Check[]> };
      try {
        rep = JSON.parse(text);
      } catch {
        throw toError(res.status, (n) => res.headers.get(n), text);
      }
      if (!rep.status) throw toError(res.status, (n) => res.headers.get(n), text);
      const words: Record<string, string> = { pass: "Everything works.", warn: "Working, with warnings.", fail: "Something is down." };
      replace(body,
        h("p", { class: `overall ${rep.status}`, role: "status" }, h("span", { class: `badge ${tone(rep.status)}` }, rep.status), " ", words[rep.status] || ""),
        rep.checks && Object.keys(rep.checks).length
          ? table<[string, Check]>([
            ["Component", ([k, c]) => `${NAMES[k] || k}${c.componentId ? ` · ${c.componentId}` : ""}`],
            ["Status", ([, c]) => h("span", { class: `badge ${tone(c.status)}` }, c.status)],
            ["Observed", ([k, c]) => observed(k, c)],
            ["Details", ([, c]) => c.output || ""],
          ], Object.entries(rep.checks).flatMap(([k, list]) => list.map((c): [string, Check] => [k, c])))
          : h("p", { class: "hint" }, "The public address reports the overall status only. Operators see each check (app readiness, certificates' days left) at /health on the edge's internal metrics listener."));
    } catch (e) {
      replace(body, errorBox(e, "health check"));
    }
  }
  refresh.addEventListener("click", () => void load());
  void load();
  return () => {};
}

function observed(key: string, c: Check): string {
  if (c.observedValue === undefined) return "";
  if (c.observedUnit === "days") return `${Math.floor(c.observedValue)} days left`;
  if (key === "edge:uptime") return `up ${Math.floor(c.observedValue / 60)} min`;
  if (c.observedUnit === "ready_instances") return `${c.observedValue} ready`;
  return `${c.observedValue} ${c.observedUnit || ""}`.trim();
}

function tone(s: string): string {
  return s === "pass" ? "ok" : s === "warn" ? "warn" : "bad";
}
