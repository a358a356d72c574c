"""Documentation of the settings: rows for ``cadenza config`` and the README table.

Source: the field metadata of each component's settings class (:data:`infra.settings.COMPONENTS`:
descriptions and defaults), so the README cannot drift from the code. Rows come grouped by
component, in the order of ``COMPONENTS``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from infra.errors import ConfigError
from infra.settings import COMPONENTS, Settings


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else "(none)"
    return "(derived)" if value is None else str(value)


def component_name(cls: type) -> str:
    """``KafkaSettings`` -> ``Kafka``: the heading of its group."""
    return cls.__name__.removesuffix("Settings")


def components() -> list[tuple[str, str, list[str]]]:
    """(heading, module, field names) of each component, in :data:`COMPONENTS` order (no two
    components share a field: ``tests/infra/test_settings.py``)."""
    return [
        (component_name(cls), cls.__module__, list(cls.model_fields))  # type: ignore[attr-defined]
        for cls in COMPONENTS
    ]


def _row(name: str, settings: Settings | None) -> tuple[str, str, str, str]:
    field = Settings.model_fields[name]
    current = getattr(settings, name) if settings is not None else field.default
    return f"CADENZA_{name.upper()}", _show(current), _show(field.default), field.description or ""


def settings_rows(settings: Settings | None = None) -> list[tuple[str, str, str, str, str]]:
    """(component, variable, current value, default, description) for every setting."""
    return [(heading, *_row(name, settings)) for heading, _module, names in components() for name in names]


def settings_markdown() -> str:
    """One Markdown table per component: every variable, its default and meaning."""
    home = str(Settings.model_fields["cache_dir"].default)
    lines: list[str] = []
    for heading, module, names in components():
        lines += ["", f"**{heading}** (`{module}`)", "", "| variable | default | meaning |", "|---|---|---|"]
        for name in names:
            variable, _current, default, description = _row(name, None)
            lines.append(f"| `{variable}` | `{default.replace(home, '~/.cache/cadenza')}` | {description} |")
    return "\n".join(lines[1:])


START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def update_readme(path: Path) -> bool:
    """Rewrite the table between the README's markers; True if it changed."""
    text = path.read_text()
    if START not in text or END not in text:
        raise ConfigError(f"{path} has no {START} … {END} markers for the settings table")
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    new = f"{head}{START}\n{settings_markdown()}\n{END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text
