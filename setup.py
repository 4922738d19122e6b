"""Build hook: ship ``schemas/`` and ``example-repo/`` inside the wheel as ``runner/data/``.

The top-level folders stay the single source; an editable install reads them in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
SHIPPED = {"schemas": "schemas", "example-repo": "example-repo"}


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        data = Path(self.build_lib) / "runner" / "data"
        for source, target in SHIPPED.items():
            dest = data / target
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(ROOT / source, dest, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithData})
