// smartbin web page: upload a photo to /api/classify, and follow /api/status live.
// Plain browser JavaScript, no build step. Text from the server is only ever set with
// textContent, never parsed as HTML, so a label cannot inject markup.
"use strict";

const state = { maxUploadBytes: 10 * 1024 * 1024, previewUrl: null, request: 0, polling: null, events: null };

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const percent = (p) => `${(100 * p).toFixed(1)} %`;
// Rounded down: a confidence of 0.5996 must not read as the 60.0 % it failed to reach.
const percentDown = (p) => `${(Math.floor(1000 * p) / 10).toFixed(1)} %`;
// 0.5 MB stays 0.5 MB (toFixed(0) would call it 1 MB and contradict the size check).
const megabytes = (bytes) => String(Number((bytes / 1048576).toFixed(1)));
// hasOwnProperty, not Object.hasOwn: phones older than iOS 15.4 lack the latter.
const own = (object, key) => (object && Object.prototype.hasOwnProperty.call(object, key) ? object[key] : 0);

function number(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number.isInteger(value) ? String(value) : Number(value).toFixed(digits);
}

function duration(seconds) {
  const s = Math.floor(seconds || 0);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

// ---- upload & classify ---------------------------------------------------------------

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// A phone photo of 48 MP or more can pass the upload limit, and the model only needs a few hundred
// pixels: photos over SHRINK_ABOVE_BYTES (or over the bin's upload limit, if lower) are shrunk in the
// browser to at most SHRINK_TO_SIDE pixels (1024, then 512, while still over the limit)
// (EXIF orientation applied) and sent as JPEG. Formats the bin cannot read (AVIF, HEIC in Safari)
// are converted whatever their size, when the browser can draw them; otherwise they go as they are
// and the server says why it refuses them.
const SHRINK_ABOVE_BYTES = 2 * 1048576;
const SHRINK_TO_SIDE = 2048;
const BIN_READS = ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif"];
// An answer takes well under a second; a request still open after this is stuck (a full connection
// pool, a hung bin) and the user is told instead of watching "Classifying…" for ever.
const CLASSIFY_TIMEOUT_MS = 60000;

async function shrink(file) {
  const readable = !file.type || BIN_READS.includes(file.type);
  const above = Math.min(SHRINK_ABOVE_BYTES, state.maxUploadBytes);
  if ((readable && file.size <= above) || !window.createImageBitmap) return file;
  try {
    const bitmap = await createImageBitmap(file);
    let blob = null;
    // Smaller until it fits the bin's limit: the model needs a few hundred pixels, not 2048.
    for (const side of [SHRINK_TO_SIDE, 1024, 512]) {
      blob = await drawnAsJpeg(bitmap, Math.min(1, side / Math.max(bitmap.width, bitmap.height)));
      if (!blob || blob.size <= state.maxUploadBytes) break;
    }
    bitmap.close();
    if (!blob || blob.size >= file.size) return file;
    const name = (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg";
    return new File([blob], name, { type: "image/jpeg" });
  } catch (_) {
    return file;  // e.g. HEIC in a browser that cannot decode it: the server gives the reason
  }
}

async function drawnAsJpeg(bitmap, scale) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  const context = canvas.getContext("2d");
  // JPEG has no transparency: a canvas left clear would turn a cut-out's background black, where
  // the bin (and the server, for an upload sent as it is) shows transparent parts on white.
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function classify(original) {
  clearError();
  if (!original) return;
  $("busy").textContent = "Preparing the photo…";  // shrinking a 48 MP photo takes a moment on a phone
  $("busy").hidden = false;
  const file = original.type && !original.type.startsWith("image/") ? original : await shrink(original);
  $("busy").hidden = true;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`“${file.name}” is not a photo (${file.type}). Choose a JPEG, PNG, WebP, BMP or GIF image.`);
    return;
  }
  if (file.size === 0) {
    showError(`“${file.name}” is empty.`);
    return;
  }
  if (file.size > state.maxUploadBytes) {
    showError(`“${file.name}” is ${megabytes(file.size)} MB; the limit is ${megabytes(state.maxUploadBytes)} MB.`);
    return;
  }
  // Each upload keeps its own preview; only the newest one's answer is shown, so a slow answer
  // to an earlier photo can never appear beside a later photo.
  const request = ++state.request;
  const previewUrl = URL.createObjectURL(file);
  $("busy").textContent = "Classifying…";
  $("busy").hidden = false;
  const form = new FormData();
  form.append("image", file, file.name || "photo.jpg");
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), CLASSIFY_TIMEOUT_MS);
  try {
    const response = await fetch("/api/classify", { method: "POST", body: form, signal: abort.signal });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (request !== state.request) {
      URL.revokeObjectURL(previewUrl);
      return;
    }
    if (!response.ok) {
      URL.revokeObjectURL(previewUrl);
      const reason = body && body.error ? body.error : `the server answered ${response.status}`;
      showError(`Could not classify this photo: ${reason}.`);
      $("result").hidden = true;
      return;
    }
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = previewUrl;
    showResult(body);
  } catch (err) {
    if (previewUrl !== state.previewUrl) URL.revokeObjectURL(previewUrl);
    if (request !== state.request) return;
    showError(err && err.name === "AbortError"
      ? `No answer from the bin after ${CLASSIFY_TIMEOUT_MS / 1000} s. Close other tabs of this page and try again.`
      : "Could not reach the bin. Is it still running? Try again in a moment.");
  } finally {
    clearTimeout(timer);
    if (request === state.request) $("busy").hidden = true;
  }
}

function verdictText(result) {
  const unsure = result.min_confidence != null && result.confidence < result.min_confidence;
  if (result.rejected && unsure) {
    return `Not sure. It looks most like ${result.label} (${percentDown(result.confidence)}), below the ` +
      `${percent(result.min_confidence)} needed, so it would go to the ${result.bin} bin for a person to check.`;
  }
  if (result.rejected) {  // sure enough, but no bin is set up for this class
    return `This looks like ${result.label} (${percent(result.confidence)}), which has no bin of its own, ` +
      `so it would go to the ${result.bin} bin.`;
  }
  return `This is ${result.label}: it goes in the ${result.bin} bin.`;
}

function showResult(result) {
  $("preview").src = state.previewUrl;
  $("verdict").textContent = verdictText(result);
  // Announced from an element that is always rendered: screen readers skip live regions that were hidden.
  $("announce").textContent = verdictText(result);
  $("verdict").classList.toggle("unsure", result.rejected);
  $("result-label").textContent = result.label;
  $("result-bin").textContent = result.bin;
  $("result-confidence").textContent = percent(result.confidence);
  $("result-latency").textContent = `${number(result.latency_ms)} ms (server ${number(result.server_ms)} ms)`;
  const bars = $("bars");
  bars.replaceChildren();
  const ranked = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [label, p] of ranked) {
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = `${Math.max(0, Math.min(100, 100 * p)).toFixed(1)}%`;
    const row = el("li", { class: label === result.label ? "bar top" : "bar", "data-label": label }, [
      el("span", { class: "bar-label", text: label }),
      el("span", { class: "bar-track", "aria-hidden": "true" }, [fill]),
      el("span", { class: "bar-value", text: percent(p) }),
    ]);
    bars.append(row);
  }
  $("result").hidden = false;
}

function setUpUpload() {
  const input = $("file-input");
  const zone = $("drop-zone");
  zone.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    classify(input.files[0]);
    input.value = "";  // choosing the same file again must classify again
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) classify(files[0]);
    else showError("That was not a file. Drop a photo from your computer, or choose one.");
  });
  // A photo dropped beside the zone must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  window.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData ? event.clipboardData.files : [])][0];
    if (item) classify(item);
  });
}

// ---- live status ---------------------------------------------------------------------

function countRows(tbody, all, sinceReset, key) {
  tbody.replaceChildren();
  const names = [...new Set([...Object.keys(all || {}), ...Object.keys(sinceReset || {})])].sort();
  for (const name of names) {
    tbody.append(el("tr", { [`data-${key}`]: name }, [
      el("th", { scope: "row", text: name }),
      el("td", { class: "since-reset", text: String(own(sinceReset, name)) }),
      el("td", { class: "all-time", text: String(own(all, name)) }),
    ]));
  }
  const since = Object.values(sinceReset || {}).reduce((a, b) => a + b, 0);
  const total = Object.values(all || {}).reduce((a, b) => a + b, 0);
  tbody.append(el("tr", { class: "total" }, [
    el("th", { scope: "row", text: "Total" }),
    el("td", { class: "since-reset", text: String(since) }),
    el("td", { class: "all-time", text: String(total) }),
  ]));
}

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [term, value, id] of pairs) {
    const dd = el("dd", { text: value });
    if (id) dd.id = id;
    dl.append(el("div", {}, [el("dt", { text: term }), dd]));
  }
}

function mqttText(mqtt) {
  if (!mqtt || !mqtt.enabled) return "off";
  return mqtt.connected ? `connected to ${mqtt.broker}` : `not connected (${mqtt.broker}); items are queued`;
}

function renderLive(status) {
  const counts = status.counts || {};
  const since = counts.since_reset || {};
  countRows($("bin-counts").tBodies[0], counts.bins, since.bins, "bin");
  countRows($("label-counts").tBodies[0], counts.labels, since.labels, "label");
  const stats = status.stats || {};
  facts($("stats"), [
    ["Frames per second", number(stats.fps), "stat-fps"],
    ["Inference", `${number(stats.inference_ms_mean)} ms mean, ${number(stats.inference_ms_p90)} ms p90`, "stat-inference"],
    ["Items this run", number(stats.items), "stat-items"],
    ["Dropped / unreadable frames", `${number(stats.dropped_frames)} / ${number(stats.unreadable_frames)}`, "stat-dropped"],
    ["Flap errors", number(stats.flap_errors), "stat-flap"],
    ["MQTT", mqttText(status.mqtt), "stat-mqtt"],
    ["Waiting to send", number(stats.outbox), "stat-outbox"],
    ["Running for", duration(status.uptime_s), "stat-uptime"],
  ]);
  const recent = $("recent");
  recent.replaceChildren();
  for (const item of status.recent || []) {
    // The daemon may send epoch seconds or an ISO string; both become a local time.
    const when = item.ts == null ? null
      : new Date(typeof item.ts === "number" ? item.ts * (item.ts < 1e12 ? 1000 : 1) : item.ts);
    const image = item.thumbnail_jpeg_b64
      ? el("img", { src: `data:image/jpeg;base64,${item.thumbnail_jpeg_b64}`, alt: `Item classified as ${item.label}` })
      : el("span", { class: "no-thumb", "aria-hidden": "true" });
    const parts = [`${percent(item.confidence)} → ${item.bin} bin`];
    if (item.rejected) parts.push("not sure");
    // In replay: was the model's label right? (Said of the label, so an unsure item can still be "label right".)
    const right = item.truth && item.truth.normalize("NFC") === String(item.label).normalize("NFC");
    if (item.truth) parts.push(right ? "✓ label right" : `✗ was ${item.truth}`);
    recent.append(el("li", { "data-id": String(item.id) }, [
      image,
      el("span", { class: "recent-text" }, [
        el("strong", { text: item.label }),
        el("span", { text: parts.join(" · ") }),
        el("time", { text: when && !Number.isNaN(when.getTime()) ? when.toLocaleTimeString() : "" }),
      ]),
    ]));
  }
  $("recent-empty").hidden = (status.recent || []).length > 0;
}

// The converter's figures: {split, n, float: {accuracy, macro_f1, per_class_f1}, model: {...}, agreement, drop_points}
function metricsTable(metrics) {
  const model = metrics.model, float = metrics.float;
  const cell = (value) => el("td", { text: typeof value === "number" ? percent(value) : "–" });
  const row = (name, a, b) => el("tr", {}, [el("th", { scope: "row", text: name }), cell(a), cell(b)]);
  const rows = [row("Accuracy", model.accuracy, float.accuracy), row("Macro F1", model.macro_f1, float.macro_f1)];
  // Since session 11 the converter also scores each photo as the bin does by default (several views averaged).
  const views = metrics.views;
  if (views && views.model && views.float) {
    const count = (views.views || []).length;
    const how = count === 1 ? "1 view" : `${count} views`;
    rows.push(row(`Accuracy, ${how}`, views.model.accuracy, views.float.accuracy));
    rows.push(row(`Macro F1, ${how}`, views.model.macro_f1, views.float.macro_f1));
  }
  for (const [label, f1] of Object.entries(model.per_class_f1 || {})) {
    rows.push(row(`F1 ${label}`, f1, (float.per_class_f1 || {})[label]));
  }
  const parts = [];
  if (metrics.n) parts.push(`${metrics.n} ${metrics.split || "test"} photos`);
  if (typeof metrics.agreement === "number") parts.push(`agrees with the float model on ${percent(metrics.agreement)}`);
  if (typeof metrics.drop_points === "number") {
    const drop = metrics.drop_points;
    parts.push(drop >= 0 ? `${drop.toFixed(2)} accuracy points below the float model`
      : `${(-drop).toFixed(2)} accuracy points above the float model`);
  }
  return [
    el("p", { class: "hint", text: parts.join(" · ") }),
    el("table", { id: "metrics-table", class: "counts" }, [
      el("thead", {}, [el("tr", {}, [el("th", { scope: "col", text: "Figure" }),
        el("th", { scope: "col", text: "This model" }), el("th", { scope: "col", text: "Float model" })])]),
      el("tbody", {}, rows),
    ]),
  ];
}

function renderMetrics(container, metrics) {
  container.replaceChildren();
  if (!metrics || !Object.keys(metrics).length) {
    container.append(el("p", { class: "hint", text: "None recorded." }));
    return;
  }
  if (metrics.model && metrics.float && typeof metrics.model.accuracy === "number") {
    container.append(...metricsTable(metrics));
    return;
  }
  const asText = (key, value) => {
    if (typeof value === "number") {
      return /acc|f1|agree|precision|recall/i.test(key) && value >= 0 && value <= 1 ? percent(value) : number(value, 3);
    }
    if (Array.isArray(value)) return value.join(", ");
    return String(value);
  };
  const build = (data) => {
    const dl = el("dl", { class: "facts metrics" });
    for (const [key, value] of Object.entries(data)) {
      const dd = value && typeof value === "object" && !Array.isArray(value)
        ? el("dd", {}, [build(value)]) : el("dd", { text: asText(key, value) });
      dl.append(el("div", {}, [el("dt", { text: key.replaceAll("_", " ") }), dd]));
    }
    return dl;
  };
  container.append(build(metrics));
}

function renderModel(status) {
  const model = status.model || {};
  const web = status.web || {};
  const accuracy = model.metrics && model.metrics.model && model.metrics.model.accuracy;
  $("model-line").textContent = model.name
    ? `Sorting with ${model.name} (${model.backbone || "?"}, ${model.quantization || "?"})` +
      (typeof accuracy === "number" ? `, ${percent(accuracy)} right on its test photos` : "")
    : "No model information";
  facts($("model-facts"), [
    ["Name", model.name || "–"],
    ["Backbone", model.backbone || "–"],
    ["Quantisation", model.quantization || "–"],
    ["Classes", (model.labels || []).join(", ") || "–"],
    ["Views of each item", (model.views || []).join(", ") || "–"],
    ["Sure enough at", web.min_confidence != null ? percent(web.min_confidence) : "–"],
    ["sha256", model.sha256 ? `${model.sha256.slice(0, 12)}…` : "–"],
  ]);
  renderMetrics($("metrics"), model.metrics);
}

function render(status) {
  if (status.web && status.web.max_upload_bytes) {
    state.maxUploadBytes = status.web.max_upload_bytes;
    $("limit-mb").textContent = megabytes(state.maxUploadBytes);
  }
  renderModel(status);
  if (status.live) {
    $("live-note").textContent = status.device_id ? `Device ${status.device_id}` : "Running";
    renderLive(status);
    $("live-body").hidden = false;
  } else {
    $("live-note").textContent = "No bin is attached: this is the photo demo only (run the bin with “smartbin run” to see live counts).";
    $("live-body").hidden = true;
  }
}

const clock = (date) => date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// The figures on screen are old: say so in a warning banner with the time of the last good update,
// rather than show them as live.
function stale(reason) {
  const since = state.updatedAt ? ` Figures below are from ${clock(state.updatedAt)}.` : "";
  $("live-note").textContent = reason + since;
  $("live-note").classList.add("warning");
  $("live-body").classList.add("stale");
}

function fresh(status) {
  state.updatedAt = new Date();
  $("live-note").classList.remove("warning");
  $("live-body").classList.remove("stale");
  render(status);
}

async function poll() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (response.ok && body) {
      fresh(body);
      return body;
    }
    stale(`The bin cannot report its status${body && body.error ? `: ${body.error}` : ""}; retrying…`);
  } catch (_) {
    stale("Lost contact with the bin; retrying…");
  }
  return null;
}

function startPolling() {
  if (state.polling === null) state.polling = setInterval(poll, 2000);
}

function stopFollowing() {
  if (state.events) state.events.close();
  state.events = null;
  if (state.polling !== null) clearInterval(state.polling);
  state.polling = null;
}

async function follow() {
  const first = await poll();
  if (first && !first.live) return;  // the standalone demo never changes: no stream to keep open
  // A browser opens at most 6 connections to one host and each live stream keeps one: tabs in the
  // background give theirs back, or a few forgotten tabs would leave none for an upload.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopFollowing();
    else if (!state.events && state.polling === null) openStream();
  });
  if (!document.hidden) openStream();
}

function openStream() {
  if (!window.EventSource) {
    startPolling();
    return;
  }
  const events = new EventSource("/api/events");
  state.events = events;
  events.onmessage = (event) => fresh(JSON.parse(event.data));
  // The daemon is up but its status failed (a named event, which onmessage does not see).
  events.addEventListener("problem", (event) => {
    let reason = "";
    try { reason = JSON.parse(event.data).error || ""; } catch (_) { reason = ""; }
    stale(`The bin cannot report its status${reason ? `: ${reason}` : ""}; retrying…`);
  });
  events.onerror = () => {
    // A refused stream (503: too many live pages) is never retried by the browser: poll instead,
    // at once, and say "lost contact" only if the bin does not answer that either.
    if (events.readyState === EventSource.CLOSED) {
      events.close();
      if (state.events === events) state.events = null;
      startPolling();
      poll();
      return;
    }
    stale("Lost contact with the bin; retrying…");
  };
}

document.addEventListener("DOMContentLoaded", () => {
  setUpUpload();
  follow();
});
