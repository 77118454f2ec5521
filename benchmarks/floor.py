"""The floor: the cheapest asyncio SQS consumer on the service's stack (aiohttp, orjson,
botocore's SigV4, uvloop), to set the service's CPU per message against.

`receivers` tasks, each looping: POST a ReceiveMessage (the service's own request: 10
messages, the drain wait as long poll, the same two system attributes), pull the receipt
handles out of the answer, POST one DeleteMessageBatch of them, until `expected` messages
are deleted. What it does, exactly:

- Receives are signed before the clock starts: one signed request per receiver, reused
  for every call (the body never changes; SigV4 lets a signed request be sent again
  within its 5-minute window, longer than any run here). So the floor pays no receive
  signing at all.
- Deletes are signed in the timed part (their body names the receipt handles, unknown
  until the receive returns), with botocore's SigV4Auth as the service signs. The CPU of
  those signing calls is measured apart (`thread_time` around each, the loop is one
  thread) and reported as `signing_cpu_seconds`: `cpu_seconds` includes it.
- The answer is not parsed: the receipt handles come out of a compiled regular
  expression over the bytes (`"ReceiptHandle":"([^"]*)"`, about 2 µs per answer of 10
  against 4 µs for orjson.loads of it; fauxqs's JSON is compact, and a body's quotes
  are escaped so a body cannot match). The delete body is joined from bytes; its answer
  is only checked for a status 200 and no failed entry.
- No message bodies are looked at, nothing is retried, nothing else runs.

    python -m benchmarks.floor ENDPOINT QUEUE_URL RECEIVERS EXPECTED WAIT_SECONDS

prints one JSON line like `baselines.bare_sqs`'s (first receive to last delete, wall
and process CPU), plus `signing_cpu_seconds`.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any

import aiohttp
import orjson

from benchmarks.baselines import _Clock
from benchmarks.wire import credentials, endpoint_url, post, receive_body, signed
from ingestor.cli.runtime import run_async

RECEIPT = re.compile(rb'"ReceiptHandle":"([^"]*)"')


def delete_body(queue_url_json: bytes, handles: list[bytes]) -> bytes:
    entries = b",".join(
        b'{"Id":"%d","ReceiptHandle":"%s"}' % (i, handle) for i, handle in enumerate(handles)
    )
    return b'{"QueueUrl":%s,"Entries":[%s]}' % (queue_url_json, entries)


class _Floor:
    def __init__(self, endpoint: str, queue_url: str, expected: int, idle_timeout: float):
        self.url = endpoint_url(endpoint)
        self.queue_url_json = orjson.dumps(queue_url)
        self.keys = credentials()
        self.expected = expected
        self.idle_timeout = idle_timeout
        self.clock = _Clock()
        self.signing = 0.0  # CPU seconds spent signing deletes

    async def receiver(self, http: aiohttp.ClientSession, body: bytes, headers: Any) -> None:
        clock = self.clock
        while clock.count < self.expected:
            handles = RECEIPT.findall(await post(http, self.url, body, headers))
            if not handles:
                if time.monotonic() - clock.progress > self.idle_timeout:
                    raise TimeoutError(f"floor: {clock.count} of {self.expected}, then nothing")
                continue
            clock.received()
            await self.delete(http, handles)
            clock.deleted(len(handles))

    async def delete(self, http: aiohttp.ClientSession, handles: list[bytes]) -> None:
        body = delete_body(self.queue_url_json, handles)
        started = time.thread_time()
        headers = signed(self.keys, self.url, "DeleteMessageBatch", body)
        self.signing += time.thread_time() - started
        answer = await post(http, self.url, body, headers)
        if b'"Failed":[{' in answer:
            raise RuntimeError(f"floor: delete failed: {answer[:300]!r}")


async def floor(
    endpoint: str,
    queue_url: str,
    receivers: int,
    expected: int,
    wait_seconds: int,
    idle_timeout: float = 30.0,
) -> dict[str, float]:
    state = _Floor(endpoint, queue_url, expected, idle_timeout)
    body = receive_body(queue_url, wait_seconds)
    # Signed before the clock starts (see the module's docstring).
    pool = [signed(state.keys, state.url, "ReceiveMessage", body) for _ in range(receivers)]
    connector = aiohttp.TCPConnector(limit=receivers)
    # Receivers in a long poll when the count is reached finish it outside the clock.
    async with aiohttp.ClientSession(connector=connector) as http, asyncio.TaskGroup() as group:
        for headers in pool:
            group.create_task(state.receiver(http, body, headers))
    return {**state.clock.result(), "signing_cpu_seconds": state.signing}


def main(argv: list[str]) -> int:
    endpoint, queue_url, receivers, expected, wait = argv
    result = run_async(floor(endpoint, queue_url, int(receivers), int(expected), int(wait)))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
