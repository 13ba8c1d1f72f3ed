"""The explorer's web side: a Flask app over an :class:`~minicnn.explore.core.Explorer`.

Routes (GET unless said; every JSON answer to a bad request is ``{"error": text}`` with a
4xx status, never a traceback):

    /                          the page (static/index.html; scripts and styles from /static)
    /api/model                 model facts, layer table, samples, defaults
    /api/image?image=          an image's size and geometry          POST /api/upload (file)
    /api/canvas?seed=          a fresh cluttered canvas (shipped model + Fashion-MNIST)
    /api/classes?q=&page=&per_page=   class names matching a search, paged
    /api/predict?image=&top=   the top classes (default 5) with S_c and P_c
    /api/saliency?image=&class=&smoothgrad=&noise=&seed=      the three passes
    /api/localize?image=&class=&method=&...&fg_quantile=...    box, seeds, GraphCut mask
    /api/layer?image=&layer=   the grid of the layer's channels
    /api/unit?image=&layer=&unit=   strongest position, receptive field, reconstructions,
                               top-activating sample crops
    /api/classmodels?classes=&steps=...   GET: status; POST: start (background, cached
                               per settings and classes: at most a page of them)
    /png/KIND?...              every picture as PNG (download=1: as an attachment)
"""
import io
import logging
import os
import traceback
from urllib.parse import urlencode

from flask import Flask, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from ..functional import RULES
from ..viz.attribution import METHODS
from ..preprocess import ImageError
from .core import MAX_SEARCH_PAGE, MAX_TOP
from .errors import RequestError, out_of_memory_line
from .settings import (ClassModelSettings, GraphCutSettings, SaliencySettings, parse_choice,
                       parse_int)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
DEFAULT_MAX_UPLOAD = 16 * 1024 * 1024

log = logging.getLogger("minicnn.explore")


def png_url(kind, **params):
    """/png/KIND?sorted params (None dropped): one URL per distinct picture."""
    clean = {k: v for k, v in sorted(params.items()) if v is not None and v != ""}
    return f"/png/{kind}?{urlencode(clean)}"


def png_bytes(picture):
    """(H, W, 3) uint8 array or PIL image -> PNG bytes."""
    from PIL import Image
    import numpy as np
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(
        np.ascontiguousarray(picture, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def create_app(explorer, max_upload=DEFAULT_MAX_UPLOAD):
    """The Flask app serving ``explorer``; uploads larger than ``max_upload`` bytes get
    HTTP 413."""
    app = Flask("minicnn.explore", static_folder=STATIC, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload)
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    register_errors(app)
    for register in (register_page, register_images, register_predictions,
                     register_saliency, register_layers, register_class_models,
                     register_pictures):
        register(app, explorer)
    return app


# ----------------------------------------------------------------------------- errors

def register_errors(app):
    """Every error answers ``{"error": one line}`` with its status; never a traceback."""
    @app.errorhandler(RequestError)
    def request_error(exc):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(ImageError)
    def image_error(exc):
        return jsonify(error=" ".join(str(exc).split())), 400

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if exc.code == 413:
            return jsonify(error=f"the upload is larger than the limit of "
                                 f"{app.config['MAX_CONTENT_LENGTH'] // 1024 // 1024} MB"), 413
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc):
        # the traceback goes to the server's log, never to the page
        log.error("unexpected error on %s: %s", request.path,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        if isinstance(exc, MemoryError):
            return jsonify(error=out_of_memory_line(exc, "this request", "try a smaller "
                                                    "request or free memory")), 503
        return jsonify(error=f"internal error ({type(exc).__name__}); see the server's log"), 500

    @app.after_request
    def headers(response):
        # results are fixed per URL, but a restarted server may hold another model
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


# ----------------------------------------------------------------------------- page, images

def register_page(app, ex):
    """/ (the page) and /api/model."""
    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/model")
    def model():
        return jsonify(ex.model_info())


def image_answer(ex, entry):
    """An image's facts and the URL of its network input picture."""
    info = ex.image_info(entry)
    info["input_url"] = png_url("input", image=entry.spec)
    return jsonify(info)


def register_images(app, ex):
    """/api/image, POST /api/upload and /api/canvas: each answers the image's facts."""
    @app.get("/api/image")
    def image():
        return image_answer(ex, ex.image(request.args.get("image")))

    @app.post("/api/upload")
    def upload():
        f = request.files.get("file")
        if f is None:
            raise RequestError("no file in the upload (form field 'file')")
        return image_answer(ex, ex.add_upload(f.read(), f.filename))

    @app.get("/api/canvas")
    def canvas():
        return image_answer(ex, ex.image(f"canvas:{request.args.get('seed', '')}"))


# ----------------------------------------------------------------------------- classes

def register_predictions(app, ex):
    """/api/classes (a class search) and /api/predict (an image's top classes)."""
    @app.get("/api/classes")
    def classes():
        args = request.args
        per_page = parse_int(args.get("per_page"), "per_page", 1, MAX_SEARCH_PAGE,
                             ex.gallery_page_size())
        page = parse_int(args.get("page"), "page", 1, 10**9, 1)
        return jsonify(ex.search_classes(args.get("q", ""), page, per_page))

    @app.get("/api/predict")
    def predict():
        entry = ex.image(request.args.get("image"))
        top = ex.predict(entry, parse_int(request.args.get("top"), "top", 1,
                                          min(MAX_TOP, ex.net.num_classes),
                                          min(5, ex.net.num_classes)))
        return jsonify(image=entry.spec, top=top,
                       command=ex.saliency_command(entry, top[0]["class"], "gradient",
                                                   SaliencySettings()))


# ----------------------------------------------------------------------------- saliency

def saliency_params(entry, cls, settings, **more):
    """The parameters of a saliency picture's URL (SmoothGrad's only when it is on)."""
    return dict(image=entry.spec, **{"class": cls}, **more,
                smoothgrad=settings.smoothgrad or None,
                noise=settings.noise if settings.smoothgrad else None,
                seed=settings.seed or None)


def saliency_answer(ex, args):
    """/api/saliency: the three backward passes' scores, picture URLs and commands; with
    method=NAME one of the descendants of the paper's map (Grad-CAM, Integrated
    Gradients, occlusion, gradient x input: on request, they cost more passes)."""
    entry = ex.image(args.get("image"))
    cls = ex.resolve_class(entry, args.get("class"))
    settings = SaliencySettings.from_args(args)
    chosen = args.get("method")
    name = parse_choice(chosen, "method", list(METHODS)) if chosen else None
    if name is not None and name not in RULES:
        settings = SaliencySettings()    # SmoothGrad's settings do not apply to it
    common = saliency_params(entry, cls, settings)
    methods = {}
    if name is not None:
        results = {name: ex.saliency(entry, cls, name, settings)}
    else:
        results = ex.saliencies(entry, cls, settings)
    for rule, sal in results.items():
        methods[rule] = {
            "score": float(sal.scores[0]), "prob": float(sal.probs[0]),
            "max": float(sal.map[0].max()),
            "map_url": png_url("saliency", method=rule, **common),
            "overlay_url": png_url("overlay", method=rule, **common),
            "figure_url": png_url("saliency_figure", method=rule, **common),
            "command": ex.saliency_command(entry, cls, rule, settings)}
    return jsonify(image=entry.spec, **{"class": cls}, name=ex.class_name(cls),
                   settings=settings.__dict__, methods=methods)


def localize_answer(ex, args):
    """/api/localize: the box (input and file pixels), the truth and the steps' URLs."""
    entry = ex.image(args.get("image"))
    cls = ex.resolve_class(entry, args.get("class"))
    method = parse_choice(args.get("method"), "method", list(METHODS), "gradient")
    settings = SaliencySettings.from_args(args)
    graphcut = GraphCutSettings.from_args(args)
    loc, file_box = ex.localization(entry, cls, method, settings, graphcut)
    params = saliency_params(entry, cls, settings, method=method, **{
        k: v for k, v in graphcut.__dict__.items() if v != getattr(GraphCutSettings(), k)})
    h, w = ex.net.preprocessing.input_size
    return jsonify(image=entry.spec, **{"class": cls}, name=ex.class_name(cls),
                   method=method, box=loc.box, file_box=file_box, fallback=bool(loc.fallback),
                   truth=entry.truth, truth_box=ex.truth_box(entry), input_size=[w, h],
                   input_url=png_url("input", image=entry.spec),
                   urls={kind: png_url(kind, **params)
                         for kind in ("boxed", "saliency", "seeds", "mask", "localize_figure")},
                   command=ex.localize_command(entry, cls, method, settings, graphcut))


def register_saliency(app, ex):
    """/api/saliency and /api/localize."""
    @app.get("/api/saliency")
    def saliency():
        return saliency_answer(ex, request.args)

    @app.get("/api/localize")
    def localize():
        return localize_answer(ex, request.args)


# ----------------------------------------------------------------------------- layers, units

def layer_answer(ex, args):
    """/api/layer: the layer's shape and the geometry and URL of its channel grid."""
    entry = ex.image(args.get("image"))
    name = ex.resolve_layer(args.get("layer"))
    _, geometry = ex.activation_grid(entry, name)
    row = next(r for r in ex.layer_rows if r["name"] == name)
    return jsonify(image=entry.spec, layer=name, shape=list(row["output_shape"]),
                   grid=geometry, grid_url=png_url("activations", image=entry.spec, layer=name),
                   python=f"net.forward(x, until={name!r})[0]  # {tuple(row['output_shape'])}")


def unit_answer(ex, args):
    """/api/unit: the unit's strongest position, receptive field, reconstructions' URLs
    and top-activating sample crops."""
    entry = ex.image(args.get("image"))
    name = ex.resolve_layer(args.get("layer"))
    channel = ex.check_channel(name, args.get("unit"))
    rec = ex.unit(entry, name, channel)
    params = dict(image=entry.spec, layer=name, unit=channel)
    crops = ex.top_crops(name, channel)
    for rank, crop in enumerate(crops):
        crop["url"] = png_url("crop", layer=name, unit=channel, rank=rank, image=crop["image"])
    return jsonify(
        image=entry.spec, layer=name, unit=channel, position=list(rec.positions[0]),
        value=float(rec.values[0]), receptive_field=ex.receptive_box(name, rec.positions[0]),
        field_url=png_url("unit", view="field", **params),
        input_url=png_url("input", image=entry.spec),
        figure_url=png_url("unit", view="figure", **params),
        reconstructions={rule: {"signed_url": png_url("unit", view=f"{rule}_signed", **params),
                                "abs_url": png_url("unit", view=f"{rule}_abs", **params)}
                         for rule in RULES},
        top_crops=crops, command=ex.deconv_command(entry, name, channel))


def register_layers(app, ex):
    """/api/layer and /api/unit."""
    @app.get("/api/layer")
    def layer():
        return layer_answer(ex, request.args)

    @app.get("/api/unit")
    def unit():
        return unit_answer(ex, request.args)


# ----------------------------------------------------------------------------- class models

def gallery_answer(ex, settings, classes, job):
    """A gallery's settings, classes, command and status; its URLs once computed."""
    answer = {"settings": settings.as_dict(),
              "classes": [{"class": c, "name": ex.class_name(c)} for c in classes],
              "command": ex.class_model_command(settings, classes),
              "status": job.status() if job else {"state": "not started"}}
    if job is not None and job.state == "done":
        params = dict(settings.as_dict(), classes=",".join(str(c) for c in classes))
        answer["gallery_url"] = png_url("gallery", **params)
        answer["tiles"] = [{"class": int(c), "name": ex.class_name(int(c)),
                            "score": float(s), "url": png_url("class_model", **params,
                                                              **{"class": int(c)})}
                           for c, s in zip(job.result.classes, job.result.scores)]
    return jsonify(answer)


def register_class_models(app, ex):
    """GET /api/classmodels (a gallery's status) and POST (start it)."""
    @app.get("/api/classmodels")
    def class_models_status():
        settings = ClassModelSettings.from_args(request.args)
        classes = ex.gallery_classes(request.args.get("classes"))
        return gallery_answer(ex, settings, classes,
                              ex.class_model_job(settings, classes, start=False))

    @app.post("/api/classmodels")
    def class_models_start():
        if request.is_json:
            values = request.get_json(silent=True)
            if not isinstance(values, dict):     # malformed, or an array, string, number
                raise RequestError("POST /api/classmodels: expected a JSON object of "
                                   "settings, e.g. {\"steps\": 300, \"classes\": \"1,2\"}")
        else:
            values = request.form or request.args
        settings = ClassModelSettings.from_args(values)
        classes = ex.gallery_classes(values.get("classes"))
        return gallery_answer(ex, settings, classes,
                              ex.class_model_job(settings, classes, start=True))


# ----------------------------------------------------------------------------- pictures

def download_name(ex, kind, args):
    """The file name a downloaded picture gets: the input's the page's command lines
    give it (--image canvas_7.png), others minicnn_KIND_METHOD_LAYER_UNIT_VIEW.png."""
    if kind == "input":
        name = os.path.basename(ex.image(args.get("image")).cli_path)
        return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    what = "_".join(str(args.get(k)) for k in ("method", "layer", "unit", "view")
                    if args.get(k))
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in what)
    return f'minicnn_{kind}{"_" + safe if safe else ""}.png'


def register_pictures(app, ex):
    """/png/KIND: every picture as PNG (download=1: as an attachment)."""
    @app.get("/png/<kind>")
    def png(kind):
        data = png_bytes(ex.picture(kind, request.args))
        response = app.response_class(data, mimetype="image/png")
        if request.args.get("download"):
            name = download_name(ex, kind, request.args)
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
