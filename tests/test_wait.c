/*
 * The waiting layer's contract (src/wait.h), checked on whichever layer this
 * build has (FIFOLOCK_WAIT: futex, parking, win32...): the thread lock's
 * protocol assumes exactly this and its spin model nothing more. A layer
 * may wake spuriously, so sleepers loop on their word as mt.c does, and a
 * check that a sleeper still sleeps allows for it only where it must.
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"
#include "deadline.h"
#include "wait.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#define TEST(name) { #name, name }

static int64_t ms_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (ms_since(&t0) < ms)
        sched_yield();
}

/* A thread that sleeps on `word` while it holds 0, counting its returns. */
struct sleeper {
    pthread_t thread;
    uint32_t *word;
    int wakes;  /* returns from fifolock__wait, atomic */
    int done;   /* saw the word change, atomic */
    int once;   /* return after the first wake, whatever the word */
};

static void *sleep_on(void *arg)
{
    struct sleeper *s = arg;

    while (__atomic_load_n(s->word, __ATOMIC_ACQUIRE) == 0) {
        (void)fifolock__wait(s->word, 0, NULL);
        __atomic_add_fetch(&s->wakes, 1, __ATOMIC_SEQ_CST);
        if (s->once)
            break;
    }
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void start(struct sleeper *s, uint32_t *word, int once)
{
    s->word = word;
    s->wakes = s->done = 0;
    s->once = once;
    CHECK_EQ(pthread_create(&s->thread, NULL, sleep_on, s), 0);
}

/* Waits up to 5 s for the sleeper to end; joins it. 0 if it did not. */
static int finished(struct sleeper *s)
{
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!__atomic_load_n(&s->done, __ATOMIC_SEQ_CST)) {
        if (ms_since(&t0) > 5000)
            return 0;
        pause_ms(1);
    }
    pthread_join(s->thread, NULL);
    return 1;
}

static void returns_at_once_when_the_word_differs(void)
{
    uint32_t word = 1;
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ(fifolock__wait(&word, 0, NULL), 0);
    CHECK_LT(ms_since(&t0), 1000);
}

static void a_passed_deadline_times_out(void)
{
    uint32_t word = 0;
    struct timespec past = in_ms(-5);
    int rc, i;

    for (i = 0; i < 100 && (rc = fifolock__wait(&word, 0, &past)) == 0; i++)
        ;
    CHECK_EQ(rc, ETIMEDOUT);
}

static void a_timeout_comes_no_sooner_than_the_deadline(void)
{
    uint32_t word = 0;
    struct timespec t0, deadline;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    deadline = in_ms(80);
    while ((rc = fifolock__wait(&word, 0, &deadline)) == 0 && ms_since(&t0) < 5000)
        ; /* spurious wakeups */
    CHECK_EQ(rc, ETIMEDOUT);
    CHECK_LE(80, ms_since(&t0));
}

static void errno_is_kept(void)
{
    uint32_t word = 0;
    struct timespec past = in_ms(-1);

    errno = 12345;
    (void)fifolock__wait(&word, 0, &past);
    fifolock__wake_one(&word);
    fifolock__wake_all(&word);
    CHECK_EQ(errno, 12345);
}

static void a_wake_with_no_sleeper_is_harmless(void)
{
    uint32_t word = 0;
    struct timespec past = in_ms(-1);

    fifolock__wake_one(&word);
    fifolock__wake_all(&word);
    /* and is not remembered for a later sleeper */
    CHECK_EQ(fifolock__wait(&word, 0, &past), ETIMEDOUT);
}

static void a_store_then_wake_ends_a_sleep(void)
{
    uint32_t word = 0;
    struct sleeper s;
    int i;

    for (i = 0; i < 50; i++) {
        __atomic_store_n(&word, 0, __ATOMIC_SEQ_CST);
        start(&s, &word, 0);
        pause_ms(i % 5); /* sometimes before it sleeps, sometimes after */
        __atomic_store_n(&word, 1, __ATOMIC_RELEASE);
        fifolock__wake_one(&word);
        if (!finished(&s)) {
            CHECK_TRUE(!"the sleeper missed its wake");
            __atomic_store_n(&word, 2, __ATOMIC_RELEASE);
            fifolock__wake_all(&word);
            pthread_join(s.thread, NULL);
            return;
        }
    }
}

static void wake_one_wakes_one_sleeper(void)
{
    uint32_t word = 0;
    struct sleeper s[2];
    int woken;

    start(&s[0], &word, 1);
    start(&s[1], &word, 1);
    pause_ms(100); /* both asleep, most likely */
    fifolock__wake_one(&word); /* the word is unchanged: only the wake ends a sleep */
    pause_ms(200);
    woken = __atomic_load_n(&s[0].done, __ATOMIC_SEQ_CST) +
            __atomic_load_n(&s[1].done, __ATOMIC_SEQ_CST);
    CHECK_EQ(woken, 1); /* the other still sleeps */
    __atomic_store_n(&word, 1, __ATOMIC_RELEASE);
    fifolock__wake_all(&word);
    CHECK_TRUE(finished(&s[0]));
    CHECK_TRUE(finished(&s[1]));
}

static void wake_all_wakes_every_sleeper(void)
{
    uint32_t word = 0;
    struct sleeper s[4];
    int i;

    for (i = 0; i < 4; i++)
        start(&s[i], &word, 1);
    pause_ms(100);
    fifolock__wake_all(&word);
    for (i = 0; i < 4; i++)
        CHECK_TRUE(finished(&s[i]));
}

static void a_wake_on_one_word_leaves_another_asleep(void)
{
    /* Neighbours in memory: in the parking table, often one bucket. */
    static uint32_t words[64];
    struct sleeper a, b;

    start(&a, &words[0], 1);
    start(&b, &words[1], 1);
    pause_ms(100);
    fifolock__wake_all(&words[1]);
    CHECK_TRUE(finished(&b));
    pause_ms(100);
    CHECK_EQ(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST), 0);
    fifolock__wake_one(&words[0]);
    CHECK_TRUE(finished(&a));
}

static void layer_is_named(void)
{
    fprintf(stderr, "waiting layer: %s\n", fifolock__wait_layer);
    CHECK_LT(0, (long long)strlen(fifolock__wait_layer));
}

RUN_TESTS(TEST(layer_is_named), TEST(returns_at_once_when_the_word_differs),
          TEST(a_passed_deadline_times_out), TEST(a_timeout_comes_no_sooner_than_the_deadline),
          TEST(errno_is_kept), TEST(a_wake_with_no_sleeper_is_harmless),
          TEST(a_store_then_wake_ends_a_sleep), TEST(wake_one_wakes_one_sleeper),
          TEST(wake_all_wakes_every_sleeper), TEST(a_wake_on_one_word_leaves_another_asleep))
