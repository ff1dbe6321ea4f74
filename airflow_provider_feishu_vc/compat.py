"""Every difference between the Airflow releases this provider supports (3.1, 3.2, 3.3), in one place.

Each name resolves to the newest API the running Airflow has. Importing this module stays cheap: the
exceptions and the timetable are looked up when first used.

- ``conf``: ``airflow.sdk`` from 3.2; ``airflow.configuration`` on 3.1.
- ``AirflowFailException``, ``AirflowSensorTimeout``, ``TaskDeferred`` (and ``fail_task``, ``sensor_timed_out``),
  ``AirflowOptionalProviderFeatureException``: ``airflow.sdk.exceptions`` from 3.2; ``airflow.exceptions`` on 3.1.
- ``amask_secret``: ``airflow.sdk.log.amask_secret`` from 3.3 (it also tells the triggerer's supervisor); on
  3.1 and 3.2 ``mask_secret`` masks in this process, where trigger logs are written, and its message to the
  supervisor is refused at once inside a running loop (asgiref's ``async_to_sync``), so it never blocks.
- ``CronDataIntervalTimetable``: ``airflow.sdk`` from 3.2; ``airflow.timetables.interval`` on 3.1.
- The connection form: provider info ``conn-fields`` from 3.2; on 3.1 the hook's ``get_connection_form_widgets``
  and ``get_ui_field_behaviour``.
- ``get_variable`` / ``set_variable``: in a task or a triggerer through the SDK (its supervisor reaches the
  metadata DB); elsewhere (the API server's connection Test, the CLI, scripts) straight through the DB models.
- ``redact``: the masker's own function, wherever the release keeps it (``airflow.sdk.log`` re-exports it in 3.3).
- ``task_state``: the task's state store, kept across the tries of a task instance (``task_state_store``), from
  3.3; on 3.1 and 3.2 there is none, so a retry cannot know what an earlier try started.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk.log import mask_secret

try:
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[assignment,no-redef,unused-ignore]

if TYPE_CHECKING:
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowOptionalProviderFeatureException,
        AirflowSensorTimeout,
        TaskDeferred,
    )

__all__ = [
    "AIRFLOW_VERSION",
    "AirflowFailException",
    "AirflowOptionalProviderFeatureException",
    "AirflowSensorTimeout",
    "CronDataIntervalTimetable",
    "TaskDeferred",
    "amask_secret",
    "conf",
    "fail_task",
    "form_widgets",
    "get_variable",
    "mask_secret",
    "redact",
    "sensor_timed_out",
    "set_variable",
    "task_state",
]

#: Where each lazily resolved name lives: the newest module first.
_LAZY = {
    "AirflowFailException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowOptionalProviderFeatureException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "CronDataIntervalTimetable": ("airflow.sdk", "airflow.timetables.interval"),
    "TaskDeferred": ("airflow.sdk.exceptions", "airflow.exceptions"),
}


def _airflow_version() -> tuple[int, int]:
    from airflow import __version__

    major, minor = __version__.split(".")[:2]
    return int(major), int(minor)


#: The running Airflow's (major, minor).
AIRFLOW_VERSION = _airflow_version()


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


def _supervised() -> bool:
    """True in a task or a triggerer, where the SDK talks to the metadata DB through its supervisor."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def get_variable(key: str) -> str | None:
    """An Airflow Variable's value, or None when there is none."""
    if _supervised():
        from airflow.sdk import Variable

        value = Variable.get(key, default=None)
    else:
        from airflow.models.variable import Variable as StoredVariable

        value = StoredVariable.get(key, default_var=None)
    return None if value is None else str(value)


def set_variable(key: str, value: str, description: str) -> None:
    """Create or replace an Airflow Variable."""
    if _supervised():
        from airflow.sdk import Variable

        Variable.set(key, value, description=description)
        return
    from airflow.models.variable import Variable as StoredVariable

    StoredVariable.set(key, value, description=description)


def redact(text: str) -> str:
    """``text`` with every secret the masker knows replaced by ``***``."""
    homes = ("airflow.sdk.log", "airflow.sdk._shared.secrets_masker", "airflow.sdk.execution_time.secrets_masker")
    for module in homes:
        try:
            masker = getattr(importlib.import_module(module), "redact", None)
        except ImportError:
            continue
        if masker is not None:
            return str(masker(text))
    return text


def task_state(context: Mapping[str, Any]) -> Any | None:
    """The task instance's state store (``get`` / ``set`` / ``delete``), which survives retries; None before 3.3."""
    return context.get("task_state_store")


async def amask_secret(secret: str) -> None:
    """Register ``secret`` with the masker from async code (a trigger), with no blocking call on the loop."""
    try:
        from airflow.sdk.log import amask_secret as newest
    except ImportError:  # Airflow 3.1 and 3.2: masks in this process; telling the supervisor fails fast on a loop
        mask_secret(secret)
        return
    await newest(secret)


def form_widgets(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The provider info's ``conn-fields`` as the wtforms fields Airflow 3.1 asks a hook for.

    3.1 takes string, password, integer and boolean fields (a choice is a string with ``any_of``); a number
    that may be fractional is a string field, which the hook parses.
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, IntegerField, PasswordField, StringField
    from wtforms import validators as checks

    widgets: dict[str, Any] = {}
    for name, field in fields.items():
        schema = field.get("schema", {})
        kinds = schema.get("type", [])
        # ``checks.X`` (not ``from wtforms.validators import X``): 3.1's UI stubs wtforms and patches these names.
        validators = [checks.Optional(), checks.any_of(schema["enum"])] if schema.get("enum") else [checks.Optional()]
        common = {"validators": validators, "description": field.get("description", "")}
        label, default = lazy_gettext(field.get("label", name)), schema.get("default")
        if schema.get("format") == "password":
            widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), **common)
        elif "boolean" in kinds:
            widgets[name] = BooleanField(label, default=default, **common)
        elif "integer" in kinds:
            widgets[name] = IntegerField(label, default=default, widget=BS3TextFieldWidget(), **common)
        else:
            text = None if default is None else str(default)
            widgets[name] = StringField(label, default=text, widget=BS3TextFieldWidget(), **common)
    return widgets
