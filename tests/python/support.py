"""What the Python tests share: running a coroutine without hanging, letting
the loop settle, and failing a test on any unraisable exception."""
import asyncio
import sys
import unittest


async def settle(steps=10):
    for _ in range(steps):
        await asyncio.sleep(0)


def run(coro, timeout=30):
    """asyncio.run, failing instead of hanging if the lock deadlocks."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Test(unittest.TestCase):
    """Fails a test on any unraisable exception (a grant callback's, say)."""

    def setUp(self):
        self.unraisable = []
        self.old_hook = sys.unraisablehook
        sys.unraisablehook = self.unraisable.append

    def tearDown(self):
        sys.unraisablehook = self.old_hook
        self.assertEqual([], [repr(u.exc_value) for u in self.unraisable])
