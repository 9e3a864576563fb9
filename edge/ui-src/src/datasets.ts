// Datasets: upload with progress, the validation report, the list with
// search and pages, the detail page with preview and delete.
import { ApiError, request, upload } from "./api";
import { barChart, histogram } from "./charts";
import { confirmDialog, fmtBytes, fmtTime, h, link, replace } from "./dom";
import { announce, dl, errorBox, field, loadItem, loading, pagedList, Pager } from "./ui";

export interface Dataset {
  id: string;
  name: string;
  description: string;
  size_bytes: number;
  sha256: string;
  format: string;
  schema: string;
  examples: number;
  created_at: string;
  report?: Report;
}

interface Issue {
  code: string;
  line?: number;
  record?: number;
  message: string;
}

interface Report {
  valid: boolean;
  errors?: Issue[];
  warnings?: Issue[];
  stats?: {
    records: number;
    examples: number;
    avg_length: number;
    max_length: number;
    label_distribution?: Record<string, number>;
    length_histogram?: { up_to?: number; count: number }[];
    duplicate_ratio: number;
    bytes: number;
  };
  preview?: unknown[];
}

export function datasetsPage(main: HTMLElement): () => void {
  const result = h("div", { id: "upload-result" });
  const list = h("div", { id: "dataset-list" });
  replace(main, h("h1", null, "Datasets"), uploadCard(result, () => loadList()), result, h("h2", null, "Your datasets"), list);
  const pager = new Pager();
  const search = h("input", { type: "search", name: "q", autocomplete: "off", placeholder: "part of a name" });
  let timer = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => {
      pager.reset();
      loadList();
    }, 300);
  });
  const body = h("div", { class: "list-body" });
  replace(list, h("div", { class: "toolbar" }, field("dataset-search", "Search by name", search)), body);
  const loadList = pagedList<Dataset>(body, pager, "/api/v1/datasets", (): Record<string, string> => (search.value.trim() ? { name: search.value.trim() } : {}), "list of datasets",
    () => (search.value ? "No dataset matches this name." : "No datasets yet: upload one above."), [
      ["Name", (d) => link(`/datasets/${d.id}`, d.name)],
      ["Schema", (d) => d.schema],
      ["Examples", (d) => d.examples, true],
      ["Size", (d) => fmtBytes(d.size_bytes), true],
      ["Uploaded", (d) => fmtTime(d.created_at)],
    ]);
  void loadList();
  return () => clearTimeout(timer);
}

function uploadCard(result: HTMLElement, uploaded: () => void): HTMLElement {
  const name = h("input", { type: "text", name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const desc = h("input", { type: "text", name: "description", maxlength: 2000, autocomplete: "off" });
  const file = h("input", { type: "file", name: "file", required: true, accept: ".jsonl,.json,.ndjson,application/json" });
  const bar = h("progress", { id: "upload-progress", max: 100, value: 0, "aria-label": "Upload progress" });
  const status = h("p", { id: "upload-status", class: "progress-text", "aria-live": "polite" }, "No upload yet.");
  const submit = h("button", { type: "submit" }, "Upload");
  const cancel = h("button", { type: "button", class: "secondary", disabled: true }, "Cancel upload");
  file.addEventListener("change", () => {
    const f = file.files?.[0];
    if (f && !name.value) name.value = f.name.replace(/\.(jsonl|json|ndjson)$/i, "");
  });
  const form = h("form", { class: "card", "aria-labelledby": "upload-title", novalidate: true },
    h("h2", { id: "upload-title" }, "Upload a dataset"),
    h("p", { class: "hint" }, "JSON Lines or a JSON array in the chat, instruction or text-label schema, at least 10 examples."),
    field("upload-file", "File", file),
    field("upload-name", "Name", name),
    field("upload-description", "Description (optional)", desc),
    h("div", { class: "progress" }, bar, status),
    h("div", { class: "actions" }, submit, cancel));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = file.files?.[0];
    if (!f) {
      replace(result, errorBox(new ApiError(400, "", "choose a file to upload"), "upload"));
      file.focus();
      return;
    }
    if (!name.value.trim()) name.value = f.name;
    const fd = new FormData();
    fd.append("name", name.value.trim());
    if (desc.value.trim()) fd.append("description", desc.value.trim());
    fd.append("file", f);
    const started = performance.now();
    let lastAnnounce = 0;
    submit.disabled = true;
    cancel.disabled = false;
    bar.value = 0;
    replace(result);
    const up = upload("/api/v1/datasets", fd, (loaded, total) => {
      total = total || f.size;
      const pct = total ? Math.min(100, Math.round((loaded * 100) / total)) : 0;
      const secs = (performance.now() - started) / 1000;
      const speed = secs > 0 ? loaded / secs : 0;
      bar.value = pct;
      status.setAttribute("aria-live", "off");
      status.textContent = `${fmtBytes(loaded)} of ${fmtBytes(total)} (${pct} %) · ${fmtBytes(Math.round(speed))}/s`;
      status.dataset.percent = String(pct);
      if (performance.now() - lastAnnounce > 3000 || pct === 100) {
        lastAnnounce = performance.now();
        announce(`Upload ${pct} percent`);
      }
    });
    cancel.onclick = () => up.abort();
    up.done.then((ds) => {
      const d = ds as Dataset;
      bar.value = 100;
      status.textContent = `${fmtBytes(f.size)} of ${fmtBytes(f.size)} (100 %) · validated`;
      status.dataset.percent = "100";
      announce(`Upload complete: ${d.name} is valid`);
      replace(result, h("section", { class: "card ok", "aria-labelledby": "result-title" },
        h("h2", { id: "result-title" }, "Uploaded: ", link(`/datasets/${d.id}`, d.name)),
        reportView(d.report),
        h("p", null, link(`/jobs/new?dataset=${d.id}`, "Train a model on it →"))));
      form.reset();
      uploaded();
    }, (e: unknown) => {
      status.textContent = e instanceof ApiError && e.status === 0 && e.code === "aborted" ? "Upload cancelled." : "Upload failed.";
      if (e instanceof ApiError && e.status === 422 && e.details.some((d) => d.line || d.record)) {
        replace(result, rejectedView(e));
      } else {
        replace(result, errorBox(e, "upload", submit));
      }
    }).finally(() => {
      if (!(submit.disabled && result.querySelector(".wait"))) submit.disabled = false;
      cancel.disabled = true;
      cancel.onclick = null;
    });
  });
  return form;
}

function where(d: { line?: number; record?: number }): string {
  if (d.line) return `Line ${d.line}`;
  if (d.record) return `Record ${d.record}`;
  return "File";
}

function rejectedView(e: ApiError): HTMLElement {
  const count = e.errorCount || e.details.length;
  return h("section", { class: "alert", role: "alert", "aria-labelledby": "rejected-title" },
    h("h2", { id: "rejected-title" }, "The file was rejected"),
    h("p", null, `${count} problem${count === 1 ? "" : "s"} found${count > e.details.length ? `; the first ${e.details.length} are listed` : ""}. Nothing was stored.`),
    h("ol", { class: "issues", id: "upload-errors" }, e.details.map((d) => h("li", null,
      h("strong", { class: "where" }, where(d)), " ", h("code", null, d.field || ""), " — ", d.issue))),
    h("p", { class: "next" }, "Fix these lines in the file and upload it again (docs/datasets.md describes the schemas)."));
}

export function reportView(r?: Report): HTMLElement {
  if (!r || !r.stats) return h("p", null, "No validation report.");
  const st = r.stats;
  const charts: HTMLElement[] = [];
  if (st.label_distribution && Object.keys(st.label_distribution).length) {
    const entries = Object.entries(st.label_distribution).sort((a, b) => b[1] - a[1]).slice(0, 12);
    charts.push(barChart("Examples per label", entries));
  }
  if (st.length_histogram && st.length_histogram.length) {
    const hist = st.length_histogram;
    charts.push(histogram("Examples by length (characters)", hist.map((b, i) => [b.up_to ? `≤${b.up_to}` : `>${hist[i - 1]?.up_to ?? 8192}`, b.count])));
  }
  return h("div", { class: "report" },
    dl([["Examples", st.examples], ["Records", st.records], ["Average length", `${st.avg_length.toFixed(0)} chars`],
      ["Longest", `${st.max_length} chars`], ["Duplicates", `${(st.duplicate_ratio * 100).toFixed(1)} %`], ["File size", fmtBytes(st.bytes)]]),
    charts.length ? h("div", { class: "charts" }, charts) : null,
    r.warnings && r.warnings.length
      ? h("div", { class: "warnings" }, h("h3", null, "Warnings"), h("ul", null, r.warnings.map((w) => h("li", null, w.line ? `${where(w)}: ` : "", w.message))))
      : h("p", { class: "muted" }, "No warnings."));
}

export function datasetPage(main: HTMLElement, id: string): () => void {
  replace(main, loading());
  void (async () => {
    const d = await loadItem<Dataset>(main, `/api/v1/datasets/${encodeURIComponent(id)}`, "Dataset", "/datasets", "← All datasets");
    if (!d) return;
    const msg = h("div", { "aria-live": "polite" });
    const del = h("button", { type: "button", class: "danger" }, "Delete dataset");
    del.addEventListener("click", async () => {
      if (!(await confirmDialog(`Delete “${d.name}”?`, "The file and its report are removed for good. Models trained on it are kept.", "Delete"))) return;
      try {
        await request("DELETE", `/api/v1/datasets/${d.id}`);
        announce(`Deleted ${d.name}`);
        history.pushState(null, "", "/datasets");
        window.dispatchEvent(new PopStateEvent("popstate"));
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) {
          replace(msg, h("div", { class: "alert", role: "alert" }, h("strong", null, "This dataset is in use"),
            h("p", null, "A job that has not finished yet is training on it, so it cannot be deleted now."),
            h("p", { class: "next" }, "Wait for the job to finish or cancel it on the ", link("/jobs", "Jobs"), " page, then delete again.")));
        } else {
          replace(msg, errorBox(e, "deletion", del));
        }
      }
    });
    const preview = d.report?.preview || [];
    replace(main,
      h("p", null, link("/datasets", "← All datasets")),
      h("h1", null, d.name),
      d.description ? h("p", null, d.description) : null,
      dl([["Schema", d.schema], ["Format", d.format], ["Examples", d.examples], ["Size", fmtBytes(d.size_bytes)],
        ["Uploaded", fmtTime(d.created_at)], ["SHA-256", h("code", { class: "wrap" }, d.sha256)]]),
      h("div", { class: "actions" }, link(`/jobs/new?dataset=${d.id}`, "Train a model on it"), del),
      msg,
      h("h2", null, "Validation report"),
      reportView(d.report),
      h("h2", null, `Preview (${preview.length} record${preview.length === 1 ? "" : "s"})`),
      h("ol", { class: "preview" }, preview.map((p) => h("li", null, h("pre", { tabindex: 0 }, JSON.stringify(p, null, 2))))));
  })();
  return () => {};
}
