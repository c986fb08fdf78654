"""The HTTP routes come from the protos' `google.api.http` annotations: each names a declared
RPC, a path variable is a field of its request and never a code or a codice fiscale (URLs are
logged by proxies), the station's and the device's RPCs have none, and the OpenAPI document
built from the same descriptors is valid OpenAPI 3.1 with one operation per route."""

from __future__ import annotations

from openapi_spec_validator import validate

from otphsm.core.app.context import Role
from otphsm.service.http.openapi import openapi_document
from otphsm.service.http.routes import declared_routes
from otphsm.service.rpcs import RPCS

NEVER_IN_A_URL = {"code", "codice_fiscale", "first_code", "second_code", "first_value"}


def test_every_route_names_a_declared_rpc_and_fields_of_its_request() -> None:
    routes = declared_routes()
    assert len(routes) == 18
    assert len({(r.verb, r.template) for r in routes}) == len(routes)
    for route in routes:
        assert route.rpc in RPCS
        fields = route.method.input_type.fields_by_name
        assert all(name in fields for name in route.variables), route.template
        assert not NEVER_IN_A_URL & set(route.variables)
        assert route.body == "*" or route.verb == "GET", route.template
        roles = RPCS[route.rpc].roles
        assert Role.ENROLLER not in roles and roles != {Role.DEVICE}, route.rpc


def test_a_path_matches_its_own_route_only() -> None:
    routes = declared_routes()
    path = "/v1/tokens/MOB-0001:suspend"
    matched = [(r.rpc, r.match(path)) for r in routes if r.match(path) is not None]
    assert matched == [("/otphsm.v1.AdminService/Suspend", {"serial": "MOB-0001"})]
    (get,) = [r for r in routes if r.template == "/v1/tokens/{serial}"]
    assert get.match("/v1/tokens/MOB%2D0001") == {"serial": "MOB-0001"}
    assert get.match("/v1/tokens/MOB-0001:suspend") is None
    assert get.match("/v1/tokens/a/b") is None


def test_the_openapi_document_is_valid_with_one_operation_per_route() -> None:
    routes = declared_routes()
    document = openapi_document(routes, title="otphsm", version="v1")
    validate(document)  # type: ignore[arg-type]
    operations = [(verb.upper(), path) for path, item in document["paths"].items() for verb in item]
    assert sorted(operations) == sorted((r.verb, r.template) for r in routes)
    verify = document["components"]["schemas"]["otphsm.v1.VerifyRequest"]["properties"]
    assert set(verify) == {"serial", "codiceFiscale", "code", "origin"}  # proto3 JSON names
