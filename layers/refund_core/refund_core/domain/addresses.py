"""Addresses a provider base URL must never reach, whatever its host name says.

Instance metadata (169.254.169.254, fd00:ec2::254), link-local, unspecified, multicast and reserved
addresses are never a payment provider; reaching them from a Lambda function leaks credentials or
talks to the runtime itself. Used when a profile is parsed (literal addresses) and at call time
(after DNS resolution, so a name pointing at them is refused too).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def unsafe_address_reason(address: IPAddress | str) -> str | None:
    """Why ``address`` must not be a provider endpoint, or None when it may be."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:  # this machine: whether plain http may go there is the profile's rule, not this one
        return None
    if ip.is_unspecified:
        return "is an unspecified address"
    if ip.is_link_local:
        return "is a link-local address (instance metadata lives there)"
    if ip in ipaddress.ip_network("fd00:ec2::/64"):
        return "is the instance metadata address"
    if ip.is_multicast:
        return "is a multicast address"
    if ip.is_reserved:
        return "is a reserved address"
    return None
