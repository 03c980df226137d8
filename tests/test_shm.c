/*
 * The shared-memory lock (src/shm.c): every error, FIFO order across
 * handles, timeouts without a trace, and deaths: a killed holder is reported
 * once (EOWNERDEAD) with its pid and mode, a killed waiter leaves silently,
 * a fork child inherits no hold. Processes are real (fork + SIGKILL); each
 * child reports through its exit status, main checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "shm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const fifolock_mode *rw[] = { &fifolock_read, &fifolock_write };
static char path[128];

/* A fresh lock file name for each test. */
static const char *fresh(void)
{
    static int n;

    if (getenv("SHM_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", check_current);
    snprintf(path, sizeof path, "/tmp/fifolock-test-shm-%d-%d", (int)getpid(), n++);
    unlink(path);
    return path;
}

static void sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&t, NULL);
}

/* Waits until `lock` has `n` waiters (up to 5 s). */
static int wait_waiting(fifolock_shm *lock, size_t n)
{
    int i;

    for (i = 0; i < 5000; i++) {
        if (fifolock_shm_waiting(lock) == n)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

/*
 * A test that would block for ever when the library is wrong fails after
 * `seconds` instead, naming itself (SIGALRM ends the whole program).
 */
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

/* ---- children ------------------------------------------------------------ */

enum how { FAST, QUEUED };

/* The options the children of spawn_holder_of() open with (NULL: none). */
static const fifolock_shm_config *child_options;

/*
 * Forks a child that opens its own handle on `file`, takes `mode` (through the
 * fast path or the queue), writes one byte to the pipe and waits to be
 * killed. Returns its pid once it holds.
 */
static pid_t spawn_holder_of(const char *file, const fifolock_mode *const *modes, size_t nmodes,
                             const fifolock_mode *mode, enum how how)
{
    int p[2];
    char c;
    pid_t pid;

    if (pipe(p) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        fifolock_shm l;
        uint64_t token;
        int rc;

        close(p[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with the test, even if it fails */
        if (fifolock_shm_open_config(&l, file, modes, nmodes, child_options) != 0)
            _exit(10);
        rc = how == FAST ? fifolock_shm_acquire(&l, mode)
                         : fifolock_shm_acquire_n(&l, mode, 1, NULL, &token);
        if (rc != 0 && rc != EOWNERDEAD)
            _exit(11);
        if (write(p[1], "x", 1) != 1)
            _exit(12);
        for (;;)
            pause();
    }
    close(p[1]);
    if (pid < 0 || read(p[0], &c, 1) != 1) {
        close(p[0]);
        return -1;
    }
    close(p[0]);
    return pid;
}

static pid_t spawn_holder(const char *file, const fifolock_mode *mode, enum how how)
{
    return spawn_holder_of(file, rw, 2, mode, how);
}

static void kill_and_reap(pid_t pid)
{
    int status;

    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

/* ---- threads ------------------------------------------------------------- */

struct waiter {
    pthread_t tid;
    fifolock_shm *lock;
    const fifolock_mode *mode;
    int rc;
    int order; /* when it was granted, from `granted_count` */
    int release;
};

static int granted_count;

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;

    w->rc = fifolock_shm_acquire(w->lock, w->mode);
    w->order = __atomic_fetch_add(&granted_count, 1, __ATOMIC_SEQ_CST);
    if (w->release)
        fifolock_shm_release(w->lock, w->mode);
    return NULL;
}

static void start_waiter(struct waiter *w, fifolock_shm *lock, const fifolock_mode *mode,
                         int release)
{
    w->lock = lock;
    w->mode = mode;
    w->rc = -1;
    w->release = release;
    pthread_create(&w->tid, NULL, waiter_main, w);
}

/* ---- tests ---------------------------------------------------------------- */

static void open_acquire_release_close(void)
{
    fifolock_shm a, b;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_held(&b, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_try_acquire(&b, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 2);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
}

static void bad_arguments_are_einval(void)
{
    fifolock_shm l;
    fifolock_mode unnamed = { fifolock_read.is_compatible, NULL, 0 };
    fifolock_mode nopred = { NULL, "x", 0 };
    fifolock_mode longname = { fifolock_read.is_compatible,
                               "a-name-that-is-longer-than-the-file-allows", 0 };
    fifolock_mode read2 = fifolock_read; /* same name and limit, other address */
    const fifolock_mode *dup[] = { &fifolock_read, &read2 };
    const fifolock_mode *bad1[] = { &unnamed }, *bad2[] = { &nopred }, *bad3[] = { &longname };
    const fifolock_mode *null1[] = { NULL };
    fifolock_shm_config big = FIFOLOCK_SHM_CONFIG_INIT, unsized = FIFOLOCK_SHM_CONFIG_INIT;
    struct timespec bad_deadline = { 0, 1000000000L };
    struct stat st;

    fresh();
    CHECK_EQ(fifolock_shm_open(NULL, path, rw, 2), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, NULL, rw, 2), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, NULL, 2), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 0), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, FIFOLOCK_SHM_MAX_OPEN_MODES + 1), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, null1, 1), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, bad1, 1), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, bad2, 1), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, bad3, 1), EINVAL);
    CHECK_EQ(fifolock_shm_open(&l, path, dup, 2), EINVAL);
    big.capacity = FIFOLOCK_SHM_MAX_CAPACITY + 1;
    CHECK_EQ(fifolock_shm_open_config(&l, path, rw, 2, &big), EINVAL);
    unsized.size = 0; /* a caller that did not start from FIFOLOCK_SHM_CONFIG_INIT */
    CHECK_EQ(fifolock_shm_open_config(&l, path, rw, 2, &unsized), EINVAL);
    CHECK_EQ(stat(path, &st), -1); /* nothing was created */

    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_acquire(NULL, &fifolock_read), EINVAL);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_mutex), EINVAL); /* not given to open */
    CHECK_EQ(fifolock_shm_try_acquire(&l, &fifolock_x), EINVAL);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &bad_deadline), EINVAL);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &fifolock_read, 0, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &fifolock_read, FIFOLOCK_SHM_MAX_N + 1, NULL, NULL),
             EINVAL);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_mutex), EINVAL);
    CHECK_EQ(fifolock_shm_release(NULL, &fifolock_read), EINVAL);
    CHECK_EQ(fifolock_shm_release_n(&l, &fifolock_read, 0), EINVAL);
    CHECK_EQ(fifolock_shm_waiting(NULL), 0);
    CHECK_EQ(fifolock_shm_held(&l, NULL), 0);
    CHECK_EQ(fifolock_shm_close(NULL), EINVAL);
    CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 0); /* nothing taken by the errors */
    CHECK_EQ(fifolock_shm_close(&l), 0);
    CHECK_EQ(fifolock_shm_close(&l), EINVAL);
    unlink(path);
}

static void release_of_unheld_mode_is_eperm(void)
{
    fifolock_shm a, b;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), EPERM);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), EPERM); /* a's hold, not b's */
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_shm_release_n(&a, &fifolock_read, 2), EPERM);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 1);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), EPERM);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
}

static void close_while_holding_is_ebusy(void)
{
    fifolock_shm a;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), EBUSY);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
}

static void write_file(const char *file, const void *data, size_t size)
{
    int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);

    CHECK_TRUE(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ(write(fd, data, size), (long long)size);
        close(fd);
    }
}

static void foreign_or_corrupt_file_is_ebadmsg(void)
{
    fifolock_shm l;
    char junk[8192];
    int fd;

    memset(junk, 'x', sizeof junk);
    write_file(fresh(), junk, sizeof junk);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), EBADMSG);
    write_file(path, "short", 5);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), EBADMSG);

    /* A real lock file, then damaged: wrong capacity, then cut short. */
    unlink(path);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    fd = open(path, O_RDWR);
    {
        uint32_t cap = FIFOLOCK_SHM_MAX_CAPACITY + 1;
        uint32_t old;

        CHECK_EQ(pread(fd, &old, 4, 12), 4);
        CHECK_EQ(pwrite(fd, &cap, 4, 12), 4);
        CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), EBADMSG);
        CHECK_EQ(pwrite(fd, &old, 4, 12), 4);
        CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
        CHECK_EQ(fifolock_shm_close(&l), 0);
        CHECK_EQ(ftruncate(fd, 4096), 0);
        CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), EBADMSG);
    }
    close(fd);
    unlink(path);
    CHECK_EQ(fifolock_shm_open(&l, "/tmp", rw, 2), EISDIR);
}

/*
 * Garbage written over the queue of a lock in use (another program, a stray
 * write): calls return errors or go on, and never crash (ASan checks every
 * index the library reads from the file).
 */
static void garbage_in_the_queue_never_crashes(void)
{
    fifolock_shm l;
    fifolock_shm_config small = FIFOLOCK_SHM_CONFIG_INIT;
    unsigned char junk[4096];
    unsigned seed = 12345;
    size_t i;
    int fd, rc;

    small.capacity = 8;
    CHECK_EQ(fifolock_shm_open_config(&l, fresh(), rw, 2, &small), 0);
    fd = open(path, O_RDWR);
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand_r(&seed);
    CHECK_EQ(pwrite(fd, junk, sizeof junk, 4096), (long long)sizeof junk); /* handles, entries */
    close(fd);
    rc = fifolock_shm_try_acquire(&l, &fifolock_write);
    CHECK_TRUE(rc == 0 || rc == EBUSY || rc == ENOSPC || rc == EUSERS || rc == EOWNERDEAD);
    if (rc == 0 || rc == EOWNERDEAD)
        CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    (void)fifolock_shm_held(&l, &fifolock_read);
    (void)fifolock_shm_waiting(&l);
    (void)fifolock_shm_close(&l);
    unlink(path);
}

/* A mode that excludes only itself, as mutex does. */
static bool alone_of_its_kind(const fifolock_mode *self, const fifolock_holds *holds)
{
    return fifolock_held(holds, self) == 0;
}

/*
 * Only a whole lock file is opened: an existing empty file, a file an older
 * build began and never finished, or a symbolic link (even to a real lock
 * file) is refused, and left as it was.
 */
static void non_lock_files_and_links_are_refused(void)
{
    fifolock_shm l;
    const uint64_t init = 0x54494e49464f4946ull; /* what older builds wrote first */
    char link_path[160];
    struct stat st;

    write_file(fresh(), "", 0);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), EBADMSG);
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_size, 0); /* not made a lock file */
    write_file(path, &init, sizeof init);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), EBADMSG);
    unlink(path);
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    snprintf(link_path, sizeof link_path, "%s.link", path);
    unlink(link_path);
    CHECK_EQ(symlink(path, link_path), 0);
    CHECK_EQ(fifolock_shm_open(&l, link_path, rw, 2), ELOOP);
    unlink(link_path);
    CHECK_EQ(fifolock_shm_open(&l, "/dev/null", rw, 2), EBADMSG);
    unlink(path);
}

/* A lock file appears only whole: many processes creating it at once share one. */
static void racing_creators_share_one_file(void)
{
    pid_t pids[8];
    int i, status;

    fresh();
    for (i = 0; i < 8; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            fifolock_shm c;
            uint64_t token;

            if (fifolock_shm_open(&c, path, rw, 2) != 0 ||
                fifolock_shm_acquire_n(&c, &fifolock_write, 1, NULL, &token) != 0 ||
                fifolock_shm_release(&c, &fifolock_write) != 0 || fifolock_shm_close(&c) != 0)
                _exit(1);
            _exit(0);
        }
    }
    for (i = 0; i < 8; i++) {
        CHECK_EQ(waitpid(pids[i], &status, 0), pids[i]);
        CHECK_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    unlink(path);
}

static bool always(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    (void)holds;
    return true;
}

static void disagreeing_mode_is_eproto(void)
{
    fifolock_shm a, b;
    fifolock_mode fake_write = { always, "write", 0 }; /* "write" that shares with everyone */
    const fifolock_mode *fake[] = { &fifolock_read, &fake_write };
    fifolock_mode sem3 = FIFOLOCK_SEMAPHORE(3), sem5 = FIFOLOCK_SEMAPHORE(5);
    const fifolock_mode *sems[] = { &sem3, &sem5 };

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, fake, 2), EPROTO);
    /* Same name, other limit: another mode, no conflict. */
    CHECK_EQ(fifolock_shm_open(&b, path, sems, 2), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
}

static void full_mode_table_is_eusers(void)
{
    fifolock_shm a, b;
    fifolock_mode sems[FIFOLOCK_SHM_MAX_MODES + 1];
    const fifolock_mode *p[FIFOLOCK_SHM_MAX_MODES + 1];
    size_t i;

    for (i = 0; i <= FIFOLOCK_SHM_MAX_MODES; i++) {
        sems[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(i + 1);
        p[i] = &sems[i];
    }
    CHECK_EQ(fifolock_shm_open(&a, fresh(), p, FIFOLOCK_SHM_MAX_MODES), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, p + 1, FIFOLOCK_SHM_MAX_MODES), EUSERS);
    CHECK_EQ(strncmp(fifolock_shm_last_error(), "lock file full: ", 16), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, p, 2), 0); /* known modes: fine */
    CHECK_EQ(fifolock_shm_close(&b), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
}

static void full_queue_is_eusers_and_changes_nothing(void)
{
    fifolock_shm l;
    fifolock_shm_config two = FIFOLOCK_SHM_CONFIG_INIT;
    uint64_t t1 = 0, t2 = 0;
    struct stat st;

    two.capacity = 2;
    two.permissions = 0600;
    CHECK_EQ(fifolock_shm_open_config(&l, fresh(), rw, 2, &two), 0);
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600 & ~umask(022));
    CHECK_EQ(fifolock_shm_acquire_n(&l, &fifolock_read, 1, NULL, &t1), 0);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &fifolock_read, 1, NULL, &t2), 0);
    CHECK_LT(t1, t2);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_read), EUSERS);
    CHECK_EQ(strcmp(fifolock_shm_last_error(), "lock file full: 2 requests queued"), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&l, &fifolock_write), EUSERS);
    CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 2);
    CHECK_EQ(fifolock_shm_waiting(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release_n(&l, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/*
 * fifolock_shm_open_ex() and its options are as in release 1.0, for the
 * programs built against it: capacity and permissions still choose.
 */
static void release_1_0_options_still_choose_capacity_and_permissions(void)
{
    fifolock_shm l;
    fifolock_shm_options two = { 2, 0600 };
    struct stat st;

    CHECK_EQ(fifolock_shm_open_ex(&l, fresh(), rw, 2, &two), 0);
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600 & ~umask(022));
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_read), EUSERS);
    CHECK_EQ(fifolock_shm_release_n(&l, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
    CHECK_EQ(fifolock_shm_open_ex(&l, fresh(), rw, 2, NULL), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/* A request that an empty lock refuses would wait for ever: EDEADLK at once. */
static void request_no_empty_lock_grants_is_edeadlk(void)
{
    static fifolock_mode sem2 = FIFOLOCK_SEMAPHORE(2);
    const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write, &sem2 };
    struct timespec limit = in_ms(5000);
    fifolock_shm l;
    uint64_t token;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), modes, 3), 0);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &sem2, 3, &limit, &token), EDEADLK);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &sem2, 3, &limit, NULL), EDEADLK); /* no token */
    CHECK_EQ(fifolock_shm_waiting(&l), 0);
    /* Also behind a holder: refused at once, not after the holder. */
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &sem2, 3, &limit, NULL), EDEADLK);
    CHECK_EQ(fifolock_shm_waiting(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &sem2, 2, &limit, NULL), 0);
    CHECK_EQ(fifolock_shm_release_n(&l, &sem2, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/* More handles than the file has room for: EUSERS, and the text says how many. */
static void full_handle_table_is_eusers_with_its_size(void)
{
    fifolock_shm_config two = FIFOLOCK_SHM_CONFIG_INIT;
    fifolock_shm a, b, c;

    two.capacity = 2;
    CHECK_EQ(fifolock_shm_open_config(&a, fresh(), rw, 2, &two), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&c, path, rw, 2), EUSERS);
    CHECK_EQ(strcmp(fifolock_shm_last_error(), "lock file full: 2 handles"), 0);
    CHECK_EQ(strcmp(fifolock_strerror(EUSERS), fifolock_strerror(ENOSPC)) != 0, 1);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    CHECK_EQ(fifolock_shm_open(&c, path, rw, 2), 0); /* room again */
    CHECK_EQ(fifolock_shm_close(&c), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
}

/* The default room is far beyond 127 handles (one process opens 300 here). */
static void hundreds_of_handles_fit_by_default(void)
{
    static fifolock_shm many[300];
    size_t i, opened = 0;

    fresh();
    for (i = 0; i < 300; i++) {
        int rc = fifolock_shm_open(&many[i], path, rw, 2);

        CHECK_EQ(rc, 0);
        if (rc != 0)
            break;
        opened++;
    }
    CHECK_EQ(fifolock_shm_acquire(&many[opened - 1], &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&many[opened - 1], &fifolock_read), 0);
    for (i = 0; i < opened; i++)
        CHECK_EQ(fifolock_shm_close(&many[i]), 0);
    unlink(path);
}

/*
 * A mode-table entry that no live handle uses is reclaimed: a hundred
 * semaphore sizes, one after another, never fill the table; while all 32
 * entries are in use by open handles, the next mode is EUSERS, and a close
 * makes room.
 */
static void unused_modes_are_reclaimed(void)
{
    static fifolock_mode sems[100];
    static fifolock_shm held[FIFOLOCK_SHM_MAX_MODES];
    fifolock_shm l;
    const fifolock_mode *one[1];
    size_t i;

    fresh();
    for (i = 0; i < 100; i++) {
        sems[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(i + 1);
        one[0] = &sems[i];
        CHECK_EQ(fifolock_shm_open(&l, path, one, 1), 0);
        CHECK_EQ(fifolock_shm_acquire(&l, &sems[i]), 0);
        CHECK_EQ(fifolock_shm_release(&l, &sems[i]), 0);
        CHECK_EQ(fifolock_shm_close(&l), 0);
    }
    for (i = 0; i < FIFOLOCK_SHM_MAX_MODES; i++) {
        one[0] = &sems[i];
        CHECK_EQ(fifolock_shm_open(&held[i], path, one, 1), 0);
    }
    one[0] = &sems[50];
    CHECK_EQ(fifolock_shm_open(&l, path, one, 1), EUSERS);
    CHECK_EQ(strcmp(fifolock_shm_last_error(), "lock file full: 32 modes in use"), 0);
    CHECK_EQ(fifolock_shm_close(&held[7]), 0);
    CHECK_EQ(fifolock_shm_open(&l, path, one, 1), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &sems[50]), 0);
    CHECK_EQ(fifolock_shm_release(&l, &sems[50]), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    for (i = 0; i < FIFOLOCK_SHM_MAX_MODES; i++)
        if (i != 7)
            CHECK_EQ(fifolock_shm_close(&held[i]), 0);
    unlink(path);
}

/*
 * A hold handed on through fifolock_shm_keepalive_fd(): the process that
 * took it dies, a program it started (fork and exec: nothing of the
 * library is left in it but the descriptor) lives on, and the hold stays
 * until that program ends too; then the next grant is told.
 */
static void keepalive_descriptor_keeps_the_hold_across_exec(void)
{
    fifolock_shm l;
    struct timespec limit;
    int p[2], fd;
    pid_t holder, keeper = 0;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_keepalive_fd(NULL, &fd), EINVAL);
    CHECK_EQ(pipe(p), 0);
    holder = fork();
    if (holder == 0) {
        fifolock_shm c;
        uint64_t token;
        pid_t k;

        if (fifolock_shm_open(&c, path, rw, 2) != 0 ||
            fifolock_shm_acquire_n(&c, &fifolock_write, 1, NULL, &token) != 0 ||
            fifolock_shm_keepalive_fd(&c, &fd) != 0 || (fcntl(fd, F_GETFD) & FD_CLOEXEC))
            _exit(1);
        k = fork();
        if (k == 0) {
            execlp("sleep", "sleep", "30", (char *)NULL);
            _exit(127);
        }
        close(fd);
        if (write(p[1], &k, sizeof k) != (ssize_t)sizeof k)
            _exit(1);
        for (;;)
            pause();
    }
    CHECK_EQ(read(p[0], &keeper, sizeof keeper), (long long)sizeof keeper);
    sleep_ms(50); /* the keeper has exec'd */
    kill_and_reap(holder);
    limit = in_ms(300);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &limit), ETIMEDOUT); /* still held */
    kill(keeper, SIGKILL); /* not our child: its exit ends the hold, found within a tick */
    limit = in_ms(2000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &limit), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    close(p[0]);
    close(p[1]);
    unlink(path);
}

/*
 * A holder forks a child that does not exec and never uses the lock, then
 * dies: the child inherited the holder's descriptor and mapping, but neither
 * keeps the holder alive, and its hold is reclaimed within a tick.
 */
static void fork_child_does_not_keep_a_dead_parent_alive(void)
{
    fifolock_shm l;
    struct timespec limit;
    int p[2];
    pid_t holder, child = 0;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    CHECK_EQ(pipe(p), 0);
    holder = fork();
    if (holder == 0) {
        fifolock_shm c;
        pid_t k;

        if (fifolock_shm_open(&c, path, rw, 2) != 0 ||
            fifolock_shm_acquire(&c, &fifolock_write) != 0)
            _exit(1);
        k = fork();
        if (k == 0) {
            for (;;)
                pause();
        }
        if (write(p[1], &k, sizeof k) != (ssize_t)sizeof k)
            _exit(1);
        for (;;)
            pause();
    }
    CHECK_EQ(read(p[0], &child, sizeof child), (long long)sizeof child);
    kill_and_reap(holder);
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &limit), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    kill(child, SIGKILL);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    close(p[0]);
    close(p[1]);
    unlink(path);
}

/* A byte lock on the lock file, through `fd`. */
static int byte_lock(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl;

    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, cmd, &fl) == 0 ? 0 : errno;
}

#define LIVE_BYTES ((off_t)1 << 40) /* src/shm.c's LIVE_BASE */

/*
 * A process that may only read the file (here: a read-only descriptor, all
 * such a process has) holds flock(LOCK_SH) on it: opens and acquires go on,
 * within their deadline.
 */
static void a_reader_flock_never_blocks_an_open(void)
{
    fifolock_shm l;
    struct timespec limit;
    int ro;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    ro = open(path, O_RDONLY);
    CHECK_TRUE(ro >= 0);
    CHECK_EQ(flock(ro, LOCK_SH), 0);
    watchdog(5); /* an open that blocks fails by the watchdog, not by a hang */
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_write, &limit), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    CHECK_EQ(flock(ro, LOCK_EX), 0); /* a read-only descriptor may even take this */
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    alarm(0);
    close(ro);
    unlink(path);
}

struct byte_waiter {
    int fd;
    off_t byte;
    int rc;
};

/*
 * Takes the read lock as soon as the byte is free: polls every 100 us (for
 * 10 s at least) rather than blocking in F_OFD_SETLKW, which valgrind (3.19) does not
 * know to be a blocking call: it would keep every other thread of the test
 * from running while it waits.
 */
static void *read_lock_when_free(void *arg)
{
    struct byte_waiter *b = arg;
    struct timespec pause_100us = { 0, 100000 };
    int tries;

    for (tries = 0; tries < 100000; tries++) {
        b->rc = byte_lock(b->fd, F_OFD_SETLK, F_RDLCK, b->byte, 1);
        if (b->rc != EAGAIN && b->rc != EACCES)
            break;
        nanosleep(&pause_100us, NULL);
    }
    return NULL;
}

/*
 * A reader read-locks a holder's liveness byte the moment the holder dies:
 * the holder is still found dead, and the lock goes on.
 */
static void a_reader_lock_never_keeps_a_dead_holder_alive(void)
{
    fifolock_shm l;
    struct byte_waiter b;
    pthread_t tid;
    struct timespec limit;
    int p[2], ro;
    uint32_t slot = 0;
    pid_t pid;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    CHECK_EQ(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        fifolock_shm c;

        if (fifolock_shm_open(&c, path, rw, 2) != 0 ||
            fifolock_shm_acquire(&c, &fifolock_write) != 0)
            _exit(1);
        slot = fifolock_shm__slot(&c);
        if (write(p[1], &slot, sizeof slot) != (ssize_t)sizeof slot)
            _exit(1);
        for (;;)
            pause();
    }
    CHECK_EQ(read(p[0], &slot, sizeof slot), (long long)sizeof slot);
    ro = open(path, O_RDONLY);
    CHECK_TRUE(ro >= 0);
    b.fd = ro;
    b.byte = LIVE_BYTES + (off_t)slot;
    b.rc = -1;
    pthread_create(&tid, NULL, read_lock_when_free, &b);
    sleep_ms(50); /* the reader waits on the byte */
    kill_and_reap(pid);
    pthread_join(tid, NULL);
    CHECK_EQ(b.rc, 0); /* it holds a read lock on the dead holder's byte */
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &limit), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    close(ro);
    close(p[0]);
    close(p[1]);
    unlink(path);
}

/*
 * A reader read-locks every liveness byte: new handles cannot register
 * (the one denial of service left to it) and are told why, not "full";
 * the handles already open go on.
 */
static void a_reader_locking_free_bytes_is_told_not_full(void)
{
    fifolock_shm l, m;
    int ro;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    ro = open(path, O_RDONLY);
    CHECK_TRUE(ro >= 0);
    /* Every byte but the one the open handle holds (a write lock: a read
     * lock over it would wait). */
    CHECK_EQ(byte_lock(ro, F_OFD_SETLK, F_RDLCK, LIVE_BYTES + 1, 0), 0);
    CHECK_EQ(fifolock_shm_open(&m, path, rw, 2), EACCES);
    CHECK_TRUE(strstr(fifolock_shm_last_error(), "read-locked") != NULL);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    close(ro); /* its locks go with it */
    CHECK_EQ(fifolock_shm_open(&m, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_close(&m), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void requests_are_granted_in_queue_order(void)
{
    fifolock_shm a, b;
    struct waiter w[4];
    const fifolock_mode *modes[4] = { &fifolock_read, &fifolock_write, &fifolock_read,
                                      &fifolock_read };
    int i;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    granted_count = 0;
    for (i = 0; i < 4; i++) {
        start_waiter(&w[i], &b, modes[i], 1);
        CHECK_TRUE(wait_waiting(&a, (size_t)i + 1));
    }
    /* A reader behind the waiting writer queues, though read is free now. */
    CHECK_EQ(fifolock_shm_try_acquire(&a, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    for (i = 0; i < 4; i++)
        pthread_join(w[i].tid, NULL);
    for (i = 0; i < 4; i++)
        CHECK_EQ(w[i].rc, 0);
    CHECK_EQ(w[0].order, 0);
    CHECK_EQ(w[1].order, 1);
    CHECK_TRUE(w[2].order >= 2 && w[3].order >= 2);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
}

static void sleeping_waiter_is_woken_by_release(void)
{
    fifolock_shm a;
    struct waiter w;
    int i;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    start_waiter(&w, &a, &fifolock_write, 0);
    for (i = 0; i < 5000 && fifolock_shm__parked(&a) != 1; i++)
        sleep_ms(1);
    CHECK_EQ(fifolock_shm__parked(&a), 1);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    pthread_join(w.tid, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0); /* any thread may release */
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
}

static void timeout_leaves_no_trace(void)
{
    fifolock_shm a, b;
    struct timespec d;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    d = in_ms(60);
    CHECK_EQ(fifolock_shm_timed_acquire(&b, &fifolock_write, &d), ETIMEDOUT);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    d = in_ms(0);
    CHECK_EQ(fifolock_shm_timed_acquire(&b, &fifolock_write, &d), ETIMEDOUT); /* already past */
    CHECK_EQ(fifolock_shm_timed_acquire(&b, &fifolock_read, &d), 0);          /* past, but free */
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);

    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
}

struct timed {
    pthread_t tid;
    fifolock_shm *lock;
    const fifolock_mode *mode;
    struct timespec deadline;
    int rc;
    size_t ndead;     /* on EOWNERDEAD: deaths reported (read in this thread) */
    pid_t first_dead; /* and the first one's pid */
};

static void *timed_main(void *arg)
{
    struct timed *t = arg;
    struct fifolock_shm_death d[1];

    t->rc = fifolock_shm_timed_acquire(t->lock, t->mode, &t->deadline);
    t->ndead = 0;
    t->first_dead = 0;
    if (t->rc == EOWNERDEAD) {
        t->ndead = fifolock_shm_dead_holders(t->lock, d, 1);
        if (t->ndead > 0)
            t->first_dead = d[0].pid;
    }
    return NULL;
}

static void timed_out_head_lets_those_behind_in(void)
{
    fifolock_shm a, b;
    struct timed t;
    struct waiter r;

    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    t.lock = &b;
    t.mode = &fifolock_write;
    t.deadline = in_ms(200);
    t.rc = -1;
    pthread_create(&t.tid, NULL, timed_main, &t);
    CHECK_TRUE(wait_waiting(&a, 1));
    start_waiter(&r, &b, &fifolock_read, 0); /* behind the writer */
    CHECK_TRUE(wait_waiting(&a, 2));
    pthread_join(t.tid, NULL);
    CHECK_EQ(t.rc, ETIMEDOUT);
    pthread_join(r.tid, NULL);
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 2);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
}

static void weighted_request_is_all_or_nothing(void)
{
    fifolock_shm l;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(3);
    const fifolock_mode *m[] = { &sem };
    struct timespec d;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), m, 1), 0);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &sem, 2, NULL, NULL), 0);
    d = in_ms(30);
    CHECK_EQ(fifolock_shm_acquire_n(&l, &sem, 2, &d, NULL), ETIMEDOUT);
    CHECK_EQ(fifolock_shm_held(&l, &sem), 2);
    CHECK_EQ(fifolock_shm_try_acquire(&l, &sem), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&l, &sem), EBUSY);
    CHECK_EQ(fifolock_shm_release_n(&l, &sem, 3), 0);
    CHECK_EQ(fifolock_shm_held(&l, &sem), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void tokens_grow_with_grant_order(void)
{
    fifolock_shm l;
    uint64_t t[4] = { 0 };
    int i;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    for (i = 0; i < 4; i++) {
        CHECK_EQ(fifolock_shm_acquire_n(&l, &fifolock_write, 1, NULL, &t[i]), 0);
        CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
        if (i > 0)
            CHECK_LT(t[i - 1], t[i]);
    }
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/*
 * A killed writer: every grant is EOWNERDEAD with its pid and mode until a
 * holder of a mode that may write declares the data repaired; a reader that
 * was told may not.
 */
static void check_dead_holder_told_until_repaired(enum how how, int try)
{
    fifolock_shm l;
    struct fifolock_shm_death d[2];
    pid_t pid;
    int rc;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    pid = spawn_holder(path, &fifolock_write, how);
    CHECK_TRUE(pid > 0);
    CHECK_EQ(fifolock_shm_try_acquire(&l, &fifolock_read), EBUSY); /* alive: busy */
    kill_and_reap(pid);
    if (try) {
        rc = fifolock_shm_try_acquire(&l, &fifolock_read);
    } else {
        struct timespec limit = in_ms(1000);
        rc = fifolock_shm_timed_acquire(&l, &fifolock_read, &limit);
    }
    CHECK_EQ(rc, EOWNERDEAD);
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 1);
    CHECK_EQ(d[0].pid, pid);
    CHECK_TRUE(d[0].mode == &fifolock_write);
    CHECK_EQ(strcmp(d[0].name, "write"), 0);
    CHECK_EQ(d[0].n, 1);
    CHECK_EQ(fifolock_shm_consistent(&l), EPERM); /* a reader repairs nothing */
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_consistent(&l), EPERM); /* holds nothing */
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), EOWNERDEAD); /* still unrepaired */
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 1);
    CHECK_EQ(d[0].pid, pid);
    CHECK_EQ(fifolock_shm_consistent(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0); /* repaired: no longer told */
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    /* A new handle (perhaps at the old one's address) has no report. */
    CHECK_EQ(fifolock_shm_open(&l, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void dead_fast_holder_is_eownerdead_until_repaired(void)
{
    check_dead_holder_told_until_repaired(FAST, 0);
}

static void dead_queued_holder_is_eownerdead_until_repaired(void)
{
    check_dead_holder_told_until_repaired(QUEUED, 0);
}

static void try_acquire_reaps_dead_holder(void)
{
    check_dead_holder_told_until_repaired(QUEUED, 1);
}

/*
 * Holders of read-only modes (read, and a mode of the user's declared so)
 * leave nothing to repair: their deaths are not told. A mode of the user's
 * not declared so is told, and a process that declares a mode otherwise
 * than the file records is refused.
 */
static void dead_readers_leave_nothing_to_repair(void)
{
    static fifolock_mode look = { alone_of_its_kind, "look", 0 };
    static fifolock_mode poke = { alone_of_its_kind, "poke", 0 };
    const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write, &look, &poke };
    const fifolock_mode *ro[] = { &look };
    fifolock_shm_config o = FIFOLOCK_SHM_CONFIG_INIT;
    fifolock_shm l, other;
    struct fifolock_shm_death d[4];
    pid_t p1, p2, p3;
    struct timespec limit;

    o.read_only = ro;
    o.nread_only = 1;
    CHECK_EQ(fifolock_shm_open_config(&l, fresh(), modes, 4, &o), 0);
    CHECK_EQ(fifolock_shm_open(&other, path, modes, 4), EPROTO);
    child_options = &o;
    p1 = spawn_holder_of(path, modes, 4, &fifolock_read, FAST);
    p2 = spawn_holder_of(path, modes, 4, &fifolock_read, QUEUED);
    p3 = spawn_holder_of(path, modes, 4, &look, QUEUED);
    CHECK_TRUE(p1 > 0 && p2 > 0 && p3 > 0);
    CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 2);
    kill_and_reap(p1);
    kill_and_reap(p2);
    kill_and_reap(p3);
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_write, &limit), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &look, &limit), 0);
    CHECK_EQ(fifolock_shm_consistent(&l), EPERM); /* read-only: may not declare */
    CHECK_EQ(fifolock_shm_release(&l, &look), 0);
    /* A mode of the user's that was not declared read-only is told. */
    p1 = spawn_holder_of(path, modes, 4, &poke, QUEUED);
    CHECK_TRUE(p1 > 0);
    kill_and_reap(p1);
    child_options = NULL;
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &poke, &limit), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 4), 1);
    CHECK_TRUE(d[0].mode == &poke);
    CHECK_EQ(fifolock_shm_consistent(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &poke), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/*
 * Three readers queued behind a writer that dies are granted together: each
 * of them is told, not only the first.
 */
static void every_reader_granted_after_a_dead_writer_is_told(void)
{
    fifolock_shm l;
    struct timed t[3];
    pid_t pid;
    int i;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    pid = spawn_holder(path, &fifolock_write, QUEUED);
    CHECK_TRUE(pid > 0);
    for (i = 0; i < 3; i++) {
        t[i].lock = &l;
        t[i].mode = &fifolock_read;
        t[i].deadline = in_ms(3000);
        t[i].rc = -1;
        pthread_create(&t[i].tid, NULL, timed_main, &t[i]);
    }
    CHECK_TRUE(wait_waiting(&l, 3));
    kill_and_reap(pid);
    for (i = 0; i < 3; i++) {
        pthread_join(t[i].tid, NULL);
        CHECK_EQ(t[i].rc, EOWNERDEAD);
        CHECK_EQ(t[i].ndead, 1);
        CHECK_EQ(t[i].first_dead, pid);
    }
    CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 3);
    CHECK_EQ(fifolock_shm_consistent(&l), EPERM); /* readers cannot repair */
    CHECK_EQ(fifolock_shm_release_n(&l, &fifolock_read, 3), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void dead_waiter_leaves_silently(void)
{
    fifolock_shm l;
    pid_t pid;
    int i;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    pid = fork();
    if (pid == 0) {
        fifolock_shm c;

        if (fifolock_shm_open(&c, path, rw, 2) != 0)
            _exit(10);
        fifolock_shm_acquire(&c, &fifolock_write);
        _exit(11);
    }
    CHECK_TRUE(wait_waiting(&l, 1));
    kill_and_reap(pid);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    /* Granted to the dead waiter, perhaps: found within a tick, silently. */
    for (i = 0; i < 100 && fifolock_shm_try_acquire(&l, &fifolock_read) == EBUSY; i++)
        sleep_ms(10);
    CHECK_LT(i, 100);
    CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 1);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0); /* 0, not EOWNERDEAD */
    CHECK_EQ(fifolock_shm_waiting(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void waiter_behind_dead_holder_is_granted(void)
{
    fifolock_shm l;
    struct waiter w;
    pid_t pid;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    pid = spawn_holder(path, &fifolock_write, FAST);
    CHECK_TRUE(pid > 0);
    start_waiter(&w, &l, &fifolock_write, 0);
    CHECK_TRUE(wait_waiting(&l, 1));
    kill_and_reap(pid);
    pthread_join(w.tid, NULL); /* within a tick or so: the test's timeout catches a hang */
    CHECK_EQ(w.rc, EOWNERDEAD);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void fork_child_inherits_no_hold(void)
{
    fifolock_shm l;
    pid_t pid;
    int status = -1, p[2];
    char c;
    struct timespec limit;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    pid = fork();
    if (pid == 0) {
        if (fifolock_shm_release(&l, &fifolock_write) != EPERM)
            _exit(1);
        if (fifolock_shm_try_acquire(&l, &fifolock_read) != EBUSY)
            _exit(2);
        if (fifolock_shm__slot(&l) == UINT32_MAX)
            _exit(3); /* registered as a handle of its own */
        _exit(0);
    }
    waitpid(pid, &status, 0);
    CHECK_EQ(status, 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);

    /* A child holding through the inherited handle dies: its death is found. */
    CHECK_EQ(pipe(p), 0);
    pid = fork();
    if (pid == 0) {
        if (fifolock_shm_acquire(&l, &fifolock_write) != 0 || write(p[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    CHECK_EQ(read(p[0], &c, 1), 1); /* it holds, and its acquire returned */
    close(p[0]);
    close(p[1]);
    kill_and_reap(pid);
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_write, &limit), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);

    /* The parent's death is seen by a child that keeps the handle open. */
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

static void child_close_leaves_parent_registered(void)
{
    fifolock_shm l;
    pid_t pid, holder;
    int status = -1;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    pid = fork();
    if (pid == 0)
        _exit(fifolock_shm_close(&l) == 0 ? 0 : 1);
    waitpid(pid, &status, 0);
    CHECK_EQ(status, 0);
    /* The parent still holds its liveness byte: its hold is not reaped. */
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    holder = fork();
    if (holder == 0) {
        fifolock_shm c;
        struct timespec d = in_ms(100);

        if (fifolock_shm_open(&c, path, rw, 2) != 0)
            _exit(10);
        _exit(fifolock_shm_timed_acquire(&c, &fifolock_read, &d) == ETIMEDOUT ? 0 : 1);
    }
    waitpid(holder, &status, 0);
    CHECK_EQ(status, 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/* A read/write pair of the user's own (not the ready-made ones). */
static fifolock_mode own_read, own_write;

static bool own_read_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held(holds, &own_write) == 0;
}

static bool own_write_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held_total(holds) == 0;
}

static fifolock_mode own_read = { own_read_compatible, "own-read", 0 };
static fifolock_mode own_write = { own_write_compatible, "own-write", 0 };

static void mode_unknown_here_is_never_granted_past(void)
{
    fifolock_shm reader, writer, reader2;
    const fifolock_mode *r_only[] = { &own_read }, *w_only[] = { &own_write };
    struct timed t;

    CHECK_EQ(fifolock_shm_open(&reader, fresh(), r_only, 1), 0);
    CHECK_EQ(fifolock_shm_open(&writer, path, w_only, 1), 0);
    CHECK_EQ(fifolock_shm_open(&reader2, path, r_only, 1), 0);
    CHECK_EQ(fifolock_shm_acquire(&reader, &own_read), 0);
    t.lock = &writer;
    t.mode = &own_write;
    t.deadline = in_ms(5000);
    t.rc = -1;
    pthread_create(&t.tid, NULL, timed_main, &t);
    CHECK_TRUE(wait_waiting(&reader, 1));
    /* reader2 does not know "own-write": the waiting writer is not passed. */
    CHECK_EQ(fifolock_shm_try_acquire(&reader2, &own_read), EBUSY);
    /* The release cannot judge the writer's mode: the writer judges itself. */
    CHECK_EQ(fifolock_shm_release(&reader, &own_read), 0);
    pthread_join(t.tid, NULL);
    CHECK_EQ(t.rc, 0);
    CHECK_EQ(fifolock_shm_try_acquire(&reader2, &own_read), EBUSY);
    CHECK_EQ(fifolock_shm_release(&writer, &own_write), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&reader2, &own_read), 0);
    CHECK_EQ(fifolock_shm_release(&reader2, &own_read), 0);
    CHECK_EQ(fifolock_shm_close(&reader), 0);
    CHECK_EQ(fifolock_shm_close(&writer), 0);
    CHECK_EQ(fifolock_shm_close(&reader2), 0);
    unlink(path);
}

/*
 * Every process knows every ready-made mode, a semaphore of any size too,
 * though it did not pass it to open: a semaphore held elsewhere does not
 * block a writer here (each family is a family of its own).
 */
static void ready_made_modes_are_known_everywhere(void)
{
    static fifolock_mode sem2 = FIFOLOCK_SEMAPHORE(2), sem7 = FIFOLOCK_SEMAPHORE(7);
    const fifolock_mode *sems[] = { &sem2, &sem7 }, *mutex_only[] = { &fifolock_mutex };
    fifolock_shm l;
    pid_t a, b, c;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    watchdog(10); /* a mutex holder that takes a semaphore for unknown waits for ever */
    a = spawn_holder_of(path, sems, 2, &sem2, QUEUED);
    b = spawn_holder_of(path, sems, 2, &sem7, FAST);
    c = spawn_holder_of(path, mutex_only, 1, &fifolock_mutex, QUEUED);
    CHECK_TRUE(a > 0 && b > 0 && c > 0);
    CHECK_EQ(fifolock_shm_try_acquire(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    kill_and_reap(a);
    kill_and_reap(b);
    kill_and_reap(c);
    alarm(0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/*
 * Deaths inside the internal lock, one per kind of half-done update (the
 * crash points of src/shm_internal.h): a child kills itself there, and the
 * lock must go on, exact. The child's status proves it reached the point.
 */
static int died_at_crash_point(pid_t pid)
{
    int status = 0;

    waitpid(pid, &status, 0);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static void death_while_absorbing_the_fast_hold_is_repaired(void)
{
    int point;

    for (point = 1; point <= 2; point++) {
        fifolock_shm l;
        struct fifolock_shm_death d[2];
        struct timespec limit;
        pid_t pid;

        CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
        pid = fork();
        if (pid == 0) {
            fifolock_shm c;

            if (fifolock_shm_open(&c, path, rw, 2) != 0 ||
                fifolock_shm_acquire(&c, &fifolock_write) != 0) /* the fast path */
                _exit(1);
            fifolock_shm__crash_at = point;
            fifolock_shm_waiting(&c); /* takes L: absorbs its own fast hold */
            _exit(0);
        }
        CHECK_TRUE(died_at_crash_point(pid));
        limit = in_ms(1000);
        CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &limit), EOWNERDEAD);
        CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 1);
        CHECK_EQ(d[0].pid, pid);
        CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 1);
        CHECK_EQ(fifolock_shm_held(&l, &fifolock_write), 0);
        CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
        CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), EOWNERDEAD); /* until repaired */
        CHECK_EQ(fifolock_shm_consistent(&l), 0);
        CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
        CHECK_EQ(fifolock_shm_waiting(&l), 0);
        CHECK_EQ(fifolock_shm_close(&l), 0);
        unlink(path);
    }
}

static void death_while_publishing_a_request_is_repaired(void)
{
    fifolock_shm l;
    struct timespec limit;
    pid_t pid;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    pid = fork();
    if (pid == 0) {
        fifolock_shm c;
        uint64_t token;

        if (fifolock_shm_open(&c, path, rw, 2) != 0)
            _exit(1);
        fifolock_shm__crash_at = 3;
        fifolock_shm_acquire_n(&c, &fifolock_write, 1, NULL, &token);
        _exit(0);
    }
    CHECK_TRUE(died_at_crash_point(pid));
    limit = in_ms(1000);
    /* It never returned from its acquire: a dead waiter, not a holder. */
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_write, &limit), 0);
    CHECK_EQ(fifolock_shm_waiting(&l), 0);
    CHECK_EQ(fifolock_shm_held(&l, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/* Point 4 (after a grant's CAS) and 5 (after the release, before granting). */
static void death_of_a_releaser_while_granting_is_repaired(void)
{
    int point;

    for (point = 4; point <= 5; point++) {
        fifolock_shm l;
        struct timed t;
        int go[2], ready[2];
        char c;
        pid_t pid;

        CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
        CHECK_EQ(pipe(go), 0);
        CHECK_EQ(pipe(ready), 0);
        pid = fork();
        if (pid == 0) {
            fifolock_shm h;
            uint64_t token;

            if (fifolock_shm_open(&h, path, rw, 2) != 0 ||
                fifolock_shm_acquire_n(&h, &fifolock_write, 1, NULL, &token) != 0 ||
                write(ready[1], "x", 1) != 1 || read(go[0], &c, 1) != 1)
                _exit(1);
            fifolock_shm__crash_at = point;
            fifolock_shm_release(&h, &fifolock_write);
            _exit(0);
        }
        CHECK_EQ(read(ready[0], &c, 1), 1);
        t.lock = &l;
        t.mode = &fifolock_read;
        t.deadline = in_ms(2000);
        t.rc = -1;
        pthread_create(&t.tid, NULL, timed_main, &t);
        CHECK_TRUE(wait_waiting(&l, 1));
        CHECK_EQ(write(go[1], "x", 1), 1);
        CHECK_TRUE(died_at_crash_point(pid));
        pthread_join(t.tid, NULL);
        CHECK_EQ(t.rc, 0); /* it had released: no holder died */
        CHECK_EQ(fifolock_shm_held(&l, &fifolock_read), 1);
        CHECK_EQ(fifolock_shm_held(&l, &fifolock_write), 0);
        CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
        CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
        CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
        CHECK_EQ(fifolock_shm_close(&l), 0);
        close(go[0]);
        close(go[1]);
        close(ready[0]);
        close(ready[1]);
        unlink(path);
    }
}

/*
 * A holder dies; the waiter granted after it, with the report, dies too
 * before its acquire returns (crash point 6). That waiter never held: the
 * report goes on to the next grant, which names the first death only.
 */
static void report_of_a_grantee_that_died_goes_to_the_next(void)
{
    fifolock_shm l;
    struct fifolock_shm_death d[2];
    struct timespec limit;
    pid_t holder, waiter;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    holder = spawn_holder(path, &fifolock_write, QUEUED);
    CHECK_TRUE(holder > 0);
    waiter = fork();
    if (waiter == 0) {
        fifolock_shm w;

        if (fifolock_shm_open(&w, path, rw, 2) != 0)
            _exit(1);
        fifolock_shm__crash_at = 6;
        fifolock_shm_acquire(&w, &fifolock_write);
        _exit(0);
    }
    CHECK_TRUE(wait_waiting(&l, 1));
    kill_and_reap(holder);
    CHECK_TRUE(died_at_crash_point(waiter)); /* granted at its tick, then died */
    limit = in_ms(1000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_read, &limit), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 1);
    CHECK_EQ(d[0].pid, holder);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_consistent(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

/*
 * A releaser dies inside its grant while a death report pends: right after
 * the grant's CAS (crash point 4), or after copying the report into the
 * next entry but before that CAS (crash point 8). Either way the grantee is
 * told (it holds after a death nobody repaired), and so is every grant after
 * it until a holder declares the data consistent.
 */
static void check_report_of_a_dying_releaser(int point)
{
    const fifolock_mode *rws[] = { &fifolock_read, &fifolock_write, &fifolock_upgradable };
    fifolock_shm l;
    struct fifolock_shm_death d[2];
    struct timed t;
    pid_t dead, releaser;
    int go[2], ready[2];
    char c;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rws, 3), 0);
    dead = spawn_holder_of(path, rws, 3, &fifolock_upgradable, QUEUED); /* may write */
    CHECK_TRUE(dead > 0);
    CHECK_EQ(pipe(go), 0);
    CHECK_EQ(pipe(ready), 0);
    releaser = fork();
    if (releaser == 0) {
        fifolock_shm h;
        uint64_t token;

        if (fifolock_shm_open(&h, path, rws, 3) != 0 ||
            fifolock_shm_acquire_n(&h, &fifolock_read, 1, NULL, &token) != 0 ||
            write(ready[1], "x", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(1);
        fifolock_shm__crash_at = point;
        fifolock_shm_release(&h, &fifolock_read);
        _exit(0);
    }
    CHECK_EQ(read(ready[0], &c, 1), 1);
    t.lock = &l;
    t.mode = &fifolock_write;
    t.deadline = in_ms(3000);
    t.rc = -1;
    pthread_create(&t.tid, NULL, timed_main, &t);
    CHECK_TRUE(wait_waiting(&l, 1));
    kill_and_reap(dead);
    sleep_ms(60); /* the waiter's ticks find the dead holder: its report pends */
    CHECK_EQ(write(go[1], "x", 1), 1);
    CHECK_TRUE(died_at_crash_point(releaser));
    pthread_join(t.tid, NULL);
    CHECK_EQ(t.rc, EOWNERDEAD);
    CHECK_EQ(t.ndead, 1);
    CHECK_EQ(t.first_dead, dead);
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 0); /* told to that thread, not this one */
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0); /* repairs the internal lock */
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), EOWNERDEAD); /* still unrepaired */
    CHECK_EQ(fifolock_shm_dead_holders(&l, d, 2), 1);
    CHECK_EQ(d[0].pid, dead);
    CHECK_EQ(fifolock_shm_consistent(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    close(go[0]);
    close(go[1]);
    close(ready[0]);
    close(ready[1]);
    unlink(path);
}

static void report_of_a_releaser_dying_after_the_grant_is_told(void)
{
    check_report_of_a_dying_releaser(4);
}

static void report_copied_by_a_dying_releaser_is_still_told(void)
{
    check_report_of_a_dying_releaser(8);
}

/*
 * A holder dies while declaring the data consistent (crash point 7, between
 * the two stores): the declaration did not happen, so the report stays, and
 * the holder's own death joins it.
 */
static void death_while_declaring_consistent_keeps_the_report(void)
{
    fifolock_shm l;
    struct fifolock_shm_death d[4];
    struct timespec limit;
    pid_t dead, repairer;
    size_t n;

    CHECK_EQ(fifolock_shm_open(&l, fresh(), rw, 2), 0);
    dead = spawn_holder(path, &fifolock_write, QUEUED);
    CHECK_TRUE(dead > 0);
    kill_and_reap(dead);
    repairer = fork();
    if (repairer == 0) {
        fifolock_shm h;
        struct timespec lim = in_ms(2000);

        if (fifolock_shm_open(&h, path, rw, 2) != 0 ||
            fifolock_shm_timed_acquire(&h, &fifolock_write, &lim) != EOWNERDEAD)
            _exit(1);
        fifolock_shm__crash_at = 7;
        fifolock_shm_consistent(&h);
        _exit(0);
    }
    CHECK_TRUE(died_at_crash_point(repairer));
    limit = in_ms(2000);
    CHECK_EQ(fifolock_shm_timed_acquire(&l, &fifolock_write, &limit), EOWNERDEAD);
    n = fifolock_shm_dead_holders(&l, d, 4);
    CHECK_EQ(n, 2);
    if (n == 2)
        CHECK_TRUE((d[0].pid == dead && d[1].pid == repairer) ||
                   (d[1].pid == dead && d[0].pid == repairer));
    CHECK_EQ(fifolock_shm_consistent(&l), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&l, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&l), 0);
    unlink(path);
}

RUN_TESTS(TEST(open_acquire_release_close),
          TEST(release_1_0_options_still_choose_capacity_and_permissions), TEST(mode_unknown_here_is_never_granted_past),
          TEST(ready_made_modes_are_known_everywhere), TEST(bad_arguments_are_einval),
          TEST(release_of_unheld_mode_is_eperm), TEST(close_while_holding_is_ebusy),
          TEST(foreign_or_corrupt_file_is_ebadmsg), TEST(garbage_in_the_queue_never_crashes),
          TEST(non_lock_files_and_links_are_refused), TEST(racing_creators_share_one_file),
          TEST(disagreeing_mode_is_eproto), TEST(full_mode_table_is_eusers),
          TEST(full_queue_is_eusers_and_changes_nothing),
          TEST(request_no_empty_lock_grants_is_edeadlk),
          TEST(full_handle_table_is_eusers_with_its_size),
          TEST(hundreds_of_handles_fit_by_default), TEST(unused_modes_are_reclaimed),
          TEST(keepalive_descriptor_keeps_the_hold_across_exec),
          TEST(fork_child_does_not_keep_a_dead_parent_alive),
          TEST(a_reader_flock_never_blocks_an_open),
          TEST(a_reader_lock_never_keeps_a_dead_holder_alive),
          TEST(a_reader_locking_free_bytes_is_told_not_full),
          TEST(requests_are_granted_in_queue_order), TEST(sleeping_waiter_is_woken_by_release),
          TEST(timeout_leaves_no_trace), TEST(timed_out_head_lets_those_behind_in),
          TEST(weighted_request_is_all_or_nothing), TEST(tokens_grow_with_grant_order),
          TEST(dead_fast_holder_is_eownerdead_until_repaired),
          TEST(dead_queued_holder_is_eownerdead_until_repaired),
          TEST(try_acquire_reaps_dead_holder),
          TEST(dead_readers_leave_nothing_to_repair),
          TEST(every_reader_granted_after_a_dead_writer_is_told), TEST(dead_waiter_leaves_silently),
          TEST(waiter_behind_dead_holder_is_granted), TEST(fork_child_inherits_no_hold),
          TEST(child_close_leaves_parent_registered),
          TEST(death_while_absorbing_the_fast_hold_is_repaired),
          TEST(death_while_publishing_a_request_is_repaired),
          TEST(death_of_a_releaser_while_granting_is_repaired),
          TEST(report_of_a_grantee_that_died_goes_to_the_next),
          TEST(report_of_a_releaser_dying_after_the_grant_is_told),
          TEST(report_copied_by_a_dying_releaser_is_still_told),
          TEST(death_while_declaring_consistent_keeps_the_report))
