#!/usr/bin/env python3
"""mensajero from Python: send jobs, cancel them, watch outcomes and inbound messages.

    python mensajero_py.py send --to +5491126032641 --text "Hola!"
    python mensajero_py.py send --file ../jobs.jsonl          # one JSON job a line, or - for stdin
    python mensajero_py.py watch                              # every outcome; --binding '*.demo'
    python mensajero_py.py inbound                            # customers' messages, JSON lines
    python mensajero_py.py cancel --key pedido-1847-confirmacion

Connection settings come from --url / --prefix, else MENSAJERO__AMQP__URL /
MENSAJERO__AMQP__PREFIX (the worker's own variables), else the worker's defaults. Exit status:
0 all published (and confirmed), 1 something was returned, refused or unreadable, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Dict, Iterator, List, TextIO, Tuple

from mensajero_producer import (
    DEFAULT_CHANNEL,
    Outcome,
    Producer,
    PublishError,
    env_prefix,
    env_url,
    text_job,
    watch_inbound,
    watch_outcomes,
)


def jobs_from(path: str) -> Iterator[Tuple[int, Any]]:
    """(line number, parsed job or the ValueError) for each non-blank, non-comment line."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        for number, line in enumerate(stream, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                yield number, json.loads(line)
            except ValueError as e:
                yield number, e


def cmd_send(args: argparse.Namespace) -> int:
    jobs: List[Tuple[str, Any]] = []
    if args.file:
        jobs = [(f"line {n}", job) for n, job in jobs_from(args.file)]
    elif args.to and args.text:
        fields: Dict[str, Any] = {}
        if args.priority:
            fields["priority"] = args.priority
        if args.ttl_seconds is not None:
            fields["ttl_seconds"] = args.ttl_seconds
        job = text_job(args.channel, args.to, args.text, args.id, args.key, **fields)
        jobs = [("job", job)]
    else:
        print("give --file, or --to and --text", file=sys.stderr)
        return 2

    published = failed = 0
    with Producer(args.url, args.prefix) as producer:
        for where, job in jobs:
            if not isinstance(job, dict):
                print(f"{where}: not a JSON object: {job}")
                failed += 1
                continue
            job_id = job.get("id", "?")
            try:
                key = producer.send(job, routing_key=args.routing_key)
            except PublishError as e:
                print(f"{job_id}: not published: {e}")
                failed += 1
                continue
            print(f"published {job_id} to {producer.exchange} with routing key {key!r} (confirmed)")
            published += 1
    if len(jobs) > 1:
        print(f"{published} published, {failed} not published")
    return 1 if failed else 0


def cmd_cancel(args: argparse.Namespace) -> int:
    what = f"key {args.key}" if args.key else f"id {args.id}"
    with Producer(args.url, args.prefix) as producer:
        try:
            producer.cancel(args.channel, args.key, args.id, args.reason)
        except PublishError as e:
            print(f"cancel of {what} on {args.channel}: not published: {e}")
            print("(a worker without cancel support binds no queue to routing key 'cancel')")
            return 1
    print(f"cancel of {what} on {args.channel} published (confirmed)")
    return 0


def print_events(
    args: argparse.Namespace,
    exchange_name: str,
    watch: Callable[..., Iterator[Any]],
    line: Callable[[Any], str],
    ready_to: TextIO,
) -> int:
    """Print ``watch``'s events one line each, after saying on ``ready_to`` that the queue is
    bound (what was published before that is not seen)."""
    bindings = args.binding or ["#"]
    exchange = f"{args.prefix or env_prefix()}.{exchange_name}"

    def ready(queue: str) -> None:
        print(f"watching {exchange} ({', '.join(bindings)})", file=ready_to, flush=True)

    seen = 0
    try:
        for event in watch(args.url, args.prefix, bindings, args.idle, ready):
            print(line(event), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    return print_events(args, "outcomes", watch_outcomes, Outcome.line, sys.stdout)


def cmd_inbound(args: argparse.Namespace) -> int:
    # The "watching" line goes to stderr: stdout is JSON lines only, for jq and the like.
    def line(event: Dict[str, Any]) -> str:
        return json.dumps(event, ensure_ascii=False)

    return print_events(args, "inbound", watch_inbound, line, sys.stderr)


def add_watch_options(command: argparse.ArgumentParser, routing_key: str) -> None:
    """--binding, --count and --idle of the commands that print events as they arrive."""
    command.add_argument(
        "--binding",
        action="append",
        help=f"routing-key pattern on {routing_key}, repeatable (default: #)",
    )
    command.add_argument("--count", type=int, help="exit after this many events")
    command.add_argument("--idle", type=float, help="exit after this many seconds without one")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"AMQP URL (default: $MENSAJERO__AMQP__URL or {env_url()})")
    common.add_argument("--prefix", help="exchange prefix (default: $MENSAJERO__AMQP__PREFIX or mensajero)")

    top = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    send = sub.add_parser("send", parents=[common], help="publish jobs, confirmed")
    send.add_argument("--file", help="JSON lines of jobs (- for stdin)")
    send.add_argument("--channel", default=DEFAULT_CHANNEL, help="channel (default: demo)")
    send.add_argument("--to", help="recipient, E.164")
    send.add_argument("--text", help="text message body")
    send.add_argument("--id", help="job id (default: py-<uuid>)")
    send.add_argument("--key", help="idempotency key (default: the id)")
    send.add_argument("--priority", choices=["transactional", "bulk"])
    send.add_argument("--ttl-seconds", type=int)
    send.add_argument(
        "--routing-key",
        help="override the routing key (default: send, or bulk for bulk jobs)",
    )
    send.set_defaults(run=cmd_send)

    cancel = sub.add_parser("cancel", parents=[common], help="ask the workers not to send a job")
    cancel.add_argument("--channel", default=DEFAULT_CHANNEL, help="channel (default: demo)")
    target = cancel.add_mutually_exclusive_group(required=True)
    target.add_argument("--key", help="the job's idempotency key")
    target.add_argument("--id", help="the job's id, when it had no idempotency key")
    cancel.add_argument("--reason", help="why, for the outcome")
    cancel.set_defaults(run=cmd_cancel)

    watch = sub.add_parser("watch", parents=[common], help="print outcomes as they arrive")
    add_watch_options(watch, "<status>.<channel>")
    watch.set_defaults(run=cmd_watch)

    inbound = sub.add_parser(
        "inbound", parents=[common], help="print inbound messages as they arrive, JSON lines"
    )
    add_watch_options(inbound, "<type>.<channel>")
    inbound.set_defaults(run=cmd_inbound)
    return top


def main() -> int:
    args = parser().parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
