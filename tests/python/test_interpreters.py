"""The extension in other interpreters than the main one: refused at import.

Its predicates run in whichever thread makes the engine call (another
thread's release, for the thread lock) and take the GIL there with
PyGILState_Ensure(), which knows the main interpreter only: in a
subinterpreter a predicate saw the main interpreter's modules, and Ctrl-C
during a wait raised SystemError. So the module refuses to load there, with
an ImportError that says why (docs/porting.md), as numpy does.
"""
import os
import sys
import unittest

try:
    import _interpreters as interpreters  # 3.13
except ImportError:
    try:
        import _xxsubinterpreters as interpreters  # 3.8 to 3.12
    except ImportError:
        interpreters = None

import fifolock

CODE = """
import sys
sys.path[:0] = {path!r}
try:
    import fifolock
except ImportError as e:
    message = str(e)
    if "subinterpreter" not in message:
        raise AssertionError("an ImportError that does not say why: " + message)
else:
    raise AssertionError("fifolock was imported in a subinterpreter")
"""


@unittest.skipIf(interpreters is None, "no subinterpreters in this Python")
class Subinterpreters(unittest.TestCase):
    def test_a_subinterpreter_gets_a_clear_import_error(self):
        path = [os.path.dirname(os.path.dirname(fifolock.__file__))]
        interp = interpreters.create()
        try:
            result = interpreters.run_string(interp, CODE.format(path=path))
        except interpreters.RunFailedError as e:  # 3.11, 3.12: the error's text
            self.fail(str(e))
        finally:
            interpreters.destroy(interp)
        if result is not None:  # 3.13: a snapshot of the exception
            self.fail(str(result))
        # the main interpreter's module is as it was
        lock = fifolock.FifoLock()
        self.assertEqual({}, dict(lock.holds))
        self.assertIn("fifolock._fifolock", sys.modules)


if __name__ == "__main__":
    unittest.main()
