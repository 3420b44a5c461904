"""Message templates: Jinja2 (sandboxed) with declared variables, filled in by POST /send."""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import CurrentUser, Store
from gateway.send_schemas import TemplateIn, TemplateList, TemplateOut
from gateway.templating import check_template
from storage.db.models import Template
from storage.repositories import templates
from storage.transaction import transaction

router = APIRouter(tags=["templates"])


def _out(template: Template) -> TemplateOut:
    return TemplateOut.model_validate(template, from_attributes=True)


@router.post("/templates", status_code=201, response_model=TemplateOut)
async def create_template(store: Store, user: CurrentUser, body: TemplateIn) -> TemplateOut:
    """Save a template; every variable it uses must be declared in ``variables``."""
    check_template(body.subject, body.text, body.html, body.variables)
    async with transaction(store) as session:
        template = await templates.create(session, user.id, **body.model_dump())
        return _out(template)


@router.get("/templates", response_model=TemplateList)
async def list_templates(store: Store, user: CurrentUser) -> TemplateList:
    async with store.db.session() as session:
        return TemplateList(
            items=[_out(t) for t in await templates.list_templates(session, user.id)]
        )


@router.get("/templates/{template_id}", response_model=TemplateOut)
async def get_template(store: Store, user: CurrentUser, template_id: str) -> TemplateOut:
    async with store.db.session() as session:
        return _out(await templates.get_template(session, user.id, template_id))


@router.put("/templates/{template_id}", response_model=TemplateOut)
async def update_template(
    store: Store, user: CurrentUser, template_id: str, body: TemplateIn
) -> TemplateOut:
    check_template(body.subject, body.text, body.html, body.variables)
    async with transaction(store) as session:
        template = await templates.get_template(session, user.id, template_id)
        return _out(await templates.update(session, template, **body.model_dump()))


@router.delete("/templates/{template_id}", status_code=204)
async def delete_template(store: Store, user: CurrentUser, template_id: str) -> Response:
    async with transaction(store) as session:
        await templates.remove(session, await templates.get_template(session, user.id, template_id))
    return Response(status_code=204)
