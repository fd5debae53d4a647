// alara-edge console: state from /api/state, live updates from /api/events (server-sent events).
// No external resources; every value from the agent is inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const SEVERITY_RANK = { info: 1, warning: 2, critical: 3 };
// a dose's colour in words, for a screen reader (and anyone who does not tell the colours apart)
const LEVEL_WORDS = { ok: "below its reference level", above: "at or above its reference level",
                      warning: "warning alert", critical: "critical alert", alert: "alert" };
const app = { bannerExpanded: false, held: null, csrf: "", reasons: [], alerts: new Map(), studies: [], procedure: null, health: null, alarms: [],
              setAside: null, setAsideExpanded: false, setAsideOpen: new Set(),
              audio: null, soundWanted: false, ackFor: null, source: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the page's CSP
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// times in the station's time zone (the agent's, not the browser's: a kiosk image may be left on UTC)
function inZone(d, options) {
  try { return d.toLocaleString([], { ...options, timeZone: app.timeZone || undefined }); }
  catch (err) { return d.toLocaleString([], options); } // a zone this browser does not know
}

function clockTime(d) { return inZone(d, { hour: "2-digit", minute: "2-digit" }); }

function localTime(iso) { // the time, and the date when it is not today's: yesterday's study must not look like today's
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const day = (x) => inZone(x, { year: "numeric", month: "2-digit", day: "2-digit" });
  return day(d) === day(new Date()) ? clockTime(d) : `${inZone(d, { day: "numeric", month: "short" })} ${clockTime(d)}`;
}

// ---- state -----------------------------------------------------------------------------
async function loadState() {
  // Events that arrive while the snapshot is on its way are held and replayed on top of it:
  // the snapshot may have been taken before them, and must not overwrite them.
  app.held = [];
  try {
    await applyState();
  } finally {
    const held = app.held;
    app.held = null;
    for (const [handler, data] of held) {
      try { handler(data); } catch (err) { console.error(err); }
    }
  }
}

async function applyState() {
  const response = await fetch("/api/state", { cache: "no-store", credentials: "same-origin" });
  if (response.status === 401) { location.reload(); return; }
  if (!response.ok) throw new Error(`state: HTTP ${response.status}`);
  const state = await response.json();
  app.csrf = state.csrf;
  tokenArrived();
  app.reasons = state.reasons;
  app.timeZone = state.timezone;
  $("station").textContent = `${state.site} · ${state.station}`;
  if (state.sound && !app.audio) enableSound(false);
  app.alerts = new Map(state.alerts.map((a) => [a.id, a]));
  app.studies = state.studies;
  app.procedure = state.procedure;
  app.health = state.health;
  app.alarms = state.alarms;
  app.setAside = state.set_aside;
  renderBanner(); renderSetAside(); renderStudies(); renderProcedure(); renderHealth();
}

const SILENT_MS = 12500; // the agent pings every 5 s: this long without any event, it is hung (or the network is)

function connect() {
  const source = new EventSource("/api/events");
  app.source = source;
  app.heard = Date.now();
  source.addEventListener("ping", () => { app.heard = Date.now(); });
  // "live" only once the state is loaded: until then the page has no CSRF token to act with
  source.onopen = () => {
    loadState().then(() => setLive(true), () => {
      setLive(false);
      setTimeout(() => { if (app.source === source && source.readyState === EventSource.OPEN) source.onopen(); }, 2000);
    });
  };
  source.onerror = () => {
    setLive(false);
    if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
    // Refused: the agent may be down (try again), or no longer take this page's token (it was
    // changed): then only the login page can help, and the page must not wait for ever.
    fetch("/api/state", { cache: "no-store", credentials: "same-origin" })
      .then((r) => { if (r.status === 401) location.reload(); else setTimeout(connect, 2000); },
            () => setTimeout(connect, 2000));
  };
  on(source, "alert", (alert) => {
    const known = app.alerts.has(alert.id);
    if (!alert.acknowledged) app.alerts.set(alert.id, alert);
    renderBanner();
    if (!known && !alert.acknowledged) beep(alert.severity);
  });
  on(source, "ack", (alert) => {
    app.alerts.delete(alert.id);
    if (app.ackFor && app.ackFor.id === alert.id) closeAck();
    renderBanner();
  });
  on(source, "studies", (studies) => { app.studies = studies; renderStudies(); });
  on(source, "set_aside", (setAside) => { app.setAside = setAside; renderSetAside(); renderHealth(); });
  on(source, "procedure", (procedure) => { app.procedure = procedure; renderProcedure(); });
  on(source, "health", (health) => { app.health = health; renderHealth(); });
  on(source, "alarm", (alarm) => {
    if (alarm.cleared) app.alarms = app.alarms.filter((a) => a.kind !== alarm.kind);
    else app.alarms.unshift(alarm);
    renderHealth();
  });
}

function on(source, event, handler) {
  source.addEventListener(event, (e) => {
    app.heard = Date.now();
    try {
      const data = JSON.parse(e.data);
      if (app.held) app.held.push([handler, data]); else handler(data);
    } catch (err) { console.error(event, err); }
  });
}

function setLive(live) {
  const node = $("live");
  if (!live && !app.offSince) app.offSince = new Date();
  if (live) app.offSince = null;
  node.className = `live ${live ? "on" : "off"}`;
  node.textContent = live ? "live" : `offline since ${clockTime(app.offSince)}`;
  // what is on screen may be out of date: it must not look live (no pulse, greyed, no acknowledging)
  document.body.classList.toggle("stale", !live);
  if (!live) node.title = "The agent does not answer: the alerts and doses shown may be out of date.";
  else node.removeAttribute("title");
}

function watchdog() { // a hung agent (or a cut network) keeps the connection open and says nothing
  const source = app.source;
  if (!source || source.readyState !== EventSource.OPEN || Date.now() - app.heard < SILENT_MS) return;
  source.close();
  setLive(false);
  setTimeout(connect, 1000);
}

// ---- banner ------------------------------------------------------------------------------
function openAlerts() {
  return [...app.alerts.values()].filter((a) => !a.acknowledged).sort((a, b) =>
    (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0) || String(b.raised_at).localeCompare(String(a.raised_at)));
}

function alertDetail(alert) {
  const parts = [];
  if (alert.accession_number) parts.push(`Acc ${alert.accession_number}`);
  if (alert.exam) parts.push(alert.exam);
  if (alert.level) parts.push(alert.level);
  if (alert.raised_at) parts.push(localTime(alert.raised_at));
  if (alert.source) parts.push(alert.source);
  return parts.join(" · ");
}

function renderBanner() {
  const banner = $("banner");
  const alerts = openAlerts();
  // the banner is rebuilt: a keyboard user's focus in it stays on the same alert (or the next one)
  const focused = banner.contains(document.activeElement) ? document.activeElement : null;
  const focusedId = focused && focused.closest(".item") ? focused.closest(".item").dataset.alertId : null;
  const wasMore = focused && focused.classList.contains("more");
  banner.replaceChildren();
  if (!alerts.length) { banner.hidden = true; if (focused) $("new-patient").focus(); return; }
  const top = alerts[0].severity || "warning";
  banner.className = `banner ${top}`;
  const shown = window.innerHeight < 600 ? 2 : 3; // keep the kiosk's panels on screen
  const expanded = app.bannerExpanded && alerts.length > shown; // every open alert, in a list that scrolls
  banner.classList.toggle("expanded", expanded);
  const items = el("div", { class: "items" });
  for (const alert of expanded ? alerts : alerts.slice(0, shown)) {
    items.append(el("div", { class: "item", dataset: { alertId: alert.id }, role: "alert" },
      el("div", { class: "text" },
        el("div", { class: "headline" }, el("span", { class: "sev" }, alert.severity || "alert"), alert.message || alert.kind),
        el("div", { class: "detail" }, alertDetail(alert))),
      el("button", { type: "button", class: "ack", onclick: () => openAck(alert) }, "Acknowledge")));
  }
  banner.append(items);
  if (alerts.length > shown) {
    const hidden = alerts.slice(shown);
    const critical = hidden.filter((a) => a.severity === "critical").length;
    const label = expanded ? "Show fewer"
      : `+ ${hidden.length} more open alert${hidden.length > 1 ? "s" : ""}${critical ? ` (${critical} critical)` : ""}: show all`;
    banner.append(el("button", { type: "button", class: "more", "aria-expanded": expanded ? "true" : "false",
                                 onclick: () => { app.bannerExpanded = !expanded; renderBanner(); } }, label));
  } else {
    app.bannerExpanded = false;
  }
  banner.hidden = false;
  if (focused) {
    const same = focusedId && [...banner.querySelectorAll(".item")].find((n) => n.dataset.alertId === focusedId);
    const target = (wasMore && banner.querySelector("button.more")) || (same && same.querySelector("button.ack"))
      || banner.querySelector("button.ack");
    target.focus();
  }
}

// ---- acknowledgement -----------------------------------------------------------------------
function openAck(alert) {
  app.ackFor = alert;
  const critical = alert.severity === "critical";
  // what is acknowledged, short enough for the kiosk's 480 px: the rule's source citation only on hover
  const where = [alert.accession_number && `Acc ${alert.accession_number}`, alert.exam, localTime(alert.raised_at)];
  $("ack-alert").textContent = `${alert.message || alert.kind} — ${where.filter(Boolean).join(" · ")}`;
  $("ack-alert").title = alert.source || "";
  $("ack-required").textContent = critical ? "(required for a critical alert)" : "(optional)";
  const reasons = $("ack-reasons");
  reasons.querySelectorAll("label").forEach((n) => n.remove());
  for (const reason of app.reasons) {
    reasons.append(el("label", {}, el("input", { type: "radio", name: "reason", value: reason, required: critical }), reason));
  }
  $("ack-by").value = ""; $("ack-note").value = ""; $("ack-error").textContent = "";
  $("ack-submit").disabled = false;
  $("ack-dialog").showModal();
  $("ack-by").focus();
}

function closeAck() {
  app.ackFor = null;
  if ($("ack-dialog").open) $("ack-dialog").close();
}

async function submitAck(event) {
  event.preventDefault();
  const alert = app.ackFor;
  if (!alert) return;
  const by = $("ack-by").value.trim();
  const chosen = document.querySelector("#ack-reasons input:checked");
  const reason = chosen ? chosen.value : "";
  const note = $("ack-note").value.trim();
  const error = $("ack-error");
  if (!by) { error.textContent = "Enter your operator id."; return; }
  if (alert.severity === "critical" && !reason) { error.textContent = "A reason is required for a critical alert."; return; }
  if (reason === "other" && !note) { error.textContent = "Describe the reason in the note."; return; }
  $("ack-submit").disabled = true;
  try {
    const response = await post(`/api/alerts/${encodeURIComponent(alert.id)}/ack`, { by, reason, note });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    app.alerts.delete(alert.id);
    closeAck();
    // the button that opened the dialog is gone: keyboard focus goes to the next alert's (or New patient)
    ($("banner").querySelector("button.ack") || $("new-patient")).focus();
    renderBanner();
  } catch (err) {
    error.textContent = `Not recorded: ${err.message}`;
    $("ack-submit").disabled = false;
  }
}

let tokenArrived;
const tokenReady = new Promise((resolve) => { tokenArrived = resolve; });

async function post(url, body) {
  await tokenReady; // a click before the first state has arrived waits for its CSRF token
  const send = () => fetch(url, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": app.csrf }, body: JSON.stringify(body) });
  const response = await send();
  if (response.status !== 403) return response;
  // the agent restarted (without a token its CSRF token is new) before the page heard it come back:
  // take the new one and send once more, rather than refuse what the technologist entered
  const state = await fetch("/api/state", { cache: "no-store", credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null), () => null);
  if (!state || !state.csrf || state.csrf === app.csrf) return response;
  app.csrf = state.csrf;
  return send();
}

// ---- fluoroscopy procedure ------------------------------------------------------------------
function renderProcedure() {
  const box = $("gauges");
  box.replaceChildren();
  const gauges = app.procedure ? Object.entries(app.procedure.gauges || {}) : [];
  if (!gauges.length) { box.append(el("p", { class: "muted" }, "No DAP meter reading in this procedure.")); return; }
  for (const [quantity, g] of gauges) {
    const bar = el("div", { class: "bar" }, el("div", { class: "fill", style: { width: `${Math.round((g.fraction ?? 0) * 100)}%` } }));
    for (const mark of g.marks) if (mark.position !== null) bar.append(el("div", { class: "mark", style: { left: `calc(${(mark.position * 100).toFixed(1)}% - 1px)` }, title: mark.label }));
    box.append(el("div", { class: `gauge ${g.level}`, dataset: { quantity } },
      el("div", { class: "head" }, el("span", {}, g.label), el("span", { class: "value" }, `${g.display} ${g.unit}`)),
      bar,
      g.marks.length ? el("div", { class: "marks" }, g.marks.map((m) => `${m.label} ${m.display}`).join(" · ")) : null));
  }
}

async function newPatient() {
  const message = $("procedure-message");
  $("new-patient").disabled = true;
  try {
    const response = await post("/api/procedure/new", {});
    const body = await response.json().catch(() => ({}));
    message.textContent = response.ok ? "New procedure started." : (body.error || `HTTP ${response.status}`);
  } catch (err) {
    message.textContent = err.message;
  } finally {
    $("new-patient").disabled = false;
  }
}

// ---- studies -------------------------------------------------------------------------------
function renderStudies() {
  const body = $("studies").tBodies[0];
  body.replaceChildren();
  if (!app.studies.length) {
    body.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No study received yet.")));
    return;
  }
  for (const study of app.studies) {
    body.append(el("tr", { class: `level-${study.level}`, dataset: { study: study.study_instance_uid } },
      el("td", { class: "time" }, localTime(study.received_at)),
      el("td", { class: "accession" }, study.accession_number || "–"),
      el("td", { class: "exam" }, study.exam || study.modality || "–", study.patient_name ? el("div", { class: "muted small" }, study.patient_name) : null),
      el("td", {}, study.doses.map((d) => el("span", { class: `dose level-${d.level}`, title: d.reference || "" },
        `${d.label} ${d.display} ${d.unit}`, LEVEL_WORDS[d.level] ? el("span", { class: "sr" }, ` (${LEVEL_WORDS[d.level]})`) : null)))));
  }
}

// ---- dose reports set aside unchecked (information: nothing to acknowledge) -----------------------
const SET_ASIDE_WHAT = { error: "could not be read",
                         duplicate_differs: "came again under a stored UID with other doses" };

function renderSetAside() {
  const box = $("set-aside"), list = $("set-aside-list");
  const items = app.setAside ? app.setAside.items : [];
  const focused = box.contains(document.activeElement) ? document.activeElement : null;
  const focusedId = focused && focused.dataset.receipt;
  list.replaceChildren();
  box.hidden = !items.length;
  if (!items.length) { app.setAsideExpanded = false; return; }
  const shown = window.innerHeight < 600 ? 1 : 3; // the studies below stay on the kiosk's screen
  const expanded = app.setAsideExpanded && items.length > shown;
  for (const item of expanded ? items : items.slice(0, shown)) {
    const open = app.setAsideOpen.has(item.id);
    const head = [localTime(item.received_at), item.sender, item.what].filter(Boolean).join(" · ");
    // a tap (or Enter) shows the whole reason; the row stays until it is a day old
    const toggle = () => { if (!app.setAsideOpen.delete(item.id)) app.setAsideOpen.add(item.id); renderSetAside(); };
    list.append(el("li", { class: `item ${item.status}` },
      el("button", { type: "button", class: open ? "open" : null, "aria-expanded": open ? "true" : "false",
                     dataset: { receipt: item.id }, onclick: toggle },
        el("span", { class: "what" },
          `${head} ${SET_ASIDE_WHAT[item.status] || "set aside"}: no dose check ran — tell the physicist`),
        el("span", { class: "reason" }, item.reason || ""))));
  }
  const hidden = items.length - shown;
  if (hidden > 0) {
    list.append(el("li", {}, el("button", { type: "button", class: "more", "aria-expanded": expanded ? "true" : "false",
      onclick: () => { app.setAsideExpanded = !expanded; renderSetAside(); } },
      expanded ? "Show fewer" : `+ ${hidden} more not checked: show all`)));
  }
  const older = app.setAside.total - items.length;
  if (expanded && older > 0) {
    list.append(el("li", { class: "muted small" }, `${older} more: alara-edge studies lists them`));
  }
  if (focused) {
    const target = (focusedId && list.querySelector(`button[data-receipt="${CSS.escape(focusedId)}"]`))
      || list.querySelector("button.more") || list.querySelector("button");
    if (target) target.focus();
  }
}

// ---- health --------------------------------------------------------------------------------
function chip(name, ok, text) {
  const cls = ok === true ? "ok" : ok === false ? "bad" : ok === "warn" ? "warn" : "unknown";
  return el("li", { class: cls, dataset: { part: name } }, text);
}

function renderHealth() {
  const list = $("health");
  list.replaceChildren();
  const h = app.health;
  if (!h) return;
  const p = h.parts;
  list.append(chip("dicom", p.dicom.ok, p.dicom.ok === null ? "DICOM off" : p.dicom.ok ? `DICOM :${p.dicom.port}` : "DICOM down"));
  list.append(chip("broker", p.broker.ok, p.broker.ok === null ? "Uplink off" : p.broker.ok ? "Central ✓" : "Central offline"));
  const backlog = p.backlog.pending + p.backlog.inflight;
  list.append(chip("backlog", p.backlog.ok && backlog < 1000 ? true : p.backlog.ok ? "warn" : false,
    `Backlog ${backlog}${p.backlog.dead ? ` · ${p.backlog.dead} failed` : ""}`));
  const devices = p.serial.devices || [];
  if (devices.length) {
    const up = devices.filter((d) => d.connected).length;
    const over = devices.filter((d) => d.overload).map((d) => d.device);
    list.append(over.length ? chip("serial", false, `Overload: ${over.join(", ")} not measuring`)
      : chip("serial", up === devices.length, `Meters ${up}/${devices.length}`));
  }
  if (!p.store.ok) list.append(chip("store", false, "Store not writable"));
  const rejected = app.setAside ? app.setAside.rejected : 0; // images a router forwards: noise, only counted
  if (rejected) list.append(el("li", { class: "unknown", dataset: { part: "rejected" },
    title: "Objects that are not dose reports (images a router forwards), kept aside: alara-edge studies lists them" },
    `${rejected} non-dose object${rejected > 1 ? "s" : ""} set aside (24 h)`));
  // alarms the uplink keeps (e.g. store quota reached), and those heard on the bus since the agent started
  const alarms = new Map();
  for (const alarm of [...(p.broker.alarms || []), ...app.alarms]) if (alarm && alarm.kind && !alarms.has(alarm.kind)) alarms.set(alarm.kind, alarm);
  for (const alarm of alarms.values()) list.append(el("li", { class: "warn", dataset: { part: "alarm" }, title: alarm.at || "" },
    `${alarm.kind.replaceAll("_", " ")} ${localTime(alarm.at)}`.trim()));
}

// ---- sound (WebAudio, no file) ----------------------------------------------------------------
function enableSound(fromClick) {
  try {
    if (!app.audio) {
      app.audio = new AudioContext();
      app.audio.onstatechange = () => updateSoundButton(); // resume() is asynchronous: say "Sound on" when it is
    }
    if (app.audio.state === "suspended") app.audio.resume();
    app.soundWanted = true;
  } catch (err) { app.soundWanted = false; }
  updateSoundButton(fromClick);
}

function updateSoundButton() {
  const on = app.soundWanted && app.audio && app.audio.state === "running";
  const button = $("sound");
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.textContent = on ? "Sound on" : app.soundWanted ? "Tap for sound" : "Sound off";
}

function beep(severity) {
  const ctx = app.audio;
  // a tone for warning and critical only (as `alerts --follow` rings): info flags a quarter of exams
  if ((SEVERITY_RANK[severity] || 0) < SEVERITY_RANK.warning) return;
  if (!app.soundWanted || !ctx || ctx.state !== "running") return;
  const tones = severity === "critical" ? [880, 660, 880, 660] : [880, 660];
  tones.forEach((freq, i) => {
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    const t = ctx.currentTime + i * 0.22;
    osc.frequency.value = freq; osc.type = "square";
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t); osc.stop(t + 0.21);
  });
}

// ---- start ---------------------------------------------------------------------------------
function tick() { $("clock").textContent = clockTime(new Date()); watchdog(); }

document.addEventListener("DOMContentLoaded", () => {
  $("ack-form").addEventListener("submit", submitAck);
  $("ack-cancel").addEventListener("click", closeAck);
  $("new-patient").addEventListener("click", newPatient);
  $("sound").addEventListener("click", () => {
    if (app.soundWanted && app.audio && app.audio.state === "running") { app.soundWanted = false; updateSoundButton(); }
    else enableSound(true);
  });
  tick(); setInterval(tick, 2000);
  renderProcedure(); renderStudies(); renderSetAside();
  connect();
});
