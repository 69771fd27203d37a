"""Free TCP ports for servers a test starts."""

from __future__ import annotations

import random
import socket

__all__ = ["free_port", "port_free", "stack_ports"]


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` and nothing answers on it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def stack_ports(low: int, high: int) -> dict[str, int]:
    """Free ports for a private stack, from a block of ten in ``[low, high)``.

    Below the ephemeral range, so no client's outgoing port takes one meanwhile;
    callers that run stacks side by side use blocks that do not overlap.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high, 10)
        ports = {
            "zookeeper": base,
            "kafka": base + 2,
            "controller": base + 3,
            "postgres": base + 5,
        }
        if all(port_free(p) for p in ports.values()):
            return ports
    raise RuntimeError(f"no free ports for a test stack in {low}-{high - 1}")
