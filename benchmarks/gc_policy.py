"""Run ``sipxmpp`` with a garbage-collector policy for high message rates (an experiment).

At a steady 5,000 msg/s the SIP core holds ~160,000 live transactions (RFC 3261 Timer J
keeps every UDP non-INVITE server transaction for 64*T1 = 32 s), about eight GC-tracked
objects each. CPython's full (generation 2) collections then traverse well over a million
objects: on the benchmark machine each takes close to a second, during which nothing is
read, and SIPp retransmits everything sent meanwhile (T1 = 500 ms). Reference counting frees
these objects anyway (they form no cycles); the cycle collector only has to look at them.

The policy tried here: every :data:`FREEZE_INTERVAL_S`, collect the young generations and
``gc.freeze()`` the survivors, so full collections only ever walk what was allocated since
the last freeze. Frozen objects are still freed by reference counting as usual; only a
reference cycle that was already unreachable but not yet found at freeze time would stay
(the young collection just before each freeze finds almost all of them).

``im_throughput.py --gc-policy freeze`` starts the gateway through this module, so the
effect of adopting the policy in the gateway's runtime can be measured before it is.

    python benchmarks/gc_policy.py run --config FILE      (same arguments as ``sipxmpp``)
"""

from __future__ import annotations

import asyncio
import gc
import sys

#: Seconds between two freezes: short enough that a full collection never walks more than
#: a few seconds of allocations, long enough that the young collection before each costs
#: nothing measurable (it runs about once per second).
FREEZE_INTERVAL_S = 1.0


def _install() -> None:
    original_run = asyncio.run

    def run(main: object, **kwargs: object) -> object:
        async def wrapper() -> object:
            loop = asyncio.get_running_loop()

            def freeze() -> None:
                gc.collect(1)
                gc.freeze()
                loop.call_later(FREEZE_INTERVAL_S, freeze)

            loop.call_later(FREEZE_INTERVAL_S, freeze)
            return await main  # type: ignore[misc]

        return original_run(wrapper(), **kwargs)  # type: ignore[arg-type]

    asyncio.run = run  # type: ignore[assignment]


def main() -> int:
    _install()
    from sipxmpp.gateway.__main__ import main as sipxmpp_main

    return sipxmpp_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
