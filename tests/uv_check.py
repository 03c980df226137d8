#!/usr/bin/env python3
"""Runs examples/uv_readers_writers and checks what it did.

usage: uv_check.py [--repeat] [--expect NAME,...] PROGRAM [PROGRAM-ARGS...]

The program is run with --trace. Its event lines are replayed here against a
model of a FIFO read/write lock, independently of the program's own checks:

  - every grant goes to the oldest request still waiting on that key
    (nobody overtakes an earlier waiter: FIFO);
  - a read is granted only while no write is held, a write only while
    nothing is held;
  - no grant is lost: when fifolock_acquire() queues a request or
    fifolock_cancel() returns 0, the head of the queue is one that cannot
    be granted yet;
  - a cancel that returned 0 hit a request still waiting, one that returned
    EALREADY hit a granted request, which then releases;
  - every request asks once, ends once (released or cancelled), and at the
    end no key is held or waited on.

Then the program's per-key lines and result line must agree with the replay
(counts, fifo=yes, exclusive=yes, held=0, waiting=0, ok=yes) and the exit
status must be 0. --expect names counters of the result line that must be
non-zero, so that a seed keeps covering the paths it was chosen for
(e.g. cancelled,released_unused). --repeat runs the same seed again and
compares the two outputs: equal unless a timer fired late (late=N > 0),
which only a heavily loaded machine causes.
"""
import re
import subprocess
import sys

TIMEOUT = 120


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


class Key:
    def __init__(self):
        self.queue = []      # request ids waiting, oldest first
        self.readers = 0
        self.writers = 0
        self.requests = 0
        self.grants = 0
        self.cancelled = 0
        self.released_unused = 0
        self.flushes = 0
        self.max_readers = 0


def compatible(k, kind):
    return k.writers == 0 and (kind == "read" or k.readers == 0)


def grant(k, rid, kind, where):
    if k.queue[0] != rid:
        fail("%s: FIFO broken: granted before request %d, which waits since earlier"
             % (where, k.queue[0]))
    if not compatible(k, kind):
        fail("%s: %s granted while %d readers and %d writers hold the key"
             % (where, kind, k.readers, k.writers))
    k.queue.pop(0)
    if kind == "read":
        k.readers += 1
        k.max_readers = max(k.max_readers, k.readers)
    else:
        k.writers += 1
    k.grants += 1


def no_lost_grant(k, kind_of, where):
    """After a call on the lock returned: the head must be unable to go."""
    if k.queue and compatible(k, kind_of[k.queue[0]]):
        fail("%s: lost grant: request %d heads the queue and could be granted (%d readers, "
             "%d writers hold the key)" % (where, k.queue[0], k.readers, k.writers))


def replay(lines):
    """Replays the E lines; returns {key: Key} and {request: state}."""
    keys = {}
    state = {}       # id -> "waiting" | "held" | "done"
    kind_of = {}
    key_of = {}
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 6 or parts[0] != "E":
            fail("line %d: not an event: %r" % (n, line))
        _, _tick, key, rid, kind, event = parts
        key, rid = int(key), int(rid)
        k = keys.setdefault(key, Key())
        where = "line %d (%s)" % (n, line)
        if event in ("acquire", "acquired"):
            if rid in state:
                fail("%s: request asks twice" % where)
            state[rid], kind_of[rid], key_of[rid] = "waiting", kind, key
            k.queue.append(rid)
            k.requests += 1
            if event == "acquired":  # fifolock_acquire() returned 0
                grant(k, rid, kind, where)
                state[rid] = "held"
            else:                    # it returned FIFOLOCK_WAITING
                no_lost_grant(k, kind_of, where)
            continue
        if rid not in state:
            fail("%s: event before the request asked" % where)
        if key_of[rid] != key or kind_of[rid] != kind:
            fail("%s: request changed key or mode" % where)
        if event == "granted":
            if state[rid] != "waiting":
                fail("%s: granted while %s" % (where, state[rid]))
            grant(k, rid, kind, where)
            state[rid] = "held"
        elif event == "cancel":
            # Logged before fifolock_cancel() runs: grants it makes follow.
            if state[rid] == "waiting":
                k.queue.remove(rid)
                state[rid] = "leaving"
            elif state[rid] == "held":
                state[rid] = "leaving held"
            else:
                fail("%s: cancel of a request that is %s" % (where, state[rid]))
        elif event == "cancelled":
            if state[rid] != "leaving":
                fail("%s: cancel returned 0 for a request that was %s"
                     % (where, "granted" if state[rid] == "leaving held" else state[rid]))
            k.cancelled += 1
            state[rid] = "done"
            no_lost_grant(k, kind_of, where)
        elif event == "cancel-granted":
            if state[rid] != "leaving held":
                fail("%s: cancel returned EALREADY for a request that was %s"
                     % (where, "waiting" if state[rid] == "leaving" else state[rid]))
            k.released_unused += 1
            state[rid] = "held"
        elif event == "release":
            if state[rid] != "held":
                fail("%s: release by a request that is %s" % (where, state[rid]))
            if kind == "read":
                k.readers -= 1
            else:
                k.writers -= 1
            if kind == "flush":
                k.flushes += 1
            state[rid] = "done"
        else:
            fail("%s: unknown event %r" % (where, event))
    return keys, state


def check(out, rc, expect):
    lines = out.splitlines()
    events = [l for l in lines if l.startswith("E ")]
    per_key = [fields(l) for l in lines if l.startswith("key=")]
    results = [fields(l) for l in lines if l.startswith("result ")]
    if len(results) != 1:
        fail("expected one result line, found %d" % len(results))
    result = results[0]
    keys, state = replay(events)

    if not events:
        fail("no events traced")
    unfinished = sorted(r for r, s in state.items() if s != "done")
    if unfinished:
        fail("requests never finished: %s" % unfinished[:10])
    if int(result.get("requests", -1)) != len(state):
        fail("result says %s requests, the trace has %d" % (result.get("requests"), len(state)))
    for key, k in keys.items():
        if k.queue or k.readers or k.writers:
            fail("key %d left with %d waiting, %d readers, %d writers"
                 % (key, len(k.queue), k.readers, k.writers))

    if len(per_key) != len(keys):
        fail("%d key lines, the trace uses %d keys" % (len(per_key), len(keys)))
    for line in per_key:
        key = int(line["key"])
        k = keys.get(key)
        if k is None:
            fail("key line for key %d, which the trace never used" % key)
        for name in ("requests", "grants", "cancelled", "released_unused", "flushes",
                     "max_readers"):
            if int(line[name]) != getattr(k, name):
                fail("key %d: the program says %s=%s, the replay counts %d"
                     % (key, name, line[name], getattr(k, name)))
        for name, want in (("fifo", "yes"), ("exclusive", "yes"), ("held", "0"),
                           ("waiting", "0")):
            if line[name] != want:
                fail("key %d: %s=%s, expected %s" % (key, name, line[name], want))

    for name, want in (("fifo", "yes"), ("exclusive", "yes"), ("held", "0"),
                       ("waiting", "0"), ("unfinished", "0"), ("ok", "yes")):
        if result.get(name) != want:
            fail("result: %s=%s, expected %s" % (name, result.get(name), want))
    for name in expect:
        if int(result.get(name, 0)) == 0:
            fail("result: %s=0; this seed was chosen to exercise it" % name)
    if rc != 0:
        fail("exit status %d" % rc)
    return result


def main(argv):
    args, expect, repeat = [], [], False
    it = iter(argv[1:])
    for a in it:
        if a == "--repeat":
            repeat = True
        elif a == "--expect":
            expect = next(it).split(",")
        else:
            args.append(a)
    if not args:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    cmd = [args[0], "--trace"] + args[1:]
    rc, out, err = run(cmd)
    try:
        result = check(out, rc, expect)
        if repeat:
            rc2, out2, _ = run(cmd)
            result2 = check(out2, rc2, expect)
            if result["late"] != "0" or result2["late"] != "0":
                print("not compared with a second run: timers fired late (loaded machine)")
            elif out != out2:
                a, b = out.splitlines(), out2.splitlines()
                n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                fail("same seed, different run; first difference at line %d:\n  %s\n  %s"
                     % (n + 1, a[n] if n < len(a) else "<end>", b[n] if n < len(b) else "<end>"))
            else:
                print("a second run with the same seed printed the same output")
    except Failure as e:
        print("FAIL: %s %s" % (" ".join(cmd), e))
        if err:
            print(err.rstrip())
        return 1
    print("ok: %s: %d requests, %s grants, %s cancelled, %s released unused, FIFO kept, "
          "nothing left held" % (" ".join(cmd), int(result["requests"]), result["grants"],
                                 result["cancelled"], result["released_unused"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
