"""Every difference between the Airflow releases this provider supports (3.1, 3.2, 3.3), in one place.

Each name resolves to the newest API the running Airflow has. Importing this module stays cheap: the
exceptions and the timetable are looked up when first used.

- ``conf``: ``airflow.sdk`` from 3.2; ``airflow.configuration`` on 3.1.
- ``AirflowFailException``, ``AirflowSensorTimeout`` (and ``fail_task``, ``sensor_timed_out``):
  ``airflow.sdk.exceptions`` from 3.2; ``airflow.exceptions`` on 3.1.
- ``amask_secret``: ``airflow.sdk.log.amask_secret`` from 3.3 (it also tells the triggerer's supervisor); on
  3.1 and 3.2 the secret is masked in this process, which is where trigger logs are written from.
- ``CronDataIntervalTimetable``: ``airflow.sdk`` from 3.2; ``airflow.timetables.interval`` on 3.1.
- The connection form: provider info ``conn-fields`` from 3.2; on 3.1 the hook's ``get_connection_form_widgets``
  and ``get_ui_field_behaviour`` (``FORM_FROM_PROVIDER_INFO`` says which one this Airflow reads).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.log import mask_secret

try:
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

__all__ = [
    "FORM_FROM_PROVIDER_INFO",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "CronDataIntervalTimetable",
    "amask_secret",
    "conf",
    "fail_task",
    "form_widgets",
    "mask_secret",
    "sensor_timed_out",
]

#: Where each lazily resolved name lives: the newest module first.
_LAZY = {
    "AirflowFailException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "CronDataIntervalTimetable": ("airflow.sdk", "airflow.timetables.interval"),
}


def _airflow_version() -> tuple[int, int]:
    from airflow import __version__

    major, minor = __version__.split(".")[:2]
    return int(major), int(minor)


#: Airflow 3.2 reads the connection form from the provider info; 3.1 asks the hook.
FORM_FROM_PROVIDER_INFO = _airflow_version() >= (3, 2)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in _LAZY[name]:
        found = getattr(importlib.import_module(module), name, None)
        if found is not None:
            globals()[name] = found
            return found
    raise ImportError(f"{name} is in none of {', '.join(_LAZY[name])}")


def fail_task(message: str, cause: BaseException | None = None) -> NoReturn:
    """Fail the task at once, without retries (bad input, a failed export)."""
    raise __getattr__("AirflowFailException")(message) from cause


def sensor_timed_out(message: str) -> NoReturn:
    """Raise Airflow's sensor timeout (``soft_fail`` turns it into a skip)."""
    raise __getattr__("AirflowSensorTimeout")(message)


async def amask_secret(secret: str) -> None:
    """Register ``secret`` with the masker from async code (a trigger), with no blocking call on the loop."""
    try:
        from airflow.sdk.log import amask_secret as newest
    except ImportError:  # Airflow 3.1 and 3.2
        from airflow.sdk.log import _secrets_masker  # type: ignore[attr-defined]

        _secrets_masker().add_mask(secret)
        return
    await newest(secret)


def form_widgets(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The provider info's ``conn-fields`` as the wtforms fields Airflow 3.1 asks a hook for.

    3.1 accepts only string, password, integer and boolean fields: a choice becomes a string field whose
    description lists the allowed values, a number a string field (the hook parses it).
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, PasswordField, StringField
    from wtforms.validators import Optional

    widgets: dict[str, Any] = {}
    for name, field in fields.items():
        schema = field.get("schema", {})
        kinds = schema.get("type", [])
        description = field.get("description", "")
        if schema.get("enum"):
            description += f" (one of: {', '.join(schema['enum'])})"
        options: dict[str, Any] = {"description": description, "validators": [Optional()]}
        if "default" in schema:
            options["default"] = schema["default"]
        label = lazy_gettext(field.get("label", name))
        if schema.get("format") == "password":
            widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), **options)
        elif "boolean" in kinds:
            widgets[name] = BooleanField(label, **options)
        elif "integer" in kinds:
            widgets[name] = IntegerField(label, widget=BS3TextFieldWidget(), **options)
        else:
            widgets[name] = StringField(label, widget=BS3TextFieldWidget(), **options)
    return widgets
