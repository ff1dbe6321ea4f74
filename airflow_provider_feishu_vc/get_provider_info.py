"""Provider metadata, registered under the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_feishu_vc import __version__

INTEGRATION = "Feishu VC"
SECRET = {"type": ["string", "null"], "format": "password"}

CONNECTION_FIELDS: dict[str, Any] = {
    "app_type": {
        "label": "App type",
        "description": "A custom app your tenant built, or an app from the Feishu App Store (ISV)",
        "schema": {
            "type": ["string", "null"],
            "enum": ["self_built", "store"],
            "default": "self_built",
            "values_display": {"self_built": "Custom app (self-built)", "store": "App Store app (ISV)"},
        },
    },
    "tenant_key": {
        "label": "Tenant key (App Store apps)",
        "description": "Only for App Store apps: the tenant the app acts in. Leave empty for a custom app",
        "schema": {"type": ["string", "null"]},
    },
    "app_ticket_secret": {
        "label": "App ticket (App Store apps)",
        "description": "Only for App Store apps: the latest app_ticket Feishu pushed to the app's event URL. "
        "Leave empty for a custom app",
        "schema": SECRET,
    },
    "user_access_token": {
        "label": "User access token",
        "description": "Act as a user instead of the app (u-...)",
        "schema": SECRET,
    },
    "refresh_token": {
        "label": "User refresh token",
        "description": "Lets the provider renew the user access token",
        "schema": SECRET,
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Per HTTP request",
        "schema": {"type": ["number", "null"], "default": 30},  # 0 or less is refused by name, not clamped
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Further attempts after a network error, HTTP 5xx, Feishu 121001 or a rate limit",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
    },
    "rate_limit_per_minute": {
        "label": "Rate limit per minute",
        "description": "Feishu's limit for each export API (100 per minute per app and tenant). Give the real "
        "limit: processes that share it slow down on their own",
        "schema": {"type": ["number", "null"], "default": 100, "minimum": 1},
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "description": "Leave on; turning it off is logged as a warning on every use",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"host": "API origin", "login": "App ID", "password": "App Secret"},
    "placeholders": {
        "host": "https://open.feishu.cn (or https://open.larksuite.com for Lark)",
        "login": "cli_xxxxxxxxxxxxxxxx",
        "password": "App Secret from the developer console",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-feishu-vc",
        "versions": [__version__],
        "name": "Feishu VC",
        "description": "Export Feishu / Lark video-conference data (meetings, participants, quality, room "
        "reservations) with a token-managing hook, a deferrable sensor and download operators.",
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://open.feishu.cn/document/server-docs/vc-v1/export/meeting_list",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_feishu_vc.hooks.feishu_vc"]}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_feishu_vc.operators.feishu_vc",
                    "airflow_provider_feishu_vc.operators.attendance",
                ],
            }
        ],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_feishu_vc.sensors.feishu_vc"]}
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION,
                "python-modules": [
                    "airflow_provider_feishu_vc.triggers.feishu_vc",
                    "airflow_provider_feishu_vc.triggers.attendance",
                ],
            }
        ],
        "filesystems": ["airflow_provider_feishu_vc.fs.memory"],
        "connection-types": [
            {
                "connection-type": "feishu_vc",
                "hook-class-name": "airflow_provider_feishu_vc.hooks.feishu_vc.FeishuVCHook",
                "hook-name": "Feishu VC",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "config": {
            "feishu_vc": {
                "description": "Settings of the Feishu VC provider.",
                "options": {
                    "storage_base": {
                        "description": "Where the download and export operators put files when they are given "
                        "no destination: an ObjectStoragePath URI (file://, s3://conn_id@bucket/prefix, ...). "
                        "Empty means a feishu_vc_exports folder under AIRFLOW_HOME.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://my-bucket/feishu-vc",
                        "default": "",
                    }
                },
            }
        },
    }
