"""Per-user message templates: stored as written; checked and rendered by the gateway."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import AlreadyExists, NotFound
from storage.db.models import Template
from storage.db.types import utcnow

__all__ = ["create", "get_template", "list_templates", "remove", "update"]


async def get_template(
    session: AsyncSession, user_id: str, template_id: str, *, field: str | None = None
) -> Template:
    template = await session.scalar(
        select(Template).where(Template.id == template_id, Template.user_id == user_id)
    )
    if template is None:
        raise NotFound(f"no template {template_id}", field=field)
    return template


async def list_templates(session: AsyncSession, user_id: str) -> list[Template]:
    rows = await session.scalars(
        select(Template).where(Template.user_id == user_id).order_by(Template.name)
    )
    return list(rows)


async def _check_name_free(
    session: AsyncSession, user_id: str, name: str, keep: str | None = None
) -> None:
    other = await session.scalar(
        select(Template.id).where(Template.user_id == user_id, Template.name == name)
    )
    if other is not None and other != keep:
        raise AlreadyExists(f"you already have a template named {name!r}")


async def create(
    session: AsyncSession,
    user_id: str,
    *,
    name: str,
    subject: str,
    text: str | None,
    html: str | None,
    variables: list[str],
) -> Template:
    await _check_name_free(session, user_id, name)
    template = Template(
        user_id=user_id, name=name, subject=subject, text=text, html=html, variables=variables
    )
    session.add(template)
    await session.flush()
    return template


async def update(
    session: AsyncSession,
    template: Template,
    *,
    name: str,
    subject: str,
    text: str | None,
    html: str | None,
    variables: list[str],
) -> Template:
    await _check_name_free(session, template.user_id, name, keep=template.id)
    template.name, template.subject, template.text, template.html = name, subject, text, html
    template.variables, template.updated_at = variables, utcnow()
    await session.flush()
    return template


async def remove(session: AsyncSession, template: Template) -> None:
    await session.execute(delete(Template).where(Template.id == template.id))
