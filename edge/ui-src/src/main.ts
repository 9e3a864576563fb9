// The single-page app: session (token + whoami), layout, theme and the
// router. Screens live in their own modules and return a cleanup function
// that runs when the user leaves them (closing live streams).
import { ApiError, clearToken, getToken, request, setToken, setUnauthorizedHandler } from "./api";
import { datasetPage, datasetsPage } from "./datasets";
import { h, replace } from "./dom";
import { jobPage, jobsPage, newJobPage } from "./jobs";
import { modelPage, modelsPage } from "./models";
import { systemPage } from "./system";
import { errorBox } from "./ui";

export interface Session {
  tokenID: string;
  training: { backend: string; base_models: string[] };
  navigate: (path: string) => void;
}

interface WhoAmI {
  token_id: string;
  training?: { backend?: string; base_models?: string[] };
}

const main = document.getElementById("main")!;
const who = document.getElementById("who")!;
const nav = document.getElementById("nav")!;
let cleanup: () => void = () => {};
let session: Session | null = null;

const SIGNIN_REASONS: Record<string, string> = {
  missing: "Sign in with an API token to use the studio.",
  rejected: "That token was not accepted: it is mistyped, expired or revoked.",
  revoked: "Your token stopped working (it was revoked or has expired). Sign in again with a valid one.",
  signedout: "You are signed out.",
};

function navigate(path: string, replaceState = false): void {
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  void render();
}

function signIn(reason: keyof typeof SIGNIN_REASONS, err?: unknown): void {
  cleanup();
  cleanup = () => {};
  session = null;
  clearToken();
  replace(who);
  nav.hidden = true;
  const input = h("input", { type: "password", name: "token", autocomplete: "off", spellcheck: "false", required: true, "aria-describedby": "token-hint" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const msg = h("div", { id: "signin-message" },
    reason === "missing" || reason === "signedout" ? h("p", { role: "status" }, SIGNIN_REASONS[reason])
      : h("div", { class: "alert", role: "alert" }, h("strong", null, "Please sign in again"), h("p", null, SIGNIN_REASONS[reason])),
    err && !(err instanceof ApiError && err.status === 401) ? errorBox(err, "sign-in", submit) : null);
  const form = h("form", { class: "card signin", "aria-labelledby": "signin-title", novalidate: true },
    h("h1", { id: "signin-title" }, "Sign in"),
    msg,
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input,
      h("small", { id: "token-hint", class: "hint" }, "Create one on the server with ", h("code", null, "app token create --name browser"),
        ". It is kept in this tab only (sessionStorage) and forgotten when the tab closes.")),
    h("div", { class: "actions" }, submit));
  input.id = "token";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) {
      replace(msg, h("div", { class: "alert", role: "alert" }, h("p", null, "Paste your API token first.")));
      input.focus();
      return;
    }
    setToken(t);
    submit.disabled = true;
    if (await start()) {
      if (location.pathname === "/signin") navigate("/datasets", true);
      else void render();
    } else {
      submit.disabled = false;
    }
  });
  replace(main, form);
  document.title = "Sign in · Finetune Studio";
  input.focus();
  markReady();
}

// start checks the stored token with whoami; on failure it shows the
// sign-in screen with the reason and returns false.
async function start(): Promise<boolean> {
  if (!getToken()) {
    signIn("missing");
    return false;
  }
  try {
    const w = await request<WhoAmI>("GET", "/api/v1/whoami");
    session = {
      tokenID: w.token_id,
      training: { backend: w.training?.backend || "kaggle", base_models: w.training?.base_models || [] },
      navigate,
    };
  } catch (e) {
    signIn(e instanceof ApiError && e.status === 401 ? "rejected" : "missing", e);
    return false;
  }
  const out = h("button", { type: "button", class: "link", id: "signout" }, "Sign out");
  out.addEventListener("click", () => signIn("signedout"));
  replace(who,
    session.training.backend === "simulator" ? h("span", { class: "badge warn", id: "simulated", title: "Jobs run against a local Kaggle emulator, not on Kaggle" }, "simulated training") : null,
    h("span", { class: "token", id: "token-id" }, "token ", h("code", null, session.tokenID)),
    out);
  nav.hidden = false;
  return true;
}

type Route = [RegExp, (m: RegExpMatchArray, q: URLSearchParams, s: Session) => () => void, string];
const routes: Route[] = [
  [/^\/(datasets)?\/?$/, () => datasetsPage(main), "Datasets"],
  [/^\/datasets\/([^/]+)$/, (m) => datasetPage(main, m[1]), "Dataset"],
  [/^\/jobs\/?$/, (_m, q) => jobsPage(main, q), "Jobs"],
  [/^\/jobs\/new$/, (_m, q, s) => newJobPage(main, s, q), "New job"],
  [/^\/jobs\/([^/]+)$/, (m) => jobPage(main, m[1]), "Job"],
  [/^\/models\/?$/, () => modelsPage(main), "Models"],
  [/^\/models\/([^/]+)$/, (m) => modelPage(main, m[1]), "Model"],
  [/^\/system$/, () => systemPage(main), "System"],
];

async function render(): Promise<void> {
  cleanup();
  cleanup = () => {};
  const path = location.pathname;
  if (path === "/system") {
    // The status page needs no token: an operator may check a stack
    // without signing in.
    cleanup = systemPage(main);
    finishRender("System");
    return;
  }
  if (!session && !(await start())) return;
  if (path === "/signin") {
    navigate("/datasets", true);
    return;
  }
  for (const [re, view, title] of routes) {
    const m = path.match(re);
    if (m) {
      cleanup = view(m, new URLSearchParams(location.search), session!);
      finishRender(title);
      return;
    }
  }
  replace(main, h("h1", null, "Page not found"), h("p", null, "There is nothing at this address. Use the menu above."));
  finishRender("Not found");
}

// markReady records when the first screen is rendered and usable; the UI
// benchmark reads it.
function markReady(): void {
  if (!performance.getEntriesByName("fts:ready").length) performance.mark("fts:ready");
}

function finishRender(title: string): void {
  markReady();
  document.title = `${title} · Finetune Studio`;
  for (const a of nav.querySelectorAll("a")) {
    const href = a.getAttribute("href")!;
    const current = location.pathname === href || location.pathname.startsWith(`${href}/`) || (href === "/datasets" && location.pathname === "/");
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// Theme: the system's preference unless the user picked one here.
const THEME_KEY = "fts.theme";
function applyTheme(t: string | null): void {
  if (t === "light" || t === "dark") document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
  const btn = document.getElementById("theme");
  const dark = t ? t === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  btn?.setAttribute("aria-pressed", String(dark));
}
document.getElementById("theme")?.addEventListener("click", () => {
  const cur = document.documentElement.dataset.theme || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const next = cur === "dark" ? "light" : "dark";
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
});
applyTheme(localStorage.getItem(THEME_KEY));

// In-app links navigate without a page load; modified clicks keep their
// browser meaning (new tab and so on).
document.addEventListener("click", (ev) => {
  const a = (ev.target as Element).closest?.("a[data-nav], #nav a, .brand");
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  ev.preventDefault();
  navigate(a.getAttribute("href")!);
  main.focus({ preventScroll: false });
});
window.addEventListener("popstate", () => void render());
setUnauthorizedHandler((reason) => signIn(reason as keyof typeof SIGNIN_REASONS));
void render();
