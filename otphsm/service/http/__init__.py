"""The HTTP/JSON front end: the routes the protos declare with `google.api.http`, served in
process beside gRPC by `otphsm serve` ([http] section), through the same interceptor (roles,
failed-check limit, error table, log line and metrics) and servicers as gRPC calls."""

from otphsm.service.http.api import HttpApi
from otphsm.service.http.routes import Route, declared_routes
from otphsm.service.http.server import HttpServer, start_http_server

__all__ = ["HttpApi", "HttpServer", "Route", "declared_routes", "start_http_server"]
