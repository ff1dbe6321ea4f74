"""The provider registers with Airflow: valid metadata, the CLI lists it, the connection type and its form."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_feishu_vc.get_provider_info import get_provider_info
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


def test_connection_form_fields_reach_airflows_providers_manager() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["feishu_vc"]
    assert behaviour["relabeling"] == {"host": "API origin", "login": "App ID", "password": "App Secret"}
    assert "schema" in behaviour["hidden_fields"] and "port" in behaviour["hidden_fields"]
    widgets = manager.connection_form_widgets
    assert widgets["extra__feishu_vc__app_ticket"].is_sensitive
    assert widgets["extra__feishu_vc__app_type"].field["schema"]["enum"] == ["self_built", "store"]


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
        assert "code 10014" in failed.stdout + failed.stderr
        airflow_cli("connections", "delete", "feishu_vc_cli_bad", check=False)
