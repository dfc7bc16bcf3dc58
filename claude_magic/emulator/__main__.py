"""``python -m claude_magic.emulator``: serve the emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import threading
import warnings

from .app import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m claude_magic.emulator",
                                     description="A local emulator of the Claude API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first content delta")
    parser.add_argument("--token-rate", type=float, default=None, help="output tokens per second")
    parser.add_argument("--rpm", type=float, default=None, help="requests per minute limit")
    parser.add_argument("--tpm", type=float, default=None, help="tokens per minute limit")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    parser.add_argument("--batch-duration", type=float, default=0.2,
                        help="seconds a Message Batch stays in progress")
    parser.add_argument("--idle-timeout", type=float, default=60.0,
                        help="seconds before a connection that sends nothing is closed (default 60)")
    args = parser.parse_args(argv)
    try:
        emulator = Emulator(args.host, args.port, ttft=args.ttft, token_rate=args.token_rate, rpm=args.rpm,
                            tpm=args.tpm, api_key=args.api_key, batch_duration=args.batch_duration,
                            idle_timeout=args.idle_timeout)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emulator.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; "
              "pick another --port (0 = any free port)", file=sys.stderr)
        return 1
    for warning in caught:  # one line each, without the source line warnings.warn would show
        print(f"warning: {warning.message}", file=sys.stderr, flush=True)
    print(f"claude_magic emulator listening on {emulator.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
