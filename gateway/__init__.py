"""The HTTP face of postroom: a FastAPI app serving the REST API under ``/api/v1`` and the web UI.

It authenticates users with bearer tokens, reads mail from the metadata database, and sends by
recording a transactional outbox (see ``storage.repositories.outbound``). It never talks to the
other services directly. See ``gateway/README.md``.
"""
