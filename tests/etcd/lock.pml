/*
 * A Promela model of the etcd lock's protocol (src/etcd/lock.c), checked
 * with spin by tests/etcd/run_spin.sh.
 *
 * The store is etcd: entries in revision order (slot k = the k-th join),
 * each existing or deleted, with an immutable mode and a "granted" mark.
 * Every store operation is atomic (etcd's transactions are); everything a
 * client decides, it decides from its own snapshot of the queue, taken by
 * J (the join and its read), by W2's re-read, and kept exact in W1 by
 * applying deletions, while the others go on: that is the point.
 *
 * Three clients, one request each (and a spare slot). A mortal client may
 * die while it waits (its lease expires: its entry is deleted and it stops)
 * or withdraw (a deadline, X); a patient one whose lease ran out while it
 * waited may instead join again (J2): a new entry at the tail, while its
 * old one goes with the old lease, at once or at any later moment (a
 * process expire). A holder's death is its release, seen from the store. Some
 * clients keep the lock for ever once granted (a valid end): a waiter that
 * could be granted and is not woken then blocks for ever, and spin reports
 * the invalid end state.
 *
 * Checked:
 *   safety  (assert) the clients in their critical sections fit together
 *           (exclusion), and a client that holds is, at every moment it
 *           holds, in the granted prefix of the queue as it is (E3, FIFO);
 *   liveness (invalid end states) nobody waits for ever for a change that
 *           already happened (E4).
 *
 * Modes: R (read), W (write), S (a semaphore of 2, alone with itself).
 * Configurations (-D): CONF_A: W0, then readers R1 R2 that keep the lock;
 * CONF_B: S0 that releases, S1 S2 that keep; CONF_C: R0 W1 R2, all mortal;
 * CONF_D: W0 R1 W2, all mortal, withdrawing.
 * Deliberate bugs (-D, each must be found): NO_MARK (no step M), PRED_ONLY
 * (the head waiter watches only the entry ahead, as etcd's Mutex),
 * SKIP_WAITING (decide past a waiting entry: not FIFO), STALE_GRANT (W2
 * grants on P's mark without reading the queue again), HOLD_LOST_LEASE (a
 * request decided held under a lease lost since is taken for a hold).
 */
#define N 4              /* slots: one per client, and one for a J2 */
#define R 1
#define W 2
#define S 3

byte next_slot;         /* etcd's revision: the slot of the next join */
bool exists[N];
byte emode[N];
bool marked[N];
byte in_cs[4];          /* clients inside their critical section, per mode */

/* May one more holder of mode m join holders r, w, s (counts of R, W, S)? */
#define FITS(m, r, w, s) \
    ((m == R && w == 0 && s == 0) || (m == W && r + w + s == 0) || \
     (m == S && r == 0 && w == 0 && s < 2))

/* The holders in the critical sections fit together. */
#define EXCLUSION \
    ((in_cs[W] == 0 || in_cs[R] + in_cs[S] == 0) && in_cs[W] <= 1 && \
     (in_cs[S] == 0 || in_cs[R] == 0) && in_cs[S] <= 2)

/*
 * D over a set of entries (bits of `set` below slot `me`), oldest first:
 * `held` (me included), `ahead` (every entry ahead holds). The engine's rule.
 */
inline decide(set, me, mymode, held, ahead)
{
    r = 0; w = 0; s = 0; k = 0; ahead = true;
    do
    :: k < me ->
        if
        :: (set >> k) & 1 ->
            if
#ifdef SKIP_WAITING
            :: FITS(emode[k], r, w, s) ->
#else
            :: ahead && FITS(emode[k], r, w, s) ->
#endif
                if
                :: emode[k] == R -> r++
                :: emode[k] == W -> w++
                :: emode[k] == S -> s++
                fi
            :: else -> ahead = false
            fi
        :: else
        fi;
        k++
    :: else -> break
    od;
#ifdef SKIP_WAITING
    held = FITS(mymode, r, w, s)
#else
    held = ahead && FITS(mymode, r, w, s)
#endif
}

/* The existing slots, as a bit set. */
#define CUR ((exists[0] -> 1 : 0) + (exists[1] -> 2 : 0) + (exists[2] -> 4 : 0) + \
             (exists[3] -> 8 : 0))
#define ALL 15

/* The queue as it is now, as a bit set of existing slots. */
inline snapshot(set)
{
    set = CUR
}

/* E3: the holder `me` is in the granted prefix of the queue as it is now (the true rule). */
inline assert_in_prefix(me, mymode)
{
    snapshot(now);
    r = 0; w = 0; s = 0; k = 0; check = true;
    do
    :: k < me ->
        if
        :: (now >> k) & 1 ->
            if
            :: check && FITS(emode[k], r, w, s) ->
                if
                :: emode[k] == R -> r++
                :: emode[k] == W -> w++
                :: emode[k] == S -> s++
                fi
            :: else -> check = false
            fi
        :: else
        fi;
        k++
    :: else -> break
    od;
    assert(check && FITS(mymode, r, w, s))
}

/* The last slot of `set` below `me` (the entry just ahead), or N. */
inline predecessor(set, me, p)
{
    p = N; k = 0;
    do
    :: k < me -> if :: (set >> k) & 1 -> p = k :: else fi; k++
    :: else -> break
    od
}

/* The lease of an entry that J2 left behind runs out: its entry goes. */
proctype expire(byte slot)
{
    exists[slot] = false
}

/* order: the join's place (to set up a scene), or 255 for any. */
proctype client(byte mymode; bool keep; bool mortal; bool patient; byte order)
{
    byte me, seen, now, p, r, w, s, k, old;
    bool held, ahead, check, waited = false;

    /* J: join and read, in one transaction */
    atomic {
        (order == 255 || next_slot == order) ->
        me = next_slot; next_slot++;
        exists[me] = true; emode[me] = mymode;
        snapshot(seen)
    };
wait:
    do
    :: decide(seen, me, mymode, held, ahead);
       if
       :: held -> break
       :: else
       fi;
       waited = true;
       if
       :: ahead ->
#ifdef PRED_ONLY
          predecessor(seen, me, p);
          if
          :: mortal && !patient -> exists[me] = false; goto end  /* X */
          :: mortal -> goto lost                                  /* death */
          :: atomic { !exists[p] -> snapshot(seen) }
          fi
#else
          /* W1: every deletion ahead, applied to the list */
          if
          :: mortal && !patient -> exists[me] = false; goto end  /* X */
          :: mortal -> goto lost                                  /* death */
          :: atomic { ((seen & (ALL - CUR)) & ((1 << me) - 1)) != 0 ->
                 seen = seen & (CUR | (1 << me)) }
          fi
#endif
       :: else ->
          /* W2: the entry just ahead, deleted or marked; then read again */
          predecessor(seen, me, p);
          if
          :: mortal && !patient -> exists[me] = false; goto end
          :: mortal -> goto lost
#ifdef STALE_GRANT
          :: atomic { marked[p] -> held = true }; break
          :: atomic { !exists[p] -> snapshot(seen) }
#else
          :: atomic { (!exists[p] || marked[p]) -> snapshot(seen) }
#endif
          fi
       fi
    od;

    /* Held at some revision; the lease may be lost before the hold is taken
     * (registered): then K is no hold, and the client joins again (J2). */
    if
    :: mortal && patient ->
#ifdef HOLD_LOST_LEASE
       exists[me] = false   /* the bug: it holds through an entry that is gone */
#else
       goto lost
#endif
    :: true
    fi;
    /* held: enter the critical section */
    atomic {
        in_cs[mymode]++;
        assert(EXCLUSION);
        assert_in_prefix(me, mymode)
    };
    /* Holding: it may die (its lease expires) or release; either way its
     * critical section ends and its entry goes. */
#ifndef NO_MARK
    /* M, if someone may have seen this entry waiting */
    if
    :: waited -> atomic { if :: exists[me] -> marked[me] = true :: else fi }
    :: else
    fi;
#endif
    if
    :: keep ->
end_hold:
       false    /* holds for ever: a valid end */
    :: else
    fi;
    atomic { assert_in_prefix(me, mymode); in_cs[mymode]-- };
    /* R, or death while holding: the entry goes either way */
    exists[me] = false;
    goto end;

lost:
    /* L while it waits: the lease ran out. The entry goes (now, or with
     * the lease later). A patient client may join again (J2), at the tail,
     * into the spare slot once the three have joined (one J2 per run);
     * else it gives up (the deadline). */
    if
    :: exists[me] = false
    :: skip
    fi;
    if
    :: atomic { patient && next_slot == N - 1 ->  /* the others have joined */
           old = me;
           me = next_slot; next_slot++;
           exists[me] = true; emode[me] = mymode;
           snapshot(seen)
       };
       if
       :: exists[old] -> run expire(old)
       :: else
       fi;
       goto wait
    :: exists[me] = false
    fi;
end:
    skip
}

init {
    atomic {
#if defined(CONF_A)
        run client(W, false, false, true, 0);
        run client(R, true, false, true, 1);
        run client(R, true, false, true, 2)
#elif defined(CONF_B)
        run client(S, false, false, true, 0);
        run client(S, true, false, true, 1);
        run client(S, true, false, true, 2)
#elif defined(CONF_C)
        run client(R, false, true, true, 255);
        run client(W, false, true, true, 255);
        run client(R, false, true, true, 255)
#else
        run client(W, false, true, false, 255);
        run client(R, false, true, true, 255);
        run client(W, false, true, false, 255)
#endif
    }
}
