"""Debian packages the suite needs beside Python (PostgreSQL, Chromium, Graphviz, Redis), installed with apt-get when
missing, as CI's fresh machine needs; ``python -m tests.os_packages dot=graphviz`` does it from a Makefile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


class MissingOSPackage(RuntimeError):
    """A command is missing and apt-get cannot install it here (not root, or no apt-get)."""


def install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise MissingOSPackage(f"{package} is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, stdout=subprocess.DEVNULL, env=env)


def command(name: str, package: str) -> str:
    """The path of ``name``, installing Debian's ``package`` first when it is missing."""
    found = shutil.which(name)
    if found is None:
        install(package)
        found = shutil.which(name)
    if found is None:
        raise MissingOSPackage(f"installing {package} gave no {name} command")
    return found


if __name__ == "__main__":
    for wanted in sys.argv[1:]:
        name, _, package = wanted.partition("=")
        print(command(name, package or name))
