"""Where the server may POST: push endpoints and webhook URLs are user-supplied, so they are checked (SSRF).

A destination must be https (http only when `allow_http`), and every address its host resolves to must be
public unless it lies in an allowed network. The check runs when the URL is registered and again, inside
the HTTP client's own resolver, for every connection: a name that resolved to a public address then and
resolves to 10.0.0.5 now (DNS rebinding) is refused, and the connection uses only the addresses checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_S = 5.0  # a registration waits this long for DNS at most


class UnsafeDestination(Exception):
    """A request was about to go somewhere the policy forbids; nothing was sent."""


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Which URLs the notification channels may reach. The default is the strict production one."""

    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow_http: bool, networks: Iterable[str | IPNetwork]) -> DestinationPolicy:
        """From settings' values (CIDR strings or networks)."""
        return cls(allow_http, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def address_problem(self, address: IPAddress) -> str | None:
        """Why the server must not connect to `address`, or None if it may."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address.version == n.version and address in n for n in self.allowed_networks):
            return None
        if not address.is_global or address.is_multicast:
            return f"{address} is a private, loopback, link-local or reserved address"
        return None

    def url_problem(self, url: str) -> str | None:
        """What is wrong with `url` before any name lookup (scheme, form, a literal address), or None."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises on a port out of range
        except ValueError as exc:
            return f"not a valid URL: {exc}"
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            return f"scheme must be {' or '.join(schemes)}, not {parts.scheme or 'missing'!r}"
        if not parts.hostname:
            return "URL has no host"
        if parts.username is not None or parts.password is not None:
            return "URL must not carry credentials"
        literal = _literal_address(parts.hostname)
        if literal is not None:
            return self.address_problem(literal)
        if parts.hostname != "localhost" and not _HOST_NAME.fullmatch(parts.hostname):
            # Also keeps odd spellings of addresses (127.1, 0x7f.1) and intranet names away from DNS.
            return f"{parts.hostname!r} is not a fully qualified host name"
        return None


# Dot-separated letter-digit-hyphen labels, at least two, the last (the TLD) not all digits.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)+(?=[a-z0-9-]*[a-z])(?!-)[a-z0-9-]{{2,63}}(?<!-)")


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (what a connection could use)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def destination_problem(
    url: str, policy: DestinationPolicy, resolve: Resolve = system_resolve
) -> str | None:
    """Why `url` may not be registered as a destination now (form, scheme, what it resolves to), or None."""
    if problem := policy.url_problem(url):
        return problem
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _literal_address(host) is not None:
        return None
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except TimeoutError:
        return f"host {host!r} did not resolve within {RESOLVE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"host {host!r} does not resolve ({exc.strerror or exc})"
    for address in addresses:
        if problem := policy.address_problem(ipaddress.ip_address(address.split("%")[0])):
            return f"host {host!r} resolves to {problem}"
    return None if addresses else f"host {host!r} does not resolve"


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses a host if any of its addresses is forbidden (checked per connect)."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The inner resolver's answer, if every address in it is allowed; else UnsafeDestination."""
        results = await self.inner.resolve(host, port, family)
        for result in results:
            if problem := self.policy.address_problem(ipaddress.ip_address(result["host"])):
                raise UnsafeDestination(f"host {host!r} resolves to {problem}")
        return results

    async def close(self) -> None:
        """Release the inner resolver."""
        await self.inner.close()


def guarded_session(
    policy: DestinationPolicy, timeout_s: float, inner: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """An HTTP client that only reaches what `policy` allows and never follows a redirect."""

    async def on_start(
        _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        # A literal address never reaches the resolver, so it is checked here, on every request.
        if problem := policy.url_problem(str(params.url)):
            raise UnsafeDestination(problem)

    async def on_redirect(_: aiohttp.ClientSession, __: SimpleNamespace, ___: object) -> None:
        raise UnsafeDestination("the destination answered with a redirect; redirects are not followed")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_redirect.append(on_redirect)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy, inner))
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), trace_configs=[trace],
    )
