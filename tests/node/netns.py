"""Hosts for tests: Linux network namespaces joined by veth pairs, each pair its own /30.

A star: one hub namespace (where the chain runs) and one namespace per host, each host linked to
the hub by a veth pair on 10.<net>.<k>.0/30 (hub .1, host .2, default route via the hub). The hub
forwards, so hosts reach each other too. Both ends of every pair are created directly inside
their namespaces, so nothing is added to the machine's own network; deleting a namespace
destroys its veth ends with it. `Hosts` is a context manager that removes everything it made,
also when building it fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from types import TracebackType


class NamespacesUnavailable(Exception):
    """This machine (or this user) cannot create network namespaces."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def probe() -> None:
    """Raise NamespacesUnavailable with the reason when namespaces cannot be made here."""
    if os.name != "posix" or not os.path.exists("/proc/self/ns/net"):
        raise NamespacesUnavailable("no Linux network namespaces on this OS")
    name = f"cdprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", name)
    except FileNotFoundError:
        raise NamespacesUnavailable("the `ip` tool (iproute2) is not installed") from None
    except RuntimeError as exc:
        raise NamespacesUnavailable(f"cannot create a network namespace: {exc}") from None
    _ip("netns", "del", name)


@dataclass
class Host:
    name: str  # the role in the test: "chain", "operator", "miner-0"...
    namespace: str
    address: str  # this host's address on its link to the hub

    def wrap(self) -> tuple[str, ...]:
        """The command prefix that runs a program on this host."""
        return ("ip", "netns", "exec", self.namespace)


@dataclass
class Hosts:
    hub_name: str
    host_names: list[str]
    net: int = field(default_factory=lambda: 64 + secrets.randbelow(64))
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    made: list[str] = field(default_factory=list)  # namespaces, in creation order
    hub: Host | None = None
    hosts: dict[str, Host] = field(default_factory=dict)

    def __enter__(self) -> Hosts:
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.teardown()

    def _namespace(self, label: str) -> str:
        name = f"cd{self.tag}{label}"
        _ip("netns", "add", name)
        self.made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def _build(self) -> None:
        hub_ns = self._namespace("hub")
        # The hub routes between hosts (the published profile is fetched host to host).
        subprocess.run(
            ["ip", "netns", "exec", hub_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            check=True,
            timeout=30,
        )
        for k, name in enumerate(self.host_names, start=1):
            ns = self._namespace(f"h{k}")
            hub_end, host_end = f"hub{k}", "eth0"
            _ip("link", "add", hub_end, "netns", hub_ns, "type", "veth", "peer", "name",
                host_end, "netns", ns)  # fmt: skip
            prefix = f"10.{self.net}.{k}"
            _ip("-n", hub_ns, "addr", "add", f"{prefix}.1/30", "dev", hub_end)
            _ip("-n", ns, "addr", "add", f"{prefix}.2/30", "dev", host_end)
            _ip("-n", hub_ns, "link", "set", hub_end, "up")
            _ip("-n", ns, "link", "set", host_end, "up")
            _ip("-n", ns, "route", "add", "default", "via", f"{prefix}.1")
            self.hosts[name] = Host(name, ns, f"{prefix}.2")
        # The hub's address on its first link is where the hub's services listen.
        self.hub = Host(self.hub_name, hub_ns, f"10.{self.net}.1.1")

    def teardown(self) -> None:
        """Kill what still runs inside our namespaces (only processes this test started can be
        there), then delete them; their veth ends go with them. Never raises."""
        for name in reversed(self.made):
            listed = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30
            )
            for pid in listed.stdout.split():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.made.clear()

    def __getitem__(self, name: str) -> Host:
        if name == self.hub_name and self.hub is not None:
            return self.hub
        return self.hosts[name]


def namespaces_left(tag: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in listed.stdout.splitlines() if f"cd{tag}" in line]
