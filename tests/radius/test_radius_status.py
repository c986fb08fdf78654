"""Status-Server (RFC 5997) on the RADIUS server in process: answered Access-Accept, signed,
while the health checks pass, and not answered at all while the HSM or the store fails one, so
a NAS marks this replica dead and fails over."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyrad import packet as radius
from support.radius_support import SECRET, Nas

from otphsm.core.app.context import App
from otphsm.service.config import RadiusClientSection, RadiusSection
from otphsm.service.metrics import Metrics
from otphsm.service.radius import RadiusServer
from otphsm.service.radius.packets import load_dictionary

pytestmark = [pytest.mark.softhsm]


def test_status_server_is_answered_only_while_healthy(app: App, tmp_path: Path) -> None:
    (tmp_path / "nas.secret").write_text(SECRET)
    nas_section = RadiusClientSection(
        name="nas", addresses=("127.0.0.1",), secret_file=str(tmp_path / "nas.secret")
    )
    section = RadiusSection(enabled=True, port=0, clients=(nas_section,))
    health = {"up": True}
    server = RadiusServer(section, app, Metrics(), healthy=lambda: health["up"])
    server.start()
    nas = Nas()
    try:
        for identifier, up in ((1, True), (2, False), (3, True)):
            health["up"] = up
            status = radius.AuthPacket(
                code=radius.StatusServer,
                id=identifier,
                secret=SECRET.encode(),
                dict=load_dictionary(),
            )
            status.add_message_authenticator()
            raw = status.RequestPacket()
            answer = nas.ask(server.port, raw, timeout=1.0)
            if not up:
                assert answer is None
                continue
            assert answer is not None
            reply = status.CreateReply(packet=answer)
            assert status.VerifyReply(reply, answer, enforce_ma=True)
            assert reply.code == radius.AccessAccept
    finally:
        nas.close()
        server.stop(1.0)
