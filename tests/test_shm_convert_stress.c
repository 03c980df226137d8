/*
 * The shared-memory lock's conversions under SIGKILL (src/shm.c), apart
 * from tests/test_shm_convert.c because it forks busy processes that
 * valgrind would make miss their deadlines.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "shm_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STUCK_MS 5000

static const fifolock_mode *rwu[] = { &fifolock_read, &fifolock_write, &fifolock_upgradable };
static char path[128];

static const char *fresh(void)
{
    snprintf(path, sizeof path, "/tmp/fifolock-test-shmconvstress-%d", (int)getpid());
    unlink(path);
    return path;
}

static void sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&t, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void on_watchdog(int sig)
{
    static const char msg[] = "FAIL: a test blocked (watchdog): ";

    (void)sig;
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, check_current, strlen(check_current));
    (void)!write(2, "\n", 1);
    _exit(1);
}

static void watchdog(unsigned seconds)
{
    signal(SIGALRM, on_watchdog);
    alarm(seconds);
}

static int flag_set(void *arg)
{
    return __atomic_load_n((int *)arg, __ATOMIC_ACQUIRE);
}

/*
 * Conversions under SIGKILL: worker processes read, write, and take
 * upgradable to convert it to write (waiting, timed, try, or interrupted)
 * and sometimes back down to read, while the parent kills a random worker
 * every few milliseconds and starts a new one; now and then a worker dies
 * by itself at crash point 9, between a conversion's switch and its grant.
 * Inside, each publishes its mode on a shared board and checks it against
 * every other worker's: a conflict with a living process is a violation.
 * Every wait has a 5 s deadline: missing it means the lock is stuck.
 */
#define CW_WORKERS 4

struct cboard {
    int stop;
    /* pid << 8 | mode inside (0, or 1 read, 2 upgradable, 3 write): one
     * word, so that a worker started in a killed one's place is never read
     * with the dead one's mode */
    uint64_t in[CW_WORKERS];
    int errors, first_rc, first_line;
    int violations;
    int switched, refused; /* conversions made, and given up with `from` kept */
};

static struct cboard *cb;

static int process_dead(int pid)
{
    char p[64], buf[512], *paren;
    FILE *f;
    size_t n;

    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    f = fopen(p, "r");
    if (f == NULL)
        return 1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    return paren == NULL || paren[1] == '\0' || paren[2] == 'Z' || paren[2] == 'X';
}

static void cw_error(int rc, int line)
{
    if (__atomic_add_fetch(&cb->errors, 1, __ATOMIC_SEQ_CST) == 1) {
        __atomic_store_n(&cb->first_rc, rc, __ATOMIC_SEQ_CST);
        __atomic_store_n(&cb->first_line, line, __ATOMIC_SEQ_CST);
    }
}

#define CW_EXPECT(cond, rc)                                                               \
    do {                                                                                  \
        if (!(cond))                                                                      \
            cw_error((rc), __LINE__);                                                     \
    } while (0)

static int cw_compatible(int a, int b)
{
    return (a == 1 && b != 3) || (b == 1 && a != 3);
}

static void cw_say(int w, int mode)
{
    __atomic_store_n(&cb->in[w], (uint64_t)getpid() << 8 | (uint64_t)mode, __ATOMIC_SEQ_CST);
}

/* Worker w holds `mode` now: publish it and check it against the others. */
static void cw_enter(int w, int mode)
{
    int i, k;

    cw_say(w, mode);
    for (i = 0; i < CW_WORKERS; i++) {
        uint64_t word = __atomic_load_n(&cb->in[i], __ATOMIC_SEQ_CST);
        int other = (int)(word & 0xff), pid = (int)(word >> 8);

        if (i == w || other == 0 || cw_compatible(mode, other))
            continue;
        for (k = 0; k < 1000 && !process_dead(pid); k++) {
            if (__atomic_load_n(&cb->in[i], __ATOMIC_SEQ_CST) != word)
                break; /* it left while alive: they overlapped */
            sleep_ms(1);
        }
        if (!process_dead(pid))
            __atomic_add_fetch(&cb->violations, 1, __ATOMIC_SEQ_CST);
    }
}

static int cw_ok(int rc)
{
    return rc == 0 || rc == EOWNERDEAD;
}

static void cw_worker(int w)
{
    fifolock_shm l;
    unsigned seed = (unsigned)getpid() * 2654435761u;
    int rc, yes = 1;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    cw_say(w, 0);
    if (fifolock_shm_open(&l, path, rwu, 3) != 0)
        _exit(10);
    while (!__atomic_load_n(&cb->stop, __ATOMIC_SEQ_CST)) {
        unsigned r = rand_r(&seed) % 10;
        struct timespec d = in_ms(STUCK_MS);
        const fifolock_mode *m;
        int now;

        if (rand_r(&seed) % 300 == 0)
            fifolock_shm__crash_at = 9; /* dies at the next switch it makes */
        if (r < 3) {
            m = &fifolock_read;
            now = 1;
        } else if (r < 5) {
            m = &fifolock_write;
            now = 3;
        } else {
            m = &fifolock_upgradable;
            now = 2;
        }
        rc = fifolock_shm_timed_acquire(&l, m, &d);
        CW_EXPECT(cw_ok(rc), rc);
        if (!cw_ok(rc))
            continue;
        cw_enter(w, now);
        if (now == 2) {
            unsigned how = rand_r(&seed) % 4;

            d = in_ms(how == 1 ? 1 + rand_r(&seed) % 5 : STUCK_MS);
            if (how == 2)
                rc = fifolock_shm_try_convert(&l, &fifolock_upgradable, &fifolock_write);
            else if (how == 3 && rand_r(&seed) % 2)
                rc = fifolock_shm_convert_interruptible(&l, &fifolock_upgradable,
                                                        &fifolock_write, &d, flag_set, &yes);
            else
                rc = fifolock_shm_timed_convert(&l, &fifolock_upgradable, &fifolock_write, &d);
            if (cw_ok(rc)) {
                __atomic_add_fetch(&cb->switched, 1, __ATOMIC_SEQ_CST);
                m = &fifolock_write;
                now = 3;
                cw_enter(w, now);
            } else {
                /* Only a deadline of a few ms, a try or a question may refuse. */
                CW_EXPECT(rc == EINTR || rc == EBUSY || (how == 1 && rc == ETIMEDOUT), rc);
                __atomic_add_fetch(&cb->refused, 1, __ATOMIC_SEQ_CST);
            }
        }
        if (now == 3 && rand_r(&seed) % 3 == 0) {
            /* Readers may join from inside the call on: say read first. */
            cw_say(w, 1);
            rc = fifolock_shm_convert(&l, &fifolock_write, &fifolock_read); /* at once */
            CW_EXPECT(cw_ok(rc), rc);
            if (cw_ok(rc)) {
                m = &fifolock_read;
                now = 1;
            }
        }
        if (now != 1)
            (void)fifolock_shm_consistent(&l); /* repaired: a writer may say so */
        cw_say(w, 0);
        rc = fifolock_shm_release(&l, m);
        CW_EXPECT(rc == 0, rc);
    }
    _exit(fifolock_shm_close(&l) == 0 ? 0 : 11);
}

static pid_t cw_spawn(int w)
{
    pid_t pid = fork();

    if (pid == 0)
        cw_worker(w);
    return pid;
}

static void conversions_survive_random_kills(void)
{
    pid_t pids[CW_WORKERS];
    fifolock_shm a;
    int i, kills = 0, status, bad_exits = 0, crashed = 0;
    int64_t end;
    unsigned seed = 12345;

    watchdog(60);
    cb = mmap(NULL, sizeof *cb, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (cb == MAP_FAILED) {
        CHECK_TRUE(0);
        return;
    }
    memset(cb, 0, sizeof *cb);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    for (i = 0; i < CW_WORKERS; i++)
        pids[i] = cw_spawn(i);
    end = mono_ms() + 3000;
    while (mono_ms() < end) {
        int w = (int)(rand_r(&seed) % CW_WORKERS);

        sleep_ms(5 + rand_r(&seed) % 35);
        /* Workers that died by themselves (crash point 9) are replaced too. */
        for (i = 0; i < CW_WORKERS; i++)
            if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                if (!WIFSIGNALED(status))
                    bad_exits++;
                crashed++;
                pids[i] = cw_spawn(i);
            }
        kill(pids[w], SIGKILL);
        waitpid(pids[w], &status, 0);
        kills++;
        pids[w] = cw_spawn(w);
    }
    __atomic_store_n(&cb->stop, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < CW_WORKERS; i++) {
        waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bad_exits += !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }
    if (getenv("SHM_TEST_VERBOSE"))
        fprintf(stderr, "  %d kills, %d died at crash point 9, %d switched, %d refused, "
                        "%d errors (first rc %d line %d)\n",
                kills, crashed, cb->switched, cb->refused, cb->errors, cb->first_rc,
                cb->first_line);
    CHECK_EQ(cb->errors, 0);
    CHECK_EQ(cb->violations, 0);
    CHECK_EQ(bad_exits, 0);
    CHECK_TRUE(cb->switched > 20);
    /* The lock is usable and empty. */
    CHECK_TRUE(cw_ok(fifolock_shm_try_acquire(&a, &fifolock_write)));
    (void)fifolock_shm_consistent(&a);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    munmap(cb, sizeof *cb);
    unlink(path);
    alarm(0);
}

RUN_TESTS(TEST(conversions_survive_random_kills))
