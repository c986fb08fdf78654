"""The ports `otphsm serve` listens on, and the one-line error that names the key to change
when one is taken (another `otphsm serve` on the host, most often).

The metrics endpoint is not derived from the gRPC port: a second server on a host with the
default `[metrics] port` stops at start-up with an error naming `metrics.port`; `port = 0`
picks any free port, which the start-up line ("serving", field `metrics_port`) reports.
"""

from __future__ import annotations

import errno
import socket

from otphsm.core.errors import ConfigurationError

KEYS = {
    "server.port": "[server] port (or OTPHSM_SERVER_PORT)",
    "metrics.port": "[metrics] port (or OTPHSM_METRICS_PORT; 0 picks a free one), "
    "or set [metrics] enabled = false",
    "http.port": "[http] port (or OTPHSM_HTTP_PORT), or set [http] enabled = false",
    "radius.port": "[radius] port (or OTPHSM_RADIUS_PORT), or set [radius] enabled = false",
}


def port_taken(key: str) -> ConfigurationError:
    """`server.port: the port is already in use …: change …` (no traceback, one line)."""
    return ConfigurationError(
        f"{key}: the port is already in use on this host (another otphsm serve?): "
        f"change {KEYS[key]}"
    )


def cannot_listen(key: str) -> ConfigurationError:
    address = key.split(".", maxsplit=1)[0] + ".address"
    return ConfigurationError(
        f"{key}: cannot listen on the configured {address} and port: check both"
    )


def in_use(address: str, port: int, *, udp: bool = False) -> bool:
    """Whether something already holds `address:port` (0: never), TCP or `udp`. A probe only,
    for the message: the real bind still decides."""
    if port == 0:
        return False
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(address, port, type=kind)
    except OSError:
        return False
    for family, kind, proto, _name, where in infos:
        with socket.socket(family, kind, proto) as probe:
            if not udp:  # a TCP port only in TIME_WAIT is free
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def reserve(address: str, port: int, key: str, *, udp: bool = False) -> socket.socket:
    """The port the server processes of one `otphsm serve` share: a socket bound with
    SO_REUSEPORT on `address:port` (0: the kernel picks; `getsockname()` says which), never
    listening, so it takes no connection. Each process then binds the same port with
    SO_REUSEPORT; another server, which binds without it, gets the port in use. A port some
    other server holds is `port_taken(key)` (probed first without SO_REUSEPORT, so a second
    set of processes is refused too)."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    if in_use(address, port, udp=udp):
        raise port_taken(key)
    try:
        family, _kind, proto, _name, where = socket.getaddrinfo(address, port, type=kind)[0]
        held = socket.socket(family, kind, proto)
    except OSError:
        raise cannot_listen(key) from None
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(where)
    except OSError as exc:
        held.close()
        if exc.errno == errno.EADDRINUSE:
            raise port_taken(key) from None
        raise cannot_listen(key) from None
    return held
