// The status page: polls /health (open) and the admin routes (with the admin token
// the operator typed, kept for this tab only), and subscribes over the gateway's
// own /ws in the "try it" panel. Data is only ever inserted as text, never as HTML.
"use strict";

const POLL_MS = 1000;
const TRY_KEEP = 50;
const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "n2gateway.adminToken";

let adminToken = sessionStorage.getItem(TOKEN_KEY);  // null: not asked yet
let lastHead = null;
let lastTime = null;
let trySocket = null;

class Unauthorized extends Error {}

async function getJson(path, admin) {
  const headers = admin && adminToken ? { Authorization: "Bearer " + adminToken } : {};
  const answer = await fetch(path, { headers, cache: "no-store" });
  if (answer.status === 401) throw new Unauthorized();
  return answer.json();
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map(({ cells, attrs = {} }) => {
    const tr = document.createElement("tr");
    for (const [name, value] of Object.entries(attrs)) tr.setAttribute(name, value);
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = String(cell ?? "");
      tr.append(td);
    }
    return tr;
  }));
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  return span;
}

function renderHealth(health) {
  $("overall").textContent = health.status;
  $("overall").className = "badge " + health.status;
  $("version").textContent = health.version ? "v" + health.version : "";
  $("database").textContent = health.database.state + (health.database.error ? " (" + health.database.error + ")" : "");
  const providers = Object.entries(health.plugins || {})
    .filter(([, s]) => s && typeof s.connected === "boolean");
  $("no-providers").hidden = providers.length > 0;
  const owners = (health.node && health.node.owners) || {};
  fill($("providers").tBodies[0], providers.map(([name, s]) => {
    // With several gateways, another one may hold the session: not a fault here.
    const [text, kind] = s.held === false ? ["held by " + (owners[name] ?? "nobody yet"), "elsewhere"]
      : s.needsLogin ? ["needs login", "needs-login"]
      : s.connected ? ["connected", "connected"] : ["disconnected", "disconnected"];
    const [token, tokenKind] = tokenState(s);
    return { attrs: { "data-provider": name, "data-state": kind, "data-token": tokenKind },
             cells: [name, badge(text, kind), token, s.reconnectAttempts ?? 0, s.lastError ?? ""] };
  }));
}

// The upstream token's expiry: a warning while it is near (the gateway cannot renew
// it: a person must log in again), plainly when it has passed.
function tokenState(s) {
  if (!s.tokenExpiresAt) return ["", "unknown"];
  const at = new Date(s.tokenExpiresAt);
  const when = "expires " + at.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  const dated = (node) => { node.title = when; return node; };
  if (s.tokenExpired) return [dated(badge("expired: log in again", "needs-login")), "expired"];
  if (s.tokenExpiresSoon) {
    const days = Math.max((at - Date.now()) / 86400000, 0).toFixed(1);
    return [dated(badge("expires in " + days + " days", "warning")), "expires-soon"];
  }
  return [at.toISOString().slice(0, 10), "ok"];
}

function renderHub(hub) {
  const now = performance.now();
  const head = Number(hub.head);
  if (lastHead !== null && now > lastTime) {
    $("rate").textContent = (Math.max(head - lastHead, 0) * 1000 / (now - lastTime)).toFixed(1);
  }
  lastHead = head;
  lastTime = now;
  $("connections").textContent = hub.connections;
  $("head").textContent = hub.head;
  fill($("rooms").tBodies[0], hub.topRooms.map((r) => ({ cells: [r.room, r.connections] })));
}

function renderRecent(recent) {
  fill($("recent").tBodies[0], recent.events.map((e) => ({
    attrs: { "data-offset": e.offset },
    cells: [e.offset, e.event, e.rooms.join(", "), e.payload],
  })));
  for (const tr of $("recent").tBodies[0].rows) tr.cells[3].className = "payload";
}

function askForToken(message) {
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("admin-token").focus();
}

async function refresh() {
  try {
    renderHealth(await getJson("/health", false));
    if (adminToken !== null) {
      renderHub(await getJson("/api/hub/status", true));
      renderRecent(await getJson("/api/hub/recent?limit=20", true));
    }
  } catch (e) {
    if (e instanceof Unauthorized) {
      adminToken = null;
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken("That admin token was refused.");
    } else {
      $("overall").textContent = "unreachable";
      $("overall").className = "badge degraded";
    }
  }
  setTimeout(refresh, POLL_MS);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  adminToken = $("admin-token").value.trim();  // empty: the gateway has no admin token
  sessionStorage.setItem(TOKEN_KEY, adminToken);
  $("login").hidden = true;
});

// The same secret-looking field names the gateway redacts in its logs and recent
// events (n2gateway/redact.py): the page never shows their values.
const SECRET_NAME = /token|cookie|authori[sz]ation|password|passwd|secret|credential|client_?session|session_?id|api[_-]?key/i;
const hideSecrets = (key, value) => (SECRET_NAME.test(key) ? "[redacted]" : value);

function tryLine(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("try-events").prepend(li);
  while ($("try-events").children.length > TRY_KEEP) $("try-events").lastChild.remove();
}

$("try").addEventListener("submit", (event) => {
  event.preventDefault();
  if (trySocket) trySocket.close();
  const room = $("try-room").value.trim();
  const token = $("try-token").value.trim();
  const query = token ? "token=" + encodeURIComponent(token)
    : "userId=" + encodeURIComponent($("try-user").value.trim());
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = trySocket = new WebSocket(scheme + "//" + location.host + "/ws?" + query);
  $("try-state").textContent = "connecting…";
  socket.onopen = () => socket.send(JSON.stringify({ type: "subscribe", room }));
  socket.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "subscribed") $("try-state").textContent = "subscribed to " + frame.room;
    const payload = frame.payload === undefined ? "" : " " + JSON.stringify(frame.payload, hideSecrets).slice(0, 200);
    const note = frame.message ? " " + frame.message : "";
    tryLine(frame.type + (frame.room ? " @" + frame.room : "") + payload + note);
  };
  socket.onclose = (close) => {
    if (trySocket === socket) $("try-state").textContent = "closed (" + close.code + (close.reason ? ": " + close.reason : "") + ")";
  };
});

if (adminToken === null) askForToken();
refresh();
