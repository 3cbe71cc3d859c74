"""Fetching a URL a user asked a knowledge base to ingest, without letting that URL reach into the gateway's
own network (SSRF): cloud metadata, loopback services, the intranet.

Every hop is checked before it is requested (scheme, userinfo, host name, IP literal), and every connection
goes through `_CheckedResolver`, which resolves the name once, refuses the whole name if any of its addresses
is not public, and hands the connector only the addresses it checked, so a DNS answer that changes between a
check and the connect (rebinding) cannot slip in. Redirects are followed by hand so each hop is checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from aigw.errors import InvalidField, PayloadTooLarge, UnsupportedMediaType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

USER_AGENT = "aigw/0.1 (+knowledge-base fetch)"
_ACCEPT = "text/html, application/xhtml+xml, text/markdown;q=0.9, text/plain;q=0.9, application/pdf;q=0.8, text/*;q=0.5"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_NOT_ALLOWED = "url_not_allowed"
_FAILED = "url_fetch_failed"

# Names that reach a cloud provider's instance metadata service however DNS answers; refused even when `allow`
# would admit the address, because credentials live there.
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data"})
# A DNS name: labels of letters, digits, hyphens and underscores (yarl has already IDNA-encoded and lower-cased
# it). Anything else (percent-escapes, spaces, brackets) is refused rather than handed to getaddrinfo.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Hosts made only of decimal or 0x-hex labels are IPv4 addresses to inet_aton ("127.1", "0x7f.1",
# "2130706433", "017700000001"), never DNS names: no top-level domain is numeric.
_NUMERIC = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?")

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def _networks(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), label) for net, label in pairs)


# First match wins, so a narrow range sits before the wider one it belongs to.
_FORBIDDEN_V4 = _networks(
    ("0.0.0.0/32", "an unspecified address"),
    ("0.0.0.0/8", "a 'this network' address"),
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("169.254.0.0/16", "a link-local address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_FORBIDDEN_V6 = _networks(
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible (deprecated) address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)


@dataclass(frozen=True)
class Fetched:
    url: str  # final URL after redirects
    content_type: str  # media type, lower-case, without parameters, e.g. "text/html"
    charset: str | None  # from the Content-Type header, if any
    body: bytes


def _refused(message: str) -> InvalidField:
    return InvalidField(message, code=_NOT_ALLOWED)


def _failed(message: str) -> InvalidField:
    return InvalidField(message, code=_FAILED)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address that traffic to `ip` actually reaches, for the IPv6 forms that carry one."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched from ("a private address"), or None for a public unicast address.

    Python's own `is_global` is not enough on 3.11: it calls 64:ff9b::7f00:1 (NAT64 of loopback),
    2002:7f00:1:: (6to4 of loopback), fec0::1, ff02::1 and 224.0.0.1 global. So embedded IPv4 addresses are
    unwrapped, the ranges are spelled out, and `is_global` only has the last word.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            kind, v4 = embedded
            inner = forbidden_reason(v4)
            if inner is not None:
                return f"an IPv6 address ({kind}) that embeds {inner} {v4}"
            if kind != "6to4":  # mapped and NAT64 addresses are the IPv4 address; 6to4 is a v6 host too
                return None
        table = _FORBIDDEN_V6
    else:
        table = _FORBIDDEN_V4
    for network, label in table:
        if ip in network:
            return label
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return "a non-public address"
    if not ip.is_global or ip.is_multicast:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class _Policy:
    allow: tuple[IPNetwork, ...]

    def allows(self, ip: IPAddress) -> bool:
        if any(ip in network for network in self.allow):
            return True
        # ::ffff:127.0.0.1 is 127.0.0.1 on the wire, so an allowed IPv4 network admits its mapped form.
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return mapped is not None and any(mapped in network for network in self.allow)

    def check_address(self, ip: IPAddress, *, host: str | None = None) -> None:
        """Raise unless `ip` is public or allowed; `host` is the name it was resolved from, if any."""
        if self.allows(ip):
            return
        reason = forbidden_reason(ip)
        if reason is None:
            return
        if host is None:
            raise _refused(f"URL host is {reason} ({ip})")
        raise _refused(f"URL host {host} resolves to {reason} ({ip})")

    def check_name(self, name: str) -> None:
        """Refuse names that reach the machine itself or a metadata service whatever they resolve to."""
        if name in _METADATA_NAMES or name.endswith(".internal"):
            raise _refused(f"URL host {name} is a cloud metadata or internal name")
        if _is_localhost(name) and not self.allow:
            raise _refused(f"URL host {name} is the gateway's own machine")


def _is_localhost(name: str) -> bool:
    return name == "localhost" or name.endswith(".localhost")


def _normalise_name(host: str) -> str:
    return host.lower().rstrip(".")


class _CheckedResolver(AbstractResolver):
    """Resolves a name once per connection and returns only addresses that passed the policy, so the
    connector connects to exactly what was checked. aiohttp does not call a resolver for IP-literal hosts;
    `_check_target` checks those before each request."""

    def __init__(self, policy: _Policy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = _normalise_name(host)
        self._policy.check_name(name)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except (socket.gaierror, UnicodeError) as exc:
            raise _failed(f"URL host {name} could not be resolved") from exc
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            if info_family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = str(sockaddr[0])
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            self._policy.check_address(ip, host=name)
            if _is_localhost(name) and not self._policy.allows(ip):
                raise _refused(f"URL host {name} resolves to an address outside the allowed networks ({ip})")
            results.append(
                ResolveResult(hostname=host, host=address, port=port, family=info_family, proto=proto, flags=0)
            )
        if not results:
            raise _failed(f"URL host {name} resolves to no usable address")
        return results

    async def close(self) -> None:
        pass


def _check_host(url: URL, policy: _Policy) -> None:
    host = url.host
    if not host:
        raise _refused("URL has no host")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        policy.check_address(ip)
        return
    name = _normalise_name(host)
    if _NUMERIC.fullmatch(name):
        try:
            decoded = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            raise _refused(f"URL host {host} is neither a host name nor a valid IP address") from None
        policy.check_address(decoded)
        # Even a public address in this form is refused: resolvers disagree on what it means.
        raise _refused(f"URL host {host} is an IP address written in a non-standard form ({decoded})")
    if not _NAME.fullmatch(name):
        raise _refused(f"URL host {host!r} is not a valid host name")
    policy.check_name(name)


def _check_target(url: URL, raw: str, policy: _Policy) -> None:
    """Refuse a URL on its face, before any connection: scheme, userinfo and host."""
    if url.scheme not in ("http", "https"):
        scheme = url.scheme or "(none)"
        raise _refused(f"URL scheme {scheme!r} is not allowed; only http and https URLs can be fetched")
    if url.raw_user is not None or url.raw_password is not None or "@" in urlsplit(raw).netloc:
        raise _refused("URL must not contain a user name or password")
    _check_host(url, policy)


def _parse(raw: str, policy: _Policy, base: URL | None = None) -> URL:
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise _refused("URL contains whitespace or control characters")
    try:
        url = URL(raw) if base is None else base.join(URL(raw))
    except ValueError as exc:
        raise _refused(f"URL is malformed: {exc}") from None
    _check_target(url, raw, policy)
    return url


def _media_type(header: str | None) -> tuple[str, str | None]:
    """`text/html; charset="UTF-8"` -> ("text/html", "UTF-8")."""
    if not header:
        return "", None
    media, *params = header.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').strip() or None
    return media.strip().lower(), charset


def _supported(media: str) -> bool:
    return media.startswith("text/") or media in ("application/xhtml+xml", "application/pdf")


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    too_large = PayloadTooLarge(f"URL content is larger than the limit of {max_bytes} bytes", code="url_too_large")
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


async def _follow(
    session: aiohttp.ClientSession, url: URL, policy: _Policy, max_bytes: int, max_redirects: int
) -> Fetched:
    redirects = 0
    while True:
        async with session.get(url, allow_redirects=False) as response:
            if response.status in _REDIRECTS:
                if redirects >= max_redirects:
                    raise _refused(f"URL redirected more than {max_redirects} times")
                location = response.headers.get("Location")
                if not location:
                    raise _failed(f"URL answered HTTP {response.status} without a Location to redirect to")
                redirects += 1
                url = _parse(location, policy, base=url)
                continue
            if not 200 <= response.status < 300:
                raise _failed(f"URL answered HTTP {response.status}")
            media, charset = _media_type(response.headers.get("Content-Type"))
            if not _supported(media):
                raise UnsupportedMediaType(
                    f"URL content type {media or '(none)'!r} is not supported; expected text, HTML or PDF",
                    code="unsupported_url_content",
                )
            body = await _read_capped(response, max_bytes)
            return Fetched(url=str(url), content_type=media, charset=charset, body=body)


def _network_failure(exc: aiohttp.ClientError) -> InvalidField:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _failed("URL host's TLS certificate could not be verified")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _failed(f"URL host {exc.host} could not be resolved")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _failed(f"Could not connect to the URL's host ({exc.host}:{exc.port})")
    return _failed(f"Fetching the URL failed ({type(exc).__name__})")


async def fetch_url(
    url: str,
    *,
    allow: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    max_bytes: int = 20 * 1024 * 1024,
    timeout: float = 20.0,
    max_redirects: int = 5,
) -> Fetched:
    """Fetch `url` for ingestion, refusing anything that is not a public http(s) address.

    Args:
        url: An absolute http or https URL.
        allow: Networks fetched from despite the rules (an intranet wiki); metadata names stay refused.
        max_bytes: The largest body accepted, after decompression.
        timeout: Seconds for the whole fetch, redirects included.
        max_redirects: Redirects followed, each checked like the first URL.

    Raises:
        InvalidField: `url_not_allowed` when the URL or a redirect points somewhere it must not, and
            `url_fetch_failed` when the host cannot be resolved or reached, times out or answers non-2xx.
        PayloadTooLarge: `url_too_large` past `max_bytes`.
        UnsupportedMediaType: `unsupported_url_content` unless the content is text/*, XHTML or PDF.
    """
    policy = _Policy(tuple(allow))
    target = _parse(url.strip(), policy)
    connector = aiohttp.TCPConnector(resolver=_CheckedResolver(policy), use_dns_cache=False)
    session = aiohttp.ClientSession(
        connector=connector,
        trust_env=False,  # a proxy would make the connection, and the address checks, somebody else's
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT},
    )
    try:
        async with session, asyncio.timeout(timeout):
            return await _follow(session, target, policy, max_bytes, max_redirects)
    except TimeoutError as exc:
        raise _failed(f"URL did not answer within {timeout:g} seconds") from exc
    except aiohttp.ClientError as exc:
        raise _network_failure(exc) from exc
