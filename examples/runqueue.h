/*
 * runqueue.h: a make-believe event loop for the examples.
 *
 * A real program gets its loop from libuv, libevent, epoll or io_uring. Here
 * a clock counts ticks and loop_call_at() schedules a step (a function and
 * its argument) for a later tick. Steps due at the same tick run in the order
 * they were scheduled. Nothing sleeps: the loop jumps from one tick to the
 * next and stops when no step is left.
 *
 * The helpers below also keep each example honest. Every request takes a
 * ticket when it is made; check_fifo() fails the program if the lock grants
 * a later ticket before an earlier one; check() fails it when any other claim
 * of the story turns out false. story_end() gives main() its exit code.
 */
#ifndef RUNQUEUE_H
#define RUNQUEUE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEVER ((unsigned)-1) /* a tick that never comes */

/* "s" unless n is 1: for "waited 1 tick", "waited 2 ticks". */
#define PLURAL(n) ((n) == 1 ? "" : "s")

typedef void step_fn(void *arg);

struct step {
    unsigned at; /* tick to run at */
    step_fn *fn;
    void *arg;
};

static struct {
    unsigned now;             /* the current tick */
    size_t n;                 /* steps scheduled */
    struct step steps[64];    /* sorted by tick; plenty for a story */
    unsigned tickets;         /* requests made so far */
    unsigned last_granted;    /* ticket of the latest grant */
    int failures;             /* claims of the story found false */
} loop;

/* Schedules fn(arg) to run at tick `at`, after the steps already due then. */
static inline void loop_call_at(unsigned at, step_fn *fn, void *arg)
{
    size_t i;

    if (loop.n == sizeof loop.steps / sizeof loop.steps[0]) {
        fputs("runqueue: too many steps\n", stderr);
        exit(2);
    }
    for (i = loop.n++; i > 0 && loop.steps[i - 1].at > at; i--)
        loop.steps[i] = loop.steps[i - 1];
    loop.steps[i] = (struct step){ at < loop.now ? loop.now : at, fn, arg };
}

/* Runs the steps in order of their ticks until none is left. */
static inline void loop_run(void)
{
    while (loop.n > 0) {
        struct step s = loop.steps[0];

        memmove(&loop.steps[0], &loop.steps[1], --loop.n * sizeof s);
        loop.now = s.at;
        s.fn(s.arg);
    }
}

/* printf's format checks; MinGW's C99 printf is "gnu_printf" to gcc. */
#if defined(__MINGW_PRINTF_FORMAT)
#define RUNQUEUE_PRINTF(f, a) __attribute__((format(__MINGW_PRINTF_FORMAT, f, a)))
#else
#define RUNQUEUE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#endif

/* Prints one line of the story, stamped with the current tick. */
RUNQUEUE_PRINTF(1, 2) static inline void say(const char *fmt, ...)
{
    va_list ap;

    printf("t=%-3u ", loop.now);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Checks a claim of the story: a false one is printed and fails the program. */
RUNQUEUE_PRINTF(2, 3) static inline void check(bool ok, const char *fmt, ...)
{
    va_list ap;

    if (ok)
        return;
    loop.failures++;
    printf("      !! ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* A ticket for a new request: tickets count up in the order requests are made. */
static inline unsigned take_ticket(void)
{
    return ++loop.tickets;
}

/* First in, first out: no request may be granted before an earlier one. */
static inline void check_fifo(const char *who, unsigned ticket)
{
    check(ticket > loop.last_granted, "%s was granted before an earlier request", who);
    loop.last_granted = ticket;
}

/* Checks that `who` got the lock at the tick the story says (maybe NEVER). */
static inline void check_granted_at(const char *who, unsigned got, unsigned expected)
{
    char a[16] = "never", b[16] = "never";

    if (got != NEVER)
        snprintf(a, sizeof a, "t=%u", got);
    if (expected != NEVER)
        snprintf(b, sizeof b, "t=%u", expected);
    check(got == expected, "%s got the lock: %s; the story says: %s", who, a, b);
}

/* The exit code of an example: 0 when every claim held. */
static inline int story_end(void)
{
    if (loop.failures) {
        printf("%d claim(s) of the story were false\n", loop.failures);
        return 1;
    }
    printf("ok: first come, first served, and no incompatible holders at once\n");
    return 0;
}

#endif /* RUNQUEUE_H */
