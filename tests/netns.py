"""A small simulated internet in Linux network namespaces, for the NAT tests.

Every namespace is named with a prefix unique to this run; nothing is made in the
machine's own namespace (each veth pair is created with both ends inside namespaces), and
no namespace has a route to the machine's real network, so no packet can leave. Removing
the namespaces removes every veth and the bridge with them.

::

                       wan: bridge br0, 198.18.0.0/24 and fd18::/64
      ┌──────────┬─────────────┬─────────────┬─────────────┬──────────┬──────────┐
     srv        pub           ra            rb            rr        v6a        v6b
  .1, fd18::1   .10      .2 MASQUERADE  .3 MASQUERADE  .4 MASQUERADE  fd18::20  fd18::21
  (server)   (public     10.0.1.1       10.0.2.1       --random-fully (IPv6     (IPv6
              peer)        │              │            10.0.3.1       only)     only)
                          na 10.0.1.2    nb 10.0.2.2     │
                                                        nr 10.0.3.2

The routers behave as home routers do: outgoing connections are masqueraded (keeping the
source port when it is free, except ``rr``, which picks a random one for each
connection), replies come back in, and anything else arriving from the wan is dropped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["Internet", "available"]


@dataclass(frozen=True)
class Host:
    namespace: str
    address: str


def available() -> tuple[bool, str]:
    """Whether this machine can run the NAT tests, and if not, why."""
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        return False, f"{' and '.join(missing)} not installed (make system-deps)"
    return True, ""


class Internet:
    """Builds the topology above; ``remove()`` takes every piece of it away again."""

    def __init__(self) -> None:
        self.prefix = f"p2pnat{secrets.token_hex(3)}"
        self.namespaces: list[str] = []
        self.server = Host(self._name("srv"), "198.18.0.1")
        self.server6 = Host(self.server.namespace, "fd18::1")
        self.public = Host(self._name("pub"), "198.18.0.10")
        self.nat_a = Host(self._name("na"), "10.0.1.2")
        self.nat_b = Host(self._name("nb"), "10.0.2.2")
        self.random_nat = Host(self._name("nr"), "10.0.3.2")
        self.v6_a = Host(self._name("v6a"), "fd18::20")
        self.v6_b = Host(self._name("v6b"), "fd18::21")

    def _name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=30)

    def _in(self, namespace: str, *args: str) -> None:
        self._run("ip", "netns", "exec", namespace, *args)

    def _namespace(self, short: str) -> str:
        name = self._name(short)
        self._run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self._run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def build(self) -> None:
        wan = self._namespace("wan")
        self._run("ip", "-n", wan, "link", "add", "br0", "type", "bridge")
        self._run("ip", "-n", wan, "link", "set", "br0", "up")
        self._on_wan(wan, "srv", ["198.18.0.1/24"], ["fd18::1/64"])
        self._on_wan(wan, "pub", ["198.18.0.10/24"], [])
        for router, wan_address, lan, peer, random in (
            ("ra", "198.18.0.2/24", "10.0.1", "na", False),
            ("rb", "198.18.0.3/24", "10.0.2", "nb", False),
            ("rr", "198.18.0.4/24", "10.0.3", "nr", True),
        ):
            self._on_wan(wan, router, [wan_address], [])
            self._router(router, lan, peer, random=random)
        self._on_wan(wan, "v6a", [], ["fd18::20/64"])
        self._on_wan(wan, "v6b", [], ["fd18::21/64"])

    def _on_wan(self, wan: str, short: str, ipv4: list[str], ipv6: list[str]) -> None:
        """A namespace with ``eth0`` on the wan bridge (its other end: ``short`` in wan)."""
        name = self._namespace(short)
        self._run("ip", "link", "add", "eth0", "netns", name, "type", "veth", "peer", "name",
                  short, "netns", wan)  # fmt: skip
        self._run("ip", "-n", wan, "link", "set", short, "master", "br0", "up")
        for address in ipv4:
            self._run("ip", "-n", name, "addr", "add", address, "dev", "eth0")
        for address in ipv6:
            self._run("ip", "-n", name, "-6", "addr", "add", address, "dev", "eth0", "nodad")
        self._run("ip", "-n", name, "link", "set", "eth0", "up")

    def _router(self, router: str, lan: str, peer: str, *, random: bool) -> None:
        """``router`` masquerades ``peer``'s LAN onto the wan, as a home router does."""
        name, peer_ns = self._name(router), self._namespace(peer)
        self._run("ip", "link", "add", "lan", "netns", name, "type", "veth", "peer", "name",
                  "eth0", "netns", peer_ns)  # fmt: skip
        self._run("ip", "-n", name, "addr", "add", f"{lan}.1/24", "dev", "lan")
        self._run("ip", "-n", name, "link", "set", "lan", "up")
        self._run("ip", "-n", peer_ns, "addr", "add", f"{lan}.2/24", "dev", "eth0")
        self._run("ip", "-n", peer_ns, "link", "set", "eth0", "up")
        self._run("ip", "-n", peer_ns, "route", "add", "default", "via", f"{lan}.1")
        self._in(name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        masquerade = ["-j", "MASQUERADE", *(["--random-fully"] if random else [])]
        self._in(name, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", *masquerade)
        for chain in ("FORWARD", "INPUT"):
            self._in(name, "iptables", "-A", chain, "-i", "eth0", "-m", "conntrack",
                     "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")  # fmt: skip
            self._in(name, "iptables", "-A", chain, "-i", "eth0", "-j", "DROP")

    def cut(self, router: str, address: str, *, cut: bool = True) -> None:
        """In ``router`` (``ra``, ``rb`` or ``rr``), drop whatever it would pass to or from
        ``address`` (``cut``: a firewall between two peers), or pass it again."""
        for direction in ("-d", "-s"):
            self._in(self._name(router), "iptables", "-I" if cut else "-D", "FORWARD",
                     direction, address, "-j", "DROP")  # fmt: skip

    def remove(self) -> None:
        """Delete every namespace of this run (their veths and bridge go with them)."""
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        self.namespaces.clear()

    def leftovers(self) -> list[str]:
        """Namespaces or links of this run that still exist (there should be none)."""
        found = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
        links = subprocess.run(
            ["ip", "-o", "link"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        return [n for n in found if n.startswith(self.prefix)] + [
            line for line in links.splitlines() if self.prefix in line
        ]
