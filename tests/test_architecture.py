"""The shape the architecture promises, checked: the core is Airflow-free, the emulator never imports the
client, and importing the trigger module does no work."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import airflow_provider_feishu_vc
from airflow_provider_feishu_vc import client, testing

PACKAGE = Path(airflow_provider_feishu_vc.__file__).parent


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every module each file below ``folder`` imports, read from its source."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_the_core_imports_nothing_from_airflow() -> None:
    offenders = {
        path: sorted(name for name in names if name == "airflow" or name.startswith("airflow."))
        for path, names in imported_modules(PACKAGE / "client").items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}
    modules = [f"airflow_provider_feishu_vc.client.{m.name}" for m in pkgutil.iter_modules(client.__path__)]
    assert "airflow_provider_feishu_vc.client.async_client" in modules
    probe = "import sys\n" + "".join(f"import {m}\n" for m in modules)
    probe += "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_emulator_never_imports_the_client() -> None:
    offenders = {
        path: sorted(name for name in names if name.startswith("airflow_provider_feishu_vc.client"))
        for path, names in imported_modules(Path(testing.__file__).parent).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_the_trigger_module_does_no_io_and_loads_no_ca_bundle() -> None:
    probe = textwrap.dedent(
        """
        import sys
        # What a triggerer has loaded before it imports a trigger class: Airflow and the provider's hook.
        import airflow.triggers.base
        import airflow_provider_feishu_vc.hooks.feishu_vc
        from airflow_provider_feishu_vc.client import transport

        events = []

        def audit(event, args):
            if event == "open" and not str(args[0]).endswith((".py", ".pyc")) and args[0] is not None:
                events.append(f"open {args[0]}")
            elif event in ("socket.connect", "socket.getaddrinfo"):
                events.append(event)

        before = set(sys.modules)
        sys.addaudithook(audit)
        import airflow_provider_feishu_vc.triggers.feishu_vc  # noqa: F401
        new = set(sys.modules) - before
        events += [f"imported {name}" for name in ("anyio._backends._asyncio", "certifi", "httpx") if name in new]
        if transport.tls_context.cache_info().currsize:
            events.append("a TLS context was built")
        print(events)
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
