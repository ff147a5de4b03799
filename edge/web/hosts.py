"""Who a web request says it is for, and its text made safe for a log line.

Usage:
    name = host_name(headers.get("Host", ""))     # "bin.local" of "bin.local:8080"
    log.info("GET %s", printable(path))            # no forged lines from a client's line breaks
"""

from __future__ import annotations

import ipaddress

from edge.config import is_loopback


def printable(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x1b``), for a log line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def host_name(host_header: str) -> str:
    """``bin.local`` of ``bin.local:8080`` (and of ``bin.local.``), ``::1`` of ``[::1]:8080``; a header
    with anything but a port after the name (``[::1]evil.com``, ``bin:x``) is returned whole, so it
    matches no name."""
    host = host_header.strip().lower()
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        return inside if rest == "" or (rest[:1] == ":" and _port(rest[1:])) else host
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name.rstrip(".") if _port(port) else host
    return host.rstrip(".")


def _port(text: str) -> bool:
    return text == "" or (text.isascii() and text.isdigit())  # RFC 3986: port = *DIGIT


def ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def loopback_name(name: str) -> bool:
    """``localhost`` and its subdomains (RFC 6761: always this machine), loopback addresses, and
    IPv4 loopback written as an IPv6 address (``::ffff:127.0.0.1``)."""
    if name == "localhost" or name.endswith(".localhost") or is_loopback(name):
        return True
    try:
        mapped = ipaddress.IPv6Address(name).ipv4_mapped
    except ValueError:
        return False
    return mapped is not None and mapped.is_loopback
