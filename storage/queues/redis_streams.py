"""A queue on Redis Streams (production, when ``POSTROOM_REDIS_URL`` is set).

Layout, every key under ``settings.redis_prefix`` (``postroom:`` by default):

- ``<prefix>queue:<name>``: a stream; one entry per job, fields ``id`` (the job id, stable
  across releases), ``attempts`` (deliveries before this entry existed) and ``payload`` (JSON).
  One consumer group, ``workers``, reads it, so each entry goes to one consumer at a time.
- ``<prefix>queue:<name>:delayed``: a sorted set of jobs put or released with a delay, scored
  by the millisecond they fall due on the Redis clock (one clock for every host).

A claim is one Lua script, so it is atomic: it (re)creates the group if it is missing (after a
FLUSHALL or a Redis restart without persistence), moves due delayed jobs into the stream,
takes back with XAUTOCLAIM entries idle longer than the lease (their consumer died without
acking), and reads new entries with XREADGROUP. Only when that finds nothing does the client
wait in a bounded ``XREADGROUP BLOCK``, so a ``put`` wakes a waiting consumer at once while due
delayed jobs and expired leases are still noticed within ``POLL_SECONDS``.

The lease is judged by the consumer that claims: an entry comes back once it has been idle for
longer than the claimer's ``lease``. Every consumer of one queue runs with the same lease (one
setting per role), which makes that the lease the first consumer was given.

Redis may lose everything; the database may not. A job here is only a hint, and each role's
sweeper (``storage.queues.consumers``) re-enqueues whatever the database says is still due, so
an emptied Redis costs time, never mail. Keys are not hash-tagged: one Redis (or a primary
behind Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from storage.queues import Hint, Job

__all__ = ["RedisStreamQueue", "StreamJob"]

GROUP = "workers"
POLL_SECONDS = 0.5
PROMOTE_BATCH = 1000
AUTOCLAIM_ROUNDS = 100

# Enqueue now (XADD) or later (ZADD scored by the Redis clock). Shared by put and release.
_ENQUEUE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function enqueue(stream, delayed, id, attempts, payload, delay_ms)
  if tonumber(delay_ms) > 0 then
    local due = string.format('%d', now_ms() + tonumber(delay_ms))
    redis.call('ZADD', delayed, due, id .. '|' .. attempts .. '|' .. payload)
  else
    redis.call('XADD', stream, '*', 'id', id, 'attempts', attempts, 'payload', payload)
  end
end
"""

# KEYS: stream, delayed. ARGV: job id, attempts, payload, delay in ms.
_PUT = (
    _ENQUEUE
    + """
enqueue(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)

# KEYS: stream, delayed. ARGV: group, consumer, lease in ms, limit.
# Returns {entries, ms until the next delayed job is due or -1}; an entry is
# {stream id, {field, value, ...}, delivery count}.
_CLAIM = (
    _ENQUEUE
    + f"""
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer, min_idle, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

-- a vanished group (FLUSHALL, a restart without persistence) is made again, reading from the
-- start of whatever the stream holds; BUSYGROUP (it exists) is the usual answer and is ignored
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')

-- due delayed jobs move into the stream; ZREM and XADD happen in this one atomic script
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', string.format('%d', now),
                       'LIMIT', 0, {PROMOTE_BATCH})
for _, member in ipairs(due) do
  redis.call('ZREM', delayed, member)
  local a = string.find(member, '|', 1, true)
  local b = string.find(member, '|', a + 1, true)
  enqueue(stream, delayed, string.sub(member, 1, a - 1), string.sub(member, a + 1, b - 1),
          string.sub(member, b + 1), 0)
end

local claimed = {{}}
-- entries held longer than the lease: their consumer died (or hangs); take them over.
-- XAUTOCLAIM scans a bounded slice of the pending list per call, so follow its cursor.
local cursor = '0-0'
for _ = 1, {AUTOCLAIM_ROUNDS} do
  if #claimed >= limit then break end
  local reply = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor,
                           'COUNT', limit - #claimed)
  cursor = reply[1]
  for _, entry in ipairs(reply[2]) do
    if entry then
      local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)
      local deliveries = 1
      if pending[1] then deliveries = pending[1][4] end
      table.insert(claimed, {{entry[1], entry[2], deliveries}})
    end
  end
  if cursor == '0-0' then break end
end

-- then entries never delivered to anyone
if #claimed < limit then
  local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #claimed,
                           'STREAMS', stream, '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      table.insert(claimed, {{entry[1], entry[2], 1}})
    end
  end
end

local next_due = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then next_due = math.max(0, tonumber(first[2]) - now) end
return {{claimed, next_due}}
"""
)

# KEYS: stream. ARGV: group, stream id.
_ACK = """
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

# KEYS: stream, delayed. ARGV: group, stream id, job id, attempts, payload, delay in ms.
_RELEASE = (
    _ENQUEUE
    + """
local acked = redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
-- 0 on a live stream: another consumer took the job over and finished it; handing it back
-- would redo the work. A missing stream or group (Redis was emptied) means nobody holds the
-- job any more: hand it back.
if acked == 0 and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
enqueue(KEYS[1], KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""
)


@dataclass(frozen=True)
class StreamJob(Job):
    """A job plus the stream entry that carried it, which ``ack`` and ``release`` address.

    The job ``id`` stays the same when a release re-adds the job; the entry id does not.
    """

    entry_id: str = field(default="", compare=False)


class RedisStreamQueue:
    """The ``Queue`` protocol on Redis Streams, so queue traffic leaves the metadata database.

    Every key it touches starts with ``prefix``, so several installs (or tests) share a Redis.
    """

    def __init__(self, url: str, prefix: str = "postroom:") -> None:
        self.prefix = prefix
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=5
        )
        self._put_script = self._redis.register_script(_PUT)
        self._claim_script = self._redis.register_script(_CLAIM)
        self._ack_script = self._redis.register_script(_ACK)
        self._release_script = self._redis.register_script(_RELEASE)

    def _keys(self, queue: str) -> list[str]:
        stream = f"{self.prefix}queue:{queue}"
        return [stream, f"{stream}:delayed"]

    async def put(self, queue: str, payload: dict[str, Any], *, delay: float = 0.0) -> str:
        job_id = uuid.uuid4().hex
        await self._put_script(
            keys=self._keys(queue), args=[job_id, 0, _encode(payload), _millis(delay)]
        )
        return job_id

    async def put_many(self, hints: list[Hint]) -> None:
        if not hints:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue, payload in hints:
                await self._put_script(
                    keys=self._keys(queue),
                    args=[uuid.uuid4().hex, 0, _encode(payload), 0],
                    client=pipe,
                )
            await pipe.execute()

    async def claim(
        self, queue: str, consumer: str, *, limit: int = 10, lease: float = 120.0, wait: float = 1.0
    ) -> list[Job]:
        deadline = time.monotonic() + wait
        while True:
            jobs, next_due = await self._claim_now(queue, consumer, limit, lease)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0:
                return jobs
            block = min(remaining, POLL_SECONDS)
            if next_due is not None:
                block = min(block, next_due)
            jobs = await self._read_blocking(queue, consumer, limit, block)
            if jobs:
                return jobs

    async def _claim_now(
        self, queue: str, consumer: str, limit: int, lease: float
    ) -> tuple[list[Job], float | None]:
        """One atomic pass: promote due delayed jobs, take over expired leases, read new ones."""
        entries, next_due_ms = await self._claim_script(
            keys=self._keys(queue), args=[GROUP, consumer, _millis(lease), max(1, limit)]
        )
        jobs: list[Job] = [
            _job(queue, entry_id, _pairs(fields), int(deliveries))
            for entry_id, fields, deliveries in entries
        ]
        next_due = None if int(next_due_ms) < 0 else int(next_due_ms) / 1000
        return jobs, next_due

    async def _read_blocking(
        self, queue: str, consumer: str, limit: int, seconds: float
    ) -> list[Job]:
        """Wait up to ``seconds`` for new entries; a put wakes this at once."""
        stream = self._keys(queue)[0]
        try:
            # RESP2 (the client default): [[stream, [(entry id, {field: value}), ...]]] or []
            reply: Any
            reply = await self._redis.xreadgroup(
                GROUP,
                consumer,
                {stream: ">"},
                count=max(1, limit),
                # BLOCK 0 would mean forever: never ask for less than a millisecond
                block=max(1, _millis(seconds)),
            )
        except ResponseError as exc:
            # NOGROUP: the group or stream vanished (FLUSHALL); UNBLOCKED: it vanished while
            # this client waited. The next claim pass makes the group again.
            if str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                return []
            raise
        return [
            _job(queue, entry_id, fields, 1)
            for _stream, entries in reply or []
            for entry_id, fields in entries
            if fields is not None
        ]

    async def ack(self, job: Job) -> None:
        await self._ack_script(keys=self._keys(job.queue)[:1], args=[GROUP, _entry(job)])

    async def release(self, job: Job, *, delay: float = 0.0) -> None:
        await self._release_script(
            keys=self._keys(job.queue),
            args=[GROUP, _entry(job), job.id, job.attempts, _encode(job.payload), _millis(delay)],
        )

    async def depth(self, queue: str) -> int:
        stream, delayed = self._keys(queue)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xlen(stream)
            pipe.zcard(delayed)
            queued, waiting = await pipe.execute()
        return int(queued) + int(waiting)

    async def close(self) -> None:
        await self._redis.aclose()


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def _pairs(flat: list[str]) -> dict[str, str]:
    """A Lua reply's ``{field, value, field, value}`` as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _job(queue: str, entry_id: str, fields: dict[str, str], deliveries: int) -> StreamJob:
    """``attempts`` counts every delivery: those before this entry plus this entry's own."""
    return StreamJob(
        id=fields["id"],
        queue=queue,
        payload=json.loads(fields["payload"]),
        attempts=int(fields["attempts"]) + deliveries,
        entry_id=entry_id,
    )


def _entry(job: Job) -> str:
    if not isinstance(job, StreamJob) or not job.entry_id:
        raise TypeError(f"job {job.id} did not come from RedisStreamQueue.claim; cannot settle it")
    return job.entry_id
