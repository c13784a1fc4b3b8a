// GalaxAlign search page: four query modes (five with a survey index's sky position), one results grid, all through the JSON API.
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuery = null; // re-run when k changes

const shortName = (name) => name.replace(/ Galaxies\b/, "");
const percent = (p) => `${Math.round(p * 100)}%`;

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an empty or non-JSON body: the status line says enough
  }
  if (!response.ok) {
    throw new Error(body && body.detail ? String(body.detail) : `${response.status} ${response.statusText}`);
  }
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function search(query) {
  lastQuery = query;
  showError("");
  $("results").setAttribute("aria-busy", "true");
  try {
    render(await query.run($("k").value), query.label);
  } catch (err) {
    showError(err.message);
  } finally {
    $("results").removeAttribute("aria-busy");
  }
}

const get = (path, params) => (k) => api(`${path}?${new URLSearchParams({ ...params, k })}`);

function upload(path, blob, name) {
  return (k) => {
    const form = new FormData();
    form.append("file", blob, name);
    return api(`${path}?${new URLSearchParams({ k })}`, { method: "POST", body: form });
  };
}

function card(hit) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.id = hit.id;
  const probs = hit.top.map((c) => `${shortName(c.name)} ${percent(c.probability)}`);
  button.title = [`galaxy ${hit.id}: click to find galaxies like it`, ...probs].join("\n");

  const img = document.createElement("img");
  img.alt = `galaxy ${hit.id}`;
  if (hit.thumbnail) img.src = hit.thumbnail;
  const meta = document.createElement("div");
  meta.className = "meta";
  const head = document.createElement("div");
  head.className = "head";
  head.append(span("id", `galaxy ${hit.id}`), span("score", hit.score.toFixed(3)));
  meta.append(head);
  if (hit.predicted) {
    meta.append(span("pred", `${shortName(hit.predicted.name)} ${percent(hit.predicted.probability)}`, "div"));
    meta.append(span("probs", probs.slice(1).join(" · ") || "\u00a0", "div"));
  }
  if (hit.label_name) meta.append(span("truth", `catalogue: ${shortName(hit.label_name)}`, "div"));
  button.append(img, meta);
  button.addEventListener("click", () => searchId(hit.id));
  return button;
}

function span(className, text, tag = "span") {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

function render(result, label) {
  const heading = $("query-label");
  heading.replaceChildren(`${result.hits.length} galaxies like `, span("", label, "b"));
  heading.dataset.kind = result.query.kind;
  $("results").replaceChildren(...result.hits.map(card));
}

function searchId(id) {
  search({ label: `galaxy ${id}`, run: get("/api/search/id", { id }) });
}

function searchFile(file) {
  if (file) search({ label: `image ${file.name}`, run: upload("/api/search/image", file, file.name) });
}

// ---- tabs

function selectTab(mode) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.mode === mode;
    tab.setAttribute("aria-selected", String(on));
    $(`panel-${tab.dataset.mode}`).hidden = !on;
  }
}

for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => selectTab(tab.dataset.mode));
}
$("k").addEventListener("change", () => lastQuery && search(lastQuery));

// ---- image: choose or drop

$("file-input").addEventListener("change", (e) => searchFile(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  searchFile(e.dataTransfer.files[0]);
});

// ---- words

$("panel-text").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("text-input").value.trim();
  if (!q) return showError("Type a few words first.");
  search({ label: `“${q}”`, run: get("/api/search/text", { q }) });
});

// ---- sky position (survey indexes)

$("panel-sky").addEventListener("submit", (e) => {
  e.preventDefault();
  const ra = $("sky-ra").value, dec = $("sky-dec").value, tolerance = $("sky-tolerance").value || "5";
  if (ra === "" || dec === "") return showError("Give both RA and Dec in degrees.");
  const params = { ra, dec, tolerance };
  const radius = $("sky-cone").value;
  if (radius) Object.assign(params, { cone_ra: ra, cone_dec: dec, cone_radius: radius });
  search({ label: `the galaxy at RA ${ra}, Dec ${dec}`, run: get("/api/search/position", params) });
});

// ---- symbol palette

async function loadPalette() {
  const { classes } = await api("/api/classes");
  const palette = $("palette");
  for (const c of classes) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.key = c.key;
    button.title = c.label;
    const img = document.createElement("img");
    img.src = c.symbol;
    img.alt = "";
    button.append(img, shortName(c.name));
    button.addEventListener("click", () => {
      for (const b of palette.children) b.classList.toggle("active", b === button);
      search({ label: `the ${shortName(c.name)} symbol`, run: get("/api/search/symbol", { cls: c.key }) });
    });
    palette.append(button);
  }
}

// ---- sketch pad: light strokes on black, like the symbols

const pad = $("sketch");
const ink = pad.getContext("2d");
let drawing = false;
let drawn = false;

function clearPad() {
  ink.fillStyle = "#000";
  ink.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
}

function padPoint(e) {
  const box = pad.getBoundingClientRect();
  return [(e.clientX - box.left) * (pad.width / box.width), (e.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  ink.strokeStyle = "#eee";
  ink.lineWidth = 9;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(...padPoint(e));
  ink.lineTo(...padPoint(e));
  ink.stroke();
  drawn = true;
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  ink.lineTo(...padPoint(e));
  ink.stroke();
});
for (const end of ["pointerup", "pointercancel"]) pad.addEventListener(end, () => (drawing = false));

$("sketch-clear").addEventListener("click", clearPad);
$("sketch-search").addEventListener("click", () => {
  if (!drawn) return showError("Draw something on the pad first.");
  pad.toBlob((blob) => search({ label: "your sketch", run: upload("/api/search/sketch", blob, "sketch.png") }), "image/png");
});

// ---- start

clearPad();
api("/api/health")
  .then((h) => {
    $("index-info").textContent = `${h.galaxies} galaxies · ${h.scheme} · ${h.scoring} scoring`;
    $("tab-sky").hidden = !h.sky; // sky-position queries need a survey index
  })
  .catch((err) => showError(`Cannot reach the server: ${err.message}`));
loadPalette().catch((err) => showError(`Cannot load the class symbols: ${err.message}`));
