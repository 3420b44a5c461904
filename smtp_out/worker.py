"""Delivery workers (placeholder being written: see smtp_out/README.md)."""

from __future__ import annotations

from storage.registry import Storage

__all__ = ["DeliveryWorker"]


class DeliveryWorker:
    name = "smtp-out"

    def __init__(self, store: Storage) -> None:
        self.store = store

    async def start(self) -> list[str]:
        return []

    async def stop(self, grace: float) -> None:
        return None
