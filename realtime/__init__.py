"""Pushing events to online clients over WebSocket (the ``websockets`` package).

A client connects to ``/ws`` with a bearer token, and receives its user's events as JSON as
they are published on the bus after commit. Catch-up, long-poll fallback and the robustness
limits arrive with the realtime issue. See ``realtime/README.md``.
"""
