"""Summarise a py-spy ``--format raw`` (collapsed stacks) file: the functions with the most
samples, by self time and by inclusive time.

    .venv/bin/python benchmarks/pyspy_top.py /tmp/gw.txt [--top 30] [--filter sipxmpp]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence

# py-spy frames look like "function (path/to/file.py:123)"; the line number varies per sample.
_LINE = re.compile(r":\d+\)$")


def _frame_key(frame: str) -> str:
    frame = _LINE.sub(")", frame.strip())
    return frame.replace("/work/main/src/", "").replace(
        "/work/main/.venv/lib/python3.11/site-packages/", ""
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--filter", default="", help="only frames containing this text")
    args = parser.parse_args(argv)
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    with open(args.file, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            frames = [_frame_key(fr) for fr in stack.split(";") if fr]
            if not frames:
                continue
            self_counts[frames[-1]] += count
            for frame in set(frames):
                incl_counts[frame] += count
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples")
    for title, counts in (("self", self_counts), ("inclusive", incl_counts)):
        print(f"\n-- top {args.top} by {title} time")
        shown = 0
        for frame, count in counts.most_common():
            if args.filter and args.filter not in frame:
                continue
            print(f"{100.0 * count / total:6.1f}%  {frame}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
