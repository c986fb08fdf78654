"""The one harness that starts a whole development deployment, for the demo, the test
fixtures and the benchmark: a provisioned SoftHSM2 token, the dev PKI, the test card CA and
its CRL, config files of one shape, `otphsm serve` processes on port 0 (the bound port read
back from their log), and a private pcscd with simulated cards inserted over vpcd.

Nothing else starts `otphsm serve`.
"""

from otphsm.simulators.deployment.config import (
    CardTrust,
    ConfigMapping,
    radius_section,
    serve_config,
    with_sections,
    write_config,
)
from otphsm.simulators.deployment.deployment import Deployment, create_deployment
from otphsm.simulators.deployment.parts import card_ca, provisioned_softhsm, write_card_trust
from otphsm.simulators.deployment.pcsc import (
    CARD_WAIT,
    InsertedCard,
    insert_card,
    start_pcscd,
    use_pcscd_socket,
    wait_card_state,
)
from otphsm.simulators.deployment.process import (
    ServerProcess,
    ServerStartError,
    server_env,
    start_serve,
    start_server,
)

__all__ = [
    "CARD_WAIT",
    "CardTrust",
    "ConfigMapping",
    "Deployment",
    "InsertedCard",
    "ServerProcess",
    "ServerStartError",
    "card_ca",
    "create_deployment",
    "insert_card",
    "provisioned_softhsm",
    "radius_section",
    "serve_config",
    "server_env",
    "start_pcscd",
    "start_serve",
    "start_server",
    "use_pcscd_socket",
    "wait_card_state",
    "with_sections",
    "write_card_trust",
    "write_config",
]
