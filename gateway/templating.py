"""Rendering users' templates safely: Jinja2's sandbox, and no variable left to chance.

Templates come from users, so they run in :class:`jinja2.sandbox.SandboxedEnvironment` (no
attribute tricks into Python internals) with :class:`jinja2.StrictUndefined` (a misspelt name
fails loudly instead of rendering as nothing). A template must declare every variable it uses
(checked when it is saved), so a send can name exactly which values are missing before
rendering anything. HTML parts autoescape their values; text parts and the subject do not, and
the subject still passes the header check in :mod:`gateway.compose`.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from postroom.errors import InvalidInput
from storage.db.models import Template

__all__ = ["Rendered", "check_template", "render"]

_TEXT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)

Rendered = tuple[str, str | None, str | None]
"""subject, text, html"""


def _parts(subject: str, text: str | None, html: str | None) -> list[tuple[str, str, Any]]:
    parts = [("subject", subject, _TEXT)]
    if text is not None:
        parts.append(("text", text, _TEXT))
    if html is not None:
        parts.append(("html", html, _HTML))
    return parts


def check_template(subject: str, text: str | None, html: str | None, variables: list[str]) -> None:
    """Refuse a template that does not parse or uses a variable it does not declare."""
    for index, name in enumerate(variables):
        if not name.isidentifier():
            raise InvalidInput(
                f"{name!r} is not a variable name (letters, digits, _)", field=f"variables[{index}]"
            )
    if text is None and html is None:
        raise InvalidInput("give a text or an html body (or both)", field="text")
    declared = set(variables)
    for part, source, env in _parts(subject, text, html):
        try:
            used = meta.find_undeclared_variables(env.parse(source))
        except TemplateSyntaxError as exc:
            raise InvalidInput(
                f"template syntax error on line {exc.lineno}: {exc.message}", field=part
            ) from exc
        if undeclared := sorted(used - declared):
            raise InvalidInput(
                f"the {part} uses variables not declared in variables: {', '.join(undeclared)}",
                field="variables",
            )


def render(template: Template, values: dict[str, Any]) -> Rendered:
    """The template's parts filled with ``values``; 422 naming every missing variable."""
    if missing := [name for name in template.variables if name not in values]:
        raise InvalidInput(
            f"template {template.name!r} needs values for: {', '.join(missing)}",
            field="variables",
        )
    rendered: dict[str, str] = {}
    for part, source, env in _parts(template.subject, template.text, template.html):
        try:
            rendered[part] = env.from_string(source).render(values)
        except TemplateError as exc:
            raise InvalidInput(
                f"template {template.name!r} could not be filled ({part}): {exc.message}",
                field="variables",
            ) from exc
    return rendered["subject"], rendered.get("text"), rendered.get("html")
