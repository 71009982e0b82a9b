import os
import signal
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.predictions.streams import RedisStreamAdapter, StreamScorer, StreamUnavailable


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Command(BaseCommand):
    help = (
        "Score requests read from a Redis Stream through a consumer group and write the results to an output "
        "stream. A message is acknowledged only after its decision is logged and its result published "
        "(at least once; a request id is logged once). SIGTERM or SIGINT: finish the batch in hand, then exit 0."
    )

    def add_arguments(self, parser):
        parser.add_argument("--input-stream", required=True, help="the stream of requests")
        parser.add_argument("--output-stream", required=True, help="the stream the results are appended to")
        parser.add_argument("--group", default="faro", help="the consumer group (created if missing); default faro")
        parser.add_argument(
            "--consumer",
            default=f"{socket.gethostname()}-{os.getpid()}",
            help="this consumer's name in the group; default <hostname>-<pid>",
        )
        parser.add_argument("--redis-url", default=None, help="default: REDIS_URL")
        parser.add_argument("--batch-size", type=positive_int, default=10, help="messages read at a time (10)")
        parser.add_argument(
            "--block-ms", type=positive_int, default=2000, help="how long a read waits for new messages (2000)"
        )
        parser.add_argument(
            "--claim-idle-ms",
            type=positive_int,
            default=60_000,
            help="take over messages another consumer left unacknowledged this long (60000)",
        )
        parser.add_argument("--max-messages", type=positive_int, default=None, help="exit after answering this many")
        parser.add_argument(
            "--output-maxlen", type=positive_int, default=None, help="trim the output stream to about this many entries"
        )

    def handle(self, *args, **options):
        url = options["redis_url"] or settings.REDIS_URL
        if not url:
            raise CommandError("score_stream needs Redis: pass --redis-url or set REDIS_URL.")
        if options["input_stream"] == options["output_stream"]:
            raise CommandError("--input-stream and --output-stream must differ: results would be read as requests.")
        try:
            adapter = RedisStreamAdapter.from_url(
                url,
                block_ms=options["block_ms"],
                input_stream=options["input_stream"],
                output_stream=options["output_stream"],
                group=options["group"],
                consumer=options["consumer"],
                output_maxlen=options["output_maxlen"],
            )
        except ValueError as exc:
            raise CommandError(f"--redis-url {_redacted(url)!r}: {exc}") from None
        try:
            adapter.setup()
        except StreamUnavailable as exc:
            adapter.close()
            raise CommandError(f"Cannot reach Redis at {_redacted(url)}: {exc}") from None
        except redis.ResponseError as exc:
            adapter.close()
            raise CommandError(f"Cannot use {options['input_stream']!r} as a stream with a consumer group: {exc}")
        scorer = StreamScorer(
            adapter,
            batch_size=options["batch_size"],
            block_ms=options["block_ms"],
            claim_idle_ms=options["claim_idle_ms"],
            max_messages=options["max_messages"],
        )

        def on_signal(signum, frame):
            if scorer.stopping:  # a second signal: leave now; what is unacknowledged is delivered again
                raise SystemExit(128 + signum)
            self.stderr.write(f"{signal.Signals(signum).name}: finishing the batch in hand, then exiting.")
            scorer.stop()

        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(
            f"Scoring {options['input_stream']} into {options['output_stream']} "
            f"as {options['consumer']} of group {options['group']}."
        )
        try:
            tally = scorer.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            adapter.close()
        self.stdout.write(
            f"Answered {tally.answered} message(s): {tally.ok} ok, {tally.errors} error(s); "
            f"{tally.claimed} claimed from other consumers, {tally.failures} transient failure(s)."
        )
