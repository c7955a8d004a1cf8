"""``glean-sr ARGS`` as a torchrun worker that dies midway: ``torchrun ... tests/killed_worker.py
upscale ...``.

The process of rank ``KILL_RANK`` sends itself SIGKILL inside its ``KILL_AT``-th file write, after
the temporary file is complete and before it is moved into place: the harshest moment for an
atomic write, which must leave no file under the output's name. The other ranks run normally
(torchrun stops them when it sees the killed one).
"""

from __future__ import annotations

import os
import signal
import sys

from glean_sr import atomic
from glean_sr.cli import main


def _arm(kill_at: int) -> None:
    calls = 0

    def dying(real):
        def move(src, dst, *args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *args, **kwargs)

        return move

    # atomic_write_bytes moves its temporary into place with os.link (no overwrite) or
    # os.replace (overwrite)
    atomic.os.link = dying(os.link)
    atomic.os.replace = dying(os.replace)


if __name__ == "__main__":
    if os.environ.get("RANK") == os.environ["KILL_RANK"]:
        _arm(int(os.environ["KILL_AT"]))
    sys.exit(main())
