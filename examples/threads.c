/*
 * threads.c: a read/write lock for threads that nobody can jump.
 *
 * Part 1: four readers and two writers share a record of two fields that the
 * writers keep equal. Readers run side by side; a writer runs alone; no reader
 * ever sees the fields differ.
 *
 * Part 2: the queue is first come, first served. While a reader holds the
 * lock, a writer asks, then a reader: the late reader could share with the
 * one inside, but it waits behind the writer, so a stream of readers can
 * never starve a writer.
 *
 * Part 3: a request that cannot wait forever gives a deadline; when it
 * passes, the request leaves the queue as if it had never been made. (The
 * lock counts holds, not threads: here the thread that holds the write lock
 * asks for a read itself, which only the deadline ends.)
 */
#define _GNU_SOURCE
#include "fifolock_mt.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static fifolock_mt lock;
static struct { long a, b; } record;         /* writers keep a == b */
static long reads, writes, torn, most_readers;
static int readers_inside;

static void *reader(void *arg)
{
    int i, inside;

    for (i = 0; i < 20000; i++) {
        fifolock_mt_acquire(&lock, &fifolock_read);
        inside = __atomic_add_fetch(&readers_inside, 1, __ATOMIC_RELAXED);
        if (i % 16 == 0)
            sched_yield(); /* linger now and then: other readers join */
        if (record.a != record.b)
            __atomic_fetch_add(&torn, 1, __ATOMIC_RELAXED);
        if (inside > __atomic_load_n(&most_readers, __ATOMIC_RELAXED))
            __atomic_store_n(&most_readers, inside, __ATOMIC_RELAXED);
        __atomic_fetch_add(&reads, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&readers_inside, 1, __ATOMIC_RELAXED);
        fifolock_mt_release(&lock, &fifolock_read);
    }
    return arg;
}

static void *writer(void *arg)
{
    int i;

    for (i = 0; i < 5000; i++) {
        fifolock_mt_acquire(&lock, &fifolock_write);
        record.a++;
        sched_yield(); /* a reader sneaking in now would see a != b */
        record.b++;
        writes++;
        fifolock_mt_release(&lock, &fifolock_write);
    }
    return arg;
}

/* Part 2: asks for a mode and notes when it got it. */
struct asker {
    const fifolock_mode *mode;
    const char *name;
};
static const char *got[2];
static int n_got;

static void *ask(void *arg)
{
    struct asker *a = arg;

    fifolock_mt_acquire(&lock, a->mode);
    got[__atomic_fetch_add(&n_got, 1, __ATOMIC_SEQ_CST)] = a->name;
    fifolock_mt_release(&lock, a->mode);
    return NULL;
}

static void wait_until_queued(size_t n)
{
    while (fifolock_mt_waiting(&lock) < n)
        usleep(1000);
}

int main(void)
{
    pthread_t t[6];
    struct asker w = { &fifolock_write, "the writer" }, r = { &fifolock_read, "the late reader" };
    struct timespec deadline;
    int i, rc;

    fifolock_mt_init(&lock);

    /* Part 1 */
    for (i = 0; i < 6; i++)
        pthread_create(&t[i], NULL, i < 4 ? reader : writer, NULL);
    for (i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    printf("part 1: %ld reads, %ld writes, up to %ld readers at once, %ld torn reads\n", reads,
           writes, most_readers, torn);

    /* Part 2 */
    fifolock_mt_acquire(&lock, &fifolock_read);
    pthread_create(&t[0], NULL, ask, &w);
    wait_until_queued(1);
    pthread_create(&t[1], NULL, ask, &r);
    wait_until_queued(2);
    printf("part 2: a reader holds the lock; %zu threads wait (the writer, then a reader)\n",
           fifolock_mt_waiting(&lock));
    fifolock_mt_release(&lock, &fifolock_read);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    printf("        first in: %s; second: %s\n", got[0], got[1]);

    /* Part 3 */
    fifolock_mt_acquire(&lock, &fifolock_write);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += 50 * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    rc = fifolock_mt_timed_acquire(&lock, &fifolock_read, &deadline);
    printf("part 3: while written, a read with a 50 ms deadline: %s; still waiting: %zu\n",
           rc == ETIMEDOUT ? "timed out" : fifolock_strerror(rc), fifolock_mt_waiting(&lock));
    fifolock_mt_release(&lock, &fifolock_write);

    rc = fifolock_mt_destroy(&lock);
    return torn == 0 && got[0] == w.name && rc == 0 ? 0 : 1;
}
