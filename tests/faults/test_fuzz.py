"""gRPC fuzzing of every RPC the service serves (hypothesis): random well-typed requests built
from each method's message descriptor (with some right-looking values mixed in, so checks past
the first are reached), and random bytes that may not even decode. The answer is always OK or
a status from the service's one error table, never INTERNAL or UNKNOWN, and a refused request
leaves the database exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fault_support import CITIZEN, add_hotp_tokens
from support.service_fixtures import ServiceUnderTest, start_service

import otphsm.service.server  # noqa: F401  (imports every service's generated code)
from otphsm.service.errors import STATUS_TABLE
from otphsm.service.rpcs import RPCS
from otphsm.store.urls import sqlite_url

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(240)]

DOCUMENTED = frozenset(code for _, code, _ in STATUS_TABLE) | {grpc.StatusCode.OK}
STREAM_END = {grpc.StatusCode.DEADLINE_EXCEEDED}
"""A server stream (WatchCards) may still be open when the client's deadline ends it."""
SERIAL = "FLT-0000"
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            SERIAL,
            CITIZEN,
            "123456",
            "000000",
            "",
            "x" * 300,
            "+393331234567",
            "ch-000000000000000000000000",
            "au-000000000000000000000000",
            "1234-5678-9012-3456-78",
            "Kiosk Reader 00",
            "A1",
        ]
    ),
)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
METHODS = sorted(RPCS)


def method_descriptor(path: str) -> Any:
    service, method = path.strip("/").split("/")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=120)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 50))
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(allow_nan=True, width=32)
    low, high = INT_RANGES[field.type]
    return st.one_of(st.integers(low, high), st.integers(0, 100))


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2:
                continue
            inner = message_strategy(field.message_type, depth + 1)
        else:
            inner = _scalar(field)
        if field.is_repeated:  # type: ignore[attr-defined]
            inner = st.lists(inner, max_size=3)
        fields[field.name] = st.one_of(st.none(), inner)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            value = draw(strategy)
            if value is None:
                continue
            target = getattr(message, name)
            if isinstance(value, list):
                if value and isinstance(value[0], Message):
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


@pytest.fixture(scope="module")
def fuzz_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceUnderTest]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    db = tmp_path / "otphsm.db"
    service = start_service(
        request, tmp_path, sqlite_url(db), db, overrides={"ratelimit": {"enabled": False}}
    )
    add_hotp_tokens(service.running.assembly.app, 1)
    yield service
    _CHANNELS.clear()
    service.close()


_CHANNELS: dict[tuple[int, str], grpc.Channel] = {}


def call(service: ServiceUnderTest, path: str, body: bytes) -> grpc.StatusCode:
    role = min(RPCS[path].roles).value
    key = (id(service), role)
    channel = _CHANNELS.get(key) or _CHANNELS.setdefault(key, service.channel(role))
    method = method_descriptor(path)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path)(body, timeout=0.5)
            for _ in stream:
                pass
        else:
            channel.unary_unary(path)(body, timeout=20)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def check(service: ServiceUnderTest, path: str, body: bytes) -> None:
    before = service.snapshot()
    code = call(service, path, body)
    streaming = method_descriptor(path).server_streaming
    assert code in DOCUMENTED or (streaming and code in STREAM_END), (path, code, body[:80])
    if code is not grpc.StatusCode.OK and code not in STREAM_END:
        assert service.snapshot() == before, f"{path} refused with {code.name} but wrote"


@pytest.mark.parametrize("path", METHODS, ids=[m.rsplit("/", 1)[1] for m in METHODS])
def test_random_well_typed_requests(fuzz_service: ServiceUnderTest, path: str) -> None:
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(message_strategy(method_descriptor(path).input_type))
    def run(message: Message) -> None:
        check(fuzz_service, path, message.SerializeToString())

    run()


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(METHODS), body=st.binary(max_size=200))
def test_random_bytes_for_any_rpc(fuzz_service: ServiceUnderTest, path: str, body: bytes) -> None:
    check(fuzz_service, path, body)
