"""Imported by a test module (`from support.server_models import each_server_model,
on_each_server_model`), these fixtures run every test of the module once on each
`server.model`, whatever the store ("auto" would choose by the engine): `each_server_model`
replaces the default `server_model` there, and the autouse fixture makes every test depend on
it, so that pytest parametrizes them (a fixture requested only at run time cannot be)."""

from __future__ import annotations

import pytest

from otphsm.service.config import ServerModel


@pytest.fixture(
    name="server_model", params=[ServerModel.THREADS.value, ServerModel.EVENT_LOOP.value]
)
def each_server_model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def on_each_server_model(server_model: str) -> str:
    return server_model
