"""Markdown tables for bench/RESULTS.md from the JSON results under bench/out/.

Usage: .venv/bin/python -m bench.report [RESULTS_DIR] [RESULT.json ...] > bench/out/tables.md

A RESULT.json (a kept run, bench/out/runs/<benchmark>-<time>.json) is reported in place of
its benchmark's latest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import common
from bench.common import median

TARGETS = {
    "max_ratio": 0.5,  # Reach max >= 50% of the bare relay's
    "p99_half_max_ms": 25.0,  # at half of Reach's own max
    "sockets": 5000,
    "kb_per_socket": 40.0,
    "p99_connected_ms": 100.0,
    "push_ratio": 0.6,
    "sync_s": 2.0,
}


_DIR = common.OUT
_FILES: dict[str, Path] = {}


def _load(name: str) -> dict[str, Any] | None:
    path = _FILES.get(name, _DIR / f"{name}.json")
    return json.loads(path.read_text()) if path.exists() else None


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**pass**" if ok else "**FAIL**")


def roundtrip(d: dict[str, Any]) -> list[str]:
    out = ["### 1. Bid round trip (POST /bids -> recipient's `bid.created`)", ""]
    s = d["summary"]
    base = s["max"].get("baseline", {}).get("max_sustained_median")
    out.append(
        "| system | max sustained bids/s (median) | runs | peak achieved/s | ratio to relay "
        "| server CPU ms/bid | whole-system CPU ms/bid |"
    )
    out.append("|---|---|---|---|---|---|---|")
    cost = cpu_per_bid(d)
    for name, v in s["max"].items():
        c = cost.get(name, {})
        out.append(
            f"| {name} | {_f(v['max_sustained_median'])} | {v['max_sustained_runs']} | "
            f"{_f(v['peak_achieved_median'])} | {_f(v['ratio_to_baseline'], 3)} | "
            f"{_f(c.get('server'), 2)} | {_f(c.get('total'), 2)} |"
        )
    out.append("")
    out.append(
        "| system | fixed rate | offered/s | achieved/s | p50 ms | p99 ms | p99 range "
        "| POST p50 ms | server cores | load-gen cores | others' cores | stolen cores "
        "| server waited for a core, ms/s | its worst 100 ms |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in s["fixed"]:
        rng = f["p99_range"]
        out.append(
            f"| {f['system']} | {f['label']} | {f['rate']} | {_f(f['achieved_median'])} | "
            f"{_f(f['p50_median'])} | {_f(f['p99_median'])} | "
            f"{_f(rng[0])}-{_f(rng[1])} | {_f(f['post_p50_median'])} | "
            f"{_f(f['server_cpu_median'], 2)} | {_f(f['loadgen_cpu_median'], 2)} | "
            f"{_f(f['other_cpu_median'], 2)} | {_f(f.get('steal_cpu_median'), 2)} | "
            f"{_f(f.get('server_runqueue_ms_per_s_median'))} | "
            f"{_f(f.get('server_runqueue_worst_ms'))} |"
        )
    out.append("")
    for name, v in s["max"].items():
        if not name.startswith("reach"):  # the targets are Reach's; relay-pg is a floor
            continue
        ratio = v["ratio_to_baseline"]
        half = next(
            (f for f in s["fixed"] if f["system"] == name and f["label"] == "50% of own max"), None
        )
        p99 = half["p99_median"] if half else None
        out.append(
            f"- {name}: max {_f(v['max_sustained_median'])}/s = {_f(ratio, 3)} x relay "
            f"({_f(base)}/s): target >= {TARGETS['max_ratio']} {verdict(ratio is not None and ratio >= TARGETS['max_ratio'])}; "  # noqa: E501
            f"p99 at half its max ({half['rate'] if half else '-'}/s) {_f(p99)} ms: target < "
            f"{TARGETS['p99_half_max_ms']:.0f} ms "
            f"{verdict(None if p99 is None else p99 < TARGETS['p99_half_max_ms'])}"
        )
    return out


def cpu_per_bid(d: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """CPU per delivered bid from the sustained steps: far less sensitive to the other work on
    the machine than throughput is (a starved server is slower, not costlier)."""
    out: dict[str, dict[str, float | None]] = {}
    for name in d["summary"]["max"]:
        server, total = [], []
        for rep in d["reps"]:
            for step in rep["max"][name]["steps"]:
                if not step.get("sustained") or not step["achieved_per_s"]:
                    continue
                cpu = step["cpu_cores"]
                rate = step["achieved_per_s"]
                server.append(cpu.get("server", 0) / rate * 1000)
                total.append(
                    sum(cpu.get(k, 0) for k in ("server", "reach_worker", "postgres")) / rate * 1000
                )
        out[name] = {"server": median(server), "total": median(total)}
    return out


def gc_table(files: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = [
        "",
        "Garbage collection in the API process during the 40 s hold (bench/gc_probe_config.py):",
        "",
        "| run | system | gen0 n / ms | gen1 n / ms | gen2 n / ms | pauses > 20 ms | longest ms "
        "| frozen objects | p50 ms | p99 ms (median) | p99 worst |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, d in files:
        for name, r in d["systems"].items():
            g = r.get("gc_during_hold") or {}
            if not g:
                continue
            out.append(
                f"| {label} | {name} | {g['gen0_collections']} / {g['gen0_ms']} | "
                f"{g['gen1_collections']} / {g['gen1_ms']} | {g['gen2_collections']} / "
                f"{g['gen2_ms']} | {g['pauses_over_20ms']} | {g['longest_pause_ms']} | "
                f"{g.get('frozen_objects')} | {_f(r['p50_median'])} | {_f(r['p99_median'])} | "
                f"{_f(r['p99_worst'])} |"
            )
    return out


def connections(d: dict[str, Any]) -> list[str]:
    out = ["### 2. Idle authenticated sockets on one API process", ""]
    out.append(
        "| system | sockets connected | failed | connect wall s | connects/s | RSS before MiB "
        "| RSS after MiB | KB/socket | bids/s while connected | p50 ms | p99 ms (median of steps) "
        "| p99 worst step | alive after hold | idle server cores | idle us/socket/ping |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rate = d["args"]["rate"]
    for name, r in d["systems"].items():
        out.append(
            f"| {name} | {r['connected']} | {r['connect_failed']} | {_f(r['connect_wall_s'])} | "
            f"{_f(r['connect_rate_per_s'])} | {_f(r['rss_before_kb'] / 1024)} | "
            f"{_f(r['rss_after_kb'] / 1024)} | {_f(r['kb_per_socket'])} | {rate:.0f} | "
            f"{_f(r['p50_median'])} | {_f(r['p99_median'])} | {_f(r['p99_worst'])} | "
            f"{r['alive_after_hold']} | {_f(r.get('idle', {}).get('server_cores'))} | "
            f"{_f(r.get('idle', {}).get('us_per_socket_ping'))} |"
        )
    r = d["systems"].get("reach-pg")
    if r:
        out.append("")
        out.append(
            f"- sockets: {r['connected']} (target {TARGETS['sockets']}) "
            f"{verdict(r['connected'] >= TARGETS['sockets'] and r['alive_after_hold'] >= TARGETS['sockets'])}; "  # noqa: E501
            f"memory {_f(r['kb_per_socket'])} KB/socket (target < {TARGETS['kb_per_socket']:.0f}) "
            f"{verdict(r['kb_per_socket'] < TARGETS['kb_per_socket'])}; "
            f"p99 {_f(r['p99_median'])} ms (target < {TARGETS['p99_connected_ms']:.0f}) "
            f"{verdict(r['p99_median'] is not None and r['p99_median'] < TARGETS['p99_connected_ms'])}"  # noqa: E501
        )
    return out


def push(d: dict[str, Any]) -> list[str]:
    out = ["### 3. Push throughput through firebase-admin (stand-in answers after 20 ms)", ""]
    out.append(
        "| sender process | concurrency | ideal/s | plain requests/s | FcmBackend/s | ratio "
        "| requests CPU ms/msg | FcmBackend CPU ms/msg | FcmBackend runs |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for s in d["summary"]:
        out.append(
            f"| {s['mode']} | {s['concurrency']} | {s['ideal_per_s']:.0f} | "
            f"{_f(s['baseline_per_s'], 0)} | {_f(s['fcm_per_s'], 0)} | {_f(s['ratio'], 2)} | "
            f"{_f(s['baseline_cpu_ms_per_msg'], 2)} | {_f(s['fcm_cpu_ms_per_msg'], 2)} | "
            f"{s['fcm_runs']} |"
        )
    ratios = [s["ratio"] for s in d["summary"] if s["ratio"] is not None]
    out.append("")
    out.append(
        f"- ratio {min(ratios):.2f}-{max(ratios):.2f} (target >= {TARGETS['push_ratio']}) "
        f"{verdict(min(ratios) >= TARGETS['push_ratio'])}"
        if ratios
        else "- no ratio"
    )
    return out


def sync(d: dict[str, Any]) -> list[str]:
    s = d["summary"]
    rng = s["catch_up_s_range"]
    return [
        "### 4. Sync catch-up (10,000 missed events, limit 1000)",
        "",
        "| events | pages | catch-up s (median) | range | page ms (median) | MB | "
        "psycopg+json floor s | x floor |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['events']} | {d['runs'][0]['pages'] if d['runs'] else '-'} | "
        f"{_f(s['catch_up_s_median'], 2)} | {_f(rng[0], 2)}-{_f(rng[1], 2)} | "
        f"{_f(s['page_ms_median'])} | {_f(s['mb'])} | {_f(s['floor_s_median'], 2)} | "
        f"{_f(s['ratio_to_floor'])} |",
        "",
        f"- {_f(s['catch_up_s_median'], 2)} s (target < {TARGETS['sync_s']:.0f} s) "
        f"{verdict(s['catch_up_s_median'] < TARGETS['sync_s'])}",
    ]


def bid_write(d: dict[str, Any]) -> list[str]:
    rows = [
        f"| {name} | {_f(v['client_ms'], 3)} | {_f(v['postgres_ms'], 3)} |"
        for name, v in d["variants"].items()
    ]
    return [
        "### Writing one bid, per layer (`probe_bid_write`, one process, no HTTP)",
        "",
        "| variant | client CPU ms per bid | PostgreSQL CPU ms per bid |",
        "|---|---|---|",
        *rows,
    ]


def outbox_statistics(d: dict[str, Any]) -> list[str]:
    ms = d["analyze_ms"]
    rows = [
        f"| {label} | {_f(ms[key]['push_jobs'])} | {_f(ms[key]['push_deliveries'])} |"
        for key, label in (
            ("default", "PostgreSQL's default statistics"),
            ("0008", "migration 0008: none for the payload, errors, message ids"),
            ("0009", "0008 + 0009: target 10 for every other column"),
        )
    ]
    differ = ", ".join(d["plans_differ"]) or "none"
    return [
        "### The outbox's ANALYZE (`probe_outbox_schema statistics`, ms, median)",
        "",
        f"On {d['rows']['push_jobs']:,} jobs and {d['rows']['push_deliveries']:,} deliveries.",
        "",
        "| statistics | ANALYZE push_jobs | ANALYZE push_deliveries |",
        "|---|---|---|",
        *rows,
        "",
        f"Statements whose plan differs between the default and 0009: {differ} "
        f"(of {d['statements']}).",
    ]


def device_delete(d: dict[str, Any]) -> list[str]:
    before, after, insert = d["before"], d["after"], d["insert_us_per_delivery"]
    return [
        "### Deleting a device (`probe_outbox_schema device-delete`, ms, median of 7 devices)",
        "",
        f"{d['jobs']:,} finished pushes, {d['deliveries']:,} deliveries.",
        "",
        "| | DELETE one device | support view: a device's last push |",
        "|---|---|---|",
        f"| before 0010 | {_f(before['delete_ms'])} | {_f(before['support_ms'])} |",
        f"| after 0010 (`ix_push_deliveries_device_id`) | {_f(after['delete_ms'])} | "
        f"{_f(after['support_ms'])} |",
        "",
        f"A new delivery's insert: {_f(insert['without'])} us without the index, "
        f"{_f(insert['with'])} us with it.",
    ]


def main() -> None:
    import sys

    global _DIR
    for arg in map(Path, sys.argv[1:]):
        if arg.is_dir():  # another results directory, e.g. a saved earlier run
            _DIR = arg
        else:  # one kept run, for its benchmark
            _FILES[json.loads(arg.read_text())["benchmark"]] = arg
    lines: list[str] = []
    machine = None
    for name, fn in (
        ("roundtrip", roundtrip),
        ("connections", connections),
        ("push", push),
        ("sync", sync),
        ("probe_bid_write", bid_write),
        ("probe_outbox_schema-statistics", outbox_statistics),
        ("probe_outbox_schema-device-delete", device_delete),
    ):
        d = _load(name)
        if d is None:
            lines += [f"### {name}: no result (bench/out/{name}.json missing)", ""]
            continue
        machine = machine or d["machine"]
        lines += [
            *fn(d),
            "",
            f"_measured {d['machine']['at']}, {d['machine']['reach_source']}_",
            "",
        ]
    gc_files = [
        (label, d)
        for label, d in (
            ("CPython's defaults (GC_FREEZE=false)", _load("connections-gcprobe-gcoff")),
            ("service policy (GC_FREEZE, the default)", _load("connections-gcprobe")),
            ("gc.freeze() each second (probe)", _load("connections-gcprobe-freeze")),
        )
        if d
    ]
    if gc_files:
        lines += [*gc_table(gc_files), ""]
    if machine:
        pk = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
        lines = [
            f"Machine: {machine['nproc']} cores ({machine['cpu']}), Python {machine['python']}, "
            f"PostgreSQL {machine['postgresql']}, kernel {machine['kernel']}.",
            f"Packages: {pk}.",
            "",
            *lines,
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
