// Models: the list, and the detail with metrics, files, download links and
// the zip archive.
import { download, request } from "./api";
import { lineChart } from "./charts";
import { fmtBytes, fmtTime, h, link, replace, shortID } from "./dom";
import { announce, dl, errorBox, loadItem, loading, Page, pagedList, Pager, table } from "./ui";

export interface Model {
  id: string;
  job_id: string;
  base_model: string;
  files: { name: string; size_bytes: number; url?: string }[];
  metrics: Record<string, any>;
  size_bytes: number;
  created_at: string;
  urls_expire_at?: string;
}

// findModelOfJob walks the model list (newest first, so a just-finished
// job's model is on the first page) for the one the job produced.
export async function findModelOfJob(jobID: string): Promise<Model | null> {
  let cursor = "";
  for (let i = 0; i < 10; i++) {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    const page = await request<Page<Model>>("GET", `/api/v1/models?${q}`);
    const m = page.data.find((x) => x.job_id === jobID);
    if (m) return m;
    if (!page.next_cursor) return null;
    cursor = page.next_cursor;
  }
  return null;
}

// lossPoints reads the training loss per step from the Hugging Face
// trainer's log_history, which the notebook writes into metrics.json.
export function lossPoints(metrics: Record<string, any> | undefined): [number, number][] {
  const hist = metrics?.log_history;
  if (!Array.isArray(hist)) return [];
  return hist.filter((e) => e && typeof e.loss === "number" && typeof e.step === "number").map((e) => [e.step, e.loss] as [number, number]);
}

export function modelsPage(main: HTMLElement): () => void {
  const body = h("div", { class: "list-body" });
  const pager = new Pager();
  replace(main, h("h1", null, "Models"), body);
  const load = pagedList<Model>(body, pager, "/api/v1/models", () => ({}), "list of models", () => "No models yet: a job that succeeds produces one.", [
    ["Model", (m) => link(`/models/${m.id}`, h("code", null, shortID(m.id)))],
    ["Base model", (m) => m.base_model],
    ["Train loss", (m) => (typeof m.metrics?.train_loss === "number" ? m.metrics.train_loss.toFixed(4) : "—"), true],
    ["Size", (m) => fmtBytes(m.size_bytes), true],
    ["Created", (m) => fmtTime(m.created_at)],
  ]);
  void load();
  return () => {};
}

export function modelPage(main: HTMLElement, id: string): () => void {
  replace(main, loading());
  void (async () => {
    const m = await loadItem<Model>(main, `/api/v1/models/${encodeURIComponent(id)}`, "Model", "/models", "← All models");
    if (!m) return;
    const state = h("p", { id: "archive-status", "aria-live": "polite" });
    const zip = h("button", { type: "button", id: "download-archive" }, "Download all files (zip)");
    zip.addEventListener("click", async () => {
      zip.disabled = true;
      state.textContent = "Preparing the archive…";
      try {
        const n = await download(`/api/v1/models/${m.id}/archive`, `model-${shortID(m.id)}.zip`, (loaded) => {
          state.textContent = `Downloading… ${fmtBytes(loaded)}`;
        });
        state.textContent = `Downloaded ${fmtBytes(n)}.`;
        state.dataset.bytes = String(n);
        announce("Archive downloaded");
      } catch (e) {
        replace(state, errorBox(e, "download", zip));
      } finally {
        zip.disabled = false;
      }
    });
    const pts = lossPoints(m.metrics);
    const scalars = Object.entries(m.metrics || {}).filter(([, v]) => typeof v !== "object");
    replace(main,
      h("p", null, link("/models", "← All models")),
      h("h1", null, "Model ", h("code", null, shortID(m.id))),
      dl([["Base model", m.base_model], ["Trained by job", link(`/jobs/${m.job_id}`, shortID(m.job_id))], ["Size", fmtBytes(m.size_bytes)], ["Created", fmtTime(m.created_at)]]),
      h("h2", null, "Files"),
      h("p", { class: "hint" }, m.urls_expire_at ? `Download links expire ${fmtTime(m.urls_expire_at)}; reload the page for fresh ones. Treat them as secrets until then.` : ""),
      table<Model["files"][number]>([
        ["File", (f) => (f.url ? h("a", { href: f.url, download: f.name.split("/").pop(), rel: "noreferrer" }, f.name) : f.name)],
        ["Size", (f) => fmtBytes(f.size_bytes), true],
      ], m.files),
      h("div", { class: "actions" }, zip), state,
      h("h2", null, "Metrics"),
      pts.length > 1 ? lineChart("Training loss", pts, "step", "loss") : null,
      scalars.length ? dl(scalars.map(([k, v]) => [k, v])) : h("p", null, "No metrics were recorded."));
  })();
  return () => {};
}
