"""`galaxalign download`: resumable, checksum-verified transfers, against a real HTTP server on 127.0.0.1.

Nothing here reaches beyond this machine: the server is started in a thread per test, and the
"no network" case connects to a local port where nothing listens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from tqdm import tqdm

from galaxalign.data import download
from galaxalign.data.datasets import GALAXY10_DECALS_SHA256
from galaxalign.data.download import REMOTES, DownloadConfig, download_file, fetch_dataset
from galaxalign.errors import GalaxAlignError
from galaxalign.progress import enable_progress_bars

pytestmark = pytest.mark.timeout(60)

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
CUT = 100_000  # bytes sent before a dropped connection
TIMEOUT = 5  # seconds per socket operation: a stuck test fails instead of hanging
CHUNK = 16 << 10


@dataclass
class State:
    """What the test server does, and what it saw."""

    drop_after: int | None = None  # first request only: send this many body bytes, then close
    reset: bool = False  # drop with a TCP reset instead of an orderly close
    ignore_range: bool = False  # answer every request 200 with the whole payload
    status: int | None = None  # answer every request with this error status
    requests: list[dict[str, str]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    state: State

    def do_GET(self):
        s = self.state
        s.requests.append(dict(self.headers))
        if s.status:
            self.send_error(s.status)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and not s.ignore_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if s.drop_after is not None and len(s.requests) == 1:
            self.wfile.write(body[: s.drop_after])
            self.close_connection = True
            if s.reset:  # let the client read what was sent, then close with SO_LINGER 0: a TCP RST
                time.sleep(0.2)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                os.close(self.connection.detach())
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """(url, state) of a server on 127.0.0.1 serving PAYLOAD as /data.h5."""
    state = State()
    handler = type("TestHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data.h5", state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def fetch(url, dest, sha256=SHA256, md5=None, **kw):
    return download_file(url, dest, sha256, md5, chunk_size=CHUNK, timeout=TIMEOUT, **kw)


def part_of(dest):
    return dest.with_name(dest.name + ".part")


def test_complete_download_verifies_both_checksums(server, tmp_path):
    url, state = server
    dest = tmp_path / "g.h5"
    assert fetch(url, dest, md5=MD5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not part_of(dest).exists()
    assert len(state.requests) == 1 and "Range" not in state.requests[0]


def test_interrupted_transfer_resumes_with_range(server, tmp_path, capsys):
    url, state = server
    state.drop_after = CUT
    dest = tmp_path / "g.h5"
    with pytest.raises(GalaxAlignError, match="run the same command again to resume") as err:
        fetch(url, dest)
    assert "\n" not in str(err.value) and str(part_of(dest)) in str(err.value)
    assert part_of(dest).stat().st_size == CUT and not dest.exists()

    enable_progress_bars()  # the tests run quiet (conftest)
    download_file(url, dest, SHA256, chunk_size=CHUNK, timeout=TIMEOUT)
    assert state.requests[1]["Range"] == f"bytes={CUT}-"
    assert dest.read_bytes() == PAYLOAD and not part_of(dest).exists()
    # The bar counts the whole file, starting from the resumed bytes, in binary units with a rate.
    bar = capsys.readouterr().err
    assert f"/{tqdm.format_sizeof(len(PAYLOAD), divisor=1024)}" in bar and "B/s" in bar


def test_connection_reset_keeps_part_and_resumes(server, tmp_path):
    url, state = server
    state.drop_after, state.reset = CUT, True
    dest = tmp_path / "g.h5"
    with pytest.raises(GalaxAlignError, match="reset.*run the same command again to resume"):
        fetch(url, dest)
    kept = part_of(dest).stat().st_size
    assert kept <= CUT  # a reset may discard bytes the client had not read yet
    fetch(url, dest)
    assert state.requests[1].get("Range") == (f"bytes={kept}-" if kept else None)
    assert dest.read_bytes() == PAYLOAD


def test_ctrl_c_keeps_part_for_resume(server, tmp_path, monkeypatch):
    url, state = server

    class InterruptedBar(tqdm):
        def update(self, n=1):
            raise KeyboardInterrupt  # as if Ctrl-C came right after the first block was written

    monkeypatch.setattr(download, "progress_bar", lambda total=None, desc=None, **kw: InterruptedBar(total=total, **kw))
    dest = tmp_path / "g.h5"
    with pytest.raises(KeyboardInterrupt):
        fetch(url, dest)
    assert part_of(dest).read_bytes() == PAYLOAD[:CHUNK] and not dest.exists()
    monkeypatch.undo()
    fetch(url, dest)
    assert state.requests[1]["Range"] == f"bytes={CHUNK}-" and dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url, state = server
    state.ignore_range = True
    dest = tmp_path / "g.h5"
    stale = b"stale bytes from an older attempt"
    part_of(dest).write_bytes(stale)
    fetch(url, dest)
    assert state.requests[0]["Range"] == f"bytes={len(stale)}-"
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_answered_416_is_verified_and_kept(server, tmp_path):
    url, state = server
    dest = tmp_path / "g.h5"
    part_of(dest).write_bytes(PAYLOAD)
    assert fetch(url, dest) == dest
    assert state.requests[0]["Range"] == f"bytes={len(PAYLOAD)}-"
    assert dest.read_bytes() == PAYLOAD and not part_of(dest).exists()


def test_checksum_mismatch_keeps_part_and_names_both(server, tmp_path):
    url, _ = server
    dest = tmp_path / "g.h5"
    wrong = "0" * 64
    with pytest.raises(GalaxAlignError) as err:
        fetch(url, dest, sha256=wrong)
    message = str(err.value)
    assert SHA256 in message and wrong in message and str(part_of(dest)) in message and "\n" not in message
    assert part_of(dest).read_bytes() == PAYLOAD and not dest.exists()

    part_of(dest).unlink()
    with pytest.raises(GalaxAlignError, match=f"MD5 is {MD5}, expected {'1' * 32}"):
        fetch(url, dest, md5="1" * 32)  # SHA256 right, MD5 wrong: both must match
    assert not dest.exists()


def test_mismatch_after_resume_says_the_part_may_be_stale(server, tmp_path):
    url, _ = server
    dest = tmp_path / "g.h5"
    part_of(dest).write_bytes(b"\0" * CUT)  # right length, wrong bytes
    with pytest.raises(GalaxAlignError, match="stale.*delete it to start over"):
        fetch(url, dest)
    assert part_of(dest).stat().st_size == len(PAYLOAD) and not dest.exists()


def test_http_error_names_status_and_address(server, tmp_path):
    url, state = server
    state.status = 404
    dest = tmp_path / "g.h5"
    with pytest.raises(GalaxAlignError, match="404") as err:
        fetch(url, dest)
    assert url in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_address_says_where_a_hand_download_goes(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "g.h5"
    url = f"http://127.0.0.1:{port}/data.h5"
    with pytest.raises(GalaxAlignError, match="could not be reached") as err:
        fetch(url, dest)
    message = str(err.value)
    assert f"by hand to {dest}" in message and f"galaxalign train --data {dest}" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_valid_existing_file_is_returned_without_a_request(server, tmp_path):
    url, state = server
    dest = tmp_path / "g.h5"
    dest.write_bytes(PAYLOAD)
    assert fetch(url, dest, md5=MD5) == dest
    assert state.requests == []
    dest.write_bytes(PAYLOAD[:-1])  # a different file under the name is never overwritten
    with pytest.raises(GalaxAlignError, match="already exists"):
        fetch(url, dest)
    assert state.requests == [] and dest.read_bytes() == PAYLOAD[:-1]


def test_fetch_dataset_uses_the_mirror_and_creates_the_folder(server, tmp_path, monkeypatch):
    url, state = server
    remote = REMOTES["galaxy10-decals"]
    monkeypatch.setitem(download.REMOTES, "galaxy10-decals", dataclasses.replace(remote, sha256=SHA256))
    out = tmp_path / "data" / "galaxy10"
    path = fetch_dataset(DownloadConfig("galaxy10-decals", out=str(out), url=url))
    assert path == out / "Galaxy10_DECals.h5" and path.read_bytes() == PAYLOAD
    assert len(state.requests) == 1


def test_registry_is_astronn_address_and_checksum():
    remote = REMOTES["galaxy10-decals"]
    assert remote.url == "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
    assert remote.sha256 == GALAXY10_DECALS_SHA256 and remote.filename == "Galaxy10_DECals.h5"


def test_config_validation():
    with pytest.raises(GalaxAlignError, match="unknown data set 'galaxy11'.*galaxy10-decals"):
        DownloadConfig("galaxy11")
    with pytest.raises(GalaxAlignError, match="not an http"):
        DownloadConfig("galaxy10-decals", url="ftp.example.org/Galaxy10_DECals.h5")
    config = DownloadConfig("galaxy10-decals")
    assert config.out == "." and config.url is None


def test_cli_download_of_a_mirror_that_serves_another_file(server, tmp_path, capsys):
    """Through the CLI: the mirror's bytes are not Galaxy10 DECaLS, so one line names both
    checksums, exit 2, and only the .part is left (the finished name is never written)."""
    from galaxalign.cli import main

    url, _ = server
    assert main(["download", "galaxy10-decals", "--out", str(tmp_path), "--url", url, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and SHA256 in err.lower()
        and REMOTES["galaxy10-decals"].sha256.lower() in err.lower()
    )
    assert not (tmp_path / "Galaxy10_DECals.h5").exists() and (tmp_path / "Galaxy10_DECals.h5.part").exists()
