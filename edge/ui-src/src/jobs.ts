// Jobs: the creation form, the list with status filter, and the job page
// that follows the job live over its event stream.
import { ApiError, request, stream } from "./api";
import { lineChart } from "./charts";
import { confirmDialog, fmtTime, h, link, replace, shortID } from "./dom";
import type { Dataset } from "./datasets";
import { findModelOfJob, lossPoints, Model } from "./models";
import { announce, badge, clearFieldErrors, dl, errorBox, field, FINAL, loadItem, loading, Page, pagedList, Pager, setFieldError } from "./ui";
import type { Session } from "./main";

export interface Job {
  id: string;
  dataset_id: string;
  base_model: string;
  hyperparameters: Record<string, number>;
  status: string;
  error?: string;
  kaggle_dataset?: string;
  kaggle_kernel?: string;
  kaggle_status?: string;
  created_at: string;
  updated_at: string;
  started_at?: string;
  finished_at?: string;
}

interface JobEvent {
  seq: number;
  kind: string;
  from_status?: string;
  to_status?: string;
  message?: string;
  created_at: string;
}

const STATUSES = ["queued", "uploading", "submitted", "running", "collecting", "succeeded", "failed", "cancelled"];

interface Param {
  key: string;
  label: string;
  def: number;
  hint: string;
  min?: number;
  max?: number;
  step?: string;
  options?: number[];
}

// The API's allowed ranges and defaults (docs/api.md); the server checks
// them again and its 422 messages land next to the fields.
const PARAMS: Param[] = [
  { key: "lora_rank", label: "LoRA rank", def: 16, hint: "4, 8, 16, 32 or 64 · default 16", options: [4, 8, 16, 32, 64] },
  { key: "lora_alpha", label: "LoRA alpha", def: 32, hint: "1–256 · default 32", min: 1, max: 256, step: "1" },
  { key: "lora_dropout", label: "LoRA dropout", def: 0.05, hint: "0–0.5 · default 0.05", min: 0, max: 0.5, step: "0.01" },
  { key: "epochs", label: "Epochs", def: 3, hint: "1–10 · default 3", min: 1, max: 10, step: "1" },
  { key: "learning_rate", label: "Learning rate", def: 0.0002, hint: "above 0, at most 0.01 · default 0.0002", min: 0, max: 0.01, step: "any" },
  { key: "batch_size", label: "Batch size", def: 4, hint: "1–64 · default 4", min: 1, max: 64, step: "1" },
  { key: "max_seq_length", label: "Max sequence length", def: 1024, hint: "64–4096 tokens · default 1024", min: 64, max: 4096, step: "1" },
];

export function newJobPage(main: HTMLElement, session: Session, params: URLSearchParams): () => void {
  const dataset = h("select", { name: "dataset_id", required: true }, h("option", { value: "" }, "Loading datasets…"));
  const models = session.training.base_models;
  const base = models.length
    ? h("select", { name: "base_model", required: true }, models.map((m) => h("option", { value: m }, m)))
    : h("input", { type: "text", name: "base_model", required: true, placeholder: "owner/name" });
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();
  const hp = PARAMS.map((p) => {
    const ctl = p.options
      ? h("select", { name: p.key }, p.options.map((o) => h("option", { value: o, selected: o === p.def }, o)))
      : h("input", { type: "number", name: p.key, value: p.def, min: p.min, max: p.max, step: p.step, inputmode: "decimal" });
    inputs.set(p.key, ctl);
    return field(`job-${p.key}`, p.label, ctl, p.hint);
  });
  const submit = h("button", { type: "submit" }, "Start training");
  const msg = h("div", { id: "job-form-message" });
  const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "job-form-title" },
    h("h1", { id: "job-form-title" }, "New training job"),
    session.training.backend === "simulator" ? h("p", { class: "sim-note" }, "Training is simulated on this server: jobs run against a local Kaggle emulator and produce a sample adapter.") : null,
    field("job-dataset_id", "Dataset", dataset),
    field("job-base_model", "Base model", base, "From the server's allow-list"),
    h("fieldset", { class: "grid" }, h("legend", null, "Hyperparameters"), hp),
    msg,
    h("div", { class: "actions" }, submit, link("/jobs", "Cancel")));
  replace(main, form);
  void request<Page<Dataset>>("GET", "/api/v1/datasets?limit=100").then((page) => {
    const want = params.get("dataset") || "";
    replace(dataset,
      h("option", { value: "" }, page.data.length ? "Choose a dataset" : "No datasets: upload one first"),
      page.data.map((d) => h("option", { value: d.id, selected: d.id === want }, `${d.name} (${d.schema}, ${d.examples} examples)`)));
  }, (e) => replace(msg, errorBox(e, "list of datasets")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form);
    replace(msg);
    const hyper: Record<string, number | string> = {};
    for (const [k, ctl] of inputs) {
      if (ctl.value === "" && ctl instanceof HTMLInputElement && ctl.validity.badInput) {
        setFieldError(form, `job-${k}`, "not a number");
        return;
      }
      if (ctl.value !== "") hyper[k] = Number(ctl.value);
    }
    submit.disabled = true;
    try {
      const job = await request<Job>("POST", "/api/v1/jobs", { dataset_id: dataset.value, base_model: base.value.trim(), hyperparameters: hyper });
      announce("Job created");
      session.navigate(`/jobs/${job.id}`);
    } catch (e) {
      submit.disabled = false;
      if (e instanceof ApiError && (e.status === 422 || e.status === 400) && e.details.length) {
        let first: HTMLElement | null = null;
        const unplaced: string[] = [];
        for (const d of e.details) {
          const id = `job-${(d.field || "").replace(/^hyperparameters\./, "")}`;
          if (setFieldError(form, id, d.issue)) first ??= form.querySelector<HTMLElement>(`#${id}`);
          else unplaced.push(`${d.field}: ${d.issue}`);
        }
        replace(msg, h("div", { class: "alert", role: "alert" }, h("strong", null, "Some values need fixing"),
          h("p", null, `${e.details.length} field${e.details.length === 1 ? "" : "s"} were refused; the reasons are shown next to them.`), unplaced.length ? h("ul", null, unplaced.map((u) => h("li", null, u))) : null));
        first?.focus();
      } else {
        replace(msg, errorBox(e, "job creation", submit));
      }
    }
  });
  return () => {};
}

export function jobsPage(main: HTMLElement, params: URLSearchParams): () => void {
  const filter = h("select", { name: "status" }, h("option", { value: "" }, "All"), STATUSES.map((s) => h("option", { value: s, selected: s === params.get("status") }, s)));
  const body = h("div", { class: "list-body" });
  const pager = new Pager();
  replace(main, h("div", { class: "title-row" }, h("h1", null, "Jobs"), link("/jobs/new", "New job")),
    h("div", { class: "toolbar" }, field("job-filter", "Status", filter)), body);
  filter.addEventListener("change", () => {
    pager.reset();
    history.replaceState(null, "", filter.value ? `/jobs?status=${filter.value}` : "/jobs");
    void load();
  });
  const load = pagedList<Job>(body, pager, "/api/v1/jobs", (): Record<string, string> => (filter.value ? { status: filter.value } : {}), "list of jobs",
    () => (filter.value ? `No ${filter.value} jobs.` : "No jobs yet: start one with “New job”."), [
      ["Job", (j) => link(`/jobs/${j.id}`, h("code", null, shortID(j.id)))],
      ["Status", (j) => badge(j.status)],
      ["Base model", (j) => j.base_model],
      ["Created", (j) => fmtTime(j.created_at)],
      ["Finished", (j) => fmtTime(j.finished_at)],
    ]);
  void load();
  return () => {};
}

export function jobPage(main: HTMLElement, id: string): () => void {
  let closed = false;
  let live: { close: () => void } | null = null;
  replace(main, loading());
  void (async () => {
    const loaded = await loadItem<Job>(main, `/api/v1/jobs/${encodeURIComponent(id)}`, "Job", "/jobs", "← All jobs");
    if (!loaded || closed) return;
    let job = loaded;
    const statusBox = h("span", { id: "job-status", "aria-live": "polite" }, badge(job.status));
    const liveState = h("span", { id: "stream-state", class: "muted", role: "status" }, "Connecting…");
    const kaggle = h("dd", { id: "kaggle-status" }, job.kaggle_status || "—");
    const kernel = h("dd", null, job.kaggle_kernel || "—");
    const timeline = h("ol", { class: "timeline", id: "timeline" });
    const logs = h("pre", { class: "logs", id: "job-logs", role: "log", "aria-live": "off", tabindex: 0 });
    const outcome = h("div", { id: "job-outcome" });
    const cancelMsg = h("div");
    const cancel = h("button", { type: "button", class: "danger", disabled: FINAL.has(job.status) }, "Cancel job");
    cancel.addEventListener("click", async () => {
      if (!(await confirmDialog("Cancel this job?", "The app stops following it and keeps nothing it produces. A Kaggle session already running ends on its own.", "Cancel job"))) return;
      try {
        await request("POST", `/api/v1/jobs/${job.id}/cancel`);
        announce("Cancellation requested");
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) {
          replace(cancelMsg, h("div", { class: "alert", role: "alert" }, h("strong", null, "Already finished"), h("p", null, "The job finished before it could be cancelled; there is nothing left to stop.")));
        } else {
          replace(cancelMsg, errorBox(e, "cancellation", cancel));
        }
      }
    });
    const hp = Object.entries(job.hyperparameters || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    replace(main,
      h("p", null, link("/jobs", "← All jobs")),
      h("div", { class: "title-row" }, h("h1", null, "Job ", h("code", null, shortID(job.id))), statusBox),
      h("p", null, liveState),
      h("dl", { class: "props" },
        h("dt", null, "Base model"), h("dd", null, job.base_model),
        h("dt", null, "Dataset"), h("dd", null, job.dataset_id ? link(`/datasets/${job.dataset_id}`, shortID(job.dataset_id)) : "deleted"),
        h("dt", null, "Hyperparameters"), h("dd", null, hp || "defaults"),
        h("dt", null, "Kaggle kernel"), kernel,
        h("dt", null, "Kaggle status"), kaggle,
        h("dt", null, "Created"), h("dd", null, fmtTime(job.created_at))),
      h("div", { class: "actions" }, cancel), cancelMsg,
      outcome,
      h("div", { class: "columns" },
        h("section", { "aria-labelledby": "tl-title" }, h("h2", { id: "tl-title" }, "Timeline"), timeline),
        h("section", { "aria-labelledby": "log-title" }, h("h2", { id: "log-title" }, "Log"), logs)));
    let finished = false;
    const finish = async () => {
      if (finished) return;
      finished = true;
      cancel.disabled = true;
      try {
        job = await request<Job>("GET", `/api/v1/jobs/${job.id}`);
      } catch {
        return;
      }
      kernel.textContent = job.kaggle_kernel || "—";
      if (job.status === "failed") {
        replace(outcome, h("div", { class: "alert", role: "alert" }, h("strong", null, "The job failed"), h("p", null, job.error || "No reason was recorded."),
          h("p", { class: "next" }, "Check the log below; fix the dataset or settings and start a new job.")));
      } else if (job.status === "succeeded") {
        const m = await findModelOfJob(job.id).catch(() => null);
        if (closed) return;
        replace(outcome, m ? modelSummary(m) : h("p", null, "The model is being registered; see ", link("/models", "Models"), "."));
      }
    };
    live = stream(`/api/v1/jobs/${job.id}/events/stream`, (e) => {
      if (e.event === "end") return;
      let ev: JobEvent;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      if (ev.kind === "status" && ev.to_status) {
        job.status = ev.to_status;
        replace(statusBox, badge(ev.to_status));
        timeline.appendChild(h("li", null, badge(ev.to_status), " ", h("time", { datetime: ev.created_at }, fmtTime(ev.created_at)), ev.message ? ` — ${ev.message}` : ""));
        announce(`Job ${ev.to_status}`);
        if (FINAL.has(ev.to_status)) void finish();
      } else if (ev.kind === "kaggle_status") {
        kaggle.textContent = ev.message || "—";
      } else if (ev.kind === "log" && ev.message) {
        const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
        logs.appendChild(document.createTextNode(`${ev.message}\n`));
        if (atEnd) logs.scrollTop = logs.scrollHeight;
      }
    }, (state, err) => {
      liveState.textContent = state === "live" ? "Following live." : state === "ended" ? "Finished: no more updates." : `Connection lost${err ? ` (${err.status})` : ""}; reconnecting…`;
      liveState.dataset.state = state;
      if (state === "ended") void finish();
    });
    if (closed) live.close();
  })();
  return () => {
    closed = true;
    live?.close();
  };
}

function modelSummary(m: Model): HTMLElement {
  const pts = lossPoints(m.metrics);
  return h("section", { class: "card ok", "aria-labelledby": "outcome-title" },
    h("h2", { id: "outcome-title" }, "Model ready"),
    h("p", null, link(`/models/${m.id}`, "Open the model, its files and downloads →")),
    pts.length > 1 ? lineChart("Training loss", pts, "step", "loss") : null,
    dl([["Train loss", m.metrics?.train_loss], ["Eval loss", m.metrics?.eval_loss]]));
}
