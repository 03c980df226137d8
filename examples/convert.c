/*
 * convert.c: take several holds at once, and change a hold without letting go.
 *
 * Part 1, a connection pool: a pool of 5 connections is a semaphore mode of
 * size 5. A batch job takes 3 at once (all or nothing) while single
 * requests come and go; once the batch waits, later single requests queue
 * behind it even when one connection is free, so the batch is never
 * starved by a stream of small requests.
 *
 * Part 2, a cache that fills its misses: lookups read under
 * fifolock_upgradable (which shares with plain readers but not with another
 * upgradable), and on a miss convert to fifolock_write to fill the entry,
 * without a moment in which another writer could get in and fill it first.
 *
 * Part 3, a writer that publishes: it builds a record under fifolock_write,
 * then downgrades to fifolock_read; the readers queued meanwhile get in at
 * once, and nobody can change the record between the write and the read.
 */
#define _GNU_SOURCE
#include "fifolock_mt.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static fifolock_mt lock;
static int failures;

#define EXPECT(cond, ...)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            printf("  FAILED: " __VA_ARGS__);                                            \
            printf("\n");                                                                \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* ---- part 1 ---------------------------------------------------------------- */

static fifolock_mode pool = FIFOLOCK_SEMAPHORE(5);
static int batch_done;

static void *batch(void *arg)
{
    (void)arg;
    fifolock_mt_acquire_n(&lock, &pool, 3); /* three connections, all or nothing */
    __atomic_store_n(&batch_done, 1, __ATOMIC_SEQ_CST);
    fifolock_mt_release_n(&lock, &pool, 3);
    return NULL;
}

static void connection_pool(void)
{
    pthread_t t;

    puts("part 1: a batch takes 3 of 5 connections at once");
    fifolock_mt_acquire_n(&lock, &pool, 3); /* three single requests hold one each */
    pthread_create(&t, NULL, batch, NULL);
    while (fifolock_mt_waiting(&lock) == 0)
        usleep(100);
    /* two connections are free, but a single request queues behind the batch */
    EXPECT(fifolock_mt_try_acquire(&lock, &pool) == EBUSY, "a single request jumped the batch");
    puts("  2 free, the batch waits for 3, and a single request waits behind it");
    fifolock_mt_release(&lock, &pool);
    fifolock_mt_release_n(&lock, &pool, 2);
    pthread_join(t, NULL);
    EXPECT(__atomic_load_n(&batch_done, __ATOMIC_SEQ_CST), "the batch never ran");
    puts("  the batch ran once three were free");
}

/* ---- part 2 ---------------------------------------------------------------- */

static int cache[8], cache_valid[8];
static int fills, lookups;

static void *lookup(void *arg)
{
    int key = (int)(intptr_t)arg % 8, i;

    for (i = 0; i < 2000; i++, key = (key + 3) % 8) {
        fifolock_mt_acquire(&lock, &fifolock_upgradable);
        if (!cache_valid[key]) {
            /* a miss: upgrade; no other writer can fill it in between */
            fifolock_mt_convert(&lock, &fifolock_upgradable, &fifolock_write);
            EXPECT(!cache_valid[key], "somebody filled key %d in between", key);
            cache[key] = key * key;
            cache_valid[key] = 1;
            fills++;
            fifolock_mt_release(&lock, &fifolock_write);
        } else {
            EXPECT(cache[key] == key * key, "key %d holds %d", key, cache[key]);
            fifolock_mt_release(&lock, &fifolock_upgradable);
        }
        __atomic_fetch_add(&lookups, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *invalidate(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 200; i++) {
        fifolock_mt_acquire(&lock, &fifolock_write);
        cache_valid[i % 8] = 0;
        fifolock_mt_release(&lock, &fifolock_write);
        usleep(50);
    }
    return NULL;
}

static void cache_fill(void)
{
    pthread_t t[4], inv;
    long i;

    puts("part 2: a cache reads under upgradable and upgrades to fill a miss");
    for (i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, lookup, (void *)(intptr_t)i);
    pthread_create(&inv, NULL, invalidate, NULL);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_join(inv, NULL);
    printf("  %d lookups, %d misses filled, each by exactly one thread\n", lookups, fills);
    EXPECT(fills >= 8, "only %d fills", fills);
}

/* ---- part 3 ---------------------------------------------------------------- */

static struct { int version, a, b; } record;
static int seen_version[3];

static void *reader(void *arg)
{
    long i = (long)(intptr_t)arg;

    fifolock_mt_acquire(&lock, &fifolock_read);
    EXPECT(record.a == record.b, "torn record");
    seen_version[i] = record.version;
    fifolock_mt_release(&lock, &fifolock_read);
    return NULL;
}

static void publish(void)
{
    pthread_t t[3];
    long i;

    puts("part 3: a writer publishes, then downgrades to read what it wrote");
    fifolock_mt_acquire(&lock, &fifolock_write);
    for (i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, reader, (void *)(intptr_t)i);
    while (fifolock_mt_waiting(&lock) < 3)
        usleep(100);
    record.version = 1;
    record.a = record.b = 42;
    fifolock_mt_convert(&lock, &fifolock_write, &fifolock_read); /* the readers get in now */
    EXPECT(record.version == 1 && record.a == 42, "the record changed under the downgrade");
    for (i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    fifolock_mt_release(&lock, &fifolock_read);
    for (i = 0; i < 3; i++)
        EXPECT(seen_version[i] == 1, "reader %ld saw version %d", i, seen_version[i]);
    puts("  the readers that waited saw version 1, and the writer still read it as a reader");
}

int main(void)
{
    fifolock_mt_init(&lock);
    connection_pool();
    cache_fill();
    publish();
    if (fifolock_mt_destroy(&lock) != 0)
        failures++;
    puts(failures ? "FAILED" : "ok");
    return failures != 0;
}
