"""The web app's module fixtures, shared by the web, bad-input and load tests: a tiny run's app over N galaxies.

Imported by name into each test module, so each module builds its own index and app.
"""

import pytest
from fastapi.testclient import TestClient

from galaxalign.data import DatasetView, open_dataset
from galaxalign.search import build_index
from galaxalign.web import create_app

N = 30
MAX_BYTES, MAX_PIXELS = 150_000, 300 * 300  # the page's 224 px sketch fits


@pytest.fixture(scope="module")
def run(stage1_run):
    return stage1_run


@pytest.fixture(scope="module")
def dataset(easy_h5, run):
    return DatasetView(open_dataset(easy_h5, scheme=run.scheme), range(N))


@pytest.fixture(scope="module")
def app(run, dataset, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("indexes") / "web"
    build_index(run, dataset, index_dir, progress=False)
    return create_app(index_dir, max_upload_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)  # a server error raises here: the API must never answer 500
