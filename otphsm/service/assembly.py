"""The composition root: the one place that turns configuration into adapters and the `App`.

Every choice from configuration is made here. The loader has already parsed each choice into
its enum (a seed storage, a wrap mechanism, an SMS gateway, a reader kind); the store's URL
scheme is the one left to refuse (`otphsm.store.open_store`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from otphsm.core.app.context import App
from otphsm.core.app.seeds import sweep_orphan_seeds
from otphsm.core.clock import Clock, SystemClock
from otphsm.core.ports import PushGateway, SmsGateway, Store
from otphsm.core.seeds import SeedStorage
from otphsm.gateways.push_outbox import PushOutbox
from otphsm.gateways.sms_http import HttpSmsGateway
from otphsm.gateways.sms_outbox import OutboxSmsGateway
from otphsm.hsm import HsmConfig, HsmSeedVault, SessionSource, open_vault
from otphsm.service.config import (
    HsmSection,
    ReaderKind,
    ServiceConfig,
    SmsKind,
    SmsSection,
    read_file,
)
from otphsm.service.crls import CrlHolder
from otphsm.smartcard.readers import LocalReaders, PcscReaders
from otphsm.store import open_store
from otphsm.store.schema import FIRST_MIGRATION
from otphsm.store.urls import describe_store_url

log = logging.getLogger("otphsm.server")
"""The start-up records of `prepare` are the server's."""


@dataclass
class Assembly:
    app: App
    vault: HsmSeedVault
    store: Store
    readers: LocalReaders | None
    crls: CrlHolder
    new_database: bool = False
    """The store had no schema: this start created it (empty)."""

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.vault.close()


def assemble(
    config: ServiceConfig,
    *,
    clock: Clock | None = None,
    hsm_source: SessionSource | None = None,
    sms: SmsGateway | None = None,
    readers: LocalReaders | None = None,
    push: PushGateway | None = None,
    write_point_hook: Callable[[str], None] | None = None,
) -> Assembly:
    """Open the store (migrated), the HSM (keys checked) and the rest. The keyword arguments
    replace an adapter (tests inject a manual clock, a fault-injecting HSM, simulated readers)."""
    clock = clock or SystemClock()
    crls = CrlHolder(config.card, clock)
    sms = sms or sms_gateway(config.sms, clock)
    if readers is None:
        readers = _readers(config.card.readers)
    store = open_store(
        config.store.url, pool_size=config.store.pool_size, timeout=config.store.timeout_seconds
    )
    try:
        applied = store.migrate()
        vault = open_vault(hsm_config(config.hsm), hsm_source)
    except BaseException:
        with contextlib.suppress(Exception):
            store.close()
        raise
    app = App(
        store=store,
        hsm=vault,
        clock=clock,
        trust=crls,
        sms=sms,
        policy=config.policy,
        push=push or PushOutbox(Path(config.sms.push_outbox), clock),
        write_point_hook=write_point_hook,
    )
    return Assembly(app, vault, store, readers, crls, new_database=FIRST_MIGRATION in applied)


def hsm_config(section: HsmSection) -> HsmConfig:
    """The HSM settings of `section`; exports `hsm.softhsm_conf` as SOFTHSM2_CONF (SoftHSM reads
    it when its module loads, which happens after this)."""
    if section.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = section.softhsm_conf
    return HsmConfig(
        token_label=section.token_label,
        user_pin=section.pin(),
        module=section.module,
        kek_label=section.kek_label,
        pepper_label=section.pepper_label,
        wrap_mechanism=section.wrap_mechanism,
        seed_storage=section.seed_storage,
        handle_cache_size=section.cache_size,
    )


def sms_gateway(section: SmsSection, clock: Clock) -> SmsGateway:
    match section.kind:
        case SmsKind.OUTBOX:
            return OutboxSmsGateway(Path(section.outbox), clock)
        case SmsKind.HTTP:
            token = ""
            if section.bearer_token_file:
                token_bytes = read_file(section.bearer_token_file, "sms.bearer_token_file")
                token = token_bytes.decode().strip()
            return HttpSmsGateway(
                section.url,
                timeout_seconds=section.timeout_seconds,
                retries=section.retries,
                backoff_seconds=section.retry_backoff_seconds,
                bearer_token=token,
            )
        case unreachable:
            assert_never(unreachable)


def _readers(kind: ReaderKind) -> LocalReaders | None:
    match kind:
        case ReaderKind.PCSC:
            return PcscReaders()
        case ReaderKind.NONE:
            return None
        case unreachable:
            assert_never(unreachable)


def prepare(assembly: Assembly, config: ServiceConfig) -> None:
    """What is done once before serving (by the parent of several server processes): the
    new-database warning and the orphan-seed sweep (the assembly is closed if it fails)."""
    if assembly.new_database:
        log.warning(
            "created a new, empty database: no tokens, no audit chain (check store.url "
            "if one was expected)",
            extra={"fields": {"store": describe_store_url(config.store.url)}},
        )
    if config.hsm.seed_storage is SeedStorage.RESIDENT:
        _sweep_orphan_seeds(assembly)


def _sweep_orphan_seeds(assembly: Assembly) -> None:
    """Resident seeds left by a unit of work that never committed (a crash) are destroyed
    before serving; the HSM token must belong to this deployment's database alone."""
    try:
        destroyed = sweep_orphan_seeds(assembly.app, "otphsm serve")
    except BaseException:
        assembly.close()
        raise
    if destroyed:
        log.warning("orphan resident seeds destroyed", extra={"fields": {"count": destroyed}})
