"""URL fetching against real local servers: DNS rebinding, pinned TLS, trickling servers, hostile URLs.

The resolver is an injectable parameter of core.media.urlfetch (the only stand-in: DNS answers we choose).
Local servers are reached through `allow_networks`, a keyword argument no setting or page can pass,
so the production default (no private addresses) is what every other check here runs under.
"""
from __future__ import annotations

import http.server
import ipaddress
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import FetchError
from core.media.urlfetch import address_problem, check_url, fetch_image_bytes
from tests.helpers import image_bytes

PUBLIC = "93.184.216.34"
LOOPBACK_2 = [ipaddress.ip_network("127.0.0.2/32")]
IMG = image_bytes("PNG", (32, 24))


class Resolver:
    """Answers in turn (the last one repeats) and counts how often it was asked."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers, self.calls = list(answers), 0

    def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


def _server(address: str, port: int, routes: dict, seen: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get("Host")))
            kind, payload = routes.get(self.path, ("status", 404))
            if kind == "redirect":
                self.send_response(302)
                self.send_header("Location", payload)
                self.end_headers()
            elif kind == "status":
                self.send_response(payload)
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def twin_servers():
    """A 'public' server on 127.0.0.2:P and an internal one on 127.0.0.1:P (same port, other address)."""
    public_routes: dict = {}
    public_seen: list = []
    internal_seen: list = []
    for _ in range(20):
        public = _server("127.0.0.2", 0, public_routes, public_seen)
        port = public.server_address[1]
        try:
            internal = _server("127.0.0.1", port, {"/a.png": ("image/png", IMG), "/b.png": ("image/png", IMG)},
                               internal_seen)
            break
        except OSError:
            public.shutdown()
            public.server_close()
    else:
        pytest.fail("no port free on both loopback addresses")
    yield port, public_routes, public_seen, internal_seen
    for srv in (public, internal):
        srv.shutdown()
        srv.server_close()


def _fetch(url, resolver, **kw):
    kw.setdefault("timeout_s", 5)
    return fetch_image_bytes(url, max_bytes=1_000_000, allow_private=False, resolver=resolver,
                             allow_networks=LOOPBACK_2, **kw)


# ------------------------------------------------------------------ pinning
def test_dns_rebinding_cannot_reach_the_internal_server(twin_servers):
    port, routes, public_seen, internal_seen = twin_servers
    routes["/a.png"] = ("image/png", IMG)
    resolver = Resolver(["127.0.0.2"], ["127.0.0.1"])  # checked answer, then the rebinding answer
    got = _fetch(f"http://images.example:{port}/a.png", resolver)
    assert got.data == IMG and got.filename == "a.png"
    assert resolver.calls == 1  # resolved once: the connection went to the address that was checked
    assert public_seen == [("/a.png", f"images.example:{port}")]  # Host header kept
    assert internal_seen == []
    with pytest.raises(FetchError, match="127.0.0.1 is a loopback address"):
        _fetch(f"http://images.example:{port}/a.png", Resolver(["127.0.0.1"]))
    assert internal_seen == []


def test_each_redirect_hop_is_checked_again(twin_servers):
    port, routes, public_seen, internal_seen = twin_servers
    routes["/to-name"] = ("redirect", f"http://images.example:{port}/b.png")
    routes["/to-literal"] = ("redirect", f"http://127.0.0.1:{port}/b.png")
    routes["/to-metadata"] = ("redirect", "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(FetchError, match="loopback"):
        _fetch(f"http://images.example:{port}/to-name", Resolver(["127.0.0.2"], ["127.0.0.1"]))
    with pytest.raises(FetchError, match="loopback"):
        _fetch(f"http://images.example:{port}/to-literal", Resolver(["127.0.0.2"], ["127.0.0.1"]))
    with pytest.raises(FetchError, match="link-local or metadata"):
        _fetch(f"http://images.example:{port}/to-metadata", Resolver(["127.0.0.2"], ["169.254.169.254"]))
    assert internal_seen == [] and len(public_seen) == 3


def test_one_bad_address_among_the_answers_refuses_the_host(twin_servers):
    port, routes, public_seen, internal_seen = twin_servers
    routes["/a.png"] = ("image/png", IMG)
    with pytest.raises(FetchError, match="127.0.0.1 is a loopback address"):
        _fetch(f"http://images.example:{port}/a.png", Resolver(["127.0.0.2", "127.0.0.1"]))
    assert public_seen == [] and internal_seen == []


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=images.example",
         "-addext", "subjectAltName=DNS:images.example"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_keeps_the_server_name_while_connecting_to_the_pinned_address(tls_files):
    cert, key = tls_files
    seen: list = []
    sni: list = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)
    server = _server("127.0.0.1", 0, {"/a.png": ("image/png", IMG)}, seen)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    client_ctx = ssl.create_default_context(cafile=str(cert))
    try:
        got = fetch_image_bytes(
            f"https://images.example:{port}/a.png", timeout_s=5, max_bytes=100_000, allow_private=False,
            resolver=Resolver(["127.0.0.1"]), allow_networks=[ipaddress.ip_network("127.0.0.1/32")],
            ssl_context=client_ctx,
        )
        assert got.data == IMG
        assert sni == ["images.example"] and seen == [("/a.png", f"images.example:{port}")]
        # The certificate is checked against the URL's host, not the IP: another name on the same address fails.
        with pytest.raises(FetchError, match="Could not fetch .*(CERTIFICATE_VERIFY_FAILED|certificate|hostname)"):
            fetch_image_bytes(
                f"https://other.example:{port}/a.png", timeout_s=5, max_bytes=100_000, allow_private=False,
                resolver=Resolver(["127.0.0.1"]), allow_networks=[ipaddress.ip_network("127.0.0.1/32")],
                ssl_context=client_ctx,
            )
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ one deadline for the whole exchange
class Trickler:
    """A raw socket server that answers one byte at a time: in the headers or in the body."""

    def __init__(self, phase: str, total: int = 400, interval: float = 0.05) -> None:
        self.phase, self.total, self.interval = phase, total, interval
        self.sent, self.cut_off = 0, False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\n"
            if self.phase == "body":
                head += b"Content-Type: image/png\r\nContent-Length: %d\r\n\r\n" % self.total
            else:
                head += b"X-Slow: "
            try:
                conn.sendall(head)
                for _ in range(self.total):
                    conn.sendall(b"a")
                    self.sent += 1
                    time.sleep(self.interval)
            except OSError:
                self.cut_off = True


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_a_trickling_server_is_cut_off_at_the_deadline(phase):
    server = Trickler(phase)  # would take 400 × 50 ms = 20 s to finish
    try:
        with pytest.raises(FetchError, match="Timed out after 1 s"):
            fetch_image_bytes(f"http://slow.example:{server.port}/x.png", timeout_s=1, max_bytes=1_000_000,
                              allow_private=False, resolver=Resolver(["127.0.0.1"]),
                              allow_networks=[ipaddress.ip_network("127.0.0.1/32")])
        server.thread.join(30)
        assert server.cut_off and server.sent < server.total  # the client hung up long before the end
    finally:
        server.sock.close()


# ------------------------------------------------------------------ which addresses
BLOCKED = [
    "127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.5.4", "192.168.1.1", "100.64.0.1", "100.127.255.254",
    "192.0.0.8", "192.0.0.9", "192.0.0.170", "169.254.169.254", "0.0.0.0", "0.1.2.3", "224.0.0.1",
    "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1", "203.0.113.5",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::10.0.0.1",
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
    "64:ff9b::a00:1", "64:ff9b:1::a00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
]
ALLOWED = ["8.8.8.8", PUBLIC, "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
           "64:ff9b::808:808"]


@pytest.mark.parametrize("addr", BLOCKED)
def test_non_global_addresses_are_refused(addr):
    shown = re.escape(str(ipaddress.ip_address(addr)))
    with pytest.raises(FetchError, match=f"Refusing to fetch from 'img.example' \\({shown} is "):
        check_url("https://img.example/a.png", resolver=Resolver([addr]))


@pytest.mark.parametrize("addr", ALLOWED)
def test_global_addresses_are_allowed(addr):
    target = check_url("https://img.example/a.png", resolver=Resolver([addr]))
    assert (ipaddress.ip_address(target.ip), target.host, target.port) == (ipaddress.ip_address(addr), "img.example", 443)


@pytest.mark.parametrize("addr,allowed", [
    ("127.0.0.1", True), ("10.0.0.1", True), ("100.64.1.1", True), ("fd12::1", True), ("::ffff:192.168.0.1", True),
    ("169.254.169.254", False), ("fe80::1", False), ("fd00:ec2::254", False), ("100.100.100.200", False),
    ("224.0.0.1", False), ("0.0.0.0", False), ("64:ff9b::a9fe:a9fe", False),
])
def test_allow_private_urls_never_opens_metadata_or_link_local(addr, allowed):
    why = address_problem(ipaddress.ip_address(addr), allow_private=True)
    assert (why is None) == allowed, why


# ------------------------------------------------------------------ malformed URLs
@pytest.mark.parametrize("url,needle", [
    ("", "Enter the URL"), ("   ", "Enter the URL"), ("http://a:99999/x.png", "ports run from 1 to 65535"),
    ("http://a:0/x.png", "ports run from 1 to 65535"), ("http://a:abc/x.png", "not a valid URL"),
    ("http://[::1/x.png", "not a valid URL"), ("http://[::1", "not a valid URL"),
    ("http://[fe80::1%25eth0]/x.png", "zone id"), ("http://a b/x.png", "space or control"),
    ("http://x\x00y/", "control character"), ("http://ex.com/\x7f", "control character"),
    ("ftp://example.com/x.png", "not an http"), ("javascript:alert(1)", "not an http"), ("file:///etc/passwd", "not an http"),
    ("//example.com/x.png", "not an http"), ("http:///x.png", "no host"), ("http://user:pw@example.com/x.png", "password"),
    ("http://ex%41mple.com/x.png", "invalid host name"), ("http://a..b/x.png", "invalid host name"),
    ("http://" + "a" * 64 + ".com/", "invalid host name"), ("http://example.com/" + "p" * 3000, "limit is 2048"),
    ("http://exa\u202emple.com/", "control character"), ("http://-bad-.com/", "invalid host name"),
])
def test_malformed_urls_are_refused_with_a_message(url, needle):
    with pytest.raises(FetchError, match=needle):
        check_url(url, resolver=Resolver([PUBLIC]))


def test_unresolvable_host_is_a_message():
    with pytest.raises(FetchError, match="Cannot resolve host 'does-not-exist.invalid'"):
        check_url("http://does-not-exist.invalid/x.png")


# ------------------------------------------------------------------ properties
_PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _resolve_literal(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return [PUBLIC]


def _checked_or_refused(url: str) -> None:
    try:
        target = check_url(url, resolver=_resolve_literal)
    except FetchError as err:
        assert str(err)
        return
    assert target.scheme in ("http", "https") and 1 <= target.port <= 65535
    assert address_problem(ipaddress.ip_address(target.ip)) is None


@_PROPS
@given(st.text(max_size=120))
def test_property_any_text_is_checked_or_refused(url):
    _checked_or_refused(url)


_HOSTS = st.one_of(
    st.text(max_size=30), st.from_regex(r"[a-z0-9._%-]{1,40}", fullmatch=True),
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.ip_addresses(v=6).map(str), st.just("[::1"), st.just("127.1"), st.just("0x7f.0.0.1"),
)
_PORTS = st.one_of(st.just(""), st.integers(-5, 70_000).map(lambda p: f":{p}"), st.text(max_size=6).map(":{}".format))


@_PROPS
@given(st.sampled_from(["http", "https", "HTTP", "ftp", "", "http:"]), st.sampled_from(["://", ":/", ":", "//"]),
       st.sampled_from(["", "u@", "u:p@", "@"]), _HOSTS, _PORTS, st.text(max_size=40))
def test_property_url_shaped_input_is_checked_or_refused(scheme, sep, userinfo, host, port, path):
    _checked_or_refused(f"{scheme}{sep}{userinfo}{host}{port}/{path}")


@_PROPS
@given(st.ip_addresses(v=4))
def test_property_ipv6_forms_embedding_an_ipv4_are_judged_by_it(v4):
    inner = address_problem(v4) is None
    forms = [
        ipaddress.IPv6Address(f"::ffff:{v4}"),                             # IPv4-mapped
        ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80)),         # 6to4
        ipaddress.IPv6Address((0x0064FF9B << 96) | int(v4)),              # NAT64 well-known prefix
    ]
    for form in forms:
        assert (address_problem(form) is None) == inner, (v4, form)
    teredo = ipaddress.IPv6Address((0x20010000 << 96) | (int(PUBLIC_V4) << 64) | (int(v4) ^ 0xFFFFFFFF))
    assert address_problem(teredo) is not None  # Teredo is never global


PUBLIC_V4 = ipaddress.IPv4Address(PUBLIC)


@_PROPS
@given(st.ip_addresses())
def test_property_nothing_allowed_is_private_loopback_or_link_local(addr):
    if address_problem(addr) is None:
        plain = addr
        if isinstance(addr, ipaddress.IPv6Address):  # embedding forms are judged by the IPv4 inside
            if addr.ipv4_mapped:
                plain = addr.ipv4_mapped
            elif addr in ipaddress.ip_network("64:ff9b::/96"):
                plain = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
            elif addr in ipaddress.ip_network("2002::/16"):
                plain = addr.sixtofour
        assert not (plain.is_private or plain.is_loopback or plain.is_link_local or plain.is_multicast
                    or plain.is_unspecified or plain.is_reserved), addr
