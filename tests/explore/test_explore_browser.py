"""The explorer in a real headless browser (Debian's chromium through Selenium and
chromedriver; no browser download): click through input, class, method, layer and unit
and check that the pictures the page displays are, pixel for pixel, what the Python API
computes for the same request. The displayed pixels are read back from the browser
(the <img> drawn on a canvas), not fetched again by the test.

MINICNN_SCREENSHOTS=1 also saves the README's screenshots to docs/explore_*.png.
"""
import base64
import io
import os
import re
import shutil
import time
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import pytest

from minicnn import assets
from minicnn.viz import render
from minicnn.viz.class_model import class_model
from minicnn.viz.deconv import unit_reconstruction
from minicnn.viz.inputs import load_views
from minicnn.viz.localize import localize_map
from minicnn.viz.saliency import saliency_of_views

from conftest import FASHION_DIR, REPO, http, make_imagenet_server, multipart, png_of

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)

try:
    import selenium  # noqa: F401
    MISSING = None
except ImportError:
    MISSING = "selenium not installed (pip install -e '.[test]')"
if MISSING is None and (CHROMIUM is None or CHROMEDRIVER is None):
    MISSING = "no chromium/chromedriver (apt-get install chromium chromium-driver)"
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SCREENSHOTS = os.environ.get("MINICNN_SCREENSHOTS") == "1"
WAIT = 90        # seconds; the CI machine has 2 shared cores


def new_driver():
    """A headless chromium, 1400 x 1000."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--force-color-profile=srgb",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    return driver


@pytest.fixture(scope="module")
def browser():
    driver = new_driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(server, browser):
    """The page of the module's server, loaded once, with its first sample shown."""
    browser.get(server.url)
    wait_for(browser, "document.querySelectorAll('#predictions tbody tr').length === 5")
    return browser


def wait_for(driver, condition, timeout=WAIT):
    """Wait until the JavaScript expression ``condition`` is true."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(f"return Boolean({condition});"))


READ_PIXELS = """
const img = document.querySelector(arguments[0]);
const done = arguments[arguments.length - 1];
const finish = () => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  c.getContext('2d').drawImage(img, 0, 0);
  done([img.src, c.toDataURL('image/png')]);
};
if (img.complete && img.naturalWidth > 0) finish(); else img.addEventListener('load', finish, {once: true});
"""


def shown(driver, selector):
    """(query parameters of the displayed <img>'s URL, its pixels (H, W, 3) as the
    browser decoded them)."""
    from PIL import Image
    src, data = driver.execute_async_script(READ_PIXELS, selector)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB"))
    return {k: v[0] for k, v in parse_qs(urlparse(src).query).items()}, pixels


def click(driver, selector):
    driver.execute_script("document.querySelector(arguments[0]).click();", selector)


def screenshot(driver, name, height, scroll_to=None):
    """docs/explore_NAME.png of a 1400 x ``height`` window (top of the page, or scrolled
    to the element ``scroll_to``), when MINICNN_SCREENSHOTS=1."""
    if not SCREENSHOTS:
        return
    driver.set_window_size(1400, height)
    driver.execute_script("const e = arguments[0] && document.querySelector(arguments[0]);"
                          "if (e) e.scrollIntoView(); else window.scrollTo(0, 0);", scroll_to)
    time.sleep(0.5)
    os.makedirs(os.path.join(REPO, "docs"), exist_ok=True)
    driver.save_screenshot(os.path.join(REPO, "docs", f"explore_{name}.png"))
    driver.set_window_size(1400, 1000)


BOXED = "#localize-panels figure[data-kind=boxed-figure]"
OVERLAY_BOXES = """
const out = {};
const figure = document.querySelector(arguments[0]);
const img = figure.querySelector('img');
const ir = img.getBoundingClientRect();
for (const rect of figure.querySelectorAll('svg rect')) {
  const r = rect.getBoundingClientRect();
  out[rect.dataset.box] = {
    box: ['x', 'y', 'width', 'height'].map(a => Number(rect.getAttribute(a))),
    screen: [r.left - ir.left, r.top - ir.top, r.width, r.height],
    stroke: parseFloat(getComputedStyle(rect).strokeWidth), colour: getComputedStyle(rect).stroke};
}
const wr = img.parentElement.getBoundingClientRect();
out.image = {natural: [img.naturalWidth, img.naturalHeight], shown: [ir.width, ir.height],
             offset: [ir.left - wr.left, ir.top - wr.top]};
return out;
"""


def overlay_boxes(driver, where=BOXED):
    """The boxes the page draws over the input in the figure ``where`` (the localisation's
    box by default): kind -> {box [x0, y0, x1, y1] in the input's pixels, screen [left,
    top, width, height] relative to the picture in CSS pixels, stroke width, colour};
    "image": natural and displayed size, offset in its padded frame."""
    wait_for(driver, f"document.querySelector('{where} img').complete")
    out = driver.execute_script(OVERLAY_BOXES, where)
    for kind, b in out.items():
        if kind != "image":
            x, y, w, h = b["box"]
            b["box"] = [int(x), int(y), int(x + w), int(y + h)]
    return out


def check_boxes_visible(driver, drawn, where=BOXED):
    """Each box sits where its pixels are on the displayed picture, with lines of at
    least 2 CSS pixels, and the browser shows those lines in their colour."""
    from PIL import Image
    (nw, nh), (sw, sh) = drawn["image"]["natural"], drawn["image"]["shown"]
    ox, oy = drawn["image"]["offset"]
    colours = {"pred": (255, 40, 40), "truth": (40, 220, 40), "field": (255, 220, 0)}
    figure = driver.find_element("css selector", f"{where} .overlay-wrap")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", figure)
    shot = np.asarray(Image.open(io.BytesIO(figure.screenshot_as_png)).convert("RGB")).astype(int)
    ratio = shot.shape[1] / (sw + 2 * ox)       # device pixels per CSS pixel
    for kind, b in drawn.items():
        if kind == "image":
            continue
        x0, y0, x1, y1 = b["box"]
        left, top, width, height = b["screen"]
        # the rect's geometry (its stroke left out) on the displayed picture
        assert left == pytest.approx(x0 * sw / nw, abs=0.5)
        assert top == pytest.approx(y0 * sh / nh, abs=0.5)
        assert width == pytest.approx((x1 - x0) * sw / nw, abs=0.5)
        assert height == pytest.approx((y1 - y0) * sh / nh, abs=0.5)
        assert b["stroke"] >= 2.0
        # the left edge's line, in the middle of its height: mostly the box's colour,
        # over at least 2 CSS pixels across
        row = int(round((oy + (y0 + y1) / 2 * sh / nh) * ratio))
        col = int(round((ox + x0 * sw / nw) * ratio))
        span = shot[row, max(col - 3 * int(ratio), 0):col + 3 * int(ratio) + 1]
        close = (np.abs(span - np.array(colours[kind])).max(axis=1) <= 40).sum()
        assert close >= 2 * ratio, (kind, span.tolist())


def view_of(net, spec):
    return load_views(net, [os.path.join(assets.SAMPLES_DIR, spec.split(":", 1)[1])], 1)[0][0]


def test_input_class_and_method_show_the_api_pictures(page, shipped_net):
    d = page
    params, pixels = shown(d, "#input-img")
    assert np.array_equal(pixels, view_of(shipped_net, params["image"]).rgb)

    click(d, "#samples button[data-spec='sample:sample_07_sneaker.png']")
    wait_for(d, "document.querySelector('#predictions tbody tr').dataset.class === '7'")
    view = view_of(shipped_net, "sample:sample_07_sneaker.png")
    logits = shipped_net.forward(view.x[None])[0]
    rows = d.execute_script("return [...document.querySelectorAll('#predictions tbody tr')]"
                            ".map(r => Number(r.dataset.class));")
    assert rows == [int(c) for c in np.argsort(-logits)[:5]]
    assert d.find_element("id", "predict-command").text.endswith(
        "--image weights/samples/sample_07_sneaker.png --class 7 --method gradient")

    # click the second class of the prediction: the three passes for that class
    second = rows[1]
    click(d, "#predictions tbody tr:nth-child(2)")
    wait_for(d, f"document.querySelector('#saliency-panels').dataset.cls === '{second}'")
    for method in ("gradient", "deconvnet", "guided"):
        sal = saliency_of_views(shipped_net, [(view, 1)], [second], method)[0]
        q, pixels = shown(d, f"img[data-kind=map][data-method={method}]")
        assert (q["class"], q["method"], q["image"]) == (str(second), method, "sample:sample_07_sneaker.png")
        assert np.array_equal(pixels, render.heatmap(sal.map[0]))
        _, pixels = shown(d, f"img[data-kind=overlay][data-method={method}]")
        assert np.array_equal(pixels, render.overlay(view.rgb, sal.map[0]))

    # a class by name, SmoothGrad on, the box from the DeconvNet map
    d.execute_script("const s = document.getElementById('class-input'); s.value = '8';"
                     "s.dispatchEvent(new Event('change'));")
    d.execute_script("const n = document.getElementById('smoothgrad-n'); n.value = '3';"
                     "const c = document.getElementById('smoothgrad-on'); c.checked = true;"
                     "c.dispatchEvent(new Event('change'));"
                     "const m = document.getElementById('localize-method'); m.value = 'deconvnet';"
                     "m.dispatchEvent(new Event('change'));")
    wait_for(d, "document.querySelector('img[data-kind=map][data-method=guided]')"
                ".src.includes('smoothgrad=3') && document.querySelector('#saliency-panels')"
                ".dataset.cls === '8'")
    sal = saliency_of_views(shipped_net, [(view, 1)], [8], "guided", 3, 0.15, 0)[0]
    _, pixels = shown(d, "img[data-kind=map][data-method=guided]")
    assert np.array_equal(pixels, render.heatmap(sal.map[0]))

    wait_for(d, "document.querySelector('#localize-panels img[data-kind=mask]') && document"
                ".querySelector('#localize-panels img[data-kind=mask]').src.includes("
                "'method=deconvnet') && document.querySelector('#localize-panels img[data-kind=mask]')"
                ".src.includes('smoothgrad=3') && document.querySelector('#localize-panels "
                "img[data-kind=mask]').src.includes('class=8')")
    sal = saliency_of_views(shipped_net, [(view, 1)], [8], "deconvnet", 3, 0.15, 0)[0]
    loc = localize_map(view.rgb, sal.map[0])
    _, mask = shown(d, "#localize-panels img[data-kind=mask]")
    assert np.array_equal(mask.min(axis=2) == 255, loc.mask)
    _, boxed = shown(d, "#localize-panels img[data-kind=boxed]")
    assert np.array_equal(boxed, view.rgb)        # the boxes are drawn over it
    truth = next(e["box"] for e in assets.samples() if e["file"].endswith("sample_07_sneaker.png"))
    drawn = overlay_boxes(d)
    assert drawn["truth"]["box"] == truth and drawn["pred"]["box"] == loc.box
    check_boxes_visible(d, drawn)
    command = d.find_element("id", "localize-command").text
    assert "--class 8 --method deconvnet --smoothgrad 3" in command
    d.execute_script("const c = document.getElementById('smoothgrad-on'); c.checked = false;"
                     "c.dispatchEvent(new Event('change'));")


def test_descendants_of_the_paper_map_on_request(page, shipped_net):
    """A descendant's button adds its panel: the map the registry computes for the image
    and class shown, and the command that writes it; it follows a class change."""
    d = page
    click(d, "#samples button[data-spec='sample:sample_07_sneaker.png']")
    wait_for(d, "document.querySelector('#saliency-panels').dataset.image === "
                "'sample:sample_07_sneaker.png'")
    view = view_of(shipped_net, "sample:sample_07_sneaker.png")
    for method in ("gradcam", "occlusion"):
        click(d, f"#descendant-buttons button[data-method={method}]")
        wait_for(d, f"document.querySelector('#descendant-panels img[data-kind=map]"
                    f"[data-method={method}]')")
        q, pixels = shown(d, f"#descendant-panels img[data-kind=map][data-method={method}]")
        cls = int(q["class"])
        sal = saliency_of_views(shipped_net, [(view, 1)], [cls], method)[0]
        assert np.array_equal(pixels, render.heatmap(sal.map[0]))
        text = d.find_element("css selector",
                              f"#descendant-panels [data-method={method}] pre.command").text
        assert f"--method {method}" in text
    screenshot(d, "descendants", 900, "#saliency-section")
    # another class: the open descendants are computed again for it
    d.execute_script("const s = document.getElementById('class-input'); s.value = '5';"
                     "s.dispatchEvent(new Event('change'));")
    wait_for(d, "(document.querySelector('#descendant-panels img[data-kind=map]"
                "[data-method=gradcam]') || {src: ''}).src.includes('class=5')")
    _, pixels = shown(d, "#descendant-panels img[data-kind=map][data-method=gradcam]")
    sal = saliency_of_views(shipped_net, [(view, 1)], [5], "gradcam")[0]
    assert np.array_equal(pixels, render.heatmap(sal.map[0]))


def test_layer_and_unit_clicks_show_the_api_reconstructions(page, shipped_net):
    from selenium.webdriver.common.action_chains import ActionChains
    d = page
    spec = d.execute_script("return new URL(document.getElementById('input-img').src)"
                            ".searchParams.get('image');")
    view = view_of(shipped_net, spec)
    click(d, "#layers-table tr[data-layer=relu3_1]")
    wait_for(d, "document.getElementById('layer-grid').dataset.layer === 'relu3_1' && "
                "document.getElementById('layer-grid').complete")
    act = shipped_net.forward(view.x[None], until="relu3_1")[0]     # (128, 16, 16)
    _, grid = shown(d, "#layer-grid")
    k = 77
    r, c = divmod(k, 12)                      # 128 channels: 12 columns of 16 + 1 px gap
    assert grid.shape == (11 * 17 - 1, 12 * 17 - 1, 3)
    assert np.array_equal(grid[r * 17:r * 17 + 16, c * 17:c * 17 + 16],
                          render.heatmap(act[k], vmax=float(act.max())))

    # click the middle of tile k on the displayed (scaled) grid, once nothing above it
    # changes size any more
    wait_for(d, "document.getElementById('localize-busy').hidden && "
                "[...document.images].every(i => i.complete)")
    img = d.find_element("id", "layer-grid")
    # wholly in view: the offsets are from the centre of the element's visible part
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
    scale = img.size["width"] / grid.shape[1]
    x = (c * 17 + 8) * scale - img.size["width"] / 2
    y = (r * 17 + 8) * scale - img.size["height"] / 2
    ActionChains(d).move_to_element_with_offset(img, int(x), int(y)).click().perform()
    wait_for(d, f"document.getElementById('unit-box').dataset.unit === '{k}' && "
                "!document.getElementById('unit-box').hidden")
    rec = unit_reconstruction(shipped_net, view.x[None], "relu3_1", k)
    for rule in ("gradient", "deconvnet", "guided"):
        q, signed = shown(d, f"#unit-panels img[data-rule={rule}][data-part=signed]")
        assert (q["layer"], q["unit"]) == ("relu3_1", str(k))
        assert np.array_equal(signed, render.signed_rgb(rec.signals[rule][0], "RGB"))
        _, magnitude = shown(d, f"#unit-panels img[data-rule={rule}][data-part=abs]")
        assert np.array_equal(magnitude, render.heatmap(np.abs(rec.signals[rule][0]).max(axis=0)))
    title = d.find_element("id", "unit-title").text
    assert f"at ({rec.positions[0][0]}, {rec.positions[0][1]})" in title
    assert d.find_element("id", "unit-command").text.endswith(f"--layer relu3_1 --channel {k}")
    crops = d.execute_script("return document.querySelectorAll('#top-crops img').length;")
    assert crops == 6
    wait_for(d, "[...document.querySelectorAll('img')].every(i => i.complete) && "
                "document.querySelector('#localize-panels img[data-kind=mask]')")
    screenshot(d, "overview", 1350)
    screenshot(d, "layers", 1150, "#layers-section")

    # a unit by number, in a fully connected layer
    click(d, "#layers-table tr[data-layer=fc7]")
    wait_for(d, "document.getElementById('layer-grid').dataset.layer === 'fc7'")
    d.execute_script("document.getElementById('unit-number').value = '3';")
    click(d, "#unit-go")
    wait_for(d, "document.getElementById('unit-box').dataset.unit === '3' && "
                "document.getElementById('unit-box').dataset.layer === 'fc7'")
    rec = unit_reconstruction(shipped_net, view.x[None], "fc7", 3)
    _, signed = shown(d, "#unit-panels img[data-rule=guided][data-part=signed]")
    assert np.array_equal(signed, render.signed_rgb(rec.signals["guided"][0], "RGB"))
    # an out-of-range unit: a message on the page
    d.execute_script("document.getElementById('unit-number').value = '10';")
    click(d, "#unit-go")
    wait_for(d, "!document.getElementById('unit-error').hidden")
    assert "[0, 9]" in d.find_element("id", "unit-error").text


def test_uploads_and_canvases(page, shipped_net, tmp_path):
    d = page
    picture = np.random.default_rng(5).integers(0, 256, (48, 100, 3), dtype=np.uint8)
    path = tmp_path / "my photo.png"
    path.write_bytes(png_of(picture))
    d.find_element("id", "upload-file").send_keys(str(path))
    wait_for(d, "document.getElementById('input-caption').textContent.includes('my photo.png')")
    _, pixels = shown(d, "#input-img")
    assert np.array_equal(pixels, load_views(shipped_net, [str(path)], 1)[0][0].rgb)
    assert "100x48 → 64x64" in d.find_element("id", "input-caption").text

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is text")
    d.find_element("id", "upload-file").send_keys(str(bad))
    wait_for(d, "!document.getElementById('input-error').hidden")
    assert "not an image" in d.find_element("id", "input-error").text

    if not os.path.isdir(FASHION_DIR):
        assert d.find_element("id", "canvas-btn").get_attribute("disabled")
        assert "Fashion-MNIST" in d.find_element("id", "canvas-note").text
        return
    click(d, "#canvas-btn")
    wait_for(d, "document.getElementById('input-caption').textContent.includes('fresh canvas')")
    q, pixels = shown(d, "#input-img")
    seed = int(unquote(q["image"]).split(":")[1])
    from minicnn.datasets.cluttered import ClutteredFashion
    from minicnn.datasets.fashion_mnist import load_fashion_mnist
    from minicnn.explore.images import CANVAS_SEED_BASE
    images, labels = load_fashion_mnist("test")
    canvas = ClutteredFashion(images, labels).render(seed % len(images), (CANVAS_SEED_BASE, seed))
    assert np.array_equal(pixels, canvas["image"])


def test_class_model_gallery_with_progress(page, shipped_net):
    d = page
    d.execute_script("const f = document.getElementById('cm-form'); f.steps.value = '3';"
                     "f.seed.value = '2';")
    click(d, "#cm-start")
    # the progress bar moves: seen running part-way, or already done
    wait_for(d, "(() => { const p = document.getElementById('cm-progress');"
                " return p.value > 0 && p.max === 4; })()")
    wait_for(d, "['queued', 'running', 'done'].includes(document.getElementById('cm-section').dataset.state)")
    wait_for(d, "document.getElementById('cm-section').dataset.state === 'done' && "
                "document.querySelectorAll('#cm-gallery img').length === 10")
    assert d.execute_script("const p = document.getElementById('cm-progress'); return [p.value, p.max];") == [4, 4]
    ref = class_model(shipped_net, list(range(10)), steps=3, step=0.1, lam=0.01, jitter=2,
                      blur_every=4, blur_sigma=1.0, seed=2, init_noise=0.01)
    p = shipped_net.preprocessing
    for c in (0, 7):
        _, pixels = shown(d, f"#cm-gallery img[data-class='{c}']")
        assert np.array_equal(pixels, render.rescaled_rgb(p.input_to_array(ref.x[c])))
    assert d.find_element("id", "cm-command").text.endswith("--steps 3 --seed 2")
    if SCREENSHOTS:      # the README's gallery: the tool's default settings (minutes)
        d.execute_script("document.getElementById('unit-number').value = '3';")
        click(d, "#unit-go")       # a valid unit clears the previous test's error
        d.execute_script("const f = document.getElementById('cm-form'); f.steps.value = '300';"
                         "f.seed.value = '0';")
        click(d, "#cm-start")
        wait_for(d, "document.getElementById('cm-progress').value > 100", 1800)
        screenshot(d, "class_models_progress", 520, "#cm-section")
        wait_for(d, "document.getElementById('cm-section').dataset.state === 'done'", 1800)
        screenshot(d, "class_models", 520, "#cm-section")


def test_page_fetches_nothing_from_outside(page):
    """Every script, style and picture comes from the tool itself."""
    urls = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat([...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href));")
    host = re.match(r"https?://[^/]+", page.current_url).group(0)
    outside = [u for u in urls if not (u.startswith(host) or u.startswith("data:"))]
    assert urls and not outside


# ----------------------------------------------------------------------------- a photo model

NO_BROKEN_IMAGES = """
const shown = [...document.images].filter(i => i.getClientRects().length > 0);
const broken = shown.filter(i => !i.getAttribute('src') || (i.complete && i.naturalWidth === 0))
                    .map(i => i.id || i.dataset.kind || i.alt);
const failed = performance.getEntriesByType('resource').filter(e => e.responseStatus >= 400)
                          .map(e => e.name);
return [shown.length, broken, failed];
"""


def check_no_broken_images(driver):
    """Every displayed <img> has a picture, and no request of the page failed."""
    wait_for(driver, "[...document.images].every(i => i.complete)")
    count, broken, failed = driver.execute_script(NO_BROKEN_IMAGES)
    assert broken == [] and failed == []
    return count


def chips(driver):
    return driver.execute_script("return [...document.querySelectorAll('#cm-classes .chip')]"
                                 ".map(c => Number(c.dataset.class));")


@pytest.fixture(scope="module")
def imagenet_page(imagenet_weights):
    """A browser on an explorer of the 1000-class VGG16-shaped model (no samples)."""
    srv = make_imagenet_server(imagenet_weights)
    driver = new_driver()
    try:
        driver.get(srv.url)
        wait_for(driver, "document.getElementById('model-line').textContent.includes('1000 classes')"
                         " && document.querySelectorAll('#cm-classes .chip').length === 6")
        yield driver, srv
    finally:
        driver.quit()
        srv.stop()


def test_photo_model_box_overlay_stale_panels_and_no_broken_images(imagenet_page, imagenet_net,
                                                                   photo):
    d, srv = imagenet_page
    net = imagenet_net
    # no samples: a hint, and no <img> without a picture
    assert "upload a photo" in d.find_element("id", "no-samples").text
    assert d.find_element("id", "input-empty").is_displayed()
    assert check_no_broken_images(d) == 0

    d.find_element("id", "upload-file").send_keys(str(photo))
    wait_for(d, "document.getElementById('localize-panels').dataset.image && "
                "!document.querySelector('.stale:not([hidden])') && "
                "document.querySelectorAll('#predictions tbody tr[data-class]').length === 5")
    view = load_views(net, [str(photo)], 1)[0][0]
    q, pixels = shown(d, "#input-img")
    assert np.array_equal(pixels, view.rgb)
    spec = q["image"]
    top1 = int(np.argmax(net.forward(view.x[None])[0]))
    assert d.execute_script("return document.querySelector('#predictions tbody tr')"
                            ".dataset.class;") == str(top1)
    # the box from the gradient map, drawn over the 224-pixel picture shown at 192 pixels
    sal = saliency_of_views(net, [(view, 1)], [top1], "gradient")[0]
    loc = localize_map(view.rgb, sal.map[0])
    drawn = overlay_boxes(d)
    assert drawn["pred"]["box"] == loc.box and "truth" not in drawn
    assert drawn["image"]["natural"] == [224, 224] and drawn["image"]["shown"][0] < 224
    check_boxes_visible(d, drawn)
    assert check_no_broken_images(d) > 10
    # a unit's receptive field, drawn the same way
    click(d, "#layers-table tr[data-layer=relu3_1]")
    wait_for(d, "document.getElementById('layer-grid').dataset.layer === 'relu3_1'")
    d.execute_script("document.getElementById('unit-number').value = '5';")
    click(d, "#unit-go")
    wait_for(d, "document.getElementById('unit-box').dataset.unit === '5' && "
                "!document.getElementById('unit-box').hidden")
    field = "#unit-panels figure[data-kind=field-figure]"
    drawn = overlay_boxes(d, field)
    unit = http(srv.url, f"/api/unit?image={spec}&layer=relu3_1&unit=5").json()
    assert drawn["field"]["box"] == unit["receptive_field"]
    check_boxes_visible(d, drawn, field)

    # another image: the panels of this one are dimmed at once, the prediction cleared,
    # until the new image's results replace them
    from skimage import data
    body, headers = multipart("astronaut.png", png_of(data.astronaut()[::2, ::2]))
    other = http(srv.url, "/api/upload", body, headers, "POST").json()["image"]
    flags = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/image?image=' + encodeURIComponent(arguments[0])).then(r => r.json()).then(info => {
          setImage(info);
          done([STALE.filter(id => !document.getElementById(id).classList.contains('stale')),
                document.querySelector('#predictions tbody').textContent]);
        });""", other)
    assert flags == [[], "computing…"]
    wait_for(d, f"document.getElementById('saliency-panels').dataset.image === '{other}' && "
                f"document.getElementById('localize-panels').dataset.image === '{other}' && "
                f"document.getElementById('layer-grid').dataset.image === '{other}' && "
                "!document.querySelector('.stale:not([hidden])')")
    check_no_broken_images(d)


def test_photo_model_class_picker(imagenet_page, imagenet_net):
    d, srv = imagenet_page
    url = srv.url
    assert d.find_element("id", "cm-prev").get_attribute("disabled")
    click(d, "#cm-next")
    wait_for(d, "document.getElementById('cm-page').textContent.includes('page 1 of 100')")
    assert chips(d) == list(range(10))
    click(d, "#cm-next")
    wait_for(d, "document.getElementById('cm-page').textContent.includes('page 2 of 100')")
    assert chips(d) == list(range(10, 20))
    assert d.find_element("id", "cm-command").text.endswith("--class " + " ".join(map(str, range(10, 20))))

    d.execute_script("document.getElementById('cm-search').value = 'fox';")
    click(d, "#cm-find")
    wait_for(d, "document.getElementById('cm-page').textContent.includes('match \"fox\"')")
    found = [c["class"] for c in http(url, "/api/classes?q=fox").json()["classes"]]
    assert chips(d) == found and 278 in found          # kit fox
    # leave one out, then compute the gallery of the rest (one step)
    click(d, f"#cm-classes .chip[data-class='{found[0]}'] button")
    wait_for(d, f"document.querySelectorAll('#cm-classes .chip').length === {len(found) - 1}")
    d.execute_script("const f = document.getElementById('cm-form'); f.steps.value = '1';")
    click(d, "#cm-start")
    wait_for(d, "document.getElementById('cm-section').dataset.state === 'done' && "
                f"document.querySelectorAll('#cm-gallery img').length === {len(found) - 1}")
    classes = ",".join(map(str, found[1:]))
    assert d.execute_script("return document.getElementById('cm-section').dataset.classes;") == classes
    assert d.find_element("id", "cm-command").text.endswith(
        "--class " + " ".join(map(str, found[1:])) + " --steps 1")
    check_no_broken_images(d)

    # the top classes of the image shown
    click(d, "#cm-top")
    wait_for(d, "document.getElementById('cm-page').textContent.startsWith('the top 10')")
    image = d.execute_script("return new URL(document.getElementById('input-img').src)"
                             ".searchParams.get('image');")
    top = http(url, f"/api/predict?image={image}&top=10").json()["top"]
    assert chips(d) == [t["class"] for t in top]
    assert d.find_element("id", "cm-next").get_attribute("disabled")
    # a search that finds nothing says so and keeps the classes
    d.execute_script("document.getElementById('cm-search').value = 'zzzz';")
    click(d, "#cm-find")
    wait_for(d, "!document.getElementById('cm-error').hidden")
    assert 'no class name matches "zzzz"' in d.find_element("id", "cm-error").text
    assert chips(d) == [t["class"] for t in top]
