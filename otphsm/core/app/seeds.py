"""Resident seed objects that no record holds: left by a use case whose unit of work ended
before its commit (a crash, a kill -9). Every resident seed is created inside a unit of work
(`App.transaction`), which holds the store's write lock (SQLite) or the audit lock
(PostgreSQL); the sweep takes it too, so no seed of a unit of work still running can be
taken for an orphan, on any replica."""

from __future__ import annotations

from otphsm.core.app.context import Actor, App
from otphsm.core.seeds import SeedRef, SeedStorage

SEED_SWEEP = "seed_sweep"
"""The unit of work's name, and so its write points' prefix (`App.transaction`)."""


def sweep_orphan_seeds(app: App, actor: Actor | str) -> int:
    """Destroy every resident seed object no token or Security Card refers to; how many.
    Audited (with the count only) when there were any."""
    with app.transaction(SEED_SWEEP) as work:
        orphans = app.hsm.resident_seed_ids() - work.store.resident_seed_ids()
        for object_id in sorted(orphans):
            app.hsm.destroy_seed(SeedRef(SeedStorage.RESIDENT, object_id))
        if orphans:
            work.audit(actor, "orphan_seeds_destroyed", "hsm", count=len(orphans))
    return len(orphans)
