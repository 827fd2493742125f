"""progress_tracking's rate shown live (issue 26 item 7): a benchmark whose adapter block turns the interceptor on
gets its samples processed and their rate in the run's progress lines, read from the route's progress.json."""

from __future__ import annotations

import re

SUITE = """\
name: tracked
defaults: {runtime: local, endpoint_type: completions, parallelism: 2}
benchmarks:
  - name: addition
    harness: builtin
    task: demo_addition
    adapter: {progress_tracking: {}}
    thresholds: {exact_match: {min: 0.5}}
  - {name: untracked, harness: builtin, task: demo_addition_mc, thresholds: {acc: {min: 0.4}}}
"""


def test_the_progress_lines_show_the_tracked_samples_and_rate(pytester, endpoint):
    (pytester.path / "tracked.yaml").write_text(SUITE)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "tracked.yaml", f"--nemo-endpoint={endpoint}", "--nemo-limit-samples=24",
        "--nemo-cache=off", "--nemo-progress-interval=0.2", "--nemo-output-dir", str(pytester.path / "out"))
    result.assert_outcomes(passed=2)
    lines = result.stdout.str().splitlines()
    tracked = [line for line in lines if line.startswith("[nemo-eval] progress tracked.addition:")]
    assert tracked, "\n".join(lines)
    counts = []
    for line in tracked:  # a line before the first answer has no progress.json yet
        match = re.search(r"; progress_tracking: (\d+) samples processed, (\d+\.\d\d) samples/s$", line)
        assert match or "progress_tracking" not in line, line
        if match:
            counts.append(int(match[1]))
            assert float(match[2]) > 0
    assert counts and counts == sorted(counts) and 0 < counts[-1] <= 24
    untracked = [line for line in lines if line.startswith("[nemo-eval] progress tracked.untracked:")]
    assert untracked and not any("progress_tracking" in line for line in untracked)
