// emwatch command center: login, live map of the user's subjects and zones, alert list from the feed.
"use strict";

const S = {
  access: null, refresh: sessionStorage.getItem("emwatch.refresh"), user: null,
  lastSeq: null, ws: null, retry: 0, alerts: new Map(), subjects: new Map(), markers: new Map(),
  map: null, zones: null, track: null, selected: null, pollTimer: null, stopped: true,
  inbox: Promise.resolve(), rules: new Set(),
};
const $ = (id) => document.getElementById(id);
const SEVERITY_COLOUR = { critical: "#c62828", serious: "#ef6c00", warning: "#f9a825" };

async function api(path, options = {}, retried = false) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  if (S.access) headers.Authorization = `Bearer ${S.access}`;
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401 && !retried && await refreshTokens()) return api(path, options, true);
  if (r.status === 401) { showLogin("session ended, please log in again"); throw new Error("unauthorized"); }
  const body = r.status === 204 ? null : await r.json();
  if (!r.ok) throw new Error(body && body.detail ? JSON.stringify(body.detail) : `HTTP ${r.status}`);
  return body;
}

function keepTokens(t) {
  S.access = t.access_token; S.refresh = t.refresh_token; S.user = t.user;
  sessionStorage.setItem("emwatch.refresh", S.refresh);
}

async function refreshTokens() {
  if (!S.refresh) return false;
  const r = await fetch("/api/auth/refresh", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: S.refresh }) });
  if (!r.ok) { S.refresh = null; sessionStorage.removeItem("emwatch.refresh"); return false; }
  keepTokens(await r.json());
  return true;
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const credentials = { username: $("username").value, password: $("password").value };
  if ($("totp").value) credentials.totp = $("totp").value;  // only users who enabled a second factor
  const r = await fetch("/api/auth/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(credentials) });
  if (!r.ok) {
    const detail = await r.json().then((b) => b.detail).catch(() => null);
    $("login-error").textContent = r.status === 401 && typeof detail === "string" && detail.includes("totp")
      ? "需要动态码 " + detail : r.status === 429 ? "尝试过多，请稍后 too many attempts, retry later"
      : "用户名或密码错误 wrong username or password";
    return;
  }
  keepTokens(await r.json());
  await start();
}

function showLogin(message) {
  S.stopped = true;
  if (S.ws) S.ws.close();
  clearInterval(S.pollTimer);
  S.access = null;
  $("console").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function start() {
  $("login").hidden = true; $("console").hidden = false;
  $("who").textContent = `${S.user.username} · ${S.user.role} · ${S.user.jurisdiction_id || "all"}`;
  S.stopped = false;
  const config = await api("/api/config");
  if (!S.map) {
    S.map = L.map("map", { preferCanvas: true }).setView([30.3, 120.1], 12);
    if (config.tile_url) L.tileLayer(config.tile_url, { maxZoom: 19 }).addTo(S.map);
    S.zones = L.layerGroup().addTo(S.map);
    S.track = L.layerGroup().addTo(S.map);
  }
  const [jurisdictions, subjects, zones] = await Promise.all(
    [api("/api/jurisdictions"), api("/api/subjects"), api("/api/zones")]);
  fillSelect($("f-jurisdiction"), jurisdictions.map((j) => [j.id, `${j.name} (${j.kind})`]));
  subjects.forEach((s) => S.subjects.set(s.id, s));
  drawZones(zones);
  await loadPositions();
  S.pollTimer = setInterval(() => loadPositions().catch(() => {}), 15000);
  connect();
  if (typeof startNotifications === "function") startNotifications();  // push.js
}

function fillSelect(select, pairs) {
  const keep = select.value;
  select.length = 1;
  for (const [value, label] of pairs) select.add(new Option(label, value));
  select.value = keep;
}

function drawZones(collection) {
  S.zones.clearLayers();
  const style = (f) => ({ color: f.properties.kind === "exclusion" ? "#c62828" : "#1565c0", weight: 2,
    fillOpacity: 0.08 });
  for (const f of collection.features) {
    if (f.geometry.type === "Point" && f.properties.radius_m) {
      const [lon, lat] = f.geometry.coordinates;
      L.circle([lat, lon], { radius: f.properties.radius_m, ...style(f) }).addTo(S.zones);
    } else {
      L.geoJSON(f, { style }).addTo(S.zones);
    }
  }
  const bounds = S.zones.getLayers().length ? L.featureGroup(S.zones.getLayers()).getBounds() : null;
  if (bounds && bounds.isValid()) S.map.fitBounds(bounds, { maxZoom: 15 });
}

async function loadPositions() {
  for (const p of await api("/api/positions/latest")) {
    const alerting = p.open_alerts > 0;
    const colour = alerting ? "#c62828" : p.status !== "active" ? "#777" : "#2e7d32";
    let m = S.markers.get(p.subject_id);
    if (!m) {
      m = L.circleMarker([p.lat, p.lon], { radius: 7, weight: 2 }).addTo(S.map);
      S.markers.set(p.subject_id, m);
    }
    m.setLatLng([p.lat, p.lon]).setStyle({ color: colour, fillColor: colour, fillOpacity: 0.7 });
    m.bindTooltip(`${p.name} (${p.subject_id}) · ${p.risk_level} · ${new Date(p.ts).toLocaleString()}`);
  }
}

// The feed: the token travels as a subprotocol; after a drop we resume from the last seq we saw. Events
// come in arrays (frames=batch): a burst of alerts is one message and one redraw.
function connect() {
  if (S.stopped) return;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const since = S.lastSeq === null ? "" : `&since=${S.lastSeq}`;
  const ws = new WebSocket(`${proto}://${location.host}/ws/alerts?frames=batch${since}`, ["bearer", S.access]);
  S.ws = ws;
  ws.onopen = async () => {
    S.retry = 0;
    setFeedState("live");
    // Subscribed first, then the history: anything committed in between arrives twice and merges by id.
    if (S.lastSeq === null) (await api("/api/alerts?limit=500")).forEach((a) => upsertAlert(a, null));
    render();
  };
  // One message at a time, in order: applying one may wait for an alert fetched from the API.
  ws.onmessage = (m) => { S.inbox = S.inbox.then(() => onEvents(JSON.parse(m.data))).catch(console.error); };
  ws.onclose = async (e) => {
    if (S.ws !== ws || S.stopped) return;
    setFeedState("reconnecting");
    if (e.code === 4401 && !(await refreshTokens())) { showLogin("session ended, please log in again"); return; }
    const delay = Math.min(500 * 2 ** S.retry++, 15000);
    setTimeout(connect, delay);
  };
}

function setFeedState(state) { $("feed-state").dataset.state = state; $("feed-state").textContent = state; }

async function onEvents(events) {
  const news = { sound: false, positions: false };
  for (const ev of events) await applyEvent(ev, news);
  render();
  if (news.sound) beep();  // once per message, however many critical alerts it brought
  if (news.positions) loadPositions().catch(() => {});  // subjects that had no position when the page loaded
  if (events.some((ev) => ev.id === S.selected)) select(S.selected);
}

async function applyEvent(ev, news) {
  S.lastSeq = ev.seq;
  let a = S.alerts.get(ev.id);
  if (!a && ev.type !== "alert") {
    // An action on an alert we have not loaded (older than the list): fetch it.
    (await api(`/api/alerts?subject_id=${encodeURIComponent(ev.subject_id)}&limit=50`))
      .forEach((x) => upsertAlert(x, null));
    a = S.alerts.get(ev.id);
  }
  if (ev.type === "alert") {
    a = upsertAlert({ id: ev.id, rule: ev.rule, subject_id: ev.subject_id, jurisdiction_id: ev.jurisdiction_id,
      severity: ev.severity, status: "open", lifecycle: "open", opened_at: new Date(ev.ts).toISOString(),
      lat: ev.lat, lon: ev.lon, zone_id: ev.zone_id, device_id: ev.device_id, escalation_level: 0 }, news);
  } else if (a) {
    if (ev.type === "cleared") { a.status = "cleared"; a.cleared_at = new Date(ev.ts).toISOString(); }
    if (ev.type === "revised" && ev.data) {  // late fixes moved the episode's event-time start/end
      a.opened_at = new Date(ev.data.opened_at).toISOString();
      if (ev.data.cleared_at) a.cleared_at = new Date(ev.data.cleared_at).toISOString();
    }
    if (ev.type === "acknowledged" && a.lifecycle === "open") a.lifecycle = "acknowledged";
    if (ev.type === "resolved") a.lifecycle = "resolved";
    if (ev.type === "escalated") { a.escalation_level = (a.escalation_level || 0) + 1; cue(a, news); }
  }
  if (ev.lat !== null && ev.lat !== undefined) {
    if (S.markers.has(ev.subject_id)) S.markers.get(ev.subject_id).setLatLng([ev.lat, ev.lon]);
    else news.positions = true;
  }
}

// `news` (from the feed): a new alert is cued; null when loaded from the API.
function upsertAlert(a, news) {
  const had = S.alerts.get(a.id);
  const merged = { ...(had || {}), ...a };
  S.alerts.set(a.id, merged);
  if (!S.rules.has(merged.rule)) {
    S.rules.add(merged.rule);
    fillSelect($("f-rule"), [...S.rules].sort().map((r) => [r, r]));
  }
  if (news && !had) cue(merged, news);
  return merged;
}

// Sound and a flash for critical alerts: an operator may be looking at another screen.
function cue(a, news) {
  if (a.severity !== "critical") return;
  a.flash = true;
  news.sound = true;
}

function beep() {
  try {
    const ctx = new AudioContext(), osc = ctx.createOscillator();
    osc.frequency.value = 880; osc.connect(ctx.destination); osc.start(); osc.stop(ctx.currentTime + 0.3);
  } catch (_) { /* no audio device: the visual cue remains */ }
}

function visible(a) {
  const subject = S.subjects.get(a.subject_id) || {};
  const f = (id) => $(id).value;
  return (!f("f-jurisdiction") || a.jurisdiction_id === f("f-jurisdiction"))
    && (!f("f-risk") || subject.risk_level === f("f-risk"))
    && (!f("f-rule") || a.rule === f("f-rule"))
    && (!f("f-lifecycle") || a.lifecycle === f("f-lifecycle"));
}

function render() {
  const list = $("alerts");
  const shown = [...S.alerts.values()].filter(visible).sort((x, y) => y.id - x.id);
  $("alert-count").textContent = String(shown.length);
  list.replaceChildren(...shown.map((a) => {
    const li = document.createElement("li");
    Object.assign(li.dataset, { alertId: a.id, subjectId: a.subject_id, severity: a.severity,
      lifecycle: a.lifecycle, status: a.status });
    const subject = S.subjects.get(a.subject_id);
    li.textContent = `#${a.id} ${a.rule} · ${subject ? subject.name : a.subject_id} · ${a.severity}`
      + ` · ${a.status}/${a.lifecycle}${a.escalation_level ? ` · ↑${a.escalation_level}` : ""}`;
    if (a.flash) { li.classList.add("flash"); a.flash = false; }
    if (S.selected === a.id) li.classList.add("selected");
    li.onclick = () => select(a.id);
    return li;
  }));
}

async function select(id) {
  S.selected = id;
  render();
  const packet = await api(`/api/alerts/${id}/evidence`);
  const a = packet.alert;
  S.alerts.set(id, { ...S.alerts.get(id), ...a });
  $("detail").hidden = false;
  $("detail-title").textContent = `#${a.id} ${a.rule} (${a.severity})`;
  const facts = { subject: a.subject_id, jurisdiction: a.jurisdiction_id, opened: a.opened_at,
    episode: a.status, handling: a.lifecycle, "acknowledged by": a.acknowledged_by,
    resolution: a.resolution_category && `${a.resolution_category}: ${a.resolution_note}`,
    escalated: a.escalated_to && `level ${a.escalation_level} → ${a.escalated_to}`,
    zone: packet.zone && `${packet.zone.id} v${packet.zone.properties.version}`, fixes: packet.fixes.length,
    "worst accuracy (m)": Math.max(0, ...packet.fixes.map((f) => f.acc || 0)) };
  $("detail-facts").replaceChildren(...Object.entries(facts).filter(([, v]) => v !== null && v !== undefined)
    .flatMap(([k, v]) => [Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: String(v) })]));
  $("ack").disabled = a.lifecycle !== "open";
  $("resolve").disabled = a.lifecycle === "resolved";
  S.track.clearLayers();
  const to = new Date(), from = new Date(to - 6 * 3600 * 1000);
  const track = await api(`/api/subjects/${encodeURIComponent(a.subject_id)}/track`
    + `?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
  L.geoJSON(track.features[0], { style: { color: "#6a1b9a", weight: 3 } }).addTo(S.track);
  for (const f of packet.fixes) {
    L.circle([f.lat, f.lon], { radius: f.acc || 5, color: "#6a1b9a", weight: 1, fillOpacity: 0.15 })
      .addTo(S.track);
  }
  if (packet.zone) L.geoJSON(packet.zone, { style: { color: "#000", dashArray: "4 4", weight: 2 } }).addTo(S.track);
  if (a.lat !== null) S.map.setView([a.lat, a.lon], Math.max(S.map.getZoom(), 14));
}

async function act(path, body) {
  $("detail-error").textContent = "";
  try {
    await api(path, { method: "POST", body: body ? JSON.stringify(body) : undefined });
  } catch (e) { $("detail-error").textContent = e.message; }
  await select(S.selected);
}

$("login-form").addEventListener("submit", (e) => login(e).catch((x) => { $("login-error").textContent = x.message; }));
$("ack").onclick = () => act(`/api/alerts/${S.selected}/ack`);
$("resolve").onclick = () => act(`/api/alerts/${S.selected}/resolve`,
  { category: $("resolve-category").value, note: $("resolve-note").value });
$("logout").onclick = async () => {
  if (S.refresh) await api("/api/auth/logout", { method: "POST", body: JSON.stringify({ refresh_token: S.refresh }) })
    .catch(() => {});
  sessionStorage.removeItem("emwatch.refresh"); S.refresh = null;
  showLogin();
};
for (const id of ["f-jurisdiction", "f-risk", "f-rule", "f-lifecycle"]) $(id).onchange = render;
// A reload keeps the session while the refresh token lives.
if (S.refresh) refreshTokens().then((ok) => (ok ? start() : showLogin())).catch(() => showLogin());
