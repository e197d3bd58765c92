"""Publish mensajero send jobs and cancels, and watch outcomes and inbound messages, from
Python (pika).

A small library for producers that are not Rust; ``mensajero_py.py`` is its command line.
It mirrors what mensajero's own producer does (README "Sending a job", SPEC §1 and §5):

* jobs go to the durable direct exchange ``<prefix>.jobs`` with routing key ``send`` (or
  ``bulk`` for ``"priority": "bulk"``), persistent, ``content_type=application/json``, with an
  AMQP ``timestamp`` (``ttl_seconds`` counts from it) and the job's id as ``message_id``;
* every publish is ``mandatory`` and waits for the broker's confirm: a message that reached no
  queue comes back as a *return*, which is a failure here even though the broker acks it;
* outcomes are read from a private, exclusive, auto-delete queue bound to the topic exchange
  ``<prefix>.outcomes`` (routing keys ``<status>.<channel>``), so watching never steals or
  holds back anyone else's events; inbound messages (customers' replies) the same way from
  ``<prefix>.inbound`` (routing keys ``<type>.<channel>``, format in docs/inbound.schema.json).

Only the standard library and pika. Python 3.9+.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

import pika
from pika.exceptions import ChannelClosedByBroker, NackError, UnroutableError

# The worker's defaults (config/default.toml), read from the same environment variables the
# worker reads, so one environment configures both.
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
DEFAULT_PREFIX = "mensajero"
# The channel of config/demo.toml.
DEFAULT_CHANNEL = "demo"

SEND_KEY = "send"
BULK_KEY = "bulk"
# Cancel (SPEC §10): a message on the jobs exchange with this routing key. Workers that do
# not support cancel yet bind no queue to it, so a cancel published to them is returned.
CANCEL_KEY = "cancel"

PERSISTENT = 2


def env_url() -> str:
    """The AMQP URL: ``MENSAJERO__AMQP__URL``, else the worker's default."""
    return os.environ.get("MENSAJERO__AMQP__URL", DEFAULT_URL)


def env_prefix() -> str:
    """The exchange/queue name prefix: ``MENSAJERO__AMQP__PREFIX``, else ``mensajero``."""
    return os.environ.get("MENSAJERO__AMQP__PREFIX", DEFAULT_PREFIX)


class PublishError(Exception):
    """The broker did not take a message; nothing was enqueued."""


class Returned(PublishError):
    """The message was returned (``mandatory``): no queue is bound to its routing key."""

    def __init__(self, exchange: str, routing_key: str, reply_code: int, reply_text: str):
        self.exchange = exchange
        self.routing_key = routing_key
        self.reply_code = reply_code
        self.reply_text = reply_text
        super().__init__(
            f"returned by the broker: {reply_code} {reply_text} "
            f"(exchange {exchange}, routing key {routing_key!r}): no queue took it"
        )


class Nacked(PublishError):
    """The broker refused the message (negative confirm), e.g. a queue at its length limit."""


class NoExchange(PublishError):
    """The exchange does not exist: no worker (or ``mensajero topology``) declared it."""


@dataclass
class Outcome:
    """One outcome event as it arrived."""

    routing_key: str
    event: Dict[str, Any]

    def line(self) -> str:
        """The event on one line, in the format of ``mensajero outcomes``."""
        e = self.event
        error = e.get("error")
        if error:
            detail = f"{error.get('class')}/{error.get('code')}: {error.get('message')}"
        elif e.get("original_job_id"):
            detail = f"duplicate of {e['original_job_id']}"
        elif e.get("provider_message_id"):
            detail = f"provider id {e['provider_message_id']}"
        else:
            detail = ""
        line = f"{self.routing_key:<28} {e.get('job_id', '?'):<24} attempt {e.get('attempt', 0)} {detail}"
        return line.rstrip()


def text_job(
    channel: str,
    to: str,
    text: str,
    job_id: Optional[str] = None,
    idempotency_key: Optional[str] = None,
    **fields: Any,
) -> Dict[str, Any]:
    """A text-message job (SPEC §1). Extra keyword fields (``metadata``, ``ttl_seconds``,
    ``priority``…) are added as they are; the worker rejects unknown ones."""
    job: Dict[str, Any] = {
        "id": job_id or f"py-{uuid.uuid4()}",
        "channel": channel,
        "to": to,
        "message": {"type": "text", "text": {"body": text}},
    }
    if idempotency_key:
        job["idempotency_key"] = idempotency_key
    job.update(fields)
    return job


class Producer:
    """A confirmed, mandatory publisher of jobs and cancels on one connection.

    Use it as a context manager; each ``send``/``cancel`` returns once the broker has
    confirmed the message, or raises a ``PublishError``.
    """

    def __init__(self, url: Optional[str] = None, prefix: Optional[str] = None):
        self.url = url or env_url()
        self.prefix = prefix or env_prefix()
        self.exchange = f"{self.prefix}.jobs"
        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": "mensajero-python-producer"}
        self._connection = pika.BlockingConnection(params)
        self._channel = None
        self._open_channel()

    def _open_channel(self) -> None:
        self._channel = self._connection.channel()
        # Publisher confirms: basic_publish now blocks until the broker acks or nacks, and
        # raises UnroutableError for a mandatory message that was returned.
        self._channel.confirm_delivery()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()

    def send(self, job: Dict[str, Any], routing_key: Optional[str] = None) -> str:
        """Publish one job (a dict, serialised here) and wait for its confirm; returns the
        routing key used: ``bulk`` for ``"priority": "bulk"``, else ``send``. The worker
        validates the job: an invalid one ends ``failed`` with class ``invalid``."""
        if routing_key is None:
            routing_key = BULK_KEY if job.get("priority") == "bulk" else SEND_KEY
        body = json.dumps(job, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.publish(routing_key, body, message_id=str(job.get("id", "")) or None)
        return routing_key

    def cancel(
        self,
        channel: str,
        idempotency_key: Optional[str] = None,
        job_id: Optional[str] = None,
        reason: Optional[str] = None,
    ) -> None:
        """Ask the workers not to send a job (SPEC §10), by its idempotency key or, for a job
        that had no key of its own, its id. Published like a job; a worker without cancel
        support binds nothing to ``cancel``, so the message is returned (``Returned``)."""
        if (idempotency_key is None) == (job_id is None):
            raise ValueError("give exactly one of idempotency_key and job_id")
        target: Dict[str, Any] = {"channel": channel}
        if idempotency_key is not None:
            target["idempotency_key"] = idempotency_key
        else:
            target["id"] = job_id
        if reason:
            target["reason"] = reason
        body = json.dumps({"cancel": target}, ensure_ascii=False).encode("utf-8")
        self.publish(CANCEL_KEY, body)

    def publish(self, routing_key: str, body: bytes, message_id: Optional[str] = None) -> None:
        """Publish bytes to the jobs exchange: persistent, mandatory, confirmed."""
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            message_id=message_id or str(uuid.uuid4()),
            # Seconds since the epoch: the worker counts ttl_seconds from it.
            timestamp=int(time.time()),
            app_id="mensajero-python-example",
        )
        try:
            self._channel.basic_publish(
                exchange=self.exchange,
                routing_key=routing_key,
                body=body,
                properties=properties,
                mandatory=True,
            )
        except UnroutableError as e:
            returned = e.messages[0].method if e.messages else None
            raise Returned(
                getattr(returned, "exchange", self.exchange),
                getattr(returned, "routing_key", routing_key),
                getattr(returned, "reply_code", 312),
                getattr(returned, "reply_text", "NO_ROUTE"),
            ) from e
        except NackError as e:
            raise Nacked(f"the broker refused the message (nack) on {self.exchange}") from e
        except ChannelClosedByBroker as e:
            # The broker closes the channel on a publish to a missing exchange; reopen it so
            # the producer stays usable.
            self._open_channel()
            if e.reply_code == 404:
                raise NoExchange(
                    f"exchange {self.exchange} does not exist: is the prefix right, and has a "
                    f"worker (or `mensajero topology`) declared it? ({e.reply_text})"
                ) from e
            raise PublishError(f"channel closed by the broker: {e.reply_code} {e.reply_text}") from e


def _watch(
    exchange_name: str,
    url: Optional[str],
    prefix: Optional[str],
    bindings: Iterable[str],
    idle: Optional[float],
    on_ready: Optional[Callable[[str], None]],
) -> Iterator[Tuple[str, bytes]]:
    """Yield (routing key, body) from the topic exchange ``<prefix>.<exchange_name>`` through
    a private queue bound with ``bindings``, acking each after it is yielded."""
    url = url or env_url()
    prefix = prefix or env_prefix()
    exchange = f"{prefix}.{exchange_name}"
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": f"mensajero-python-{exchange_name}"}
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        # Same arguments as the worker's declaration, so this is idempotent and watching can
        # start before any worker has run.
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for pattern in bindings:
            channel.queue_bind(queue, exchange, routing_key=pattern)
        channel.basic_qos(prefetch_count=100)
        if on_ready:
            on_ready(queue)
        for method, _properties, body in channel.consume(queue, inactivity_timeout=idle):
            if method is None:  # idle for `idle` seconds
                break
            yield method.routing_key, body
            channel.basic_ack(method.delivery_tag)
    finally:
        if connection.is_open:
            connection.close()


def watch_outcomes(
    url: Optional[str] = None,
    prefix: Optional[str] = None,
    bindings: Iterable[str] = ("#",),
    idle: Optional[float] = None,
    on_ready: Optional[Callable[[str], None]] = None,
) -> Iterator[Outcome]:
    """Yield outcome events as they arrive, acking each after it is yielded (at least once:
    deduplicate on ``event_id``). ``bindings`` are topic patterns on ``<status>.<channel>``:
    ``#`` for all, ``*.demo`` for one channel, ``failed.#`` for failures. Stops after ``idle``
    seconds without an event (never, when ``None``). ``on_ready`` is called with the queue's
    name once it is bound: events published before that are not seen."""
    # closing(): the connection goes when the caller stops iterating, not when the inner
    # generator happens to be collected.
    with contextlib.closing(_watch("outcomes", url, prefix, bindings, idle, on_ready)) as events:
        for routing_key, body in events:
            try:
                event = json.loads(body)
            except ValueError:
                event = {"job_id": "?", "raw": body.decode("utf-8", "replace")}
            yield Outcome(routing_key, event)


def watch_inbound(
    url: Optional[str] = None,
    prefix: Optional[str] = None,
    bindings: Iterable[str] = ("#",),
    idle: Optional[float] = None,
    on_ready: Optional[Callable[[str], None]] = None,
) -> Iterator[Dict[str, Any]]:
    """Yield inbound message events (what customers write back) as dicts, acking each after
    it is yielded (at least once: deduplicate on ``event_id``, which stays the same when a
    gateway repeats a webhook). ``bindings`` are topic patterns on ``<type>.<channel>``:
    ``#`` for all, ``*.demo`` for one channel, ``reply.*`` for answers to buttons and lists.
    ``idle`` and ``on_ready`` as for ``watch_outcomes``. A body that is not JSON (mensajero
    never publishes one) comes as ``{"unreadable": <its text>}``."""
    with contextlib.closing(_watch("inbound", url, prefix, bindings, idle, on_ready)) as events:
        for _routing_key, body in events:
            try:
                event = json.loads(body)
            except ValueError:
                event = {"unreadable": body.decode("utf-8", "replace")}
            yield event
