"""Create one virtualenv per peer under benchmarks/.venvs/<peer> and install it from PyPI.

Idempotent: an existing venv is reused; if ``benchmarks/requirements/<peer>.txt`` exists the
exact pinned versions in it are installed, otherwise the latest release is installed and the
resulting ``pip freeze`` is written there (so later runs, and other machines, get the same
versions). Pass ``--upgrade`` to ignore the pins and re-resolve to the latest releases.

Usage (from the repo root)::

    /work/venv/bin/python -m benchmarks.setup_peers [--only arq,saq] [--upgrade]
    /work/venv/bin/python -m benchmarks.setup_peers --base-ref REF   # aioqueue as of REF

``--base-ref`` builds ``benchmarks/.venvs/aioqueue_base`` with aioqueue as it was at a git
revision (installed from ``git archive REF``, not editable), so that one benchmark run compares
this tree's aioqueue with an earlier one side by side (peer ``aioqueue_base``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
PINS = HERE / "requirements"

# What a user would `pip install`. hiredis is added everywhere so that every redis-py based
# peer (and aioqueue, which depends on redis[hiredis]) parses replies with the same C parser;
# redis-py is added where the peer does not use it, because every job body does its INCR/SADD
# through redis-py so the job body is identical for every peer.
PEERS: dict[str, list[str]] = {
    "arq": ["arq", "hiredis"],
    # saq 0.26.4 imports typing_extensions without declaring it; a user has to add it too.
    "saq": ["saq[hiredis]", "redis", "hiredis", "typing_extensions"],
    "streaq": ["streaq", "redis", "hiredis"],
    "taskiq": ["taskiq", "taskiq-redis", "hiredis"],
    "rq": ["rq", "hiredis"],
    "bullmq": ["bullmq", "hiredis"],
}
# The distribution whose version is shown in the results table.
HEADLINE = {
    "arq": ["arq"],
    "saq": ["saq"],
    "streaq": ["streaq"],
    "taskiq": ["taskiq", "taskiq-redis"],
    "rq": ["rq"],
    "bullmq": ["bullmq"],
}


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def pip(peer: str, *args: str) -> str:
    cmd = [str(venv_python(peer)), "-m", "pip", "--disable-pip-version-check", *args]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def versions(peer: str) -> dict[str, str]:
    out = pip(peer, "list", "--format=json")
    return {d["name"].lower(): d["version"] for d in json.loads(out)}


def setup(peer: str, upgrade: bool) -> dict[str, str]:
    path = VENVS / peer
    if not venv_python(peer).exists():
        print(f"[{peer}] creating venv {path}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    pin_file = PINS / f"{peer}.txt"
    if pin_file.exists() and not upgrade:
        print(f"[{peer}] installing pinned versions from {pin_file.relative_to(HERE.parent)}",
              flush=True)
        pip(peer, "install", "-q", "-r", str(pin_file))
    else:
        print(f"[{peer}] installing latest: {' '.join(PEERS[peer])}", flush=True)
        pip(peer, "install", "-q", "--upgrade", *PEERS[peer])
        freeze = pip(peer, "freeze", "--all", "--exclude", "pip", "--exclude", "setuptools")
        PINS.mkdir(exist_ok=True)
        pin_file.write_text(f"# pinned by benchmarks/setup_peers.py for peer {peer}\n{freeze}")
    return versions(peer)


def setup_base(ref: str) -> dict[str, str]:
    """aioqueue as of git revision ``ref`` in its own venv (peer ``aioqueue_base``)."""
    peer = "aioqueue_base"
    path = VENVS / peer
    if path.exists():
        shutil.rmtree(path)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", ref],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        sha = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", ref],
                             capture_output=True, text=True, check=True).stdout.strip()
        print(f"[{peer}] installing aioqueue at {ref} ({sha})", flush=True)
        pip(peer, "install", "-q", tmp)
    (path / "ref.txt").write_text(f"{ref} {sha}\n")
    return versions(peer)


def setup_self() -> dict[str, str]:
    """This tree's aioqueue, editable, in its own venv (``.venvs/aioqueue``)
    with only its runtime dependencies and the extras its benchmark variants
    use, as every other peer has: run from the bench venv (about a hundred
    distributions: docs, test and plotting tools), each worker paid pydantic's
    plugin discovery over all of them once (47 ms against 25 ms here)."""
    peer = "aioqueue"
    path = VENVS / peer
    if not venv_python(peer).exists():
        print(f"[{peer}] creating venv {path}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    print(f"[{peer}] installing this tree (editable) with extras metrics, otel (+ the SDK)",
          flush=True)
    pip(peer, "install", "-q", "-e", f"{HERE.parent}[metrics,otel]", "opentelemetry-sdk")
    return versions(peer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", help="comma-separated subset of peers")
    ap.add_argument("--upgrade", action="store_true", help="ignore pins, install latest")
    ap.add_argument("--base-ref", help="build only the aioqueue_base venv: aioqueue at this "
                    "git revision, to compare with the working tree in one run")
    args = ap.parse_args(argv)
    if args.base_ref:
        vers = setup_base(args.base_ref)
        print(f"[aioqueue_base] ok: aioqueue {vers.get('aioqueue', '?')} at {args.base_ref}")
        return 0
    peers = args.only.split(",") if args.only else ["aioqueue", *PEERS]
    failed = []
    summary = {}
    for peer in peers:
        if peer == "aioqueue":
            vers = setup_self()
            print(f"[aioqueue] ok: aioqueue {vers.get('aioqueue', '?')} (this tree)", flush=True)
            continue
        if peer not in PEERS:
            ap.error(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
        try:
            vers = setup(peer, args.upgrade)
        except Exception as exc:
            print(f"[{peer}] FAILED: {exc}", file=sys.stderr, flush=True)
            failed.append(peer)
            continue
        summary[peer] = {name: vers.get(name, "?") for name in HEADLINE[peer]}
        extra = {k: vers[k] for k in ("redis", "hiredis", "coredis") if k in vers}
        print(f"[{peer}] ok: {summary[peer]}  (clients: {extra})", flush=True)
    VENVS.mkdir(exist_ok=True)
    vfile = VENVS / "versions.json"
    known = json.loads(vfile.read_text()) if vfile.exists() else {}
    vfile.write_text(json.dumps({**known, **summary}, indent=2))
    if failed:
        print(f"failed peers: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
