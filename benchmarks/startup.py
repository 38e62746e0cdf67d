"""Start-up cost of tokentrail: ``import tokentrail; tokentrail.instrument()`` in a fresh interpreter.

Run from the repository root::

    PYTHONPATH=src python benchmarks/startup.py [--runs 15] [--json FILE]

Every measurement is a fresh ``python`` subprocess (runs of all variants interleaved). The baseline
child only imports what an instrumented application already has: ``openai`` and the OpenTelemetry
SDK (``opentelemetry.sdk.trace``, ``opentelemetry.sdk.metrics``). The tokentrail children import the
same first, then run ``import tokentrail; tokentrail.instrument()`` (no arguments: tokentrail sets
up default SDK providers, no exporter configured). Variants:

``warm``         default: the price catalogue loads on a background thread started by ``instrument()``
``no-warm``      ``TOKENTRAIL_WARM_PRICES=0``: nothing loads until the first call is priced
``openai-only``  ``tokentrail.instrument(providers=["openai"])`` (default warming): tokentrail's own
                 cost, without importing the other LLM SDKs installed in the environment (the default
                 ``instrument()`` imports every supported SDK it finds installed, to patch it)

Reported, median and minimum over ``--runs`` (on a shared VM the minimum is the repeatable figure):

* process wall time (spawn to exit) of each child, and its difference from the baseline;
* in-process wall time of ``import tokentrail; tokentrail.instrument()`` alone (the baseline
  imports are already done, so this is what tokentrail adds to the application's start-up);
* for ``warm``: how long the background thread takes to finish loading the catalogue;
* ``first call``: a second set of children makes one chat call right after start-up (against the
  in-process fake API): the first call's wall time, bare vs instrumented, shows who pays for the
  catalogue when it is not warmed (or not yet warm).

tokentrail's modules are byte-compiled first (``compile_tokentrail``), as installing the wheel does.

Then one ``-X importtime`` run lists the ten costliest imports attributable to tokentrail (modules
first imported by ``import tokentrail; tokentrail.instrument()``, after the baseline imports).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import isolate_ledger  # noqa: E402

MARKER = "-- tokentrail-startup-marker --"

CHILD = r"""
import sys, time, json, threading
t0 = time.perf_counter()
import openai
import opentelemetry.sdk.trace, opentelemetry.sdk.metrics
t1 = time.perf_counter()
result = {"baseline_imports_ms": (t1 - t0) * 1e3}
mode, action = sys.argv[1], sys.argv[2]
sys.stderr.write(@MARKER@ + "\n"); sys.stderr.flush()
if mode != "baseline":
    t2 = time.perf_counter()
    import tokentrail
    tokentrail.instrument(**({"providers": ["openai"]} if mode == "openai-only" else {}))
    t3 = time.perf_counter()
    result["tokentrail_ms"] = (t3 - t2) * 1e3
    result["instrumented"] = tokentrail.instrumented()
if action == "call":
    sys.path.insert(0, @BENCH@)
    from _common import CHAT_REQUEST, FakeOpenAI
    client = FakeOpenAI().client()
    t4 = time.perf_counter()
    client.chat.completions.create(**CHAT_REQUEST)
    result["first_call_ms"] = (time.perf_counter() - t4) * 1e3
elif action == "join" and mode != "baseline":
    for thread in threading.enumerate():
        if thread.name == "tokentrail-prices":
            thread.join()
            result["catalogue_ready_ms"] = (time.perf_counter() - t3) * 1e3
print(json.dumps(result))
""".replace("@MARKER@", repr(MARKER)).replace("@BENCH@", repr(str(BENCH)))

TOKENTRAIL_VARIANTS = ("warm", "no-warm", "openai-only")
VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {},
    "warm": {},
    "no-warm": {"TOKENTRAIL_WARM_PRICES": "0"},
    "openai-only": {},
}


def _tokentrail_path() -> str:
    """The directory holding the tokentrail the parent would import (PYTHONPATH=src, or installed)."""
    import importlib.util

    spec = importlib.util.find_spec("tokentrail")
    if spec is None or spec.origin is None:
        return str(ROOT / "src")
    return str(Path(spec.origin).parent.parent)


def _env(extra: dict[str, str]) -> dict[str, str]:
    ledger = os.environ.get("TOKENTRAIL_LEDGER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    if ledger is not None:
        env["TOKENTRAIL_LEDGER"] = ledger  # the ledger stays on (default), in a temporary directory
    env["PYTHONPATH"] = os.pathsep.join([_tokentrail_path(), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def child(variant: str, action: str) -> dict[str, Any]:
    """One fresh interpreter; ``action``: ``none`` (exit at once), ``join`` (wait for the price
    thread), ``call`` (make one chat call)."""
    mode = variant if variant in ("baseline", "openai-only") else "tokentrail"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, action],
        env=_env(VARIANTS[variant]),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = (time.perf_counter() - start) * 1e3
    if done.returncode != 0:
        raise RuntimeError(f"{variant} child failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_ms"] = wall
    return result


def importtime(mode: str) -> list[dict[str, Any]]:
    """Modules first imported by ``import tokentrail; tokentrail.instrument()`` (after the baseline)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHILD, mode, "none"],
        env=_env({"TOKENTRAIL_WARM_PRICES": "0"}),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stderr.split(MARKER, 1)[1].splitlines()
    rows = []
    for line in lines:
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|", 2)
        rows.append({"module": name.strip(), "depth": (len(name) - len(name.lstrip())) // 2,
                     "self_ms": int(self_us) / 1e3, "cumulative_ms": int(cumulative_us) / 1e3})  # fmt: skip
    return rows


def print_imports(mode: str, imports: list[dict[str, Any]], top: int) -> None:
    label = "instrument()" if mode == "tokentrail" else 'instrument(providers=["openai"])'
    total = sum(row["self_ms"] for row in imports)
    own = sum(row["self_ms"] for row in imports if row["module"].startswith("tokentrail"))
    print(
        f"\nTop {top} imports attributable to `import tokentrail; tokentrail.{label}` "
        "(-X importtime, after the baseline\nimports, TOKENTRAIL_WARM_PRICES=0): "
        f"{len(imports)} modules, {total:.1f} ms self in all, {own:.1f} ms in tokentrail.*"
    )
    print(f"{'self ms':>9}{'cumulative ms':>15}  module")
    for row in sorted(imports, key=lambda r: -r["self_ms"])[:top]:
        print(f"{row['self_ms']:>9.1f}{row['cumulative_ms']:>15.1f}  {row['module']}")
    packages: dict[str, float] = {}
    for row in imports:
        name = row["module"].split(".")[0]
        packages[name] = packages.get(name, 0.0) + row["self_ms"]
    print(
        "self ms by top-level package: "
        + ", ".join(
            f"{name} {ms:.1f}" for name, ms in sorted(packages.items(), key=lambda item: -item[1])[:top]
        )
    )


def compile_tokentrail() -> None:
    """Byte-compile tokentrail's modules, as installing its wheel does (pip compiles at install).
    From a source checkout with ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines, this one
    included) no ``.pyc`` is ever written, and every start would compile every module again: about
    20 ms here, which no installed application pays."""
    import compileall

    compileall.compile_dir(os.path.join(_tokentrail_path(), "tokentrail"), quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="children per variant (default 15)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--importtime-only", action="store_true", help="only the -X importtime listings")
    args = parser.parse_args(argv)
    isolate_ledger()
    compile_tokentrail()
    if args.importtime_only:
        for mode in ("tokentrail", "openai-only"):
            print_imports(mode, importtime(mode), args.top)
        return 0

    child("baseline", "none")  # warm the OS file cache first
    child("warm", "call")
    # (variant, action) sets, run round-robin so drifts on the machine hit every set alike.
    sets = [(variant, action) for action in ("none", "call") for variant in VARIANTS] + [("warm", "join")]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in sets}
    for index in range(args.runs):
        shift = index % len(sets)
        for key in sets[shift:] + sets[:shift]:
            runs[key].append(child(*key))
        print(f"\rrun {index + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def stat(variant: str, action: str, key: str, how: Any) -> float | None:
        values = [r[key] for r in runs[(variant, action)] if r.get(key) is not None]
        return how(values) if values else None

    summary: dict[str, Any] = {}
    for how_name, how in (("median", statistics.median), ("min", min)):
        base_process = stat("baseline", "none", "process_ms", how)
        base_first = stat("baseline", "call", "first_call_ms", how)
        part: dict[str, Any] = {
            "baseline": {
                "process_ms": base_process,
                "baseline_imports_ms": stat("baseline", "none", "baseline_imports_ms", how),
                "first_call_ms": base_first,
            }
        }
        for variant in TOKENTRAIL_VARIANTS:
            process = stat(variant, "none", "process_ms", how)
            first = stat(variant, "call", "first_call_ms", how)
            part[variant] = {
                "process_ms": process,
                "process_added_ms": process - base_process,
                "import_and_instrument_ms": stat(variant, "none", "tokentrail_ms", how),
                "catalogue_ready_ms": stat(variant, "join", "catalogue_ready_ms", how)
                if variant == "warm"
                else None,
                "first_call_ms": first,
                "first_call_added_ms": first - base_first,
            }
        summary[how_name] = part
    instrumented = {
        variant: runs[(variant, "none")][-1].get("instrumented") for variant in TOKENTRAIL_VARIANTS
    }
    imports = {mode: importtime(mode) for mode in ("tokentrail", "openai-only")}
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "summary": summary,
        "instrumented": instrumented,
        "importtime": imports,
        "raw": {f"{variant}/{action}": values for (variant, action), values in runs.items()},
    }

    print(
        f"tokentrail start-up - {report['date']} - Python {report['python']}, {report['cpus']} CPUs - "
        f"{args.runs} fresh interpreters per variant; median (min)"
    )
    med, low = summary["median"], summary["min"]

    def both(variant: str, key: str, digits: int = 0) -> str:
        m, n = med[variant][key], low[variant][key]
        if m is None:
            return "-"
        return f"{m:.{digits}f} ({n:.{digits}f})"

    print(
        f"\nbaseline child (import openai + OTel SDK): process {both('baseline', 'process_ms')} ms, "
        f"its imports {both('baseline', 'baseline_imports_ms')} ms; first chat call "
        f"{both('baseline', 'first_call_ms', 1)} ms\n"
    )
    print(
        f"{'variant':<12}{'process ms':>14}{'added ms':>14}{'import+instrument':>20}{'catalogue ready':>17}"
        f"{'first call ms':>16}{'added ms':>14}"
    )
    for variant in TOKENTRAIL_VARIANTS:
        print(
            f"{variant:<12}{both(variant, 'process_ms'):>14}{both(variant, 'process_added_ms'):>14}"
            f"{both(variant, 'import_and_instrument_ms', 1):>20}{both(variant, 'catalogue_ready_ms'):>17}"
            f"{both(variant, 'first_call_ms', 1):>16}{both(variant, 'first_call_added_ms', 1):>14}"
        )
    print(
        "\ninstrumented: "
        + "; ".join(f"{v}: {', '.join(instrumented[v] or [])}" for v in TOKENTRAIL_VARIANTS)
    )
    print(
        "added ms: vs the baseline child (medians minus medians, mins minus mins). import+instrument: "
        "in-process wall ms of\n`import tokentrail; tokentrail.instrument()` after the baseline imports "
        "(target < 40 ms). catalogue ready: ms after\ninstrument() returned until the background thread "
        "had loaded the prices. first call: one chat call right after start-up.\nOn a shared VM the "
        "medians carry the machine's bursts; the mins are the repeatable figures."
    )
    for mode, rows in imports.items():
        print_imports(mode, rows, args.top)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
