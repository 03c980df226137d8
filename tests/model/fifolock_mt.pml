/*
 * A model of the thread front end's protocol (src/mt.c), checked with spin.
 *
 * Three threads each make ROUNDS requests on one fifolock_mt, blocking or
 * timed, in a mode chosen anew each round, and release what they got. The
 * model keeps the steps of src/mt.c's top comment and names them where they
 * happen: the word with LOCKED/SLEEPERS/IDLE and the fast path's mode (K2-K5,
 * F1, F2), the internal lock L (L1-L3), waiting (A1-A6), timing out (T1) and
 * granting (G1-G4), nudging the next head (N1, N2). G5 (step aside) and A0
 * (defer: yield once before queueing behind others) are only sched_yield()
 * hints, which the model's free choice of the next thread to run already
 * covers; the step_aside flag G5 reads is touched only under L, and the
 * lock->queued count A0 reads only chooses whether to yield (after which a
 * timed call whose deadline passed makes one last try under L instead of
 * queueing, as one whose deadline passed before the call does), so both are
 * left out. N1 runs unless busy (or the nudge tuning is off): a hint written
 * without L from timed sched_yield()s, so the model chooses it freely at
 * every N1.
 *
 * Each atomic step is one atomic instruction of the C code (a CAS, an
 * exchange, a load, a store) or one futex call, merged only where that
 * changes no outcome: an engine call, which runs under L and is one abstract
 * step here (a FIFO queue of frames with modes, the hold counts, the grant
 * loop), shares its step with the L3 exchange that ends it, since by K1
 * nothing other threads do in between touches what the call touches; A5's
 * load of s shares the step in which futex_wait returns; polls that find
 * nothing new are left out, a spin being only a delay that may end at any
 * poll. Memory is sequentially consistent here: the C code's acquire and
 * release orderings are not modelled.
 *
 * The futexes: every thread that sleeps is in exactly one kernel wait queue,
 * asleep[t] (the lock word FW, or a frame's state FS(f)). futex_wait checks
 * the word and joins the queue in one step, so a wake that came first is not
 * lost; futex_wake takes out one sleeper of that address if there is one
 * (any one: the kernel promises no order) and does nothing otherwise.
 *
 * What is checked (assertions and invalid end states; with ./pan -a -f an
 * LTL formula under weak fairness):
 *   SAFE      every holder's predicate holds, for the engine's counts after
 *             every grant and for the threads inside their critical section.
 *   FIFO      a waiter is granted only from the head of the queue, and a
 *             hold is granted at once (F1, A1) only with an empty queue.
 *   I3        whenever L is free, the head of the queue (if any) is not
 *             compatible with the holds: no grant is left undone.
 *   K1-K5     what the word says (monitor process `watch`); L3 leaves no
 *             grant unwoken on lock->wake.
 *   ONCE      every hold belongs to exactly one thread: the sum of the
 *             threads' holds is the engine's total plus the fast path's hold;
 *             a call that returned 0 holds exactly one, one that returned
 *             ETIMEDOUT none and is not queued; at the end nothing is held.
 *   J1-J3     a frame's state moves only along the arrows, by the right
 *             thread; the granter touches a frame only while it is alive
 *             (alive[f]) and, after L is dropped, only while WAKING; the
 *             nudger (N1) only under L, while the frame is the queued head;
 *             a waiter leaves its frame only once GRANTED or cancelled.
 *   no lost wakeup: the only valid end state is every thread done. Busy
 *             waits (A2's spin, A6's linger, L's spin) are modelled as waits
 *             for their condition, so a thread waiting for ever, asleep or
 *             lingering, with the lock granted to it or free, is a deadlock:
 *             an invalid end state. With FOREVER the threads never stop and
 *             the LTL formula `woken` says a granted request is returned
 *             however the others go on.
 *
 * Configurations (spin -D...):
 *   MODES_MUTEX    every request a mutex
 *   MODES_RW       read or write, chosen per thread per round (the default)
 *   MODES_ALL      mutex, read or write
 *   ROUNDS=n       requests per thread (default 2)
 *   TIMED_THREADS=mask  thread t's requests are timed iff bit t is set;
 *                  without it each request is blocking or timed, chosen
 *                  per round. A timed request may behave like a blocking
 *                  one (its deadline need never pass), so all-timed covers
 *                  every safety property, but a timed thread never waits
 *                  for ever: end-state checks want blocking threads.
 *   SPURIOUS       futex waits may also return for no reason (a signal, a
 *                  late wake on reused memory). For safety runs only: a
 *                  thread asleep for ever could then wake spuriously, so a
 *                  lost wakeup is no longer a deadlock, and weak fairness
 *                  would force those wakeups.
 *   FOREVER        threads loop for ever (any number of rounds), for the
 *                  liveness run; the frame of a call alternates between two.
 *   NO_YIELD       no yield phase: A2 goes from spinning straight to A3,
 *                  as with fifolock_mt__tuning.yield == 0 (without it, each
 *                  wait yields or not). G2 treats YIELDING as WAITING and
 *                  only the step_aside hint (not modelled) tells them apart,
 *                  so this loses no behaviour the checks can see; it keeps
 *                  the largest configurations small.
 *   NO_SYMMETRY    choose the first requests freely (see init).
 *
 * Deliberate bugs (spin -D..., for tests/model/run_spin.sh --mutants: spin
 * must find each one):
 *   WAKE_BEFORE_GRANT        G2 takes the hold back out of the counts; the
 *                            waiter counts itself once awake (try_acquire,
 *                            failure ignored), as the C mutant does.
 *   DROP_WAKEUP              G4 stores GRANTED but never calls futex_wake.
 *   SKIP_GRANT_AFTER_CANCEL  fifolock_cancel() does not run the grant loop.
 *   FAST_PAST_WAITER         F1 also takes the fast path from K4 (word 0: L
 *                            free but the engine busy), not only from K2
 *                            (IDLE): a hold past waiting requests.
 *   NO_LINGER                A5 returns on WAKING without A6.
 *   READ_NEXT_LATE           G4 reads f->next after its store of GRANTED.
 *   CANCEL_IGNORES_GRANT     T1 reports ETIMEDOUT also when the cancel
 *                            answered EALREADY.
 *   LOST_L_WAKE              L1 after a sleep takes L as plain LOCKED, not
 *                            LOCKED|SLEEPERS (the classic futex-lock bug).
 *   G2_WAITING_ONLY          G2 grants by CAS from WAITING only and takes any
 *                            other state for PARKED (as before YIELDING).
 *   GRANT_PAST_WAITER        fifolock_acquire() grants at once whenever the
 *                            mode is compatible, waiters or not (the engine's
 *                            mutant of that name).
 *   NUDGE_NO_WAKE            N1 makes the head NUDGED but never calls
 *                            futex_wake: it sleeps on, and G2, taking a
 *                            NUDGED waiter for awake, grants it without a
 *                            wake.
 */

#define NT 3                    /* threads */
#ifndef ROUNDS
#define ROUNDS 2                /* requests per thread */
#endif
#define NF (NT * ROUNDS)        /* frames: one per (thread, round) */
#ifdef FOREVER
/* Threads loop for ever; each call's frame alternates between two. */
#undef ROUNDS
#define ROUNDS 2
#define MORE_ROUNDS true
#define NEXT_ROUND r = 1 - r
#else
#define MORE_ROUNDS (r < ROUNDS)
#define NEXT_ROUND r++
#endif

#if !defined(MODES_MUTEX) && !defined(MODES_RW) && !defined(MODES_ALL)
#define MODES_RW
#endif
#if defined(MODES_MUTEX)
#define MODE_LO 1               /* the modes requested: MODE_LO .. MODE_LO + NMODES - 1 */
#define NMODES 1
#elif defined(MODES_RW)
#define MODE_LO 2
#define NMODES 2
#else
#define MODE_LO 1
#define NMODES 3
#endif

/* Modes; a mode pointer in the word is the mode times 8 (8-aligned). */
#define MUTEX 1
#define READ 2
#define WRITE 3

/* lock->word: flags, and the fast path's mode times 8 (modes are 8-aligned) */
#define LOCKED 1
#define SLEEPERS 2
#define IDLE 4
#define LS (LOCKED | SLEEPERS)
#define WMODE(w) ((w) >> 3)

/* w->state */
#define WAITING 0
#define YIELDING 1
#define PARKED 2
#define NUDGED 3
#define WAKING 4
#define GRANTED 5

/* The engine's own waiter state (fifolock_waiter.state) */
#define E_IDLE 0
#define E_QUEUED 1
#define E_GRANTED 2

/* Futex addresses: nothing, the lock word, the state of frame f. */
#define NONE 0
#define FW 1
#define FS(f) ((f) + 2)

/* Results */
#define OK 0
#define EBUSY 1
#define EALREADY 2
#define EPERM 3
#define QUEUED 4                /* FIFOLOCK_WAITING */

/* src/modes.c: may one more holder of mode m join the holds h[]? */
#define COMPAT(h, m) (((m) == MUTEX && h[MUTEX] == 0) || \
                      ((m) == READ && h[WRITE] == 0) || \
                      ((m) == WRITE && h[READ] == 0 && h[WRITE] == 0))
/* Every holder's predicate, each judged against the others. */
#define SAFE(h) (h[MUTEX] <= 1 && h[WRITE] <= 1 && (h[WRITE] == 0 || h[READ] == 0))

/* ---- shared state --------------------------------------------------------- */

byte word = IDLE;               /* lock->word (fifolock_mt_init()) */
byte wake[NT];                  /* lock->wake, oldest grant first */
byte nwake;

/* The engine: the queue of frames, each frame's mode and engine state, the
 * hold counts. */
byte q[NT];
byte qlen;
byte fmode[NF];
byte eng[NF];
byte held[4];
byte total;

/* The frames (struct waiter on each waiting thread's stack). */
byte st[NF];                    /* w->state */
bool alive[NF];                 /* the call that owns the frame has not returned */

/* The kernel: which futex each thread sleeps on. */
byte asleep[NT];

/* Ghosts, for the checks only. */
byte hold[NT];                  /* holds each thread got and has not released */
byte fast_owner;                /* 1 + the thread whose hold is the word's M (K3) */
byte cs[4];                     /* threads inside their critical section, per mode */
byte ndone;                     /* threads that finished every round */
byte first[NT];                 /* 1 + each thread's first request, until it is made */
byte gf;                        /* scratch of the grant loop (always 0 between steps) */

#define OWNER(f) ((f) / ROUNDS)

/* ---- the kernel ------------------------------------------------------------ */

/* futex_wake(addr, 1): one sleeper of `a`, if any, leaves the wait queue. */
inline futex_wake(a)
{
    if
    :: asleep[0] == a -> asleep[0] = NONE
    :: asleep[1] == a -> asleep[1] = NONE
    :: asleep[2] == a -> asleep[2] = NONE
    :: else -> skip
    fi
}

/* ---- the engine (src/engine.c), always called under L ---------------------- */

/* G2 (mt.c: granted(), the engine's grant callback, under L after G1) */
inline g2_tell(f)
{
    assert(alive[f]);                           /* J2 (a): a live frame */
#ifdef WAKE_BEFORE_GRANT
    /* the mutant: fifolock_release() of the hold G1 just counted */
    held[fmode[f]]--;
    total--;
    hold[OWNER(f)]--;
#endif
    if
#ifndef G2_WAITING_ONLY
    :: st[f] == WAITING || st[f] == YIELDING || st[f] == NUDGED ->
#else
    :: st[f] == WAITING ->
#endif
        st[f] = GRANTED                         /* CAS s -> GRANTED, retried while s moves */
    :: else ->
#ifndef G2_WAITING_ONLY
        assert(st[f] == PARKED);                /* J1 */
#endif
        st[f] = WAKING;
        wake[nwake] = f;                        /* push f on lock->wake */
        nwake++
    fi
}

/* grant(): while the head is compatible, G1 count it, then G2 tell it. */
inline grant_loop()
{
    do
    :: qlen > 0 && COMPAT(held, fmode[q[0]]) ->
        gf = q[0];
        assert(eng[gf] == E_QUEUED);            /* FIFO: the head, still queued */
        q[0] = q[1];
        q[1] = q[2];
        q[2] = 0;
        qlen--;
        /* G1 count (engine.c grant()) */
        held[fmode[gf]]++;
        total++;
        eng[gf] = E_GRANTED;
        hold[OWNER(gf)]++;
        assert(SAFE(held));                     /* SAFE: after every grant */
        g2_tell(gf);
        gf = 0
    :: else -> break
    od
}

/* fifolock_acquire(): at once if nobody waits and m is compatible, else
 * queue frame f at the tail. */
inline eng_acquire(f, m, t, rc)
{
    if
#ifndef GRANT_PAST_WAITER
    :: qlen == 0 && COMPAT(held, m) ->
#else
    :: COMPAT(held, m) ->
#endif
        assert(qlen == 0);                      /* FIFO: granted at once only if nobody waits */
        held[m]++;
        total++;
        hold[t]++;
        assert(SAFE(held));                     /* SAFE */
        rc = OK
    :: else ->
        fmode[f] = m;
        eng[f] = E_QUEUED;
        q[qlen] = f;
        qlen++;
        rc = QUEUED
    fi
}

/* fifolock_try_acquire() */
inline eng_try_acquire(m, t, rc)
{
    if
    :: qlen == 0 && COMPAT(held, m) ->
        held[m]++;
        total++;
        hold[t]++;
        assert(SAFE(held));                     /* SAFE */
        rc = OK
    :: else -> rc = EBUSY
    fi
}

/* fifolock_release() */
inline eng_release(m, t, rc)
{
    if
    :: held[m] > 0 ->
        held[m]--;
        total--;
        hold[t]--;
        grant_loop();
        rc = OK
    :: else -> rc = EPERM
    fi
}

/* fifolock_cancel(): EALREADY if f was granted, else unlink it; a new head
 * may be compatible now. */
inline eng_cancel(f, rc)
{
    if
    :: eng[f] == E_GRANTED -> rc = EALREADY
    :: else ->
        assert(eng[f] == E_QUEUED);
        if
        :: q[0] == f -> q[0] = q[1]; q[1] = q[2]; gf = 1        /* was the head */
        :: q[0] != f && q[1] == f -> q[1] = q[2]
        :: else -> assert(qlen == 3 && q[2] == f)
        fi;
        q[2] = 0;
        qlen--;
        eng[f] = E_IDLE;
        fmode[f] = 0;
#ifndef SKIP_GRANT_AFTER_CANCEL
        if
        :: gf == 1 && qlen > 0 -> gf = 0; grant_loop()
        :: else -> skip
        fi;
#endif
        gf = 0;
        rc = OK
    fi
}

/* The head of the queue, plus 1 (0: empty): mt.c's old_head, read under L
 * before the engine call. */
#define HEAD ((qlen > 0) -> q[0] + 1 : 0)

/* N1 nudge (mt.c: nudge_head()), under L right after the engine call that
 * may have changed the head (oh: the head before it): if the new head is
 * PARKED, CAS its s: PARKED -> NUDGED, unless busy (a free choice).
 * Leaves in nf the nudged frame plus 1, whose futex_wake(s) follows, still
 * under L (nudge_wake()). */
inline nudge_head()
{
    if
    :: qlen > 0 && q[0] + 1 != oh && st[q[0]] == PARKED ->
        assert(alive[q[0]] && eng[q[0]] == E_QUEUED);   /* J2 (a): the queued head */
        if
        :: st[q[0]] = NUDGED; nf = q[0] + 1     /* CAS s: PARKED -> NUDGED (J1) */
        :: skip                                 /* busy: no nudge */
        fi
    :: else -> skip
    fi;
    oh = 0
}

/* N1, the futex_wake(s) of the nudged frame, under L (then L3). */
inline nudge_wake()
{
    atomic {
        assert(word == LOCKED || word == LS);   /* N1 wakes under L */
        assert(alive[nf - 1] && eng[nf - 1] == E_QUEUED && q[0] == nf - 1);   /* J2 (a) */
#ifndef NUDGE_NO_WAKE
        futex_wake(FS(nf - 1));
#endif
        nf = 0
    }
}

/* ---- the internal lock L (mt.c: ilock(), ilock_slow(), iunlock()) ------- */

/* L1 take / L2 sleep. Spinning is a delay: a thread may go to L2 whenever it
 * finds L held. */
inline ilock(t)
{
    take = LOCKED;
    do
    :: atomic {                                 /* L1: CAS word: u -> take */
        (word & LOCKED) == 0 ->
        old = word;
        word = take;
        if
        :: WMODE(old) != 0 ->
            /* count the fast path's hold: try_acquire on an idle engine */
            assert((old & IDLE) && qlen == 0 && total == 0);    /* K3 */
            assert(fast_owner != 0);
            held[WMODE(old)]++;
            total++;
            fast_owner = 0
        :: else -> skip
        fi;
        old = 0
       };
       break
    :: atomic {                                 /* L2: CAS word: LOCKED -> LOCKED|SLEEPERS */
        (word & LOCKED) != 0 ->
        assert(word == LOCKED || word == LS);   /* under L the word is bare */
        word = LS
       };
       /* L2: futex_wait(word, LOCKED|SLEEPERS) */
       atomic {
        if
        :: word == LS -> asleep[t] = FW
        :: else -> skip
        fi
       };
       if
       :: asleep[t] == NONE -> skip
#ifdef SPURIOUS
       :: atomic { asleep[t] != NONE -> asleep[t] = NONE }
#endif
       fi;
#ifndef LOST_L_WAKE
       take = LS
#else
       take = LOCKED
#endif
    od;
    take = 0
}

/* L3 drop (mt.c: iunlock()), the exchange: IDLE (K2) if the engine is idle,
 * else 0 (K4). With takewake, G3 first (mt.c: iunlock_and_wake(),
 * take_wake_list()): take lock->wake into lw. Runs at the end of the atomic
 * step that makes the engine call: under L nobody else reads or writes what
 * that step touches (K1), so the call and the exchange commute with every
 * step of the other threads in between. Keeps the old SLEEPERS bit in old. */
inline drop_L(takewake)
{
    assert(word == LOCKED || word == LS);       /* K1: we hold L */
    if
    :: takewake ->                              /* G3 take the wake list */
        lw[0] = wake[0]; lw[1] = wake[1]; lw[2] = wake[2];
        lwn = nwake;
        wake[0] = 0; wake[1] = 0; wake[2] = 0;
        nwake = 0
    :: else -> skip
    fi;
    assert(nwake == 0);                         /* K5: no grant left unwoken */
    old = word & SLEEPERS;
    word = ((qlen == 0 && total == 0) -> IDLE : 0)
}

/* L3, after the exchange: if the old word had SLEEPERS, futex_wake(word, 1). */
inline wake_L()
{
    atomic {
        if
        :: old != 0 -> futex_wake(FW)
        :: else -> skip
        fi;
        old = 0
    }
}

/* G4 wake (mt.c: wake_list()), after L3. */
inline wake_list()
{
    do
    :: i < lwn ->
        atomic {                                /* read f->next; futex_wake(s) */
            assert(alive[lw[i]] && st[lw[i]] == WAKING);        /* J2 (b) */
#ifndef DROP_WAKEUP
            futex_wake(FS(lw[i]))
#else
            skip
#endif
        };
        atomic {                                /* s = GRANTED (release) */
            assert(alive[lw[i]] && st[lw[i]] == WAKING);        /* J2 (b), J1 */
            st[lw[i]] = GRANTED;
#ifndef READ_NEXT_LATE
            lw[i] = 0;
            i++
#endif
        };
#ifdef READ_NEXT_LATE
        atomic {                                /* the mutant: f->next read now */
            assert(alive[lw[i]]);               /* J2 */
            lw[i] = 0;
            i++
        };
#endif
    :: else -> break
    od;
    i = 0;
    lwn = 0
}

/* The thread's side of a grant, in its own atomic steps. */

/* Enter the critical section with a hold of m: the return of 0. */
inline enter_cs()
{
    cs[m]++;
    assert(SAFE(cs));                           /* SAFE: the critical section */
    assert(hold[t] == 1)                        /* ONCE: returned 0, holds one */
}

/* Leave the frame of a granted wait (return 0 from wait_granted()). */
inline leave_granted()
{
    assert(st[f] == GRANTED);                   /* J3: leave only once GRANTED */
    alive[f] = 0;
    st[f] = 0;
    eng[f] = E_IDLE;
    fmode[f] = 0
}

/* A5 look, right as futex_wait returns: GRANTED -> return 0, WAKING -> A6,
 * NUDGED -> N2; PARKED falls through. */
inline look()
{
    if
    :: st[f] == GRANTED -> tmo = 0; goto told
    :: st[f] == NUDGED -> tmo = 0; goto n2_rise
    :: st[f] == WAKING ->
        tmo = 0;
#ifndef NO_LINGER
        goto a6_linger
#else
        goto told
#endif
    :: else -> assert(st[f] == PARKED)
    fi
}

/* ---- one thread -------------------------------------------------------------- */

proctype thread(byte t)
{
    byte r;                     /* round */
    byte m;                     /* this round's mode */
    bool timed;                 /* fifolock_mt_timed_acquire() rather than _acquire() */
    byte c;                     /* the request chosen for this round */
    byte f;                     /* this round's frame */
    byte rc;
    byte old;                   /* a word read by L1, or the SLEEPERS bit L3 saw */
    byte take;                  /* the value L1 stores */
    bool tmo;                   /* futex_wait returned ETIMEDOUT */
    byte exp;                   /* the state A3's CAS expects: WAITING or YIELDING */
    byte lw[NT];                /* the wake list taken at G3 */
    byte lwn;
    byte i;
    byte oh;                    /* N1: the head before the engine call, plus 1 */
    byte nf;                    /* N1: the nudged frame, plus 1 */

    do
    :: !MORE_ROUNDS -> break
    :: else ->
        /* fifolock_mt_acquire() or _timed_acquire(): F1 (fast_acquire()),
         * if M accepts no holders (every modelled mode does), CAS word:
         * IDLE -> M|IDLE */
        atomic {
            f = t * ROUNDS + r;
            /* this round's request: c = 2 * (m - MODE_LO) + timed */
            if
            :: r == 0 && first[t] != 0 -> c = first[t] - 1; first[t] = 0
            :: else -> select(c : 0 .. 2 * NMODES - 1)
            fi;
            m = MODE_LO + c / 2;
#ifdef TIMED_THREADS
            timed = (TIMED_THREADS >> t) & 1;
#else
            timed = c % 2;
#endif
            c = 0;
            if
#ifndef FAST_PAST_WAITER
            :: word == IDLE ->
#else
            :: word == IDLE || word == 0 ->
#endif
                word = m * 8 | IDLE;
                assert(qlen == 0);              /* FIFO: nobody waits */
                assert(total == 0);             /* K2: the engine is idle */
                fast_owner = t + 1;
                hold[t]++;
                enter_cs();
                goto holding
            :: else -> skip
            fi
        };

        /* acquire_slow(): A1 enqueue under L: s = WAITING, fifolock_acquire() */
        ilock(t);
        atomic {
            alive[f] = 1;
            st[f] = WAITING;
            eng_acquire(f, m, t, rc);
            drop_L(0)                           /* L3 */
        };
        wake_L();
        if
        :: rc == OK ->                          /* granted at once */
            atomic { alive[f] = 0; rc = 0; enter_cs() };
            goto holding
        :: else -> rc = 0
        fi;

        /* wait_granted(): A2 spin (only the head spins), polling s a bounded
         * number of times, then CAS s: WAITING -> YIELDING and yield a
         * bounded number of times, polling s (none of either with zero
         * tuning); the deadline may pass at any poll. A poll that sees
         * GRANTED returns as the failing CAS after it does. */
a2_spin:
        exp = WAITING;
        if
        :: timed -> goto t1_cancel              /* A2: deadline_passed() while spinning */
        :: skip                                 /* no yields: on to A3 */
#ifndef NO_YIELD
        :: atomic {                             /* A2: CAS s: WAITING -> YIELDING */
            true ->
            if
            :: st[f] == WAITING -> st[f] = YIELDING; exp = YIELDING     /* J1 */
            :: else -> assert(st[f] == GRANTED); goto told      /* J1: only G2 moved s */
            fi
           };
           if
           :: timed -> goto t1_cancel           /* A2: deadline_passed() while yielding */
           :: skip
           fi
#endif
        fi;

        /* A3 park: CAS s: YIELDING (or WAITING) -> PARKED */
        atomic {
            if
            :: st[f] == exp -> st[f] = PARKED; exp = 0          /* J1 */
            :: else -> assert(st[f] == GRANTED); exp = 0; goto told        /* J1: only G2 moved s */
            fi
        };

a4_sleep: /* A4 sleep: futex_wait(s, PARKED, deadline): joins the kernel's
         * wait queue only if s is still PARKED */
        atomic {
            if
            :: st[f] == PARKED -> asleep[t] = FS(f)
            :: else -> skip
            fi
        };
        /* futex_wait returns: woken (or s had moved), at the deadline, or
         * (SPURIOUS) for no reason; then A5 look */
        if
        :: atomic { asleep[t] == NONE -> look() }
        :: atomic { timed && asleep[t] != NONE -> asleep[t] = NONE; tmo = 1; look() }
#ifdef SPURIOUS
        :: atomic { asleep[t] != NONE -> asleep[t] = NONE; look() }
#endif
        fi;
        /* A5, s == PARKED: ETIMEDOUT or the deadline passed -> T1, else A4 */
        if
        :: tmo || timed -> tmo = 0; goto t1_cancel
        :: !tmo -> goto a4_sleep
        fi;

n2_rise: /* N2 rise: CAS s: NUDGED -> WAITING, then A2 again as the head */
        atomic {
            if
            :: st[f] == NUDGED -> st[f] = WAITING       /* J1 */
            :: else -> assert(st[f] == GRANTED); goto told     /* J1: only G2 moved s */
            fi
        };
        goto a2_spin;

t1_cancel: /* T1 cancel (timed_out()): take L, fifolock_cancel() (which may
         * grant: G1, G2), N1, G3, L3 */
        ilock(t);
        atomic {
            oh = HEAD;
            eng_cancel(f, rc);
            if
            :: rc == EALREADY -> assert(st[f] == GRANTED || st[f] == WAKING)
            :: else -> skip
            fi;
            nudge_head();
            if
            :: nf == 0 -> drop_L(1)
            :: else -> skip
            fi
        };
        if
        :: nf != 0 -> nudge_wake(); atomic { drop_L(1) }
        :: else -> skip
        fi;
        wake_L();
        wake_list();                            /* G4 for whoever the cancel let through */
#ifdef CANCEL_IGNORES_GRANT
        rc = OK;
#endif
        if
        :: rc == OK ->                          /* return ETIMEDOUT */
            atomic {
                assert(hold[t] == 0);           /* ONCE: holds nothing */
                assert(eng[f] == E_IDLE);       /* ONCE: not queued */
                assert(st[f] != WAKING);        /* J3: no granter still on the frame */
                alive[f] = 0;
                st[f] = 0;
                eng[f] = E_IDLE;
                fmode[f] = 0
            };
            goto next_round
        :: else -> rc = 0                       /* EALREADY: A6, return 0 */
        fi;

a6_linger: /* A6 linger (linger()): poll s until GRANTED */
        st[f] == GRANTED;

told:   /* return 0 from wait_granted() */
#ifdef WAKE_BEFORE_GRANT
        /* the mutant's told(): count our own hold now, if we still can */
        ilock(t);
        atomic { eng_try_acquire(m, t, rc); rc = 0; drop_L(0) };
        wake_L();
#endif
        atomic { leave_granted(); enter_cs() };

holding: /* the critical section, then fifolock_mt_release(): F2, CAS word:
         * M|IDLE -> IDLE */
        atomic {
            cs[m]--;
            if
            :: word == (m * 8 | IDLE) ->
                assert(fast_owner == t + 1);    /* ONCE: the fast path's hold is ours */
                assert(qlen == 0 && total == 0);        /* K2 after */
                word = IDLE;
                fast_owner = 0;
                hold[t]--;
                goto next_round
            :: else -> skip
            fi
        };
        /* the slow release: under L, fifolock_release() (G1, G2 inside), N1,
         * G3, L3 */
        ilock(t);
        atomic {
            oh = HEAD;
            eng_release(m, t, rc);
            assert(rc == OK);
            rc = 0;
            nudge_head();
            if
            :: nf == 0 -> drop_L(1)
            :: else -> skip
            fi
        };
        if
        :: nf != 0 -> nudge_wake(); atomic { drop_L(1) }
        :: else -> skip
        fi;
        wake_L();
        wake_list();                            /* G4; then G5's sched_yield() */

next_round:
        NEXT_ROUND
    od;
    ndone++
}

/* K1-K5, I3 and the accounting, checked in every state. */
#define K_OK \
    (((word & LOCKED) == 0 || word == LOCKED || word == LS) && \
     ((word & LOCKED) != 0 || word == 0 || word == IDLE || \
      ((word & IDLE) != 0 && (word & SLEEPERS) == 0 && WMODE(word) != 0)) && \
     ((word & IDLE) == 0 || (qlen == 0 && total == 0)) && \
     ((word & LOCKED) != 0 || nwake == 0) && \
     ((fast_owner != 0) == ((word & LOCKED) == 0 && WMODE(word) != 0)))
#define I3_OK ((word & LOCKED) != 0 || qlen == 0 || !COMPAT(held, fmode[q[0]]))
#define ONCE_OK (hold[0] + hold[1] + hold[2] == total + (WMODE(word) != 0))

active proctype watch()
{
end:
    atomic {
        !(K_OK && I3_OK && ONCE_OK && SAFE(held) && SAFE(cs)) ->
        assert(K_OK);                           /* K1-K5 */
        assert(I3_OK);                          /* I3: no grant left undone */
        assert(ONCE_OK);                        /* ONCE: every hold has one owner */
        assert(SAFE(held) && SAFE(cs))          /* SAFE */
    }
}

init
{
    byte c0, c1, c2;

    atomic {
#if !defined(TIMED_THREADS) && !defined(NO_SYMMETRY)
        /* Symmetry reduction: the threads run the same code and every check
         * treats them alike, so a run whose first requests are (c0, c1, c2)
         * is a run with sorted first requests, thread ids renamed. */
        select(c0 : 1 .. 2 * NMODES);
        select(c1 : c0 .. 2 * NMODES);
        select(c2 : c1 .. 2 * NMODES);
        first[0] = c0;
        first[1] = c1;
        first[2] = c2;
        c0 = 0;
        c1 = 0;
        c2 = 0;
#endif
        run thread(0);
        run thread(1);
        run thread(2)
    };
    ndone == NT;
    /* ONCE: at the end nothing is held, queued, asleep or left to wake */
    assert(total == 0 && held[MUTEX] == 0 && held[READ] == 0 && held[WRITE] == 0);
    assert(qlen == 0 && nwake == 0 && word == IDLE);
    assert(asleep[0] == NONE && asleep[1] == NONE && asleep[2] == NONE);
    assert(hold[0] == 0 && hold[1] == 0 && hold[2] == 0 && fast_owner == 0)
}

/* Liveness, with ./pan -a -f (weak fairness). */
#ifndef FOREVER
/* Every run finishes every round: no thread waits for ever. */
ltl done { <> (ndone == NT) }
#else
/* A request whose turn has come is eventually returned: once the engine
 * granted thread 0's frame (G1), thread 0 leaves it, however the other
 * threads go on. Thread 0 must not be timed (TIMED_THREADS=6): T1 takes L,
 * and L, like any futex lock, promises no fairness. */
#define GRANTED0 (eng[0] == E_GRANTED || eng[1] == E_GRANTED)
ltl woken { [] (GRANTED0 -> <> !GRANTED0) }
#endif
