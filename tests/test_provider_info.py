"""The provider registers with Airflow: valid metadata, the CLI lists it, the connection type and its form."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_feishu_vc.get_provider_info import CONNECTION_FIELDS, get_provider_info
from airflow_provider_feishu_vc.testing import FeishuVCEmulator
from tests.conftest import APP_ID, APP_SECRET, airflow_cli

SCHEMAS = Path(airflow.__file__).parent


def test_provider_info_matches_airflows_schema() -> None:
    info = get_provider_info()
    jsonschema.validate(info, json.loads((SCHEMAS / "provider_info.schema.json").read_text()))
    yaml_schema = json.loads((SCHEMAS / "provider.yaml.schema.json").read_text())
    connection_schema = yaml_schema["properties"]["connection-types"]
    jsonschema.validate(info["connection-types"], connection_schema)
    assert info["package-name"] == "airflow-provider-feishu-vc"


def test_entry_point_is_registered() -> None:
    points = [
        p for p in entry_points(group="apache_airflow_provider") if p.value.startswith("airflow_provider_feishu_vc")
    ]
    assert len(points) == 1 and points[0].load() is get_provider_info


def test_every_listed_module_and_class_imports() -> None:
    import importlib

    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for connection in info["connection-types"]:
        module, _, name = connection["hook-class-name"].rpartition(".")
        assert getattr(importlib.import_module(module), name).conn_type == connection["connection-type"]


def test_airflow_lists_the_provider_and_its_connection_type(airflow_db: str) -> None:
    assert "airflow-provider-feishu-vc" in airflow_cli("providers", "list").stdout
    hooks = airflow_cli("providers", "hooks").stdout
    assert "feishu_vc" in hooks and "FeishuVCHook" in hooks


def test_connection_form_reaches_the_ui_on_this_airflow_version() -> None:
    """What the UI's connection form is built from (``/ui/connections/hook_meta``): 3.2+ reads the provider info,
    3.1 the hook's widgets. Run in a subprocess: Airflow's service stubs wtforms and FAB in ``sys.modules``."""
    probe = (
        "import json\n"
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "[meta] = [m for m in HookMetaService.hook_meta_data() if m.connection_type == 'feishu_vc']\n"
        "print(json.dumps(meta.model_dump(mode='json')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    standard = meta["standard_fields"]
    assert standard["login"]["title"] == "App ID" and standard["password"]["title"] == "App Secret"
    assert standard["host"]["title"] == "API origin" and not standard["host"]["hidden"]
    assert standard["port"]["hidden"] and standard["url_schema"]["hidden"]
    extras = meta["extra_fields"]
    assert set(extras) == set(CONNECTION_FIELDS)
    secret_fields = {name for name, field in extras.items() if field["schema"].get("format") == "password"}
    assert secret_fields == {"app_ticket_secret", "user_access_token", "refresh_token"}
    assert extras["app_type"]["schema"]["enum"] == ["self_built", "store"]
    assert extras["app_type"]["value"] == "self_built"
    assert extras["tenant_key"]["schema"]["title"] == "Tenant key (App Store apps)"


def test_cli_added_connection_passes_the_connection_test(airflow_db: str) -> None:
    with FeishuVCEmulator(app_id=APP_ID, app_secret=APP_SECRET) as emulator:
        enabled = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
        airflow_cli("connections", "delete", "feishu_vc_cli_test", check=False)
        airflow_cli(
            "connections", "add", "feishu_vc_cli_test", "--conn-type", "feishu_vc", "--conn-host", emulator.url,
            "--conn-login", APP_ID, "--conn-password", APP_SECRET,
        )  # fmt: skip
        result = airflow_cli("connections", "test", "feishu_vc_cli_test", env=enabled)
        assert "Connection success!" in result.stdout
        assert emulator.token_requests() == 1
        airflow_cli(
            "connections", "add", "feishu_vc_cli_bad", "--conn-type", "feishu_vc", "--conn-host", emulator.url,
            "--conn-login", APP_ID, "--conn-password", "wrong-secret",
        )  # fmt: skip
        failed = airflow_cli("connections", "test", "feishu_vc_cli_bad", env=enabled, check=False)
        assert "code 10015" in failed.stdout + failed.stderr
        airflow_cli("connections", "delete", "feishu_vc_cli_bad", check=False)


def test_every_password_extra_is_redacted_by_airflow_in_the_connections_api() -> None:
    """What GET /api/v2/connections returns (the UI's list and edit form) on this Airflow version."""
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse
    from airflow.models import Connection

    secrets = {
        name: f"value-of-{name}-7f3a9c" for name, field in CONNECTION_FIELDS.items()
        if field["schema"].get("format") == "password"
    }  # fmt: skip
    assert set(secrets) == {"app_ticket_secret", "user_access_token", "refresh_token"}
    extra = {**secrets, "app_type": "store", "tenant_key": "tenant-1"}
    stored = Connection(
        conn_id="feishu_vc_ui", conn_type="feishu_vc", login=APP_ID, password="s3cr3t-value", extra=extra
    )
    answer = ConnectionResponse.model_validate(stored, from_attributes=True).model_dump_json()
    assert [value for value in (*secrets.values(), "s3cr3t-value") if value in answer] == []
    shown = json.loads(json.loads(answer)["extra"])
    assert {name: shown[name] for name in secrets} == dict.fromkeys(secrets, "***")
    assert shown["tenant_key"] == "tenant-1"  # not a secret: still readable
