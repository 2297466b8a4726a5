# ln.run: an application task that dies ends the run with its exception (ln.run.main then
# logs the crash and exits non-zero, so a board resets) instead of running on without it.
# MicroPython's asyncio only: CPython logs an exception handler's own exception.
import sys

from ln import run

PORTS = ("unix",)
MP = sys.implementation.name == "micropython"


class _App:
    """What run._run asks of the application: stats, a journal, run(seconds)."""

    def __init__(self):
        self.stats = {"heartbeats": 0, "last_seq": None}
        self.journal = self
        self._freed = 0
        self.ran_on = False

    async def run(self, seconds):
        import asyncio

        async def sampler():
            await asyncio.sleep_ms(5)
            raise OSError(5)  # the source's socket, say

        asyncio.create_task(sampler())
        await asyncio.sleep_ms(int(seconds * 1000))
        self.ran_on = True
        return self.stats


def test_a_dead_task_ends_the_run():
    if not MP:
        return
    import asyncio

    a = _App()
    try:
        asyncio.run(run._run(a, None, "/nonexistent", False, None, 1))
        died = None
    except OSError as e:
        died = e.args[0]
    assert died == 5 and not a.ran_on, (died, a.ran_on)


if __name__ == "__main__":
    test_a_dead_task_ends_the_run()
