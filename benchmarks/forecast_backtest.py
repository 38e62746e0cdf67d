"""The forecast's error, measured: backtests on ledgers generated with known shapes.

    PYTHONPATH=src:tests .venv/bin/python benchmarks/forecast_backtest.py [--days 120] [--seeds 3]

For each scenario of ``tests/forecast_data.py`` (flat, weekly cycle, trend, spikes) and each seed,
a ledger of one call an hour over ``--days`` days; then, every day from day 42 on (while a whole
month is left after it), the forecast made from what the ledger held at that moment, to the end of
its day, week and month, against what the ledger says was spent. Prints the mean absolute
percentage error of the projected totals and how often the 80% interval held the actual total.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from forecast_data import SCENARIOS, backtest, cutoffs, generate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    start = datetime(2026, 1, 5).timestamp()
    print("| scenario | period | forecasts | mean abs. error | 80% interval held |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for scenario in SCENARIOS:
            scores: dict[str, list] = {}
            for seed in range(args.seeds):
                path = Path(folder) / f"{scenario.replace(' ', '_')}-{seed}.sqlite"
                generate(path, scenario, start, args.days, seed=seed)
                for score in backtest(path, cutoffs(start, args.days, 42)):
                    scores.setdefault(score.period, []).append(score)
            for period, found in scores.items():
                count = sum(s.forecasts for s in found)
                mape = statistics.fmean(s.mape for s in found)
                coverage = statistics.fmean(s.coverage for s in found)
                print(f"| {scenario} | {period} | {count} | {mape * 100:.1f}% | {coverage * 100:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
