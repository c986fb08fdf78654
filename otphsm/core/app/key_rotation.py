"""Key rotation. KEK rotation: a new KEK, every stored seed re-wrapped under it inside the
HSM, the old KEK destroyed once no row uses it.

Resumable: rows are processed in pages; each write is conditional on the row still holding
the old blob under the old KEK (`Store.rewrap_seed`), so a rerun after a crash, or a replica's
write in between, is safe. A run finds the KEKs on the token: with one, it starts a rotation
(a new KEK); with several, it carries the unfinished one on into the newest. Audited: start
(or resume), one entry per page, end. New seeds are wrapped under the newest KEK from the
moment it exists, and the service unwraps each seed with the KEK its row names, so codes
verify throughout. Pepper rotation: `rotate_pepper`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from otphsm.core.app.context import App
from otphsm.core.errors import ConfigurationError, DeviceRefused
from otphsm.core.ports import KeyRing, PepperRing
from otphsm.core.seeds import SeedHolder

ACTOR = "otphsm admin hsm rotate-kek"
PEPPER_ACTOR = "otphsm admin hsm rotate-pepper"


@dataclass(frozen=True)
class KekRotationReport:
    kek: str
    """The KEK every seed is wrapped under now."""
    started: bool
    """This run made the KEK (False: it carried an unfinished rotation on)."""
    rewrapped: int
    stuck: int
    """Seeds whose KEK does not allow re-wrapping (made before rotation existed)."""
    destroyed: tuple[str, ...]
    kept: tuple[str, ...]
    """Old KEKs that rows still use (stuck seeds, or rows written during the run)."""


def rotate_kek(
    app: App,
    ring: KeyRing,
    *,
    batch_size: int = 100,
    settle_seconds: float = 10.0,
    after_batch: Callable[[int], None] | None = None,
) -> KekRotationReport:
    """`settle_seconds`: how long a run that made the KEK waits before its last count, so a
    seed wrapped under the old KEK just before (an issuance in flight) is stored by then and
    keeps the old KEK alive. `after_batch(n)` runs after each page (tests end the run there)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    labels = ring.labels()
    if not labels:
        raise ConfigurationError(f"no KEK {ring.first!r} on the token: run `otphsm admin hsm-init`")
    started = len(labels) == 1
    if started:
        target = ring.create_next()
        app.audit(ACTOR, "kek_rotation_started", target, previous=labels[0])
        labels = [*labels, target]
    else:
        target = labels[-1]
        app.audit(ACTOR, "kek_rotation_resumed", target, previous=labels[:-1])
    rewrapped, stuck = _rewrap_all(app, ring, labels, batch_size, after_batch)
    if started and settle_seconds > 0:
        time.sleep(settle_seconds)
    destroyed: list[str] = []
    kept: list[str] = []
    for old in labels[:-1]:
        if _in_use(app, old, unlabelled=old == ring.first):
            kept.append(old)
        else:
            ring.destroy(old)
            destroyed.append(old)
    app.audit(
        ACTOR,
        "kek_rotation_finished",
        target,
        rewrapped=rewrapped,
        stuck=stuck,
        destroyed=destroyed,
        kept=kept,
    )
    return KekRotationReport(target, started, rewrapped, stuck, tuple(destroyed), tuple(kept))


def _rewrap_all(
    app: App,
    ring: KeyRing,
    labels: list[str],
    batch_size: int,
    after_batch: Callable[[int], None] | None,
) -> tuple[int, int]:
    """Every seed under one of `labels[:-1]` re-wrapped under `labels[-1]`, page by page;
    (re-wrapped, stuck)."""
    target = labels[-1]
    rewrapped = stuck = batches = 0
    for old in labels[:-1]:
        for holder in SeedHolder:
            after = ""
            while page := app.store.seeds_wrapped_under(
                holder, old, unlabelled=old == ring.first, after=after, limit=batch_size
            ):
                for stored in page:
                    try:
                        new = ring.rewrap(stored.seed, target)
                    except DeviceRefused:
                        stuck += 1
                        continue
                    rewrapped += app.store.rewrap_seed(stored, new)
                after = page[-1].serial
                batches += 1
                app.audit(
                    ACTOR,
                    "kek_rotation_progress",
                    target,
                    holder=holder.value,
                    batch=batches,
                    rewrapped=rewrapped,
                    stuck=stuck,
                )
                if after_batch is not None:
                    after_batch(batches)
    return rewrapped, stuck


def _in_use(app: App, kek: str, *, unlabelled: bool) -> bool:
    return any(
        app.store.seeds_wrapped_under(holder, kek, unlabelled=unlabelled, after="", limit=1)
        for holder in SeedHolder
    )


def rotate_pepper(app: App, ring: PepperRing) -> str:
    """Make the next pepper key: every MAC from now on is made with it (the audit entry that
    records the rotation first). Older pepper keys stay on the token, so the audit entries and
    the stored codes made with them stay checkable; a MAC names the generation it was made
    with."""
    previous = ring.labels()
    label = ring.create_next()
    app.audit(PEPPER_ACTOR, "pepper_rotated", label, previous=previous[-1] if previous else "")
    return label
