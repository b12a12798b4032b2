"""Egress policy: where model calls and webhooks may go.

A URL must be http(s), carry no user name or password, and name a host its
workspace allows (``Workspace.allowed_hosts``: exact names, IP literals, or
``*.example.com`` for any subdomain). Every address the host resolves to must
be a global one, unless the operator lists its network in
``KEEL_EGRESS_ALLOW_PRIVATE``: loopback, link-local (cloud metadata), private,
shared, reserved and multicast ranges are refused by default.

``egress_target`` resolves the host once, checks every address, and returns
the checked address to connect to, with the host name for the ``Host`` header
and TLS (SNI and certificate), so a second lookup cannot lead elsewhere (DNS
rebinding). Checked on save and again at call time.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx
from django.conf import settings

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOST_PATTERN = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")


class EgressError(Exception):
    """A URL its workspace or the operator does not allow."""


def allowed_hosts_problems(entries: object) -> list[str]:
    """What is wrong with a workspace's list of allowed hosts ([] when nothing)."""
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return ['List host names, e.g. ["api.openai.com", "*.example.com"].']
    problems = []
    for entry in entries:
        if _ip(entry) is None and not HOST_PATTERN.match(entry):
            problems.append(f"{entry!r} is not a host name, a *.domain pattern or an IP address (no scheme or port).")
    return problems


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def host_allowed(host: str, patterns: list[str]) -> bool:
    host = host.lower().rstrip(".")
    literal = _ip(host)
    for pattern in patterns:
        pattern = pattern.lower()
        if literal is not None:
            if _ip(pattern) == literal:
                return True
        elif pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why Keel may not connect to ``address``, or None."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    allowed = [ipaddress.ip_network(n) for n in settings.KEEL_EGRESS_ALLOW_PRIVATE]
    if any(address.version == n.version and address in n for n in allowed):
        return None
    if not address.is_global or address.is_multicast:
        return f"{address} is a loopback, link-local, private or reserved address, which the operator does not allow."
    return None


def _parse(url: str, allowed_hosts: list[str]) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise EgressError(f"{url!r} is not a URL.") from None
    if parsed.scheme not in ("http", "https"):
        raise EgressError("The URL must start with http:// or https://.")
    if parsed.userinfo:
        raise EgressError("The URL may not carry a user name or password.")
    if not parsed.host:
        raise EgressError("The URL has no host.")
    if not host_allowed(parsed.host, allowed_hosts):
        raise EgressError(f"The host {parsed.host} is not among the workspace's allowed hosts.")
    return parsed


def url_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """The save-time check: the same as at call time (the host resolved and
    each address checked), so a URL that would be refused is never saved."""
    try:
        egress_target(url, allowed_hosts)
    except EgressError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class Target:
    """Where to send: the URL with the checked address in place of the host,
    and what keeps the request addressed to the host (header and TLS name)."""

    url: str
    headers: dict
    extensions: dict
    host: str


def egress_target(url: str, allowed_hosts: list[str]) -> Target:
    """Resolve the URL's host once and check every address; raise EgressError
    when the URL or any of its addresses is not allowed."""
    parsed = _parse(url, allowed_hosts)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise EgressError(f"The host {parsed.host} does not resolve: {error}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    if not addresses:
        raise EgressError(f"The host {parsed.host} does not resolve.")
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise EgressError(f"The host {parsed.host} resolves to {problem}")
    chosen = addresses[0]
    pinned = parsed.copy_with(host=str(chosen))
    default_port = parsed.port is None
    host_header = parsed.host if default_port else f"{parsed.host}:{parsed.port}"
    if _ip(parsed.host) is not None and parsed.host.count(":"):
        host_header = f"[{parsed.host}]" if default_port else f"[{parsed.host}]:{parsed.port}"
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    return Target(url=str(pinned), headers={"Host": host_header}, extensions=extensions, host=parsed.host)
