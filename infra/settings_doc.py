"""Documentation of the settings: rows for ``cadenza config`` and the README table.

Source: the field metadata of :class:`infra.settings.Settings` (descriptions and
defaults), so the README cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from infra.errors import ConfigError
from infra.settings import Settings


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else "(none)"
    return "(derived)" if value is None else str(value)


def settings_rows(settings: Settings | None = None) -> list[tuple[str, str, str, str]]:
    """(variable, current value, default, description) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        current = getattr(settings, name) if settings is not None else default
        rows.append((f"CADENZA_{name.upper()}", _show(current), _show(default), field.description or ""))
    return rows


def settings_markdown() -> str:
    """A Markdown table of every variable, its default and meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, _current, default, description in settings_rows():
        shown = default.replace(str(Settings.model_fields["cache_dir"].default), "~/.cache/cadenza")
        lines.append(f"| `{name}` | `{shown}` | {description} |")
    return "\n".join(lines)


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
