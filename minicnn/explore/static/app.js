// minicnn explorer: the page asks the server (Flask, minicnn.explore.app) for JSON and
// PNG pictures; every number and picture is computed on the server by minicnn.viz.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, image: null, info: null, cls: "", layer: null, unit: null,
                descendants: new Set(),   // the descendants' panels the user opened
                cm: { classes: [], label: "", query: "", page: 0, pages: 1 } };
const tokens = {};   // section -> number of its latest request: older answers are dropped

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function showError(section, message) {
  // a descendant's panel reports in the saliency section's box
  const box = $(section + "-error") || (section.startsWith("descendant-") ? $("saliency-error") : null);
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
}

function busy(sectionId, on) {
  const b = document.querySelector(`#${sectionId} .busy`);
  if (b) b.hidden = !on;
}

// fetch JSON; throws Error(message from the server) on HTTP errors
async function getJSON(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `HTTP ${response.status}`);
  }
  return body;
}

// run a section's request; only the newest request of a section may draw its answer
async function latest(section, work) {
  const mine = (tokens[section] = (tokens[section] || 0) + 1);
  showError(section, "");
  try {
    const result = await work(() => tokens[section] === mine);
    return result;
  } catch (err) {
    if (tokens[section] === mine) showError(section, err.message);
    return null;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return q.toString();
}

function download(url) { return url + (url.includes("?") ? "&" : "?") + "download=1"; }

// pictures larger than their place on the page are smoothed, smaller ones stay pixelated
function fitRendering(img) {
  const set = () => img.classList.toggle("smooth", img.naturalWidth > img.clientWidth && img.clientWidth > 0);
  if (img.complete && img.naturalWidth) set(); else img.addEventListener("load", set, { once: true });
}

// a picture of the network input's size keeps its place while it loads (no layout jump)
function inputSized(img) {
  const [h, w] = state.model.preprocessing.input_size;
  img.style.aspectRatio = `${w} / ${h}`;
  return img;
}

function picture(url, caption, attrs = {}, sized = false) {
  const img = el("img", { className: "px", src: url, alt: caption, ...attrs });
  if (sized) inputSized(img);
  fitRendering(img);
  return el("figure", {}, [img, el("figcaption", { text: caption }),
    el("a", { className: "dl", href: download(url), download: "", text: "PNG" })]);
}

// the input with boxes drawn over it in SVG: the lines keep 3 screen pixels at any
// display size. boxes: [[box [x0, y0, x1, y1] in input pixels or null, kind]] (kind:
// pred red, truth green, field yellow); pngUrl: the server's picture with the same boxes
const SVG = "http://www.w3.org/2000/svg";
function overlaidPicture(inputUrl, boxes, caption, pngUrl, attrs) {
  const [h, w] = state.model.preprocessing.input_size;
  const img = inputSized(el("img", { className: "px", src: inputUrl, alt: caption, ...attrs }));
  fitRendering(img);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "box-overlay");
  for (const [box, kind] of boxes) {
    if (!box) continue;
    const rect = document.createElementNS(SVG, "rect");
    const [x0, y0, x1, y1] = box;
    rect.setAttribute("x", x0); rect.setAttribute("y", y0);
    rect.setAttribute("width", x1 - x0); rect.setAttribute("height", y1 - y0);
    rect.setAttribute("class", "box-" + kind);
    rect.setAttribute("data-box", kind);
    svg.append(rect);
  }
  return el("figure", { "data-kind": attrs["data-kind"] + "-figure" }, [
    el("div", { className: "overlay-wrap" }, [img, svg]),
    el("figcaption", { text: caption }),
    el("a", { className: "dl", href: download(pngUrl), download: "", text: "PNG" })]);
}

// the box of the /api/localize answer r (and a sample's true box)
function boxedPicture(r, caption) {
  return overlaidPicture(r.input_url, [[r.truth_box, "truth"], [r.box, "pred"]], caption,
                         r.urls.boxed, { "data-kind": "boxed" });
}

// ------------------------------------------------------------------ a new image
// the panels that show results of one image: dimmed from the moment another image is
// chosen until that image's results replace them
const STALE = ["saliency-panels", "localize-panels", "localize-text", "localize-command",
               "layer-grid", "layer-title", "unit-box"];

function markStale() {
  for (const id of STALE) $(id).classList.add("stale");
  const tbody = document.querySelector("#predictions tbody");
  tbody.replaceChildren(el("tr", { className: "pending" }, [el("td", { colSpan: 4, text: "computing…" })]));
  $("predict-command").textContent = "";
}

function fresh(...ids) { for (const id of ids) $(id).classList.remove("stale"); }

const fmt = (v, d = 2) => Number(v).toFixed(d);

// ------------------------------------------------------------------ model
async function init() {
  let model;
  try {
    model = await getJSON("/api/model");
  } catch (err) {
    $("page-error").textContent = "cannot reach the explorer: " + err.message;
    $("page-error").hidden = false;
    return;
  }
  state.model = model;
  const p = model.preprocessing;
  $("model-line").textContent = `${model.model} · ${model.layers.length} layers · input ` +
    `${model.input_shape.join("x")} · ${model.classes.length} classes · ${model.device}`;

  const samples = $("samples");
  for (const s of model.samples) {
    const b = el("button", { type: "button", title: `${s.name} (${s.class})`, "data-spec": s.spec },
      [el("img", { src: "/png/input?" + query({ image: s.spec }), alt: s.name })]);
    b.className = "sample";
    b.addEventListener("click", () => selectImage(s.spec));
    samples.append(b);
  }
  if (!model.samples.length) {
    const hint = "This model has no sample images: upload a photo (PNG or JPEG, any size) to start.";
    samples.append(el("p", { className: "hint", id: "no-samples", text: hint }));
    $("input-empty").textContent = "upload a photo";
    $("no-image-note").textContent = "No image yet: upload a photo in the Input section.";
    $("no-image-note").hidden = false;
  }
  $("canvas-btn").disabled = !model.canvas.available;
  $("canvas-note").textContent = model.canvas.available ? "" : model.canvas.reason;

  const classInput = $("class-input");
  classInput.addEventListener("input", () => suggestClasses(classInput.value));
  classInput.addEventListener("focus", () => suggestClasses(classInput.value));
  classInput.addEventListener("change", () => { state.cls = classInput.value.trim(); refreshSaliency(); });
  const lm = $("localize-method");
  for (const m of model.methods) lm.append(el("option", { value: m, text: METHOD_TITLES[m] || m }));
  const more = $("descendant-buttons");
  for (const m of model.methods.filter((m) => !model.rules.includes(m))) {
    const b = el("button", { type: "button", text: METHOD_TITLES[m] || m, "data-method": m });
    b.addEventListener("click", () => { state.descendants.add(m); refreshDescendant(m); });
    more.append(b);
  }

  const tbody = document.querySelector("#layers-table tbody");
  for (const r of model.layers) {
    const tr = el("tr", { "data-layer": r.name }, [
      el("td", { text: r.name }), el("td", { text: r.type }), el("td", { text: r.shape.join("x") }),
      el("td", { text: r.params.toLocaleString("en") }),
      el("td", { text: r.rf_size === null ? "all" : String(r.rf_size) }),
      el("td", { text: r.rf_jump === null ? "-" : String(r.rf_jump) })]);
    tr.addEventListener("click", () => selectLayer(r.name));
    tbody.append(tr);
  }
  $("info-command").textContent = model.info_command;

  const form = $("cm-form");
  for (const o of model.objectives) form.objective.append(el("option", { value: o, text: o }));
  for (const [k, v] of Object.entries(model.class_model_defaults)) if (form[k]) form[k].value = v;
  form.addEventListener("submit", (e) => { e.preventDefault(); startClassModels(); });
  form.addEventListener("change", () => refreshClassModels(false));

  for (const id of ["smoothgrad-on", "smoothgrad-n", "smoothgrad-noise", "smoothgrad-seed"]) {
    $(id).addEventListener("change", refreshSaliency);
  }
  lm.addEventListener("change", refreshLocalize);
  $("upload-file").addEventListener("change", upload);
  $("canvas-btn").addEventListener("click", freshCanvas);
  $("unit-go").addEventListener("click", () => selectUnit(parseInt($("unit-number").value, 10)));
  $("layer-grid").addEventListener("click", clickGrid);

  $("cm-find").addEventListener("click", () => galleryPage($("cm-search").value, 1));
  $("cm-search").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); galleryPage($("cm-search").value, 1); }
  });
  $("cm-top").addEventListener("click", galleryTop);
  $("cm-prev").addEventListener("click", () => galleryPage(state.cm.query, state.cm.page - 1));
  $("cm-next").addEventListener("click", () => galleryPage(state.cm.query, state.cm.page + 1));
  const g = model.gallery;
  setGalleryClasses(g.default_classes.map((c) => ({ class: c, name: model.classes[c] })),
                    g.default_label, "", 0, g.pages);

  state.layer = model.default_layer;
  if (model.samples.length) await selectImage(model.samples[0].spec);
}

// ------------------------------------------------------------------ input
async function selectImage(spec) {
  await latest("input", async (current) => {
    const info = await getJSON("/api/image?" + query({ image: spec }));
    if (!current()) return;
    setImage(info);
  });
}

function setImage(info) {
  state.image = info.image;
  state.info = info;
  state.cls = "";
  $("class-input").value = "";
  markStale();
  $("input-img").src = info.input_url;
  $("input-img").hidden = false;
  $("input-empty").hidden = true;
  $("no-image-note").hidden = true;
  $("input-download").href = download(info.input_url);
  $("input-download").hidden = false;
  let caption = `${info.label}: ${info.size[0]}x${info.size[1]}`;
  if (info.resized) caption += ` → ${info.input_size[0]}x${info.input_size[1]} (the model's preprocessing)`;
  if (info.truth) caption += ` · truth: ${info.truth.name}`;
  caption += ` · --image ${info.cli_path}`;
  $("input-caption").textContent = caption;
  document.querySelectorAll("#samples button").forEach((b) =>
    b.classList.toggle("selected", b.dataset.spec === info.image));
  refreshPrediction();
  refreshSaliency();
  if (state.layer) selectLayer(state.layer, state.unit);
}

async function upload() {
  const file = $("upload-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  await latest("input", async (current) => {
    const info = await getJSON("/api/upload", { method: "POST", body: form });
    if (current()) setImage(info);
  });
  $("upload-file").value = "";
}

async function freshCanvas() {
  const seed = crypto.getRandomValues(new Uint32Array(1))[0] % 1000000;
  await latest("input", async (current) => {
    const info = await getJSON("/api/canvas?" + query({ seed }));
    if (current()) setImage(info);
  });
}

// ------------------------------------------------------------------ prediction
async function refreshPrediction() {
  busy("predict-section", true);
  await latest("predict", async (current) => {
    const r = await getJSON("/api/predict?" + query({ image: state.image }));
    if (!current()) return;
    const tbody = document.querySelector("#predictions tbody");
    tbody.replaceChildren();
    tbody.dataset.image = r.image;
    $("predict-command").textContent = r.command;
    r.top.forEach((t, i) => {
      const tr = el("tr", { "data-class": String(t.class) }, [
        el("td", { text: String(i + 1) }), el("td", { text: `${t.name} (${t.class})` }),
        el("td", { text: fmt(t.score) }), el("td", { text: fmt(t.prob, 4) })]);
      tr.addEventListener("click", () => {
        state.cls = String(t.class);
        $("class-input").value = `${t.class}: ${t.name}`;
        refreshSaliency();
      });
      tbody.append(tr);
    });
    const shown = $("saliency-panels").dataset.cls;
    tbody.querySelectorAll("tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.class === shown));
  });
  busy("predict-section", false);
}

// ------------------------------------------------------------------ saliency
function saliencyParams() {
  const on = $("smoothgrad-on").checked;
  return { image: state.image, class: state.cls, smoothgrad: on ? $("smoothgrad-n").value : "",
           noise: on ? $("smoothgrad-noise").value : "", seed: $("smoothgrad-seed").value === "0" ? "" : $("smoothgrad-seed").value };
}

async function refreshSaliency() {
  if (!state.image) return;
  busy("saliency-section", true);
  let done = false;
  await latest("saliency", async (current) => {
    const r = await getJSON("/api/saliency?" + query(saliencyParams()));
    if (!current()) return;
    done = true;
    if (state.cls !== "") {      // the class as the server read it (an index, a name)
      state.cls = String(r.class);
      $("class-input").value = `${r.class}: ${r.name}`;
    }
    document.querySelectorAll("#predictions tbody tr").forEach((tr) =>
      tr.classList.toggle("selected", tr.dataset.class === String(r.class)));
    const panels = $("saliency-panels");
    panels.replaceChildren();
    panels.dataset.cls = String(r.class);
    panels.dataset.image = r.image;
    fresh("saliency-panels");
    $("descendant-panels").replaceChildren();
    for (const [rule, m] of Object.entries(r.methods)) panels.append(methodPanel(r, rule, m));
  });
  busy("saliency-section", false);
  if (done) {
    refreshLocalize();
    for (const m of state.descendants) refreshDescendant(m);
  }
}

const METHOD_TITLES = { gradient: "gradient (backprop): the paper's map", deconvnet: "DeconvNet",
  guided: "guided backprop", gradcam: "Grad-CAM (Selvaraju et al. 2017)",
  integrated_gradients: "Integrated Gradients (Sundararajan et al. 2017)",
  occlusion: "occlusion (Zeiler & Fergus 2014)", gradient_x_input: "gradient x input" };
const MAP_CAPTIONS = { gradcam: "ReLU(sum_k alpha_k A_k), upsampled", integrated_gradients: "|sum_k attribution|",
  occlusion: "mean score drop (>= 0)", gradient_x_input: "|sum_k x * gradient|" };

function methodPanel(r, rule, m) {
  const caption = `${MAP_CAPTIONS[rule] || "max_k |signal|"}, max ${m.max.toPrecision(3)}`;
  return el("div", { className: "method", "data-method": rule }, [
    el("h4", { text: METHOD_TITLES[rule] || rule }),
    el("div", { className: "pair" }, [
      picture(m.map_url, caption, { "data-kind": "map", "data-method": rule }, true),
      picture(m.overlay_url, "overlay", { "data-kind": "overlay", "data-method": rule }, true)]),
    el("div", { className: "stats", text: `${r.name} (class ${r.class}): S_c = ${fmt(m.score)}, P_c = ${fmt(m.prob, 4)} · ` },
      [el("a", { className: "dl", href: download(m.figure_url), download: "", text: "figure PNG" })]),
    el("pre", { className: "command", text: m.command })]);
}

// a descendant of the paper's map, on request (each costs more passes than the three rules)
async function refreshDescendant(method) {
  if (!state.image) return;
  busy("saliency-section", true);
  await latest("descendant-" + method, async (current) => {
    const r = await getJSON("/api/saliency?" + query({ ...saliencyParams(), method }));
    if (!current()) return;
    const box = $("descendant-panels");
    const old = box.querySelector(`[data-method="${method}"]`);
    const panel = methodPanel(r, method, r.methods[method]);
    if (old) old.replaceWith(panel); else box.append(panel);
  });
  busy("saliency-section", false);
}

// the class box's suggestions: the names matching what is typed (an index or a name)
let suggesting = null;
function suggestClasses(text) {
  if (/^\d+: /.test(text)) return;                 // a suggestion was just picked
  clearTimeout(suggesting);
  suggesting = setTimeout(async () => {
    try {
      const r = await getJSON("/api/classes?" + query({ q: text, per_page: 30 }));
      $("class-options").replaceChildren(...r.classes.map((c) =>
        el("option", { value: `${c.class}: ${c.name}` })));
    } catch (err) { /* suggestions only */ }
  }, 120);
}

async function refreshLocalize() {
  if (!state.image) return;
  $("localize-busy").hidden = false;
  await latest("localize", async (current) => {
    const params = { ...saliencyParams(), method: $("localize-method").value };
    const r = await getJSON("/api/localize?" + query(params));
    if (!current()) return;
    const captions = { boxed: "box (red; green: truth)", saliency: "saliency map",
                       seeds: "seeds: red fg, blue bg", mask: "GraphCut: white kept component" };
    const panels = $("localize-panels");
    panels.replaceChildren(boxedPicture(r, r.truth_box ? captions.boxed : "box (red)"));
    for (const kind of ["saliency", "seeds", "mask"]) {
      panels.append(picture(r.urls[kind], captions[kind], { "data-kind": kind }, true));
    }
    panels.dataset.image = r.image;
    panels.dataset.cls = String(r.class);
    panels.dataset.method = r.method;
    fresh("localize-panels", "localize-text", "localize-command");
    let text = r.file_box ? `box [x0, y0, x1, y1] = [${r.file_box.join(", ")}] in the image's pixels`
                          : "no box found";
    if (r.fallback) text += " (GraphCut empty: seed fallback)";
    if (r.truth && r.truth.box) text += ` · truth ${r.truth.name} [${r.truth.box.join(", ")}]`;
    $("localize-text").replaceChildren(text + " · ",
      el("a", { className: "dl", href: download(r.urls.localize_figure), download: "", text: "figure PNG" }));
    $("localize-command").textContent = r.command;
  });
  $("localize-busy").hidden = true;
}

// ------------------------------------------------------------------ layers and units
let grid = null;

async function selectLayer(name, unit) {
  if (!state.image) { state.layer = name; return; }
  state.layer = name;
  document.querySelectorAll("#layers-table tbody tr").forEach((tr) =>
    tr.classList.toggle("selected", tr.dataset.layer === name));
  busy("layers-section", true);
  await latest("layer", async (current) => {
    const r = await getJSON("/api/layer?" + query({ image: state.image, layer: name }));
    if (!current()) return;
    grid = r;
    const g = r.grid;
    const img = $("layer-grid");
    img.src = r.grid_url;
    img.hidden = false;
    img.dataset.layer = name;
    img.dataset.image = r.image;
    fresh("layer-grid", "layer-title");
    const natural = g.columns * (g.tile[1] + g.gap);
    img.style.width = Math.min(520, Math.max(260, natural * Math.max(1, Math.floor(520 / natural)))) + "px";
    $("layer-title").textContent = `${name}: ${r.shape.join("x")} · ${g.channels} tiles (one per ` +
      `${r.shape.length > 1 ? "channel" : "unit"}), colour = activation / layer max ${g.vmax.toPrecision(3)}` +
      " (negative as 0) · click a tile";
    $("layer-download").href = download(r.grid_url);
    $("layer-download").hidden = false;
    $("layer-python").textContent = r.python;
    $("unit-number").max = g.channels - 1;
  });
  busy("layers-section", false);
  if (unit !== undefined && unit !== null && grid && unit < grid.grid.channels) selectUnit(unit);
  else { $("unit-box").hidden = true; state.unit = null; }
}

function clickGrid(event) {
  if (!grid) return;
  const img = event.currentTarget;
  const g = grid.grid;
  const x = event.offsetX * img.naturalWidth / img.clientWidth;
  const y = event.offsetY * img.naturalHeight / img.clientHeight;
  const col = Math.floor(x / (g.tile[1] + g.gap)), row = Math.floor(y / (g.tile[0] + g.gap));
  const k = row * g.columns + col;
  if (col < g.columns && k >= 0 && k < g.channels) selectUnit(k);
}

async function selectUnit(k) {
  if (!state.image || !state.layer || Number.isNaN(k)) return;
  state.unit = k;
  $("unit-number").value = k;
  await latest("unit", async (current) => {
    const r = await getJSON("/api/unit?" + query({ image: state.image, layer: state.layer, unit: k }));
    if (!current()) return;
    const where = r.position.length ? ` at (${r.position.join(", ")})` : "";
    $("unit-title").textContent = `${r.layer} unit ${r.unit}: strongest activation ${r.value.toPrecision(4)}${where}` +
      (r.value <= 0 ? " (not positive: nothing to reconstruct)" : "");
    const titles = { gradient: "gradient", deconvnet: "DeconvNet", guided: "guided" };
    const panels = [overlaidPicture(r.input_url, [[r.receptive_field, "field"]],
      `receptive field [${r.receptive_field.join(", ")}]`, r.field_url, { "data-kind": "field" })];
    for (const [rule, u] of Object.entries(r.reconstructions)) {
      panels.push(el("div", { className: "col" }, [
        picture(u.signed_url, `${titles[rule]}: signed, grey = 0`, { "data-rule": rule, "data-part": "signed" }),
        picture(u.abs_url, `${titles[rule]}: max_k |.|`, { "data-rule": rule, "data-part": "abs" })]));
    }
    panels.push(el("div", { className: "note" }, [
      "The three passes share the pooling switches and differ only in the ReLU rule. ",
      el("a", { className: "dl", href: download(r.figure_url), download: "", text: "figure PNG" })]));
    $("unit-panels").replaceChildren(...panels);
    const crops = r.top_crops.map((c) => {
      const f = picture(c.url, `${c.image.replace("sample:", "")}: ${c.value.toPrecision(3)}`, { "data-image": c.image });
      f.querySelector("img").style.width = "96px";
      return f;
    });
    $("top-crops").replaceChildren(...(crops.length ? crops : [el("span", { className: "note", text: "this model has no samples to rank" })]));
    $("unit-command").textContent = r.command;
    $("unit-box").hidden = false;
    $("unit-box").dataset.image = r.image;
    fresh("unit-box");
    $("unit-box").dataset.unit = String(r.unit);
    $("unit-box").dataset.layer = r.layer;
  });
}

// ------------------------------------------------------------------ class models
function classModelParams() {
  const form = $("cm-form");
  const out = {};
  for (const k of Object.keys(state.model.class_model_defaults)) if (form[k]) out[k] = form[k].value;
  for (const k of Object.keys(state.model.class_model_defaults)) if (!(k in out)) out[k] = state.model.class_model_defaults[k];
  out.classes = state.cm.classes.map((c) => c.class).join(",");
  return out;
}

// the gallery's classes: a page of the class list or of a search's matches (page >= 1),
// the image's top classes, or the model's default gallery (page 0); never every class
// of a large model at once
function setGalleryClasses(classes, label, q, page, pages) {
  Object.assign(state.cm, { classes, label, query: q, page, pages });
  const chips = classes.map((c) => {
    const x = el("button", { type: "button", title: "leave this class out", text: "×" });
    x.disabled = classes.length < 2;
    x.addEventListener("click", () => setGalleryClasses(state.cm.classes.filter((o) => o.class !== c.class),
      state.cm.label + " (edited)", state.cm.query, state.cm.page, state.cm.pages));
    return el("span", { className: "chip", "data-class": String(c.class) }, [`${c.class}: ${c.name}`, x]);
  });
  $("cm-classes").replaceChildren(...chips);
  $("cm-page").textContent = label;
  $("cm-prev").disabled = page <= 1;
  $("cm-next").disabled = page >= pages || pages <= 1;
  refreshClassModels(false);
}

async function galleryPage(q, page) {
  await latest("cm", async (current) => {
    const size = state.model.gallery.page_size;
    const r = await getJSON("/api/classes?" + query({ q: q.trim(), page: Math.max(1, page), per_page: size }));
    if (!current()) return;
    if (!r.total) throw new Error(`no class name matches ${JSON.stringify(q.trim())}`);
    const first = (r.page - 1) * r.per_page + 1, last = first + r.classes.length - 1;
    const what = r.query.trim() ? `${r.total} classes match "${r.query.trim()}"` : `${r.total} classes`;
    setGalleryClasses(r.classes, `${first}-${last} of ${what} · page ${r.page} of ${r.pages}`, r.query, r.page, r.pages);
  });
}

async function galleryTop() {
  await latest("cm", async (current) => {
    if (!state.image) throw new Error("choose an image first: its top classes are picked");
    const size = state.model.gallery.page_size;
    const r = await getJSON("/api/predict?" + query({ image: state.image, top: size }));
    if (!current()) return;
    setGalleryClasses(r.top.map((t) => ({ class: t.class, name: t.name })),
                      `the top ${r.top.length} classes of ${state.info.label}`, "", 0, 1);
  });
}

let polling = null;

async function refreshClassModels(start) {
  if (polling) { clearTimeout(polling); polling = null; }
  await latest("cm", async (current) => {
    const params = classModelParams();
    const r = start ? await getJSON("/api/classmodels", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params) })
                    : await getJSON("/api/classmodels?" + query(params));
    if (!current()) return;
    $("cm-command").textContent = r.command;
    const s = r.status;
    const bar = $("cm-progress");
    bar.max = Math.max(1, s.total || 1);
    bar.value = s.done || 0;
    const n = r.classes.length;
    const texts = { "not started": `not computed for these ${n} classes and settings`, queued: "queued",
                    running: `step ${s.done} of ${s.total}, ${fmt(s.elapsed_s, 0)} s`,
                    done: `done in ${fmt(s.elapsed_s, 1)} s (cached for these classes and settings)`,
                    failed: "failed: " + s.error, cancelled: "cancelled" };
    $("cm-status").textContent = texts[s.state] || s.state;
    $("cm-section").dataset.state = s.state;
    $("cm-section").dataset.classes = params.classes;
    const gallery = $("cm-gallery");
    if (s.state === "done") {
      gallery.replaceChildren(...r.tiles.map((t) => picture(t.url, `${t.class}: ${t.name}: S_c ${fmt(t.score)}`, { "data-class": String(t.class) })));
      $("cm-download").href = download(r.gallery_url);
      $("cm-download").hidden = false;
    } else {
      gallery.replaceChildren();
      $("cm-download").hidden = true;
    }
    if (s.state === "queued" || s.state === "running") {
      polling = setTimeout(() => refreshClassModels(false), 700);
    }
  });
}

function startClassModels() { refreshClassModels(true); }

init();
