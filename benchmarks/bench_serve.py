"""The web API under load: concurrent clients against `galaxalign serve` on 127.0.0.1.

The server is the real CLI in its own process; each client is a thread with its own keep-alive
httpx connection, sending requests back to back for a fixed time, each of a kind drawn at random:
text, symbol, id (searches, k=10) or thumbnail. Reported per kind: requests, errors (any status
but 200, or no answer), throughput and latency percentiles. The model is shared behind one lock,
so searches that embed (text, symbol) queue behind each other; id searches take the lock too,
for their hits' class probabilities; thumbnails do not.

Runs once with the `tiny` backbone (the server's own overhead: HTTP, FAISS, JSON) and once with
the `packaged` one (DINOv2 ViT-S + MiniLM, what `galaxalign demo` serves), on a 100-galaxy
Galaxy10-Sim index. Run `python benchmarks/bench_serve.py [--clients 8] [--seconds 30]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

TITLE = "Web API under load: concurrent clients against `galaxalign serve` on 127.0.0.1"
CLIENTS, SECONDS = 8, 30.0
KINDS = ("text", "symbol", "id", "thumbnail")
WORDS = (
    "smooth round galaxy",
    "barred spiral with tight arms",
    "edge-on disk with a bulge",
    "two merging galaxies",
    "cigar shaped",
    "loose spiral arms",
    "disturbed",
)


@contextlib.contextmanager
def serve(index_dir: str | os.PathLike, timeout: float = 120.0) -> Iterator[str]:
    """`galaxalign serve` for an index in a child process on a free 127.0.0.1 port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "galaxalign", "serve", "--index", str(index_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"galaxalign serve exited with {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("galaxalign serve did not answer in time")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)  # waits, then closes the stderr pipe
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def drive(
    base_url: str, clients: int = CLIENTS, seconds: float = SECONDS, seed: int = 0
) -> dict[str, list[tuple[float, int]]]:
    """Run `clients` threads for `seconds`; per kind, each request's (latency in s, status; 0 = no answer)."""
    with httpx.Client(base_url=base_url, timeout=30) as probe:
        galaxies = probe.get("/api/health").json()["galaxies"]
        keys = [c["key"] for c in probe.get("/api/classes").json()["classes"]]
        ids = [
            h["id"]
            for h in probe.get("/api/search/text", params={"q": "galaxy", "k": min(galaxies, 100)}).json()["hits"]
        ]

    def request(rng: random.Random) -> tuple[str, str, dict]:
        kind = rng.choice(KINDS)
        if kind == "text":
            return kind, "/api/search/text", {"q": rng.choice(WORDS), "k": 10}
        if kind == "symbol":
            return kind, "/api/search/symbol", {"cls": rng.choice(keys), "k": 10}
        if kind == "id":
            return kind, "/api/search/id", {"id": rng.choice(ids), "k": 10}
        return kind, f"/api/thumbnail/{rng.randrange(galaxies)}.png", {}

    samples: dict[str, list[tuple[float, int]]] = {kind: [] for kind in KINDS}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while time.monotonic() < stop:
                kind, path, params = request(rng)
                start = time.perf_counter()
                try:
                    status = http.get(path, params=params).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    samples[kind].append((time.perf_counter() - start, status))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def summarise(samples: dict[str, list[tuple[float, int]]], seconds: float) -> list[dict]:
    """One row per kind and one for all: requests, errors, req/s, p50 and p99 latency in ms."""
    groups = {**samples, "all": [s for kind in samples.values() for s in kind]}
    rows = []
    for kind, group in groups.items():
        latency = np.array([s[0] for s in group]) * 1000
        rows.append(
            {
                "kind": kind,
                "requests": len(group),
                "errors": sum(status != 200 for _, status in group),
                "req/s": round(len(group) / seconds, 1),
                "p50 ms": round(float(np.percentile(latency, 50)), 1) if len(group) else None,
                "p99 ms": round(float(np.percentile(latency, 99)), 1) if len(group) else None,
            }
        )
    return rows


def build_index(folder: Path, backbone: str, per_class: int = 10) -> Path:
    """A Galaxy10-Sim catalogue embedded by an untrained run of `backbone`: serving cost does not depend on training."""
    from galaxalign.data import open_dataset
    from galaxalign.runs import init_run, load_run
    from galaxalign.search import build_index as build
    from galaxalign.synth import SynthConfig, write_synth
    from galaxalign.training import TrainConfig

    data = folder / "sim.h5"
    if not data.exists():
        write_synth(data, SynthConfig(per_class=per_class, size=64))
    extra: dict[str, Any] = {"image_size": 32, "embed_dim": 32, "symbol_variants": 3} if backbone == "tiny" else {}
    run_dir = init_run(
        TrainConfig(
            data=str(data), out=str(folder / f"run-{backbone}"), method="galaxalign-stage1", backbone=backbone, **extra
        )
    )
    run = load_run(run_dir)
    out = folder / f"index-{backbone}"
    build(run, open_dataset(data, scheme=run.scheme), out)
    return out


def run(
    clients: int = CLIENTS, seconds: float = SECONDS, backbones: tuple[str, ...] = ("tiny", "packaged")
) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in backbones:
            index_dir = build_index(Path(tmp), backbone)
            with serve(index_dir) as url:
                samples = drive(url, clients, seconds)
            rows += [{"backbone": backbone, "clients": clients, **row} for row in summarise(samples, seconds)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--backbones", nargs="+", default=["tiny", "packaged"])
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from run import markdown_table

    print(
        f"{TITLE}; {args.clients} clients, {args.seconds:g} s, load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores\n"
    )
    print(markdown_table(run(args.clients, args.seconds, tuple(args.backbones))))


if __name__ == "__main__":
    main()
