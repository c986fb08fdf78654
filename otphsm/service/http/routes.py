"""The HTTP routes, read from the `google.api.http` options of our services' methods in the
protobuf descriptors: nothing here lists a route. A template is literal segments and `{field}`
variables (one path segment each), optionally ending in a custom verb (`:suspend`), the subset
of google/api/http.proto our protos use; another shape is refused when the table is built."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

# googleapis-common-protos ships .pyi files, but types-protobuf's google-stubs hide them
from google.api import annotations_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from otphsm.service.rpcs import SERVICE_NAMES
from otphsm.v1 import admin_pb2, device_pb2, enrolment_pb2, grid_pb2, oob_pb2, validation_pb2

_SERVICE_MODULES = (admin_pb2, device_pb2, enrolment_pb2, grid_pb2, oob_pb2, validation_pb2)
"""Imported, so that every service of ours is in the descriptor pool."""

_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*)(?:=\*)?\}")
_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class Route:
    verb: str
    """GET, POST, ..."""
    template: str
    """As declared, e.g. `/v1/tokens/{serial}:suspend`."""
    body: str
    """`*`: the JSON body is the request message; "": no body (query parameters)."""
    method: MethodDescriptor
    pattern: re.Pattern[str]

    @property
    def rpc(self) -> str:
        """The gRPC method name, `/otphsm.v1.<Service>/<Method>`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(_VARIABLE.findall(self.template))

    def new_request(self) -> Message:
        return message_factory.GetMessageClass(self.method.input_type)()

    def match(self, path: str) -> dict[str, str] | None:
        """The path variables (percent-decoded) when `path` is this route's, else None."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def declared_routes(service_names: Iterable[str] = SERVICE_NAMES) -> tuple[Route, ...]:
    """Every route declared on our services' methods, in declaration order."""
    pool = descriptor_pool.Default()
    routes: list[Route] = []
    for name in service_names:
        for method in pool.FindServiceByName(name).methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            if verb not in _VERBS:
                raise ValueError(f"{method.full_name}: HTTP rule {verb} is not served")
            template = getattr(rule, verb)
            if rule.body not in ("", "*") or rule.additional_bindings:
                raise ValueError(f'{method.full_name}: only body "*" or none is served')
            if method.client_streaming or method.server_streaming:
                raise ValueError(f"{method.full_name}: a streaming RPC has no HTTP route")
            routes.append(Route(verb.upper(), template, rule.body, method, _compile(template)))
    return tuple(routes)


def _compile(template: str) -> re.Pattern[str]:
    if not template.startswith("/") or "**" in template:
        raise ValueError(f"HTTP template {template!r} is not served")
    pattern, last = "", 0
    for variable in _VARIABLE.finditer(template):
        pattern += re.escape(template[last : variable.start()])
        pattern += f"(?P<{variable.group(1)}>[^/:]+)"
        last = variable.end()
    rest = template[last:]
    if "{" in rest or "}" in rest or "{" in pattern.replace(r"\{", ""):
        raise ValueError(f"HTTP template {template!r} is not served")
    return re.compile(pattern + re.escape(rest))
