"""The OpenAPI 3.1 document of the HTTP/JSON API, built from the descriptors: the paths from
the routes (`google.api.http`), the schemas from the messages as the canonical proto3 JSON
mapping writes them (lowerCamelCase names, 64-bit integers as strings, enums by name, bytes
in base64), the roles from `service/rpcs.py`. No generator is involved."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from otphsm.service.http.routes import Route
from otphsm.service.rpcs import RPCS

ERROR_SCHEMA = "otphsm.Error"
_REF = "#/components/schemas/"
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "int32", "minimum": 0}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_SCALARS: Mapping[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: {**_INT64, "pattern": "^[0-9]+$"},
    FieldDescriptor.TYPE_FIXED64: {**_INT64, "pattern": "^[0-9]+$"},
}


def openapi_document(routes: Sequence[Route], *, title: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {ERROR_SCHEMA: _error_schema()}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        method = route.method
        _add_message(method.input_type, schemas)
        _add_message(method.output_type, schemas)
        roles = sorted(role.value for role in RPCS[route.rpc].roles)
        operation: dict[str, Any] = {
            "operationId": f"{method.containing_service.name}_{method.name}",
            "tags": [method.containing_service.name],
            "summary": f"{method.containing_service.name}.{method.name} (gRPC {route.rpc})",
            "description": f"Allowed to client certificates with the role: {', '.join(roles)}.",
            "x-otphsm-roles": roles,
            "parameters": _parameters(route),
            "responses": {
                "200": _json_response("OK", _REF + method.output_type.full_name),
                "default": _json_response(
                    "refused: google.rpc.Status as JSON", _REF + ERROR_SCHEMA
                ),
            },
        }
        if route.body == "*":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF + method.input_type.full_name}}
                },
            }
        paths.setdefault(route.template, {})[route.verb.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The HTTP/JSON mapping of the otphsm gRPC API (google.api.http), "
            "bodies in the canonical proto3 JSON mapping. Every call needs a client "
            "certificate naming its role (urn:otphsm:role:<role>).",
        },
        "servers": [{"url": "/"}],
        "security": [{"mutualTLS": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"mutualTLS": {"type": "mutualTLS"}},
        },
    }


def openapi_json(routes: Sequence[Route], *, title: str, version: str) -> bytes:
    return json.dumps(openapi_document(routes, title=title, version=version), indent=1).encode()


def _parameters(route: Route) -> list[dict[str, Any]]:
    message = route.method.input_type
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _field_schema(message.fields_by_name[name]),
        }
        for name in route.variables
    ]
    if route.body == "":
        for field in _query_fields(message, route.variables):
            parameters.append(
                {
                    "name": field.json_name,
                    "in": "query",
                    "required": False,
                    "schema": _field_schema(field),
                }
            )
    return parameters


def _query_fields(message: Descriptor, in_path: Iterable[str]) -> list[FieldDescriptor]:
    """A GET's request fields beside the path's: scalars and enums, by their JSON names."""
    skip = set(in_path)
    return [
        field
        for field in message.fields
        if field.name not in skip
        and field.type != FieldDescriptor.TYPE_MESSAGE
        and not field.is_repeated
    ]


def _json_response(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _add_message(message: Descriptor, schemas: dict[str, Any]) -> None:
    if message.full_name in schemas:
        return
    schemas[message.full_name] = {}  # before the fields: a message may hold itself
    properties: dict[str, Any] = {}
    for field in message.fields:
        if field.message_type is not None:
            _add_message(field.message_type, schemas)
        elif field.enum_type is not None:
            _add_enum(field.enum_type, schemas)
        properties[field.json_name] = _field_schema(field)
    schemas[message.full_name] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


def _add_enum(enum: EnumDescriptor, schemas: dict[str, Any]) -> None:
    schemas.setdefault(
        enum.full_name, {"type": "string", "enum": [value.name for value in enum.values]}
    )


def _field_schema(field: FieldDescriptor) -> dict[str, Any]:
    entry = field.message_type
    if entry is not None:
        if entry.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": _field_schema(entry.fields_by_name["value"]),
            }
        single: dict[str, Any] = {"$ref": _REF + entry.full_name}
    elif field.enum_type is not None:
        single = {"$ref": _REF + field.enum_type.full_name}
    else:
        single = dict(_SCALARS[field.type])
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "status", "message"],
                "properties": {
                    "code": {"type": "integer", "description": "the HTTP status"},
                    "status": {"type": "string", "description": "the gRPC status name"},
                    "message": {"type": "string"},
                    "reason": {"type": "string", "description": "otphsm's reason code"},
                    "retryAfterSeconds": {"type": "integer", "minimum": 1},
                    "details": {
                        "type": "array",
                        "description": "google.rpc details: ErrorInfo, RetryInfo, BadRequest",
                        "items": {"type": "object", "properties": {"@type": {"type": "string"}}},
                    },
                },
            }
        },
    }
