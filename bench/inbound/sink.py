"""A bare aiosmtpd server that takes every message and stores nothing: the baseline of
bench/inbound, i.e. what Python, asyncio and aiosmtpd alone cost per message on this machine.

    .venv/bin/python -m bench.inbound.sink PORT

It prints ``listening`` once it accepts connections and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_SIZE = 25 * 1024 * 1024
"""postroom's default, so both refuse and buffer alike."""


class Discard:
    """Accept every recipient and every message; keep nothing."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 OK: discarded"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Discard()

    def protocol() -> Any:
        return SMTP(
            handler,
            hostname="sink.bench.test",
            data_size_limit=MAX_MESSAGE_SIZE,
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    server = await loop.create_server(protocol, "127.0.0.1", port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("listening", flush=True)
    await stop.wait()
    server.close()


def main() -> int:
    asyncio.run(serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
