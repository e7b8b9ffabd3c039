"""`extproc` command line: up, serve, envoy-config, models, check, drain, top, auth. Ctrl-C ends any of them
at once with status 130 and one line, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time

from extproc import __version__
from extproc.bootstrap import render_bootstrap
from extproc.config import load_settings
from extproc.config.data import builtin_flow_data
from extproc.config.problems import messages_of
from extproc.core.availability import availability
from extproc.core.errors import ConfigError
from extproc.core.health import Health
from extproc.core.registry import Registry
from extproc.core.settings import Settings

# Commands that serve nothing: a client key, provider key or token left unset in their shell is no error.
_WITHOUT_SECRETS = ("models", "top", "drain", "auth")
_INTERRUPTED = 128 + signal.SIGINT  # the shell's status for a command Ctrl-C ended


def main(argv: list[str] | None = None) -> int:
    # Every process this one starts execs at once: gRPC's fork handlers have nothing to protect, and with
    # gRPC threads running they log "skipping fork() handlers" on each start (workers inherit the setting).
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    args = _parser().parse_args(argv)
    try:
        return _command(args)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C: said in one line, never a traceback
        return _interrupted(args.command)


def _interrupted(command: str) -> int:
    print(f"extproc {command}: interrupted", file=sys.stderr)
    return _INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="extproc", description="An LLM gateway for Envoy.")
    parser.add_argument("--version", action="version", version=f"extproc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "run Envoy and the processor together in the foreground"),
        ("serve", "run the processor alone (beside an Envoy configured elsewhere)"),
        ("envoy-config", "print the Envoy bootstrap for a config"),
        ("init-routes", "write the routes file an Envoy rendered with --routes-dir starts from (before it starts)"),
        ("models", "list the configured catalog (a running gateway's /v1/models adds discovered models)"),
        ("check", "validate a config and exit (every error at once)"),
        ("drain", "tell the running Envoy to drain and wait for its open requests (a preStop hook)"),
        ("top", "a live view of a running gateway: requests, errors, tokens, cost, credentials"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", "-c", help="YAML config file (default: the embedded default config)")
        if name in ("serve", "envoy-config", "init-routes"):
            sub.add_argument("--routes-dir", help="the directory of the fast path's routes file, which the processor "
                                                  "writes and Envoy watches (default: the config's fast_routes)")
        if name == "top":
            sub.add_argument("--key", help="a client key for the models API (default: $EXTPROC_CLIENT_KEY)")
            sub.add_argument("--once", action="store_true", help="print one reading and exit")
    worker = commands.add_parser("worker")  # one processor worker, started by `up` or `serve` (not for users)
    worker.add_argument("--config", "-c")
    worker.add_argument("--index", type=int, required=True)
    auth = commands.add_parser("auth", help="log in to subscriptions and manage the accounts")
    auth_commands = auth.add_subparsers(dest="auth_command", required=True)
    flows = login_flows()
    for name, help_text, arg in (
        ("login", "log in with OAuth (opens the browser, --no-browser to paste the code, or --device to type a "
                  "code on any other device)", "login"),
        ("list", "the accounts: login, email, plan, expiry, status (never secrets)", None),
        ("logout", "remove an account", "account"),
        ("refresh", "refresh an account's token now", "account"),
        ("import", "take logins you already have (Codex, Gemini CLI, Claude Code)", None),
    ):
        sub = auth_commands.add_parser(
            name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="logins:\n" + "".join(f"  {flow:<9}{line}\n" for flow, line in flows.items()) if arg == "login"
            else None)
        sub.add_argument("--config", "-c", help="YAML config file (default: the embedded default config)")
        if arg == "login":
            sub.add_argument("login", choices=tuple(flows), help="which login (see below)")
            how = sub.add_mutually_exclusive_group()
            how.add_argument("--no-browser", action="store_true", help="print the URL and read the pasted code")
            how.add_argument("--device", action="store_true",
                             help="print a page and a code to enter there from any device, and wait (no browser "
                                  "or redirect on this host: servers, containers)")
        elif arg:
            sub.add_argument(arg)
        elif name == "import":
            sub.add_argument("files", nargs="*", metavar="KIND[=PATH]",
                             help="codex, gemini or claude, optionally with a file (default: all found)")
    return parser


def login_flows() -> dict[str, str]:
    """Each built-in login → one line for `auth login -h`: its title (flow data) and how it is done."""
    lines = {}
    for name, flow in builtin_flow_data().items():
        redirect = flow.get("redirect") or {}
        if not flow.get("authorize_url"):
            how = "a code entered on its page from any device"
        elif "loopback_port" not in redirect:
            how = "paste the code its page shows"
        elif redirect.get("hosted"):
            how = "in the browser, or --no-browser to paste the code its page shows"
        else:
            how = "in the browser, or --no-browser to paste the address the browser ends on"
        if flow.get("device") and flow.get("authorize_url"):
            how += ", or --device"
        lines[name] = f"{flow.get('title', name)}: {how}"
    return lines


def _command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, secrets=args.command not in _WITHOUT_SECRETS)
    except ConfigError as exc:
        sys.stderr.write(config_error_text(exc))
        return 2
    if getattr(args, "routes_dir", None):
        settings = dataclasses.replace(settings, fast_routes=args.routes_dir)
    if args.command == "envoy-config":
        sys.stdout.write(render_bootstrap(settings))
        return 0
    if args.command == "init-routes":
        return init_routes(settings)
    if args.command == "models":
        sys.stdout.write(models_table(settings))
        return 0
    if args.command == "auth":
        from extproc.auth import terminal

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        target = getattr(args, "login", None) or getattr(args, "account", None)
        rest = [str(target)] if target else list(getattr(args, "files", []) or [])
        return terminal.run(settings, args.auth_command, rest, getattr(args, "no_browser", False),
                            getattr(args, "device", False))
    if args.command == "drain":
        from extproc import runner as drain_runner

        return 1 if asyncio.run(drain_runner.drain(settings)) else 0
    if args.command == "top":
        from extproc import top

        return top.run(settings, args.key, once=args.once)
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
            return 0
        stopped_by = asyncio.run({"up": runner.up, "serve": runner.serve}[args.command](settings))
    except (OSError, RuntimeError) as exc:
        logging.getLogger("extproc").error("%s", exc)
        return 1
    return _interrupted(args.command) if stopped_by == signal.SIGINT else 0  # a clean stop, but by Ctrl-C


def init_routes(settings: Settings) -> int:
    """The routes file before its Envoy starts (Envoy refuses a bootstrap whose routes file does not exist):
    the processor's routes, none fast yet. The processor rewrites it as models are asked for."""
    if not settings.fast_routes:
        sys.stderr.write("extproc init-routes: no routes directory: set fast_routes in the config or pass "
                         "--routes-dir\n")
        return 2
    from extproc.fast.publisher import initial_routes

    try:
        initial_routes(settings, settings.fast_routes)
    except OSError as exc:
        sys.stderr.write(f"extproc init-routes: cannot write the routes file in {settings.fast_routes}: "
                         f"{exc.strerror}\n")
        return 1
    return 0


def config_error_text(exc: ConfigError) -> str:
    """One error on one line; several as a list, in the order of the file."""
    messages = messages_of(exc)
    if len(messages) == 1:
        return f"extproc: config error: {messages[0]}\n"
    return f"extproc: {len(messages)} config errors:\n" + "".join(f"  {m}\n" for m in messages)


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
