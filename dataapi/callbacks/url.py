"""SSRF checks for callback URLs: the API must not become a way to reach internal services.

``check_url`` runs at submission (no DNS): HTTPS only, one unambiguous host, nothing a URL parser could read
two ways. ``resolve`` runs before every delivery attempt: the host is resolved once, every address is checked,
and the caller connects to those checked addresses only, so a DNS answer that changes between check and
connect (rebinding) cannot redirect the request. Operators may allow-list CIDRs to reach internal receivers.

Special-use and private-network names (``localhost``, ``*.local``, ``*.internal``, ... see ``SPECIAL_USE``) are
refused by ``check_url`` itself, so at submission already: none of them can name a public receiver, and most name
the local host or network. An allow-listed CIDR does not admit them (CIDRs admit addresses, not names); only an
exact name in the operator's ``allow_hosts`` does, and its addresses are still checked at every attempt.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]

MAX_URL_LENGTH = 2048
_DNS_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC = re.compile(r"0x[0-9a-f]*|[0-9]+")  # a last label like this makes browsers read the host as IPv4
_PORT = re.compile(r"[0-9]{1,5}")
_ASCII_PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))

# Names (and every name under them) that never belong to a public receiver. "example" is not here: RFC 6761 keeps
# it for documentation, it reaches nothing local, and an example name that does not resolve is merely retried.
SPECIAL_USE: dict[str, str] = {
    "localhost": "the local host (RFC 6761)",
    "localdomain": "the local host (the conventional localhost.localdomain alias)",
    "local": "the local network (multicast DNS, RFC 6762)",
    "internal": "reserved for private networks (ICANN)",
    "intranet": "a private-network name (not delegated)",
    "lan": "a private-network name (not delegated)",
    "home": "a private-network name (not delegated, ICANN name-collision list)",
    "corp": "a private-network name (not delegated, ICANN name-collision list)",
    "private": "a private-network name (not delegated)",
    "arpa": "infrastructure, including home.arpa for home networks (RFC 3172, RFC 8375)",
    "invalid": "guaranteed not to exist (RFC 6761)",
    "test": "reserved for testing (RFC 6761), often resolved to the local host by development tools",
    "onion": "a Tor onion service, not DNS (RFC 7686)",
    "alt": "outside DNS (RFC 9476)",
}


class UnsafeCallbackUrl(ValueError):
    """Delivery to this URL is refused: a permanent failure, never retried."""

    def __init__(self, reason: str):
        super().__init__(f"unsafe callback URL: {reason}")
        self.reason = reason


class UnresolvableHost(UnsafeCallbackUrl):
    """The host has no address right now: possibly a transient DNS failure, so delivery retries."""


@dataclass(frozen=True)
class Target:
    host: str  # lowercase IDNA host name, or a canonical IP address (no brackets)
    port: int
    path_and_query: str
    url: str

    @property
    def authority(self) -> str:
        """``host[:port]`` as in a URL or a Host header."""
        return format_authority(self.host, self.port)


def format_authority(host: str, port: int) -> str:
    """``host[:port]``, IPv6 in brackets, the default port left out."""
    host = f"[{host}]" if ":" in host else host
    return host if port == 443 else f"{host}:{port}"


def _net(rows: list[tuple[str, str]]) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return [(ipaddress.ip_network(cidr), why) for cidr, why in rows]


_V4_FORBIDDEN = _net([
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"), ("10.0.0.0/8", "private"), ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local (cloud metadata)"), ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"), ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"), ("192.168.0.0/16", "private"), ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"), ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"), ("240.0.0.0/4", "reserved"),
])
_V6_FORBIDDEN = _net([
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"), ("2001::/23", "IETF protocol assignments"), ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"), ("fc00::/7", "private (unique local)"), ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"), ("ff00::/8", "multicast"),
])
# Never admitted, whatever the allow-list says: "any address" forms that reach the local host, multicast, and
# IPv4-mapped/compatible IPv6 (another spelling of an IPv4 address, which an IPv4 allow-list did not mean).
_NEVER_ALLOWED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "::/128", "::ffff:0:0/96", "ff00::/8")]
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _v4_compatible(ip: IPAddress) -> bool:
    """Deprecated IPv4-compatible IPv6 ``::a.b.c.d`` (but not ``::`` and ``::1``)."""
    return ip.version == 6 and 1 < int(ip) < 2**32


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses that traffic to this IPv6 address actually reaches: those are what must be checked."""
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)  # (server, client); ipaddress already un-inverts the client
    if ip in _NAT64 or _v4_compatible(ip):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def _range(ip: IPAddress) -> str | None:
    for net, why in _V4_FORBIDDEN if ip.version == 4 else _V6_FORBIDDEN:
        if ip in net:
            return why
    if ip.version == 6 and ip not in _V6_GLOBAL_UNICAST:
        return "reserved (outside 2000::/3)"
    if ip.is_reserved or not ip.is_global:  # ranges the tables above may not name yet
        return "not globally routable"
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why this address must not be connected to, or None for a public unicast address."""
    if ip.version == 6 and int(ip) > 1:  # :: and ::1 are themselves, not wrappers
        embedded = _embedded_ipv4(ip)
        for v4 in embedded:
            if why := _range(v4):
                return f"{ip} embeds {v4}, which is {why}"
        if embedded:
            return None
    return f"{ip} is {why}" if (why := _range(ip)) else None


def _allowed(ip: IPAddress, allow_cidrs: Iterable[str]) -> bool:
    if _v4_compatible(ip) or any(ip in net for net in _NEVER_ALLOWED if net.version == ip.version):
        return False
    return any(ip in net for net in (ipaddress.ip_network(c, strict=False) for c in allow_cidrs)
               if net.version == ip.version)


def _check_ip(ip: IPAddress, allow_cidrs: Iterable[str]) -> None:
    if (why := forbidden_reason(ip)) and not _allowed(ip, allow_cidrs):
        raise UnsafeCallbackUrl(why)


def _plain_ipv4(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)  # rejects octal, hex, leading zeros and short forms like 127.1
    except ValueError:
        return None


def special_use_reason(host: str) -> str | None:
    """Why a normalised (lowercase, IDNA) host name can never be a public receiver, or None."""
    top = host.rstrip(".").rsplit(".", 1)[-1]
    if top in SPECIAL_USE:
        return f"{host.rstrip('.')} is a special-use name: {SPECIAL_USE[top]}"
    return None


def normalise_name(name: str) -> str:
    """A host name as ``check_url`` compares it: IDNA (UTS #46), lowercase, no trailing dot."""
    name = name.strip().rstrip(".")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode()
        except idna.IDNAError:  # an operator's typo: it matches no valid host, so it admits nothing
            pass
    return name.lower()


def _host(raw: str, allow_hosts: frozenset[str] = frozenset()) -> tuple[str, IPAddress | None]:
    """The normalised host and, for an IP literal, its address. Numeric hosts must be plain dotted quads."""
    if raw.startswith("["):
        try:
            ip = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise UnsafeCallbackUrl("invalid IPv6 address") from None
        return str(ip), ip
    if not raw:
        raise UnsafeCallbackUrl("a host name is required")
    host = raw
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode()
        except idna.IDNAError:
            raise UnsafeCallbackUrl("host name is not valid IDNA") from None
    host = host.lower()
    if (why := special_use_reason(host)) and host.rstrip(".") not in allow_hosts:
        raise UnsafeCallbackUrl(why)
    if host.endswith("."):
        raise UnsafeCallbackUrl("host name must not end with a dot")
    labels = host.split(".")
    if _NUMERIC.fullmatch(labels[-1]):
        v4 = _plain_ipv4(host) if raw.isascii() else None  # not one spelt in full-width digits either
        if v4 is None:
            raise UnsafeCallbackUrl("numeric hosts must be plain dotted-quad IPv4 addresses")
        return str(v4), v4
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise UnsafeCallbackUrl("invalid host name")
    return host, None


def _split_netloc(netloc: str) -> tuple[str, str | None]:
    """``(host, port text or None)``; an IPv6 host keeps its brackets."""
    if netloc.startswith("["):
        end = netloc.find("]") + 1
        if not end or netloc[end:end + 1] not in ("", ":"):
            raise UnsafeCallbackUrl("invalid IPv6 host")
        return netloc[:end], netloc[end + 1:] if end < len(netloc) else None
    host, colon, port = netloc.partition(":")
    return host, port if colon else None


def check_url(url: str, *, allow_cidrs: Iterable[str] = (), allow_hosts: Iterable[str] = ()) -> Target:
    """Static checks at submission time (no DNS). ``allow_cidrs`` admits IP-literal hosts in those ranges,
    ``allow_hosts`` these exact special-use names (e.g. ``localhost`` for a receiver on the same host)."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeCallbackUrl(f"longer than {MAX_URL_LENGTH} characters")
    if not url.isprintable() or " " in url or "\\" in url:
        raise UnsafeCallbackUrl("whitespace, control characters and backslashes are not allowed")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "https":
        raise UnsafeCallbackUrl("only https:// URLs are allowed")
    if "#" in rest:  # never sent to the receiver, so it can only confuse
        raise UnsafeCallbackUrl("fragments are not allowed")
    netloc = re.split(r"[/?]", rest, maxsplit=1)[0]
    path_and_query = rest[len(netloc):]
    if not path_and_query.startswith("/"):
        path_and_query = "/" + path_and_query
    path_and_query = quote(path_and_query, safe=_ASCII_PRINTABLE)  # percent-encodes non-ASCII only
    if "@" in netloc:
        raise UnsafeCallbackUrl("user information (user@host) is not allowed")
    if "%" in netloc:
        raise UnsafeCallbackUrl("percent-encoded hosts and IPv6 zone ids are not allowed")
    raw_host, port_text = _split_netloc(netloc)
    if port_text is not None and not (_PORT.fullmatch(port_text) and 0 < int(port_text) < 65536):
        raise UnsafeCallbackUrl("invalid port")
    host, ip = _host(raw_host, frozenset(normalise_name(h) for h in allow_hosts))
    if ip is not None:
        _check_ip(ip, allow_cidrs)
    port = int(port_text) if port_text is not None else 443
    return Target(host, port, path_and_query, f"https://{format_authority(host, port)}{path_and_query}")


def _getaddrinfo(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]  # the host of an IPv4 or IPv6 address: always text


def resolve(target: Target, allow_cidrs: Iterable[str], resolver: Resolver | None = None) -> list[str]:
    """Resolves the host once and checks every address; the caller must connect to these addresses only."""
    allow_cidrs = list(allow_cidrs)
    try:
        addresses = [str(ipaddress.ip_address(target.host))]  # IP literals skip DNS
    except ValueError:
        try:
            addresses = (resolver or _getaddrinfo)(target.host)
        except OSError:
            raise UnresolvableHost(f"{target.host} did not resolve") from None
    checked: list[str] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # getaddrinfo may add a zone id
        except ValueError:
            raise UnsafeCallbackUrl(f"{target.host} resolved to an invalid address") from None
        _check_ip(ip, allow_cidrs)
        if str(ip) not in checked:
            checked.append(str(ip))
    if not checked:
        raise UnresolvableHost(f"{target.host} has no addresses")
    return checked
