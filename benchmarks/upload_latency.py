"""Load benchmark: concurrent uploaders against a running site, over loopback.

Each uploader posts one photo at a time to ``POST /api/v1/images/?wait=30``,
which returns once the prediction is stored, and records the time from the
start of the upload to the response. Prints uploads per second, median and
p95 of that time, and the error count. Not a test: run it against
``make run`` (or any deployment) and read the numbers.

    .venv/bin/python benchmarks/upload_latency.py --url http://127.0.0.1:8000 --uploaders 4 --uploads 500
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_photo(seed: int, width: int, height: int) -> bytes:
    """Return a JPEG with random shapes, so that every upload has new content."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        box = sorted(rng.randrange(width) for _ in range(2)), sorted(rng.randrange(height) for _ in range(2))
        draw.rectangle((box[0][0], box[1][0], box[0][1], box[1][1]), fill=tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def get_token(base_url: str, username: str, password: str) -> str:
    request = urllib.request.Request(
        f"{base_url}/api/v1/auth/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["token"]


def default_credentials() -> tuple[str, str] | None:
    """Return the local staff account that `make run` printed, if it exists."""
    var_dir = Path(os.environ.get("HERITAGE_VAR_DIR", REPO_ROOT / "var"))
    credentials_file = var_dir / "local-admin.txt"
    if not credentials_file.is_file():
        return None
    username, _, password = credentials_file.read_text().strip().partition(" ")
    return username, password


def upload_once(base_url: str, token: str | None, photo: bytes, index: int, results: Results) -> None:
    body, content_type = multipart(f"bench-{index}.jpg", photo)
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(f"{base_url}/api/v1/images/?wait=30", data=body, headers=headers, method="POST")

    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
    except (urllib.error.URLError, TimeoutError, ValueError) as error:
        with results.lock:
            results.errors.append(f"upload {index}: {error}")
        return
    elapsed_ms = (time.perf_counter() - started) * 1000

    entry = payload["results"][0]
    with results.lock:
        if entry.get("status") != "done":
            results.errors.append(f"upload {index}: status {entry.get('status')} {entry.get('error')}")
            return
        results.latencies_ms.append(elapsed_ms)


def uploader(base_url: str, token: str | None, indices: list[int], size: tuple[int, int], results: Results) -> None:
    for index in indices:
        upload_once(base_url, token, make_photo(index, *size), index, results)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[position]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the running site")
    parser.add_argument("--uploaders", type=int, default=4, help="concurrent uploaders (threads)")
    parser.add_argument("--uploads", type=int, default=500, help="total uploads across all uploaders")
    parser.add_argument("--width", type=int, default=800, help="photo width in pixels")
    parser.add_argument("--height", type=int, default=600, help="photo height in pixels")
    parser.add_argument("--username", help="staff account (staff uploads are not throttled)")
    parser.add_argument("--password", help="password of --username")
    parser.add_argument("--warmup", type=int, default=4, help="uploads sent first and left out of the figures")
    args = parser.parse_args()

    base_url = args.url.rstrip("/")
    credentials = (args.username, args.password) if args.username else default_credentials()
    token = get_token(base_url, *credentials) if credentials else None
    if token is None:
        print("warning: uploading anonymously; the anonymous throttle will reject most uploads", file=sys.stderr)

    warmup = Results()
    for index in range(args.warmup):
        upload_once(base_url, token, make_photo(-1 - index, args.width, args.height), -1 - index, warmup)

    results = Results()
    shares = [list(range(start, args.uploads, args.uploaders)) for start in range(args.uploaders)]
    threads = [
        threading.Thread(target=uploader, args=(base_url, token, share, (args.width, args.height), results))
        for share in shares
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    done = len(results.latencies_ms)
    print(f"uploads: {args.uploads} by {args.uploaders} uploaders, {args.width}x{args.height} JPEG")
    print(f"uploads/s: {done / elapsed:.1f}  ({done} predicted in {elapsed:.1f} s)")
    if done:
        print(
            f"upload to stored prediction: median {statistics.median(results.latencies_ms):.0f} ms, "
            f"p95 {percentile(results.latencies_ms, 0.95):.0f} ms, max {max(results.latencies_ms):.0f} ms"
        )
    print(f"errors: {len(results.errors)}")
    for error in results.errors[:10]:
        print(f"  {error}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
