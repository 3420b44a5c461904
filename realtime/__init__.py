"""Pushing events to online clients over WebSocket (the ``websockets`` package).

A client connects to ``/ws`` with a bearer token and, optionally, the last ``seq`` it saw; it
gets what it missed from the change log, then its user's events live as they are published on
the bus after commit. See ``realtime/README.md``.
"""
