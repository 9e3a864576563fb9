// System: the edge's /health report (overall status, the fewest days left
// on a certificate, and each check where the edge reports them) for an
// operator's glance. It needs no token.
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
      let rep: { status: string; certificate_days_left?: number; checks?: Record<string, Check[]> };
      try {
        rep = JSON.parse(text);
      } catch {
        throw toError(res.status, (n) => res.headers.get(n), text);
      }
      if (!rep.status) throw toError(res.status, (n) => res.headers.get(n), text);
      const words: Record<string, string> = { pass: "Everything works.", warn: "Working, with warnings.", fail: "Something is down." };
      replace(body,
        h("p", { class: `overall ${rep.status}`, role: "status" }, h("span", { class: `badge ${tone(rep.status)}` }, rep.status), " ", words[rep.status] || ""),
        typeof rep.certificate_days_left === "number"
          ? h("p", { id: "cert-days", "data-days": rep.certificate_days_left }, "TLS certificates: ", h("strong", null, daysLeft(rep.certificate_days_left)), " on the one that expires first. The edge renews them by itself; a falling number means renewal is failing.")
          : null,
        rep.checks && Object.keys(rep.checks).length
          ? table<[string, Check]>([
            ["Component", ([k, c]) => `${NAMES[k] || k}${c.componentId ? ` · ${c.componentId}` : ""}`],
            ["Status", ([, c]) => h("span", { class: `badge ${tone(c.status)}` }, c.status)],
            ["Observed", ([k, c]) => observed(k, c)],
            ["Details", ([, c]) => c.output || ""],
          ], Object.entries(rep.checks).flatMap(([k, list]) => list.map((c): [string, Check] => [k, c])))
          : h("p", { class: "hint" }, "The public address names no certificate and counts no instance. Operators see each check (app readiness, each certificate's days left) at /health on the edge's internal metrics listener."));
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
  if (c.observedUnit === "days") return c.time ? daysLeft(c.observedValue) : "not obtained yet";
  if (key === "edge:uptime") return `up ${Math.floor(c.observedValue / 60)} min`;
  if (c.observedUnit === "ready_instances") return `${c.observedValue} ready`;
  return `${c.observedValue} ${c.observedUnit || ""}`.trim();
}

// daysLeft words the edge's days (to a tenth, rounded down): hours too
// when under two days, as for make run's 12-hour local certificates.
function daysLeft(d: number): string {
  if (d <= 0) return "under 3 hours left, or expired";
  const days = `${d.toFixed(1)} days left`;
  return d < 2 ? `${days} (about ${Math.round(d * 24)} hours)` : days;
}

function tone(s: string): string {
  return s === "pass" ? "ok" : s === "warn" ? "warn" : "bad";
}
