"""The modules of otphsm-api, taken from the repository's `otphsm/` beside this directory.

`API_MODULES` lists every module outside the two whole packages (`otphsm.v1`, `otphsm.client`
without `station`): what `otphsm.client` imports, and nothing that imports grpc's server side,
pkcs11, pyscard or a database. `tests/cli/test_api_package.py` installs the wheel alone and
imports the client, so a new import of the client outside this list fails there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

SOURCE = Path(__file__).resolve().parent.parent / "otphsm"
WHOLE = ("v1", "client")
LEFT_OUT = {("client", "station")}
"""The station drives a card reader (pyscard): it ships with the full distribution only."""
API_MODULES = {
    "": ("__init__",),
    "config": ("__init__", "client", "loader"),
    "core": ("__init__", "bounds", "errors", "otp", "records", "seeds", "tokens", "verification"),
}


class CopyApiModules(build_py):
    """Copies the listed modules of ../otphsm into the build tree (setuptools builds packages
    only from inside the project's directory)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "otphsm"
        shutil.rmtree(target, ignore_errors=True)  # a module left out since the last build
        for package, names in API_MODULES.items():
            for name in names:
                _copy(SOURCE / package / f"{name}.py", target / package / f"{name}.py")
        for package in WHOLE:
            for path in sorted((SOURCE / package).glob("*.py*")):
                if (package, path.name.split(".")[0]) not in LEFT_OUT:
                    _copy(path, target / package / path.name)
        _copy(SOURCE / "py.typed", target / "py.typed", optional=True)


class ApiDistribution(Distribution):
    def has_pure_modules(self) -> bool:
        return True  # built by CopyApiModules, though no package is declared here


def _copy(source: Path, target: Path, *, optional: bool = False) -> None:
    if optional and not source.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


setup(
    packages=[],  # the modules come from ../otphsm by CopyApiModules, not from this directory
    cmdclass={"build_py": CopyApiModules},
    distclass=ApiDistribution,
)
