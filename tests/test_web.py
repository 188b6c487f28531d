"""The draw-a-digit page (web/) in a real browser (Debian's Chromium driven by Playwright), through
nginx (deploy/nginx/) to the session's real TorchServe. Every page checks that it contacted
nothing but its own origin and logged no error beyond the HTTP refusals a test provokes.

WEB_SCREENSHOTS=docs python -m pytest tests/test_web.py  saves the screenshots the README shows.
"""
import base64
import os
from pathlib import Path

import numpy as np
import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from harness.server import free_ports
from tests.proxy import start_proxy, stop_proxy
from tests.strokes import strokes
from training.user_styles import dark_on_white, photo_jpeg

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}
HTTP_REFUSAL = "Failed to load resource: the server responded with a status of"
WAIT_MS = 20_000                     # a busy CI machine; a passing check returns at once
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """open_page(origin, key=None, viewport=DESKTOP, **device) -> a fresh tab on the page; at the
    end of the test, every request of every tab must have gone to its own origin."""
    opened = []

    def open_(origin: str, key: str | None = None, viewport: dict = DESKTOP, **device):
        context = browser.new_context(viewport=viewport, **device)
        requested, errors = [], []
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        opened.append((origin, context, requested, errors))
        page.goto(f"{origin}/" + (f"#key={key}" if key else ""))
        return page

    yield open_
    for origin, context, requested, errors in opened:
        context.close()
        assert f"{origin}/app.js" in requested
        assert [url for url in requested if not url.startswith(f"{origin}/")] == []
        assert [error for error in errors if not error.startswith(HTTP_REFUSAL)] == []


@pytest.fixture
def screenshot():
    """Save the page to $WEB_SCREENSHOTS/web-<name>.png when that variable names a folder."""
    folder = os.environ.get("WEB_SCREENSHOTS")

    def save(page, name: str):
        if folder:
            page.screenshot(path=str(Path(folder) / f"web-{name}.png"))   # what the screen shows
    return save


def first_of_each_class(test_set) -> dict[int, np.ndarray]:
    images, labels = test_set
    return {digit: images[np.flatnonzero(labels == digit)[0]] for digit in range(10)}


def draw(page, image: np.ndarray, touch=None) -> None:
    """Draw an MNIST digit's strokes across the whole pad, as a hand would, with mouse events or,
    given a CDP session, a finger's touch events: a move every second skeleton pixel (the pad
    joins them with straight lines, as it does a hand's moves)."""
    box = page.locator("#pad").bounding_box()
    side = image.shape[0]
    for stroke in strokes(image):
        points = [(box["x"] + x / side * box["width"], box["y"] + y / side * box["height"]) for x, y in stroke]
        points = points[:1] + points[2::2] + points[-1:]
        if touch:
            for kind, (x, y) in zip(["touchStart"] + ["touchMove"] * (len(points) - 1), points):
                touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
            touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
            continue
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point)
        page.mouse.up()


def settled(page) -> None:
    """Wait until the last read has been answered (checked at every animation frame, where
    expect() would poll at growing intervals of up to a second)."""
    page.wait_for_selector('#answer[aria-busy="false"]', state="attached", timeout=WAIT_MS)


def pad_inked(page) -> bool:
    """Whether any pixel of the pad is dark."""
    return page.evaluate("""() => {
        const pad = document.querySelector('#pad');
        return pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data.some(v => v < 128);
    }""")


def answer_shown(page) -> str:
    """The digit on the page once the last read has been answered."""
    settled(page)
    expect(page.locator("#result")).to_be_visible()
    return page.text_content("#digit")


def message_shown(page) -> str:
    settled(page)
    expect(page.locator("#message")).to_be_visible()
    text = page.text_content("#message-text")
    assert "{" not in text and "InvalidKeyException" not in text   # a sentence, never raw JSON
    return text


def test_drawn_mnist_digits_are_read(open_page, proxy, server, test_set, screenshot):
    page = open_page(proxy.url, server.key())
    expect(page.locator("#idle")).to_be_visible()
    expect(page.locator("#pad-hint")).to_have_text("Draw one digit here, or drop an image")
    screenshot(page, "empty")
    read = {}
    for digit, image in first_of_each_class(test_set).items():
        page.click("#clear")
        draw(page, image)
        read[digit] = int(answer_shown(page))
    assert read == {digit: digit for digit in range(10)}


def test_the_answer_shows_probabilities_and_the_heat_map(open_page, proxy, server, test_set, screenshot):
    page = open_page(proxy.url, server.key())
    answers = []
    page.on("response", lambda r: r.url.endswith("/explanations/mnist") and r.ok and answers.append(r.json()))
    draw(page, first_of_each_class(test_set)[2])
    assert answer_shown(page) == "2"
    answer = answers[-1]
    assert_in_view(page, "#digit", "#confidence", "#bars .bar", "#heatmap")
    expect(page.locator("#help")).to_contain_text("Ctrl+Z")
    expect(page.locator("#bars-hint")).to_contain_text("Pick a digit")

    values = page.locator("#bars .value").all_text_contents()
    for shown, p in zip(values, answer["probabilities"], strict=True):
        assert shown == ("> 99.9%" if p >= 0.9995 else "< 0.1%" if p < 0.0005 else f"{100 * p:.1f}%")
    expect(page.locator("#bars .bar.best")).to_have_attribute("data-digit", "2")
    assert_heat_map(page, answer)

    page.click("#bars .bar[data-digit='3']")          # why a 2, not a 3?
    expect(page.locator("#why-title")).to_contain_text("Why 2 and not 3")
    assert answer_shown(page) == "2" and (answers[-1]["target"], answers[-1]["versus"]) == (2, 3)
    expect(page.locator("#bars .bar[data-digit='3']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator(".why figcaption")).to_contain_text("Red pushes toward 2, blue toward 3")
    assert_heat_map(page, answers[-1])
    screenshot(page, "answer")
    page.click("#bars .bar[data-digit='2']")          # the answer's own bar: why a 2?
    expect(page.locator("#why-title")).to_have_text("Why 2?")
    assert "versus" not in answers[-1]

    page.keyboard.press("Control+z")                   # the 2 is one stroke: undone, the pad is blank
    expect(page.locator("#idle")).to_be_visible()
    assert not pad_inked(page)


def assert_in_view(page, *selectors: str) -> None:
    """Every element the selectors match lies wholly inside the viewport, which has not scrolled."""
    size = page.viewport_size
    assert page.evaluate("[window.scrollX, window.scrollY]") == [0, 0]
    for selector in selectors:
        for element in page.locator(selector).all():
            box = element.bounding_box()
            assert box and box["x"] >= 0 and box["y"] >= 0, selector
            assert box["x"] + box["width"] <= size["width"] and box["y"] + box["height"] <= size["height"], selector


def assert_heat_map(page, answer: dict) -> None:
    """The 32x32 map is the answer's: red where a pixel speaks for the target, blue against; a map
    of the target alone (from a blank page) is white where the normalized digit, padded to the
    model's input, has no ink, and not where it has some; a contrast colours empty paper too."""
    pixels = np.array(page.evaluate("""() => {
        const canvas = document.querySelector('#heatmap');
        return Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data);
    }"""), np.int32).reshape(32, 32, 4)
    attributions = np.array(answer["attributions"])
    strong = np.abs(attributions) >= 0.2 * np.abs(attributions).max()
    red, blue = pixels[..., 0], pixels[..., 2]
    assert (strong & (attributions > 0)).any() and (strong & (attributions < 0)).any()
    assert (red > blue)[strong & (attributions > 0)].all()
    assert (blue > red)[strong & (attributions < 0)].all()
    ink = np.pad(np.array(answer["normalized_digit"]), 2)
    white = (pixels[..., :3] == 255).all(axis=-1)
    assert not white[ink >= 16].any()
    assert white[ink == 0].all() == ("versus" not in answer)


def test_a_picked_bar_brings_its_map_into_view_on_a_short_screen(open_page, proxy, server, test_set):
    """On a screen too short for the bars and the map together, picking a bar scrolls its map
    into view (clicking scrolls the bar to mid-screen; the map below it reaches past the edge)."""
    page = open_page(proxy.url, server.key(), {"width": 1100, "height": 440})
    draw(page, first_of_each_class(test_set)[7])
    assert answer_shown(page) == "7"
    page.click("#bars .bar[data-digit='9']")
    expect(page.locator("#why-title")).to_contain_text("Why 7 and not 9")
    expect(page.locator("#heatmap")).to_be_in_viewport(ratio=0.99)   # to the subpixel


def test_image_files_are_read_from_the_picker_drag_and_drop_and_paste(open_page, proxy, server, test_set):
    page = open_page(proxy.url, server.key())
    digits = first_of_each_class(test_set)
    page.set_input_files("#file", files=[{"name": "three.png", "mimeType": "image/png",
                                          "buffer": dark_on_white(digits[3])}])
    assert answer_shown(page) == "3"
    assert pad_inked(page)                             # the picture is shown on the pad
    photo = base64.b64encode(photo_jpeg(digits[5], np.random.default_rng(5))).decode()
    dropped = page.evaluate_handle("""(data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'five.jpg', {type: 'image/jpeg'}));
        return transfer;
    }""", photo)
    page.dispatch_event("#pad-zone", "drop", {"dataTransfer": dropped})
    expect(page.locator("#digit")).to_have_text("5")
    assert answer_shown(page) == "5"
    pasted = base64.b64encode(dark_on_white(digits[8])).decode()
    page.evaluate("""(data) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], 'eight.png',
                                    {type: 'image/png'}));
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: transfer}));
    }""", pasted)
    expect(page.locator("#digit")).to_have_text("8")
    expect(page.locator("#photo")).to_be_hidden()      # no camera button for a mouse


def test_a_phone_touch_and_the_keyboard_reach_everything(open_page, proxy, server, test_set, screenshot):
    """On a 390 px touch screen nothing scrolls sideways, a finger draws, and the camera button
    shows; Tab reaches the buttons in order, Enter on "Read digit" sends the blank pad (the
    no-digit sentence), Enter on "Choose image..." opens the file chooser."""
    page = open_page(proxy.url, server.key(), PHONE, is_mobile=True, has_touch=True)
    page.on("filechooser", lambda chooser: None)   # intercept file choosers from now on, well before Enter
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = page.locator("#pad").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and box["width"] >= 250
    expect(page.locator("#photo")).to_be_visible()
    assert page.get_attribute("#camera", "capture") == "environment"
    focused = []
    while len(focused) < 8:
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
        if focused[-1] == "choose":
            break
    assert focused[:4] == ["read", "undo", "clear", "choose"]
    page.focus("#read")
    page.keyboard.press("Enter")
    assert message_shown(page).startswith("No digit found")
    screenshot(page, "no-digit-phone")
    page.focus("#choose")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(files=[{"name": "seven.png", "mimeType": "image/png",
                                    "buffer": dark_on_white(first_of_each_class(test_set)[7])}])
    assert answer_shown(page) == "7"
    expect(page.locator("#message")).to_be_hidden()
    draw(page, first_of_each_class(test_set)[6], touch=page.context.new_cdp_session(page))
    assert answer_shown(page) == "6"


def test_on_a_phone_the_answer_and_its_map_are_on_screen(open_page, proxy, server, test_set, screenshot):
    """On a 390x844 touch screen, after a finger draws: the answer, its confidence, the ten bars
    and the map are on screen without scrolling; a tapped bar's map is there too, with a caption
    that names both digits; the help speaks of a finger, never of keys."""
    page = open_page(proxy.url, server.key(), PHONE, is_mobile=True, has_touch=True)
    answers = []
    page.on("response", lambda r: r.url.endswith("/explanations/mnist") and r.ok and answers.append(r.json()))
    help_text = page.inner_text("#help")
    assert "finger" in help_text and "Ctrl" not in help_text and "keyboard" not in help_text
    assert page.inner_text("#pad-hint") == "Draw one digit here"
    draw(page, first_of_each_class(test_set)[3], touch=page.context.new_cdp_session(page))
    assert answer_shown(page) == "3"
    assert_in_view(page, "#digit", "#confidence", "#bars .bar", "#heatmap")
    assert page.inner_text("#bars-hint").startswith("Tap a digit")
    page.tap("#bars .bar[data-digit='8']")
    expect(page.locator("#why-title")).to_contain_text("Why 3 and not 8")
    settled(page)
    assert (answers[-1]["target"], answers[-1]["versus"]) == (3, 8)
    expect(page.locator("#legend-blue")).to_have_text("toward 8")
    expect(page.locator("#legend-red")).to_have_text("toward 3")
    expect(page.locator("#why-text")).to_contain_text("where an 8 would have ink that this drawing lacks")
    assert_in_view(page, "#digit", "#bars .bar", "#heatmap", "#why-title")
    assert_heat_map(page, answers[-1])
    screenshot(page, "phone")


def test_a_missing_or_wrong_key_is_told_and_a_pasted_key_works(open_page, proxy, server, test_set, screenshot):
    page = open_page(proxy.url)
    assert "make demo" in message_shown(page)
    expect(page.locator("#key-panel")).to_be_visible()
    page.evaluate("location.hash = 'key=not-the-key'")     # a stale link opened in the same tab
    expect(page.locator("#message-text")).to_contain_text("refused this page's key")
    assert "#key" not in page.url
    assert page.evaluate("[sessionStorage.getItem('inference-key'), localStorage.length]") == ["not-the-key", 0]
    draw(page, first_of_each_class(test_set)[4])
    assert "refused this page's key" in message_shown(page)
    screenshot(page, "wrong-key")
    page.fill("#key-input", server.key())
    page.keyboard.press("Enter")                        # the 4 already on the pad is read at once
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#digit")).to_have_text("4")
    assert answer_shown(page) == "4"


def test_an_image_over_the_body_limit_is_told(open_page, proxy, server, tmp_path):
    page = open_page(proxy.url, server.key())
    limit = int(proxy.setting(r"client_max_body_size (\d+);"))
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG" + bytes(limit + 2**20))
    page.set_input_files("#file", huge)
    text = message_shown(page)
    assert text.startswith("The image is too large") and f"at most {limit / 2**20:.1f} MB" in text


def test_a_client_over_the_rate_limit_is_told(open_page, server, test_set):
    """A proxy allowing one request a minute (and a burst of one): once they are spent, the page's
    read gets 429."""
    ts_config = server.workdir / "config" / "config.properties"
    strict = start_proxy(ts_config, free_ports(1)[0], "--rate", "1r/m", "--burst", "1")
    try:
        page = open_page(strict.url, server.key())
        statuses = []
        while 429 not in statuses and len(statuses) < 3:   # spend the allowance, whatever the page spent
            statuses.append(requests.get(f"{strict.url}/ping", headers={"Authorization": f"Bearer {server.key()}"},
                                         timeout=10).status_code)
        assert statuses[-1] == 429
        draw(page, first_of_each_class(test_set)[1])
        assert message_shown(page).startswith("Too many requests")
        expect(page.locator("#retry")).to_be_visible()
    finally:
        stop_proxy(strict)
