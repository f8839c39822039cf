"""Fetching an image by URL without becoming an SSRF hole.

Every hop (including redirects) is resolved and refused if any address is
private, loopback, link-local, reserved or multicast, unless the operator set
ALLOW_PRIVATE_URLS. Bytes are streamed with a cap and an overall deadline.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlparse

import httpx

from core.errors import FetchError

log = logging.getLogger(__name__)
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str | None
    filename: str
    final_url: str


def _check_host(host: str, port: int, *, allow_private: bool) -> None:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as err:
        raise FetchError(f"Cannot resolve host '{host}': {err.strerror or err}.") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        bad = (
            addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved
            or addr.is_multicast or addr.is_unspecified
        )
        if bad and not allow_private:
            raise FetchError(
                f"Refusing to fetch from '{host}' ({addr}): private, loopback and link-local addresses are blocked "
                "(set ALLOW_PRIVATE_URLS=true to allow them)."
            )


def fetch_image_bytes(url: str, *, timeout_s: float, max_bytes: int, allow_private: bool) -> Fetched:
    """Download `url` (http/https only) within the time and byte caps."""
    url = (url or "").strip()
    deadline = time.monotonic() + timeout_s
    for _hop in range(MAX_REDIRECTS + 1):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise FetchError(f"'{url}' is not an http(s) URL.")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        _check_host(parsed.hostname, port, allow_private=allow_private)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"Timed out after {timeout_s:g} s fetching {url}.")
        try:
            with httpx.Client(timeout=httpx.Timeout(remaining), follow_redirects=False, trust_env=False) as client:
                with client.stream("GET", url, headers={"Accept": "image/*"}) as resp:
                    if resp.is_redirect and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code >= 400:
                        raise FetchError(f"The server answered HTTP {resp.status_code} for {url}.")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise FetchError(f"The image at {url} is {int(declared)} bytes; the limit is {max_bytes}.")
                    chunks: list[bytes] = []
                    total = 0
                    for chunk in resp.iter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise FetchError(f"The download from {url} exceeded the limit of {max_bytes} bytes.")
                        if time.monotonic() > deadline:
                            raise FetchError(f"Timed out after {timeout_s:g} s fetching {url}.")
                        chunks.append(chunk)
                    name = PurePosixPath(urlparse(url).path).name or "download"
                    return Fetched(b"".join(chunks), resp.headers.get("content-type"), name, url)
        except httpx.TimeoutException:
            raise FetchError(f"Timed out after {timeout_s:g} s fetching {url}.") from None
        except httpx.HTTPError as err:
            log.info("fetch of %s failed: %r", url, err)
            raise FetchError(f"Could not fetch {url}: {err.__class__.__name__}: {err}.") from None
    raise FetchError(f"Too many redirects (more than {MAX_REDIRECTS}) fetching the URL.")
