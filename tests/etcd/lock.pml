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
 * A converter (C1-C6 of lock.c) holds one entry and converts it: it claims
 * the queue (V, unbounded: every D stops before it), decides from a snapshot,
 * bounds V after the holders it found (from then on V stands there, an entry
 * of no known mode), waits for deletions, and switches atomically: its entry
 * and V go, the converted hold K' comes, placed right after the bound. A
 * mortal one may die at any step (its lease: its entry, V and K' go). The
 * other clients see V and K' with every read, and W1 reads again when they
 * change (C5): a batch of watch events with a Q~ event in it is read again
 * whole, so the model has W1 read again as soon as Q~ changed.
 * Checked besides: at the switch, nobody placed after the bound holds (the
 * conversion is ahead of every waiter); the switch keeps exclusion.
 *
 * Modes: R (read), W (write), S (a semaphore of 2, alone with itself).
 * Configurations (-D): CONF_A: W0, then readers R1 R2 that keep the lock;
 * CONF_B: S0 that releases, S1 S2 that keep; CONF_C: R0 W1 R2, all mortal;
 * CONF_D: W0 R1 W2, all mortal, withdrawing;
 * CONF_E: converter S0 -> R (mortal), S1 that releases, S2 that waits and
 * keeps; CONF_F: converter R0 -> W (immortal), R1 that releases, W2 that
 * waits and keeps.
 * Deliberate bugs (-D, each must be found): NO_MARK (no step M), PRED_ONLY
 * (the head waiter watches only the entry ahead, as etcd's Mutex),
 * SKIP_WAITING (decide past a waiting entry: not FIFO), STALE_GRANT (W2
 * grants on P's mark without reading the queue again), HOLD_LOST_LEASE (a
 * request decided held under a lease lost since is taken for a hold),
 * NOPUT_W1 (the head waiter watches deletions only: it misses V's coming),
 * IGNORE_CLAIM (D does not see V at all), SWITCH_COUNTS_SELF (the converter
 * counts its own `from` among the holders `to` must fit), CLAIM_STALE_READ
 * (the converter bounds V from a read taken before its claim, not with it).
 * Not modelled: a second converter (a switch beside a bounded V), lost
 * replies (C6: each step finds what its lost attempt did, so a retry is the
 * step once), and J2 during a conversion.
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
bool holding[N];        /* the slots whose clients are in their critical section */

/* The conversion's keys (C1-C4): one claim V, one converted hold K'. */
#define UNB 255         /* V's bound not yet written */
bool v_exists;
byte v_bound = UNB;
bool c_exists;          /* K' */
byte c_at;              /* K' stands right after slot c_at */
byte c_mode;
byte conv_ver;          /* changes with every put or delete of V or K' (events of Q~) */
byte conv_del;          /* changes with every delete of V or K' */

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
        /* K', then V (of no known mode), where they stand: after slot k */
        if
        :: s_c && s_ca == k ->
            if
            :: ahead && FITS(s_cm, r, w, s) ->
                if
                :: s_cm == R -> r++
                :: s_cm == W -> w++
                :: s_cm == S -> s++
                fi
            :: else -> ahead = false
            fi
        :: else
        fi;
#ifndef IGNORE_CLAIM
        if
        :: s_v && s_vb == k -> ahead = false
        :: else
        fi;
#endif
        k++
    :: else -> break
    od;
#ifndef IGNORE_CLAIM
    /* V not yet bounded: right ahead of the request deciding */
    if
    :: s_v && s_vb == UNB -> ahead = false
    :: else
    fi;
#endif
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

/* The queue as it is now: a bit set of existing slots, and Q~ (C5). */
inline snapshot(set)
{
    set = CUR;
    s_v = v_exists; s_vb = v_bound; s_c = c_exists; s_ca = c_at; s_cm = c_mode;
    s_ver = conv_ver; s_del = conv_del
}

/* E3: the holder `me` is in the granted prefix of the queue as it is now (the true rule). */
inline assert_in_prefix(me, mymode)
{
    now = CUR;
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
        if
        :: c_exists && c_at == k ->
            if
            :: check && FITS(c_mode, r, w, s) ->
                if
                :: c_mode == R -> r++
                :: c_mode == W -> w++
                :: c_mode == S -> s++
                fi
            :: else -> check = false
            fi
        :: else
        fi;
        /* A bounded V stands here; an unbounded one will stand after every holder. */
        if
        :: v_exists && v_bound == k -> check = false
        :: else
        fi;
        k++
    :: else -> break
    od;
    assert(check && FITS(mymode, r, w, s))
}

/* The entry just ahead of `me`: a slot of `set`, or VK (V or K'), or N. */
#define VK (N + 1)
inline predecessor(set, me, p)
{
    p = N; k = 0;
    do
    :: k < me ->
        if :: (set >> k) & 1 -> p = k :: else fi;
        if :: s_c && s_ca == k -> p = VK :: else fi;
        if :: s_v && s_vb == k -> p = VK :: else fi;
        k++
    :: else -> break
    od;
    if :: s_v && s_vb == UNB -> p = VK :: else fi
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
    bool s_v, s_c; byte s_vb, s_ca, s_cm, s_ver, s_del;

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
#ifdef NOPUT_W1
          :: atomic { conv_del == s_del &&
                      ((seen & (ALL - CUR)) & ((1 << me) - 1)) != 0 ->
                 seen = seen & (CUR | (1 << me)) }
          :: atomic { conv_del != s_del -> snapshot(seen) }
#else
          /* A batch of events with one of Q~ in it makes W1 read again (C5). */
          :: atomic { conv_ver == s_ver &&
                      ((seen & (ALL - CUR)) & ((1 << me) - 1)) != 0 ->
                 seen = seen & (CUR | (1 << me)) }
          :: atomic { conv_ver != s_ver -> snapshot(seen) }
#endif
          fi
#endif
       :: else ->
          /* W2: the entry just ahead, deleted or marked; then read again */
          predecessor(seen, me, p);
          if
          :: mortal && !patient -> exists[me] = false; goto end
          :: mortal -> goto lost
#ifdef STALE_GRANT
          :: atomic { p < N && marked[p] -> held = true }; break
          :: atomic { p < N && !exists[p] -> snapshot(seen) }
#else
          :: atomic { p < N && (!exists[p] || marked[p]) -> snapshot(seen) }
#endif
          :: atomic { p == VK && conv_ver != s_ver -> snapshot(seen) }
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
        holding[me] = true;
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
    atomic { assert_in_prefix(me, mymode); in_cs[mymode]--; holding[me] = false };
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

/*
 * The converter: joins at `order`, holds `from`, converts it to `to` (C1-C4)
 * and then releases. A mortal one may die at any step, its lease taking its
 * entry, V and K' at once; an immortal one must get through.
 */
proctype converter(byte from; byte to; byte order; bool mortal)
{
    byte me, seen, b, hs, r, w, s, k;
    bool held, ahead, fits;
    bool s_v, s_c; byte s_vb, s_ca, s_cm, s_ver, s_del;

    atomic {
        next_slot == order ->
        me = next_slot; next_slot++;
        exists[me] = true; emode[me] = from;
        snapshot(seen)
    };
    decide(seen, me, from, held, ahead);
    held;   /* it joins first: held at once */
    atomic { in_cs[from]++; holding[me] = true; assert(EXCLUSION) };
    if
    :: mortal -> goto died
    :: skip
    fi;
    /* C1: the claim, and the queue read with it */
#ifdef CLAIM_STALE_READ
    snapshot(seen);
    atomic { v_exists = true; v_bound = UNB; conv_ver++ };
#else
    atomic { v_exists = true; v_bound = UNB; conv_ver++; snapshot(seen) };
#endif
    do
    :: /* C3: the holders (the granted prefix, or up to the bound), b the last */
       r = 0; w = 0; s = 0; k = 0; ahead = true; b = 0; hs = 0;
       do
       :: k < N ->
          if
          :: (seen >> k) & 1 && ahead && (s_vb == UNB || k <= s_vb) &&
             FITS(emode[k], r, w, s) ->
              b = k; hs = hs | (1 << k);
              if
              :: emode[k] == R -> r++
              :: emode[k] == W -> w++
              :: emode[k] == S -> s++
              fi
          :: (seen >> k) & 1 && !(ahead && (s_vb == UNB || k <= s_vb) &&
             FITS(emode[k], r, w, s)) -> ahead = false
          :: else
          fi;
          k++
       :: else -> break
       od;
       /* may `to` join the holders other than this one? */
#ifndef SWITCH_COUNTS_SELF
       hs = hs & (ALL - (1 << me));
#endif
       r = 0; w = 0; s = 0; k = 0;
       do
       :: k < N ->
          if
          :: (hs >> k) & 1 ->
              if
              :: emode[k] == R -> r++
              :: emode[k] == W -> w++
              :: emode[k] == S -> s++
              fi
          :: else
          fi;
          k++
       :: else -> break
       od;
       fits = FITS(to, r, w, s);
       if
       :: fits ->
          /* C4: the switch, if V and its entry are still there (they are: it lives) */
          atomic {
              assert(v_exists && exists[me]);
              k = 0;
              do
              :: k < N -> assert(!holding[k] || k <= b); k++
              :: else -> break
              od;
              exists[me] = false; holding[me] = false;
              v_exists = false; v_bound = UNB;
              c_exists = true; c_at = b; c_mode = to;
              conv_ver++; conv_del++;
              in_cs[from]--; in_cs[to]++;
              assert(EXCLUSION)
          };
          break
       :: else
       fi;
       /* C2: bound V after the holders found */
       if
       :: s_vb == UNB -> atomic { v_bound = b; conv_ver++ }; s_vb = b  /* not a read */
       :: else
       fi;
       if
       :: mortal -> goto died
       :: atomic { (seen & (ALL - CUR)) != 0 -> snapshot(seen) }   /* a deletion */
       fi
    od;
    /* Holding `to` as K'; it releases (or dies holding: the same to the store). */
    atomic { in_cs[to]--; c_exists = false; conv_ver++; conv_del++ };
    goto end;
died:
    atomic {
        if
        :: exists[me] -> in_cs[from]--; holding[me] = false; exists[me] = false
        :: else
        fi;
        if :: v_exists -> v_exists = false; v_bound = UNB; conv_ver++; conv_del++ :: else fi
    };
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
#elif defined(CONF_E)
        run converter(S, R, 0, true);
        run client(S, false, false, true, 1);
        run client(S, true, false, true, 2)
#elif defined(CONF_F)
        run converter(R, W, 0, false);
        run client(R, false, false, true, 1);
        run client(W, true, false, true, 2)
#else
        run client(W, false, true, false, 255);
        run client(R, false, true, true, 255);
        run client(W, false, true, false, 255)
#endif
    }
}
