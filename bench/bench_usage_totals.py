"""The progress bar's token count of lmms-eval's API models: lmms-eval 0.7.3's sum vs our running total.

After every answer, lmms-eval's ``openai`` model calls ``log_usage`` (one record appended to the run's
usage history) and then ``get_running_totals()`` for its progress bar. 0.7.3 sums the whole history
each time; ``reguide-eval`` installs :class:`reguide_tasks.lmms.usage_totals.IncrementalTotals`
(``runtime.install_running_usage_totals``). This replays that per-answer pair, single-threaded, for
N answers with each, and prints the seconds and the ratio; doubling N should quadruple lmms-eval's
time and double ours. It also checks that both give the same totals.

    python bench/bench_usage_totals.py [--answers 5000 10000 20000]
"""

from __future__ import annotations

import argparse
import time


def replay(answers: int, totals) -> tuple[float, dict]:
    from lmms_eval.models.model_utils import usage_metrics

    usage_metrics.reset_usage_metrics()
    start = time.perf_counter()
    for i in range(answers):
        usage_metrics.log_usage("bench", input_tokens=2700, output_tokens=700 + i % 50)
        last = totals()
    return time.perf_counter() - start, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, nargs="+", default=[5000, 10000, 20000])
    args = parser.parse_args()
    from lmms_eval.models.model_utils import usage_metrics

    from reguide_tasks.lmms.usage_totals import IncrementalTotals

    theirs = usage_metrics.get_running_totals
    ours = IncrementalTotals(usage_metrics._USAGE_HISTORY, usage_metrics._USAGE_LOCK)
    print(f"{'answers':>8}  {'lmms-eval s':>11}  {'ours s':>7}  {'ratio':>6}")
    for n in args.answers:
        t_theirs, last_theirs = replay(n, theirs)
        t_ours, last_ours = replay(n, ours)
        if last_theirs != last_ours:
            raise SystemExit(f"different totals at {n} answers: {last_theirs} vs {last_ours}")
        print(f"{n:8d}  {t_theirs:11.2f}  {t_ours:7.2f}  {t_theirs / t_ours:6.1f}")
    usage_metrics.reset_usage_metrics()


if __name__ == "__main__":
    main()
