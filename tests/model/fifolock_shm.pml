/*
 * A model of the shared-memory front end's protocol (src/shm.c), checked
 * with spin, in which a process may die between any two steps.
 *
 * NP processes each make ROUNDS requests (read or write, chosen per round)
 * and release what they got. A killer process may kill up to DEATHS of them
 * at any moment: a dead process stops at once, in the middle of any step
 * sequence, with whatever it held (the internal lock L, the fast word, queue
 * entries, a half-done update). The steps keep src/shm.c's names: the
 * internal lock (L1-L4), the fast path (F1, F2), waiting (A1-A6), granting
 * (G1), releasing (R1, R2), deaths (D1, D2), declaring the data repaired
 * (C1) and Repair. Reads are the read-only mode: a dead reader is never
 * reported. A writer told of a death repairs (C1) inside its critical
 * section; a reader told of one cannot.
 *
 * With CONVERT, process 0 converts each read it holds to write without
 * letting go (X0-X3): the conversion is an entry of write naming the entry
 * F that holds the read; G1 puts it after the holders, ahead of every
 * waiter (X2), and when write may join the holders but F, removes F (X1,
 * one store) and then, a step later, grants the conversion; Repair finishes
 * a grant whose X1 was done.
 *
 * Each step is one store, CAS or futex call of the C code, or, under L, a
 * group of stores that no other process reads before L is dropped, unless a
 * death between them matters: those are separate steps (publishing an
 * entry: its fields, then its seq; absorbing the fast word: the entry, the
 * CAS, the mark cleared; granting: the CAS, then the wake). Repair runs in
 * one step (a process that dies repairing leaves L to the next, which
 * repairs again from the start). The futex: a waiter sleeps only while its
 * state reads PARKED and it has not been woken; G1's wake ends the sleep;
 * the tick (A4's timeout) may end it at any time when TICK is defined.
 *
 * Checked:
 *   SAFE   a living process inside its critical section is compatible with
 *          every other living one inside (read shares, write excludes).
 *   FIFO   after every G1, the granted entries are a prefix of the queue in
 *          seq order (S1), and an entry is granted only when all older ones
 *          are; with CONVERT, no request is granted while a conversion
 *          waits (it is ahead of them all: the ghost `cw`).
 *   TOLD   every grant made while a writer that died inside its critical
 *          section is unrepaired carries that death in its report (the
 *          ghost `dirty` holds those writers until C1), and a report names
 *          only dead processes.
 *   Living processes never wait for ever: with TICK, the LTL formula
 *          `done` (every process finished or dead) under weak fairness; and
 *          without deaths and without ticks, no lost wakeup: the only valid
 *          end state is every process done.
 *
 * Not modelled: timeouts (T1: a withdrawal is a release of a request that
 * was never granted, and A1's try path the same; a withdrawn conversion
 * leaves its F as it was), a second conversion (X0 refuses it under L
 * before it is ever asked), weighted requests, modes
 * unknown to a process (G2), more than the read/write pair of modes, and the
 * mode table and handle registration done at open. The C tests force a
 * death at each of the updates modelled here (src/shm_internal.h's crash
 * points) and the torture test kills processes at random.
 *
 * Configurations (spin -D...): DEATHS=n (default 1), TICK (waits end at the
 * tick too), ROUNDS=n (default 1), NP=n (default 3), NO_FAST (no fast path),
 * CONVERT (process 0 converts each read it holds to write).
 *
 * Deliberate bugs (tests/model/run_spin_shm.sh: spin must find each one):
 *   NO_REAP            D1 never finds a dead process: its holds stay.
 *   DROP_WAKE          G1 grants a parked waiter without waking it.
 *   GRANT_PAST_WAITER  G1 grants a compatible entry behind a waiting one.
 *   IDLE_WITH_QUEUE    L3 stores IDLE even while entries are queued.
 *   REPAIR_DROPS_FAST  Repair removes every entry marked FROM_FAST, even
 *                      when its CAS was done.
 *   REPORT_ONCE        G1 clears the pending report once given (the old rule:
 *                      readers granted with or after the first were not told).
 *   READER_REPAIRS     a reader told of a death declares it repaired (C1).
 *   CONV_BY_SEQ        (CONVERT) G1 places the conversion by its seq among
 *                      the waiters, not ahead of them.
 *   CONV_LETS_PAST     (CONVERT) a waiting conversion does not hold back
 *                      the requests behind it.
 *   REPAIR_SKIPS_SWITCH (CONVERT) Repair leaves a conversion whose X1 was
 *                      done ungranted: its converter waits for ever.
 */

#ifndef NP
#define NP 3
#endif
#ifndef ROUNDS
#define ROUNDS 1
#endif
#ifndef DEATHS
#define DEATHS 1
#endif

#ifdef CONVERT
#define CAP (NP + 1)    /* entries: one per process, and process 0's conversion */
#else
#define CAP NP          /* entries: one per process at most */
#endif
#define NONE 255
#define READ 0
#define WRITE 1

/* fast word */
#define F_BUSY 0
#define F_IDLE 1
#define FASTW(p, m) (2 + (p) * 2 + (m))
#define FAST_OWNER(w) (((w) - 2) / 2)
#define FAST_MODE(w) (((w) - 2) % 2)

/* entry states */
#define FREE 0
#define WAITING 1
#define PARKED 2
#define GRANTED 3
#define HELD 4

byte L = NONE;          /* owner of the internal lock */
bool L_died;            /* the robust mutex's EOWNERDEAD */
byte fast = F_IDLE;

byte seq[CAP];          /* 0: free */
byte owner[CAP];
byte emode[CAP];
byte st[CAP];
byte fromfast[CAP];     /* 0, or the fast word being absorbed */
byte erep[CAP];         /* the death report carried by a grant: a bit per pid */
byte conv[CAP];         /* a conversion: 1 + the index of its F, else 0 */
byte cfseq[CAP];        /* a conversion: its F's seq */
byte cw = NONE;         /* ghost: the waiting conversion's entry */
byte next_seq = 1;
byte count;             /* entries in use (recounted by Repair) */
byte pend;              /* the pending report: a bit per dead holder */
byte dirty;             /* ghost: writers that died inside, not yet repaired */

bool alive[NP];
bool woken[NP];         /* the futex: set by a wake or the tick */
bool kill_req[NP];
byte deaths;
byte incs[NP];          /* 0, or mode + 1 while inside the critical section */
byte reported[NP];      /* grants told of p's death */
bool held_at_death[NP]; /* p died holding (HELD entry or fast word) */
byte finished;
bool fin[NP];          /* p finished: no more kills */

/* ---- helpers (run inside atomic steps) ----------------------------------- */

/* SAFE: p, entering in mode m, meets no living conflicting process. */
inline check_safe(p, m) {
    k = 0;
    do
    :: k < NP ->
        if
        :: k != p && alive[k] && incs[k] != 0 ->
            assert(m == READ && incs[k] == READ + 1)
        :: else -> skip
        fi;
        k++
    :: else -> break
    od
}

/* The entry with the smallest seq above `after` (NONE if none) into `e`. */
inline next_entry(after, e) {
    e = NONE; k2 = 0;
    do
    :: k2 < CAP ->
        if
        :: seq[k2] != 0 && seq[k2] > after && (e == NONE || seq[k2] < seq[e]) -> e = k2
        :: else -> skip
        fi;
        k2++
    :: else -> break
    od
}

/* D1: entries of dead processes leave; their holds go to the report. */
inline reap() {
    k = 0;
    do
    :: k < CAP ->
        if
#ifndef NO_REAP
        :: seq[k] != 0 && !alive[owner[k]] ->
            if
            :: st[k] == HELD && emode[k] == WRITE -> pend = pend | (1 << owner[k])
            :: else -> skip /* a reader changed nothing; a dead waiter is silent */
            fi;
            erep[k] = 0;
            if :: k == cw -> cw = NONE :: else -> skip fi;
            seq[k] = 0; st[k] = FREE; count--
#endif
        :: else -> skip
        fi;
        k++
    :: else -> break
    od
}

/* G1's grant of entry x: the report if one pends, the CAS, the wake. */
inline grant_e(x) {
    assert((pend & dirty) == dirty); /* TOLD */
    if
    :: pend != 0 -> erep[x] = pend
#ifdef REPORT_ONCE
        ; pend = 0
#endif
    :: else -> skip
    fi;
    if
    :: st[x] == PARKED -> st[x] = GRANTED;
#ifndef DROP_WAKE
        woken[owner[x]] = true
#else
        skip
#endif
    :: else -> st[x] = GRANTED
    fi
}

/* Repair (after EOWNERDEAD): the half-done updates of a dead L holder. */
inline repair() {
    count = 0; k = 0;
    do
    :: k < CAP ->
        if
        :: seq[k] != 0 && fromfast[k] != 0 ->
#ifdef REPAIR_DROPS_FAST
            seq[k] = 0; st[k] = FREE; fromfast[k] = 0
#else
            if
            :: fast == fromfast[k] -> fast = F_BUSY; fromfast[k] = 0
            :: fast == F_BUSY -> fromfast[k] = 0
            :: else -> seq[k] = 0; st[k] = FREE; fromfast[k] = 0
            fi
#endif
        :: else -> skip
        fi;
        if
        :: seq[k] != 0 -> count++
        :: else -> skip
        fi;
        k++
    :: else -> break
    od;
#ifndef REPAIR_SKIPS_SWITCH
    /* A death between X1 and the CAS: the switch is made, finish the grant. */
    k = 0;
    do
    :: k < CAP ->
        if
        :: seq[k] != 0 && conv[k] != 0 && (st[k] == WAITING || st[k] == PARKED) &&
           seq[conv[k] - 1] != cfseq[k] -> grant_e(k)
        :: else -> skip
        fi;
        k++
    :: else -> break
    od;
#endif
    L_died = false
}

/* ---- the process ----------------------------------------------------------- */

/* L1 (+ Repair) as one step, then L2 (absorb) step by step. */
inline take_L() {
    atomic { L == NONE -> L = p; if :: L_died -> repair() :: else -> skip fi };
    /* L2 */
    do
    :: atomic { fast == F_BUSY -> break }
    :: atomic { fast == F_IDLE -> fast = F_BUSY; break }
    :: atomic { fast >= 2 -> w = fast;
                 k = 0;
                 do
                 :: k < CAP && seq[k] != 0 -> k++
                 :: else -> break
                 od;
                 assert(k < CAP); /* S2: the queue was empty */
                 owner[k] = FAST_OWNER(w); emode[k] = FAST_MODE(w); st[k] = HELD;
                 fromfast[k] = w; erep[k] = 0; conv[k] = 0; seq[k] = next_seq; next_seq++; count++ };
        if
        :: atomic { fast == w -> fast = F_BUSY; ok = true }
        :: atomic { else -> ok = false }
        fi;
        if
        :: ok -> fromfast[k] = 0; break
        :: else -> seq[k] = 0; st[k] = FREE; fromfast[k] = 0; count--
        fi
    od
}

/* L3 + L4 (the wakes are done in G1 here, a step after their CAS). */
inline drop_L() {
#ifdef IDLE_WITH_QUEUE
    atomic { if :: pend == 0 -> fast = F_IDLE :: else -> skip fi };
#else
    atomic { if :: count == 0 && pend == 0 -> fast = F_IDLE :: else -> skip fi };
#endif
    L = NONE
}

/*
 * G1: grant the prefix the rule allows; check FIFO. The queue: the holders,
 * then the waiting conversion (X2), then the waiters in seq order. X1 and
 * the conversion's CAS are two steps; the waiters' grants a third.
 */
inline settle() {
    atomic {
        last = 0; nr = 0; nw = 0; stop = false; cv = NONE; go = false;
        do
        :: true ->
            next_entry(last, e2);
            if
            :: e2 == NONE -> break
            :: else -> skip
            fi;
            last = seq[e2];
            if
            :: st[e2] == GRANTED || st[e2] == HELD ->
                /* a conversion holds from a later seq than the waiters */
                assert(!stop || conv[e2] != 0); /* FIFO: a holder behind a waiter */
                if :: emode[e2] == READ -> nr++ :: else -> nw++ fi
#ifndef CONV_BY_SEQ
            :: conv[e2] != 0 -> cv = e2
#endif
            :: else -> stop = true
            fi
        od;
        stop = false;
        if
        :: cv != NONE ->
            fe = conv[cv] - 1;
            if
            :: seq[fe] == cfseq[cv] && st[fe] == HELD && nw == 0 && nr == 1 ->
                /* X1: write may join the holders but F's read */
                seq[fe] = 0; st[fe] = FREE; count--; nr--; go = true
            :: else ->
#ifndef CONV_LETS_PAST
                stop = true /* it waits; nothing behind it is granted */
#else
                skip
#endif
            fi
        :: else -> skip
        fi
    };
    if
    :: go -> atomic { grant_e(cv); nw++ }
    :: else -> skip
    fi;
    atomic {
        last = 0;
        do
        :: true ->
            next_entry(last, e2);
            if
            :: e2 == NONE -> break
            :: else -> skip
            fi;
            last = seq[e2];
            if
            :: st[e2] == GRANTED || st[e2] == HELD -> skip
#ifdef CONV_BY_SEQ
            :: conv[e2] != 0 ->
                fe = conv[e2] - 1;
                if
                :: !stop && seq[fe] == cfseq[e2] && st[fe] == HELD && nw == 0 && nr == 1 ->
                    seq[fe] = 0; st[fe] = FREE; count--; nr--; grant_e(e2); nw++
                :: else -> stop = true
                fi
#endif
            :: else ->
                if
                :: !stop && ((emode[e2] == READ && nw == 0) ||
                             (emode[e2] == WRITE && nr == 0 && nw == 0)) ->
                    assert(cw == NONE || st[cw] == GRANTED || st[cw] == HELD); /* FIFO: the conversion first */
                    grant_e(e2);
                    if :: emode[e2] == READ -> nr++ :: else -> nw++ fi
#ifdef GRANT_PAST_WAITER
                :: stop && emode[e2] == READ && nw == 0 -> st[e2] = GRANTED; nr++
#endif
                :: else -> stop = true
                fi
            fi
        od
    }
}

/* A5's take: a granted entry becomes HELD, its report is counted. */
inline take_grant() {
    atomic {
        st[e] = HELD;
        k = 0;
        do
        :: k < NP ->
            if
            :: erep[e] & (1 << k) -> reported[k]++; assert(!alive[k]); told = true
            :: else -> skip
            fi;
            k++
        :: else -> break
        od;
        erep[e] = 0
    }
}

/* A2-A6: waits until entry e is granted, and takes it. */
inline wait_grant() {
    do
    :: st[e] == GRANTED -> take_grant(); break
    :: st[e] == WAITING || st[e] == PARKED ->
        /* A3 */
        atomic { if :: st[e] == WAITING -> st[e] = PARKED; woken[p] = false :: else -> skip fi };
        /* A4: futex_wait(state, PARKED) sleeps only if it still reads PARKED */
        atomic { if :: st[e] == PARKED -> asleep = true :: else -> asleep = false fi };
        if
        :: asleep ->
            if
            :: atomic { woken[p] -> woken[p] = false; asleep = false }
#ifdef TICK
            :: atomic { true -> asleep = false };
                /* A6: the tick */
                take_L();
                reap();
                settle();
                drop_L()
#endif
            fi
        :: else -> skip
        fi
    od
}

/* C1: a writer told of a death repairs and says so, under L. */
inline repair_if_told() {
#ifdef READER_REPAIRS
    if
    :: told ->
#else
    if
    :: told && m == WRITE ->
#endif
        take_L();
        atomic { pend = 0; if :: m == WRITE -> dirty = 0 :: else -> skip fi };
        drop_L()
    :: else -> skip
    fi
}

proctype proc(byte p) {
    byte m, e, e2, k, k2, w, last, nr, nw, rounds, cv, fe;
    bool ok, stop, viafast, asleep, told, go;

    {
    do
    :: rounds < ROUNDS ->
        if :: m = READ :: m = WRITE fi;
        viafast = false; told = false;
        /* F1 */
#ifndef NO_FAST
        if
        :: atomic { fast == F_IDLE -> fast = FASTW(p, m); viafast = true }
        :: true -> skip
        fi;
#endif
        if
        :: viafast -> goto inside
        :: else -> skip
        fi;
        /* A1 */
        take_L();
        atomic {
            e = 0;
            do
            :: e < CAP && seq[e] != 0 -> e++
            :: else -> break
            od;
            assert(e < CAP);
            owner[e] = p; emode[e] = m; st[e] = WAITING; fromfast[e] = 0; erep[e] = 0;
            conv[e] = 0
        };
        atomic { seq[e] = next_seq; next_seq++ };
        count++;
        settle();
        if
        :: st[e] == GRANTED -> drop_L(); take_grant(); goto inside
        :: else -> drop_L()
        fi;
        /* A2-A6 */
        wait_grant();
inside:
        atomic { incs[p] = m + 1; check_safe(p, m) };
        repair_if_told();
#ifdef CONVERT
        /* X0: process 0 converts its read to write, keeping the read meanwhile */
        if
        :: p == 0 && m == READ ->
            take_L();
            atomic {
                fe = 0;
                do
                :: fe < CAP && !(seq[fe] != 0 && owner[fe] == p && emode[fe] == READ && st[fe] == HELD) -> fe++
                :: else -> break
                od;
                assert(fe < CAP); /* F: the hold (L2 made a fast one an entry) */
                e = 0;
                do
                :: e < CAP && seq[e] != 0 -> e++
                :: else -> break
                od;
                assert(e < CAP);
                owner[e] = p; emode[e] = WRITE; st[e] = WAITING; fromfast[e] = 0; erep[e] = 0;
                conv[e] = fe + 1; cfseq[e] = seq[fe]
            };
            atomic { seq[e] = next_seq; next_seq++; cw = e };
            count++;
            settle();
            if
            :: st[e] == GRANTED -> drop_L(); take_grant()
            :: else -> drop_L(); wait_grant()
            fi;
            atomic { cw = NONE; m = WRITE; incs[p] = m + 1; check_safe(p, m) };
            repair_if_told()
        :: else -> skip
        fi;
#endif
        incs[p] = 0;
        /* F2, else R1-R2 */
        if
        :: atomic { fast == FASTW(p, m) -> fast = F_IDLE; ok = true }
        :: atomic { else -> ok = false }
        fi;
        if
        :: ok -> skip
        :: else ->
            take_L();
            atomic {
                e = 0;
                do
                :: e < CAP && !(seq[e] != 0 && owner[e] == p && emode[e] == m && st[e] == HELD) -> e++
                :: else -> break
                od;
                assert(e < CAP); /* the hold is there */
                seq[e] = 0; st[e] = FREE; count--
            };
            settle();
            drop_L()
        fi;
        rounds++
    :: else -> break
    od;
    atomic { finished++; fin[p] = true }
    } unless {
        atomic {
            kill_req[p] ->
            /* the kernel: robust mutex, byte lock, memory */
            alive[p] = false;
            if :: L == p -> L = NONE; L_died = true :: else -> skip fi;
            held_at_death[p] = (incs[p] != 0);
            if :: incs[p] == WRITE + 1 -> dirty = dirty | (1 << p) :: else -> skip fi;
            incs[p] = 0
        }
    }
}

/* Kills up to DEATHS processes, each at any moment before it finished. */
#define KILL(q) atomic { deaths < DEATHS && alive[q] && !kill_req[q] && !fin[q] -> kill_req[q] = true; deaths++ }
active proctype killer() {
end:
    do
    :: KILL(0)
    :: KILL(1)
#if NP > 2
    :: KILL(2)
#endif
    od
}

init {
    byte i;
    atomic {
        i = 0;
        do
        :: i < NP -> alive[i] = true; i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < NP -> run proc(i); i++
        :: else -> break
        od
    }
}

#define done (finished + deaths == NP)
ltl live { <> done }
