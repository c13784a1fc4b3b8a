"""The search web app: its JSON API through TestClient, and the page itself in a real headless Chromium.

One tiny run and a 30-galaxy index serve both. The browser tests drive Debian's /usr/bin/chromium
with Playwright (never a downloaded browser) against the app served by uvicorn on 127.0.0.1.
"""

import contextlib
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from astropy.io import fits
from PIL import Image

from conftest import WEB_MAX_BYTES as MAX_BYTES
from conftest import WEB_MAX_PIXELS as MAX_PIXELS
from conftest import WEB_N as N
from conftest import easy_image
from galaxalign.cli import build_parser

K = 5
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


def png_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def fits_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    fits.PrimaryHDU(array).writeto(out)
    return out.getvalue()


GALAXY = easy_image(8, np.random.default_rng(1))  # an edge-on streak, 48 px


def sketch_png() -> bytes:
    """A light ellipse outline on black, like a smooth galaxy's symbol."""
    y, x = np.mgrid[:96, :96] - 47.5
    ring = np.abs(np.hypot(x / 40, y / 20) - 1) < 0.08
    return png_bytes(np.repeat((ring * 230).astype(np.uint8)[:, :, None], 3, axis=2))


# ---------------------------------------------------------------- JSON API


def post(client, kind: str, data: bytes, name: str = "query.png", k: int = K):
    return client.post(f"/api/search/{kind}", params={"k": k}, files={"file": (name, data, "image/png")})


QUERIES = {
    "text": lambda c: c.get("/api/search/text", params={"q": "an edge-on galaxy", "k": K}),
    "symbol": lambda c: c.get("/api/search/symbol", params={"cls": "merging", "k": K}),
    "id": lambda c: c.get("/api/search/id", params={"id": "3", "k": K}),
    "image": lambda c: post(c, "image", png_bytes(GALAXY), "galaxy.png"),
    "image-fits": lambda c: post(c, "image", fits_bytes(GALAXY.mean(axis=2).astype(np.float32)), "galaxy.fits"),
    "sketch": lambda c: post(c, "sketch", sketch_png(), "sketch.png"),
}


@pytest.mark.parametrize("kind", QUERIES)
def test_each_query_kind_returns_k_hits(client, kind):
    response = QUERIES[kind](client)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["k"] == K and result["query"]["kind"] == kind.split("-")[0]
    hits = result["hits"]
    assert len(hits) == K
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        assert hit["thumbnail"] == f"/api/thumbnail/{hit['index']}.png"
        assert hit["predicted"] == hit["top"][0] and len(hit["top"]) == 3
        assert sum(c["probability"] for c in hit["top"]) <= 1 + 1e-6
        assert hit["source"] == "easy.h5"  # the catalogue's name, not its server path
    if kind == "id":
        assert "3" not in [h["id"] for h in hits]


def test_hit_probabilities_are_the_runs_own(client, run, dataset):
    """Computed from stored embeddings, they equal `Run.predict_proba` on the galaxies' images."""
    hits = client.get("/api/search/id", params={"id": "0", "k": 8}).json()["hits"]
    want = run.predict_proba([dataset[h["index"]].image for h in hits])
    for hit, probs in zip(hits, want):
        top = hit["top"][0]
        assert top["key"] == run.scheme[int(np.argmax(probs))].key
        assert top["probability"] == pytest.approx(float(probs.max()), abs=1e-4)


def test_search_by_id_does_not_queue_behind_the_model(client, app):
    """While another request holds the model, an id search (stored embeddings) is answered; a text search waits."""
    answers = {}

    def ask(kind, params):
        answers[kind] = client.get(f"/api/search/{kind}", params=params)

    text = threading.Thread(target=ask, args=("text", {"q": "an edge-on galaxy", "k": K}))
    with app.state.service.lock:
        by_id = threading.Thread(target=ask, args=("id", {"id": "3", "k": K}))
        by_id.start()
        by_id.join(timeout=30)
        text.start()
        text.join(timeout=1)
        assert not by_id.is_alive() and answers["id"].status_code == 200
        assert text.is_alive() and "text" not in answers
    text.join(timeout=30)
    assert answers["text"].status_code == 200


def fits_garbage() -> bytes:
    return b"SIMPLE  =                    T" + b" " * 50 + b"NAXIS   = nonsense"


BAD_UPLOADS = {
    "garbage": (b"this is not an image at all" * 10, "bad.png", 422),
    "truncated": (png_bytes(GALAXY)[:200], "cut.png", 422),
    "empty": (b"", "empty.png", 422),
    "fits-garbage": (fits_garbage(), "bad.fits", 422),
    "oversize": (b"\x89PNG" + os.urandom(MAX_BYTES), "big.png", 413),
    "too-many-pixels": (png_bytes(np.zeros((320, 300, 3), np.uint8)), "wide.png", 413),
    "fits-too-many-pixels": (fits_bytes(np.zeros((320, 300), np.uint8)), "wide.fits", 413),
}


@pytest.mark.parametrize("kind", ["image", "sketch"])
@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_uploads_are_a_4xx_with_a_message(client, kind, case):
    data, name, status = BAD_UPLOADS[case]
    response = post(client, kind, data, name)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_a_streamed_body_is_cut_off_at_the_cap(client):
    """Without a Content-Length the body is counted as it arrives, not spooled whole first."""

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(50):
            yield b"x" * 10_000
        yield b"\r\n--b--\r\n"

    response = client.post(
        "/api/search/image", content=body(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413 and "detail" in response.json()


def test_blank_sketch_and_missing_file(client):
    response = post(client, "sketch", png_bytes(np.zeros((40, 40, 3), np.uint8)))
    assert response.status_code == 422 and "blank" in response.json()["detail"]
    assert client.post("/api/search/image").status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "/api/search/text?q=&k=3",
        "/api/search/text?q=spiral&k=0",
        "/api/search/text?q=spiral&k=101",
        "/api/search/id?id=no-such-galaxy",
        "/api/search/symbol?cls=no-such-class",
        "/api/search/id",
    ],
)
def test_bad_queries_are_422_with_a_message(client, url):
    response = client.get(url)
    assert response.status_code == 422 and isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    "url",
    [
        "/api/thumbnail/../../etc/passwd.png",
        "/api/thumbnail/..%2F..%2Fetc%2Fpasswd.png",
        "/api/thumbnail/-1.png",
        f"/api/thumbnail/{N}.png",
        "/api/thumbnail/0x1.png",
        "/api/thumbnail/%2Fetc%2Fpasswd.png",
        "/api/symbol/..%2F..%2Fpyproject.toml.png",
        "/api/symbol/../web/app.py.png",
        "/api/symbol/Merging%20Galaxies.png",
        "/static/..%2Fapp.py",
        "/static/index.html",
        "/static/%2Fetc%2Fpasswd",
    ],
)
def test_files_are_only_served_by_row_or_key(client, url):
    assert client.get(url).status_code in (404, 422)


def test_thumbnails_symbols_and_page(client, app):
    thumb = Image.open(io.BytesIO(client.get("/api/thumbnail/0.png").content))
    assert thumb.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(thumb.convert("RGB")), app.state.service.index.thumbnails[0])
    classes = client.get("/api/classes").json()["classes"]
    assert len(classes) == 10 and classes[1]["key"] == "merging"
    symbol = client.get(classes[1]["symbol"])
    assert symbol.headers["content-type"] == "image/png" and Image.open(io.BytesIO(symbol.content)).size == (96, 96)
    page = client.get("/")
    assert (
        "text/html" in page.headers["content-type"] and "default-src 'self'" in page.headers["content-security-policy"]
    )
    assert client.get("/static/app.js").status_code == 200
    health = client.get("/api/health").json()
    assert health["galaxies"] == N and health["max_upload_bytes"] == MAX_BYTES and health["max_pixels"] == MAX_PIXELS


def test_openapi_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {
        "/api/search/text",
        "/api/search/symbol",
        "/api/search/id",
        "/api/search/image",
        "/api/search/sketch",
        "/api/search/position",
        "/api/classes",
        "/api/health",
        "/api/thumbnail/{row}.png",
        "/api/symbol/{class_key}.png",
    }
    assert "multipart/form-data" in paths["/api/search/image"]["post"]["requestBody"]["content"]
    assert {"SearchResult", "GalaxyHit", "ClassProbability", "ErrorBody"} <= set(schema["components"]["schemas"])


def test_sky_queries_need_a_survey_index(client):
    response = client.get("/api/search/position", params={"ra": 0.5, "dec": 0.5})
    assert response.status_code == 422 and "needs a survey index" in response.json()["detail"]
    response = client.get("/api/search/text", params={"q": "spiral", "cone_ra": 1, "cone_dec": 1, "cone_radius": 1})
    assert response.status_code == 422 and "a cone filter needs a survey index" in response.json()["detail"]


# ---------------------------------------------------------------- a survey index behind the same API


@pytest.fixture(scope="module")
def survey_app(run, easy_h5, tmp_path_factory):
    """The 120 easy galaxies embedded by the run into two shards, as `embed` writes them, then a survey index."""
    from galaxalign.data import open_dataset
    from galaxalign.search import shards
    from galaxalign.search.survey import BuildOptions, build_survey_index
    from galaxalign.web import create_app

    root = tmp_path_factory.mktemp("survey-web")
    data = open_dataset(easy_h5, scheme=run.scheme)
    vectors = run.embed_images([data[i].image for i in range(len(data))])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    meta = [data.metadata(i) for i in range(len(data))]
    halves = [range(0, 60), range(60, len(data))]
    emb = root / "emb"
    shards.write_catalogue_manifest(
        emb,
        {
            "run": str(run.run_dir),
            "fingerprint": run.fingerprint,
            "dim": vectors.shape[1],
            "sources": [str(easy_h5)] * 2,
        },
    )
    for k, rows in enumerate(halves):
        shards.write_shard(
            emb,
            k,
            ids=[f"s{i}" for i in rows],
            ra=[meta[i]["ra"] for i in rows],
            dec=[meta[i]["dec"] for i in rows],
            source=str(easy_h5),
            rows=np.array(rows),
            vectors=vectors[rows.start : rows.stop],
            fingerprint=run.fingerprint,
        )
    build_survey_index(emb, root / "big", BuildOptions(threads=1, tune_queries=32), run=run)
    app = create_app(root / "big", max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    return app, data, meta


@pytest.fixture(scope="module")
def survey_client(survey_app):
    from fastapi.testclient import TestClient

    app, data, meta = survey_app
    with TestClient(app) as client:
        yield client, data, meta


def test_survey_index_serves_the_same_api(survey_client):
    client, data, _ = survey_client
    health = client.get("/api/health").json()
    assert health["index_kind"] == "survey" and health["sky"] and health["galaxies"] == len(data)
    for kind, query in QUERIES.items():
        if kind == "id":
            continue
        result = query(client).json()
        assert len(result["hits"]) == K, kind
        assert all(h["thumbnail"] == f"/api/thumbnail/{h['index']}.png" for h in result["hits"])
    hits = client.get("/api/search/id", params={"id": "s3", "k": K}).json()["hits"]
    assert len(hits) == K and "s3" not in [h["id"] for h in hits]


def test_survey_thumbnail_is_read_from_the_input_shard(survey_client):
    from galaxalign.data import resize_square

    client, data, _ = survey_client
    thumb = Image.open(io.BytesIO(client.get("/api/thumbnail/70.png").content))
    np.testing.assert_array_equal(np.asarray(thumb.convert("RGB")), resize_square(data[70].image, 64))
    assert client.get(f"/api/thumbnail/{len(data)}.png").status_code == 404


def test_survey_position_query_and_cone_filter(survey_client):
    client, _, meta = survey_client
    ra, dec = meta[40]["ra"], meta[40]["dec"]
    result = client.get("/api/search/position", params={"ra": ra, "dec": dec, "k": K}).json()
    assert result["query"]["kind"] == "position" and len(result["hits"]) == K
    assert "s40" not in [h["id"] for h in result["hits"]]
    params = {"ra": ra, "dec": dec, "k": K, "cone_ra": ra, "cone_dec": dec, "cone_radius": 0.1}
    hits = client.get("/api/search/position", params=params).json()["hits"]
    assert hits and all(abs(h["ra"] - ra) <= 0.1 and abs(h["dec"] - dec) <= 0.1 for h in hits)
    far = client.get("/api/search/position", params={"ra": ra + 10, "dec": dec})
    assert far.status_code == 422 and "no catalogue galaxy within 5 arcsec" in far.json()["detail"]
    half = client.get("/api/search/text", params={"q": "spiral", "cone_ra": 1})
    assert half.status_code == 422 and "together" in half.json()["detail"]


def test_serve_binds_to_this_machine_by_default():
    args = build_parser().parse_args(["serve", "--index", "somewhere"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


# ---------------------------------------------------------------- the page in Chromium


needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (make test installs Debian's chromium)"
)


@contextlib.contextmanager
def served(app):
    """The app served by uvicorn on a free port of 127.0.0.1, for the browser."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(app):
    with served(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(20_000)
    problems = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(base_url)
    page.wait_for_selector("#palette button", state="attached")  # the palette loads on its hidden tab
    yield page
    page.close()
    assert not problems, problems  # no script errors on the page


def result_ids(page) -> list[str]:
    return page.locator("#results .card").evaluate_all("cards => cards.map(c => c.dataset.id)")


def wait_for_grid(page, label: str) -> list[str]:
    from playwright.sync_api import expect

    expect(page.locator("#query-label")).to_contain_text(label)
    expect(page.locator("#results .card")).to_have_count(10)
    assert page.locator("#error").is_hidden()
    return result_ids(page)


@needs_chromium
def test_page_text_query_shows_a_grid(page):
    page.click("#tab-text")
    page.fill("#text-input", "a round smooth galaxy")
    page.press("#text-input", "Enter")
    wait_for_grid(page, "round smooth galaxy")
    card = page.locator("#results .card").first
    assert card.locator(".pred").inner_text() and card.locator(".score").inner_text()
    # The grid appears before its thumbnails arrive: wait for the first to load, then check it.
    page.wait_for_function("() => document.querySelector('#results .card img').complete")
    assert card.locator("img").evaluate("img => img.naturalWidth") == 64


@needs_chromium
def test_page_symbol_click_shows_a_grid_and_k_changes_it(page):
    page.click("#tab-symbol")
    assert page.locator("#palette button").count() == 10
    page.click("#palette button[data-key=merging]")
    wait_for_grid(page, "Merging symbol")
    page.select_option("#k", "5")
    from playwright.sync_api import expect

    expect(page.locator("#results .card")).to_have_count(5)
    page.select_option("#k", "10")
    wait_for_grid(page, "Merging symbol")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web.png"), full_page=True)
    shutil.copyfile(ARTIFACTS / "web.png", "/tmp/web_screenshot.png")


@needs_chromium
def test_page_image_upload_shows_a_grid(page):
    page.set_input_files(
        "#file-input", files=[{"name": "galaxy.png", "mimeType": "image/png", "buffer": png_bytes(GALAXY)}]
    )
    wait_for_grid(page, "galaxy.png")


@needs_chromium
def test_page_sketch_drawn_with_the_mouse_shows_a_grid(page):
    page.click("#tab-sketch")
    box = page.locator("#sketch").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    points = [(cx + 80 * np.cos(t), cy + 35 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 40)]
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=2)
    page.mouse.up()
    page.click("#sketch-search")
    wait_for_grid(page, "your sketch")


@needs_chromium
def test_page_clicking_a_result_searches_from_it(page):
    page.click("#tab-text")
    page.fill("#text-input", "an edge-on galaxy")
    page.click("#panel-text button[type=submit]")
    before = wait_for_grid(page, "edge-on galaxy")
    page.locator("#results .card").nth(2).click()
    after = wait_for_grid(page, f"galaxy {before[2]}")
    assert before[2] not in after and after != before


@needs_chromium
def test_page_bad_upload_shows_an_error(page):
    page.set_input_files(
        "#file-input", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}]
    )
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "notes.png: cannot read image" in error.inner_text()


@needs_chromium
def test_page_sky_tab_only_on_a_survey_index(page, browser, survey_app):
    from playwright.sync_api import expect

    expect(page.locator("#index-info")).to_contain_text("galaxies")
    assert page.locator("#tab-sky").is_hidden()  # a small index has no sky queries
    _, _, meta = survey_app
    with served(survey_app[0]) as url:
        sky = browser.new_page(viewport={"width": 1100, "height": 900})
        sky.set_default_timeout(20_000)
        sky.goto(url)
        sky.click("#tab-sky")
        sky.fill("#sky-ra", str(meta[40]["ra"]))
        sky.fill("#sky-dec", str(meta[40]["dec"]))
        sky.click("#panel-sky button[type=submit]")
        ids = wait_for_grid(sky, "the galaxy at RA")
        assert "s40" not in ids
        sky.close()
