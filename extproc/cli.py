"""`extproc` command line: up, serve, envoy-config, models, check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from extproc import __version__
from extproc.bootstrap import render_bootstrap
from extproc.config import load_settings
from extproc.core.availability import availability
from extproc.core.errors import ConfigError
from extproc.core.health import Health
from extproc.core.registry import Registry
from extproc.core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="extproc", description="An LLM gateway for Envoy.")
    parser.add_argument("--version", action="version", version=f"extproc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "run Envoy and the processor together in the foreground"),
        ("serve", "run the processor alone (beside an Envoy configured elsewhere)"),
        ("envoy-config", "print the Envoy bootstrap for a config"),
        ("models", "list the configured catalog (a running gateway's /v1/models adds discovered models)"),
        ("check", "validate a config and exit"),
        ("drain", "tell the running Envoy to drain and wait for its open requests (a preStop hook)"),
        ("top", "a live view of a running gateway: requests, errors, tokens, cost, credentials"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", "-c", help="YAML config file (default: the embedded default config)")
        if name == "top":
            sub.add_argument("--key", help="a client key for the models API (default: $EXTPROC_CLIENT_KEY)")
            sub.add_argument("--once", action="store_true", help="print one reading and exit")
    worker = commands.add_parser("worker")  # one processor worker, started by `up` or `serve` (not for users)
    worker.add_argument("--config", "-c")
    worker.add_argument("--index", type=int, required=True)
    auth = commands.add_parser("auth", help="log in to subscriptions and manage the accounts")
    auth_commands = auth.add_subparsers(dest="auth_command", required=True)
    for name, help_text, arg in (
        ("login", "log in with OAuth (opens the browser, or --no-browser to paste the code)", "login"),
        ("list", "the accounts: login, email, plan, expiry, status (never secrets)", None),
        ("logout", "remove an account", "account"),
        ("refresh", "refresh an account's token now", "account"),
        ("import", "take logins you already have (Codex, Gemini CLI, Claude Code)", None),
    ):
        sub = auth_commands.add_parser(name, help=help_text)
        sub.add_argument("--config", "-c", help="YAML config file (default: the embedded default config)")
        if arg == "login":
            sub.add_argument("login", choices=("claude", "console", "gemini", "codex"))
            sub.add_argument("--no-browser", action="store_true", help="print the URL and read the pasted code")
        elif arg:
            sub.add_argument(arg)
        elif name == "import":
            sub.add_argument("files", nargs="*", metavar="KIND[=PATH]",
                             help="codex, gemini or claude, optionally with a file (default: all found)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"extproc: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "envoy-config":
        sys.stdout.write(render_bootstrap(settings))
        return 0
    if args.command == "models":
        sys.stdout.write(models_table(settings))
        return 0
    if args.command == "auth":
        from extproc.auth import terminal

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        target = getattr(args, "login", None) or getattr(args, "account", None)
        rest = [str(target)] if target else list(getattr(args, "files", []) or [])
        return terminal.run(settings, args.auth_command, rest, getattr(args, "no_browser", False))
    if args.command == "drain":
        from extproc import runner as drain_runner

        return 1 if asyncio.run(drain_runner.drain(settings)) else 0
    if args.command == "top":
        from extproc import top

        try:
            return top.run(settings, args.key, once=args.once)
        except KeyboardInterrupt:
            return 0
    if args.command == "check":
        serving = sorted({m.provider for m in settings.models})
        keys = len(settings.credentials)
        print(f"config OK: providers {', '.join(serving)}; {len(settings.models)} models; "
              f"{keys} API key{'' if keys == 1 else 's'}")
        return 0
    from extproc import logs, runner

    logs.configure(settings.log_level, settings.log_format)

    try:
        if args.command == "worker":
            asyncio.run(runner.serve_worker(settings, args.index))
        else:
            asyncio.run({"up": runner.up, "serve": runner.serve}[args.command](settings))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as exc:
        logging.getLogger("extproc").error("%s", exc)
        return 1
    return 0


def models_table(settings: Settings) -> str:
    registry, health, now = Registry.build(settings), Health(settings.health), time.time()
    header = ("MODEL", "PROVIDER", "CONTEXT", "IN $/M", "OUT $/M", "CAPABILITIES", "STATUS", "AVAILABLE")
    rows = [header]
    for m in sorted(registry.models, key=lambda m: (m.provider, m.id)):
        state = availability(m, registry, health, now)
        rows.append((m.id, m.provider, f"{m.context_window:,}" if m.context_window else "?",
                     f"{m.input_price:g}", f"{m.output_price:g}",
                     ",".join(sorted(m.capabilities)) or ("embedding" if m.mode == "embedding" else "-"),
                     m.status, "yes" if state.available else f"no ({state.reason})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


if __name__ == "__main__":
    sys.exit(main())
