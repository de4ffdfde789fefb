// hookrelay admin page: one ES module, no build step, no dependencies.
//
// Built for the on-call question "did the webhook arrive, what did the receiver answer, and can I
// send it again?": the overview lists what is failing, one click opens a delivery with every
// attempt's status and response body, and Retry is on that page.
//
// Safety rule: everything that comes from the server — payloads, receivers' answers, Front's data,
// even ids — is put into the page as text (text nodes, `textContent`), never parsed as HTML. There
// is no innerHTML, insertAdjacentHTML or document.write in this file. Links are built only from
// fixed "#/…" paths with encoded ids, so no data can become a `javascript:` URL.

const TOKEN_KEY = "hookrelay.admin_token";
const API = "/v1beta1/admin";
const PAGE_SIZE = 25;
const POLL_MS = 1500;
const OVERVIEW_REFRESH_MS = 10000;

// ---------------------------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------------------------

// Properties set on the element rather than as attributes.
const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "required", "open"]);

/** Creates `<tag>` with properties and children; strings become text nodes. */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (PROPS.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  add(node, children);
  return node;
}

function add(node, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (selector) => document.querySelector(selector);

/** A link to a view of this page: `#/` + encoded path segments, with an optional query. */
function href(segments, params) {
  const path = segments.map((s) => encodeURIComponent(String(s))).join("/");
  const query = params ? new URLSearchParams(clean(params)).toString() : "";
  return `#/${path}${query ? `?${query}` : ""}`;
}

function link(segments, text, params) {
  return h("a", { href: href(segments, params) }, text);
}

function clean(params) {
  const out = {};
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") out[k] = v;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** `2026-11-25 10:30:12 UTC`. */
function absolute(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** `4 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`. */
function duration(seconds) {
  const s = Math.round(Math.abs(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  if (s < 86400) return `${Math.floor(s / 3600)} h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)} min` : ""}`;
  return `${Math.floor(s / 86400)} d${s % 86400 >= 3600 ? ` ${Math.floor((s % 86400) / 3600)} h` : ""}`;
}

/** `12 s ago`, `in 3 min`, `just now`. */
function relative(iso) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return "";
  const secs = (t - Date.now()) / 1000;
  if (Math.abs(secs) < 2) return "just now";
  return secs < 0 ? `${duration(secs)} ago` : `in ${duration(secs)}`;
}

/** A time shown both ways: relative, then absolute (UTC). */
function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("span", { class: "when" },
    h("time", { datetime: iso, title: absolute(iso) }, relative(iso)),
    h("span", { class: "abs" }, absolute(iso)));
}

/** Pretty-printed JSON in a `<pre>` (focusable, since it may scroll). */
function jsonBlock(value, label) {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("pre", { class: "code", tabindex: 0, "aria-label": label || "JSON" }, text ?? "null");
}

/** A body as received: pretty-printed when it is JSON, else the text as is. */
function bodyBlock(text, label) {
  if (text === null || text === undefined) return h("p", { class: "muted" }, "no body");
  if (text === "") return h("p", { class: "muted" }, "empty body");
  try {
    return jsonBlock(JSON.parse(text), label);
  } catch {
    return h("pre", { class: "code", tabindex: 0, "aria-label": label || "body" }, text);
  }
}

const STATE_TONE = {
  succeeded: "ok", processed: "ok", enabled: "ok", ready: "ok",
  failed: "bad", dead: "bad", disabled: "warn", unwritable: "bad",
  pending: "info", queued: "info", running: "info", retrying: "warn",
  cancelled: "", skipped: "",
  scheduled: "info", active: "ok", paused: "warn",
};

function badge(state, tone) {
  const t = tone ?? STATE_TONE[state] ?? "";
  return h("span", { class: `badge ${t}` }, state ?? "—");
}

/** An HTTP status as a badge: 2xx good, anything else bad. */
function statusBadge(status, error) {
  if (status === null || status === undefined) {
    return error ? badge(error, "bad") : h("span", { class: "muted" }, "—");
  }
  return badge(String(status), status >= 200 && status < 300 ? "ok" : "bad");
}

function dl(pairs) {
  const list = h("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === undefined) continue;
    add(list, [h("dt", {}, term), h("dd", {}, value === null || value === "" ? h("span", { class: "muted" }, "—") : value)]);
  }
  return list;
}

/** A table of `rows` (arrays of cells); `rowProps(i)` gives the properties of row `i`'s `<tr>`. */
function table(headers, rows, empty, rowProps) {
  if (!rows.length) return h("p", { class: "empty muted" }, empty || "Nothing here.");
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((cells, i) => h("tr", rowProps ? rowProps(i) : {}, cells.map((c) => h("td", {}, c)))))));
}

function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), children);
}

function pageTitle(text, ...extra) {
  return h("div", { class: "title-row" }, h("h1", { tabindex: -1 }, text), extra);
}

function splitList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** `Name: value` lines into an object; throws on a line without a colon. */
function parseHeaders(text) {
  const out = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const i = line.indexOf(":");
    if (i <= 0) throw new Error(`header line "${line}" needs the form Name: value`);
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

function headersText(headers) {
  return Object.entries(headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
}

/** A `datetime-local` value (local time) for `iso`, or for now minus `hoursAgo`. */
function localInput(iso, hoursAgo = 0) {
  const d = iso ? new Date(iso) : new Date(Date.now() - hoursAgo * 3600 * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Calls the API; returns the JSON answer, throws ApiError with the server's code and message. */
async function api(method, path, body, options = {}) {
  const headers = { Accept: "application/json" };
  const bearer = options.token ?? token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", `The server could not be reached (${e.message}).`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    if (res.status === 401 && !options.signingIn) {
      signOut("The server no longer accepts this token. Sign in again.");
    }
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || `${res.status} ${res.statusText}`);
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams(clean(params)).toString();
  return q ? `?${q}` : "";
}

// ---------------------------------------------------------------------------------------------
// Messages, confirmation
// ---------------------------------------------------------------------------------------------

let pendingFlash = null;

/** Shows a message above the view (kept across the next render). */
function flash(text, tone = "ok") {
  const box = $("#flash");
  box.replaceChildren(h("p", { class: `flash-msg ${tone}` }, text,
    h("button", { type: "button", class: "link", "aria-label": "Dismiss message", onclick: () => box.replaceChildren() }, "×")));
}

function flashAfterRender(text, tone) {
  pendingFlash = { text, tone };
}

function errorText(e) {
  if (e instanceof ApiError) return `${e.message} (${e.status ? `${e.status} ` : ""}${e.code})`;
  return e && e.message ? e.message : String(e);
}

/** Asks in a modal dialog; resolves true when confirmed. */
function confirmDialog(title, message, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title" });
    const done = (ok) => {
      dialog.close();
      dialog.remove();
      resolve(ok);
    };
    add(dialog, [
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, message),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", onclick: () => done(true) }, confirmLabel),
        // Focus starts on the safe choice; Escape cancels too.
        h("button", { type: "button", autofocus: true, onclick: () => done(false) }, "Cancel")),
    ]);
    dialog.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A button that runs `action`, disabled meanwhile, and reports its error as a message. */
function actionButton(label, action, cls = "") {
  const button = h("button", { type: "button", class: cls });
  button.textContent = label;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action(button);
    } catch (e) {
      flash(errorText(e), "bad");
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function copyButton(text, what) {
  const label = `Copy ${what}`;
  const button = h("button", { type: "button", class: "small" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select it and press Ctrl+C";
    }
    setTimeout(() => { button.textContent = label; }, 2500);
  });
  return button;
}

// ---------------------------------------------------------------------------------------------
// Routing: #/section/id?filters — linkable, and the back button works
// ---------------------------------------------------------------------------------------------

let generation = 0;
let timers = [];

function currentRoute() {
  const raw = location.hash.replace(/^#\/?/, "");
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts, params };
}

const VIEWS = {
  "": (_id, p, gen) => overviewView(gen),
  webhooks: (id, p) => (id ? webhookView(id) : webhooksView(p)),
  deliveries: (id, p, gen) => (id ? deliveryView(id, gen) : deliveriesView(p)),
  events: (id, p, gen) => (id ? eventView(id, gen) : eventsView(p)),
  inbound: (id, p, gen) => (id ? inboundView(id, gen) : inboundListView(p)),
  sources: () => sourcesView(),
  rejected: (_id, p) => rejectedView(p),
  tasks: (id, p, gen) => (id ? taskView(id, gen) : tasksView(p)),
  schedules: (id, _p, gen) => (id ? scheduleView(id, gen) : schedulesView(gen)),
  jobs: (id, p, gen) => (id ? jobView(id, gen) : jobsView(p)),
  cron: (id, _p, gen) => (id ? cronRunsView(id, gen) : cronView(gen)),
  audit: (_id, p) => auditView(p),
};

/** Runs `fn` again after `ms` while this view is shown. */
function later(fn, ms) {
  timers.push(setTimeout(fn, ms));
}

/** Renders the view the hash names. `quiet` keeps the current content while loading (polling). */
async function render(quiet = false) {
  const gen = ++generation;
  for (const t of timers) clearTimeout(t);
  timers = [];
  const { parts, params } = currentRoute();
  const section = parts[0] || "";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = VIEWS[section];
  const main = $("#view");
  if (!quiet) {
    main.replaceChildren(h("p", { class: "muted loading" }, "Loading…"));
    if (!pendingFlash) $("#flash").replaceChildren();
  }
  let node;
  try {
    node = view
      ? await view(parts[1], params, gen)
      : h("div", {}, pageTitle("Not found"), h("p", {}, "There is no such view. ", link([], "Go to the overview")));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    node = h("div", {}, pageTitle("Something went wrong"), h("p", { class: "error", role: "alert" }, errorText(e)));
  }
  if (gen !== generation || !node) return;
  const scroll = window.scrollY;
  main.replaceChildren(node);
  if (pendingFlash) {
    flash(pendingFlash.text, pendingFlash.tone);
    pendingFlash = null;
  }
  if (quiet) window.scrollTo(0, scroll);
  document.title = `${node.dataset.title || "hookrelay"} · hookrelay admin`;
}

/** Polls a view while `condition` holds: re-renders quietly, only when the data changed. */
function pollWhile(condition, gen) {
  if (!condition) return;
  later(() => {
    if (gen === generation) render(true);
  }, POLL_MS);
}

function go(segments, params) {
  location.hash = href(segments, params);
}

// ---------------------------------------------------------------------------------------------
// Sign-in
// ---------------------------------------------------------------------------------------------

function showSignIn(message) {
  generation++;
  for (const t of timers) clearTimeout(t);
  timers = [];
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#view").replaceChildren();
  $("#flash").replaceChildren();
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
  document.title = "Sign in · hookrelay admin";
  $("#signin-token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

function showApp() {
  $("#signin").hidden = true;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  render();
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("#signin-token");
  const candidate = input.value.trim();
  const error = $("#signin-error");
  error.textContent = "";
  if (!candidate) {
    error.textContent = "Enter the admin token.";
    return;
  }
  const button = ev.target.querySelector("button");
  button.disabled = true;
  try {
    await api("GET", `${API}/stats`, undefined, { token: candidate, signingIn: true });
    sessionStorage.setItem(TOKEN_KEY, candidate);
    input.value = "";
    showApp();
  } catch (e) {
    if (e.status === 401) error.textContent = "Wrong token: the server did not accept it. Check auth.admin_token (or the token printed in the server log at start).";
    else if (e.status === 403) error.textContent = "That is a publish token; the admin page needs the admin token.";
    else error.textContent = `Could not sign in: ${errorText(e)}`;
    input.select();
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Pagination with the API's cursor
// ---------------------------------------------------------------------------------------------

function pager(segments, params, nextCursor) {
  const nav = h("nav", { class: "pager", "aria-label": "Pages" });
  if (params.get("cursor")) {
    const first = Object.fromEntries(params);
    delete first.cursor;
    add(nav, [link(segments, "← First page", first), " "]);
  }
  if (nextCursor) {
    add(nav, link(segments, "Next page →", { ...Object.fromEntries(params), cursor: nextCursor }));
  }
  return nav.childNodes.length ? nav : null;
}

/** A filter form whose fields become the hash query (so a filtered view is linkable). */
function filterForm(segments, params, fields) {
  const form = h("form", { class: "filters", role: "search" });
  for (const f of fields) {
    const id = `filter-${f.name}`;
    let control;
    if (f.options) {
      control = h("select", { id, name: f.name },
        f.options.map(([value, text]) => h("option", { value, selected: (params.get(f.name) || "") === value }, text)));
    } else if (f.type === "datetime-local") {
      const v = params.get(f.name);
      control = h("input", { id, name: f.name, type: "datetime-local", value: v ? localInput(v) : "" });
    } else {
      control = h("input", { id, name: f.name, type: "text", value: params.get(f.name) || "", placeholder: f.placeholder || "", spellcheck: "false" });
    }
    add(form, h("label", { for: id }, h("span", {}, f.label), control));
  }
  add(form, [
    h("button", { type: "submit", class: "primary" }, "Filter"),
    link(segments, "Clear"),
  ]);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const out = {};
    for (const f of fields) {
      const el = form.elements[f.name];
      out[f.name] = f.type === "datetime-local" ? fromLocalInput(el.value) : el.value.trim();
    }
    go(segments, out);
  });
  return form;
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

function stat(label, value, target, tone) {
  const body = [h("span", { class: "stat-value" }, String(value)), h("span", { class: "stat-label" }, label)];
  return target
    ? h("a", { class: `stat ${tone || ""}`, href: target }, body)
    : h("div", { class: `stat ${tone || ""}` }, body);
}

async function readiness() {
  const res = await fetch("/readyz", { cache: "no-store", headers: { Accept: "application/json" } });
  let body = {};
  try {
    body = await res.json();
  } catch {
    body = {};
  }
  return { ok: res.ok, body };
}

async function overviewView(gen) {
  const [stats, ready, failed, webhooks, dead, inboundFailed] = await Promise.all([
    api("GET", `${API}/stats`),
    readiness(),
    api("GET", `${API}/deliveries?state=failed&limit=8`),
    api("GET", `${API}/webhooks?limit=500`),
    api("GET", `${API}/jobs?state=dead&limit=5`),
    api("GET", `${API}/inbound?state=failed&limit=5`),
  ]);
  const j = stats.jobs;
  const d = stats.deliveries;
  const hour = d.last_hour;
  const failing = webhooks.webhooks.filter((w) => w.state === "enabled" && w.failing_since);
  const oldest = j.oldest_queued_age_seconds;
  const cards = h("div", { class: "stats" },
    stat("queue depth", j.queue_depth, href(["jobs"], { state: "queued" })),
    stat("deliveries, last hour", hour.created, href(["deliveries"])),
    stat("failed deliveries, last hour", hour.failed, href(["deliveries"], { state: "failed" }), hour.failed ? "bad" : ""),
    stat("oldest queued job waiting", oldest > 0 ? duration(oldest) : "none", href(["jobs"], { state: "queued" }), oldest > 60 ? "warn" : ""),
    stat("dead jobs", j.dead, href(["jobs"], { state: "dead" }), j.dead ? "bad" : ""),
    stat("failing webhooks", stats.webhooks.failing, href(["webhooks"]), stats.webhooks.failing ? "bad" : ""),
    stat("failed inbound events", stats.inbound.by_state.failed ?? 0, href(["inbound"], { state: "failed" }), stats.inbound.by_state.failed ? "bad" : ""),
    stat("pending deliveries", d.by_state.pending ?? 0, href(["deliveries"], { state: "pending" })));

  const checks = Object.entries(ready.body.checks || {}).map(([k, v]) => [k, String(v)]);
  const readyPanel = section("Readiness",
    h("p", {}, badge(ready.ok ? "ready" : "not ready", ready.ok ? "ok" : "bad"), " ",
      ready.ok ? "" : h("span", { class: "error" }, (ready.body.error && ready.body.error.message) || "")),
    table(["check", "result"], checks, "No checks reported."));

  const webhookUrls = Object.fromEntries(webhooks.webhooks.map((w) => [w.id, w.url]));
  const failingRows = failed.deliveries.map((x) => [
    link(["deliveries", x.id], x.id),
    x.action,
    webhookUrls[x.webhook_id] || x.webhook_id,
    statusBadge(x.last_status, x.last_error && !x.last_status ? "error" : null),
    when(x.finished_at || x.updated_at),
  ]);
  const attention = section("What is failing",
    h("h3", {}, "Failed deliveries"),
    table(["delivery", "action", "endpoint", "last answer", "failed"], failingRows, "No failed deliveries."),
    failed.next_cursor ? h("p", {}, link(["deliveries"], "All failed deliveries →", { state: "failed" })) : null,
    h("h3", {}, "Failing webhooks"),
    table(["endpoint", "failing since", "last delivery"], failing.map((w) => [
      link(["webhooks", w.id], w.url), when(w.failing_since), lastDelivery(w.last_delivery),
    ]), "No enabled webhook is failing."),
    h("h3", {}, "Dead jobs"),
    table(["job", "kind", "last error", "updated"], dead.jobs.map((x) => [
      link(["jobs", x.id], x.id), x.kind, h("span", { class: "clip" }, x.last_error || ""), when(x.updated_at),
    ]), "No dead jobs."),
    h("h3", {}, "Failed inbound events"),
    table(["inbound", "type", "error", "received"], inboundFailed.inbound.map((x) => [
      link(["inbound", x.id], x.id), x.type, h("span", { class: "clip" }, x.error || ""), when(x.received_at),
    ]), "No failed inbound events."),
    (stats.cron.overdue || []).length
      ? h("p", { class: "error" }, "Overdue cron schedules: ", stats.cron.overdue.map((c) => c.name).join(", "), " — ", link(["cron"], "see cron"))
      : null);

  later(() => { if (gen === generation) render(true); }, OVERVIEW_REFRESH_MS);
  const node = h("div", { "data-title": "Overview" },
    pageTitle("Overview", h("span", { class: "muted" }, "as of ", when(stats.generated_at))),
    cards, h("div", { class: "columns wide-left" }, attention, readyPanel));
  return node;
}

function lastDelivery(ld) {
  if (!ld) return h("span", { class: "muted" }, "none yet");
  return h("span", { class: "inline" }, badge(ld.state), " ",
    statusBadge(ld.last_status, ld.last_status ? null : ld.last_error ? "error" : null), " ",
    link(["deliveries", ld.id], relative(ld.at) || "open"));
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

let shownSecret = null; // {webhookId, secret, why}: shown once, by the next view of that webhook

async function webhooksView(params) {
  const data = await api("GET", `${API}/webhooks${query({ state: params.get("state"), cursor: params.get("cursor"), limit: PAGE_SIZE })}`);
  const rows = data.webhooks.map((w) => [
    link(["webhooks", w.id], w.url),
    w.description || h("span", { class: "muted" }, "—"),
    h("span", { class: "inline" }, badge(w.state), w.failing_since ? [" ", badge("failing", "bad")] : null),
    w.subscribed_events.length ? w.subscribed_events.join(", ") : h("span", { class: "muted" }, "every action"),
    lastDelivery(w.last_delivery),
  ]);
  return h("div", { "data-title": "Webhooks" },
    pageTitle("Webhooks", link(["webhooks", "new"], "New webhook")),
    filterForm(["webhooks"], params, [{ name: "state", label: "State", options: [["", "any"], ["enabled", "enabled"], ["disabled", "disabled"]] }]),
    table(["endpoint", "description", "state", "subscribed to", "last delivery"], rows, "No webhooks yet. Create one to start delivering events."),
    pager(["webhooks"], params, data.next_cursor));
}

/** The create/edit form. `w` is the webhook being edited, or null for a new one. */
function webhookForm(w, onSubmit) {
  const f = (name, label, control, hint) => h("div", { class: "field" },
    h("label", { for: `wh-${name}` }, label), control, hint ? h("p", { class: "hint", id: `wh-${name}-hint` }, hint) : null);
  const form = h("form", { class: "stack", id: w ? "webhook-edit" : "webhook-create" },
    f("url", "Endpoint URL", h("input", { id: "wh-url", name: "url", type: "url", required: true, value: w ? w.url : "", placeholder: "https://example.com/webhooks/hookrelay", spellcheck: "false" })),
    f("description", "Description", h("input", { id: "wh-description", name: "description", type: "text", value: w ? w.description : "" })),
    f("events", "Subscribed events", h("textarea", { id: "wh-events", name: "events", rows: 3, spellcheck: "false", "aria-describedby": "wh-events-hint" }, w ? w.subscribed_events.join("\n") : ""),
      "One action per line (or comma-separated); app.user.* takes a whole group; empty takes every action."),
    f("headers", "Custom headers", h("textarea", { id: "wh-headers", name: "headers", rows: 3, spellcheck: "false", "aria-describedby": "wh-headers-hint" }, w ? headersText(w.headers) : ""),
      "One per line, as Name: value. Content-Type, Host, X-Signature and webhook-* are set by hookrelay."),
    f("state", "State", h("select", { id: "wh-state", name: "state" },
      ["enabled", "disabled"].map((s) => h("option", { value: s, selected: (w ? w.state : "enabled") === s }, s)))),
    f("algorithm", "Signature algorithm", h("select", { id: "wh-algorithm", name: "algorithm" },
      [["sha256", "HMAC-SHA256 (default)"], ["sha512_256", "HMAC-SHA-512/256 (Frontier's Go verifier)"]]
        .map(([v, t]) => h("option", { value: v, selected: (w ? w.signature_algorithm : "sha256") === v }, t)))),
    f("retry", "Retry schedule", h("input", { id: "wh-retry", name: "retry", type: "text", value: w && w.retry_schedule ? w.retry_schedule.join(", ") : "", placeholder: "server default", spellcheck: "false", "aria-describedby": "wh-retry-hint" }),
      "Waits before each retry, e.g. 3s, 1m, 10m; empty uses the server's schedule."),
    h("p", { class: "error", role: "alert", id: "wh-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, w ? "Save changes" : "Create webhook")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = form.querySelector("#wh-error");
    error.textContent = "";
    const button = form.querySelector("button[type=submit]");
    const el = form.elements;
    let values;
    try {
      const retry = splitList(el.retry.value);
      values = {
        url: el.url.value.trim(),
        description: el.description.value,
        subscribed_events: splitList(el.events.value),
        headers: parseHeaders(el.headers.value),
        state: el.state.value,
        signature_algorithm: el.algorithm.value,
        retry_schedule: retry.length ? retry : null,
      };
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    button.disabled = true;
    try {
      await onSubmit(values);
    } catch (e) {
      error.textContent = errorText(e);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function newWebhookView() {
  const form = webhookForm(null, async (values) => {
    const body = { ...values };
    if (body.retry_schedule === null) delete body.retry_schedule;
    const res = await api("POST", `${API}/webhooks`, body);
    shownSecret = { webhookId: res.webhook.id, secret: res.webhook.secrets[0], why: "created" };
    go(["webhooks", res.webhook.id]);
  });
  return h("div", { "data-title": "New webhook" },
    h("p", { class: "crumbs" }, link(["webhooks"], "Webhooks"), " / new"),
    pageTitle("New webhook"),
    section("Endpoint", form));
}

function secretPanel(s) {
  return h("section", { class: "panel secret", id: "secret-panel", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, s.why === "rotated" ? `New signing secret (id ${s.secret.id})` : "Signing secret"),
    h("p", { class: "warn-text" }, "Copy it now: this is the only time it is shown. Store it with the receiver."),
    h("div", { class: "secret-row" }, h("label", { for: "secret-hex" }, "Hex (X-Signature)"),
      h("input", { id: "secret-hex", type: "text", readonly: true, value: s.secret.value, spellcheck: "false" }),
      copyButton(s.secret.value, "hex")),
    h("div", { class: "secret-row" }, h("label", { for: "secret-whsec" }, "Standard Webhooks"),
      h("input", { id: "secret-whsec", type: "text", readonly: true, value: s.secret.standard_webhooks, spellcheck: "false" }),
      copyButton(s.secret.standard_webhooks, "whsec_")),
    h("p", { class: "hint" }, "Both are the same 32 bytes: the hex form keys X-Signature, the whsec_ form webhook-signature."));
}

async function webhookView(id) {
  if (id === "new") return newWebhookView();
  const [{ webhook: w }, recent] = await Promise.all([
    api("GET", `${API}/webhooks/${encodeURIComponent(id)}`),
    api("GET", `${API}/deliveries${query({ webhook_id: id, limit: 10 })}`),
  ]);
  let secret = null;
  if (shownSecret && shownSecret.webhookId === w.id) {
    secret = secretPanel(shownSecret);
    shownSecret = null;
  }
  const edit = webhookForm(w, async (values) => {
    const changed = {};
    for (const [k, v] of Object.entries(values)) {
      if (JSON.stringify(v) !== JSON.stringify(w[k] ?? null)) changed[k] = v;
    }
    if (!Object.keys(changed).length) {
      flash("Nothing changed.", "info");
      return;
    }
    await api("PUT", `${API}/webhooks/${encodeURIComponent(w.id)}`, changed);
    flashAfterRender(`Saved: ${Object.keys(changed).join(", ")}.`);
    render();
  });

  const since = h("input", { id: "recover-since", type: "datetime-local", value: localInput(null, 24), required: true });
  const recover = h("form", { class: "inline-form", id: "recover-form" },
    h("label", { for: "recover-since" }, "Re-queue failed deliveries since"), since,
    h("button", { type: "submit" }, "Recover"));
  recover.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const res = await api("POST", `${API}/webhooks/${encodeURIComponent(w.id)}/recover`, { since: fromLocalInput(since.value) });
      flash(`Re-queued ${res.recovered} failed ${res.recovered === 1 ? "delivery" : "deliveries"}.`);
    } catch (e) {
      flash(errorText(e), "bad");
    }
  });

  const actions = h("div", { class: "actions" },
    actionButton("Send test event", async () => {
      const res = await api("POST", `${API}/webhooks/${encodeURIComponent(w.id)}/test`, {});
      flashAfterRender(`Sent a webhook.test event (${res.id}).`);
      go(["events", res.id]);
    }),
    w.state === "enabled"
      ? actionButton("Disable", async () => {
        await api("PUT", `${API}/webhooks/${encodeURIComponent(w.id)}`, { state: "disabled" });
        flashAfterRender("Disabled: no new deliveries go to this endpoint.");
        render();
      })
      : actionButton("Enable", async () => {
        await api("PUT", `${API}/webhooks/${encodeURIComponent(w.id)}`, { state: "enabled" });
        flashAfterRender("Enabled.");
        render();
      }),
    actionButton("Rotate secret", async () => {
      const ok = await confirmDialog("Rotate the signing secret?", "A new secret is made and shown once. The current ones keep signing for 24 hours, so the receiver can switch over.", "Rotate");
      if (!ok) return;
      const res = await api("POST", `${API}/webhooks/${encodeURIComponent(w.id)}/secrets`, {});
      shownSecret = { webhookId: w.id, secret: res.webhook.secrets[0], why: "rotated" };
      render();
    }),
    actionButton("Delete…", async () => {
      const ok = await confirmDialog("Delete this webhook?", `${w.url} stops receiving events; its pending deliveries are cancelled (they stay listed). This cannot be undone.`, "Delete webhook");
      if (!ok) return;
      await api("DELETE", `${API}/webhooks/${encodeURIComponent(w.id)}`);
      flashAfterRender(`Deleted ${w.url}.`);
      go(["webhooks"]);
    }, "danger"));

  const recentRows = recent.deliveries.map((x) => [
    link(["deliveries", x.id], x.id), x.action, badge(x.state), statusBadge(x.last_status, x.last_error ? "error" : null), when(x.created_at),
  ]);
  return h("div", { "data-title": w.url },
    h("p", { class: "crumbs" }, link(["webhooks"], "Webhooks"), " / ", w.id),
    pageTitle(w.url, badge(w.state), w.failing_since ? badge("failing", "bad") : null),
    secret,
    actions,
    h("div", { class: "columns" },
      section("Details", dl([
        ["id", h("code", {}, w.id)],
        ["description", w.description],
        ["state", w.disabled_reason ? [badge(w.state), " ", w.disabled_reason] : badge(w.state)],
        ["failing since", w.failing_since ? when(w.failing_since) : null],
        ["subscribed to", w.subscribed_events.length ? w.subscribed_events.join(", ") : "every action"],
        ["headers", Object.keys(w.headers).length ? headersText(w.headers) : null],
        ["signature", w.signature_algorithm],
        ["retry schedule", w.retry_schedule ? w.retry_schedule.join(", ") : "server default"],
        ["secrets", w.secrets.map((s) => h("div", {}, `id ${s.id}, created `, when(s.created_at), s.expires_at ? [", expires ", when(s.expires_at)] : ""))],
        ["created", when(w.created_at)],
        ["updated", when(w.updated_at)],
      ])),
      section("Recent deliveries",
        table(["delivery", "action", "state", "answer", "created"], recentRows, "No deliveries yet."),
        h("p", {}, link(["deliveries"], "All deliveries to this endpoint →", { webhook_id: w.id })),
        recover)),
    section("Edit", edit));
}

// ---------------------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------------------

async function webhookNames() {
  const data = await api("GET", `${API}/webhooks?limit=500`);
  return data.webhooks;
}

async function deliveriesView(params) {
  const [data, hooks] = await Promise.all([
    api("GET", `${API}/deliveries${query({
      webhook_id: params.get("webhook_id"), state: params.get("state"), action: params.get("action"),
      event_id: params.get("event_id"), since: params.get("since"), cursor: params.get("cursor"), limit: PAGE_SIZE,
    })}`),
    webhookNames(),
  ]);
  const urls = Object.fromEntries(hooks.map((w) => [w.id, w.url]));
  const rows = data.deliveries.map((x) => [
    link(["deliveries", x.id], x.id),
    x.action,
    urls[x.webhook_id] ? link(["webhooks", x.webhook_id], urls[x.webhook_id]) : h("span", { class: "muted" }, `${x.webhook_id} (deleted)`),
    badge(x.state),
    `${x.attempts} / ${x.max_attempts}`,
    statusBadge(x.last_status, x.last_error && !x.last_status ? "error" : null),
    when(x.created_at),
  ]);
  const webhookId = params.get("webhook_id");
  let recover = null;
  if (webhookId && urls[webhookId]) {
    recover = h("p", { class: "hint" }, "To send this endpoint's failed deliveries again, use “Recover” on ",
      link(["webhooks", webhookId], "its page"), ".");
  }
  return h("div", { "data-title": "Deliveries" },
    pageTitle("Deliveries"),
    filterForm(["deliveries"], params, [
      { name: "webhook_id", label: "Webhook", options: [["", "any"], ...hooks.map((w) => [w.id, w.url])] },
      { name: "state", label: "State", options: [["", "any"], ["pending", "pending"], ["succeeded", "succeeded"], ["failed", "failed"], ["cancelled", "cancelled"]] },
      { name: "action", label: "Action", placeholder: "app.user.created" },
      { name: "since", label: "Created since", type: "datetime-local" },
    ]),
    params.get("event_id") ? h("p", {}, "Deliveries of event ", link(["events", params.get("event_id")], params.get("event_id")), ".") : null,
    recover,
    table(["delivery", "action", "endpoint", "state", "attempts", "last answer", "created"], rows, "No deliveries match."),
    pager(["deliveries"], params, data.next_cursor));
}

function attemptCard(a, open) {
  const heading = h("summary", {},
    h("span", { class: "attempt-no" }, `Attempt ${a.attempt}`), " ",
    statusBadge(a.status, a.error_kind), " ",
    h("span", { class: "muted" }, `${a.latency_ms} ms`), " ",
    when(a.at));
  const headerRows = Object.entries(a.response_headers || {}).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]);
  return h("details", { class: "attempt", open },
    heading,
    a.error ? h("p", { class: "error" }, h("strong", {}, `${a.error_kind || "error"}: `), a.error) : null,
    a.status !== null && a.status !== undefined ? [
      h("h4", {}, "Response body (first 4 KiB)"),
      bodyBlock(a.response_body, `attempt ${a.attempt} response body`),
      // A failure's headers (Retry-After, request ids) matter; a success's rarely do.
      h("details", { class: "headers", open: a.status < 200 || a.status >= 300 },
        h("summary", {}, `Response headers (${headerRows.length})`),
        table(["header", "value"], headerRows, "No headers recorded.")),
    ] : null);
}

async function deliveryView(id, gen) {
  const { delivery: d } = await api("GET", `${API}/deliveries/${encodeURIComponent(id)}`);
  const retry = actionButton("Retry", async () => {
    await api("POST", `${API}/deliveries/${encodeURIComponent(d.id)}/retry`, {});
    flashAfterRender("Re-queued with a fresh set of attempts.");
    render(true);
  }, "primary");
  retry.id = "retry-delivery";
  if (d.state === "pending") {
    retry.disabled = true;
    retry.title = "Still pending: it is being delivered or waits for its next attempt.";
  }
  const attempts = d.attempts.slice().reverse();
  pollWhile(d.state === "pending", gen);
  return h("div", { "data-title": `Delivery ${d.id}` },
    h("p", { class: "crumbs" }, link(["deliveries"], "Deliveries"), " / ", d.id),
    pageTitle(`Delivery ${d.id}`, badge(d.state), retry),
    d.state === "pending"
      ? h("p", { class: "muted" },
        d.next_attempt_at && new Date(d.next_attempt_at).getTime() > Date.now() ? ["Next attempt ", when(d.next_attempt_at), ". "] : "Being delivered. ",
        "This page refreshes itself while the delivery is pending.")
      : null,
    h("div", { class: "columns" },
      section("Summary", dl([
        ["action", d.action],
        ["endpoint", d.webhook_url ? link(["webhooks", d.webhook_id], d.webhook_url) : `${d.webhook_id} (deleted)`],
        ["event", link(["events", d.event_id], d.event_id)],
        ["attempts", `${d.attempt_count} made, up to ${d.max_attempts} per send`],
        ["last answer", statusBadge(d.last_status, d.last_status ? null : d.last_error ? "error" : null)],
        ["last error", d.last_error],
        ["created", when(d.created_at)],
        ["finished", d.finished_at ? when(d.finished_at) : null],
        ["job", d.job_id ? link(["jobs", d.job_id], d.job_id) : null],
      ])),
      section(`Attempts (${d.attempts.length})`,
        attempts.length
          ? h("div", { id: "attempts" }, attempts.map((a, i) => attemptCard(a, i === 0 || (a.status !== null && (a.status < 200 || a.status >= 300) && i < 3))))
          : h("p", { class: "muted" }, "No attempt yet."))),
    section("Envelope (the body sent)", jsonBlock(d.payload, "envelope")));
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

async function eventsView(params) {
  const data = await api("GET", `${API}/events${query({ action: params.get("action"), since: params.get("since"), cursor: params.get("cursor"), limit: PAGE_SIZE })}`);
  const rows = data.events.map((e) => [
    link(["events", e.id], e.id), e.action, e.source, String(e.deliveries), when(e.created_at),
  ]);
  return h("div", { "data-title": "Events" },
    pageTitle("Events"),
    filterForm(["events"], params, [
      { name: "action", label: "Action", placeholder: "app.user.created" },
      { name: "since", label: "Created since", type: "datetime-local" },
    ]),
    table(["event", "action", "source", "deliveries", "created"], rows, "No events yet."),
    pager(["events"], params, data.next_cursor));
}

async function eventView(id, gen) {
  const [{ event: e }, hooks] = await Promise.all([
    api("GET", `${API}/events/${encodeURIComponent(id)}`),
    webhookNames(),
  ]);
  const urls = Object.fromEntries(hooks.map((w) => [w.id, w.url]));
  const rows = e.deliveries.map((x) => [
    link(["deliveries", x.id], x.id),
    urls[x.webhook_id] || `${x.webhook_id} (deleted)`,
    badge(x.state),
    `${x.attempts} / ${x.max_attempts}`,
    statusBadge(x.last_status, x.last_error && !x.last_status ? "error" : null),
  ]);
  pollWhile(e.deliveries.some((x) => x.state === "pending"), gen);
  return h("div", { "data-title": `Event ${e.id}` },
    h("p", { class: "crumbs" }, link(["events"], "Events"), " / ", e.id),
    pageTitle(`Event ${e.id}`),
    h("div", { class: "columns" },
      section("Summary", dl([
        ["action", e.action],
        ["source", e.source],
        ["idempotency id", e.idempotency_key],
        ["created", when(e.created_at)],
      ])),
      section(`Deliveries (${e.delivery_count})`, table(["delivery", "endpoint", "state", "attempts", "last answer"], rows, "No webhook was subscribed to this action."))),
    section("Envelope", jsonBlock(e.payload, "envelope")));
}

// ---------------------------------------------------------------------------------------------
// Inbound (Front and the sources)
// ---------------------------------------------------------------------------------------------

/** `front` and every configured source's name, for the source filters. */
async function senderNames(current) {
  const data = await api("GET", `${API}/sources`);
  const names = ["front", ...data.sources.map((s) => s.name)];
  // A linked filter for a sender no longer configured still shows as chosen.
  if (current && !names.includes(current)) names.push(current);
  return names;
}

async function inboundListView(params) {
  const [data, senders] = await Promise.all([
    api("GET", `${API}/inbound${query({ source: params.get("source"), state: params.get("state"), cursor: params.get("cursor"), limit: PAGE_SIZE })}`),
    senderNames(params.get("source")),
  ]);
  const rows = data.inbound.map((x) => [
    link(["inbound", x.id], x.id), x.source, x.type, h("code", {}, x.event_id), x.channel, badge(x.state),
    h("span", { class: "clip" }, x.error || ""), when(x.received_at),
  ]);
  const source = params.get("source");
  return h("div", { "data-title": source ? `Inbound from ${source}` : "Inbound" },
    pageTitle(source ? `Inbound events from ${source}` : "Inbound events"),
    filterForm(["inbound"], params, [
      { name: "source", label: "Source", options: [["", "any"], ...senders.map((n) => [n, n])] },
      { name: "state", label: "State", options: [["", "any"], ["pending", "pending"], ["processed", "processed"], ["failed", "failed"]] },
    ]),
    source ? h("p", { class: "hint" }, "Requests refused at the door are not here: see ", link(["rejected"], `rejected requests from ${source}`, { source }), ".") : null,
    table(["inbound", "source", "type", "sender's id", "channel", "state", "error", "received"], rows, "No inbound events match."),
    pager(["inbound"], params, data.next_cursor));
}

async function inboundView(id, gen) {
  const { inbound: x } = await api("GET", `${API}/inbound/${encodeURIComponent(id)}`);
  const front = x.source === "front";
  const replay = actionButton("Replay", async () => {
    const ok = await confirmDialog("Process this event again?", `It is ${front ? "fetched and " : ""}published anew, as a new event, to every subscribed webhook. To resend what was already published, retry its delivery instead.`, "Replay");
    if (!ok) return;
    await api("POST", `${API}/inbound/${encodeURIComponent(x.id)}/replay`, {});
    flashAfterRender("Queued for processing again.");
    render(true);
  }, "primary");
  replay.id = "replay-inbound";
  if (x.state === "pending") replay.disabled = true;
  pollWhile(x.state === "pending", gen);
  const job = x.job;
  return h("div", { "data-title": `Inbound ${x.id}` },
    h("p", { class: "crumbs" }, link(["inbound"], "Inbound"), " / ", x.id),
    pageTitle(`Inbound ${x.id}`, badge(x.state), replay),
    x.error ? h("p", { class: "error", role: "note" }, h("strong", {}, "Error: "), x.error) : null,
    h("div", { class: "columns" },
      section("Summary", dl([
        ["source", front ? `${x.source} (${x.channel})` : h("span", {}, link(["sources"], x.source), ` (${x.channel})`)],
        ["type", x.type],
        [front ? "Front event id" : "sender's id", h("code", {}, x.event_id)],
        ["company", front ? x.company_id : undefined],
        ["received", when(x.received_at)],
        ["processed", x.processed_at ? when(x.processed_at) : null],
        ["published as", x.published_event_id ? link(["events", x.published_event_id], x.published_event_id) : null],
        ["job", job ? h("span", { class: "inline" }, link(["jobs", job.id], job.id), " ", badge(job.state), ` attempt ${job.attempt} of ${job.max_attempts}`) : null],
        ["job's last error", job ? job.last_error : undefined],
      ])),
      section("Headers", jsonBlock(x.headers, "headers"))),
    section("Raw event (as received)", jsonBlock(x.raw, "raw event")),
    front || x.fetched !== null
      ? section("Fetched from Front", x.fetched === null ? h("p", { class: "muted" }, "Nothing was fetched: the event carried everything.") : jsonBlock(x.fetched, "fetched"))
      : null,
    section("Published envelope", x.outbound === null ? h("p", { class: "muted" }, "Not published yet.") : jsonBlock(x.outbound, "published envelope")));
}

// ---------------------------------------------------------------------------------------------
// Sources: providers sending webhooks to /webhooks/in/<name>
// ---------------------------------------------------------------------------------------------

function countsTable(s) {
  const rejected = (n) => (n ? h("span", { class: "warn-text" }, String(n)) : "0");
  const row = (label, key, c) => [
    label,
    h("span", { "data-count": `${key}-received` }, String(c.received)),
    h("span", { "data-count": `${key}-duplicate` }, String(c.duplicate)),
    h("span", { "data-count": `${key}-rejected` }, rejected(c.rejected)),
  ];
  return table(["period", "received", "duplicate", "rejected"], [
    row("last hour", "hour", s.last_hour),
    row("last 24 h", "day", s.last_24h),
  ]);
}

function sourceCard(s) {
  // The page is served by the same hookrelay that receives: its origin is the one to give out.
  const url = `${location.origin}${s.path}`;
  const key = `source-${s.name}`;
  return h("section", { class: "panel source", "data-source": s.name, "aria-labelledby": `${key}-title` },
    h("h2", { id: `${key}-title`, class: "inline" }, s.name, " ",
      badge(s.enabled ? "enabled" : "disabled"), " ", h("span", { class: "badge" }, s.preset)),
    h("div", { class: "url-row" },
      h("label", { for: `${key}-url` }, "URL for the provider"),
      h("input", { id: `${key}-url`, class: "source-url", type: "text", readonly: true, value: url, spellcheck: "false" }),
      copyButton(url, "URL")),
    s.enabled ? null : h("p", { class: "hint" }, "Disabled in the config: requests to it are answered 404 source_not_found."),
    countsTable(s),
    s.rejected_not_stored
      ? h("p", { class: "hint" }, `${s.rejected_not_stored} more refused since start were counted but not stored (over 60 a minute).`)
      : null,
    dl([
      ["last received", s.last_received_at ? when(s.last_received_at) : h("span", { class: "muted" }, "never")],
      ["last rejected", s.last_rejected_at ? when(s.last_rejected_at) : h("span", { class: "muted" }, "never")],
      ["signing secrets", String(s.secrets)],
      ["org id", s.org_id ?? undefined],
      ["publishes", h("code", {}, `${s.name}.*`)],
    ]),
    h("p", { class: "inline source-links" },
      link(["inbound"], "Inbound events →", { source: s.name }), " ",
      link(["rejected"], "Rejected requests →", { source: s.name })));
}

async function sourcesView() {
  const data = await api("GET", `${API}/sources`);
  return h("div", { "data-title": "Sources" },
    pageTitle("Sources", link(["rejected"], "All rejected requests")),
    h("p", { class: "muted" }, "Providers that send webhooks here, declared in the config as [sources.<name>]. ",
      "Paste a source's URL into the provider's webhook settings; what it sends is verified, stored and published as <name>.<type> events."),
    data.sources.length
      ? h("div", { class: "sources" }, data.sources.map(sourceCard))
      : h("p", { class: "empty muted" }, "No sources configured. Add a [sources.<name>] block with a preset and its secret to the config, and restart."));
}

// ---------------------------------------------------------------------------------------------
// Rejected requests: what ingress refused, for "the provider says it sent it"
// ---------------------------------------------------------------------------------------------

const REJECT_CAUSES = ["invalid_signature", "timestamp_out_of_range", "source_not_found", "payload_too_large", "invalid_payload", "not_configured"];

function bytes(n) {
  return `${n} ${n === 1 ? "byte" : "bytes"}`;
}

/** The first bytes of a refused body, as text (never parsed: it is what the sender sent). */
function bodyHead(r) {
  if (!r.body_head_bytes) return h("span", { class: "muted" }, "empty body");
  const total = r.content_length ?? null;
  const note = total !== null && total > r.body_head_bytes ? `first ${bytes(r.body_head_bytes)} of ${bytes(total)}` : bytes(r.body_head_bytes);
  return h("div", {},
    h("pre", { class: "code head", tabindex: 0, "aria-label": `body of rejected request ${r.id}` }, r.body_head),
    h("span", { class: "hint" }, note));
}

function signatureHeaders(sig) {
  const entries = Object.entries(sig || {});
  if (!entries.length) return h("span", { class: "muted" }, "none sent");
  return h("div", { class: "sig" }, entries.map(([k, v]) => h("div", {}, h("span", { class: "muted" }, `${k}: `), String(v))));
}

async function rejectedView(params) {
  const [data, senders] = await Promise.all([
    api("GET", `${API}/rejected${query({
      source: params.get("source"), cause: params.get("cause"), since: params.get("since"), cursor: params.get("cursor"), limit: PAGE_SIZE,
    })}`),
    senderNames(params.get("source")),
  ]);
  const rows = data.rejected.map((r) => [
    when(r.at),
    r.source === "front" ? r.source : link(["sources"], r.source),
    h("div", {}, badge(r.cause, "bad"), h("div", { class: "desc" }, r.message)),
    h("div", { class: "desc" }, h("code", { class: "request" }, `${r.method} ${r.path}`), h("div", { class: "muted" }, `from ${r.peer || "unknown peer"}`)),
    h("div", { class: "desc" },
      h("div", {}, r.user_agent || h("span", { class: "muted" }, "no user agent")),
      h("div", { class: "muted" }, `${r.content_type || "no content type"}, ${r.content_length === null || r.content_length === undefined ? "no length" : bytes(r.content_length)}`)),
    signatureHeaders(r.signature),
    bodyHead(r),
  ]);
  const source = params.get("source");
  return h("div", { "data-title": "Rejected requests" },
    pageTitle(source ? `Rejected requests from ${source}` : "Rejected requests"),
    h("p", { class: "muted" }, "Requests the webhook ingress refused (Front and every source), newest first: at most 60 stored per sender a minute, kept for retention.rejected."),
    filterForm(["rejected"], params, [
      { name: "source", label: "Source", options: [["", "any"], ...senders.map((n) => [n, n])] },
      { name: "cause", label: "Cause", options: [["", "any"], ...REJECT_CAUSES.map((c) => [c, c])] },
      { name: "since", label: "Refused since", type: "datetime-local" },
    ]),
    table(["refused", "source", "cause", "request", "client", "signature headers", "body (first bytes)"], rows,
      "No rejected requests match.", (i) => ({ class: "rejected", "data-rejected": data.rejected[i].id })),
    pager(["rejected"], params, data.next_cursor));
}

// ---------------------------------------------------------------------------------------------
// Tasks: HTTP calls hookrelay makes for the app, later and retried
// ---------------------------------------------------------------------------------------------

const TASK_STATES = ["scheduled", "running", "retrying", "succeeded", "failed", "cancelled", "skipped"];
const TASK_OPEN = ["scheduled", "running", "retrying"];
/** A waiting task whose next call is this close is polled for; a later one is looked at when due. */
const TASK_DUE_MS = 60000;
/** The longest wait before a task's view looks again (setTimeout's range is about 24 days). */
const TASK_LOOK_MAX_MS = 3600 * 1000;

function taskOpen(t) {
  return TASK_OPEN.includes(t.state);
}

/** Whether a task is being called, or will be within a minute. */
function taskDue(t) {
  return taskOpen(t) && new Date(t.run_at).getTime() - Date.now() < TASK_DUE_MS;
}

/** Re-renders a task's view quietly while it is not finished: often while due, else when due. */
function refreshTask(t, gen) {
  if (!taskOpen(t)) return;
  const wait = new Date(t.run_at).getTime() - Date.now();
  later(() => {
    if (gen === generation) render(true);
  }, Math.min(Math.max(wait || 0, POLL_MS), TASK_LOOK_MAX_MS));
}

/** The call a task (or a schedule) makes: `POST https://…`. */
function callText(x) {
  return h("code", { class: "call" }, `${x.method} ${x.url}`);
}

/** The last answer: the status (or "error"), then the error's text. */
function taskAnswer(t) {
  return h("span", { class: "inline" },
    statusBadge(t.last_status, t.last_error && !t.last_status ? "error" : null),
    t.last_error ? h("span", { class: "clip" }, t.last_error) : null);
}

function headerRows(headers) {
  return Object.entries(headers || {}).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]);
}

/** A call's JSON body (any JSON value, a string too), pretty-printed as text. */
function callBody(body, label) {
  if (body === null || body === undefined) return h("p", { class: "muted" }, "no body");
  return jsonBlock(JSON.stringify(body, null, 2), label);
}

function retryScheduleText(r) {
  if (!r) return "server default";
  return r.length ? r.join(", ") : "none: one attempt only";
}

async function tasksView(params) {
  const data = await api("GET", `${API}/tasks${query({
    state: params.get("state"), name: params.get("name"), schedule: params.get("schedule"), cursor: params.get("cursor"), limit: PAGE_SIZE,
  })}`);
  const none = () => h("span", { class: "muted" }, "—");
  const rows = data.tasks.map((t) => [
    link(["tasks", t.id], t.id),
    t.name || none(),
    t.schedule ? link(["schedules", t.schedule], t.schedule) : none(),
    badge(t.state),
    callText(t),
    when(t.run_at),
    `${t.attempt_count} / ${t.max_attempts}`,
    taskAnswer(t),
  ]);
  const schedule = params.get("schedule");
  return h("div", { "data-title": "Tasks" },
    pageTitle("Tasks", link(["schedules"], "Schedules")),
    h("p", { class: "muted" }, "HTTP calls hookrelay makes for the app — enqueued with POST /v1beta1/tasks, or one per tick of a schedule — signed, and retried until the app answers 2xx."),
    filterForm(["tasks"], params, [
      { name: "state", label: "State", options: [["", "any"], ...TASK_STATES.map((s) => [s, s])] },
      { name: "name", label: "Name", placeholder: "send-invoice" },
      { name: "schedule", label: "Schedule", placeholder: "calendar-sync" },
    ]),
    schedule ? h("p", {}, "Runs of the schedule ", link(["schedules", schedule], schedule), ".") : null,
    table(["task", "name", "schedule", "state", "call", "runs at", "attempts", "last answer"], rows, "No tasks match.",
      (i) => ({ "data-task": data.tasks[i].id })),
    pager(["tasks"], params, data.next_cursor));
}

/** A response body in a table cell: pretty-printed when it is JSON, else the text as is. */
function cellBody(text, label) {
  if (text === null || text === undefined) return h("span", { class: "muted" }, "no body");
  if (text === "") return h("span", { class: "muted" }, "empty body");
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    shown = text;
  }
  return h("pre", { class: "code head", tabindex: 0, "aria-label": label }, shown);
}

/** Every attempt, newest first: when, the answer, how long it took, the error, what came back. */
function taskAttempts(t) {
  const attempts = t.attempts.slice().reverse();
  const rows = attempts.map((a) => {
    const answered = a.status !== null && a.status !== undefined;
    const headers = headerRows(a.response_headers);
    return [
      h("span", { class: "attempt-no" }, String(a.attempt)),
      when(a.at),
      statusBadge(a.status, a.error_kind),
      `${a.latency_ms} ms`,
      a.error ? h("span", { class: "error" }, h("strong", {}, `${a.error_kind || "error"}: `), a.error) : h("span", { class: "muted" }, "—"),
      answered
        ? h("div", {},
          cellBody(a.response_body, `attempt ${a.attempt} response body`),
          // A failure's headers (Retry-After, request ids) matter; a success's rarely do.
          h("details", { class: "headers", open: a.status < 200 || a.status >= 300 },
            h("summary", {}, `Response headers (${headers.length}${a.response_headers_truncated ? ", more not kept" : ""})`),
            table(["header", "value"], headers, "No headers recorded.")))
        : h("span", { class: "muted" }, "no answer"),
    ];
  });
  return table(["attempt", "at", "answer", "took", "error", "response (first 4 KiB of the body)"], rows, "No attempt yet.",
    (i) => ({ class: "task-attempt", "data-attempt": attempts[i].attempt }));
}

/** POSTs a task action. A 409 means the task changed meanwhile: its error shows over the fresh state. */
async function taskChange(t, action, done, after) {
  try {
    await api("POST", `${API}/tasks/${encodeURIComponent(t.id)}/${action}`, {});
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 409) throw e;
    flashAfterRender(errorText(e), "bad");
    after();
    return;
  }
  flashAfterRender(done);
  after();
}

function taskActions(t, after) {
  const retry = actionButton("Retry", () => taskChange(t, "retry", `Task ${t.id} queued again with a fresh set of attempts.`, after), "primary");
  retry.id = "retry-task";
  const cancel = actionButton("Cancel", async () => {
    const ok = await confirmDialog("Cancel this task?", `${t.method} ${t.url} is not called again for it (Retry can still call it later).`, "Cancel task");
    if (!ok) return;
    await taskChange(t, "cancel", `Task ${t.id} cancelled.`, after);
  }, "danger");
  cancel.id = "cancel-task";
  if (taskOpen(t)) {
    retry.disabled = true;
    retry.title = "Not finished: it waits for its next call or is being called. Cancel it first to stop it.";
  } else {
    cancel.disabled = true;
    cancel.title = "Finished already.";
  }
  return [retry, cancel];
}

async function taskView(id, gen) {
  const { task: t } = await api("GET", `${API}/tasks/${encodeURIComponent(id)}`);
  refreshTask(t, gen);
  const headers = headerRows(t.headers);
  return h("div", { "data-title": `Task ${t.id}` },
    h("p", { class: "crumbs" },
      t.schedule ? [link(["schedules"], "Schedules"), " / ", link(["schedules", t.schedule], t.schedule)] : link(["tasks"], "Tasks"),
      " / ", t.id),
    pageTitle(`Task ${t.id}`, badge(t.state), taskActions(t, () => render(true))),
    taskOpen(t)
      ? h("p", { class: "muted" },
        t.state === "running" ? "Being called. " : ["Next call ", h("span", { class: "inline" }, when(t.run_at)), ". "],
        "This page refreshes itself until the task is finished.")
      : null,
    h("div", { class: "columns" },
      section("Summary", dl([
        ["name", t.name],
        ["schedule", t.schedule ? link(["schedules", t.schedule], t.schedule) : undefined],
        ["scheduled for", t.schedule ? (t.scheduled_for ? when(t.scheduled_for) : null) : undefined],
        ["state", badge(t.state)],
        ["runs at", when(t.run_at)],
        ["attempts", `${t.attempt_count} made, up to ${t.max_attempts} per send`],
        ["last answer", statusBadge(t.last_status, t.last_status ? null : t.last_error ? "error" : null)],
        ["last error", t.last_error],
        ["idempotency key", t.idempotency_key],
        ["created by", t.created_by],
        ["created", when(t.created_at)],
        ["updated", when(t.updated_at)],
        ["finished", t.finished_at ? when(t.finished_at) : null],
        ["job", t.job_id ? link(["jobs", t.job_id], t.job_id) : null],
      ])),
      section("Call",
        dl([
          ["method", t.method],
          ["url", h("code", { class: "call" }, t.url)],
          ["timeout", t.timeout],
          ["retry schedule", retryScheduleText(t.retry_schedule)],
        ]),
        h("h4", {}, `Headers (${headers.length})`),
        table(["header", "value"], headers, "No headers of its own."),
        h("h4", {}, "Body"),
        callBody(t.body, "task body"))),
    section(`Attempts (${t.attempts.length})`, h("div", { id: "attempts" }, taskAttempts(t))));
}

// ---------------------------------------------------------------------------------------------
// Schedules: cron that creates one task per tick
// ---------------------------------------------------------------------------------------------

function nextRuns(s) {
  if (!s.next_runs.length) {
    return h("span", { class: "muted" }, s.state === "active" ? "none" : `none while ${s.state}`);
  }
  return h("ol", { class: "next-runs" }, s.next_runs.map((t) => h("li", {}, when(t))));
}

function lastRun(run) {
  if (!run) return h("span", { class: "muted" }, "never");
  return h("span", { class: "inline" }, badge(run.state), " ", when(run.finished_at || run.scheduled_for || run.run_at), " ",
    link(["tasks", run.id], run.id));
}

function scheduleActions(s, after) {
  const path = `${API}/schedules/${encodeURIComponent(s.name)}`;
  const toggle = s.paused
    ? actionButton("Resume", async () => {
      await api("POST", `${path}/resume`, {});
      flashAfterRender(`${s.name} resumed: it runs again from its next tick on.`);
      after();
    }, "small")
    : actionButton("Pause", async () => {
      await api("POST", `${path}/pause`, {});
      flashAfterRender(`${s.name} paused: no tick runs until it is resumed.`);
      after();
    }, "small");
  const run = actionButton("Run now", async () => {
    const res = await api("POST", `${path}/run`, {});
    flashAfterRender(`${s.name} runs once now: task ${res.task.id}.`);
    after();
  }, "small");
  toggle.dataset.schedule = s.name;
  run.dataset.schedule = s.name;
  return h("span", { class: "inline" }, toggle, run);
}

async function schedulesView(gen) {
  const data = await api("GET", `${API}/schedules`);
  const rows = data.schedules.map((s) => [
    link(["schedules", s.name], s.name),
    s.origin,
    h("div", {}, h("code", {}, s.cron), h("div", { class: "muted desc" }, s.timezone)),
    badge(s.state),
    nextRuns(s),
    lastRun(s.last_run),
    scheduleActions(s, () => render(true)),
  ]);
  pollWhile(data.schedules.some((s) => s.last_run && taskDue(s.last_run)), gen);
  return h("div", { "data-title": "Schedules" },
    pageTitle("Schedules", link(["tasks"], "All tasks")),
    h("p", { class: "muted" }, "Each tick of a schedule's cron, in its timezone, creates one task that calls the app. ",
      "Schedules come from the config ([schedules.<name>]) or from POST /v1beta1/schedules."),
    table(["name", "from", "cron", "state", "next runs", "last run", ""], rows,
      "No schedules. Add a [schedules.<name>] block to the config, or create one with POST /v1beta1/schedules.",
      (i) => ({ "data-schedule": data.schedules[i].name })));
}

async function scheduleView(name, gen) {
  const { schedule: s } = await api("GET", `${API}/schedules/${encodeURIComponent(name)}`);
  const headers = headerRows(s.headers);
  const rows = s.runs.map((t) => [
    link(["tasks", t.id], t.id),
    t.scheduled_for ? when(t.scheduled_for) : h("span", { class: "muted" }, "—"),
    badge(t.state),
    `${t.attempt_count} / ${t.max_attempts}`,
    taskAnswer(t),
    t.finished_at ? when(t.finished_at) : h("span", { class: "muted" }, "—"),
  ]);
  pollWhile(s.runs.some(taskDue), gen);
  return h("div", { "data-title": `Schedule ${s.name}` },
    h("p", { class: "crumbs" }, link(["schedules"], "Schedules"), " / ", s.name),
    pageTitle(s.name, badge(s.state), scheduleActions(s, () => render(true))),
    s.state === "disabled" ? h("p", { class: "hint" }, "Disabled in its definition (enabled = false): it does not tick. Run now still runs it once.") : null,
    h("div", { class: "columns" },
      section("Definition",
        dl([
          ["from", s.origin === "config" ? `the config, [schedules.${s.name}]` : "the API"],
          ["cron", h("code", {}, s.cron)],
          ["timezone", s.timezone],
          ["call", callText(s)],
          ["timeout", s.timeout || "server default"],
          ["retry schedule", retryScheduleText(s.retry_schedule)],
          ["overlap", s.overlap === "skip" ? "skip: a tick while the last run is unfinished is recorded as skipped" : "allow: a tick runs even while the last run is unfinished"],
          ["catch up", s.catch_up === "latest" ? "latest: of the ticks missed while hookrelay was down, the latest runs once" : "none: ticks missed while hookrelay was down do not run"],
          ["paused", s.paused ? "yes" : "no"],
          ["last tick", s.last_tick ? when(s.last_tick) : null],
          ["created", when(s.created_at)],
          ["updated", when(s.updated_at)],
        ]),
        h("h4", {}, `Headers (${headers.length})`),
        table(["header", "value"], headers, "No headers of its own."),
        h("h4", {}, "Body"),
        callBody(s.body, "schedule body")),
      section("Next runs", nextRuns(s))),
    section(`Runs (${s.runs.length})`,
      h("p", { class: "hint" }, "Newest first; each is a task. ", link(["tasks"], "Every run of this schedule →", { schedule: s.name })),
      h("div", { id: "runs" },
        table(["task", "scheduled for", "state", "attempts", "last answer", "finished"], rows, "It has not run yet.",
          (i) => ({ "data-task": s.runs[i].id })))));
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

const JOB_STATES = ["queued", "running", "retrying", "succeeded", "dead", "cancelled"];

function jobActions(job, after) {
  const out = [];
  if (job.state === "dead" || job.state === "cancelled") {
    out.push(actionButton("Retry", async () => {
      await api("POST", `${API}/jobs/${encodeURIComponent(job.id)}/retry`, {});
      flashAfterRender(`Job ${job.id} queued again.`);
      after();
    }, "small"));
  }
  if (["queued", "running", "retrying", "dead"].includes(job.state)) {
    out.push(actionButton("Cancel", async () => {
      const ok = await confirmDialog("Cancel this job?", `${job.kind} ${job.id} will not run again (a running handler's result is discarded).`, "Cancel job");
      if (!ok) return;
      await api("POST", `${API}/jobs/${encodeURIComponent(job.id)}/cancel`, {});
      flashAfterRender(`Job ${job.id} cancelled.`);
      after();
    }, "small danger"));
  }
  return h("span", { class: "inline" }, out);
}

async function jobsView(params) {
  const data = await api("GET", `${API}/jobs${query({ state: params.get("state"), kind: params.get("kind"), cursor: params.get("cursor"), limit: PAGE_SIZE })}`);
  const rows = data.jobs.map((j) => [
    link(["jobs", j.id], j.id), j.kind, badge(j.state), `${j.attempt} / ${j.max_attempts}`,
    h("span", { class: "clip" }, j.last_error || ""), when(j.updated_at), jobActions(j, () => render()),
  ]);
  return h("div", { "data-title": "Jobs" },
    pageTitle("Jobs"),
    filterForm(["jobs"], params, [
      { name: "state", label: "State", options: [["", "any"], ...JOB_STATES.map((s) => [s, s])] },
      { name: "kind", label: "Kind", placeholder: "delivery.send" },
    ]),
    table(["job", "kind", "state", "attempts", "last error", "updated", ""], rows, "No jobs match."),
    pager(["jobs"], params, data.next_cursor));
}

async function jobView(id, gen) {
  const { job: j } = await api("GET", `${API}/jobs/${encodeURIComponent(id)}`);
  pollWhile(["queued", "running", "retrying"].includes(j.state), gen);
  return h("div", { "data-title": `Job ${j.id}` },
    h("p", { class: "crumbs" }, link(["jobs"], "Jobs"), " / ", j.id),
    pageTitle(`Job ${j.id}`, badge(j.state), jobActions(j, () => render(true))),
    h("div", { class: "columns" },
      section("Summary", dl([
        ["kind", j.kind],
        ["attempts", `${j.attempt} of ${j.max_attempts}`],
        ["last error", j.last_error],
        ["idempotency key", j.idempotency_key],
        ["runs at", when(j.run_at)],
        ["lease until", j.lease_until ? when(j.lease_until) : null],
        ["created", when(j.created_at)],
        ["updated", when(j.updated_at)],
        ["finished", j.finished_at ? when(j.finished_at) : null],
      ])),
      section("Payload", jsonBlock(j.payload, "payload"))));
}

// ---------------------------------------------------------------------------------------------
// Cron
// ---------------------------------------------------------------------------------------------

function runCell(run) {
  if (!run) return h("span", { class: "muted" }, "never");
  return h("span", { class: "inline" }, badge(run.state), " ", when(run.finished_at || run.started_at || run.scheduled_at),
    run.duration_ms !== null && run.duration_ms !== undefined ? h("span", { class: "muted" }, ` ${run.duration_ms} ms`) : null,
    run.error ? h("span", { class: "error clip" }, ` ${run.error}`) : null);
}

function runNow(name, after) {
  const button = actionButton("Run now", async () => {
    await api("POST", `${API}/cron/${encodeURIComponent(name)}/run`, {});
    flashAfterRender(`${name} queued to run now.`);
    after();
  }, "small");
  button.dataset.cron = name;
  return button;
}

async function cronView(gen) {
  const data = await api("GET", `${API}/cron`);
  const rows = data.cron.map((c) => [
    link(["cron", c.name], c.name),
    h("span", { class: "desc" }, c.description || ""),
    h("code", {}, c.schedule),
    runCell(c.last_run),
    c.next_run_at ? when(c.next_run_at) : h("span", { class: "muted" }, "off"),
    c.overdue ? badge("overdue", "bad") : badge("ok", "ok"),
    runNow(c.name, () => render(true)),
  ]);
  pollWhile(data.cron.some((c) => c.last_run && ["queued", "running"].includes(c.last_run.state)), gen);
  return h("div", { "data-title": "Cron" },
    pageTitle("Cron"),
    h("p", { class: "muted" }, "Schedules are 6-field cron expressions in UTC (sec min hour day month weekday), set in the config."),
    table(["name", "does", "schedule", "last run", "next run", "on time", ""], rows, "No schedules."));
}

async function cronRunsView(name, gen) {
  const { cron: c } = await api("GET", `${API}/cron/${encodeURIComponent(name)}`);
  const rows = c.runs.map((r) => [
    String(r.id), r.trigger, badge(r.state), when(r.scheduled_at),
    r.duration_ms === null || r.duration_ms === undefined ? "" : `${r.duration_ms} ms`,
    r.rows_affected === null || r.rows_affected === undefined ? "" : String(r.rows_affected),
    r.job_id ? link(["jobs", r.job_id], r.job_id) : "",
    r.error ? h("span", { class: "error" }, r.error) : r.detail ? h("code", { class: "clip" }, JSON.stringify(r.detail)) : "",
  ]);
  pollWhile(c.runs.some((r) => ["queued", "running"].includes(r.state)), gen);
  return h("div", { "data-title": `Cron ${c.name}` },
    h("p", { class: "crumbs" }, link(["cron"], "Cron"), " / ", c.name),
    pageTitle(c.name, runNow(c.name, () => render(true))),
    dl([
      ["does", c.description],
      ["schedule", h("code", {}, c.schedule)],
      ["next run", c.next_run_at ? when(c.next_run_at) : "off"],
      ["overdue", c.overdue ? ["yes, since ", when(c.overdue_since)] : "no"],
    ]),
    section("Recent runs", table(["run", "trigger", "state", "scheduled", "took", "rows", "job", "result"], rows, "It has not run yet.")));
}

// ---------------------------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------------------------

async function auditView(params) {
  const data = await api("GET", `${API}/audit-logs${query({ action: params.get("action"), target_id: params.get("target_id"), since: params.get("since"), cursor: params.get("cursor"), limit: PAGE_SIZE })}`);
  const target = (r) => {
    if (!r.target_id) return "";
    const view = { webhook: "webhooks", delivery: "deliveries", job: "jobs", inbound: "inbound", event: "events", cron: "cron", task: "tasks", schedule: "schedules" }[r.target_type];
    return view ? link([view, r.target_id], `${r.target_type} ${r.target_id}`) : `${r.target_type || ""} ${r.target_id}`;
  };
  const rows = data.audit_logs.map((r) => [
    when(r.at), r.actor, h("code", {}, r.action), target(r),
    r.detail && Object.keys(r.detail).length ? h("code", { class: "clip" }, JSON.stringify(r.detail)) : "",
  ]);
  return h("div", { "data-title": "Audit log" },
    pageTitle("Audit log"),
    filterForm(["audit"], params, [
      { name: "action", label: "Action", placeholder: "webhook.* or delivery.failed" },
      { name: "target_id", label: "Target id", placeholder: "wh_…" },
      { name: "since", label: "Since", type: "datetime-local" },
    ]),
    table(["when", "who", "action", "target", "detail"], rows, "No records match."),
    pager(["audit"], params, data.next_cursor));
}

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------

async function showVersion() {
  try {
    const res = await fetch("/healthz", { cache: "no-store" });
    const body = await res.json();
    $("#version").textContent = `v${body.version}`;
  } catch {
    $("#version").textContent = "";
  }
}

function start() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", () => {
    if (token()) render();
  });
  // Keep relative times fresh without refetching.
  setInterval(() => {
    for (const t of document.querySelectorAll("time[datetime]")) t.textContent = relative(t.getAttribute("datetime"));
  }, 15000);
  showVersion();
  if (token()) showApp();
  else showSignIn();
}

start();
