"""The galaxy search page and its JSON API, over one index folder and the run that built it.

Everything is loaded once in `create_app`: the index, the run, its class prototypes and the class
symbols, so a request only embeds its query and looks it up. The index is either a small one (in
RAM, with thumbnails) or a survey index (memory-mapped, read-only; a result's image is read from
its input shard on demand), which also answers sky-position queries and cone filters.

The routes come in three groups (the page, the searches, what the server holds and its images),
each added by its own function and taking the loaded `SearchService` as a FastAPI dependency. Endpoints are plain functions, which FastAPI runs in its
threadpool; the torch model is shared, so its use is serialised by a lock (searches by id or
position, which read stored vectors, do not wait for it).

Requests never name files: thumbnails are addressed by index row and symbols by class key, and
uploads are read into memory under a byte cap (the request body is cut off at the cap as it
streams in) and a pixel cap (checked from the image header before decoding where the format
allows). Any bad input is a 4xx with a JSON `{"detail": message}`.
"""

import contextlib
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

from galaxalign import __version__
from galaxalign.config import option, required
from galaxalign.data import MAX_PIXELS, decode_image_bytes, resize_square
from galaxalign.data.images import TooManyPixels
from galaxalign.devices import DEVICE_HELP, check_device_name
from galaxalign.errors import GalaxAlignError
from galaxalign.runs import load_run
from galaxalign.search import GalaxyIndex, Hit, Searcher
from galaxalign.search.index import THUMBNAIL_SIZE
from galaxalign.search.query import keep_alpha
from galaxalign.search.survey import DEFAULT_TOLERANCE_ARCSEC, Cone, SurveyIndex, SurveySearcher, is_survey_index
from galaxalign.symbols import render_symbol

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_QUERY_PIXELS = 4096 * 4096  # a survey cutout is far smaller; decoding is bounded by this
MAX_K = 100
MULTIPART_SLACK = 64 * 2**10  # request body allowance above the file itself (boundaries, headers)
READ_CHUNK = 64 * 2**10
SYMBOL_PX = 96
TOP_CLASSES = 3
STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
PAGE_CSP = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    detail: str


class ClassProbability(BaseModel):
    key: str
    name: str
    probability: float


class GalaxyHit(BaseModel):
    id: str
    score: float = Field(description="cosine similarity to the query")
    label: int = Field(description="catalogue class id, -1 when unknown")
    label_name: str | None
    index: int = Field(description="row in the index; the thumbnail's address")
    source: str = Field(description="file name of the catalogue the galaxy came from")
    ra: float | None
    dec: float | None
    thumbnail: str | None
    predicted: ClassProbability | None = Field(description="the run's class for this galaxy")
    top: list[ClassProbability] = Field(description=f"the {TOP_CLASSES} most probable classes")


class QueryInfo(BaseModel):
    kind: str
    value: str


class SearchResult(BaseModel):
    query: QueryInfo
    k: int
    hits: list[GalaxyHit]


class ClassInfo(BaseModel):
    id: int
    key: str
    name: str
    label: str
    symbol: str = Field(description="URL of the class symbol PNG")


class ClassList(BaseModel):
    scheme: str
    classes: list[ClassInfo]


class Health(BaseModel):
    status: str
    galaxies: int
    scheme: str
    index_kind: str
    scoring: str
    thumbnails: bool
    sky: bool = Field(description="sky-position queries and cone filters are available (a survey index)")
    max_upload_bytes: int
    max_pixels: int
    max_k: int


def _png(array: np.ndarray | Image.Image) -> bytes:
    image = array if isinstance(array, Image.Image) else Image.fromarray(np.ascontiguousarray(array))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _upload_name(upload: UploadFile) -> str:
    """The client's file name, reduced to a label for messages (and FITS detection); never opened."""
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name[:100] or "upload"


def _read_capped(upload: UploadFile, cap: int) -> bytes:
    chunks, size = [], 0
    while chunk := upload.file.read(READ_CHUNK):
        size += len(chunk)
        if size > cap:
            raise HTTPException(413, f"{_upload_name(upload)}: upload is over the limit of {cap} bytes")
        chunks.append(chunk)
    if not size:
        raise HTTPException(422, f"{_upload_name(upload)}: upload is empty")
    return b"".join(chunks)


class SearchService:
    """The loaded index, run and searcher, and the answers the API gives from them."""

    def __init__(
        self,
        index_dir: str | Path,
        run_dir: str | Path | None,
        max_upload_bytes: int,
        max_pixels: int,
        device: str = "cpu",
        max_k: int = MAX_K,
        verify: str = "sample",
    ):
        self.index: GalaxyIndex | SurveyIndex
        self.searcher: Searcher | SurveySearcher
        self.survey = is_survey_index(index_dir)
        self.index = SurveyIndex.open(index_dir, verify=verify) if self.survey else GalaxyIndex.load(index_dir)
        self.run = load_run(run_dir or self.index.run_dir, device=device)
        # each refuses a run other than the index's
        self.searcher = (
            SurveySearcher(self.index, self.run)
            if isinstance(self.index, SurveyIndex)
            else Searcher(self.index, self.run)
        )
        self.max_upload_bytes, self.max_pixels, self.max_k = max_upload_bytes, max_pixels, max_k
        self.lock = threading.Lock()
        self.scoring = self.run.scorer().mode  # built now (prototypes embedded), not on the first request
        self.symbols = {c.key: _png(render_symbol(c.symbol, SYMBOL_PX)) for c in self.run.scheme}

    @property
    def has_images(self) -> bool:
        return self.survey or self.index.thumbnails is not None

    def vectors(self, rows: list[int]) -> np.ndarray:
        stored = self.index.vectors if isinstance(self.index, SurveyIndex) else self.index.embeddings
        return np.asarray(stored[sorted(rows)], np.float32)[np.argsort(np.argsort(rows))]

    def image(self, row: int) -> np.ndarray:
        """A galaxy's thumbnail: stored in a small index, read from its input shard in a survey one."""
        if not 0 <= row < len(self.index) or not self.has_images:
            raise HTTPException(404, f"no thumbnail {row}")
        if isinstance(self.index, SurveyIndex):
            return resize_square(self.index.image(row), THUMBNAIL_SIZE)
        assert self.index.thumbnails is not None
        return np.asarray(self.index.thumbnails[row])

    # ---- class probabilities of hits

    def probabilities(self, rows: list[int]) -> np.ndarray | None:
        """Class probabilities of indexed galaxies, as `Run.predict_proba` gives for their images.

        A prototype scorer only needs the image embedding, which the index stores: exact and cheap.
        A linear head needs image features, so it is applied to the thumbnails instead.
        """
        if not rows:
            return None
        if self.scoring != "head":
            return self.run.proba_from_embeddings(self.vectors(rows))
        if self.has_images:
            return self.run.predict_proba([self.image(r) for r in rows])
        return None

    def _classes(self, probs: np.ndarray) -> list[ClassProbability]:
        order = np.argsort(-probs)[:TOP_CLASSES]
        return [
            ClassProbability(key=self.run.scheme[i].key, name=self.run.scheme[i].name, probability=float(probs[i]))
            for i in order
        ]

    def _hit(self, hit: Hit, top: list[ClassProbability]) -> GalaxyHit:
        fields = hit.to_dict() | {"source": Path(hit.source).name}  # a server path is not the client's business
        thumbnail = f"/api/thumbnail/{hit.index}.png" if self.has_images else None
        return GalaxyHit(**fields, thumbnail=thumbnail, predicted=top[0] if top else None, top=top)

    def search(
        self, kind: str, value: str, query: Callable[[int], list[Hit]], k: int, embeds: bool = True
    ) -> SearchResult:
        """`embeds=False` (search by id or position) reads stored vectors only: it need not queue for the model."""
        uses_model = embeds or self.scoring == "head"
        with self.lock if uses_model else contextlib.nullcontext():
            hits = query(k)
            probs = self.probabilities([h.index for h in hits])
        tops = [self._classes(p) for p in probs] if probs is not None else [[] for _ in hits]
        return SearchResult(
            query=QueryInfo(kind=kind, value=value), k=k, hits=[self._hit(h, top) for h, top in zip(hits, tops)]
        )

    def survey_searcher(self, what: str) -> SurveySearcher:
        if not isinstance(self.searcher, SurveySearcher):
            raise HTTPException(422, f"{what} needs a survey index (galaxalign index of an embedding folder)")
        return self.searcher

    # ---- uploads

    def decode_upload(self, upload: UploadFile) -> tuple[str, bytes, np.ndarray]:
        """An uploaded image as (name, bytes, (H, W, 3) uint8), within the byte and pixel caps."""
        name, data = _upload_name(upload), _read_capped(upload, self.max_upload_bytes)
        try:
            image = decode_image_bytes(data, name, self.max_pixels)  # refused from the header, before decoding
        except TooManyPixels as exc:
            raise HTTPException(413, str(exc)) from None
        return name, data, image

    def sketch_upload(self, upload: UploadFile) -> tuple[str, np.ndarray]:
        """A sketch keeps its alpha channel: on a transparent canvas the opaque strokes are the ink."""
        name, data, image = self.decode_upload(upload)
        return name, keep_alpha(io.BytesIO(data), image)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ())[1:]) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# ---------------------------------------------------------------- dependencies


def get_service(request: Request) -> SearchService:
    return request.app.state.service


Service = Annotated[SearchService, Depends(get_service)]


def result_count(
    service: Service, k: Annotated[int, Query(ge=1, description="number of results (at most max_k)")] = 10
) -> int:
    if k > service.max_k:
        raise HTTPException(422, f"k: at most {service.max_k}, got {k}")
    return k


K = Annotated[int, Depends(result_count)]


def cone_filter(
    service: Service,
    cone_ra: Annotated[float | None, Query(ge=-360, le=360, description="cone filter centre, degrees")] = None,
    cone_dec: Annotated[float | None, Query(ge=-90, le=90, description="cone filter centre, degrees")] = None,
    cone_radius: Annotated[float | None, Query(gt=0, le=180, description="cone filter radius, degrees")] = None,
) -> Cone | None:
    """An optional cone on the sky that results must fall in (survey index): all three or none."""
    given = [v is not None for v in (cone_ra, cone_dec, cone_radius)]
    if not any(given):
        return None
    if not all(given):
        raise HTTPException(422, "cone: give cone_ra, cone_dec and cone_radius together")
    service.survey_searcher("a cone filter")
    assert cone_ra is not None and cone_dec is not None and cone_radius is not None
    return Cone(cone_ra, cone_dec, cone_radius)


Within = Annotated[Cone | None, Depends(cone_filter)]


def _cone_kw(cone: Cone | None) -> dict[str, Any]:
    """Small indexes take no cone argument; a cone on one is refused by `cone_filter`."""
    return {"cone": cone} if cone is not None else {}


# ---------------------------------------------------------------- routers


def add_page_routes(router: APIRouter) -> None:
    """The page and its two assets, read once."""
    page = (STATIC / "index.html").read_bytes()
    assets = {name: (STATIC / name).read_bytes() for name in STATIC_TYPES}

    @router.get("/", include_in_schema=False)
    def index_page() -> Response:
        return Response(page, media_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "not found")
        return Response(assets[name], media_type=STATIC_TYPES[name], headers={"Cache-Control": "no-cache"})


def add_search_routes(router: APIRouter, body_cap: int) -> None:
    """The searches: by words, symbol, indexed id, sky position (GET) and image or sketch upload (POST)."""
    errors: dict[int | str, dict[str, Any]] = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}

    @router.get("/api/search/text", response_model=SearchResult, responses=errors)
    def search_text(
        service: Service,
        q: Annotated[str, Query(min_length=1, max_length=500, description="words")],
        k: K,
        cone: Within,
    ):
        return service.search("text", q, lambda n: service.searcher.by_text(q, n, **_cone_kw(cone)), k)

    @router.get("/api/search/symbol", response_model=SearchResult, responses=errors)
    def search_symbol(
        service: Service,
        cls: Annotated[str, Query(min_length=1, max_length=100, description="class key, id or name")],
        k: K,
        cone: Within,
    ):
        return service.search("symbol", cls, lambda n: service.searcher.by_symbol(cls, n, **_cone_kw(cone)), k)

    @router.get("/api/search/id", response_model=SearchResult, responses=errors)
    def search_id(
        service: Service,
        galaxy_id: Annotated[
            str,
            Query(
                alias="id", min_length=1, max_length=200, description="an indexed galaxy's id (left out of its results)"
            ),
        ],
        k: K,
        cone: Within,
    ):
        query = lambda n: service.searcher.by_id(galaxy_id, n, **_cone_kw(cone))  # noqa: E731
        return service.search("id", galaxy_id, query, k, embeds=False)

    @router.get("/api/search/position", response_model=SearchResult, responses=errors)
    def search_position(
        service: Service,
        ra: Annotated[float, Query(ge=-360, le=360, description="right ascension, degrees")],
        dec: Annotated[float, Query(ge=-90, le=90, description="declination, degrees")],
        k: K,
        cone: Within,
        tolerance: Annotated[
            float, Query(gt=0, le=3600, description="arcsec within which a catalogue galaxy must lie")
        ] = DEFAULT_TOLERANCE_ARCSEC,
    ):
        """Galaxies like the catalogue galaxy nearest (ra, dec), itself left out (survey index)."""
        searcher = service.survey_searcher("search by sky position")
        query = lambda n: searcher.by_position(ra, dec, n, tolerance_arcsec=tolerance, cone=cone)  # noqa: E731
        return service.search("position", f"{ra:g}, {dec:g}", query, k, embeds=False)

    @router.post("/api/search/image", response_model=SearchResult, responses=errors, max_body_size=body_cap)
    def search_image(
        service: Service,
        file: Annotated[UploadFile, File(description="PNG, JPEG or FITS galaxy image")],
        k: K,
        cone: Within,
    ):
        name, _, image = service.decode_upload(file)
        return service.search("image", name, lambda n: service.searcher.by_image(image, n, **_cone_kw(cone)), k)

    @router.post("/api/search/sketch", response_model=SearchResult, responses=errors, max_body_size=body_cap)
    def search_sketch(
        service: Service,
        file: Annotated[UploadFile, File(description="a drawing (PNG): light on dark, or dark on light")],
        k: K,
        cone: Within,
    ):
        name, image = service.sketch_upload(file)
        return service.search("sketch", name, lambda n: service.searcher.by_sketch(image, n, **_cone_kw(cone)), k)


def add_info_routes(router: APIRouter) -> None:
    """What the server holds (health, classes) and the images it serves by row or class key."""

    @router.get("/api/health", response_model=Health)
    def health(service: Service) -> Health:
        return Health(
            status="ok",
            galaxies=len(service.index),
            scheme=service.run.scheme.name,
            index_kind=service.index.kind,
            scoring=service.scoring,
            thumbnails=service.has_images,
            sky=service.survey,
            max_upload_bytes=service.max_upload_bytes,
            max_pixels=service.max_pixels,
            max_k=service.max_k,
        )

    @router.get("/api/classes", response_model=ClassList)
    def classes(service: Service) -> ClassList:
        return ClassList(
            scheme=service.run.scheme.name,
            classes=[
                ClassInfo(id=c.id, key=c.key, name=c.name, label=c.label, symbol=f"/api/symbol/{c.key}.png")
                for c in service.run.scheme
            ],
        )

    @router.get("/api/thumbnail/{row}.png", responses={404: {"model": ErrorBody}}, response_class=Response)
    def thumbnail(service: Service, row: int) -> Response:
        return Response(_png(service.image(row)), media_type="image/png", headers={"Cache-Control": "max-age=60"})

    @router.get("/api/symbol/{class_key}.png", responses={404: {"model": ErrorBody}}, response_class=Response)
    def symbol(service: Service, class_key: str) -> Response:
        if class_key not in service.symbols:
            raise HTTPException(404, f"no class {class_key!r}")
        return Response(service.symbols[class_key], media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def _handle_errors(app: FastAPI, max_upload_bytes: int, body_cap: int) -> None:
    """Every failure is a JSON {"detail": message}: user errors 4xx, bugs 500 (logged)."""

    @app.exception_handler(GalaxAlignError)
    def user_error(request: Request, exc: GalaxAlignError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error serving %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.middleware("http")
    async def refuse_oversize(request: Request, call_next):
        """A declared length over the cap is refused before any byte is read (a streamed body is cut at the cap)."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > body_cap:
            return JSONResponse({"detail": f"upload is over the limit of {max_upload_bytes} bytes"}, status_code=413)
        return await call_next(request)


def create_app(
    index_dir: str | Path,
    run_dir: str | Path | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_QUERY_PIXELS,
    max_k: int = MAX_K,
    device: str = "cpu",
    verify: str = "sample",
) -> FastAPI:
    """The search app for `index_dir`, answered with `run_dir` (default: the run that built the index).

    `verify` is how a survey index's files are checked against its manifest at start (none,
    sample, full; see `galaxalign.search.survey.verify_files`).
    """
    if not 0 < max_pixels <= MAX_PIXELS:
        raise GalaxAlignError(f"serve: the pixel limit must be from 1 to {MAX_PIXELS}, got {max_pixels}")
    if max_upload_bytes < 1 or max_k < 1:
        raise GalaxAlignError("serve: the upload and k limits must be at least 1")
    app = FastAPI(
        title="GalaxAlign galaxy search",
        version=__version__,
        description="Find galaxies like an image, some words, a class symbol, a sketch or a sky position.",
    )
    app.state.service = SearchService(index_dir, run_dir, max_upload_bytes, max_pixels, device, max_k, verify)
    body_cap = max_upload_bytes + MULTIPART_SLACK
    _handle_errors(app, max_upload_bytes, body_cap)
    # Registered on the app's own router: FastAPI 0.165's include_router adds a lazy entry that
    # hides its routes from app.routes, which the route audit in tests/test_bad_input.py reads.
    add_page_routes(app.router)
    add_search_routes(app.router, body_cap)
    add_info_routes(app.router)
    return app


@dataclass
class ServeConfig:
    """`galaxalign serve`: the search page and JSON API for an index."""

    index: str = required("index folder")
    run: str | None = option(None, "run folder (default: the one that built the index)")
    host: str = option("127.0.0.1", "address to bind (default 127.0.0.1: this machine only)", show_default=False)
    port: int = option(8000, "port")
    verify: str | None = option(
        None,
        "survey index: check files against the manifest by size and sampled sha256 (sample, the default) "
        "or by full sha256 (full)",
        choices=("sample", "full"),
    )
    device: str = option("auto", DEVICE_HELP)

    def __post_init__(self):
        check_device_name(self.device)
        if self.verify is not None and not is_survey_index(self.index):
            raise GalaxAlignError(f"serve: --verify applies to a survey index; {self.index} is a small index")
