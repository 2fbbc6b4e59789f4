"use strict";
// The pipeline's page: plain JS, no build. Talks to /api/* and listens on /ws for SAMP events.
const params = new URLSearchParams(location.search);
const token = params.get("token");
const headers = token ? { "Authorization": "Bearer " + token } : {};
const state = { obs: {}, shapes: {}, dets: {}, received: [] };
window.pipeline = state;  // tests and the bench read this

function say(text) { document.getElementById("message").textContent = text; }

async function api(method, path, body) {
  const opts = { method, headers: Object.assign({ "Content-Type": "application/json" }, headers) };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || data.error || (method + " " + path + ": HTTP " + r.status));
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function withToken(url) { return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url; }

// the first screenful of thumbnails loads at once (lazy loading above the fold only delays them);
// the rest load as they scroll near
const EAGER_THUMBS = 12;

function card(o, stages, index) {
  const c = el("div", { class: "obs" + (o.flag ? " flagged" : ""), id: "obs-" + o.id, "data-item": o.item });
  c.append(el("h2", {}, o.item));
  const th = el("div", { class: "thumb" });
  const src = withToken("api/obs/" + o.id + "/thumb.png");
  th.append(el("img", { src, alt: o.item, loading: index < EAGER_THUMBS ? "eager" : "lazy", onerror: () => thumbFailed(th, src) }));
  th.append(document.createElementNS("http://www.w3.org/2000/svg", "svg"));
  c.append(th);
  const st = el("div", { class: "stages" });
  for (const s of stages) {
    const v = o.stages[s];
    const status = v ? v.status : "none";
    st.append(el("span", { class: "st " + status, "data-stage": s, title: v ? v.reason : "" }, s + ": " + status));
    st.append(el("button", { class: "rerun", "data-stage": s, onclick: () => runStage(s, [o.id]) }, "run"));
    if (v && v.reason) st.append(el("div", { class: "reason" }, s + ": " + v.reason));
  }
  c.append(st);
  const note = el("input", { class: "flag-note", placeholder: "note", value: o.flag ? o.flag.note : "" });
  c.append(el("div", { class: "flagging" },
    o.flag ? el("span", { class: "flag-text" }, "flagged: " + o.flag.note + " ") : null,
    note,
    o.flag ? el("button", { class: "unflag", onclick: () => unflag(o.id) }, "unflag")
           : el("button", { class: "flag", onclick: () => flag(o.id, note.value) }, "flag")));
  if (o.has_catalog) c.append(el("button", { class: "send", onclick: () => send(o.id) }, "send to TOPCAT"));
  c.append(el("div", { class: "hl-rows" }));
  if (o.has_catalog) loadDetections(o.id, c);
  return c;
}

// a thumbnail that did not load says why on the card (the server's one line), not a broken icon
async function thumbFailed(th, src) {
  let why;
  try {
    const r = await fetch(src, { headers });
    const d = await r.json().catch(() => ({}));
    why = r.ok ? "the browser could not decode the image" : (d.detail || "HTTP " + r.status);
  } catch (e) { why = String(e.message); }
  th.classList.add("no-thumb");
  th.setAttribute("data-error", why);
  th.append(el("div", { class: "thumb-error" }, "no thumbnail: " + why));
}

async function loadDetections(id, c) {
  const d = await api("GET", "api/obs/" + id + "/detections");
  state.dets[id] = d.detections;
  if (!d.shape) return;
  const [h, w] = d.shape;
  const svg = c.querySelector("svg");
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.innerHTML = "";
  for (const s of d.detections) {
    const ci = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    ci.setAttribute("cx", s.x + 0.5); ci.setAttribute("cy", h - (s.y + 0.5)); ci.setAttribute("r", Math.max(2, w / 40));
    ci.setAttribute("class", s.detector); ci.setAttribute("data-row", s.row);
    const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
    t.textContent = s.detector + " row " + s.row + " flux " + s.flux.toPrecision(3);
    ci.append(t); svg.append(ci);
  }
}

async function refresh() {
  const d = await api("GET", "api/observations");
  const main = document.getElementById("observations");
  // a note being typed survives the re-render (another run or flag, here or in another page, ends
  // in a refresh): the typed text and the focus are put back on the new card
  const typed = {};
  for (const n of main.querySelectorAll(".obs .flag-note")) {
    const id = n.closest(".obs").id;
    if (n === document.activeElement || n.value !== n.defaultValue) typed[id] = { value: n.value, focus: n === document.activeElement };
  }
  main.innerHTML = "";
  d.observations.forEach((o, i) => { state.obs[o.id] = o; main.append(card(o, d.stages, i)); });
  for (const [id, t] of Object.entries(typed)) {
    const n = document.querySelector('[id="' + id + '"] .flag-note');
    if (n) { n.value = t.value; if (t.focus) n.focus(); }
  }
  document.body.setAttribute("data-rendered", String(d.observations.length));
  window.pipelineRenderedAt = performance.now();
}

async function runStage(stage, ids) {
  say("running " + stage + (ids.length ? " on " + ids.join(", ") : " on every observation") + " ...");
  try {
    const r = await api("POST", "api/run", { stage, items: ids, restart: document.getElementById("restart").checked });
    say(stage + ": " + r.done + " done, " + r.flagged + " flagged, " + r.failed + " failed (" + r.processed + " processed)");
  } catch (e) { say(String(e.message)); }
  await refresh();
}

async function flag(id, note) {
  try { await api("POST", "api/obs/" + id + "/flag", { note }); say("flagged " + id); } catch (e) { say(e.message); }
  await refresh();
}
async function unflag(id) {
  try { await api("POST", "api/obs/" + id + "/unflag"); say("unflagged " + id); } catch (e) { say(e.message); }
  await refresh();
}
async function send(id) {
  try { const r = await api("POST", "api/obs/" + id + "/send", { to: "topcat" }); say("sent " + id + " to " + r.sent); }
  catch (e) { say(e.message); }
}

function highlight(ev) {
  document.querySelectorAll(".obs.hl").forEach(x => x.classList.remove("hl"));
  document.querySelectorAll("circle.hl").forEach(x => x.classList.remove("hl"));
  const c = document.getElementById("obs-" + ev.item);
  if (!c) { say(ev.type + ": " + (ev.item || ev.table_id || "") + " is not on this page"); return false; }
  c.classList.add("hl");
  for (const r of ev.rows || []) {
    const ci = c.querySelector('circle[data-row="' + r + '"]');
    if (ci) ci.classList.add("hl");
  }
  c.querySelector(".hl-rows").textContent = "SAMP " + ev.type + ": rows " + (ev.rows || []).join(", ");
  c.scrollIntoView({ block: "nearest" });
  const note = c.querySelector(".flag-note");
  if (note && !note.value) note.value = "rows " + (ev.rows || []).join(",") + " (" + (ev.sender || "SAMP") + ")";
  if (note) note.focus();
  return true;
}

function onEvent(ev) {
  const t = Date.now();
  if (ev.type === "hello") { document.getElementById("ws-state").textContent = "page link: live"; return; }
  if (ev.type === "run" || ev.type === "flag" || ev.type === "unflag") { refresh(); return; }
  let shown = false;
  if (ev.type === "table.load.votable") say("SAMP: " + (ev.sender || "") + " loaded table " + (ev.name || ev.url));
  else if (ev.item) shown = highlight(ev);
  else if (ev.type === "coord.pointAt.sky") say("SAMP: point at " + ev.ra.toFixed(5) + " " + ev.dec.toFixed(5) + ": no detection within reach");
  else say("SAMP " + ev.type + " for table " + (ev.table_id || "?") + ": not one of this app's catalogs");
  state.received.push(Object.assign({ t_page_ms: t, t_shown_ms: Date.now(), shown }, ev));
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(withToken(proto + "//" + location.host + location.pathname.replace(/[^/]*$/, "") + "ws"));
  ws.onmessage = m => onEvent(JSON.parse(m.data));
  ws.onclose = () => { document.getElementById("ws-state").textContent = "page link: reconnecting"; setTimeout(connect, 1000); };
  state.ws = ws;
}

async function sampState() {
  try {
    const s = await api("GET", "api/samp");
    document.getElementById("samp-state").textContent = !s.enabled ? "SAMP: off" : s.connected ? "SAMP: connected" : "SAMP: " + (s.error || "connecting");
  } catch (e) { /* shown on the next try */ }
}

document.getElementById("run-products").addEventListener("click", () => runStage("products", []));
document.getElementById("run-image").addEventListener("click", () => runStage("image", []));
connect();
refresh().catch(e => say(e.message));
sampState(); setInterval(sampState, 5000);
