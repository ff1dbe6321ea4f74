"""The property every boundary holds: the documented result, or a typed error with a message that names what was
wrong and holds no secret; anything else is a failure, counted and re-raised."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from hypothesis.errors import StopTest, UnsatisfiedAssumption

from airflow_provider_feishu_vc.client.errors import FeishuVCError
from tests.fuzz.conftest import fail, observe


@contextmanager
def boundary(
    name: str, *, secrets: Iterable[str] = (), allowed: tuple[type[BaseException], ...] = (FeishuVCError,)
) -> Iterator[None]:
    """Run one example of ``name``: a typed error (``allowed``) is an outcome, counted; its message must hold none of
    ``secrets``. Any other exception, or a broken assertion inside the block, is a failure; Hypothesis abandoning the
    example (out of data for a ``data.draw`` inside it, or an ``assume``) is neither."""
    try:
        yield
    except (StopTest, UnsatisfiedAssumption):
        raise
    except allowed as error:
        message = str(error)
        leaked = [secret for secret in secrets if secret and secret in message]
        if leaked or not message.strip():
            fail(name)
            raise AssertionError(
                f"{type(error).__name__} message {'leaks a secret' if leaked else 'is empty'}: {message!r}"
            ) from error
        observe(name, error)
    except BaseException:
        fail(name)
        raise
    else:
        observe(name)
