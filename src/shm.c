/*
 * The shared-memory front end: a queue of requests in a file that every
 * process maps, the engine's rule (rule.c) to decide who holds, and byte
 * locks on the file to tell the living from the dead. This file queues and
 * tells; the rule alone decides.
 *
 * The protocol is also a Promela model, tests/model/fifolock_shm.pml, where
 * a process may die between any two steps; the step names below (L1-L4,
 * F1-F3, A1-A6, T1, R1-R2, G1-G2, D1-D3, C1, X0-X2) label the same steps there;
 * M1 (the mode table), X3 (the model's converter has no other thread to
 * release) and the fork and open paths are not modelled: the C tests force
 * deaths there and test X3.
 *
 * Words in the file (struct shm_header, shm_slot, shm_entry below)
 *   mutex       L: a process-shared robust pthread mutex over everything
 *               below but `fast` and the entries' `state`.
 *   fast        the fast path (64 bits, atomic):
 *                 BUSY       the state is under L: every hold is an entry
 *                 IDLE       no entry and no death to report; L is not needed
 *                            to take the lock once
 *                 FAST(k,m)  one hold of mode m by handle slot k, not in the
 *                            queue; nothing else is held or queued
 *   slots[k]    a handle: used, pid, and the mode-table entries its modes
 *               use (a mask, kept while used). Handle k is alive exactly while byte
 *               LIVE_BASE + k of the file is write-locked (an OFD lock held
 *               by that handle's descriptor, or a copy of it: see
 *               fifolock_shm_keepalive_fd). Probed by asking for a read
 *               lock, so that a read lock (all a process that may only read
 *               the file can take) never counts as alive.
 *   entries[i]  a request: seq (0: free), slot, mode (index into the mode
 *               table), n, state, and a death report. Queue order is seq
 *               order. state (a futex word):
 *                 WAITING -> PARKED                   (the waiter, by CAS)
 *                 WAITING or PARKED -> GRANTED[+DEAD] (under L, by CAS)
 *                 GRANTED[+DEAD] -> HELD              (the waiter, by CAS)
 *               An entry is born WAITING, or HELD when it is its own
 *               caller's grant (A1) or an absorbed fast hold (L2).
 *               A conversion is an entry of `to` marked CONVERT that names
 *               the entry F holding the `from` it converts (F's seq, and
 *               F's n when it began: from_n) and F's mode.
 *   next_seq, count, hwm, the pending death report, the mode table: under L.
 *   modes[j]    name, limit, flags (USED, stored last; ALONE: may join
 *               nobody; READ_ONLY: its holders only read, their deaths are
 *               not reported; READY: a ready-made mode, which every process
 *               knows by name and limit), and what pairs of predicates
 *               answered (known, compat). An entry that no used slot's mask,
 *               queued entry or pending report names is reclaimed (M1).
 *
 * Who may do what (the trust model, in full in include/fifolock_shm.h):
 * taking part needs the file open for writing, and such a process is
 * trusted with everything above. A process that can only read it can take
 * read locks and flock(2) locks, which nothing here waits for (no flock,
 * no blocking byte lock: a new file is made whole under no name and then
 * linked, see open_file) and which no probe counts (D1 asks for a read
 * lock, which only a handle's write lock conflicts with); its read locks on
 * free liveness bytes can only make registration fail (EACCES).
 *
 * Invariants (whenever L is free)
 *   Queue order: the holders (GRANTED or HELD) by seq, then a waiting
 *   conversion, then the waiting requests by seq (entry_key()): where the
 *   engine keeps them. Without a conversion it is seq order (S1).
 *   S1  Holders are a prefix of the queue: the entries in state GRANTED or
 *       HELD are exactly the first `k` entries in queue order that the rule
 *       grants, for the modes this process knows (an unknown mode stops the
 *       prefix early, never extends it); a waiting conversion is asked as
 *       the engine's fifolock_try_convert() of its F, and while it waits
 *       nothing behind it is granted.
 *   S5  At most one conversion waits; while it waits, its F is HELD with
 *       n == from_n (X3), so "F lowered or gone" is exactly "switched" (X1).
 *   S2  fast == IDLE only if the queue is empty and no death is pending;
 *       fast == FAST(k,m) only if, moreover, handle k holds m once; every
 *       other hold is an entry. fast != BUSY only while L is free.
 *   S3  A used slot's handle is registered (its byte is locked) or dead;
 *       every entry's slot is used.
 *   S4  The seq of every entry is below next_seq; seq never repeats.
 *   Holds are never stored apart from the queue: a GRANTED state is a
 *   message to the waiter, and whoever holds L can recompute it (G1).
 *
 * The internal lock
 *   L1 take     pthread_mutex_trylock in a bounded spin, then
 *               pthread_mutex_lock. EOWNERDEAD: the previous holder died
 *               inside one of these steps: Repair, then
 *               pthread_mutex_consistent.
 *   L2 absorb   under L, make fast BUSY: IDLE -> BUSY by CAS; or, for
 *               FAST(k,m): publish an entry (k, m, HELD) marked FROM_FAST
 *               with that word, CAS fast FAST(k,m) -> BUSY, clear the mark
 *               (if the CAS failed, the hold was released by F2 meanwhile:
 *               remove the entry and retry).
 *   L3 idle     before dropping L: if the queue is empty and no death is
 *               pending, store fast = IDLE (release).
 *   L4 drop     pthread_mutex_unlock; then wake the futexes of the waiters
 *               granted under L (a late wake of an entry reused meanwhile is
 *               a spurious wakeup, which every wait tolerates).
 *
 * Fast path (one CAS each way)
 *   F1 acquire  if m may join nobody: CAS fast IDLE -> FAST(k,m). By S2 the
 *               queue is empty, so this is the engine's immediate grant.
 *   F2 release  CAS fast FAST(k,m) -> IDLE. If it fails, L2 absorbed the
 *               hold: release it as an entry (R1).
 *   F3 death    a dead fast holder's word is absorbed by the next L2 and its
 *               entry reaped like any other (D1).
 *
 * Acquiring with a wait (handle k, mode m, entry e)
 *   A1 enqueue  under L: e = a free entry; write slot, mode, n, state
 *               WAITING; seq = next_seq++; publish e->seq (the last store);
 *               G1. If e is now GRANTED: make it HELD, drop L, return.
 *               (try_acquire: else D1 for the holders, G1 again, and if
 *               still waiting remove e: EBUSY.)
 *   A2 spin     poll e->state a bounded number of times, then sched_yield().
 *   A3 park     CAS e->state WAITING -> PARKED.
 *   A4 sleep    futex_wait(e->state, PARKED, min(deadline, now + tick)),
 *               where the tick is longer for a waiter with two or more
 *               waiting entries ahead of it (ticks_for()): timing only.
 *               An interruptible wait first asks its question (under no
 *               lock) and sleeps at most 50 ms; a yes: T1, EINTR.
 *   A5 look     GRANTED: CAS -> HELD, return 0 (EOWNERDEAD with +DEAD).
 *               Deadline passed: T1. Tick passed: A6. Else back to A3.
 *   A6 tick     under L: D1 for the handles of the entries ahead of e, G1;
 *               if e->seq changed, e was reaped as dead: ENOLCK.
 *   T1 timeout  under L: if e is GRANTED, it won: HELD, return 0. Else
 *               remove e (seq = 0), G1 (those it held back are granted),
 *               ETIMEDOUT (EINTR when interrupted).
 *
 * Converting (handle k, `from` -> `to`, conversion entry c)
 *   X0 publish  under L: F = a HELD entry of k in `from` (else EPERM) that
 *               no waiting conversion of k names; EDEADLK if `to` never
 *               fits; c = a free entry of `to`, n 1, CONVERT, naming F with
 *               its n; publish (seq last); G1. If another conversion waits,
 *               only c's switch now is asked (the holders and c) and c
 *               leaves if it fails: EDEADLK. Try: c leaves: EBUSY. Granted:
 *               A5. Else it waits as A2-A6, and T1 removes c (F untouched:
 *               the caller keeps `from`).
 *   X1 switch   in G1, for c in the prefix, before its CAS: F's n lowered
 *               by one, or F removed if it was 1 (one store), then the CAS.
 *   X2 place    G1 asks the rule with c right after the holders, ahead of
 *               every waiter (queue order); a second waiting conversion,
 *               or one whose F is gone, is never granted.
 *   X3 keep     R1 never counts, lowers or removes a waiting conversion's F.
 *
 * Releasing
 *   R1 drop     under L: find HELD entries of handle k and mode m holding n
 *               in all (else EPERM; X3); lower their n or remove them.
 *   R2 grant    G1, L3, L4.
 *
 * Granting (under L)
 *   G1 settle   order the entries by seq, ask the rule for the granted
 *               prefix, and for each entry of it still WAITING or PARKED:
 *               if a death is pending, copy the report into the entry first;
 *               CAS its state to GRANTED (+DEAD with a report); if it was
 *               PARKED, wake it after L4. The report stays pending: every
 *               grant is told until C1 clears it.
 *   G2 nudge    if the prefix stops at an entry whose mode this process
 *               does not know, wake that entry's waiter so that it settles
 *               itself (A6) instead of waiting for its tick.
 *
 * Deaths
 *   D1 reap     under L, for a handle k other than the caller's: if byte
 *               LIVE_BASE + k is not write-locked (F_OFD_GETLK), k is dead:
 *               remove its entries, adding each HELD one whose mode is not
 *               read-only to the pending report (pid, mode, n), and free the
 *               slot. A GRANTED one died before its caller returned (a dead
 *               waiter: silent), but a GRANTED conversion's `from` hold,
 *               which X1 took off F, is reported as F would have been.
 *   D2 report   every G1 gives the pending report to every entry it grants,
 *               for as long as it pends.
 *   D3 dead L   the robust mutex: Repair below.
 *
 * Mode table (under L, at registration)
 *   M1 reclaim  a new mode finds every entry used: D1 for every slot, then
 *               free each entry that no used slot's mask, queued entry or
 *               pending report names: clear its bits in every entry's
 *               known/compat, then its flags (the one store that frees it).
 *               A death in between leaves stale bits of an unused entry,
 *               which Repair clears.
 *
 * Repaired (fifolock_shm_consistent, under L)
 *   C1 clear    if handle k holds (HELD) a mode that is not read-only:
 *               dead_more = 0, then ndead = 0 (the one store that matters).
 *               Else EPERM: a reader that was told repairs nothing.
 *
 * Repair (after EOWNERDEAD from L1): recount `count` and `hwm` from the
 * entries; drop entries with a slot or mode out of range or n == 0; an
 * entry marked FROM_FAST is kept and the mark cleared if fast still holds
 * its word (do the CAS) or is BUSY (the CAS was done), else removed (F2
 * released it); a conversion whose X1 is done (F lowered or gone, S5) but
 * that is not GRANTED is granted (with the pending report); the pending report is left as it is (only C1 clears it, by
 * one store: a death inside C1 leaves it pending, told again, never lost);
 * the known/compat bits of unused mode entries are cleared (M1 done);
 * then D1 for every used slot, and G1. Every
 * update above is either one final store (publish e->seq, slot->used, the
 * report's count, a mode's `used`) or a count that is recomputed here,
 * which is why a death at any instruction leaves something Repair makes
 * exact.
 *
 * No lost wakeup: a waiter sleeps only through futex_wait(state, PARKED);
 * G1 moves PARKED to GRANTED by CAS and then wakes it, so if the kernel saw
 * PARKED the wake finds it asleep. And if the granting process dies between
 * the CAS and the wake, the waiter's tick (A4) ends the sleep anyway.
 */
#include "internal.h"
#include "fifolock_shm.h"
#include "shm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef FIFOLOCK_DEBUG
#include <assert.h>
#define DEBUG_ASSERT(x) assert(x)
#else
#define DEBUG_ASSERT(x) ((void)0)
#endif

#define SHM_MAGIC 0x314b434f4c4f4946ull      /* "FIFOLOCK1" */
#define SHM_VERSION 3u /* 2: reports until repaired, read-only and ready-made modes; 3: conversions */
#define LIVE_BASE ((off_t)1 << 40) /* the handles' liveness bytes */

#define F_BUSY 0ull
#define F_IDLE 1ull
#define F_HELD 2ull
#define FAST_WORD(slot, mode) (F_HELD | ((uint64_t)(mode) << 2) | ((uint64_t)(slot) << 8))
#define FAST_SLOT(w) ((uint32_t)((w) >> 8))
#define FAST_MODE(w) ((uint32_t)(((w) >> 2) & 0x3f))

#define ST_WAITING 0u
#define ST_PARKED 1u
#define ST_GRANTED 2u
#define ST_HELD 3u
#define ST_MASK 0xfu
#define ST_DEAD 0x10u /* with GRANTED: a death report comes with the grant */

#define E_FROM_FAST 1u
#define E_CONVERT 2u /* a conversion: of one hold of the entry whose seq is from_fast */
#define E_FROM_SHIFT 8 /* with E_CONVERT: flags >> E_FROM_SHIFT is that hold's mode */

#define MODE_USED 1u
#define MODE_ALONE 2u /* the predicate accepts joining nobody */
#define MODE_READ_ONLY 4u /* its holders only read: a dead one leaves nothing to repair */
#define MODE_READY 8u /* a ready-made mode: every process knows it by name and limit */

#define NO_SLOT 0xffffffffu

struct shm_death {
    int32_t pid;
    uint32_t mode;
    uint32_t n;
};

struct shm_mode {
    char name[FIFOLOCK_SHM_NAME_MAX];
    uint64_t limit;
    uint32_t known;  /* bit j: some process knew both this mode and mode j */
    uint32_t compat; /* bit j: one holder of this mode may join one holder of j */
    uint32_t flags;  /* MODE_*; MODE_USED is stored last */
    uint32_t pad_;
};

struct shm_slot {
    uint32_t used; /* stored last when registering, first when freeing */
    int32_t pid;
    uint32_t modes; /* bit k: this handle uses mode-table entry k (kept while used) */
    uint32_t pad_;
};

struct shm_entry {
    uint64_t seq;       /* 0: free; published last, cleared first */
    uint64_t from_fast; /* with E_FROM_FAST: the fast word being absorbed;
                           with E_CONVERT: the seq of the entry it converts from */
    uint32_t state;     /* ST_*: a futex word, changed by CAS */
    uint32_t n;
    uint32_t slot;
    uint32_t mode;
    uint32_t flags;
    uint32_t ndead;      /* deaths reported with this grant */
    uint32_t report_gen; /* the pending report's number it took */
    uint32_t from_n;     /* with E_CONVERT: that entry's n when the conversion began */
    struct shm_death dead[FIFOLOCK_SHM_REPORT_MAX];
};

struct shm_header {
    uint64_t magic; /* stored last at creation */
    uint32_t version;
    uint32_t capacity;
    uint32_t header_size, slot_size, entry_size, mutex_size;
    uint64_t file_size;
    uint32_t ptr_size, pad0_;
    _Alignas(64) uint64_t fast;
    _Alignas(64) pthread_mutex_t mutex;
    /* under the mutex */
    uint64_t next_seq;
    uint32_t count; /* entries in use (recounted by Repair) */
    uint32_t hwm;   /* every used entry has an index below this */
    uint32_t nmodes;
    uint32_t ndead;      /* the pending report: items in dead[] (stored last) */
    uint32_t dead_more;  /* deaths beyond FIFOLOCK_SHM_REPORT_MAX */
    uint32_t report_gen; /* number of the pending report */
    struct shm_death dead[FIFOLOCK_SHM_REPORT_MAX];
    struct shm_mode modes[FIFOLOCK_SHM_MAX_MODES];
};

_Static_assert(sizeof(struct shm_header) <= 4096, "the header fits a page");
_Static_assert(FIFOLOCK_SHM_MAX_MODES <= 32, "mode bits are 32-bit masks");
_Static_assert(FIFOLOCK_SHM_MAX_MODES <= 64, "FAST_WORD keeps 6 bits of mode");

#define HEADER_SIZE 4096u

struct fifolock_shm__handle {
    struct shm_header *h;
    struct shm_slot *slots;
    struct shm_entry *entries;
    size_t size;
    uint32_t capacity;
    int fd;
    uint64_t reg; /* atomic: fork generation << 32 | slot (NO_SLOT) */
    uint64_t id;  /* unique in this process: names the handle in last_report */
    size_t nmodes;
    const fifolock_mode *modes[FIFOLOCK_SHM_MAX_MODES];   /* as given to open */
    uint32_t index[FIFOLOCK_SHM_MAX_MODES];               /* their table indexes */
    bool alone[FIFOLOCK_SHM_MAX_MODES];                   /* may join nobody */
    bool read_only[FIFOLOCK_SHM_MAX_MODES];               /* declared read-only */
    const fifolock_mode *by_index[FIFOLOCK_SHM_MAX_MODES]; /* table index -> mode or NULL */
    fifolock_mode sems[FIFOLOCK_SHM_MAX_MODES]; /* semaphores others recorded (under L) */
    /* scratch, used under L only (one thread of this process at a time) */
    uint32_t mode_mask; /* bit index[i] for every mode i: stored in the slot */
    uint32_t *order;
    struct fifolock__entry *queue;
    struct fifolock_shm__handle *next, *prev; /* all handles of this process */
};

/*
 * Test seam: a process that sets fifolock_shm__crash_at to N kills itself
 * with SIGKILL when it reaches CRASH_POINT(N), inside a step, holding L: the
 * deaths the tests force, one per kind of half-done update. 0 outside tests.
 */
int fifolock_shm__crash_at;
unsigned long fifolock_shm__repairs;
#define CRASH_POINT(n)                                                                  \
    do {                                                                                \
        if (__builtin_expect(__atomic_load_n(&fifolock_shm__crash_at, __ATOMIC_RELAXED) == (n), 0)) \
            raise(SIGKILL);                                                             \
    } while (0)

struct fifolock_shm__tuning fifolock_shm__tuning = { FIFOLOCK_SHM__SPIN, FIFOLOCK_SHM__YIELD,
                                                     FIFOLOCK_SHM__LOCK_SPIN,
                                                     FIFOLOCK_SHM__TICK_NS };

/* ---- small helpers ------------------------------------------------------- */

/* The detail of this thread's last error (fifolock_shm_last_error). */
static __thread char last_error[200];

__attribute__((format(printf, 1, 2))) static void set_error(const char *fmt, ...)
{
    va_list ap;
    int saved = errno;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    errno = saved;
}

const char *fifolock_shm_last_error(void)
{
    return last_error;
}

/* Sleeps while *addr == val (a shared futex) until woken or `deadline`. */
static void futex_wait_until(uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    int saved = errno;

    syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, deadline, NULL, FUTEX_BITSET_MATCH_ANY);
    errno = saved;
}

static void futex_wake_all(uint32_t *addr)
{
    int saved = errno;

    syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    errno = saved;
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static int64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return ts_ns(&t);
}

static struct timespec ns_ts(int64_t ns)
{
    struct timespec t;

    t.tv_sec = (time_t)(ns / 1000000000);
    t.tv_nsec = (long)(ns % 1000000000);
    return t;
}

static inline uint32_t st_load(const struct shm_entry *e)
{
    return __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
}

static inline bool st_granted(uint32_t st)
{
    return (st & ST_MASK) == ST_GRANTED || (st & ST_MASK) == ST_HELD;
}

static inline uint64_t seq_load(const struct shm_entry *e)
{
    return __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
}

/* ---- handles of this process, and fork() --------------------------------- */

static pthread_mutex_t handles_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fifolock_shm__handle *handles;
static uint32_t fork_gen; /* atomic: bumped in every child */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static uint64_t next_handle_id = 1; /* atomic */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&handles_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&handles_mu);
}

/* Writes "/proc/self/fd/<fd>" into buf (async-signal-safe). */
static void proc_fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[16];
    size_t n = 0, i;

    memcpy(buf, prefix, sizeof prefix - 1);
    do {
        digits[n++] = (char)('0' + fd % 10);
        fd /= 10;
    } while (fd > 0);
    for (i = 0; i < n; i++)
        buf[sizeof prefix - 1 + i] = digits[n - 1 - i];
    buf[sizeof prefix - 1 + n] = '\0';
}

/*
 * In the child: a fresh open file description for every handle, for its
 * descriptor and for its mapping, so that nothing the child inherited keeps
 * its parent's liveness byte locked (see the header). The child registers
 * on first use (fork_gen).
 */
static void atfork_child(void)
{
    struct fifolock_shm__handle *s;
    char path[40];

    __atomic_add_fetch(&fork_gen, 1, __ATOMIC_SEQ_CST);
    for (s = handles; s != NULL; s = s->next) {
        int fd;

        proc_fd_path(path, s->fd);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            (void)dup3(fd, s->fd, O_CLOEXEC); /* on failure: see the header */
            close(fd);
            /* The mapping refers to the open file description it was made
             * from, and so keeps it, and its byte lock, alive: map the new
             * description in its place (same file, same address, same
             * bytes), so that nothing in the child holds the parent's. */
            (void)mmap(s->h, s->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->fd, 0);
        }
    }
    pthread_mutex_unlock(&handles_mu);
}

static void atfork_install(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void handles_add(struct fifolock_shm__handle *s)
{
    pthread_once(&atfork_once, atfork_install);
    pthread_mutex_lock(&handles_mu);
    s->prev = NULL;
    s->next = handles;
    if (handles)
        handles->prev = s;
    handles = s;
    pthread_mutex_unlock(&handles_mu);
}

static void handles_remove(struct fifolock_shm__handle *s)
{
    pthread_mutex_lock(&handles_mu);
    if (s->prev)
        s->prev->next = s->next;
    else if (handles == s)
        handles = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&handles_mu);
}

/* This handle's slot in this process, or NO_SLOT (not registered here yet). */
static uint32_t my_slot(const struct fifolock_shm__handle *s)
{
    uint64_t r = __atomic_load_n(&s->reg, __ATOMIC_ACQUIRE);

    if ((uint32_t)(r >> 32) != __atomic_load_n(&fork_gen, __ATOMIC_RELAXED))
        return NO_SLOT;
    return (uint32_t)r;
}

/* ---- liveness: one locked byte per handle -------------------------------- */

static int live_lock(int fd, uint32_t slot, short type, int cmd)
{
    struct flock fl;

    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = LIVE_BASE + (off_t)slot;
    fl.l_len = 1;
    if (fcntl(fd, cmd, &fl) != 0)
        return errno;
    if (cmd == F_OFD_GETLK)
        return fl.l_type == F_UNLCK ? 0 : EAGAIN;
    return 0;
}

/* Whether handle `slot` (not this one) is alive. When unsure: alive. */
static bool slot_alive(struct fifolock_shm__handle *s, uint32_t slot)
{
    int saved = errno, rc;

    if (slot >= s->capacity)
        return false;
    if (slot == my_slot(s))
        return true;
    /* Asked as a read lock, which conflicts only with write locks: those
     * of handles (OFD write locks need a descriptor open for writing). A
     * read lock that a process that may only read the file put on the byte
     * does not count, so it cannot keep a dead handle alive. */
    rc = live_lock(s->fd, slot, F_RDLCK, F_OFD_GETLK);
    errno = saved;
    return rc != 0;
}

/* ---- the queue, under L -------------------------------------------------- */

static void entry_remove(struct fifolock_shm__handle *s, struct shm_entry *e)
{
    __atomic_store_n(&e->seq, 0, __ATOMIC_RELEASE);
    if (s->h->count > 0)
        s->h->count--;
}

/* A free entry, or NULL. Raises hwm before the entry can be published. */
static struct shm_entry *entry_alloc(struct fifolock_shm__handle *s)
{
    uint32_t i;

    for (i = 0; i < s->capacity; i++) {
        if (seq_load(&s->entries[i]) == 0) {
            if (s->h->hwm < i + 1)
                s->h->hwm = i + 1;
            return &s->entries[i];
        }
    }
    return NULL;
}

/* Publishes `e` (A1): every field first, the seq last. */
static uint64_t entry_publish(struct fifolock_shm__handle *s, struct shm_entry *e, uint32_t slot,
                              uint32_t mode, uint32_t n, uint32_t state, uint32_t flags,
                              uint64_t from_fast)
{
    struct shm_header *h = s->h;
    uint64_t seq = h->next_seq;

    e->slot = slot;
    e->mode = mode;
    e->n = n;
    e->flags = flags;
    e->from_fast = from_fast;
    e->ndead = 0;
    e->report_gen = 0;
    __atomic_store_n(&e->state, state, __ATOMIC_RELAXED);
    h->next_seq = seq + 1;
    __atomic_store_n(&e->seq, seq, __ATOMIC_RELEASE);
    CRASH_POINT(3);
    h->count++;
    return seq;
}

/*
 * Where an entry stands in the queue (under L): the holders (0), then a
 * waiting conversion (1), ahead of every waiting request (2), as the engine
 * keeps it; by seq within each. By S1 the holders are the first entries in
 * seq order anyway, but a conversion's entry holds from a later seq.
 */
static inline unsigned entry_class(const struct shm_entry *e)
{
    if (st_granted(st_load(e)))
        return 0;
    return (e->flags & E_CONVERT) ? 1 : 2;
}

static inline uint64_t entry_key(const struct shm_entry *e)
{
    return ((uint64_t)entry_class(e) << 62) | seq_load(e);
}

/* The queue in order (entry_key), into s->order; returns its length. */
static uint32_t queue_build(struct fifolock_shm__handle *s)
{
    uint32_t hwm = s->h->hwm < s->capacity ? s->h->hwm : s->capacity;
    uint32_t i, n = 0, top = 0;

    for (i = 0; i < hwm; i++) {
        uint64_t key;
        uint32_t j;

        if (seq_load(&s->entries[i]) == 0)
            continue;
        key = entry_key(&s->entries[i]);
        top = i + 1;
        /* insertion sort: the queue is short and mostly in order already */
        for (j = n; j > 0 && entry_key(&s->entries[s->order[j - 1]]) > key; j--)
            s->order[j] = s->order[j - 1];
        s->order[j] = i;
        n++;
    }
    s->h->hwm = top;
    return n;
}

/* The entry of seq `seq` and handle `slot`, or NULL. Under L. */
static struct shm_entry *entry_by_seq(struct fifolock_shm__handle *s, uint64_t seq, uint32_t slot)
{
    uint32_t i, hwm = s->h->hwm < s->capacity ? s->h->hwm : s->capacity;

    for (i = 0; i < hwm && seq != 0; i++)
        if (seq_load(&s->entries[i]) == seq && s->entries[i].slot == slot)
            return &s->entries[i];
    return NULL;
}

/*
 * Whether conversion `c`'s switch is made in the file: the hold it converts
 * left its entry (n lowered, or the entry gone). Only the switch lowers
 * that entry while the conversion waits (R1 leaves it alone). Under L.
 */
static bool conversion_done(struct fifolock_shm__handle *s, const struct shm_entry *c)
{
    const struct shm_entry *f = entry_by_seq(s, c->from_fast, c->slot);

    return f == NULL || f->n != c->from_n;
}

/* X1: the switch of conversion `c`: its hold of `from` leaves (one store). */
static void conversion_commit(struct fifolock_shm__handle *s, const struct shm_entry *c)
{
    struct shm_entry *f = entry_by_seq(s, c->from_fast, c->slot);

    if (f == NULL || f->n != c->from_n)
        return; /* done already */
    if (f->n <= 1)
        entry_remove(s, f);
    else
        f->n--;
}

/* The ready-made modes but the semaphore, which every process knows by name. */
static const fifolock_mode *const ready_made[] = {
    &fifolock_mutex, &fifolock_read, &fifolock_write, &fifolock_upgradable, &fifolock_is,
    &fifolock_ix,    &fifolock_s,    &fifolock_six,   &fifolock_x,
};

/* Whether `m` is a ready-made mode (or a copy of one), a semaphore included. */
static bool is_ready_made(const fifolock_mode *m)
{
    size_t i;

    if (m->is_compatible == fifolock_semaphore_is_compatible)
        return strcmp(m->name, "semaphore") == 0;
    for (i = 0; i < sizeof ready_made / sizeof ready_made[0]; i++)
        if (m->is_compatible == ready_made[i]->is_compatible && m->limit == ready_made[i]->limit &&
            strcmp(m->name, ready_made[i]->name) == 0)
            return true;
    return false;
}

/*
 * The mode of table entry `index` in this process: one it passed to open,
 * else a ready-made one recorded by another process (every process knows
 * those: a semaphore of any size is made here, in s->sems, only when
 * `make` and under L), else NULL: a mode of another process's own.
 */
static const fifolock_mode *mode_lookup(struct fifolock_shm__handle *s, uint32_t index, bool make)
{
    const struct shm_mode *t;
    char name[FIFOLOCK_SHM_NAME_MAX];
    uint64_t limit;
    size_t i;

    if (index >= FIFOLOCK_SHM_MAX_MODES)
        return NULL;
    if (s->by_index[index] != NULL)
        return s->by_index[index];
    t = &s->h->modes[index];
    if ((__atomic_load_n(&t->flags, __ATOMIC_ACQUIRE) & (MODE_USED | MODE_READY)) !=
        (MODE_USED | MODE_READY))
        return NULL;
    memcpy(name, t->name, sizeof name);
    name[sizeof name - 1] = '\0';
    limit = t->limit;
    if (strcmp(name, "semaphore") == 0) {
        if (!make || limit == 0 || limit > SIZE_MAX)
            return NULL;
        s->sems[index] = (fifolock_mode)FIFOLOCK_SEMAPHORE((size_t)limit);
        return &s->sems[index];
    }
    for (i = 0; i < sizeof ready_made / sizeof ready_made[0]; i++)
        if (limit == ready_made[i]->limit && strcmp(name, ready_made[i]->name) == 0)
            return ready_made[i];
    return NULL;
}

/* Under L. */
static const fifolock_mode *mode_of(struct fifolock_shm__handle *s, uint32_t index)
{
    return mode_lookup(s, index, true);
}

/* Waiters to wake once L is dropped (L4). */
struct wakes {
    uint32_t n;
    uint32_t *addr[16];
};

static void wake_later(struct wakes *w, uint32_t *addr)
{
    if (w->n < sizeof w->addr / sizeof w->addr[0])
        w->addr[w->n++] = addr;
    else
        futex_wake_all(addr); /* under L: rare */
}

/*
 * G1 for one entry of the prefix (under L): the report if one pends, X1 for
 * a conversion, then the CAS that grants; wakes it after L4 if it slept.
 */
static void grant_entry(struct fifolock_shm__handle *s, struct shm_entry *e, struct wakes *w)
{
    struct shm_header *h = s->h;
    uint32_t st = st_load(e), to = ST_GRANTED;

    if (st_granted(st))
        return;
    if (h->ndead > 0) {
        /* D2: the data may be inconsistent: every grant is told, until
         * a holder declares it repaired (fifolock_shm_consistent). */
        uint32_t k, nd = h->ndead < FIFOLOCK_SHM_REPORT_MAX ? h->ndead : FIFOLOCK_SHM_REPORT_MAX;

        for (k = 0; k < nd; k++)
            e->dead[k] = h->dead[k];
        e->ndead = h->ndead + h->dead_more;
        e->report_gen = h->report_gen;
        to |= ST_DEAD;
        CRASH_POINT(8);
    }
    if (e->flags & E_CONVERT) {
        conversion_commit(s, e);
        CRASH_POINT(9);
    }
    while (!st_granted(st) &&
           !__atomic_compare_exchange_n(&e->state, &st, to, false, __ATOMIC_RELEASE,
                                        __ATOMIC_ACQUIRE))
        ;
    CRASH_POINT(4);
    if ((st & ST_MASK) == ST_PARKED)
        wake_later(w, &e->state);
}

/*
 * G1 (and G2): grants the prefix the rule allows. Returns the number of
 * entries, whose order it leaves in s->order. With `only` (a conversion
 * just published): the question is whether it switches now, whatever
 * conversion waits (the engine's immediate switch): the holders and `only`
 * are asked, nothing else is granted.
 */
static uint32_t settle_conv(struct fifolock_shm__handle *s, struct wakes *w,
                            const struct shm_entry *only)
{
    uint32_t n = queue_build(s), i, conv = UINT32_MAX, from = UINT32_MAX;
    size_t granted = 0;

    if (only != NULL) {
        for (i = 0; i < n && entry_class(&s->entries[s->order[i]]) == 0; i++)
            ;
        s->order[i] = (uint32_t)(only - s->entries);
        n = i + 1;
    }
    for (i = 0; i < n; i++) {
        const struct shm_entry *e = &s->entries[s->order[i]];

        /* A count out of range is a corrupt entry: never granted, like an
         * unknown mode (the rule asks the predicate once per hold). */
        s->queue[i].mode = e->n <= FIFOLOCK_SHM_MAX_N ? mode_of(s, e->mode) : NULL;
        s->queue[i].n = e->n >= 1 && e->n <= FIFOLOCK_SHM_MAX_N ? e->n : 1;
        if (entry_class(e) == 1) {
            /* X2: the first waiting conversion is the one (at most one
             * waits); another, or one whose hold is gone, is never granted. */
            uint32_t k;

            for (k = 0; k < i && conv == UINT32_MAX; k++)
                if (seq_load(&s->entries[s->order[k]]) == e->from_fast &&
                    s->entries[s->order[k]].slot == e->slot)
                    break;
            if (conv == UINT32_MAX && k < i && e->n == 1 && !conversion_done(s, e)) {
                conv = i;
                from = k;
            } else {
                s->queue[i].mode = NULL;
            }
        }
    }
    /* An error (ENOMEM...) still leaves a prefix that is safe to grant. */
    if (conv == UINT32_MAX)
        (void)fifolock__granted_prefix(s->queue, n, &granted);
    else
        (void)fifolock__granted_prefix_convert(s->queue, n, conv, from, &granted);
    for (i = 0; i < granted; i++)
        grant_entry(s, &s->entries[s->order[i]], w);
    if (only != NULL)
        return n;
    /* G2: stopped at a mode this process does not know: its waiter settles. */
    if (granted < n && s->queue[granted].mode == NULL) {
        struct shm_entry *e = &s->entries[s->order[granted]];
        uint32_t st = ST_PARKED;

        if (__atomic_compare_exchange_n(&e->state, &st, ST_WAITING, false, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED))
            wake_later(w, &e->state);
    }
    return n;
}

static uint32_t settle(struct fifolock_shm__handle *s, struct wakes *w)
{
    return settle_conv(s, w, NULL);
}

/* Whether table mode `index` is declared read-only (its holders never write). */
static bool mode_read_only(const struct shm_header *h, uint32_t index)
{
    return index < FIFOLOCK_SHM_MAX_MODES &&
           (__atomic_load_n(&h->modes[index].flags, __ATOMIC_ACQUIRE) & MODE_READ_ONLY);
}

/* Adds one dead hold to the pending report (D1). Under L. */
static void pend_death(struct shm_header *h, int32_t pid, uint32_t mode, uint32_t n)
{
    uint32_t k, nd = h->ndead < FIFOLOCK_SHM_REPORT_MAX ? h->ndead : FIFOLOCK_SHM_REPORT_MAX;

    for (k = 0; k < nd; k++)
        if (h->dead[k].pid == pid && h->dead[k].mode == mode) {
            h->dead[k].n += n;
            return;
        }
    if (nd == 0) {
        /* A new report, a new number (Repair tells a given report by it). */
        h->dead_more = 0;
        h->report_gen++;
    }
    if (nd < FIFOLOCK_SHM_REPORT_MAX) {
        h->dead[nd].pid = pid;
        h->dead[nd].mode = mode;
        h->dead[nd].n = n;
        __atomic_store_n(&h->ndead, nd + 1, __ATOMIC_RELEASE); /* the item is complete */
    } else {
        h->dead_more++;
    }
}

/*
 * D1 for handle `slot`, known dead: its entries leave. Holds it had taken
 * (HELD) are reported; a grant it never learnt of is not (its user code did
 * not run: it died as a waiter).
 */
static void reap_slot(struct fifolock_shm__handle *s, uint32_t slot)
{
    struct shm_header *h = s->h;
    uint32_t i, hwm = h->hwm < s->capacity ? h->hwm : s->capacity;
    int32_t pid = slot < s->capacity ? s->slots[slot].pid : 0;

    for (i = 0; i < hwm; i++) {
        struct shm_entry *e = &s->entries[i];

        uint32_t st;

        if (seq_load(e) == 0 || e->slot != slot)
            continue;
        st = st_load(e);
        /* A holder of a mode declared read-only changed nothing: nothing
         * to repair, nothing to report. A grant it never learnt of (GRANTED)
         * is a dead waiter's: its user code never ran. (A report it carried
         * stays pending anyway: only a repair clears one.) */
        if ((st & ST_MASK) == ST_HELD && !mode_read_only(h, e->mode))
            pend_death(h, pid, e->mode, e->n);
        /* A conversion switched but not yet told (X1 done, GRANTED): its
         * caller's code ran under `from`, whose entry X1 removed or lowered:
         * that hold is reported as the entry would have been. */
        else if ((st & ST_MASK) == ST_GRANTED && (e->flags & E_CONVERT) &&
                 !mode_read_only(h, e->flags >> E_FROM_SHIFT))
            pend_death(h, pid, e->flags >> E_FROM_SHIFT, 1);
        entry_remove(s, e);
    }
    if (slot < s->capacity)
        __atomic_store_n(&s->slots[slot].used, 0, __ATOMIC_RELEASE);
}

/*
 * D1 for the handles of the first `upto` queued entries (all: UINT32_MAX,
 * which also checks handles with no entry). Returns how many died.
 */
static unsigned reap(struct fifolock_shm__handle *s, uint32_t upto)
{
    uint32_t checked[FIFOLOCK_SHM_MAX_CAPACITY / 32] = { 0 };
    uint32_t n = queue_build(s), i;
    unsigned dead = 0;

    if (upto == UINT32_MAX) {
        for (i = 0; i < s->capacity; i++)
            if (__atomic_load_n(&s->slots[i].used, __ATOMIC_ACQUIRE) && !slot_alive(s, i)) {
                reap_slot(s, i);
                dead++;
            }
        return dead;
    }
    for (i = 0; i < n && i < upto; i++) {
        uint32_t slot = s->entries[s->order[i]].slot;

        if (slot < s->capacity && (checked[slot / 32] >> (slot % 32)) & 1)
            continue;
        if (slot < s->capacity)
            checked[slot / 32] |= 1u << (slot % 32);
        if (!slot_alive(s, slot)) {
            reap_slot(s, slot);
            dead++;
        }
    }
    return dead;
}

/* The position of entry `e` in the queue just built, or n. */
static uint32_t queue_position(struct fifolock_shm__handle *s, const struct shm_entry *e,
                               uint32_t n)
{
    uint32_t i, idx = (uint32_t)(e - s->entries);

    for (i = 0; i < n; i++)
        if (s->order[i] == idx)
            return i;
    return n;
}

/* ---- the internal lock --------------------------------------------------- */

static void mode_free(struct shm_header *h, uint32_t k);
static int modes_register(struct fifolock_shm__handle *s);

static void grant_entry(struct fifolock_shm__handle *s, struct shm_entry *e, struct wakes *w);

/* Repair: the previous holder of L died inside a step. */
static void repair(struct fifolock_shm__handle *s, struct wakes *wakes)
{
    struct shm_header *h = s->h;
    uint32_t i, count = 0, top = 0;

    if (h->nmodes > FIFOLOCK_SHM_MAX_MODES)
        h->nmodes = FIFOLOCK_SHM_MAX_MODES;
    for (i = 0; i < s->capacity; i++) {
        struct shm_entry *e = &s->entries[i];
        uint64_t seq = seq_load(e);

        if (seq == 0)
            continue;
        if (seq >= h->next_seq || e->slot >= s->capacity || e->mode >= h->nmodes || e->n == 0 ||
            e->n > FIFOLOCK_SHM_MAX_N || ((e->flags & E_CONVERT) && e->n != 1)) {
            __atomic_store_n(&e->seq, 0, __ATOMIC_RELEASE);
            continue;
        }
        if (e->flags & E_FROM_FAST) {
            uint64_t w = __atomic_load_n(&h->fast, __ATOMIC_ACQUIRE);

            if (w == e->from_fast &&
                __atomic_compare_exchange_n(&h->fast, &w, F_BUSY, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                w = F_BUSY;
            if (w != F_BUSY) {
                __atomic_store_n(&e->seq, 0, __ATOMIC_RELEASE);
                continue;
            }
            e->flags &= ~E_FROM_FAST;
        }
        count++;
        top = i + 1;
    }
    if (h->ndead > FIFOLOCK_SHM_REPORT_MAX)
        h->ndead = FIFOLOCK_SHM_REPORT_MAX;
    /* A death inside mode_free: finish it (pairs of an unused entry). */
    for (i = 0; i < FIFOLOCK_SHM_MAX_MODES; i++)
        if (!(__atomic_load_n(&h->modes[i].flags, __ATOMIC_ACQUIRE) & MODE_USED))
            mode_free(h, i);
    h->count = count;
    h->hwm = top;
    /* A death inside G1 between X1 and the CAS: the switch is made, so
     * the grant is finished (with the report, if one pends). The reverse
     * (granted, X1 not done) is never left: X1 comes first. */
    for (i = 0; i < top; i++) {
        struct shm_entry *e = &s->entries[i];

        if (seq_load(e) == 0 || !(e->flags & E_CONVERT) || !conversion_done(s, e))
            continue;
        if (!st_granted(st_load(e)))
            grant_entry(s, e, wakes);
    }
}

/* L2: the fast path's word becomes BUSY, its hold an entry. Under L. */
static int absorb(struct fifolock_shm__handle *s)
{
    struct shm_header *h = s->h;

    for (;;) {
        uint64_t w = __atomic_load_n(&h->fast, __ATOMIC_ACQUIRE);
        struct shm_entry *e;

        if (w == F_BUSY)
            return 0;
        if (w == F_IDLE) {
            if (__atomic_compare_exchange_n(&h->fast, &w, F_BUSY, false, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return 0;
            continue;
        }
        e = entry_alloc(s);
        if (e == NULL) /* S2 says the queue is empty: the file is corrupt */
            return EBADMSG;
        entry_publish(s, e, FAST_SLOT(w), FAST_MODE(w), 1, ST_HELD, E_FROM_FAST, w);
        CRASH_POINT(1);
        if (__atomic_compare_exchange_n(&h->fast, &w, F_BUSY, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            CRASH_POINT(2);
            e->flags = 0;
            return 0;
        }
        entry_remove(s, e); /* F2 released it meanwhile */
    }
}

/* L1 + L2. Returns 0, or an error with L not held. */
static int enter(struct fifolock_shm__handle *s)
{
    struct shm_header *h = s->h;
    unsigned spins = __atomic_load_n(&fifolock_shm__tuning.lock_spin, __ATOMIC_RELAXED);
    int rc;

    for (;;) {
        rc = pthread_mutex_trylock(&h->mutex);
        if (rc != EBUSY || spins == 0)
            break;
        spins--;
        fifolock__cpu_relax();
    }
    if (rc == EBUSY)
        rc = pthread_mutex_lock(&h->mutex);
    if (rc == EOWNERDEAD) {
        struct wakes w = { 0, { NULL } };

        __atomic_add_fetch(&fifolock_shm__repairs, 1, __ATOMIC_RELAXED);
        repair(s, &w);
        (void)absorb(s);
        reap(s, UINT32_MAX);
        settle(s, &w);
        pthread_mutex_consistent(&h->mutex);
        for (uint32_t i = 0; i < w.n; i++)
            futex_wake_all(w.addr[i]); /* still under L: rare */
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = absorb(s);
    if (rc != 0)
        pthread_mutex_unlock(&h->mutex);
    return rc;
}

/* L3 + L4. */
static void leave(struct fifolock_shm__handle *s, struct wakes *w)
{
    struct shm_header *h = s->h;
    uint32_t i;

    if (h->count == 0 && h->ndead == 0)
        __atomic_store_n(&h->fast, F_IDLE, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&h->mutex);
    if (w != NULL)
        for (i = 0; i < w->n; i++)
            futex_wake_all(w->addr[i]);
}

/*
 * A free entry for a new request, under the internal lock; if the table is
 * full, dead processes' entries are reaped first. NULL when it is full even
 * so: then it has left the internal lock (leave()) and said why.
 */
static struct shm_entry *entry_take(struct fifolock_shm__handle *s, struct wakes *w)
{
    struct shm_entry *e = entry_alloc(s);

    if (e == NULL && reap(s, UINT32_MAX) > 0) {
        settle(s, w);
        e = entry_alloc(s);
    }
    if (e == NULL) {
        leave(s, w);
        set_error("lock file full: %u requests queued", s->capacity);
    }
    return e;
}

/* Registers this handle in this process (a slot and its byte). Under L. */
static int ensure_registered(struct fifolock_shm__handle *s, uint32_t *slot_out)
{
    uint32_t slot = my_slot(s), i, pass, blocked = 0;
    uint32_t gen = __atomic_load_n(&fork_gen, __ATOMIC_RELAXED);
    int rc;

    if (slot != NO_SLOT) {
        *slot_out = slot;
        return 0;
    }
    /* First (again, in a child after fork: the table may have changed since
     * the parent's handle registered) find this handle's modes. */
    rc = modes_register(s);
    if (rc != 0)
        return rc;
    for (pass = 0; pass < 2; pass++) {
        blocked = 0;
        for (i = 0; i < s->capacity; i++) {
            if (__atomic_load_n(&s->slots[i].used, __ATOMIC_ACQUIRE))
                continue;
            /* A byte still write-locked: its handle is closing. Skip it. A
             * byte only read-locked: a process that is no user of the lock
             * (one that can only read the file) holds it. Skip it too. */
            if (live_lock(s->fd, i, F_WRLCK, F_OFD_SETLK) != 0) {
                if (live_lock(s->fd, i, F_RDLCK, F_OFD_GETLK) == 0)
                    blocked++;
                continue;
            }
            s->slots[i].pid = (int32_t)getpid();
            s->slots[i].modes = s->mode_mask;
            __atomic_store_n(&s->slots[i].used, 1, __ATOMIC_RELEASE);
            __atomic_store_n(&s->reg, ((uint64_t)gen << 32) | i, __ATOMIC_RELEASE);
            *slot_out = i;
            return 0;
        }
        if (reap(s, UINT32_MAX) == 0)
            break;
    }
    if (blocked > 0) {
        set_error("%u free liveness bytes of the lock file are read-locked by a process that "
                  "may only read it: make the file unreadable to others (mode 0600 or 0660)",
                  blocked);
        return EACCES;
    }
    set_error("lock file full: %u handles", s->capacity);
    return EUSERS;
}

/* Whether `n` holds of `mode` are granted on a lock nobody holds (rule.c). */
static bool fits_empty(const fifolock_mode *mode, size_t n)
{
    struct fifolock__entry one;
    size_t granted = 0;

    one.mode = mode;
    one.n = n;
    return fifolock__granted_prefix(&one, 1, &granted) == 0 && granted == 1;
}

/* ---- the mode table ------------------------------------------------------ */

static bool valid_name(const char *name)
{
    return name != NULL && name[0] != '\0' && strlen(name) < FIFOLOCK_SHM_NAME_MAX;
}

/* What `a` answers about joining one holder of `b`. */
static bool joins_one(const fifolock_mode *a, const fifolock_mode *b)
{
    fifolock_holds holds;

    memset(&holds, 0, sizeof holds);
    holds.used = 1;
    holds.total = 1;
    holds.inline_[0].mode = b;
    holds.inline_[0].held = 1;
    return a->is_compatible(a, &holds);
}

static bool joins_none(const fifolock_mode *a)
{
    fifolock_holds holds;

    memset(&holds, 0, sizeof holds);
    return a->is_compatible(a, &holds);
}

/* Frees mode-table entry k (under L): its pairs first, then its flags. */
static void mode_free(struct shm_header *h, uint32_t k)
{
    uint32_t j, bit = 1u << k;

    for (j = 0; j < FIFOLOCK_SHM_MAX_MODES; j++) {
        h->modes[j].known &= ~bit;
        h->modes[j].compat &= ~bit;
    }
    __atomic_store_n(&h->modes[k].flags, 0, __ATOMIC_RELEASE);
}

/*
 * A free mode-table entry for a new mode (under L), or NO_SLOT: an unused
 * one below *nmodes, else the next one (raising *nmodes), else one reclaimed
 * from modes that no live handle uses (`mine`: those this registration found
 * already), no queued request holds or asks for, and no pending death
 * report names.
 */
static uint32_t free_mode(struct fifolock_shm__handle *s, uint32_t mine, uint32_t *nmodes)
{
    struct shm_header *h = s->h;
    uint32_t k, i, used = mine, hwm;

    for (k = 0; k < *nmodes; k++)
        if (!(__atomic_load_n(&h->modes[k].flags, __ATOMIC_ACQUIRE) & MODE_USED))
            return k;
    if (*nmodes < FIFOLOCK_SHM_MAX_MODES) {
        k = (*nmodes)++;
        __atomic_store_n(&h->nmodes, *nmodes, __ATOMIC_RELEASE);
        return k;
    }
    reap(s, UINT32_MAX); /* the dead hold modes no more */
    for (i = 0; i < s->capacity; i++)
        if (__atomic_load_n(&s->slots[i].used, __ATOMIC_ACQUIRE))
            used |= s->slots[i].modes;
    hwm = h->hwm < s->capacity ? h->hwm : s->capacity;
    for (i = 0; i < hwm; i++)
        if (seq_load(&s->entries[i]) != 0 && s->entries[i].mode < FIFOLOCK_SHM_MAX_MODES)
            used |= 1u << s->entries[i].mode;
    for (i = 0; i < h->ndead && i < FIFOLOCK_SHM_REPORT_MAX; i++)
        if (h->dead[i].mode < FIFOLOCK_SHM_MAX_MODES)
            used |= 1u << h->dead[i].mode;
    k = NO_SLOT;
    for (i = 0; i < *nmodes; i++)
        if (!(used & (1u << i))) {
            mode_free(h, i);
            if (k == NO_SLOT)
                k = i;
        }
    return k;
}

/*
 * Finds or adds this handle's modes in the file's table, and checks that
 * this process's predicates answer as the ones recorded. Under L.
 */
static int modes_register(struct fifolock_shm__handle *s)
{
    struct shm_header *h = s->h;
    size_t i, j;
    uint32_t nmodes = h->nmodes, mine = 0;

    if (nmodes > FIFOLOCK_SHM_MAX_MODES)
        return EBADMSG;
    for (i = 0; i < s->nmodes; i++) {
        const fifolock_mode *m = s->modes[i];
        uint32_t k;

        for (k = 0; k < nmodes; k++) {
            struct shm_mode *t = &h->modes[k];

            if ((__atomic_load_n(&t->flags, __ATOMIC_ACQUIRE) & MODE_USED) &&
                t->limit == (uint64_t)m->limit &&
                strncmp(t->name, m->name, FIFOLOCK_SHM_NAME_MAX) == 0)
                break;
        }
        if (k == nmodes) {
            struct shm_mode *t;

            k = free_mode(s, mine, &nmodes);
            if (k == NO_SLOT) {
                set_error("lock file full: %u modes in use", (unsigned)FIFOLOCK_SHM_MAX_MODES);
                return EUSERS;
            }
            t = &h->modes[k];
            memset(t, 0, sizeof *t);
            strncpy(t->name, m->name, FIFOLOCK_SHM_NAME_MAX - 1);
            t->limit = m->limit;
            __atomic_store_n(&t->flags,
                             MODE_USED | (joins_none(m) ? MODE_ALONE : 0) |
                                 (s->read_only[i] ? MODE_READ_ONLY : 0) |
                                 (is_ready_made(m) ? MODE_READY : 0),
                             __ATOMIC_RELEASE);
        } else if (!!(h->modes[k].flags & MODE_ALONE) != joins_none(m) ||
                   !!(h->modes[k].flags & MODE_READ_ONLY) != s->read_only[i] ||
                   !!(h->modes[k].flags & MODE_READY) != is_ready_made(m)) {
            /* A mode of the user's own under a ready-made mode's name and
             * limit (or the other way round): others would take it for the
             * ready-made one. */
            return EPROTO;
        }
        s->index[i] = k;
        mine |= 1u << k;
    }
    /* Pairs: compare with what others recorded, record what is new. */
    for (i = 0; i < s->nmodes; i++) {
        struct shm_mode *t = &h->modes[s->index[i]];

        for (j = 0; j < s->nmodes; j++) {
            uint32_t bit = 1u << s->index[j];
            bool c = joins_one(s->modes[i], s->modes[j]);

            if ((t->known & bit) && !!(t->compat & bit) != c)
                return EPROTO;
        }
    }
    for (i = 0; i < s->nmodes; i++) {
        struct shm_mode *t = &h->modes[s->index[i]];

        for (j = 0; j < s->nmodes; j++) {
            uint32_t bit = 1u << s->index[j];

            if (joins_one(s->modes[i], s->modes[j]))
                t->compat |= bit;
            else
                t->compat &= ~bit;
            t->known |= bit;
        }
    }
    memset(s->by_index, 0, sizeof s->by_index); /* indexes may have moved (fork) */
    for (i = 0; i < s->nmodes; i++) {
        s->by_index[s->index[i]] = s->modes[i];
        s->alone[i] = joins_none(s->modes[i]);
    }
    s->mode_mask = mine;
    return 0;
}

/* The table index of `mode` in this handle, or -1. */
static int local_index(const struct fifolock_shm__handle *s, const fifolock_mode *mode)
{
    size_t i;

    for (i = 0; i < s->nmodes; i++)
        if (s->modes[i] == mode)
            return (int)i;
    return -1;
}

/* ---- open and close ------------------------------------------------------ */

static size_t layout_size(uint32_t capacity)
{
    size_t slots = (size_t)capacity * sizeof(struct shm_slot);
    size_t entries = (size_t)capacity * sizeof(struct shm_entry);

    slots = (slots + 63) & ~(size_t)63;
    return HEADER_SIZE + slots + entries;
}

static void handle_layout(struct fifolock_shm__handle *s, uint32_t capacity)
{
    size_t slots = ((size_t)capacity * sizeof(struct shm_slot) + 63) & ~(size_t)63;

    s->capacity = capacity;
    s->slots = (struct shm_slot *)(void *)((char *)s->h + HEADER_SIZE);
    s->entries = (struct shm_entry *)(void *)((char *)s->h + HEADER_SIZE + slots);
}

/*
 * Lays the lock out in `fd`, a new empty file that no other process can
 * reach yet (O_TMPFILE, or a temporary name): it is linked at the lock's
 * path only once whole, so nobody ever sees, waits for or repairs a
 * half-made lock file, and no lock on the file is needed to make one.
 */
static int create_file(int fd, uint32_t capacity, struct shm_header **out, size_t *size_out)
{
    size_t size = layout_size(capacity);
    struct shm_header *h;
    pthread_mutexattr_t a;
    int rc;

    if (ftruncate(fd, (off_t)size) != 0)
        return errno;
    h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return errno;
    h->version = SHM_VERSION;
    h->capacity = capacity;
    h->header_size = HEADER_SIZE;
    h->slot_size = sizeof(struct shm_slot);
    h->entry_size = sizeof(struct shm_entry);
    h->mutex_size = sizeof(pthread_mutex_t);
    h->file_size = size;
    h->ptr_size = sizeof(void *);
    h->fast = F_IDLE;
    h->next_seq = 1;
    rc = pthread_mutexattr_init(&a);
    if (rc == 0) {
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        rc = pthread_mutex_init(&h->mutex, &a);
        pthread_mutexattr_destroy(&a);
    }
    if (rc != 0) {
        munmap(h, size);
        return rc;
    }
    __atomic_store_n(&h->magic, SHM_MAGIC, __ATOMIC_RELEASE);
    *out = h;
    *size_out = size;
    return 0;
}

/* Maps an existing lock file after checking its header. */
static int map_file(int fd, off_t file_size, struct shm_header **out, size_t *size_out)
{
    struct shm_header *h;
    uint64_t magic;
    uint32_t capacity;
    size_t size;

    if (file_size < (off_t)HEADER_SIZE)
        return EBADMSG;
    h = mmap(NULL, HEADER_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return errno;
    magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    capacity = h->capacity;
    size = layout_size(capacity <= FIFOLOCK_SHM_MAX_CAPACITY ? capacity : 0);
    if (magic != SHM_MAGIC || h->version != SHM_VERSION || capacity == 0 ||
        capacity > FIFOLOCK_SHM_MAX_CAPACITY || h->header_size != HEADER_SIZE ||
        h->slot_size != sizeof(struct shm_slot) || h->entry_size != sizeof(struct shm_entry) ||
        h->mutex_size != sizeof(pthread_mutex_t) || h->ptr_size != sizeof(void *) ||
        h->file_size != size || (off_t)size > file_size || h->nmodes > FIFOLOCK_SHM_MAX_MODES) {
        munmap(h, HEADER_SIZE);
        return EBADMSG;
    }
    munmap(h, HEADER_SIZE);
    h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return errno;
    *out = h;
    *size_out = size;
    return 0;
}

static int check_modes(const fifolock_mode *const *modes, size_t nmodes)
{
    size_t i, j;

    if (modes == NULL || nmodes == 0 || nmodes > FIFOLOCK_SHM_MAX_OPEN_MODES)
        return EINVAL;
    for (i = 0; i < nmodes; i++) {
        if (modes[i] == NULL || modes[i]->is_compatible == NULL || !valid_name(modes[i]->name))
            return EINVAL;
        for (j = 0; j < i; j++)
            if (modes[j] == modes[i] ||
                (modes[j]->limit == modes[i]->limit && strcmp(modes[j]->name, modes[i]->name) == 0))
                return EINVAL;
    }
    return 0;
}

/*
 * A new lock file at `path`, made whole before anyone can see it: an
 * unnamed file in the same directory (O_TMPFILE) linked at `path`, or, where
 * the file system has no O_TMPFILE, a file of a unique temporary name
 * linked at `path` and then unlinked (a creator that dies in between leaves
 * that temporary file behind, never a half-made lock). EEXIST: somebody
 * else linked theirs first.
 */
static int create_at(struct fifolock_shm__handle *s, const char *path, mode_t perms,
                     uint32_t capacity)
{
    char dir[PATH_MAX], tmp[PATH_MAX + 32], self[40];
    const char *slash = strrchr(path, '/');
    int fd = -1, rc;
    bool named = false;

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        return ENAMETOOLONG;
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, perms);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        unsigned tries;

        for (tries = 0; tries < 100 && fd < 0; tries++) {
            snprintf(tmp, sizeof tmp, "%s.%d.%lx.tmp", path, (int)getpid(),
                     (unsigned long)now_ns() ^ (unsigned long)tries);
            fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perms);
            if (fd < 0 && errno != EEXIST)
                break;
        }
        named = fd >= 0;
    }
    if (fd < 0)
        return errno;
    rc = create_file(fd, capacity, &s->h, &s->size);
    if (rc == 0) {
        if (named) {
            rc = link(tmp, path) == 0 ? 0 : errno;
        } else {
            proc_fd_path(self, fd);
            rc = linkat(AT_FDCWD, self, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
        }
    }
    if (named)
        unlink(tmp);
    if (rc != 0) {
        if (s->h != NULL)
            munmap(s->h, s->size);
        s->h = NULL;
        close(fd);
        return rc;
    }
    s->fd = fd;
    return 0;
}

/*
 * Opens the lock file at `path` (never through a symbolic link, never a
 * file that is not a whole lock file: an empty or foreign file is EBADMSG),
 * or makes a new one if there is none. No waiting: nothing here takes a
 * lock that another process could hold.
 */
static int open_file(struct fifolock_shm__handle *s, const char *path, mode_t perms,
                     uint32_t capacity)
{
    unsigned tries;
    struct stat st;
    int rc;

    for (tries = 0; tries < 100; tries++) {
        /* O_NONBLOCK: a FIFO or a device at `path` must not block the open. */
        s->fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (s->fd < 0) {
            if (errno != ENOENT)
                return errno;
            rc = create_at(s, path, perms, capacity);
            if (rc == EEXIST)
                continue; /* made by somebody else meanwhile: open theirs */
            return rc;
        }
        if (fstat(s->fd, &st) != 0)
            return errno;
        rc = S_ISREG(st.st_mode) ? map_file(s->fd, st.st_size, &s->h, &s->size) : EBADMSG;
        if (rc == EBADMSG)
            set_error("%s is not a fifolock lock file (%s)", path,
                      !S_ISREG(st.st_mode) ? "not a regular file"
                      : st.st_size == 0    ? "an empty file: remove it, and a lock file is made"
                                           : "foreign, corrupt, or of another version");
        return rc;
    }
    return EAGAIN; /* a file created and removed at `path` again and again */
}

/* Whether the caller's options struct has `field` (it was built knowing it). */
#define OPTION(o, field) ((o)->size >= offsetof(fifolock_shm_config, field) + sizeof((o)->field))

int fifolock_shm_open_config(fifolock_shm *lock, const char *path,
                             const fifolock_mode *const *modes, size_t nmodes,
                             const fifolock_shm_config *options)
{
    struct fifolock_shm__handle *s;
    size_t capacity = FIFOLOCK_SHM_DEFAULT_CAPACITY;
    mode_t perms = 0666;
    uint32_t slot;
    const fifolock_mode *const *ro = NULL;
    size_t nro = 0, i, j;
    int rc, saved = errno;

    last_error[0] = '\0';
    if (lock == NULL || path == NULL)
        return EINVAL;
    rc = check_modes(modes, nmodes);
    if (rc != 0)
        return rc;
    if (options != NULL) {
        if (options->size < offsetof(fifolock_shm_config, read_only) ||
            options->capacity > FIFOLOCK_SHM_MAX_CAPACITY || (options->permissions & ~0777u))
            return EINVAL;
        if (options->capacity)
            capacity = options->capacity;
        if (options->permissions)
            perms = options->permissions;
        if (OPTION(options, nread_only) && options->nread_only > 0) {
            ro = options->read_only;
            nro = options->nread_only;
            if (ro == NULL)
                return EINVAL;
        }
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return ENOMEM;
    s->fd = -1;
    s->reg = NO_SLOT;
    s->id = __atomic_fetch_add(&next_handle_id, 1, __ATOMIC_RELAXED);
    s->nmodes = nmodes;
    memcpy(s->modes, modes, nmodes * sizeof *modes);
    for (i = 0; i < nmodes; i++)
        s->read_only[i] = modes[i] == &fifolock_read || modes[i] == &fifolock_is ||
                          modes[i] == &fifolock_s;
    for (j = 0; j < nro; j++) {
        for (i = 0; i < nmodes && modes[i] != ro[j]; i++)
            ;
        if (i == nmodes) {
            free(s);
            return EINVAL; /* declared read-only, but not a mode of this open */
        }
        s->read_only[i] = true;
    }

    rc = open_file(s, path, perms, (uint32_t)capacity);
    if (rc != 0)
        goto fail;
    handle_layout(s, s->h->capacity);
    s->order = calloc(s->capacity, sizeof *s->order);
    s->queue = calloc(s->capacity, sizeof *s->queue);
    if (s->order == NULL || s->queue == NULL) {
        rc = ENOMEM;
        goto fail;
    }

    handles_add(s);
    rc = enter(s);
    if (rc == 0) {
        struct wakes w = { 0, { NULL } };

        rc = ensure_registered(s, &slot); /* its modes, then its slot */
        reap(s, UINT32_MAX); /* open is rare: a good time to clear the dead */
        settle(s, &w);
        leave(s, &w);
    }
    if (rc != 0) {
        handles_remove(s);
        goto fail;
    }
    lock->handle = s;
    errno = saved;
    return 0;

fail:
    if (s->h != NULL)
        munmap(s->h, s->size);
    if (s->fd >= 0)
        close(s->fd);
    free(s->order);
    free(s->queue);
    free(s);
    errno = saved;
    return rc;
}

int fifolock_shm_open(fifolock_shm *lock, const char *path, const fifolock_mode *const *modes,
                      size_t nmodes)
{
    return fifolock_shm_open_config(lock, path, modes, nmodes, NULL);
}

int fifolock_shm_open_ex(fifolock_shm *lock, const char *path, const fifolock_mode *const *modes,
                         size_t nmodes, const fifolock_shm_options *options)
{
    fifolock_shm_config config = FIFOLOCK_SHM_CONFIG_INIT;

    if (options == NULL)
        return fifolock_shm_open_config(lock, path, modes, nmodes, NULL);
    config.capacity = options->capacity;
    config.permissions = options->permissions;
    return fifolock_shm_open_config(lock, path, modes, nmodes, &config);
}

int fifolock_shm_close(fifolock_shm *lock)
{
    struct fifolock_shm__handle *s;
    uint32_t slot, i;
    int saved = errno;

    if (lock == NULL || lock->handle == NULL)
        return EINVAL;
    s = lock->handle;
    slot = my_slot(s);
    if (slot != NO_SLOT) {
        int rc = enter(s);

        if (rc != 0)
            return rc;
        for (i = 0; i < s->h->hwm && i < s->capacity; i++)
            if (seq_load(&s->entries[i]) != 0 && s->entries[i].slot == slot) {
                leave(s, NULL);
                return EBUSY;
            }
        __atomic_store_n(&s->slots[slot].used, 0, __ATOMIC_RELEASE);
        leave(s, NULL);
        live_lock(s->fd, slot, F_UNLCK, F_OFD_SETLK);
    }
    handles_remove(s);
    munmap(s->h, s->size);
    close(s->fd);
    free(s->order);
    free(s->queue);
    free(s);
    lock->handle = NULL;
    errno = saved;
    return 0;
}

/* ---- acquire ------------------------------------------------------------- */

/* The death report of this thread's last EOWNERDEAD. */
static __thread struct {
    uint64_t id; /* the handle's id: a closed handle's memory may be reused */
    size_t count;
    struct fifolock_shm_death d[FIFOLOCK_SHM_REPORT_MAX];
} last_report;

/* A5: e is granted: make it HELD and answer 0 or EOWNERDEAD. */
static int take_grant(struct fifolock_shm__handle *s, struct shm_entry *e, uint64_t seq,
                      uint64_t *token)
{
    uint32_t st = st_load(e), k, nd;

    DEBUG_ASSERT((st & ST_MASK) == ST_GRANTED);
    CRASH_POINT(6);
    __atomic_store_n(&e->state, ST_HELD, __ATOMIC_RELAXED);
    if (token != NULL)
        *token = seq;
    if (!(st & ST_DEAD))
        return 0;
    nd = e->ndead < FIFOLOCK_SHM_REPORT_MAX ? e->ndead : FIFOLOCK_SHM_REPORT_MAX;
    last_report.id = s->id;
    last_report.count = e->ndead;
    for (k = 0; k < nd; k++) {
        struct fifolock_shm_death *d = &last_report.d[k];
        uint32_t m = e->dead[k].mode;

        memset(d, 0, sizeof *d);
        d->pid = (pid_t)e->dead[k].pid;
        d->n = e->dead[k].n;
        d->mode = mode_lookup(s, m, false); /* not under L: no semaphore made */
        if (m < FIFOLOCK_SHM_MAX_MODES) {
            memcpy(d->name, s->h->modes[m].name, FIFOLOCK_SHM_NAME_MAX);
            d->name[FIFOLOCK_SHM_NAME_MAX - 1] = '\0';
            d->limit = (size_t)s->h->modes[m].limit;
        }
    }
    return EOWNERDEAD;
}

/*
 * How many ticks a waiter with `ahead` waiting entries before it sleeps
 * until its next one (A4). Only the first two waiters matter for a death:
 * the first stands behind the holders, the second behind the first; they
 * tick every tick. A waiter further back ticks less often (at most every
 * TICK_SPREAD ticks): a death ahead of it is the business of those in
 * front, and hundreds of waiters that all took the internal lock every 20 ms
 * to look would keep the lock itself from changing hands (500 processes on
 * two CPUs: 40 s instead of 2).
 */
#define TICK_SPREAD 10u

static uint32_t ticks_for(uint32_t ahead)
{
    return ahead < 2 ? 1 : ahead < TICK_SPREAD ? ahead : TICK_SPREAD;
}

/* T1 and A6 share this: under L, is e granted? If not and `withdraw` (the
 * error to return: ETIMEDOUT or EINTR; 0 keeps e), remove it. While e
 * waits, *ahead is the number of entries before it that wait too. */
static int tick(struct fifolock_shm__handle *s, struct shm_entry *e, uint64_t seq, int withdraw,
               uint64_t *token, uint32_t *ahead)
{
    struct wakes w = { 0, { NULL } };
    uint32_t n = 0, pos, i; /* n: 0 counts nobody ahead, should settle() not have run */
    int rc = enter(s);

    if (rc != 0)
        return rc;
    if (seq_load(e) != seq) {
        leave(s, &w);
        return ENOLCK;
    }
    if (!st_granted(st_load(e))) {
        n = queue_build(s);
        pos = queue_position(s, e, n);
        (void)reap(s, pos);
        n = settle(s, &w); /* after deaths, and for G2's late grants */
    }
    if (st_granted(st_load(e))) {
        leave(s, &w);
        return take_grant(s, e, seq, token);
    }
    if (withdraw != 0) {
        entry_remove(s, e);
        settle(s, &w);
        leave(s, &w);
        return withdraw;
    }
    /* e was not granted, so settle() ran above and left the order in s->order */
    *ahead = 0;
    pos = queue_position(s, e, n);
    for (i = 0; i < pos; i++)
        if (!st_granted(st_load(&s->entries[s->order[i]])))
            (*ahead)++;
    leave(s, &w);
    return FIFOLOCK_WAITING;
}

static bool valid_deadline(const struct timespec *d)
{
    return d->tv_nsec >= 0 && d->tv_nsec <= 999999999L;
}

/* How long an interruptible wait sleeps at most between two questions. */
#define INTERRUPT_POLL_NS 50000000

/*
 * The acquire of every kind: deadline NULL waits for ever; try: never waits
 * (busy_rc: EBUSY, or ETIMEDOUT for a deadline already past); `interrupted`
 * (NULL: never asked) is asked before each sleep (A4), which then lasts at
 * most INTERRUPT_POLL_NS.
 */
static int wait_entry(struct fifolock_shm__handle *s, struct shm_entry *e, uint64_t seq,
                      const struct timespec *deadline, uint64_t *token,
                      fifolock_interrupt_fn *interrupted, void *arg);

static int acquire(fifolock_shm *lock, const fifolock_mode *mode, size_t n,
                   const struct timespec *deadline, bool try, int busy_rc, uint64_t *token,
                   fifolock_interrupt_fn *interrupted, void *arg)
{
    struct fifolock_shm__handle *s;
    struct shm_entry *e;
    struct wakes w = { 0, { NULL } };
    uint32_t slot;
    uint64_t seq;
    int li, rc;
    int64_t end = 0;

    last_error[0] = '\0';
    if (lock == NULL || lock->handle == NULL || mode == NULL || n == 0 || n > FIFOLOCK_SHM_MAX_N)
        return EINVAL;
    s = lock->handle;
    li = local_index(s, mode);
    if (li < 0)
        return EINVAL;
    if (deadline != NULL) {
        if (!valid_deadline(deadline))
            return EINVAL;
        end = ts_ns(deadline);
        if (!try && now_ns() >= end) {
            try = true;
            busy_rc = ETIMEDOUT;
        }
    }

    /* F1 */
    slot = my_slot(s);
    if (n == 1 && token == NULL && slot != NO_SLOT && s->alone[li]) {
        uint64_t idle = F_IDLE;

        if (__atomic_load_n(&s->h->fast, __ATOMIC_RELAXED) == F_IDLE &&
            __atomic_compare_exchange_n(&s->h->fast, &idle, FAST_WORD(slot, s->index[li]), false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return 0;
    }

    /* A1 */
    rc = enter(s);
    if (rc != 0)
        return rc;
    rc = ensure_registered(s, &slot);
    if (rc != 0) {
        leave(s, NULL);
        return rc;
    }
    e = entry_take(s, &w);
    if (e == NULL)
        return EUSERS; /* it has left the internal lock */
    seq = entry_publish(s, e, slot, s->index[li], (uint32_t)n, ST_WAITING, 0, 0);
    settle(s, &w);
    if (!st_granted(st_load(e)) && !fits_empty(mode, n)) {
        /* Refused even by an empty lock: it could never be granted. */
        entry_remove(s, e);
        settle(s, &w);
        leave(s, &w);
        return EDEADLK;
    }
    if (!st_granted(st_load(e)) && try) {
        /* Dead holders must not make a try fail: find them first. */
        uint32_t qn = queue_build(s);

        if (reap(s, queue_position(s, e, qn)) > 0)
            settle(s, &w);
    }
    if (st_granted(st_load(e))) {
        leave(s, &w);
        return take_grant(s, e, seq, token);
    }
    if (try) {
        entry_remove(s, e); /* the tail: nobody behind it to grant */
        leave(s, &w);
        return busy_rc;
    }
    leave(s, &w);
    return wait_entry(s, e, seq, deadline, token, interrupted, arg);
}

/*
 * A2-A5: waits until entry e (seq `seq`, queued and published, L not held)
 * is granted, its deadline passes (T1) or `interrupted` says so (T1, EINTR).
 */
static int wait_entry(struct fifolock_shm__handle *s, struct shm_entry *e, uint64_t seq,
                      const struct timespec *deadline, uint64_t *token,
                      fifolock_interrupt_fn *interrupted, void *arg)
{
    int64_t end = deadline != NULL ? ts_ns(deadline) : 0, next_tick;
    unsigned spins, yields;
    uint32_t st;
    int rc;

    spins = __atomic_load_n(&fifolock_shm__tuning.spin, __ATOMIC_RELAXED);
    yields = __atomic_load_n(&fifolock_shm__tuning.yield, __ATOMIC_RELAXED);
    next_tick = now_ns() + (int64_t)__atomic_load_n(&fifolock_shm__tuning.tick_ns,
                                                    __ATOMIC_RELAXED);
    for (;;) {
        st = st_load(e);
        if ((st & ST_MASK) == ST_GRANTED)
            return take_grant(s, e, seq, token);
        if (spins > 0) {
            spins--;
            fifolock__cpu_relax();
            continue;
        }
        if (yields > 0) {
            yields--;
            sched_yield();
            continue;
        }
        if (st == ST_WAITING) {
            /* A3 */
            if (!__atomic_compare_exchange_n(&e->state, &st, ST_PARKED, false, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
                continue;
            st = ST_PARKED;
        }
        if (st == ST_PARKED) {
            /* A4 */
            int64_t until = next_tick;
            struct timespec ts;

            if (interrupted != NULL) {
                uint32_t ahead = 0;

                /* Asked under no lock; nonzero withdraws as T1 does (the
                 * grant wins a race: tick() takes it). */
                if (interrupted(arg) != 0)
                    return tick(s, e, seq, EINTR, token, &ahead);
                if (now_ns() + INTERRUPT_POLL_NS < until)
                    until = now_ns() + INTERRUPT_POLL_NS;
            }
            if (deadline != NULL && end < until)
                until = end;
            ts = ns_ts(until);
            futex_wait_until(&e->state, ST_PARKED, &ts);
        }
        st = st_load(e);
        if ((st & ST_MASK) == ST_GRANTED)
            return take_grant(s, e, seq, token);
        {
            int64_t now = now_ns();
            bool timed_out = deadline != NULL && now >= end;

            if (timed_out || now >= next_tick || st == ST_WAITING) {
                uint32_t ahead = 0;

                /* T1, A6, or G2's nudge */
                rc = tick(s, e, seq, timed_out ? ETIMEDOUT : 0, token, &ahead);
                if (rc != FIFOLOCK_WAITING)
                    return rc;
                next_tick = now_ns() + (int64_t)ticks_for(ahead) *
                                           (int64_t)__atomic_load_n(&fifolock_shm__tuning.tick_ns,
                                                                    __ATOMIC_RELAXED);
            }
        }
    }
}

/* F1 alone, inlined into the public calls: 0 if it took the lock. */
static inline bool fast_acquire(fifolock_shm *lock, const fifolock_mode *mode)
{
    struct fifolock_shm__handle *s;
    size_t i;

    if (lock == NULL || (s = lock->handle) == NULL)
        return false;
    for (i = 0; i < s->nmodes; i++) {
        if (s->modes[i] == mode) {
            uint64_t idle = F_IDLE;
            uint32_t slot;

            if (!s->alone[i] || __atomic_load_n(&s->h->fast, __ATOMIC_RELAXED) != F_IDLE)
                return false;
            slot = my_slot(s);
            return slot != NO_SLOT &&
                   __atomic_compare_exchange_n(&s->h->fast, &idle, FAST_WORD(slot, s->index[i]),
                                               false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
        }
    }
    return false;
}

int fifolock_shm_acquire(fifolock_shm *lock, const fifolock_mode *mode)
{
    if (fast_acquire(lock, mode))
        return 0;
    return acquire(lock, mode, 1, NULL, false, 0, NULL, NULL, NULL);
}

int fifolock_shm_try_acquire(fifolock_shm *lock, const fifolock_mode *mode)
{
    if (fast_acquire(lock, mode))
        return 0;
    return acquire(lock, mode, 1, NULL, true, EBUSY, NULL, NULL, NULL);
}

int fifolock_shm_timed_acquire(fifolock_shm *lock, const fifolock_mode *mode,
                               const struct timespec *deadline)
{
    if (deadline == NULL)
        return EINVAL;
    return acquire(lock, mode, 1, deadline, false, 0, NULL, NULL, NULL);
}

int fifolock_shm_acquire_n(fifolock_shm *lock, const fifolock_mode *mode, size_t n,
                           const struct timespec *deadline, uint64_t *token)
{
    return acquire(lock, mode, n, deadline, false, 0, token, NULL, NULL);
}

int fifolock_shm_acquire_interruptible(fifolock_shm *lock, const fifolock_mode *mode, size_t n,
                                       const struct timespec *deadline,
                                       fifolock_interrupt_fn *interrupted, void *arg)
{
    return acquire(lock, mode, n, deadline, false, 0, NULL, interrupted, arg);
}

/* ---- convert ------------------------------------------------------------- */

/*
 * X0: a conversion of every kind (try: never waits; busy_rc: EBUSY, or
 * ETIMEDOUT for a deadline already past). Under L: find the hold of `from`
 * (an entry of this handle, HELD, not already being converted), publish
 * the conversion (an entry of `to` marked E_CONVERT that names that hold's
 * entry and its n), and settle: the rule places it after the holders,
 * ahead of every waiter (X2), and G1 switches it at once if `to` fits. It
 * then waits as any request (A2-A6); T1 withdraws it, the hold untouched.
 */
static int convert(fifolock_shm *lock, const fifolock_mode *from, const fifolock_mode *to,
                   const struct timespec *deadline, bool try, int busy_rc,
                   fifolock_interrupt_fn *interrupted, void *arg)
{
    struct fifolock_shm__handle *s;
    struct shm_entry *e, *f = NULL;
    struct wakes w = { 0, { NULL } };
    uint32_t slot, i, hwm, fi, ti, other_slot = NO_SLOT;
    uint64_t seq, keep = 0;
    bool other = false;
    int lf, lt, rc;

    last_error[0] = '\0';
    if (lock == NULL || lock->handle == NULL || from == NULL || to == NULL)
        return EINVAL;
    s = lock->handle;
    lf = local_index(s, from);
    lt = local_index(s, to);
    if (lf < 0 || lt < 0)
        return EINVAL;
    if (deadline != NULL) {
        if (!valid_deadline(deadline))
            return EINVAL;
        if (!try && now_ns() >= ts_ns(deadline)) {
            try = true;
            busy_rc = ETIMEDOUT;
        }
    }
    if (my_slot(s) == NO_SLOT)
        return EPERM; /* this process never held through this handle */
    fi = s->index[lf];
    ti = s->index[lt];
    rc = enter(s); /* L2 makes a fast hold an entry */
    if (rc != 0)
        return rc;
    slot = my_slot(s);
    hwm = s->h->hwm < s->capacity ? s->h->hwm : s->capacity;
    for (i = 0; i < hwm; i++) {
        e = &s->entries[i];
        if (seq_load(e) != 0 && (e->flags & E_CONVERT) && !st_granted(st_load(e))) {
            other = true;
            other_slot = e->slot;
            if (e->slot == slot)
                keep = e->from_fast;
        }
    }
    if (other && other_slot != slot && !slot_alive(s, other_slot)) {
        /* D1: a dead process's conversion waits no more. */
        reap_slot(s, other_slot);
        settle(s, &w);
        other = false;
    }
    /* The hold: an entry of one hold if there is one (R1 leaves the whole
     * entry alone while the conversion waits, X3). */
    for (i = 0; i < hwm; i++) {
        e = &s->entries[i];
        if (seq_load(e) == 0 || seq_load(e) == keep || e->slot != slot || e->mode != fi ||
            (st_load(e) & ST_MASK) != ST_HELD)
            continue;
        if (f == NULL || (f->n > 1 && e->n == 1))
            f = e;
    }
    if (f == NULL) {
        leave(s, &w);
        return EPERM;
    }
    if (fifolock__never_fits(to, 1)) {
        leave(s, &w);
        return EDEADLK; /* it would wait ahead of everybody, for ever */
    }
    e = entry_take(s, &w);
    if (e == NULL)
        return EUSERS; /* it has left the internal lock */
    e->from_n = f->n;
    seq = entry_publish(s, e, slot, ti, 1, ST_WAITING, E_CONVERT | (fi << E_FROM_SHIFT),
                        seq_load(f));
    /* With another conversion waiting, only the switch made now is asked
     * (the engine's: it may happen at once, never wait). */
    settle_conv(s, &w, other ? e : NULL);
    if (!st_granted(st_load(e)) && (try || other)) {
        /* Dead holders must not make it fail: find them first. */
        uint32_t qn = queue_build(s);

        if (reap(s, queue_position(s, e, qn)) > 0)
            settle_conv(s, &w, other ? e : NULL);
    }
    if (st_granted(st_load(e))) {
        if (other)
            settle(s, &w); /* `from` may have held back the one that waits */
        leave(s, &w);
        return take_grant(s, e, seq, NULL);
    }
    if (try || other) {
        entry_remove(s, e);
        settle(s, &w);
        leave(s, &w);
        return try ? busy_rc : EDEADLK; /* two would wait for each other */
    }
    leave(s, &w);
    return wait_entry(s, e, seq, deadline, NULL, interrupted, arg);
}

int fifolock_shm_convert(fifolock_shm *lock, const fifolock_mode *from, const fifolock_mode *to)
{
    return convert(lock, from, to, NULL, false, 0, NULL, NULL);
}

int fifolock_shm_try_convert(fifolock_shm *lock, const fifolock_mode *from,
                             const fifolock_mode *to)
{
    return convert(lock, from, to, NULL, true, EBUSY, NULL, NULL);
}

int fifolock_shm_timed_convert(fifolock_shm *lock, const fifolock_mode *from,
                               const fifolock_mode *to, const struct timespec *deadline)
{
    if (deadline == NULL)
        return EINVAL;
    return convert(lock, from, to, deadline, false, 0, NULL, NULL);
}

int fifolock_shm_convert_interruptible(fifolock_shm *lock, const fifolock_mode *from,
                                       const fifolock_mode *to, const struct timespec *deadline,
                                       fifolock_interrupt_fn *interrupted, void *arg)
{
    return convert(lock, from, to, deadline, false, 0, interrupted, arg);
}

/* ---- release ------------------------------------------------------------- */

int fifolock_shm_release_n(fifolock_shm *lock, const fifolock_mode *mode, size_t n)
{
    struct fifolock_shm__handle *s;
    struct wakes w = { 0, { NULL } };
    uint32_t slot, idx, i, hwm;
    uint64_t keep = 0; /* the entry a waiting conversion of this handle converts */
    size_t have = 0, left;
    int li, rc;

    if (lock == NULL || lock->handle == NULL || mode == NULL || n == 0)
        return EINVAL;
    s = lock->handle;
    li = local_index(s, mode);
    if (li < 0)
        return EINVAL;
    idx = s->index[li];
    slot = my_slot(s);
    if (slot == NO_SLOT)
        return EPERM;
    /* F2 */
    if (n == 1) {
        uint64_t held = FAST_WORD(slot, idx);

        if (__atomic_compare_exchange_n(&s->h->fast, &held, F_IDLE, false, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED))
            return 0;
    }
    /* R1 */
    rc = enter(s);
    if (rc != 0)
        return rc;
    hwm = s->h->hwm < s->capacity ? s->h->hwm : s->capacity;
    /* X3: while a conversion waits, its hold of `from` is not this call's
     * to drop: the entry that holds it stays as it is (X1 looks at its n). */
    for (i = 0; i < hwm && keep == 0; i++) {
        struct shm_entry *e = &s->entries[i];

        if (seq_load(e) != 0 && e->slot == slot && (e->flags & E_CONVERT) &&
            !st_granted(st_load(e)))
            keep = e->from_fast;
    }
    for (i = 0; i < hwm && have < n; i++) {
        struct shm_entry *e = &s->entries[i];

        if (seq_load(e) != 0 && seq_load(e) != keep && e->slot == slot && e->mode == idx &&
            (st_load(e) & ST_MASK) == ST_HELD)
            have += e->n;
    }
    if (have < n) {
        leave(s, NULL);
        return EPERM;
    }
    left = n;
    for (i = 0; i < hwm && left > 0; i++) {
        struct shm_entry *e = &s->entries[i];

        if (seq_load(e) == 0 || seq_load(e) == keep || e->slot != slot || e->mode != idx ||
            (st_load(e) & ST_MASK) != ST_HELD)
            continue;
        if (e->n <= left) {
            left -= e->n;
            entry_remove(s, e);
        } else {
            e->n -= (uint32_t)left;
            left = 0;
        }
    }
    /* R2 */
    CRASH_POINT(5);
    settle(s, &w);
    leave(s, &w);
    return 0;
}

int fifolock_shm_release(fifolock_shm *lock, const fifolock_mode *mode)
{
    struct fifolock_shm__handle *s;
    size_t i;

    /* F2 first, without the checks of release_n: they only matter if it fails. */
    if (lock != NULL && (s = lock->handle) != NULL) {
        for (i = 0; i < s->nmodes; i++) {
            if (s->modes[i] == mode) {
                uint32_t slot = my_slot(s);
                uint64_t held = FAST_WORD(slot, s->index[i]);

                if (slot != NO_SLOT &&
                    __atomic_compare_exchange_n(&s->h->fast, &held, F_IDLE, false,
                                                __ATOMIC_RELEASE, __ATOMIC_RELAXED))
                    return 0;
                break;
            }
        }
    }
    return fifolock_shm_release_n(lock, mode, 1);
}

/* ---- repaired ------------------------------------------------------------ */

int fifolock_shm_consistent(fifolock_shm *lock)
{
    struct fifolock_shm__handle *s;
    uint32_t slot, i, hwm;
    bool may = false;
    int rc;

    if (lock == NULL || lock->handle == NULL)
        return EINVAL;
    s = lock->handle;
    slot = my_slot(s);
    if (slot == NO_SLOT)
        return EPERM;
    rc = enter(s); /* L2 turns a fast hold into an entry */
    if (rc != 0)
        return rc;
    hwm = s->h->hwm < s->capacity ? s->h->hwm : s->capacity;
    for (i = 0; i < hwm && !may; i++) {
        struct shm_entry *e = &s->entries[i];

        may = seq_load(e) != 0 && e->slot == slot && (st_load(e) & ST_MASK) == ST_HELD &&
              !mode_read_only(s->h, e->mode);
    }
    if (may && s->h->ndead > 0) {
        /* C1: one final store clears the report (dead_more only counts
         * beyond ndead's items and is reset when the next report begins). */
        s->h->dead_more = 0;
        CRASH_POINT(7);
        __atomic_store_n(&s->h->ndead, 0, __ATOMIC_RELEASE);
    }
    leave(s, NULL); /* L3: the fast path is open again if nothing queues */
    return may ? 0 : EPERM;
}

/* ---- handing the hold to a child ----------------------------------------- */

int fifolock_shm_keepalive_fd(fifolock_shm *lock, int *fd)
{
    struct fifolock_shm__handle *s;
    int saved = errno, rc;

    if (lock == NULL || lock->handle == NULL || fd == NULL)
        return EINVAL;
    s = lock->handle;
    if (my_slot(s) == NO_SLOT)
        return EPERM;
    /* A new descriptor of the same open file description: the byte lock is
     * the description's, so it stays while any descriptor of it is open.
     * F_DUPFD leaves FD_CLOEXEC clear: the descriptor survives exec. */
    rc = fcntl(s->fd, F_DUPFD, 3);
    if (rc < 0) {
        rc = errno;
        errno = saved;
        return rc;
    }
    *fd = rc;
    return 0;
}

/* ---- introspection ------------------------------------------------------- */

size_t fifolock_shm_dead_holders(const fifolock_shm *lock, struct fifolock_shm_death *out,
                                 size_t max)
{
    size_t i;

    if (lock == NULL || lock->handle == NULL || last_report.id != lock->handle->id)
        return 0;
    for (i = 0; i < max && i < last_report.count && i < FIFOLOCK_SHM_REPORT_MAX; i++)
        out[i] = last_report.d[i];
    return last_report.count;
}

/* Counts under L: holds of table mode `idx` (or, idx < 0, waiting entries). */
static size_t count_entries(fifolock_shm *lock, int idx)
{
    struct fifolock_shm__handle *s;
    size_t total = 0;
    uint32_t i;

    if (lock == NULL || lock->handle == NULL)
        return 0;
    s = lock->handle;
    if (enter(s) != 0)
        return 0;
    for (i = 0; i < s->h->hwm && i < s->capacity; i++) {
        struct shm_entry *e = &s->entries[i];

        if (seq_load(e) == 0)
            continue;
        if (idx < 0 ? !st_granted(st_load(e)) : (st_granted(st_load(e)) && e->mode == (uint32_t)idx))
            total += idx < 0 ? 1 : e->n;
    }
    leave(s, NULL);
    return total;
}

size_t fifolock_shm_waiting(fifolock_shm *lock)
{
    return count_entries(lock, -1);
}

size_t fifolock_shm_held(fifolock_shm *lock, const fifolock_mode *mode)
{
    int li;

    if (lock == NULL || lock->handle == NULL)
        return 0;
    li = local_index(lock->handle, mode);
    if (li < 0)
        return 0;
    return count_entries(lock, (int)lock->handle->index[li]);
}

/* ---- for tests ----------------------------------------------------------- */

uint32_t fifolock_shm__slot(const fifolock_shm *lock)
{
    return my_slot(lock->handle);
}

size_t fifolock_shm__parked(fifolock_shm *lock)
{
    struct fifolock_shm__handle *s = lock->handle;
    size_t total = 0;
    uint32_t i;

    if (enter(s) != 0)
        return 0;
    for (i = 0; i < s->h->hwm && i < s->capacity; i++)
        if (seq_load(&s->entries[i]) != 0 && st_load(&s->entries[i]) == ST_PARKED)
            total++;
    leave(s, NULL);
    return total;
}
