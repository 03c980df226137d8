/*
 * A program that uses fifolock the way somebody else's project does: built
 * against the installed headers and library only (tests/install/run.sh builds
 * it with pkg-config and with find_package(fifolock)). Prints one line and
 * exits 0 if every call behaves as documented.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <fifolock.h>
#if WITH_MT
#include <fifolock_mt.h>
#endif

static int failures;

#define EXPECT(cond)                                                  \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "consumer.c:%d: %s\n", __LINE__, #cond);  \
            failures++;                                               \
        }                                                             \
    } while (0)

static int granted_calls;
static char writer[] = "writer";

static void granted(fifolock_waiter *w, void *arg)
{
    EXPECT(arg == (void *)&granted_calls);
    EXPECT(w->data == writer);
    granted_calls++;
}

static void event_loop_lock(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(2);

    fifolock_init(&lock);
    EXPECT(fifolock_try_acquire(&lock, &fifolock_read) == 0);
    w.data = writer;
    EXPECT(fifolock_acquire(&lock, &w, &fifolock_write, granted, &granted_calls) ==
           FIFOLOCK_WAITING);
    EXPECT(fifolock_waiting(&lock) == 1);
    EXPECT(fifolock_try_acquire(&lock, &fifolock_read) == EBUSY); /* FIFO: no barging */
    EXPECT(fifolock_destroy(&lock) == EBUSY);
    EXPECT(fifolock_release(&lock, &fifolock_read) == 0);         /* grants the writer */
    EXPECT(granted_calls == 1);
    EXPECT(fifolock_held(fifolock_holds_of(&lock), &fifolock_write) == 1);
    EXPECT(fifolock_cancel(&lock, &w) == EALREADY);
    EXPECT(fifolock_release(&lock, &fifolock_write) == 0);
    EXPECT(fifolock_release(&lock, &fifolock_write) == EPERM);
    EXPECT(fifolock_try_acquire(&lock, &sem) == 0);
    EXPECT(fifolock_try_acquire(&lock, &sem) == 0);
    EXPECT(fifolock_try_acquire(&lock, &sem) == EBUSY);
    EXPECT(fifolock_held_total(fifolock_holds_of(&lock)) == 2);
    EXPECT(fifolock_release(&lock, &sem) == 0 && fifolock_release(&lock, &sem) == 0);
    EXPECT(fifolock_try_acquire(&lock, &fifolock_six) == 0);
    EXPECT(fifolock_try_acquire(&lock, &fifolock_is) == 0);
    EXPECT(fifolock_try_acquire(&lock, &fifolock_ix) == EBUSY);
    EXPECT(fifolock_release(&lock, &fifolock_six) == 0 && fifolock_release(&lock, &fifolock_is) == 0);
    EXPECT(fifolock_destroy(&lock) == 0);
    EXPECT(fifolock_strerror(EBUSY) != NULL && strlen(fifolock_strerror(EBUSY)) > 0);
}

#if WITH_MT
static void thread_lock(void)
{
    fifolock_mt lock;
    struct timespec past = { 0, 0 }; /* CLOCK_MONOTONIC's origin: long gone */

    EXPECT(fifolock_mt_init(&lock) == 0);
    EXPECT(fifolock_mt_acquire(&lock, &fifolock_mutex) == 0);
    EXPECT(fifolock_mt_try_acquire(&lock, &fifolock_mutex) == EBUSY);
    EXPECT(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, &past) == ETIMEDOUT);
    EXPECT(fifolock_mt_held(&lock, &fifolock_mutex) == 1);
    EXPECT(fifolock_mt_waiting(&lock) == 0);
    EXPECT(fifolock_mt_destroy(&lock) == EBUSY);
    EXPECT(fifolock_mt_release(&lock, &fifolock_mutex) == 0);
    EXPECT(fifolock_mt_release(&lock, &fifolock_mutex) == EPERM);
    EXPECT(fifolock_mt_destroy(&lock) == 0);
}
#endif

int main(void)
{
    event_loop_lock();
#if WITH_MT
    thread_lock();
#endif
    if (failures) {
        printf("consumer: %d checks failed\n", failures);
        return 1;
    }
    printf("consumer: fifolock %s ok: event-loop lock%s\n", FIFOLOCK_VERSION_STRING,
           WITH_MT ? ", thread lock" : "");
    return 0;
}
