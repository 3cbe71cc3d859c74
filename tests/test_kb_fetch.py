"""The knowledge-base URL fetcher, called directly: SSRF refusals, and real fetches from a loopback server.

Nothing here needs the internet. Refusals happen before any connection; names other than localhost are
answered by a fake `socket.getaddrinfo`, and where a test needs a public address to be "connected to", the
connection attempt is recorded and refused instead of made.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import aiohappyeyeballs
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aigw.errors import AigwError, InvalidField, PayloadTooLarge, UnsupportedMediaType
from aigw.knowledge.fetch import USER_AGENT, fetch_url, forbidden_reason
from conftest import free_port
from doubles.ollama import ServerThread

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]
PUBLIC = "93.184.215.14"
HTML = b"<!doctype html><html><head><title>Doc</title></head><body><p>Hello</p></body></html>"


# -- the loopback server ---------------------------------------------------------------------------------


async def page(_: Request) -> Response:
    return Response(HTML, media_type="text/html")


async def typed(request: Request) -> Response:
    return Response(b"content", headers={"Content-Type": request.query_params["type"]})


async def sized(request: Request) -> Response:
    return Response(b"x" * int(request.query_params["n"]), media_type="text/plain")


async def chunked(request: Request) -> StreamingResponse:
    chunks, size = int(request.query_params["chunks"]), int(request.query_params["size"])

    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield b"y" * size

    return StreamingResponse(body(), media_type="text/plain")


async def redirect_chain(request: Request) -> Response:
    left = int(request.path_params["left"])
    return Response(status_code=302, headers={"Location": f"/chain/{left - 1}" if left > 1 else "/page"})


async def redirect_to(request: Request) -> Response:
    status = int(request.query_params.get("status", "302"))
    return Response(status_code=status, headers={"Location": request.query_params["location"]})


async def slow_headers(_: Request) -> Response:
    await asyncio.sleep(2)
    return Response(HTML, media_type="text/html")


async def slow_body(_: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"<html>"
        await asyncio.sleep(2)
        yield b"</html>"

    return StreamingResponse(body(), media_type="text/html")


async def echo_headers(request: Request) -> Response:
    # text/plain: the fetcher refuses application/json
    return Response(json.dumps(dict(request.headers)), media_type="text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    app = Starlette(
        routes=[
            Route("/page", page),
            Route("/typed", typed),
            Route("/sized", sized),
            Route("/chunked", chunked),
            Route("/chain/{left}", redirect_chain),
            Route("/to", redirect_to),
            Route("/slow-headers", slow_headers),
            Route("/slow-body", slow_body),
            Route("/headers", echo_headers),
        ]
    )
    thread = ServerThread(app)
    thread.start()
    yield thread
    thread.stop()


# -- fake DNS and a connection recorder ------------------------------------------------------------------


class FakeDNS:
    """Answers getaddrinfo for the names it was given, one answer per call (the last one repeats), and passes
    every other name to the real resolver. An empty answer is NXDOMAIN."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self._real = real
        self._answers: dict[str, list[list[str]]] = {}
        self.calls: list[str] = []

    def answer(self, name: str, *answers: list[str]) -> None:
        self._answers[name] = list(answers)

    def __call__(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self._answers:
            return self._real(host, port, family, type, proto, flags)
        self.calls.append(name)
        answers = self._answers[name]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port), 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port))))
        return infos


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS(socket.getaddrinfo)
    # The event loop looks socket.getaddrinfo up on every call, so this is what the resolver reaches.
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


class ConnectionLog:
    """Every address aiohttp tries to connect to. Offline, each attempt is refused, so nothing leaves the machine."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self._real = real
        self.offline = False
        self.addresses: list[str] = []

    async def __call__(self, addr_infos: list[Any], **kwargs: Any) -> socket.socket:
        self.addresses.extend(str(info[4][0]) for info in addr_infos)
        if self.offline:
            raise OSError(errno.ECONNREFUSED, "Connection refused (recorded by the test)")
        return await self._real(addr_infos, **kwargs)  # type: ignore[no-any-return]


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> ConnectionLog:
    log = ConnectionLog(aiohappyeyeballs.start_connection)
    monkeypatch.setattr(aiohappyeyeballs, "start_connection", log)
    return log


@pytest.fixture
def offline(connections: ConnectionLog) -> ConnectionLog:
    connections.offline = True
    return connections


def redirect(server: ServerThread, location: str, status: int = 302) -> str:
    """A URL on the loopback server that redirects to `location`."""
    return f"{server.url}/to?{urlencode({'status': status, 'location': location})}"


async def refusal(url: str, **kwargs: Any) -> AigwError:
    with pytest.raises(AigwError) as caught:
        await fetch_url(url, **kwargs)
    return caught.value


# -- refused on their face -------------------------------------------------------------------------------

SSRF_CORPUS = [
    # loopback, in every spelling inet_aton and the IPv6 parser accept
    "http://127.0.0.1/",
    "http://127.0.0.1:8080/",
    "http://127.0.0.1./",
    "http://127.000.000.001/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://017700000001/",
    "http://127.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://0.0.0.0/",
    "http://0.1.2.3/",
    "http://[::]/",
    # cloud metadata
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254./latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./",
    "http://metadata/",
    "http://instance-data/latest/",
    "http://db.corp.internal/",
    # private, shared, link-local, multicast, broadcast, reserved, documentation
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://10.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://192.168.1.1:3000/",
    "http://100.64.0.1/",
    "http://100.127.255.255/",
    "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b:1::1]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fec0::1]/",
    "http://[2001::1]/",
    "http://[2001:db8::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    # the machine itself by name
    "http://localhost/",
    "http://LOCALHOST./",
    "http://foo.localhost/",
    # userinfo, which hides the real host from a reader
    "http://user:pass@example.com/",
    "https://user@example.com/",
    "http://@example.com/",
    # other schemes, and no host
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "ftp://example.com/",
    "dict://127.0.0.1:11211/",
    "ws://example.com/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "http:///nohost",
    "http:example.com",
    "//example.com/",
    "example.com",
    # hosts that are not names
    "http://exa%6dple.com/",
    "http://a b/",
    "http://example.com\t/",
    "http://0x08080808/",
]


@pytest.mark.parametrize("url", SSRF_CORPUS)
async def test_ssrf_url_is_refused(url: str, offline: ConnectionLog) -> None:
    error = await refusal(url)
    assert isinstance(error, InvalidField)
    assert error.code == "url_not_allowed", error.message
    assert error.status == 422
    assert offline.addresses == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.0.0.5/", "URL host is a private address (10.0.0.5)"),
        ("http://127.1/", "URL host is a loopback address (127.0.0.1)"),
        ("http://169.254.169.254/", "URL host is a link-local address (169.254.169.254)"),
        ("ftp://example.com/", "URL scheme 'ftp' is not allowed; only http and https URLs can be fetched"),
        ("http://u:p@example.com/", "URL must not contain a user name or password"),
        ("http://metadata.google.internal/", "URL host metadata.google.internal is a cloud metadata or internal name"),
    ],
)
async def test_refusal_names_the_reason(url: str, message: str) -> None:
    assert (await refusal(url)).message == message


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_are_not_forbidden(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


async def test_allow_does_not_admit_metadata_names() -> None:
    error = await refusal("http://metadata.google.internal/", allow=[ipaddress.ip_network("0.0.0.0/0")])
    assert error.code == "url_not_allowed"


async def test_allow_admits_only_its_own_networks(server: ServerThread) -> None:
    error = await refusal(f"{server.url}/page", allow=[ipaddress.ip_network("10.0.0.0/8")])
    assert error.code == "url_not_allowed"


# -- names: one lookup per connection, every address checked, the checked address connected to -------------


async def test_name_resolving_to_a_private_address_is_refused(dns: FakeDNS, offline: ConnectionLog) -> None:
    dns.answer("intranet.test", ["10.0.0.5"])
    error = await refusal("http://intranet.test/")
    assert error.code == "url_not_allowed"
    assert error.message == "URL host intranet.test resolves to a private address (10.0.0.5)"
    assert offline.addresses == []


async def test_name_with_any_forbidden_address_is_refused(dns: FakeDNS, offline: ConnectionLog) -> None:
    dns.answer("mixed.test", [PUBLIC, "127.0.0.1"])
    assert (await refusal("http://mixed.test/")).code == "url_not_allowed"
    assert offline.addresses == []


async def test_rebinding_answer_is_never_connected_to(dns: FakeDNS, offline: ConnectionLog) -> None:
    # Public on the first lookup, loopback on any later one: the fetcher must connect to what it checked.
    dns.answer("rebind.test", [PUBLIC], ["127.0.0.1"])
    error = await refusal("http://rebind.test/")
    assert error.code == "url_fetch_failed"
    assert dns.calls == ["rebind.test"]
    assert offline.addresses == [PUBLIC]


async def test_connection_goes_to_the_checked_address_with_the_name_as_host(
    server: ServerThread, dns: FakeDNS, connections: ConnectionLog
) -> None:
    dns.answer("kb.test", ["127.0.0.1"], ["10.0.0.1"])
    fetched = await fetch_url(f"http://kb.test:{server.port}/headers", allow=LOOPBACK)
    assert dns.calls == ["kb.test"]
    assert connections.addresses == ["127.0.0.1"]
    assert json.loads(fetched.body)["host"] == f"kb.test:{server.port}"


async def test_unresolvable_name_fails(dns: FakeDNS) -> None:
    dns.answer("nowhere.test", [])
    error = await refusal("http://nowhere.test/")
    assert error.code == "url_fetch_failed"
    assert "could not be resolved" in error.message


async def test_localhost_is_fetched_when_all_its_addresses_are_allowed(server: ServerThread) -> None:
    allow = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    fetched = await fetch_url(f"http://localhost:{server.port}/page", allow=allow)
    assert fetched.body == HTML


async def test_localhost_is_refused_without_allow(server: ServerThread) -> None:
    assert (await refusal(f"http://localhost:{server.port}/page")).code == "url_not_allowed"


# -- fetching from the loopback server -------------------------------------------------------------------


async def test_html_page_is_fetched(server: ServerThread) -> None:
    fetched = await fetch_url(f"{server.url}/page", allow=LOOPBACK)
    assert fetched.url == f"{server.url}/page"
    assert fetched.content_type == "text/html"
    assert fetched.charset == "utf-8"
    assert fetched.body == HTML


async def test_request_identifies_itself_and_ignores_proxy_settings(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would connect on our behalf, to addresses nobody checked.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://10.9.9.9:3128")
    fetched = await fetch_url(f"{server.url}/headers", allow=LOOPBACK)
    headers = json.loads(fetched.body)
    assert headers["user-agent"] == USER_AGENT
    assert "text/html" in headers["accept"]
    assert "application/pdf" in headers["accept"]


@pytest.mark.parametrize(
    ("header", "content_type", "charset"),
    [
        ("application/pdf", "application/pdf", None),
        ("text/plain; charset=ISO-8859-1", "text/plain", "ISO-8859-1"),
        ('TEXT/Markdown; charset="utf-8"', "text/markdown", "utf-8"),
        ("text/csv", "text/csv", None),
        ("application/xhtml+xml", "application/xhtml+xml", None),
    ],
)
async def test_supported_content_types(
    server: ServerThread, header: str, content_type: str, charset: str | None
) -> None:
    fetched = await fetch_url(f"{server.url}/typed?{urlencode({'type': header})}", allow=LOOPBACK)
    assert (fetched.content_type, fetched.charset, fetched.body) == (content_type, charset, b"content")


@pytest.mark.parametrize("header", ["image/png", "application/octet-stream", "application/json", "video/mp4"])
async def test_unsupported_content_type_is_refused(server: ServerThread, header: str) -> None:
    error = await refusal(f"{server.url}/typed?{urlencode({'type': header})}", allow=LOOPBACK)
    assert isinstance(error, UnsupportedMediaType)
    assert error.code == "unsupported_url_content"
    assert error.status == 415


async def test_body_at_the_limit_is_accepted(server: ServerThread) -> None:
    fetched = await fetch_url(f"{server.url}/sized?n=1000", allow=LOOPBACK, max_bytes=1000)
    assert len(fetched.body) == 1000


async def test_body_over_the_limit_with_content_length_is_refused(server: ServerThread) -> None:
    error = await refusal(f"{server.url}/sized?n=1001", allow=LOOPBACK, max_bytes=1000)
    assert isinstance(error, PayloadTooLarge)
    assert error.code == "url_too_large"
    assert error.status == 413


async def test_chunked_body_over_the_limit_is_refused(server: ServerThread) -> None:
    error = await refusal(f"{server.url}/chunked?chunks=50&size=1000", allow=LOOPBACK, max_bytes=10_000)
    assert isinstance(error, PayloadTooLarge)
    assert error.code == "url_too_large"


async def test_redirect_chain_within_limit_ends_at_the_final_url(server: ServerThread) -> None:
    fetched = await fetch_url(f"{server.url}/chain/5", allow=LOOPBACK, max_redirects=5)
    assert fetched.url == f"{server.url}/page"
    assert fetched.body == HTML


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("location", ["/page", "page", "{url}/page"])
async def test_redirects_are_followed(server: ServerThread, status: int, location: str) -> None:
    target = location.format(url=server.url)
    fetched = await fetch_url(redirect(server, target, status), allow=LOOPBACK)
    assert fetched.url == f"{server.url}/page"


async def test_too_many_redirects_are_refused(server: ServerThread) -> None:
    error = await refusal(f"{server.url}/chain/6", allow=LOOPBACK, max_redirects=5)
    assert error.code == "url_not_allowed"
    assert error.message == "URL redirected more than 5 times"


async def test_no_redirects_allowed(server: ServerThread) -> None:
    assert (await refusal(f"{server.url}/chain/1", allow=LOOPBACK, max_redirects=0)).code == "url_not_allowed"


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.2]/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "http://metadata.google.internal/",
        "http://user:pass@127.0.0.1/",
        "//10.0.0.1/",
        "http://2130706433/",
    ],
)
async def test_redirect_to_a_forbidden_place_is_refused(
    server: ServerThread, location: str, connections: ConnectionLog
) -> None:
    error = await refusal(redirect(server, location), allow=LOOPBACK)
    assert error.code == "url_not_allowed", error.message
    assert set(connections.addresses) == {"127.0.0.1"}  # the allowed first hop, and nothing after it


async def test_redirect_to_a_name_resolving_privately_is_refused(server: ServerThread, dns: FakeDNS) -> None:
    dns.answer("intranet.test", ["10.0.0.5"])
    error = await refusal(redirect(server, "http://intranet.test/"), allow=LOOPBACK)
    assert error.code == "url_not_allowed"
    assert error.message == "URL host intranet.test resolves to a private address (10.0.0.5)"


@pytest.mark.parametrize("status", [404, 500])
async def test_upstream_error_status_fails(server: ServerThread, status: int) -> None:
    path = "/missing" if status == 404 else "/to?status=500&location=/page"
    error = await refusal(f"{server.url}{path}", allow=LOOPBACK)
    assert error.code == "url_fetch_failed"
    assert error.message == f"URL answered HTTP {status}"


@pytest.mark.parametrize("path", ["/slow-headers", "/slow-body"])
async def test_slow_server_times_out(server: ServerThread, path: str) -> None:
    error = await refusal(f"{server.url}{path}", allow=LOOPBACK, timeout=0.5)
    assert error.code == "url_fetch_failed"
    assert "did not answer within 0.5 seconds" in error.message


async def test_closed_port_fails() -> None:
    error = await refusal(f"http://127.0.0.1:{free_port()}/", allow=LOOPBACK)
    assert error.code == "url_fetch_failed"
