// The API client: the bearer token (sessionStorage, gone when the tab
// closes), JSON requests, uploads with progress, the event stream, and one
// place that turns any failure into plain words and a next step.

const TOKEN_KEY = "fts.token";

export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}
export function setToken(t: string): void {
  sessionStorage.setItem(TOKEN_KEY, t);
}
export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

export interface Detail {
  field?: string;
  line?: number;
  record?: number;
  issue: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details: Detail[] = [],
    public retryAfter = 0,
    public requestID = "",
    public errorCount = 0,
  ) {
    super(message);
  }
}

// onUnauthorized is called when the server rejects the token mid-session
// (revoked or expired); main.ts shows the sign-in screen.
let onUnauthorized: (reason: string) => void = () => {};
export function setUnauthorizedHandler(f: (reason: string) => void): void {
  onUnauthorized = f;
}

function parseRetryAfter(v: string | null): number {
  if (!v) return 0;
  const n = Number(v);
  if (Number.isFinite(n)) return Math.max(0, Math.ceil(n));
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, Math.ceil((t - Date.now()) / 1000)) : 0;
}

// toError builds an ApiError from a failed response's status, headers and
// body text (the app's and the edge's JSON error shape, or anything else).
export function toError(status: number, header: (name: string) => string | null, text: string): ApiError {
  let code = "";
  let message = "";
  let details: Detail[] = [];
  let count = 0;
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      code = String(body.error.code || "");
      message = String(body.error.message || "");
      details = Array.isArray(body.error.details) ? body.error.details : [];
      count = Number(body.error.error_count || 0);
    }
  } catch {
    // Not JSON (a proxy's HTML page): the status alone has to do.
  }
  return new ApiError(status, code, message, details, parseRetryAfter(header("Retry-After")), header("X-Request-ID") || "", count);
}

export async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new ApiError(0, "network", "the server could not be reached");
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  if (!res.ok) {
    const err = toError(res.status, (n) => res.headers.get(n), text);
    if (res.status === 401 && path !== "/api/v1/whoami") onUnauthorized("revoked");
    throw err;
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

// download fetches a protected file with the bearer header and hands it to
// the browser as a download (a plain link could not send the header).
export async function download(path: string, filename: string, onProgress?: (loaded: number) => void): Promise<number> {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${getToken()}` }, cache: "no-store" }).catch(() => {
    throw new ApiError(0, "network", "the server could not be reached");
  });
  if (!res.ok) {
    const err = toError(res.status, (n) => res.headers.get(n), await res.text());
    if (res.status === 401) onUnauthorized("revoked");
    throw err;
  }
  const reader = res.body!.getReader();
  const parts: BlobPart[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    loaded += value.byteLength;
    onProgress?.(loaded);
  }
  const url = URL.createObjectURL(new Blob(parts, { type: res.headers.get("Content-Type") || "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return loaded;
}

export interface Upload {
  done: Promise<unknown>;
  abort: () => void;
}

// upload posts multipart form data with XMLHttpRequest, the only browser
// API that reports upload progress.
export function upload(path: string, form: FormData, onProgress: (loaded: number, total: number) => void): Upload {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", `Bearer ${getToken()}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(xhr.responseText ? JSON.parse(xhr.responseText) : undefined);
        return;
      }
      if (xhr.status === 401) onUnauthorized("revoked");
      reject(toError(xhr.status, (n) => xhr.getResponseHeader(n), xhr.responseText));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the connection broke during the upload"));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "upload cancelled"));
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

export interface StreamEvent {
  id: string;
  event: string;
  data: string;
}

export interface Stream {
  close: () => void;
}

// stream follows a Server-Sent Events URL with fetch (EventSource cannot
// send a bearer header). It reconnects after a drop, resuming with
// Last-Event-ID so no event is lost or repeated, until an `end` event or
// close().
export function stream(path: string, onEvent: (e: StreamEvent) => void, onState: (state: "live" | "reconnecting" | "ended", err?: ApiError) => void): Stream {
  const ctl = new AbortController();
  let lastID = "";
  let retryMs = 3000;
  let ended = false;
  const run = async () => {
    while (!ended && !ctl.signal.aborted) {
      let err: ApiError | undefined;
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream", Authorization: `Bearer ${getToken()}` };
        if (lastID) headers["Last-Event-ID"] = lastID;
        const res = await fetch(path, { headers, signal: ctl.signal, cache: "no-store" });
        if (!res.ok) {
          err = toError(res.status, (n) => res.headers.get(n), await res.text());
          if (res.status === 401) {
            onUnauthorized("revoked");
            return;
          }
          if (res.status === 404) {
            onState("ended", err);
            return;
          }
          if (err.retryAfter) retryMs = err.retryAfter * 1000;
        } else {
          onState("live");
          await readEvents(res.body!, (e) => {
            if (e.id) lastID = e.id;
            if (e.event === "retry") {
              retryMs = Number(e.data) || retryMs;
              return;
            }
            if (e.event === "end") ended = true;
            onEvent(e);
          });
        }
      } catch {
        if (ctl.signal.aborted) return;
      }
      if (ended) {
        onState("ended");
        return;
      }
      onState("reconnecting", err);
      await new Promise((r) => setTimeout(r, retryMs));
    }
  };
  void run();
  return { close: () => ctl.abort() };
}

async function readEvents(body: ReadableStream<Uint8Array>, emit: (e: StreamEvent) => void): Promise<void> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let cur: StreamEvent = { id: "", event: "message", data: "" };
  let hasData = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let nl: number;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (hasData) emit(cur);
        cur = { id: cur.id, event: "message", data: "" };
        hasData = false;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      switch (field) {
        case "id":
          cur.id = val;
          break;
        case "event":
          cur.event = val;
          break;
        case "data":
          cur.data = hasData ? `${cur.data}\n${val}` : val;
          hasData = true;
          break;
        case "retry":
          emit({ id: "", event: "retry", data: val });
          break;
      }
    }
  }
}

export interface Explained {
  title: string;
  text: string;
  next: string;
}

// explain says in plain words what went wrong and what to do next. what
// names the action ("upload", "delete this dataset") for the 409 and 413
// cases, which depend on it.
export function explain(e: unknown, what = "request"): Explained {
  if (!(e instanceof ApiError)) {
    return { title: "Something went wrong in this page", text: String(e), next: "Reload the page; if it happens again, report it with the steps that led here." };
  }
  const rid = e.requestID ? ` (request id ${e.requestID})` : "";
  switch (e.status) {
    case 0:
      if (e.code === "aborted") return { title: "Cancelled", text: `The ${what} was cancelled.`, next: "Start it again when you are ready." };
      return { title: "No connection", text: `The ${what} could not reach the server: ${e.message}.`, next: "Check your network connection, then try again." };
    case 400:
      return { title: "The request was refused", text: e.message || "The server could not read the request.", next: "Correct the values shown and try again." };
    case 401:
      return { title: "Not signed in", text: "The server did not accept your API token: it is missing, mistyped, expired or revoked.", next: "Sign in again with a valid token (create one with `app token create`)." };
    case 403:
      return { title: "Not allowed", text: e.message || "The edge refused this request.", next: "Open the studio from its own address rather than another site." };
    case 404:
      return { title: "Not found", text: "This item does not exist (any more): it may have been deleted.", next: "Go back to the list and pick another one." };
    case 409:
      return { title: "Not possible right now", text: e.message || `The ${what} conflicts with the current state.`, next: "Reload to see the current state, then try again." };
    case 413:
      return { title: "Too large", text: `The ${what} is larger than the server accepts.`, next: "Use a smaller file (split the dataset), or ask the operator to raise the upload limit (APP_MAX_UPLOAD_BYTES and MAX_UPLOAD_BYTES)." };
    case 415:
      return { title: "Unsupported format", text: e.message, next: "Send the file as JSON Lines or a JSON array." };
    case 422:
      return { title: "Some values need fixing", text: e.message || "The server found problems in what you sent.", next: "Fix the fields marked below and send again." };
    case 429: {
      const wait = e.retryAfter || 60;
      return { title: "Too many requests", text: `The server is limiting how fast requests may come. Wait ${wait} second${wait === 1 ? "" : "s"}.`, next: `Try again in ${wait} s; the button works again then.` };
    }
    case 502:
    case 503:
    case 504:
      if (e.code === "backend_not_configured") {
        return { title: "Training is not set up", text: "This server has no Kaggle credentials, so it cannot start jobs.", next: "Ask the operator to set KAGGLE_USERNAME and KAGGLE_API_TOKEN (or, for a local try-out, start it with `make run`, which uses the simulator)." };
      }
      return { title: "The service is temporarily unavailable", text: `The API is restarting, overloaded or its storage is down${rid}.`, next: `Try again in ${e.retryAfter || 5} s; the System page shows which part is failing.` };
    default:
      return { title: "The server failed", text: `${e.message || "An unexpected error happened on the server."}${rid}`, next: "Try again; if it keeps failing, give the operator the request id." };
  }
}
