"""The package's documented recipes, copied verbatim, run unchanged."""
import asyncio
import sys
import textwrap
import unittest

from support import Test, run, settle

# The seed documentation's recipes, verbatim (their `async def` bodies are
# placeholders there: each test below supplies them).
MUTEX_RECIPE = '''
import asyncio
from fifolock import FifoLock


class Mutex(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[Mutex]


lock = FifoLock()
'''

READ_WRITE_RECIPE = '''
import asyncio
from fifolock import FifoLock


class Read(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[Write]

class Write(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[Read] and not holds[Write]


lock = FifoLock()
'''

SEMAPHORE_RECIPE = '''
import asyncio
from fifolock import FifoLock



class SemaphoreBase(asyncio.Future):
    @classmethod
    def is_compatible(cls, holds):
        return holds[cls] < cls.size


lock = FifoLock()
Semaphore = type('Semaphore', (SemaphoreBase, ), {'size': 3})
'''


def recipe(source):
    namespace = {"__name__": "recipe"}
    exec(textwrap.dedent(source), namespace)
    return namespace


class RecipeTest(Test):
    def test_mutex_recipe_admits_one_task_at_a_time_in_request_order(self):
        ns = recipe(MUTEX_RECIPE)
        lock, Mutex = ns["lock"], ns["Mutex"]
        inside, most, order = 0, 0, []

        async def access(i):
            nonlocal inside, most
            async with lock(Mutex):
                inside += 1
                most = max(most, inside)
                order.append(i)
                await asyncio.sleep(0)
                inside -= 1

        async def main():
            await asyncio.gather(*(access(i) for i in range(20)))

        run(main())
        self.assertEqual(1, most)
        self.assertEqual(list(range(20)), order)
        self.assertEqual({}, lock.holds)

    def test_read_write_recipe_shares_reads_and_queues_reads_behind_a_write(self):
        ns = recipe(READ_WRITE_RECIPE)
        lock, Read, Write = ns["lock"], ns["Read"], ns["Write"]
        log = []

        async def read(name, gate):
            async with lock(Read):
                log.append(("in", name, dict(lock.holds)))
                await gate.wait()
            log.append(("out", name))

        async def write(name, gate):
            async with lock(Write):
                log.append(("in", name, dict(lock.holds)))
                await gate.wait()
            log.append(("out", name))

        async def main():
            g1, g2, g3 = asyncio.Event(), asyncio.Event(), asyncio.Event()
            r1 = asyncio.create_task(read("r1", g1))
            r2 = asyncio.create_task(read("r2", g1))
            await settle()
            self.assertEqual({Read: 2}, lock.holds)
            w = asyncio.create_task(write("w", g2))
            await settle()
            r3 = asyncio.create_task(read("r3", g3))  # compatible now, but must queue
            await settle()
            self.assertEqual({Read: 2}, lock.holds)
            self.assertEqual(2, lock.waiting)
            g1.set()
            await settle()
            self.assertEqual({Write: 1}, lock.holds)
            self.assertEqual(1, lock.waiting)
            g2.set()
            await settle()
            self.assertEqual({Read: 1}, lock.holds)
            g3.set()
            await asyncio.gather(r1, r2, w, r3)

        run(main())
        entered = [entry[1] for entry in log if entry[0] == "in"]
        self.assertEqual(["r1", "r2", "w", "r3"], entered)
        self.assertEqual({}, lock.holds)

    def test_semaphore_recipe_admits_at_most_three(self):
        ns = recipe(SEMAPHORE_RECIPE)
        lock, Semaphore = ns["lock"], ns["Semaphore"]
        inside, most, order = 0, 0, []

        async def access(i):
            nonlocal inside, most
            async with lock(Semaphore):
                inside += 1
                most = max(most, inside)
                order.append(i)
                self.assertLessEqual(lock.holds[Semaphore], 3)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                inside -= 1

        async def main():
            await asyncio.gather(*(access(i) for i in range(12)))

        run(main())
        self.assertEqual(3, most)
        self.assertEqual(list(range(12)), order)
        self.assertEqual({}, lock.holds)


if __name__ == "__main__":
    unittest.main()
