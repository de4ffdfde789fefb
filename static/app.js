// hookrelay status page: name, version and readiness, from /healthz and /readyz.
// Everything from the server is written with textContent, never as HTML.

const REFRESH_MS = 5000;

function el(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

async function getJson(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  return { status: res.status, body: await res.json() };
}

async function refresh() {
  const ready = document.getElementById("ready");
  const reason = document.getElementById("reason");
  const rows = document.querySelector("#checks tbody");
  try {
    const health = await getJson("/healthz");
    document.getElementById("version").textContent = `version ${health.body.version}`;
    const r = await getJson("/readyz");
    const ok = r.status === 200;
    ready.textContent = ok ? "ready" : "not ready";
    ready.className = ok ? "badge ok" : "badge bad";
    reason.textContent = ok ? "" : (r.body.error && r.body.error.message) || "";
    rows.replaceChildren();
    for (const [name, value] of Object.entries(r.body.checks || {})) {
      const tr = document.createElement("tr");
      tr.append(el("td", name), el("td", String(value)));
      rows.append(tr);
    }
  } catch (e) {
    ready.textContent = "unreachable";
    ready.className = "badge bad";
    reason.textContent = String(e);
  }
  const now = new Date();
  const at = document.getElementById("checked-at");
  at.textContent = now.toLocaleTimeString();
  at.dateTime = now.toISOString();
}

refresh();
setInterval(refresh, REFRESH_MS);
