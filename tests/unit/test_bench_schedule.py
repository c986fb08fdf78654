"""The benchmark's open-loop schedules (bench/load.py): the half-rate p99 is measured on requests
arriving at the rate asked, spread as documented, not in bursts of every client at once."""

from __future__ import annotations

import importlib.util
import itertools
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
CLIENTS = 8
RATE = 400.0  # requests per second in all


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_load", BENCH / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


load = _load_module()


def _arrivals(kind: str, seconds: float) -> list[float]:
    """Every client's due times inside `seconds`, merged."""
    merged: list[float] = []
    for client in range(CLIENTS):
        dues = load.schedule(kind, 0.0, RATE / CLIENTS, client, CLIENTS)
        merged.extend(itertools.takewhile(lambda due: due < seconds, dues))
    return sorted(merged)


@pytest.mark.parametrize("kind", ["poisson", "even", "lockstep"])
def test_every_schedule_sends_the_rate_asked(kind: str) -> None:
    assert len(_arrivals(kind, 30.0)) == pytest.approx(RATE * 30, rel=0.03)


def test_even_arrivals_are_spaced_one_interval_apart() -> None:
    gaps = [b - a for a, b in itertools.pairwise(_arrivals("even", 2.0))]
    assert min(gaps) == pytest.approx(1 / RATE) and max(gaps) == pytest.approx(1 / RATE)


def test_lockstep_sends_every_client_at_once() -> None:
    arrivals = _arrivals("lockstep", 1.0)
    assert len(set(arrivals)) == len(arrivals) // CLIENTS


def test_poisson_gaps_are_random_with_the_rates_mean_and_repeat_run_after_run() -> None:
    arrivals = _arrivals("poisson", 30.0)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert statistics.fmean(gaps) == pytest.approx(1 / RATE, rel=0.05)
    # exponential gaps: as spread as their mean, unlike the even schedule's (spread 0)
    assert statistics.stdev(gaps) == pytest.approx(1 / RATE, rel=0.1)
    assert arrivals == _arrivals("poisson", 30.0)


def test_an_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="arrivals"):
        next(load.schedule("bursty", 0.0, RATE, 0, CLIENTS))
