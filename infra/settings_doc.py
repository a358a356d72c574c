"""Documentation of the settings: rows for ``cadenza config`` and the README table.

Source: the field metadata of :class:`infra.settings.Settings` (descriptions and
defaults), so the README cannot drift from the code.
"""

from __future__ import annotations

from pydantic import SecretStr

from infra.settings import Settings


def _show(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********"
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
