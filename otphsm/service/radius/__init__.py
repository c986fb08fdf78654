"""The RADIUS front end of `otphsm serve` (`[radius]`, off by default): VPN concentrators,
Wi-Fi controllers and pam_radius check codes over RADIUS (RFC 2865, PAP) against the same use
cases, audit and lockout as gRPC's `Verify`, with Security Card and login-code challenges.
`packets` decodes and encodes (pyrad), `handler` translates, `server` runs the socket."""

from otphsm.service.radius.server import RadiusServer

__all__ = ["RadiusServer"]
