"""Our own dead-letter queue (`ddbbridge-P-X-dead-letters`): the record's full payload and why.

Lambda's on-failure destination only gets metadata (shard, sequence range); this queue gets what
`ddbbridge dlq redrive` needs to replay without the stream. Message body (JSON):
  {"v": 1, "pair", "region", "handler": "sender"|"applier", "source", "reason", "error",
   "payload_encoding": "json"|"zlib+base64", "payload": <the Lambda event record>,
   "part": i, "parts": n, "group": id}
`payload` is the whole Lambda event record (for the applier its `kinesis.data` is the base64 wire
record). A payload too large for one SQS message is compressed, and split into parts if still too
large (reassemble by `group`, in `part` order, then decompress).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 250_000  # SQS allows 256 KiB per message; leave room for the envelope


@dataclass(frozen=True)
class DeadLetter:
    index: int  # position of the record in the batch
    reason: str
    error: str
    payload: dict[str, Any]


class DeadLetterQueue:
    def __init__(
        self, client: Any, queue_url: str, *, pair: str, region: str, handler: str, source: str
    ) -> None:
        self.client = client
        self.queue_url = queue_url
        self.envelope = {"v": 1, "pair": pair, "region": region, "handler": handler, "source": source}

    def bodies(self, letter: DeadLetter) -> list[str]:
        base = {**self.envelope, "reason": letter.reason, "error": letter.error[:2000]}
        body = json.dumps({**base, "payload_encoding": "json", "payload": letter.payload}, default=str)
        if len(body.encode("utf-8")) <= MAX_BODY_BYTES:
            return [body]
        raw = json.dumps(letter.payload, default=str).encode("utf-8")
        packed = base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
        size = MAX_BODY_BYTES - 4000
        parts = [packed[i : i + size] for i in range(0, len(packed), size)] or [""]
        group = hashlib.sha256(raw).hexdigest()[:32]
        return [
            json.dumps(
                {
                    **base,
                    "payload_encoding": "zlib+base64",
                    "payload": part,
                    "part": i,
                    "parts": len(parts),
                    "group": group,
                }
            )
            for i, part in enumerate(parts)
        ]

    def send(self, letter: DeadLetter) -> None:
        for body in self.bodies(letter):
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=body)
