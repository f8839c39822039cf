"""Fetching an image by URL without becoming an SSRF hole.

Every hop (redirects included) is parsed strictly, resolved once, and refused if any address
it resolves to is not a global unicast address: private, loopback, link-local (the cloud
metadata service), carrier-grade NAT, 192.0.0/24, multicast, reserved, and IPv6 forms that
embed an IPv4 address (IPv4-mapped/-compatible, 6to4, NAT64, Teredo) are judged by the IPv4
inside. The connection then goes to exactly the address that was checked: httpcore runs over
a network backend pinned to that IP, while the Host header and the TLS server name (SNI and
certificate check) stay the URL's host name, so a DNS answer that changes between check and
connect (rebinding) cannot reach anything else. One deadline covers the whole exchange,
connect, TLS, headers and body: a server trickling its headers is cut off at the timeout.

ALLOW_PRIVATE_URLS (operators with an intranet image server) allows private, loopback and
CGNAT addresses, never link-local, multicast, reserved or metadata addresses. Tests reach
their local servers through `allow_networks`, a keyword argument no setting can reach.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable, Iterable
from urllib.parse import unquote, urljoin

import httpcore
import httpx

from core import media
from core.errors import FetchError

log = logging.getLogger(__name__)
MAX_REDIRECTS = 3
MAX_URL_CHARS = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_HOSTNAME = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
# Not global even where Python's ipaddress says so, or addresses no image is ever served from.
_NON_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "64:ff9b:1::/48", "fec0::/10",
))
# Never fetched, whatever ALLOW_PRIVATE_URLS says: cloud metadata services and friends.
_ALWAYS_BLOCKED = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "192.0.0.192/32", "fd00:ec2::254/128",
))
_6TO4 = ipaddress.ip_network("2002::/16")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPAT = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str | None
    filename: str
    final_url: str


@dataclass(frozen=True)
class Target:
    """A checked URL and the one address the connection may go to."""
    url: str
    scheme: str
    host: str  # as the server should see it (Host header, TLS server name): IDNA-encoded, no brackets
    port: int
    path: bytes
    ip: str


def _short(url: str) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in url)
    return shown if len(shown) <= 100 else shown[:97] + "…"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (A and AAAA)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)]


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if addr.ipv4_mapped:
        return [addr.ipv4_mapped]
    if addr.teredo:
        return list(addr.teredo)
    if addr in _6TO4 and addr.sixtofour:
        return [addr.sixtofour]
    if addr in _NAT64:
        return [ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)]
    if addr in _IPV4_COMPAT and int(addr) > 1:
        return [ipaddress.IPv4Address(int(addr))]
    return []


def address_problem(addr: Address, *, allow_private: bool = False, allow_networks: Iterable[Network] = ()) -> str | None:
    """None if `addr` may be fetched from, else a short reason ("a loopback address", …)."""
    allow_networks = tuple(allow_networks)
    if any(addr.version == n.version and addr in n for n in allow_networks):
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return "a scoped (zone id) address"
        inner = _embedded_ipv4(addr)
        for v4 in inner:
            why = address_problem(v4, allow_private=allow_private, allow_networks=allow_networks)
            if why:
                return f"an IPv6 address embedding {v4}, {why}"
        if inner and not addr.teredo:
            return None  # mapped / 6to4 / NAT64 of a global IPv4: as good as that address
    if any(addr.version == n.version and addr in n for n in _ALWAYS_BLOCKED) or addr.is_link_local:
        return "a link-local or metadata-service address"
    if addr.is_multicast or addr.is_unspecified or addr.is_reserved:
        return "a multicast, unspecified or reserved address"
    if addr.is_loopback:
        return None if allow_private else "a loopback address"
    if addr.is_private or not addr.is_global or any(addr.version == n.version and addr in n for n in _NON_GLOBAL):
        return None if allow_private else "a private or otherwise non-global address"
    return None


def parse_url(url: str) -> httpx.URL:
    """httpx's parser plus the checks it leaves out; every failure is a FetchError naming the problem."""
    if not isinstance(url, str):
        raise FetchError("The URL must be text.")
    url = url.strip()
    if not url:
        raise FetchError("Enter the URL of an image.")
    if len(url) > MAX_URL_CHARS:
        raise FetchError(f"The URL is {len(url)} characters long; the limit is {MAX_URL_CHARS}.")
    bad = media.first_control_char(url) or next((c for c in url if c.isspace()), None)
    if bad is not None:
        raise FetchError(f"The URL '{_short(url)}' contains a space or control character (U+{ord(bad):04X}).")
    try:
        parsed = httpx.URL(url)
        raw_host, port = parsed.raw_host.decode("ascii"), parsed.port
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError) as err:
        raise FetchError(f"'{_short(url)}' is not a valid URL ({err}).") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"'{_short(url)}' is not an http(s) URL.")
    if not raw_host:
        raise FetchError(f"'{_short(url)}' has no host name.")
    if parsed.userinfo:
        raise FetchError("URLs with a user name or password in them are not accepted.")
    if "%" in raw_host and ":" in raw_host:
        raise FetchError(f"'{_short(url)}' names an IPv6 address with a zone id; that is not accepted.")
    if port is not None and not 1 <= port <= 65535:
        raise FetchError(f"'{_short(url)}' has port {port}; ports run from 1 to 65535.")
    try:
        ipaddress.ip_address(raw_host)
    except ValueError:
        if not _HOSTNAME.match(raw_host):
            raise FetchError(f"'{_short(url)}' has an invalid host name '{_short(unquote(raw_host))}'.") from None
    return parsed


def check_url(
    url: str, *, allow_private: bool = False, resolver: Resolver = system_resolver,
    allow_networks: Iterable[Network] = (),
) -> Target:
    """Parse `url`, resolve its host once and check every address; the Target pins the first one."""
    parsed = parse_url(url)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        answers = list(resolver(host, port))
    except (OSError, UnicodeError, ValueError) as err:
        raise FetchError(f"Cannot resolve host '{_short(host)}': {getattr(err, 'strerror', None) or err}.") from None
    if not answers:
        raise FetchError(f"Cannot resolve host '{_short(host)}': no addresses.")
    addrs: list[Address] = []
    for answer in answers:
        try:
            addrs.append(ipaddress.ip_address(answer))
        except ValueError:
            raise FetchError(f"Host '{_short(host)}' resolved to '{_short(str(answer))}', not an IP address.") from None
    for addr in addrs:
        why = address_problem(addr, allow_private=allow_private, allow_networks=allow_networks)
        if why:
            raise FetchError(
                f"Refusing to fetch from '{_short(host)}' ({addr} is {why}): private, loopback, link-local and other "
                "non-global addresses are blocked (ALLOW_PRIVATE_URLS=true allows private and loopback ones)."
            )
    return Target(str(parsed), parsed.scheme, host, port, parsed.raw_path, str(addrs[0]))


# ------------------------------------------------------------------ the pinned connection
class _DeadlineStream(httpcore.NetworkStream):
    """Every read/write/TLS step gets at most the time left before the exchange's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner, self._deadline = inner, deadline

    def _left(self, timeout: float | None, exc: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise exc("the fetch deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the checked IP: httpcore never resolves the host name itself."""

    def __init__(self, target: Target, deadline: float) -> None:
        self._target, self._deadline, self._inner = target, deadline, httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        if host != self._target.host or port != self._target.port:
            raise httpcore.ConnectError(f"unexpected connection to {host}:{port}")
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the fetch deadline passed")
        stream = self._inner.connect_tcp(self._target.ip, port, timeout=left if timeout is None else min(timeout, left),
                                         local_address=local_address, socket_options=socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are never used for fetches")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _host_header(target: Target) -> bytes:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return (host if target.port == default else f"{host}:{target.port}").encode("ascii")


def _exchange(target: Target, *, deadline: float, max_bytes: int, timeout_s: float,
              ssl_context: ssl.SSLContext | None) -> tuple[int, dict[str, str], bytes]:
    """One GET to the pinned address: (status, headers, body); redirects are returned, not followed."""
    headers = [(b"Host", _host_header(target)), (b"Accept", b"image/png, image/jpeg, image/webp, image/*;q=0.8"),
               (b"Accept-Encoding", b"identity"), (b"User-Agent", b"CharacterWorkbench/1 (reference image fetch)")]
    url = httpcore.URL(scheme=target.scheme.encode(), host=target.host.encode("ascii"), port=target.port,
                       target=target.path or b"/")
    with httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=_PinnedBackend(target, deadline),
                                 max_connections=1, retries=0) as pool:
        with pool.stream("GET", url, headers=headers, extensions={"timeout": {"connect": timeout_s, "read": timeout_s,
                                                                              "write": timeout_s, "pool": timeout_s}}
                         ) as resp:
            got = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in resp.headers}
            if resp.status in (301, 302, 303, 307, 308) or resp.status >= 400:
                return resp.status, got, b""
            declared = got.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"The image at {_short(target.url)} is {int(declared)} bytes; the limit is {max_bytes}.")
            chunks, total = [], 0
            for chunk in resp.iter_stream():
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError(f"The download from {_short(target.url)} exceeded the limit of {max_bytes} bytes.")
                chunks.append(chunk)
            return resp.status, got, b"".join(chunks)


def fetch_image_bytes(
    url: str, *, timeout_s: float, max_bytes: int, allow_private: bool, resolver: Resolver = system_resolver,
    allow_networks: Iterable[Network] = (), ssl_context: ssl.SSLContext | None = None,
) -> Fetched:
    """Download `url` (http/https only) within the time and byte caps, from checked addresses only."""
    deadline = time.monotonic() + timeout_s
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = check_url(current, allow_private=allow_private, resolver=resolver, allow_networks=allow_networks)
        try:
            status, headers, body = _exchange(target, deadline=deadline, max_bytes=max_bytes, timeout_s=timeout_s,
                                              ssl_context=ssl_context)
        except httpcore.TimeoutException:
            raise FetchError(f"Timed out after {timeout_s:g} s fetching {_short(target.url)}.") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, ssl.SSLError,
                OSError) as err:
            log.info("fetch of %s (pinned to %s) failed: %r", target.url, target.ip, err)
            raise FetchError(f"Could not fetch {_short(target.url)}: {err.__class__.__name__}: {str(err)[:200]}.") from None
        if status in (301, 302, 303, 307, 308):
            location = headers.get("location")
            if not location:
                raise FetchError(f"{_short(target.url)} redirects without saying where to.")
            current = urljoin(target.url, location)
            continue
        if status >= 400:
            raise FetchError(f"The server answered HTTP {status} for {_short(target.url)}.")
        name = PurePosixPath(unquote(target.path.split(b"?", 1)[0].decode("ascii", "replace"))).name or "download"
        return Fetched(body, headers.get("content-type"), name, target.url)
    raise FetchError(f"Too many redirects (more than {MAX_REDIRECTS}) fetching the URL.")
