"""The targets the deployment shape must meet, read against one run's figures: met, not met, or not measured.

Printed at the end of `make bench` and written into docs/benchmarks.md by the suite; never asserted by a test
(speed is measured on a shared machine, not tested). Pure: figures in, lines out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

KEYED_RATIO = 0.5  # keyed, non-streamed, listed model: share of bare Envoy's requests/s at concurrency 8
KEYED_ADDED_P50_MS = 0.5  # ... and at most this much added to bare's p50 at concurrency 1
KEYED_OVER_LITELLM = 25.0  # ... and this many times LiteLLM proxy's requests/s at concurrency 8
STREAM_RATIO = 0.5  # streams of 100 events: share of bare Envoy's streams/s
BURST_STREAMS = 1000  # a burst of this many streams: all whole, none refused


@dataclass(frozen=True)
class Figures:
    """What one run measured; None where it did not (no LiteLLM, no node, no burst run)."""

    keyed_ratio_c8: float | None = None
    keyed_added_p50_ms_c1: float | None = None
    keyed_rps_c8: float | None = None
    litellm_rps_c8: float | None = None
    stream_ratio: float | None = None  # chat streams, at the streams' concurrency
    burst_whole: int | None = None  # bench/burst.py's figures, when it ran
    burst_refused: int | None = None
    burst_total: int | None = None


@dataclass(frozen=True)
class Verdict:
    target: str
    met: bool | None  # None: not measured in this run
    figure: str

    @property
    def mark(self) -> str:
        return {True: "met", False: "NOT MET", None: "not measured"}[self.met]


def figures_from(paths: Mapping[str, Mapping[int, Mapping[str, float]]], burst: Mapping[str, int] | None = None,
                 stream_concurrency: int = 32) -> Figures:
    """The figures the targets read, from a run's paths (path → concurrency → rps, ratio, added_p50_ms...): the
    keyed path at 8 and 1, LiteLLM at 8, chat streams at `stream_concurrency` (or the highest measured)."""
    def at(name: str, conc: int | None, key: str) -> float | None:
        by = paths.get(name, {})
        if conc is None:
            conc = stream_concurrency if stream_concurrency in by else max(by, default=None)
        return None if conc is None or conc not in by else by[conc][key]

    return Figures(keyed_ratio_c8=at("keyed", 8, "ratio"), keyed_added_p50_ms_c1=at("keyed", 1, "added_p50_ms"),
                   keyed_rps_c8=at("keyed", 8, "rps"), litellm_rps_c8=at("litellm", 8, "rps"),
                   stream_ratio=at("stream-chat", None, "ratio"),
                   burst_whole=(burst or {}).get("whole"), burst_refused=(burst or {}).get("refused"),
                   burst_total=(burst or {}).get("total"))


def burst_from(doc: Mapping[str, Mapping[str, object]]) -> dict[str, int]:
    """The gateway's counts from bench/burst.py's --json (whole, refused, cut, bare 504, other per target)."""
    counts = {k: v for k, v in doc["gateway"].items() if isinstance(v, int)}
    return {"whole": counts.get("whole", 0), "refused": counts.get("refused", 0), "total": sum(counts.values())}


def _at_least(value: float | None, floor: float) -> bool | None:
    return None if value is None else value >= floor


def verdicts(f: Figures) -> list[Verdict]:
    over_litellm = f.keyed_rps_c8 / f.litellm_rps_c8 if f.keyed_rps_c8 and f.litellm_rps_c8 else None
    burst = None if f.burst_whole is None or f.burst_total is None else (
        f.burst_whole == f.burst_total == BURST_STREAMS and not f.burst_refused)
    return [
        Verdict(f"keyed, c8: ≥ {KEYED_RATIO}× bare requests/s", _at_least(f.keyed_ratio_c8, KEYED_RATIO),
                "-" if f.keyed_ratio_c8 is None else f"{f.keyed_ratio_c8:.2f}×"),
        Verdict(f"keyed, c1: ≤ {KEYED_ADDED_P50_MS} ms added p50",
                None if f.keyed_added_p50_ms_c1 is None else f.keyed_added_p50_ms_c1 <= KEYED_ADDED_P50_MS,
                "-" if f.keyed_added_p50_ms_c1 is None else f"{f.keyed_added_p50_ms_c1:+.2f} ms"),
        Verdict(f"keyed, c8: ≥ {KEYED_OVER_LITELLM:g}× LiteLLM proxy", _at_least(over_litellm, KEYED_OVER_LITELLM),
                "-" if over_litellm is None else
                f"{over_litellm:.1f}× ({f.keyed_rps_c8:,.0f} vs {f.litellm_rps_c8:,.0f} requests/s)"),
        Verdict(f"streams of 100 events: ≥ {STREAM_RATIO}× bare streams/s", _at_least(f.stream_ratio, STREAM_RATIO),
                "-" if f.stream_ratio is None else f"{f.stream_ratio:.2f}×"),
        Verdict(f"burst of {BURST_STREAMS:,} streams: all whole, none refused", burst,
                "- (bench/burst.py)" if burst is None else
                f"{f.burst_whole:,} of {f.burst_total:,} whole, {f.burst_refused or 0:,} refused"),
    ]


def render(found: Sequence[Verdict]) -> str:
    width = max(len(v.target) for v in found)
    return "\n".join(f"  {v.target.ljust(width)}  {v.mark:<12}  {v.figure}" for v in found)


def markdown(found: Sequence[Verdict]) -> list[str]:
    return ["| target | this run | figure |", "|---|---|---|",
            *(f"| {v.target} | {v.mark} | {v.figure} |" for v in found)]
