/*
 * The lock protocol on etcd.
 *
 * THE WORDS IN ETCD. A lock `name` is a queue: the keys under
 *     Q = <prefix><escaped name>/
 * one key per request, K = Q<lease id, 16 hex>-<sequence, hex>, unique for
 * the session's life. Its value is JSON: {"mode": name, "limit": L, "n": n}
 * (plus "granted": true once its owner saw it granted, step M). It is put
 * with the session's lease, so it vanishes when the session closes, dies or
 * is cut off longer than the TTL. Its create revision rev(K) is its place in
 * the queue and, once granted, the fencing token. Nothing else is stored
 * (but conversions' keys, below): who holds follows from the queue, as in
 * src/rule.c.
 *
 * THE STEPS of one acquire (lease L, deadline T):
 *   J   join: one transaction
 *         if create_revision(K) == 0 then { put K = V (lease L); range Q }
 *                                   else { range Q }
 *       The range is sorted by create revision; it sees the put. rev(K) is
 *       the transaction's revision, or K's create revision when K existed
 *       already: a retry after a lost reply finds the same entry (E1).
 *   D   decide: the entries of Q with create revision <= rev(K), oldest
 *       first, each mapped to the session's mode for its (name, limit), or
 *       to "unknown" (never granted past), go to fifolock__granted_prefix().
 *       K holds iff it is in the granted prefix. With the queue as read at
 *       revision R, the answer is the one every client computes from the
 *       same revision.
 *   W   wait (not held): watch, from etcd's current revision W; if W > R,
 *       read Q again first, so that no change after R is missed,
 *       W1  if every entry ahead of K holds (K heads the waiters): watch Q
 *           for deletions only, apply each one to the list of entries ahead
 *           (kept exact: entries ahead only leave, E2), and decide again
 *           after each batch; no read needed;
 *       W2  else: watch the entry just ahead, P, for any change; when it
 *           changes (deleted, or marked granted by M), read Q again up to
 *           rev(K) (one range) and decide again.
 *   M   mark: a request that did not hold at rev(K) and holds now puts its
 *       value again with "granted": true, if create_revision(K) == rev(K)
 *       (never recreating a deleted key): the one behind it may be waiting
 *       in W2 for exactly this. The background thread does it, right after
 *       the grant, so that the caller does not wait for it.
 *   X   withdraw (deadline T, fifolock_etcd_interrupt(), try_acquire
 *       refused, an error): delete K. An interrupt is seen before each W
 *       and during it (the watch polls the session's eventfd).
 *       Deleting is idempotent; if etcd cannot be reached, the background
 *       thread deletes it later, and the lease bounds its life anyway.
 *   R   release: delete K.
 *   L   lost (session.c): lease gone, local bound passed, or K deleted by
 *       someone else while held: the user is told.
 *   J2  join again: a request that waits when the lease is lost (L1, L2,
 *       or J refused for a lease etcd no longer has) held nothing. It
 *       withdraws K (X: it goes with the lease anyway), gives the session a
 *       new lease L' (session.c; one request does it, the others find it
 *       done) and does J with a new key K' = Q<L'>-<new sequence>, at the
 *       tail, while T allows. Holds of L stay lost (L). A request that
 *       decided it holds under a lease since replaced is no hold: J2 too.
 *
 * RETRIES. Any request may reach etcd twice: an attempt that times out at
 * one member (attempt_timeout_ms: a dead leader behind it, a paused
 * process) may still be applied there, and a reply may be lost; the next
 * attempt goes to the next member. Each step is idempotent: J creates K
 * only if absent (E1), M only rewrites the same entry, X and R delete one
 * key that no other request ever has, and a lease is granted by an ID the
 * session chose, so a second grant finds the first (session.c).
 *
 * INVARIANTS
 *   E1  A request has at most one key, and its create revision never
 *       changes while it exists: J creates it only if absent, M rewrites it
 *       only if it is still the same entry. So a lost reply to J or M
 *       cannot leave a second entry, or move one.
 *   E2  etcd revisions grow, and an entry joins with the revision of its
 *       creation: every entry ahead of K existed when K joined. So the set
 *       ahead of K only shrinks, and two clients reading the queue at one
 *       revision see the same order.
 *   E3  Monotone predicates (see the header): if K is in the granted prefix
 *       at revision r, it is at every later revision while it exists, since
 *       later the entries ahead are a subset. So the clients that believe
 *       they hold (each decided at some revision) are, at any revision, in
 *       that revision's granted prefix, among the keys that still exist:
 *       their modes fit together by the engine's rule. Exclusion needs K to
 *       exist; a holder whose K vanished is told (L), and fencing tokens
 *       guard the rest.
 *   E4  No waiter sleeps through a change that could grant it. If P waits,
 *       K cannot hold before P holds or leaves (holders are a prefix): P's
 *       leaving is a delete of P, and P's grant is M on P, which P's owner
 *       does because P did not hold at rev(P) (else it would hold at every
 *       later revision, E3, and K would have seen it hold). If P holds,
 *       every entry ahead holds and only a deletion ahead can grant K: W1
 *       sees them all. A dead owner's entries vanish with its lease, which
 *       is a delete too.
 *   E5  FIFO: K holds only if every entry with a smaller create revision
 *       holds, and a compatible request still waits behind a waiting one:
 *       this is the engine's I3/I4 applied to the queue at one revision.
 *
 * J2 keeps them: to the queue it is a waiter that died (its key deleted,
 * now or when L expires: until then others treat it as any entry, which
 * only delays them) and a new request that joins later, at the tail (E2).
 * The process never acts on K again: K is not registered as a hold, so
 * nobody holds through it; a key of L still in the queue is a dead
 * client's entry, as E4 already allows for.
 *
 * CONVERSIONS (fifolock_etcd_convert(): a hold K of `from` becomes n of
 * `to`, as fifolock_convert() on one lock). Two more kinds of key, in the
 * queue's own range but after every request's key (Q~ sorts after Q<hex>):
 *   V  = Q~c<lease>-<seq>  a claim: {"from": rev(K), "bound": B}, with the
 *        converter's lease. At most one exists per queue.
 *   K' = Q~h<lease>-<seq>  a converted hold: {"mode", "limit", "n", "at": B},
 *        with the holder's lease. rev(K') is its fencing token; its place in
 *        the queue is "at" (a request's place is its create revision): D
 *        orders entries by (place, create revision), so K' stands after the
 *        holders placed up to B and before every entry placed after B.
 * The steps (token t = rev(K), the converter's lease L):
 *   C1  claim: one transaction
 *         if no key in Q~c..  and create_revision(K) == t
 *         then { put V = {"from": t} (lease L); range Q } else { range Q }
 *       The comparison over the range Q~c.. makes V the only claim of the
 *       queue, whoever asks on whatever machine: a second converter finds
 *       the first's V. A V without a bound (not yet C2) stands, to every
 *       D, right ahead of the request deciding: nobody is granted while it
 *       is so.
 *   C2  bound: from the queue read in C1 (or any later read: while V stands
 *       unbounded nobody new is granted, so the holders then are the holders
 *       at rev(V) less those that left, and entries that could be granted
 *       meanwhile only join them), the converter computes the granted prefix
 *       without V (the rule of src/rule.c, as D); B is the place of its last
 *       entry. If the switch can't be made now (C3) and the call may wait,
 *       it writes B into V, if create_revision(V) == rev(V). From then on
 *       V stands, to every D, after the entries placed up to B, as an entry
 *       of no known mode: the holders keep holding, every entry placed after
 *       B waits behind V, requests that join later too.
 *   C3  decide: the holders are the entries placed up to B (before C2: the
 *       granted prefix); the switch can be made when n of `to` fit the
 *       holders other than K, asked in that order, `to` last
 *       (fifolock__granted_prefix() once more). If not: try_convert
 *       withdraws V (EBUSY); a waiting conversion watches Q for deletions
 *       (holders can only leave while V stands) and reads the queue and
 *       decides again after each. Deadline, interrupt, K gone, error:
 *       withdraw V (delete it if create_revision(V) == rev(V); if etcd can't
 *       be reached, the background thread deletes V's key, which is this
 *       call's alone), and the caller still holds K.
 *   C4  switch: one transaction
 *         if create_revision(V) == rev(V) and mod_revision(V) == m
 *            and create_revision(K) == t
 *         then { put K' (lease L, at B); delete K; delete V; put T (C7) }
 *         else { range K' }
 *       m is V's mod revision in the read C3 decided from. The hold is K'
 *       from then on (the background thread watches K', the old hold is let
 *       go without a loss); token rev(K'). A conversion that fits while
 *       ANOTHER's V stands bounded (the holders only leave, or switch
 *       beside it) switches beside it: the same transaction with that V's
 *       bound, create and mod revisions, which leaves that V in place but
 *       puts it again (ignore_value, ignore_lease: only its mod revision
 *       moves). So of two switches decided from one read, with each other's
 *       hold still `from`, the second fails its comparison, reads again and
 *       decides again: the holders' modes change one switch at a time, each
 *       checked against the others as they are. One whose V is not yet
 *       bounded waits for C2 (a moment); one that does not fit is EDEADLK
 *       (as the engine's second waiting conversion). A switch that gets no
 *       answer reads K': there, it was made; else X withdraws V, after
 *       which it can't be.
 *   C5  every request's D sees V and the converted holds: the read with J
 *       and W2's read (one transaction: the requests up to rev(K), and the
 *       whole of Q~) fetch them, and W1 watches puts too, reading the queue
 *       again on any event of a Q~ key (a claim made, bounded or gone, a
 *       switch), so that the head waiter is never granted past a V it has
 *       not seen.
 *   C6  retries: C1 finds V made by a lost attempt (its own key: the claim
 *       is this conversion's, rev(V) its create revision); a C1 that got no
 *       answer at all deletes V's key (this call's alone), as X does K. Each
 *       step gets the session's timeout even when the deadline is nearer:
 *       only the wait ends at the deadline. C2 and X compare
 *       create_revision(V); C4's and C7's failure answers show K' (K'')
 *       made by a lost attempt (then its create revision is the token).
 *       Each is idempotent.
 *   C7  tokens in grant order: rev(K') is larger than the create revision of
 *       every request that queued before the switch, so those, granted
 *       after it, would hand out smaller tokens than one already used. C4
 *       also puts T = <prefix><escaped name>~token (no lease: it outlives
 *       every holder; outside every queue's range), whose mod revision is
 *       then the largest token handed out. A request granted (D) with
 *       rev(K) below T's mod revision moves first, one transaction
 *         if create_revision(K) == rev(K)
 *         then { put K'' = Q~h<lease>-<seq> (at: rev(K)); delete K; put T }
 *         else { range K'' }
 *       K'' stands where K stood; rev(K''), the token, is larger than every
 *       token handed out. J and W2's read fetch T with the queue; a switch
 *       or a move puts a Q~ key, on which W1 reads again (C5): a request
 *       decides with the T of the revision it decides at. The price: one
 *       transaction per grant while requests that queued before the last
 *       token handed out are granted (a queue that never empties keeps
 *       paying it); nothing while the queue's order and the tokens agree.
 * Why it keeps E1-E5:
 *   E6  While V stands, no entry is granted that did not hold at rev(V),
 *       except the entries the converter's bound (C2) put among the holders
 *       (those could be granted at rev(V) already, E3): unbounded V holds
 *       every D back; bounded, it stands after exactly the entries placed
 *       up to B. So the conversion waits ahead of every waiting request,
 *       and the holders, frozen, only leave (FIFO, E5, for the conversion).
 *   E7  E3 holds through a conversion: a client that decided it holds at
 *       r < rev(V) was in the granted prefix then, hence at rev(V) (E3), so
 *       it is placed up to B; after C2 the granted prefix is the entries
 *       placed up to B; C4 puts K' where K's hold was counted last by C3,
 *       with `to` fitting the others: the holders still fit together, and
 *       nobody ever counted K as holding `to` before C4, nor as `from` after.
 *   E8  A death never blocks the living: V, K and K' have the converter's
 *       lease; when it dies V is deleted with K, and every waiter sees the
 *       deletion (W1 of Q, W2 of V as the entry just ahead).
 *   E9  Fencing stays monotone: rev(K') is larger than every revision of
 *       the queue before C4, so than every token granted before the switch,
 *       and by C7 every later grant's token is larger than T, so than
 *       rev(K'). (Holders granted together still get distinct tokens; as
 *       before, the order among them is not the order of their writes.)
 *   E4 is kept: a waiter placed after B whose predecessor is V watches V
 *   (W2), and V only changes by C2, C4, X or its lease; the head waiter
 *   sees V come (C5).
 *
 * tests/etcd/lock.pml models these steps with clients that die or withdraw
 * anywhere, and a converter that may die at any step, and spin checks E3,
 * exclusion, E4 and, at each switch, that nobody placed behind the bound
 * holds (tests/etcd/run_spin.sh).
 *
 * COST per change that concerns a waiter: one watch event, and, in W2, one
 * range and one new watch; W1 (the head waiter) needs no request at all.
 * Only the head waiter watches the whole queue, and only for deletions;
 * the others watch one key each. So a release wakes O(1) clients however
 * long the queue. The price is M (one transaction per grant that waited),
 * and a chain of readers granted together learns it one after the other.
 */
#include "etcd_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 65536
/* Q~...: the keys of conversions (C1, C4) sort after every request's key Q<hex>. */
#define CONV_MARK '~'

static void queue_clear(struct queue *q)
{
    size_t i;

    for (i = 0; i < q->len; i++)
        free(q->v[i].key);
    q->len = 0;
    free(q->claim.key);
    memset(&q->claim, 0, sizeof q->claim);
}

static void queue_free(struct queue *q)
{
    queue_clear(q);
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

/* Lock names become one path segment: '/' and '%' (and bytes out of print) as %XX. */
static char *escape_name(const char *name)
{
    size_t i, o = 0, n = strlen(name);
    char *out = malloc(3 * n + 1);

    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '%') {
            sprintf(out + o, "%%%02X", c);
            o += 3;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* The wire value of a request: what D needs to know about it. */
static char *entry_value(const fifolock_mode *mode, size_t n, bool granted)
{
    json_object *v = json_object_new_object();
    char *out;

    if (v == NULL)
        return NULL;
    json_object_object_add(v, "mode", json_object_new_string(mode->name));
    json_object_object_add(v, "limit", json_object_new_int64((int64_t)mode->limit));
    json_object_object_add(v, "n", json_object_new_int64((int64_t)n));
    if (granted)
        json_object_object_add(v, "granted", json_object_new_boolean(1));
    out = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    json_object_put(v);
    return out;
}

/* D's reading of an entry: the session's mode for it, or NULL (unknown). */
static void parse_value(fifolock_etcd *s, const char *value, struct entry *e)
{
    json_object *v = value ? json_tokener_parse(value) : NULL, *mode;
    int64_t n, limit;

    e->mode = NULL;
    e->n = 1;
    if (v == NULL)
        return;
    n = fifolock__etcd_get_i64(v, "n");
    limit = fifolock__etcd_get_i64(v, "limit");
    if (json_object_object_get_ex(v, "mode", &mode) &&
        json_object_is_type(mode, json_type_string) && n >= 1 && n <= MAX_N && limit >= 0) {
        e->mode = fifolock__etcd_find_mode(s, json_object_get_string(mode), (size_t)limit);
        if (e->mode)
            e->n = (size_t)n;
    }
    json_object_put(v);
}

/* A key of the conversions' part of a queue, Q~ (C1, C4)? */
static bool is_conv_key(const char *key)
{
    const char *slash = strrchr(key, '/');

    return slash != NULL && slash[1] == CONV_MARK;
}

/*
 * Fills q from a range answer's "kvs", keeping the entries with a create
 * revision up to max_rev (all if 0). Returns 0 or ENOMEM.
 */
static int queue_fill(fifolock_etcd *s, struct queue *q, json_object *range, int64_t max_rev)
{
    json_object *kvs;
    size_t i, n;

    queue_clear(q);
    if (!json_object_object_get_ex(range, "kvs", &kvs) ||
        !json_object_is_type(kvs, json_type_array))
        return 0;
    n = json_object_array_length(kvs);
    for (i = 0; i < n; i++) {
        json_object *kv = json_object_array_get_idx(kvs, i);
        int64_t rev = fifolock__etcd_get_i64(kv, "create_revision");
        char *value;
        struct entry *e;

        if (max_rev && rev > max_rev)
            continue;
        if (q->len == q->cap) {
            size_t cap = q->cap ? 2 * q->cap : 16;
            struct entry *v = realloc(q->v, cap * sizeof *v);
            if (v == NULL)
                return ENOMEM;
            q->v = v;
            q->cap = cap;
        }
        e = &q->v[q->len];
        e->rev = e->at = rev;
        e->key = fifolock__etcd_get_b64(kv, "key", NULL);
        if (e->key == NULL)
            return ENOMEM;
        if (is_conv_key(e->key)) {
            free(e->key);   /* read by conv_fill() */
            continue;
        }
        value = fifolock__etcd_get_b64(kv, "value", NULL);
        parse_value(s, value, e);
        free(value);
        q->len++;
    }
    /* The gateway sorted by create revision; entries from a W1 batch stay in order. */
    return 0;
}

/* Q + "~" + what: a key (or the start of a range) of the conversions' part. */
static char *conv_prefix(const char *qprefix, const char *what)
{
    char *out = malloc(strlen(qprefix) + strlen(what) + 2);

    if (out != NULL)
        sprintf(out, "%s%c%s", qprefix, CONV_MARK, what);
    return out;
}

/* T = <prefix><escaped name>~token, the tokens' mark (C7): outside every queue. */
static char *mark_key(const char *qprefix)
{
    size_t n = strlen(qprefix);
    char *out = malloc(n + 8);

    if (out != NULL)
        sprintf(out, "%.*s%ctoken", (int)(n - 1), qprefix, CONV_MARK);
    return out;
}

/* A range operation reading T (NULL: ENOMEM). */
static json_object *mark_op(const char *qprefix)
{
    json_object *op = json_object_new_object(), *range = json_object_new_object();
    char *key = mark_key(qprefix);

    if (op == NULL || range == NULL || key == NULL) {
        json_object_put(op);
        json_object_put(range);
        free(key);
        return NULL;
    }
    json_object_object_add(range, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(op, "request_range", range);
    free(key);
    return op;
}

/* T's mod revision from the answer to mark_op(), or 0 (no mark yet). */
static int64_t mark_of(json_object *response)
{
    json_object *range, *kvs;

    if (json_object_object_get_ex(response, "response_range", &range) &&
        json_object_object_get_ex(range, "kvs", &kvs) &&
        json_object_is_type(kvs, json_type_array) && json_object_array_length(kvs) == 1)
        return fifolock__etcd_get_i64(json_object_array_get_idx(kvs, 0), "mod_revision");
    return 0;
}

static struct entry *queue_push(struct queue *q)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 16;
        struct entry *v = realloc(q->v, cap * sizeof *v);

        if (v == NULL)
            return NULL;
        q->v = v;
        q->cap = cap;
    }
    memset(&q->v[q->len], 0, sizeof q->v[0]);
    return &q->v[q->len++];
}

/* The order of D (C4): by place, then by create revision. */
static int entry_order(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->rev < y->rev ? -1 : x->rev > y->rev;
}

/*
 * Adds to q (filled by queue_fill()) the conversions' part Q~ of a range
 * answer: the converted holds (C4), at their place, and the claim V (C1),
 * kept in q->claim. For a request K (me: rev(K), K the last entry of q)
 * only the holds placed ahead of K are kept, and V, if it stands ahead of
 * K (C2), is put in the list as an entry of no known mode: nobody is
 * granted past it. Without me (0), the whole queue, and V only in q->claim.
 * Returns 0 or ENOMEM.
 */
static int conv_fill(fifolock_etcd *s, struct queue *q, json_object *range, int64_t me)
{
    json_object *kvs;
    size_t i, n, at;

    if (!json_object_object_get_ex(range, "kvs", &kvs) ||
        !json_object_is_type(kvs, json_type_array))
        return 0;
    n = json_object_array_length(kvs);
    for (i = 0; i < n; i++) {
        json_object *kv = json_object_array_get_idx(kvs, i), *v;
        char *key = fifolock__etcd_get_b64(kv, "key", NULL), *value;
        const char *suffix;
        struct entry *e;

        if (key == NULL)
            return ENOMEM;
        if (!is_conv_key(key)) {
            free(key);
            continue;
        }
        suffix = strrchr(key, '/') + 2;
        value = fifolock__etcd_get_b64(kv, "value", NULL);
        v = value ? json_tokener_parse(value) : NULL;
        if (suffix[0] == 'c' && q->claim.key == NULL) {
            q->claim.key = key;
            q->claim.rev = fifolock__etcd_get_i64(kv, "create_revision");
            q->claim.mod = fifolock__etcd_get_i64(kv, "mod_revision");
            q->claim.from = fifolock__etcd_get_i64(v, "from");
            q->claim.bound = fifolock__etcd_get_i64(v, "bound");
            key = NULL;
        } else if (suffix[0] == 'h' && (me == 0 || fifolock__etcd_get_i64(v, "at") < me)) {
            e = queue_push(q);
            if (e == NULL) {
                json_object_put(v);
                free(value);
                free(key);
                return ENOMEM;
            }
            e->key = key;
            e->rev = fifolock__etcd_get_i64(kv, "create_revision");
            e->at = fifolock__etcd_get_i64(v, "at");
            parse_value(s, value, e);
            key = NULL;
        }
        json_object_put(v);
        free(value);
        free(key);
    }
    /* Requests are in create order, K last; holds converted go to their place. */
    qsort(q->v, q->len, sizeof q->v[0], entry_order);
    if (me == 0 || q->claim.key == NULL || q->len == 0)
        return 0;
    if (q->claim.bound == 0) {
        at = q->len - 1;            /* not yet bounded: ahead of every request (C2) */
    } else if (q->claim.bound < me) {
        for (at = 0; at + 1 < q->len && q->v[at].at <= q->claim.bound; at++)
            ;
    } else {
        return 0;                   /* K stands ahead of V: V does not concern it */
    }
    if (queue_push(q) == NULL)
        return ENOMEM;
    memmove(&q->v[at + 1], &q->v[at], (q->len - 1 - at) * sizeof q->v[0]);
    memset(&q->v[at], 0, sizeof q->v[0]);
    q->v[at].key = strdup(q->claim.key);
    q->v[at].rev = q->claim.rev;
    q->v[at].at = q->claim.bound;
    q->v[at].mode = NULL;
    q->v[at].n = 1;
    return q->v[at].key ? 0 : ENOMEM;
}

static json_object *range_request(const char *qprefix, const char *qend, int64_t max_rev)
{
    json_object *r = json_object_new_object();

    if (r == NULL)
        return NULL;
    json_object_object_add(r, "key", fifolock__etcd_str_b64(qprefix));
    json_object_object_add(r, "range_end", fifolock__etcd_str_b64(qend));
    json_object_object_add(r, "sort_order", json_object_new_string("ASCEND"));
    json_object_object_add(r, "sort_target", json_object_new_string("CREATE"));
    if (max_rev)
        json_object_object_add(r, "max_create_revision", fifolock__etcd_i64(max_rev));
    return r;
}

static json_object *range_op(const char *qprefix, const char *qend)
{
    json_object *op = json_object_new_object();

    json_object_object_add(op, "request_range", range_request(qprefix, qend, 0));
    return op;
}

json_object *fifolock__etcd_join_txn(struct request *r)
{
    json_object *txn = json_object_new_object(), *success = json_object_new_array(),
                *failure = json_object_new_array();

    if (txn == NULL || success == NULL || failure == NULL) {
        json_object_put(txn);
        json_object_put(success);
        json_object_put(failure);
        return NULL;
    }
    json_object_object_add(txn, "compare", fifolock__etcd_compare_create(r->key, 0));
    json_object_array_add(success, fifolock__etcd_put_op(r->lease, r->key, r->value));
    json_object_array_add(success, mark_op(r->qprefix));
    json_object_array_add(success, range_op(r->qprefix, r->qend));
    json_object_array_add(failure, mark_op(r->qprefix));
    json_object_array_add(failure, range_op(r->qprefix, r->qend));
    json_object_object_add(txn, "success", success);
    json_object_object_add(txn, "failure", failure);
    return txn;
}

/* J. Returns 0 with r->rev and r->q (exact at r->q.revision), or an error. */
static int join(struct request *r)
{
    json_object *txn = fifolock__etcd_join_txn(r), *resp = NULL;
    int rc;

    if (txn == NULL)
        return ENOMEM;
    rc = fifolock__etcd_call(r->s, "/v3/kv/txn", txn, &resp, r->until);
    json_object_put(txn);
    return fifolock__etcd_join_answer(r, rc, resp);
}

int fifolock__etcd_join_answer(struct request *r, int rc, json_object *resp)
{
    json_object *responses, *last, *range, *succeeded;
    size_t i;

    if (rc == ENOENT)
        rc = ENOLCK;    /* "requested lease not found": the lease is gone */
    if (rc != 0)
        return rc;
    rc = EIO;
    if (!json_object_object_get_ex(resp, "responses", &responses) ||
        json_object_array_length(responses) == 0)
        goto out;
    last = json_object_array_get_idx(responses, json_object_array_length(responses) - 1);
    if (!json_object_object_get_ex(last, "response_range", &range))
        goto out;
    r->q.revision = fifolock__etcd_header_revision(resp);
    r->q.mark = mark_of(json_object_array_get_idx(responses,
                                                  json_object_array_length(responses) - 2));
    if (json_object_object_get_ex(resp, "succeeded", &succeeded) &&
        json_object_get_boolean(succeeded)) {
        r->rev = r->q.revision;
    } else {
        /* K existed: this is a retry of a join whose answer was lost (E1). */
        rc = queue_fill(r->s, &r->q, range, 0);
        if (rc != 0)
            goto out;
        rc = EIO;
        for (i = 0; i < r->q.len; i++)
            if (strcmp(r->q.v[i].key, r->key) == 0)
                r->rev = r->q.v[i].rev;
        if (r->rev == 0)
            goto out;
    }
    rc = queue_fill(r->s, &r->q, range, r->rev);
    if (rc == 0 && (r->q.len == 0 || strcmp(r->q.v[r->q.len - 1].key, r->key) != 0)) {
        fifolock__etcd_set_error("the queue read with the join lacks the new entry");
        rc = EIO;
    }
    if (rc == 0)
        rc = conv_fill(r->s, &r->q, range, r->rev);
out:
    json_object_put(resp);
    return rc;
}

/*
 * W2's read: the queue up to rev(K), and its conversions' part Q~ whole
 * (C5), at one revision: a transaction of two ranges and T's (C7).
 */
json_object *fifolock__etcd_reread_request(struct request *r, const char **path)
{
    json_object *txn = json_object_new_object(), *ops = json_object_new_array(), *op;
    char *qconv = conv_prefix(r->qprefix, "");

    *path = "/v3/kv/txn";
    if (txn == NULL || ops == NULL || qconv == NULL) {
        json_object_put(txn);
        json_object_put(ops);
        free(qconv);
        return NULL;
    }
    op = json_object_new_object();
    json_object_object_add(op, "request_range", range_request(r->qprefix, qconv, r->rev));
    json_object_array_add(ops, op);
    json_object_array_add(ops, range_op(qconv, r->qend));
    json_object_array_add(ops, mark_op(r->qprefix));
    json_object_object_add(txn, "success", ops);
    free(qconv);
    return txn;
}

/* W2's read, whole. ENOLCK if K is gone. */
static int reread(struct request *r)
{
    const char *path;
    json_object *req = fifolock__etcd_reread_request(r, &path), *resp = NULL;
    int rc;

    if (req == NULL)
        return ENOMEM;
    rc = fifolock__etcd_call(r->s, path, req, &resp, r->until);
    json_object_put(req);
    return fifolock__etcd_reread_answer(r, rc, resp);
}

int fifolock__etcd_reread_answer(struct request *r, int rc, json_object *resp)
{
    json_object *responses, *plain = NULL, *conv = NULL;

    if (rc == ENOENT)
        rc = EIO;
    if (rc != 0)
        return rc;
    if (json_object_object_get_ex(resp, "responses", &responses) &&
        json_object_array_length(responses) == 3) {
        r->q.mark = mark_of(json_object_array_get_idx(responses, 2));
        json_object_object_get_ex(json_object_array_get_idx(responses, 0), "response_range",
                                  &plain);
        json_object_object_get_ex(json_object_array_get_idx(responses, 1), "response_range",
                                  &conv);
    }
    if (plain == NULL || conv == NULL) {
        json_object_put(resp);
        fifolock__etcd_set_error("etcd's answer to a read of the queue lacks a range");
        return EIO;
    }
    r->q.revision = fifolock__etcd_header_revision(resp);
    rc = queue_fill(r->s, &r->q, plain, r->rev);
    if (rc == 0 && (r->q.len == 0 || strcmp(r->q.v[r->q.len - 1].key, r->key) != 0)) {
        fifolock__etcd_set_error("the request's entry was deleted while it waited");
        rc = ENOLCK;
    } else if (rc == 0) {
        rc = conv_fill(r->s, &r->q, conv, r->rev);
    }
    json_object_put(resp);
    return rc;
}

/* D: does K (the last entry of q) hold? Also: does everything ahead hold? */
static int decide(struct request *r, bool *held, bool *ahead_held)
{
    struct fifolock__entry stack[64] = { { NULL, 0 } }, *v = stack;
    size_t i, granted = 0;
    int rc;

    if (r->q.len > 64) {
        v = malloc(r->q.len * sizeof *v);
        if (v == NULL)
            return ENOMEM;
    }
    for (i = 0; i < r->q.len; i++) {
        v[i].mode = r->q.v[i].mode;
        v[i].n = r->q.v[i].n;
    }
    rc = fifolock__granted_prefix(v, r->q.len, &granted);
    if (v != stack)
        free(v);
    *held = granted == r->q.len;
    *ahead_held = granted + 1 >= r->q.len;
    return rc;
}

int fifolock__etcd_decide(struct request *r, bool *held, bool *ahead_held)
{
    return decide(r, held, ahead_held);
}

/* X: delete K, or leave it to the background thread. */
static void withdraw(struct request *r)
{
    json_object *req = json_object_new_object(), *resp = NULL;
    int64_t until = fifolock__etcd_now_ms() + (r->s->timeout_ms < 1000 ? r->s->timeout_ms : 1000);

    if (req != NULL) {
        json_object_object_add(req, "key", fifolock__etcd_str_b64(r->key));
        if (fifolock__etcd_call(r->s, "/v3/kv/deleterange", req, &resp, until) == 0) {
            json_object_put(resp);
            json_object_put(req);
            return;
        }
        json_object_put(req);
    }
    fifolock__etcd_add_orphan(r->s, r->key);
}

/* ---- W: the watches, run in the caller's thread ---- */

/*
 * A watch is opened at etcd's current revision, not at R+1: etcd serves a
 * watch that starts in the past from a loop that runs every 100 ms, one that
 * starts now at once. Its first message says the revision W it starts
 * after; if W > R, the queue is read again (inside the stream's callback, on
 * another connection) so that nothing between R and W is missed.
 */
#define DONE 1    /* K holds */
#define CHANGED 2 /* W2: P changed; read the queue and decide again */
#define FRESH 3   /* W2: the queue was just read; decide again */

struct wait {
    struct request *r;
    const char *pkey;   /* W2: the key watched, P; NULL in W1 */
    int rc;
};

static int reread(struct request *r);

/* The first message: close the gap between R and the watch's start. */
static int on_created(struct wait *w, json_object *msg)
{
    struct request *r = w->r;
    bool held, ahead_held;
    int rc;

    if (fifolock__etcd_header_revision(msg) <= r->q.revision)
        return 0;
    rc = reread(r);
    if (rc == 0)
        rc = decide(r, &held, &ahead_held);
    if (rc != 0)
        return rc;
    if (held)
        return DONE;
    if (w->pkey && (ahead_held || strcmp(r->q.v[r->q.len - 2].key, w->pkey) != 0))
        return FRESH;
    return 0;
}

/* W1: deletions in Q; the list ahead of K stays exact. W2: any change of P. */
static int on_wait_message(json_object *msg, void *arg)
{
    struct wait *w = arg;
    struct request *r = w->r;
    json_object *events;
    size_t i, j, n;
    bool held, ahead_held, changed = false;

    if (fifolock__etcd_get_i64(msg, "compact_revision") > 0)
        return EAGAIN;
    if (json_object_object_get_ex(msg, "canceled", &events) && json_object_get_boolean(events))
        return EAGAIN;
    if (json_object_object_get_ex(msg, "created", &events) && json_object_get_boolean(events))
        return on_created(w, msg);
    if (!json_object_object_get_ex(msg, "events", &events) ||
        !json_object_is_type(events, json_type_array))
        return 0;
    n = json_object_array_length(events);
    for (i = 0; i < n; i++) {
        json_object *ev = json_object_array_get_idx(events, i), *kv, *type;
        char *key;

        if (!json_object_object_get_ex(ev, "kv", &kv))
            continue;
        if (fifolock__etcd_get_i64(kv, "mod_revision") <= r->q.revision)
            continue; /* already in the list read */
        if (w->pkey) {
            changed = true;
            continue;
        }
        key = fifolock__etcd_get_b64(kv, "key", NULL);
        if (key == NULL)
            return ENOMEM;
        if (is_conv_key(key)) {
            /* A conversion claims, bounds or switches (C5): read again. */
            free(key);
            return EAGAIN;
        }
        if (!json_object_object_get_ex(ev, "type", &type) ||
            strcmp(json_object_get_string(type), "DELETE") != 0) {
            free(key);  /* a put: a join behind K, or a mark (M) */
            continue;
        }
        if (strcmp(key, r->key) == 0) {
            free(key);
            fifolock__etcd_set_error("the request's entry was deleted while it waited");
            return ENOLCK;
        }
        for (j = 0; j + 1 < r->q.len; j++)
            if (strcmp(r->q.v[j].key, key) == 0) {
                free(r->q.v[j].key);
                memmove(&r->q.v[j], &r->q.v[j + 1], (r->q.len - j - 1) * sizeof r->q.v[0]);
                r->q.len--;
                break;
            }
        free(key);
    }
    if (w->pkey)
        return changed ? CHANGED : 0;
    if (fifolock__etcd_header_revision(msg) > r->q.revision)
        r->q.revision = fifolock__etcd_header_revision(msg);
    w->rc = decide(r, &held, &ahead_held);
    if (w->rc != 0)
        return w->rc;
    return held ? DONE : 0;
}

int fifolock__etcd_wait_message(struct request *r, const char *pkey, json_object *msg)
{
    struct wait w = { r, pkey, 0 };

    _Static_assert(DONE == FIFOLOCK__ETCD_HELD && CHANGED == FIFOLOCK__ETCD_CHANGED,
                   "etcd_internal.h names W's answers");
    return on_wait_message(msg, &w);
}

/* Ends the watch when the session is lost, or its member fails (stalled). */
static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    struct fifolock__etcd_stream *st = arg;
    fifolock_etcd *s = st->s;
    bool lost, stalled = false;

    (void)a, (void)b, (void)c, (void)d;
    pthread_mutex_lock(&s->mu);
    lost = s->lost != 0;
    if (!lost)
        stalled = fifolock__etcd_stream_stalled(st);
    pthread_mutex_unlock(&s->mu);
    if (stalled)
        st->endpoint_failed = true;
    return lost || stalled;
}

/*
 * Runs the watch `curl` to its end, as curl_easy_perform() would, but polls
 * the session's interrupt eventfd beside the transfer's socket: an interrupt
 * ends the wait at once (*interrupted), without waiting for etcd or for the
 * progress callback. Returns the transfer's result.
 */
static CURLcode watch_until_done(fifolock_etcd *s, CURLM *multi, CURL *curl, bool *interrupted)
{
    CURLcode code = CURLE_OK;
    CURLMsg *msg;
    int running = 1, left;

    if (curl_multi_add_handle(multi, curl) != CURLM_OK)
        return CURLE_OUT_OF_MEMORY;
    for (;;) {
        struct curl_waitfd intr = { s->interrupt_fd, CURL_WAIT_POLLIN, 0 };

        if (curl_multi_perform(multi, &running) != CURLM_OK)
            return CURLE_OUT_OF_MEMORY;
        if (running == 0)
            break;
        /* A short poll: the progress callback looks for a failed member. */
        if (curl_multi_poll(multi, &intr, 1, 200, NULL) != CURLM_OK)
            return CURLE_OUT_OF_MEMORY;
        if (intr.revents & CURL_WAIT_POLLIN) {
            *interrupted = true;
            return CURLE_OK;
        }
    }
    while ((msg = curl_multi_info_read(multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == curl)
            code = msg->data.result;
    return code;
}

/*
 * Runs one watch until its handler ends it (DONE, CHANGED, FRESH or an
 * errno), the deadline (ETIMEDOUT), the session's loss (ENOLCK) or the
 * stream's end (EAGAIN: read again and watch again).
 */
static int run_watch(struct request *r, const char *key, const char *range_end, bool noput,
                     fifolock__etcd_message_fn *fn, void *arg)
{
    json_object *req = json_object_new_object(), *create = json_object_new_object();
    struct fifolock__etcd_stream *st;
    int64_t left = r->until == FIFOLOCK__ETCD_FOREVER ? 0 : r->until - fifolock__etcd_now_ms();
    CURLM *multi;
    CURLcode code;
    bool interrupted = false;
    int rc;

    if (req == NULL || create == NULL) {
        json_object_put(req);
        json_object_put(create);
        return ENOMEM;
    }
    if (r->until != FIFOLOCK__ETCD_FOREVER && left <= 0) {
        json_object_put(req);
        json_object_put(create);
        return ETIMEDOUT;
    }
    json_object_object_add(create, "key", fifolock__etcd_str_b64(key));
    if (range_end)
        json_object_object_add(create, "range_end", fifolock__etcd_str_b64(range_end));
    if (noput) {
        json_object *filters = json_object_new_array();
        json_object_array_add(filters, json_object_new_string("NOPUT"));
        json_object_object_add(create, "filters", filters);
    }
    json_object_object_add(req, "create_request", create);
    st = fifolock__etcd_stream_new(r->s, "/v3/watch", req, fn, arg);
    json_object_put(req);
    multi = st ? curl_multi_init() : NULL;
    if (multi == NULL) {
        fifolock__etcd_stream_free(st);
        return ENOMEM;
    }
    if (left > 0)
        curl_easy_setopt(st->curl, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(st->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(st->curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(st->curl, CURLOPT_XFERINFODATA, st);
    code = watch_until_done(r->s, multi, st->curl, &interrupted);
    curl_multi_remove_handle(multi, st->curl);
    curl_multi_cleanup(multi);
    if (interrupted)
        rc = EINTR;
    else if (st->endpoint_failed) {
        /* Its member failed: read and watch again at once, elsewhere. */
        fifolock__etcd_set_error("watch: %s", st->why[0] ? st->why : "its member failed");
        fifolock__etcd_stream_failed(st, code);
        rc = EAGAIN;
    } else if (st->stop)
        rc = st->stop;
    else if (code == CURLE_ABORTED_BY_CALLBACK)
        rc = ENOLCK;
    else if (code == CURLE_OPERATION_TIMEDOUT && r->until != FIFOLOCK__ETCD_FOREVER &&
             fifolock__etcd_now_ms() >= r->until)
        rc = ETIMEDOUT;
    else {
        struct timespec pause = { 0, 50 * 1000000L };

        if (code != CURLE_OK) {
            fifolock__etcd_set_error("watch: %s", st->errbuf[0] ? st->errbuf
                                                             : curl_easy_strerror(code));
            fifolock__etcd_stream_failed(st, code);
        }
        nanosleep(&pause, NULL);
        rc = EAGAIN;
    }
    fifolock__etcd_stream_free(st);
    return rc;
}

/* ---- the calls ---- */

/* A new hold, for the background thread: its watch (L3) and its mark (M, if mark_value). */
static int register_hold(struct request *r, char *mark_value)
{
    fifolock_etcd *s = r->s;
    struct fifolock__etcd_hold *h = calloc(1, sizeof *h);
    int lost;

    if (h == NULL) {
        free(mark_value);
        return ENOMEM;
    }
    h->name = strdup(r->name);
    h->key = strdup(r->key);
    if (h->name == NULL || h->key == NULL) {
        free(h->name);
        free(h->key);
        free(h);
        free(mark_value);
        return ENOMEM;
    }
    h->token = r->rev;
    h->lease = r->lease;
    h->mark_value = mark_value;
    /* The watch replays from the grant's revision: starting it later misses
     * nothing, and a short hold never needs one. */
    h->watch_from = r->q.revision + 1;
    h->retry_at_ms = fifolock__etcd_now_ms() + FIFOLOCK__ETCD_WATCH_DELAY_MS;
    pthread_mutex_lock(&s->mu);
    /* K's lease may have been lost and replaced meanwhile (another waiter
     * renewed it): then K is not a hold to keep, whatever D said. */
    lost = s->lost || s->lease != r->lease;
    if (!lost) {
        h->next = s->holds;
        s->holds = h;
    }
    pthread_mutex_unlock(&s->mu);
    if (lost) {
        free(h->name);
        free(h->key);
        free(h->mark_value);
        free(h);
        fifolock__etcd_set_error("the session's lease was lost");
        return ENOLCK;
    }
    fifolock__etcd_wake(s);
    return 0;
}

int fifolock__etcd_register_hold(struct request *r, char *mark_value)
{
    return register_hold(r, mark_value);
}

char *fifolock__etcd_entry_value(const fifolock_mode *mode, size_t n, bool granted)
{
    return entry_value(mode, n, granted);
}

/* K' or K'''s value: the mode, n, and its place (C4, C7). */
static char *placed_value(const fifolock_mode *mode, size_t n, int64_t at)
{
    json_object *v = json_object_new_object();
    char *out;

    if (v == NULL)
        return NULL;
    json_object_object_add(v, "mode", json_object_new_string(mode->name));
    json_object_object_add(v, "limit", json_object_new_int64((int64_t)mode->limit));
    json_object_object_add(v, "n", json_object_new_int64((int64_t)n));
    json_object_object_add(v, "at", json_object_new_int64(at));
    out = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    json_object_put(v);
    return out;
}

/*
 * C7: K, just granted, has a token below the mark T (a token handed out
 * after K joined, by a switch or another C7): one transaction
 *   if create_revision(K) == rev(K)
 *   then { put K'' = Q~h<lease>-<seq> (at: rev(K)); delete K; put T }
 *   else { range K'' }
 * K'' stands where K stood; its create revision, the new token, is larger
 * than every token granted so far. In pieces for async.c (etcd_internal.h):
 * the test, the transaction and its answer; rekey() below runs them, and
 * returns 0 (r->key and r->rev are K'' now; also when a lost attempt did
 * it), ENOLCK (K is gone), or an error.
 */
bool fifolock__etcd_must_rekey(const struct request *r)
{
    return r->q.mark > r->rev;
}

json_object *fifolock__etcd_rekey_txn(struct request *r, const fifolock_mode *mode, size_t n,
                                      char **newkey)
{
    json_object *txn = json_object_new_object(), *success = json_object_new_array(),
                *failure = json_object_new_array(), *get = json_object_new_object();
    char *value = placed_value(mode, n, r->rev), *key, *mark = mark_key(r->qprefix), seqs[64];
    uint64_t seq;

    *newkey = NULL;
    pthread_mutex_lock(&r->s->mu);
    seq = ++r->s->seq;
    pthread_mutex_unlock(&r->s->mu);
    snprintf(seqs, sizeof seqs, "h%016llx-%llx", (unsigned long long)r->lease,
             (unsigned long long)seq);
    key = malloc(strlen(r->qprefix) + 2 + 40);  /* as much room as J2 needs for K */
    if (key != NULL)
        sprintf(key, "%s%c%s", r->qprefix, CONV_MARK, seqs);
    if (txn == NULL || success == NULL || failure == NULL || get == NULL || value == NULL ||
        key == NULL || mark == NULL) {
        json_object_put(txn);
        json_object_put(success);
        json_object_put(failure);
        json_object_put(get);
        free(value);
        free(key);
        free(mark);
        return NULL;
    }
    json_object_object_add(txn, "compare", fifolock__etcd_compare_create(r->key, r->rev));
    json_object_array_add(success, fifolock__etcd_put_op(r->lease, key, value));
    json_object_array_add(success, fifolock__etcd_delete_op(r->key));
    json_object_array_add(success, fifolock__etcd_put_op(0, mark, ""));
    json_object_object_add(get, "key", fifolock__etcd_str_b64(key));
    json_object_array_add(failure, json_object_new_object());
    json_object_object_add(json_object_array_get_idx(failure, 0), "request_range", get);
    json_object_object_add(txn, "success", success);
    json_object_object_add(txn, "failure", failure);
    free(value);
    free(mark);
    *newkey = key;
    return txn;
}

int fifolock__etcd_rekey_answer(struct request *r, char *newkey, int rc, json_object *resp)
{
    json_object *ok, *responses, *range, *kvs;

    if (rc == ENOENT)
        rc = ENOLCK;
    if (rc != 0)
        goto out;
    if (json_object_object_get_ex(resp, "succeeded", &ok) && json_object_get_boolean(ok)) {
        r->rev = fifolock__etcd_header_revision(resp);
    } else if (json_object_object_get_ex(resp, "responses", &responses) &&
               json_object_object_get_ex(json_object_array_get_idx(responses, 0),
                                         "response_range", &range) &&
               json_object_object_get_ex(range, "kvs", &kvs) &&
               json_object_array_length(kvs) == 1) {
        r->rev = fifolock__etcd_get_i64(json_object_array_get_idx(kvs, 0), "create_revision");
    } else {
        fifolock__etcd_set_error("the request's entry was deleted while it waited");
        rc = ENOLCK;
    }
    if (rc == 0) {
        r->q.revision = fifolock__etcd_header_revision(resp);
        free(r->key);
        r->key = newkey;
        newkey = NULL;
    }
out:
    json_object_put(resp);
    free(newkey);
    return rc;
}

static int rekey(struct request *r, const fifolock_mode *mode, size_t n)
{
    char *newkey;
    json_object *txn = fifolock__etcd_rekey_txn(r, mode, n, &newkey), *resp = NULL;
    int rc;

    if (txn == NULL)
        return ENOMEM;
    rc = fifolock__etcd_call(r->s, "/v3/kv/txn", txn, &resp, r->until);
    json_object_put(txn);
    return fifolock__etcd_rekey_answer(r, newkey, rc, resp);
}

int fifolock__etcd_request_init(struct request *r, fifolock_etcd *s, const char *name,
                                const fifolock_mode *mode, size_t n, int64_t until,
                                const fifolock_mode **known_mode)
{
    const fifolock_mode *known;
    char *escaped;
    int64_t lease;
    uint64_t seq;
    int lost;

    memset(r, 0, sizeof *r);
    fifolock__etcd_clear_error();
    if (s == NULL || name == NULL || mode == NULL || name[0] == '\0' || n == 0 || n > MAX_N)
        return EINVAL;
    if (mode->name == NULL || mode->is_compatible == NULL) {
        fifolock__etcd_set_error("a mode crosses the wire by its name: this one has none");
        return EINVAL;
    }
    known = fifolock__etcd_find_mode(s, mode->name, mode->limit);
    if (known == NULL) {
        fifolock__etcd_set_error("mode \"%s\" (limit %zu) is not in the session's table",
                                 mode->name, mode->limit);
        return EINVAL;
    }
    if (fifolock__never_fits(known, n)) {
        /* Refused by a lock nobody holds: it would wait for ever, at the
           head blocking everybody behind it. Nothing is sent. */
        fifolock__etcd_set_error("%zu of mode \"%s\" (limit %zu) can never be granted",
                                 n, mode->name, mode->limit);
        return EDEADLK;
    }
    pthread_mutex_lock(&s->mu);
    lost = s->lost;
    seq = ++s->seq;
    lease = s->lease;
    pthread_mutex_unlock(&s->mu);
    if (lost) {
        fifolock__etcd_set_error("the session's lease was lost");
        return ENOLCK;
    }
    r->s = s;
    r->name = name;
    r->until = until;
    r->lease = lease;
    escaped = escape_name(name);
    if (escaped == NULL)
        return ENOMEM;
    r->qprefix = malloc(strlen(s->prefix) + strlen(escaped) + 2);
    r->key = malloc(strlen(s->prefix) + strlen(escaped) + 2 + 40);
    if (r->qprefix && r->key) {
        sprintf(r->qprefix, "%s%s/", s->prefix, escaped);
        sprintf(r->key, "%s%016llx-%llx", r->qprefix, (unsigned long long)r->lease,
                (unsigned long long)seq);
        r->qend = fifolock__etcd_prefix_end(r->qprefix);
        r->value = entry_value(known, n, false);
    }
    free(escaped);
    if (r->qprefix == NULL || r->key == NULL || r->qend == NULL || r->value == NULL) {
        fifolock__etcd_request_free(r);
        return ENOMEM;
    }
    *known_mode = known;
    return 0;
}

void fifolock__etcd_request_rejoin(struct request *r)
{
    fifolock_etcd *s = r->s;
    uint64_t seq;

    pthread_mutex_lock(&s->mu);
    seq = ++s->seq;
    r->lease = s->lease;
    pthread_mutex_unlock(&s->mu);
    sprintf(r->key, "%s%016llx-%llx", r->qprefix, (unsigned long long)r->lease,
            (unsigned long long)seq);
    queue_clear(&r->q);
    r->rev = 0;
}

void fifolock__etcd_request_free(struct request *r)
{
    queue_free(&r->q);
    free(r->qprefix);
    free(r->qend);
    free(r->key);
    free(r->value);
    r->qprefix = r->qend = r->key = r->value = NULL;
}

static int acquire(fifolock_etcd *s, const char *name, const fifolock_mode *mode, size_t n,
                   int64_t until, bool try_only, int64_t *token)
{
    struct request r;
    const fifolock_mode *known;
    bool held = false, ahead_held = false, waited = false;
    int64_t joined_at;
    int rc, lost;

    rc = fifolock__etcd_request_init(&r, s, name, mode, n, until, &known);
    if (rc != 0)
        return rc;

again:
    /* A join gets the session's timeout even when the deadline is past: try once. */
    if (r.until < fifolock__etcd_now_ms() + 1)
        r.until = fifolock__etcd_now_ms() + s->timeout_ms;
    rc = join(&r);
    r.until = until;
    if (rc != 0) {
        /* Did the put happen? Unknown: withdraw. */
        withdraw(&r);
        goto rejoin_if_lost;
    }
    joined_at = r.q.revision;
    for (;;) {
        rc = decide(&r, &held, &ahead_held);
        if (rc != 0 || held)
            break;
        if (try_only) {
            rc = EBUSY;
            break;
        }
        if (fifolock__etcd_interrupted(s)) {
            /* Not held (a grant that came first wins): withdraw, as a timeout does. */
            fifolock__etcd_set_error("the wait was interrupted");
            rc = EINTR;
            break;
        }
        pthread_mutex_lock(&s->mu);
        lost = s->lost || s->lease != r.lease;
        pthread_mutex_unlock(&s->mu);
        if (lost) {
            /* L1/L2 while it waited: K is gone or going with the lease. */
            fifolock__etcd_set_error("the session's lease was lost");
            rc = ENOLCK;
            break;
        }
        waited = true;
        if (ahead_held) {
            struct wait w = { &r, NULL, 0 };
            /* Puts too: a conversion's claim is one (C5). */
            rc = run_watch(&r, r.qprefix, r.qend, false, on_wait_message, &w);
        } else {
            char *pkey = strdup(r.q.v[r.q.len - 2].key);
            struct wait w = { &r, pkey, 0 };

            rc = pkey ? run_watch(&r, pkey, NULL, false, on_wait_message, &w) : ENOMEM;
            free(pkey);
            if (rc == CHANGED)
                rc = EAGAIN;
        }
        if (rc == DONE) {
            held = true;
            rc = 0;
            break;
        }
        if (rc == FRESH)
            continue;
        if (rc == EAGAIN) {
            rc = reread(&r);
            if (rc == ECONNREFUSED || rc == ETIMEDOUT) {
                /* etcd out of reach for a while: the waiting goes on until the deadline. */
                if (fifolock__etcd_now_ms() >= until) {
                    rc = ETIMEDOUT;
                    break;
                }
                continue;
            }
            if (rc != 0)
                break;
            continue;
        }
        break;
    }
    if (rc == 0 && held) {
        /* M, by the background thread, off the grant's path: someone may
         * have seen K waiting after rev(K). */
        char *mark_value = NULL;
        bool rekeyed = fifolock__etcd_must_rekey(&r);

        if (rekeyed)
            rc = rekey(&r, known, n);   /* C7: K'' replaces K, which wakes W2 behind */
        if (rc == 0 && !rekeyed && (waited || joined_at != r.rev)) {
            mark_value = entry_value(known, n, true);
            if (mark_value == NULL)
                rc = ENOMEM;
        }
        if (rc == 0)
            rc = register_hold(&r, mark_value);
    }
    if (rc != 0)
        withdraw(&r); else if (token) {
        *token = r.rev;
    }
rejoin_if_lost:
    if (rc == ENOLCK && !try_only && fifolock__etcd_now_ms() < until) {
        /* J2: K went with the session's lease (etcd was out of reach longer
         * than the TTL) while it waited. It held nothing, so it joins again
         * with a new lease, while its deadline allows: at the tail, since
         * its place went with K. An entry deleted by someone else, the
         * session fine, is not this: that stays ENOLCK. */
        bool lease_lost;

        pthread_mutex_lock(&s->mu);
        lease_lost = s->lost || s->lease != r.lease;
        pthread_mutex_unlock(&s->mu);
        if (lease_lost) {
            rc = fifolock__etcd_renew(s, r.lease, until);
            if (rc == 0) {
                fifolock__etcd_request_rejoin(&r);
                held = ahead_held = false;
                waited = true;
                goto again;
            }
            if (rc == ETIMEDOUT)
                fifolock__etcd_set_error("the session's lease was lost while it waited, and "
                                         "etcd gave no new one before the deadline");
        }
    }
    fifolock__etcd_request_free(&r);
    return rc;
}

/*
 * An interrupted session refuses a wait before it begins: nothing is sent,
 * nothing is left. True (and the error said) when it does.
 */
static bool refused_as_interrupted(fifolock_etcd *s)
{
    if (s == NULL || !fifolock__etcd_interrupted(s))
        return false;
    fifolock__etcd_clear_error();
    fifolock__etcd_set_error("the session is interrupted");
    return true;
}

int fifolock_etcd_acquire_n(fifolock_etcd *s, const char *name, const fifolock_mode *mode,
                            size_t n, const struct timespec *deadline, int64_t *token)
{
    int64_t until = fifolock__etcd_deadline_ms(deadline);
    int rc;

    if (refused_as_interrupted(s))
        return EINTR;
    if (until <= fifolock__etcd_now_ms()) {
        /* A deadline already past: one try, and the answer a timed wait would give. */
        rc = acquire(s, name, mode, n, until, true, token);
        return rc == EBUSY ? ETIMEDOUT : rc;
    }
    return acquire(s, name, mode, n, until, false, token);
}

int fifolock_etcd_acquire(fifolock_etcd *s, const char *name, const fifolock_mode *mode,
                          const struct timespec *deadline, int64_t *token)
{
    return fifolock_etcd_acquire_n(s, name, mode, 1, deadline, token);
}

int fifolock_etcd_try_acquire(fifolock_etcd *s, const char *name, const fifolock_mode *mode,
                              int64_t *token)
{
    return acquire(s, name, mode, 1, fifolock__etcd_now_ms() + (s ? s->timeout_ms : 0), true,
                   token);
}

int fifolock_etcd_release(fifolock_etcd *s, const char *name, int64_t token)
{
    struct fifolock__etcd_hold *h;
    json_object *req, *resp = NULL;
    char *key;
    int rc;

    fifolock__etcd_clear_error();
    if (s == NULL || name == NULL)
        return EINVAL;
    pthread_mutex_lock(&s->mu);
    for (h = s->holds; h; h = h->next)
        if (!h->released && !h->releasing && h->token == token && strcmp(h->name, name) == 0)
            break;
    if (h == NULL) {
        pthread_mutex_unlock(&s->mu);
        return EPERM;
    }
    key = strdup(h->key);
    if (key == NULL) {
        pthread_mutex_unlock(&s->mu);
        return ENOMEM;
    }
    if (h->lost) {
        /* Lost already: forget it; its key, if etcd still has it, goes too. */
        h->released = true;
        pthread_mutex_unlock(&s->mu);
        fifolock__etcd_add_orphan(s, key);
        free(key);
        return 0;
    }
    h->releasing = true;
    pthread_mutex_unlock(&s->mu);
    req = json_object_new_object();
    rc = ENOMEM;
    if (req) {
        json_object_object_add(req, "key", fifolock__etcd_str_b64(key));
        rc = fifolock__etcd_call(s, "/v3/kv/deleterange", req, &resp,
                                 fifolock__etcd_now_ms() + s->timeout_ms);
        json_object_put(req);
        if (rc == 0)
            json_object_put(resp);
        if (rc == ENOENT)
            rc = EIO;
    }
    free(key);
    pthread_mutex_lock(&s->mu);
    if (rc == 0)
        h->released = true;
    else
        h->releasing = false;
    pthread_mutex_unlock(&s->mu);
    fifolock__etcd_wake(s);
    return rc;
}

/* ---- conversions (C1-C6 at the top) ---- */

struct conversion {
    struct request r;           /* r.key: K, the hold's entry; r.rev: its token; r.q: Q */
    const fifolock_mode *to;
    char *claim;                /* V: Q~c<lease>-<seq> */
    char *claims, *claims_end;  /* the range of every claim: Q~c, and its end */
    char *newkey;               /* K': Q~h<lease>-<seq> */
    char *mark;                 /* T (C7) */
    int64_t claim_rev;          /* rev(V) once made (or found made, C6), else 0 */
    int64_t bound;              /* written into V (C2), or 0 */
    size_t n;                   /* the hold's n: it converts whole */
};

/* V's value: the hold it converts, and once known the place it stands after. */
static char *claim_value(int64_t from, int64_t bound)
{
    char buf[96];

    if (bound)
        snprintf(buf, sizeof buf, "{\"from\":%lld,\"bound\":%lld}", (long long)from,
                 (long long)bound);
    else
        snprintf(buf, sizeof buf, "{\"from\":%lld}", (long long)from);
    return strdup(buf);
}

/*
 * Sends `txn` (taken) and fills c->r.q from the range answer of its last
 * operation, if it has one: the whole queue, claims apart. *succeeded says
 * whether the comparisons held. Returns 0 or an error reaching etcd.
 */
static int conv_txn(struct conversion *c, json_object *txn, bool *succeeded, json_object **out)
{
    json_object *resp = NULL, *responses, *range, *ok;
    int rc;

    rc = fifolock__etcd_call(c->r.s, "/v3/kv/txn", txn, &resp, c->r.until);
    json_object_put(txn);
    if (rc == ENOENT)
        rc = ENOLCK;    /* "requested lease not found" */
    if (rc != 0)
        return rc;
    *succeeded = json_object_object_get_ex(resp, "succeeded", &ok) && json_object_get_boolean(ok);
    if (json_object_object_get_ex(resp, "responses", &responses) &&
        json_object_array_length(responses) > 0 &&
        json_object_object_get_ex(
            json_object_array_get_idx(responses, json_object_array_length(responses) - 1),
            "response_range", &range)) {
        /* The list is exact at this revision (and only then). */
        c->r.q.revision = fifolock__etcd_header_revision(resp);
        rc = queue_fill(c->r.s, &c->r.q, range, 0);
        if (rc == 0)
            rc = conv_fill(c->r.s, &c->r.q, range, 0);
    }
    if (out != NULL && rc == 0)
        *out = resp;
    else
        json_object_put(resp);
    return rc;
}

/* Reads the whole queue (C3's wait). */
static int conv_read(struct conversion *c)
{
    json_object *req = range_request(c->r.qprefix, c->r.qend, 0), *resp = NULL;
    int rc;

    if (req == NULL)
        return ENOMEM;
    rc = fifolock__etcd_call(c->r.s, "/v3/kv/range", req, &resp, c->r.until);
    json_object_put(req);
    if (rc == ENOENT)
        rc = EIO;
    if (rc != 0)
        return rc;
    c->r.q.revision = fifolock__etcd_header_revision(resp);
    rc = queue_fill(c->r.s, &c->r.q, resp, 0);
    if (rc == 0)
        rc = conv_fill(c->r.s, &c->r.q, resp, 0);
    json_object_put(resp);
    return rc;
}

/*
 * C1: puts V if no claim exists and K is still the hold's entry, and reads
 * the queue at the same revision. c->claim_rev is rev(V) if V is this
 * conversion's (made now, or by an attempt whose reply was lost: C6), else 0.
 */
static int conv_claim(struct conversion *c)
{
    json_object *txn = json_object_new_object(), *cmp = json_object_new_array(),
                *success = json_object_new_array(), *failure = json_object_new_array();
    char *value = claim_value(c->r.rev, 0);
    bool ok = false;
    int rc;

    if (txn == NULL || cmp == NULL || success == NULL || failure == NULL || value == NULL) {
        json_object_put(txn);
        json_object_put(cmp);
        json_object_put(success);
        json_object_put(failure);
        free(value);
        return ENOMEM;
    }
    json_object_array_add(cmp, fifolock__etcd_compare_range_empty(c->claims, c->claims_end));
    fifolock__etcd_cmp_add_create(cmp, c->r.key, c->r.rev);
    json_object_object_add(txn, "compare", cmp);
    json_object_array_add(success, fifolock__etcd_put_op(c->r.lease, c->claim, value));
    json_object_array_add(success, range_op(c->r.qprefix, c->r.qend));
    json_object_array_add(failure, range_op(c->r.qprefix, c->r.qend));
    json_object_object_add(txn, "success", success);
    json_object_object_add(txn, "failure", failure);
    free(value);
    c->claim_rev = 0;
    rc = conv_txn(c, txn, &ok, NULL);
    if (rc == 0 && c->r.q.claim.key != NULL && strcmp(c->r.q.claim.key, c->claim) == 0)
        c->claim_rev = c->r.q.claim.rev;
    if (rc != 0) {
        /* Was V put? Unknown: delete it (its key is this call's alone), as X does K. */
        struct request v = c->r;

        v.key = c->claim;
        withdraw(&v);
    }
    return rc;
}

/*
 * D for the converter (C3), from the whole queue in c->r.q: the holders are
 * the entries placed up to the claim's bound once it has one, else the
 * granted prefix (V not yet bounded holds everybody else back, so the
 * holders can only leave). *fits: may n of `to` join the holders other than
 * K? *bound: the place of the last holder. *n: K's n. Returns 0, ENOLCK (K
 * is gone), ENOMEM, or EIO (K is not among the holders: never, by E3).
 */
static int conv_decide(struct conversion *c, bool *fits, int64_t *bound)
{
    struct queue *q = &c->r.q;
    struct fifolock__entry *v = malloc((q->len + 1) * sizeof *v);
    size_t i, k = q->len, holders = 0, granted = 0, m = 0;
    int rc;

    if (v == NULL)
        return ENOMEM;
    for (i = 0; i < q->len; i++) {
        v[i].mode = q->v[i].mode;
        v[i].n = q->v[i].n;
        if (strcmp(q->v[i].key, c->r.key) == 0)
            k = i;
    }
    rc = fifolock__granted_prefix(v, q->len, &holders);
    if (rc == 0 && q->claim.key != NULL && q->claim.bound != 0) {
        for (i = 0; i < holders && q->v[i].at <= q->claim.bound; i++)
            ;
        holders = i;
    }
    if (rc == 0 && k == q->len) {
        fifolock__etcd_set_error("the hold's entry is gone");
        rc = ENOLCK;
    } else if (rc == 0 && k >= holders) {
        fifolock__etcd_set_error("the hold's entry is not among the holders");
        rc = EIO;
    }
    if (rc == 0) {
        c->n = q->v[k].n;
        *bound = q->v[holders - 1].at;
        for (i = 0; i < holders; i++)
            if (i != k)
                v[m++] = v[i];
        v[m].mode = c->to;
        v[m].n = c->n;
        rc = fifolock__granted_prefix(v, m + 1, &granted);
        *fits = granted == m + 1;
    }
    free(v);
    return rc;
}

/*
 * C4: the switch, one transaction: if V (`claim`, made at `claim_rev`: this
 * conversion's, or another's that is bounded) and K are still there, put
 * K' (lease, to, n, at: bound), delete K, and V if it is this conversion's.
 * Returns 0 with *token = rev(K') (also when an earlier attempt did it:
 * C6), EAGAIN (something changed: read and decide again), or an error
 * reaching etcd.
 */
static int conv_switch(struct conversion *c, const char *claim, int64_t claim_rev,
                       int64_t claim_mod, int64_t bound, int64_t *token, int64_t *revision)
{
    json_object *txn = json_object_new_object(), *cmp = json_object_new_array(),
                *success = json_object_new_array(), *failure = json_object_new_array(),
                *value = json_object_new_object(), *resp = NULL, *responses, *range, *kvs;
    char *v = NULL;
    bool ok = false;
    int rc = ENOMEM;

    if (txn == NULL || cmp == NULL || success == NULL || failure == NULL || value == NULL)
        goto fail;
    json_object_object_add(value, "mode", json_object_new_string(c->to->name));
    json_object_object_add(value, "limit", json_object_new_int64((int64_t)c->to->limit));
    json_object_object_add(value, "n", json_object_new_int64((int64_t)c->n));
    json_object_object_add(value, "at", json_object_new_int64(bound));
    v = strdup(json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN));
    if (v == NULL)
        goto fail;
    fifolock__etcd_cmp_add_create(cmp, claim, claim_rev);
    fifolock__etcd_cmp_add_mod(cmp, claim, claim_mod);
    fifolock__etcd_cmp_add_create(cmp, c->r.key, c->r.rev);
    json_object_object_add(txn, "compare", cmp);
    json_object_array_add(success, fifolock__etcd_put_op(c->r.lease, c->newkey, v));
    json_object_array_add(success, fifolock__etcd_delete_op(c->r.key));
    json_object_array_add(success, fifolock__etcd_put_op(0, c->mark, ""));
    if (strcmp(claim, c->claim) == 0) {
        json_object_array_add(success, fifolock__etcd_delete_op(c->claim));
    } else {
        /* Beside another's V: touch it, so that every other switch decided
         * before this one (with this hold still `from`) fails its comparison. */
        json_object *touch = json_object_new_object(), *put = json_object_new_object();

        json_object_object_add(put, "key", fifolock__etcd_str_b64(claim));
        json_object_object_add(put, "ignore_value", json_object_new_boolean(1));
        json_object_object_add(put, "ignore_lease", json_object_new_boolean(1));
        json_object_object_add(touch, "request_put", put);
        json_object_array_add(success, touch);
    }
    json_object_object_add(txn, "success", success);
    range = json_object_new_object();
    json_object_object_add(range, "key", fifolock__etcd_str_b64(c->newkey));
    json_object_array_add(failure, json_object_new_object());
    json_object_object_add(json_object_array_get_idx(failure, 0), "request_range", range);
    json_object_object_add(txn, "failure", failure);
    json_object_put(value);
    free(v);
    rc = conv_txn(c, txn, &ok, &resp);
    if (rc != 0)
        return rc;
    *revision = fifolock__etcd_header_revision(resp);
    if (ok) {
        *token = *revision;
    } else if (json_object_object_get_ex(resp, "responses", &responses) &&
               json_object_array_length(responses) == 1 &&
               json_object_object_get_ex(json_object_array_get_idx(responses, 0),
                                         "response_range", &range) &&
               json_object_object_get_ex(range, "kvs", &kvs) &&
               json_object_array_length(kvs) == 1) {
        /* K' exists: an attempt whose reply was lost made the switch (C6). */
        *token = fifolock__etcd_get_i64(json_object_array_get_idx(kvs, 0), "create_revision");
    } else {
        rc = EAGAIN;
    }
    json_object_put(resp);
    return rc;

fail:
    json_object_put(txn);
    json_object_put(cmp);
    json_object_put(success);
    json_object_put(failure);
    json_object_put(value);
    free(v);
    return rc;
}

/* C2: writes the bound into V, if V is still this conversion's. EAGAIN if not. */
static int conv_bound(struct conversion *c, int64_t bound)
{
    json_object *txn = json_object_new_object(), *cmp = json_object_new_array(),
                *success = json_object_new_array();
    char *value = claim_value(c->r.rev, bound);
    bool ok = false;
    int rc;

    if (txn == NULL || cmp == NULL || success == NULL || value == NULL) {
        json_object_put(txn);
        json_object_put(cmp);
        json_object_put(success);
        free(value);
        return ENOMEM;
    }
    fifolock__etcd_cmp_add_create(cmp, c->claim, c->claim_rev);
    json_object_object_add(txn, "compare", cmp);
    json_object_array_add(success, fifolock__etcd_put_op(c->r.lease, c->claim, value));
    json_object_object_add(txn, "success", success);
    free(value);
    rc = conv_txn(c, txn, &ok, NULL);
    if (rc == 0 && !ok)
        rc = EAGAIN;
    if (rc == 0)
        c->bound = bound;
    return rc;
}

/* C3's X: deletes V, or leaves it to the background thread (V's key is this call's alone). */
static void conv_withdraw(struct conversion *c)
{
    json_object *txn = json_object_new_object(), *cmp = json_object_new_array(),
                *success = json_object_new_array();
    int64_t until = fifolock__etcd_now_ms() + (c->r.s->timeout_ms < 1000 ? c->r.s->timeout_ms : 1000);
    bool ok;

    if (c->claim_rev == 0)
        return;
    if (txn != NULL && cmp != NULL && success != NULL) {
        fifolock__etcd_cmp_add_create(cmp, c->claim, c->claim_rev);
        json_object_object_add(txn, "compare", cmp);
        json_object_array_add(success, fifolock__etcd_delete_op(c->claim));
        json_object_object_add(txn, "success", success);
        c->r.until = until;
        if (conv_txn(c, txn, &ok, NULL) == 0) {
            c->claim_rev = 0;
            return;
        }
    } else {
        json_object_put(txn);
        json_object_put(cmp);
        json_object_put(success);
    }
    fifolock__etcd_add_orphan(c->r.s, c->claim);
    c->claim_rev = 0;
}

/* C3's wait: any deletion in Q after the queue read ends it (read and decide again). */
static int on_conv_message(json_object *msg, void *arg)
{
    struct conversion *c = arg;
    json_object *events;
    size_t i, n;

    if (fifolock__etcd_get_i64(msg, "compact_revision") > 0)
        return EAGAIN;
    if (json_object_object_get_ex(msg, "canceled", &events) && json_object_get_boolean(events))
        return EAGAIN;
    if (json_object_object_get_ex(msg, "created", &events) && json_object_get_boolean(events))
        return fifolock__etcd_header_revision(msg) > c->r.q.revision ? EAGAIN : 0;
    if (!json_object_object_get_ex(msg, "events", &events) ||
        !json_object_is_type(events, json_type_array))
        return 0;
    n = json_object_array_length(events);
    for (i = 0; i < n; i++) {
        json_object *kv;

        if (json_object_object_get_ex(json_object_array_get_idx(events, i), "kv", &kv) &&
            fifolock__etcd_get_i64(kv, "mod_revision") > c->r.q.revision)
            return EAGAIN;
    }
    return 0;
}

/*
 * After the switch: the hold is K' with its new token; the old one is let
 * go without a loss (its entry was deleted by the switch itself).
 */
static int conv_rehold(struct conversion *c, int64_t token, int64_t revision)
{
    struct request nr;
    struct fifolock__etcd_hold *h;
    int rc;

    memset(&nr, 0, sizeof nr);
    nr.s = c->r.s;
    nr.name = c->r.name;
    nr.key = c->newkey;
    nr.rev = token;
    nr.lease = c->r.lease;
    nr.q.revision = revision;
    rc = register_hold(&nr, NULL);
    pthread_mutex_lock(&c->r.s->mu);
    for (h = c->r.s->holds; h; h = h->next)
        if (h->releasing && !h->released && h->token == c->r.rev &&
            strcmp(h->name, c->r.name) == 0)
            break;
    if (h != NULL && rc == 0)
        h->released = true;
    else if (h != NULL && h->lost == 0) {
        h->releasing = false;   /* the session was lost: the old hold is told so */
        h->lost = c->r.s->lost ? c->r.s->lost : ENOLCK;
    }
    pthread_mutex_unlock(&c->r.s->mu);
    fifolock__etcd_wake(c->r.s);
    return rc;
}

/*
 * Marks the hold `releasing` for the switch, so that the deletion of its
 * entry is no loss and no release takes it meanwhile; false if it is no
 * longer held (released, or lost).
 */
static bool conv_pin(struct conversion *c, bool pin)
{
    struct fifolock__etcd_hold *h;
    bool ok = false;

    pthread_mutex_lock(&c->r.s->mu);
    for (h = c->r.s->holds; h; h = h->next)
        if (!h->released && h->token == c->r.rev && strcmp(h->name, c->r.name) == 0)
            break;
    if (h != NULL && pin && !h->releasing && !h->lost && !c->r.s->lost) {
        h->releasing = true;
        ok = true;
    } else if (h != NULL && !pin) {
        h->releasing = false;
        if (c->r.s->lost && h->lost == 0)
            h->lost = c->r.s->lost;     /* lose_session() passed it by */
    }
    pthread_mutex_unlock(&c->r.s->mu);
    return ok;
}

/* A step's time: the session's timeout, or up to the deadline if that is later. */
static int64_t conv_budget(fifolock_etcd *s, int64_t until)
{
    int64_t step = fifolock__etcd_now_ms() + s->timeout_ms;

    return until > step ? until : step;
}

/*
 * After a switch that got no answer: is K' there? Returns 0 with its
 * create revision (and the revision read), or an error: then the switch
 * was not made yet, and withdrawing V (X) makes sure it never is.
 */
static int conv_made(struct conversion *c, int64_t *token, int64_t *revision)
{
    json_object *req = json_object_new_object(), *resp = NULL, *kvs;
    int rc;

    if (req == NULL)
        return ENOMEM;
    json_object_object_add(req, "key", fifolock__etcd_str_b64(c->newkey));
    rc = fifolock__etcd_call(c->r.s, "/v3/kv/range", req, &resp,
                             fifolock__etcd_now_ms() + c->r.s->timeout_ms);
    json_object_put(req);
    if (rc != 0)
        return rc;
    rc = ENOENT;
    if (json_object_object_get_ex(resp, "kvs", &kvs) && json_object_array_length(kvs) == 1) {
        *token = fifolock__etcd_get_i64(json_object_array_get_idx(kvs, 0), "create_revision");
        *revision = fifolock__etcd_header_revision(resp);
        rc = 0;
    }
    json_object_put(resp);
    return rc;
}

static int convert(fifolock_etcd *s, const char *name, int64_t token, const fifolock_mode *to,
                   int64_t until, bool try_only, int64_t *new_token)
{
    struct conversion c;
    struct fifolock__etcd_hold *h;
    const fifolock_mode *known;
    char *escaped, seqs[64];
    int64_t bound = 0, got = 0, revision = 0;
    uint64_t seq;
    bool fits = false;
    int rc, claims = 0;

    fifolock__etcd_clear_error();
    if (s == NULL || name == NULL || to == NULL || name[0] == '\0')
        return EINVAL;
    if (to->name == NULL || to->is_compatible == NULL) {
        fifolock__etcd_set_error("a mode crosses the wire by its name: this one has none");
        return EINVAL;
    }
    known = fifolock__etcd_find_mode(s, to->name, to->limit);
    if (known == NULL) {
        fifolock__etcd_set_error("mode \"%s\" (limit %zu) is not in the session's table",
                                 to->name, to->limit);
        return EINVAL;
    }
    if (fifolock__never_fits(known, 1)) {
        fifolock__etcd_set_error("mode \"%s\" (limit %zu) can never be granted", to->name,
                                 to->limit);
        return EDEADLK;
    }
    memset(&c, 0, sizeof c);
    c.r.s = s;
    c.r.name = name;
    c.r.rev = token;
    c.r.until = until;
    c.to = known;
    pthread_mutex_lock(&s->mu);
    h = NULL;
    for (h = s->holds; h; h = h->next)
        if (!h->released && !h->releasing && h->token == token && strcmp(h->name, name) == 0)
            break;
    rc = h == NULL ? EPERM : h->lost ? h->lost : s->lost ? ENOLCK : 0;
    if (rc == 0) {
        c.r.key = strdup(h->key);
        c.r.lease = h->lease;
        seq = ++s->seq;
        s->seq++;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc == ENOLCK || rc == ETIMEDOUT)
        fifolock__etcd_set_error("the hold was lost");
    if (rc != 0)
        return rc;
    escaped = escape_name(name);
    if (escaped != NULL) {
        c.r.qprefix = malloc(strlen(s->prefix) + strlen(escaped) + 2);
        if (c.r.qprefix != NULL)
            sprintf(c.r.qprefix, "%s%s/", s->prefix, escaped);
    }
    free(escaped);
    rc = ENOMEM;
    if (c.r.key == NULL || c.r.qprefix == NULL)
        goto out;
    c.r.qend = fifolock__etcd_prefix_end(c.r.qprefix);
    c.claims = conv_prefix(c.r.qprefix, "c");
    snprintf(seqs, sizeof seqs, "c%016llx-%llx", (unsigned long long)c.r.lease,
             (unsigned long long)seq);
    c.claim = conv_prefix(c.r.qprefix, seqs);
    snprintf(seqs, sizeof seqs, "h%016llx-%llx", (unsigned long long)c.r.lease,
             (unsigned long long)seq + 1);
    c.newkey = conv_prefix(c.r.qprefix, seqs);
    c.claims_end = c.claims ? fifolock__etcd_prefix_end(c.claims) : NULL;
    c.mark = mark_key(c.r.qprefix);
    if (c.r.qend == NULL || c.claims == NULL || c.claim == NULL || c.newkey == NULL ||
        c.claims_end == NULL || c.mark == NULL)
        goto out;
    /* Its steps get the session's timeout even when the deadline is near or
     * past: a step cut short leaves its outcome unknown. Only the wait ends
     * at the deadline. */
    c.r.until = conv_budget(s, until);

claim:
    rc = conv_claim(&c);
    for (;;) {
        const char *claim = c.claim;
        int64_t claim_rev = c.claim_rev, claim_mod = c.r.q.claim.mod;

        if (rc != 0)
            break;
        if (c.claim_rev != 0 &&
            (c.r.q.claim.key == NULL || strcmp(c.r.q.claim.key, c.claim) != 0)) {
            /* V went with the lease (the session is lost): no wait any more. */
            fifolock__etcd_set_error("the conversion's claim was deleted");
            c.claim_rev = 0;
            rc = ENOLCK;
            break;
        }
        rc = conv_decide(&c, &fits, &bound);
        if (rc != 0)
            break;
        if (fifolock__never_fits(known, c.n)) {
            fifolock__etcd_set_error("%zu of mode \"%s\" (limit %zu) can never be granted",
                                     c.n, to->name, to->limit);
            rc = EDEADLK;
            break;
        }
        if (c.claim_rev == 0) {
            /* Another conversion's claim (or none: it just went). */
            if (c.r.q.claim.key == NULL) {
                if (++claims > 100) {
                    rc = EIO;
                    break;
                }
                goto claim;
            }
            if (c.r.q.claim.bound == 0) {
                /* Not yet bounded: it is being made; its maker decides in one step. */
                struct timespec pause = { 0, 10 * 1000000L };

                if (fifolock__etcd_now_ms() >= until) {
                    rc = try_only ? EBUSY : ETIMEDOUT;
                    break;
                }
                nanosleep(&pause, NULL);
                goto claim;
            }
            if (!fits) {
                fifolock__etcd_set_error("another conversion of the lock waits");
                rc = try_only ? EBUSY : EDEADLK;
                break;
            }
            /* The holders are frozen behind the other claim: switch beside it (C4). */
            claim = c.r.q.claim.key;
            claim_rev = c.r.q.claim.rev;
            claim_mod = c.r.q.claim.mod;
            bound = c.r.q.claim.bound;
        }
        if (fits) {
            char *other = strdup(claim);

            if (other == NULL || !conv_pin(&c, true)) {
                free(other);
                rc = other ? ENOLCK : ENOMEM;
                break;
            }
            c.r.until = conv_budget(s, until);
            rc = conv_switch(&c, other, claim_rev, claim_mod, bound, &got, &revision);
            free(other);
            if (rc != 0 && rc != EAGAIN && conv_made(&c, &got, &revision) == 0)
                rc = 0;     /* no answer, but K' is there: the switch was made */
            if (rc == 0) {
                if (claim_rev == c.claim_rev)
                    c.claim_rev = 0;    /* deleted by the switch */
                rc = conv_rehold(&c, got, revision);
                break;
            }
            conv_pin(&c, false);
            if (rc != EAGAIN)
                break;
            rc = c.claim_rev ? conv_read(&c) : 0;
            if (c.claim_rev == 0)
                goto claim;
            continue;
        }
        if (try_only) {
            rc = EBUSY;
            break;
        }
        if (c.bound == 0) {
            c.r.until = conv_budget(s, until);
            rc = conv_bound(&c, bound);
            if (rc == EAGAIN) {
                /* V is gone (its lease): the conversion can't wait any more. */
                fifolock__etcd_set_error("the conversion's claim was deleted");
                c.claim_rev = 0;
                rc = ENOLCK;
            }
            continue;
        }
        if (fifolock__etcd_interrupted(s)) {
            fifolock__etcd_set_error("the wait was interrupted");
            rc = EINTR;
            break;
        }
        c.r.until = until;
        rc = run_watch(&c.r, c.r.qprefix, c.r.qend, true, on_conv_message, &c);
        if (rc != EAGAIN)
            break;
        do {
            /* etcd out of reach for a while: the waiting goes on until the deadline. */
            rc = conv_read(&c);
        } while ((rc == ECONNREFUSED || rc == ETIMEDOUT) && fifolock__etcd_now_ms() < until);
        c.r.until = conv_budget(s, until);
    }
    if (rc != 0 && c.claim_rev != 0)
        conv_withdraw(&c);
    if (rc == 0 && new_token)
        *new_token = got;
out:
    queue_free(&c.r.q);
    free(c.r.key);
    free(c.r.qprefix);
    free(c.r.qend);
    free(c.claims);
    free(c.claims_end);
    free(c.claim);
    free(c.newkey);
    free(c.mark);
    return rc;
}

int fifolock_etcd_convert(fifolock_etcd *s, const char *name, int64_t token,
                          const fifolock_mode *to, int64_t *new_token)
{
    return fifolock_etcd_timed_convert(s, name, token, to, NULL, new_token);
}

int fifolock_etcd_try_convert(fifolock_etcd *s, const char *name, int64_t token,
                              const fifolock_mode *to, int64_t *new_token)
{
    return convert(s, name, token, to, fifolock__etcd_now_ms() + (s ? s->timeout_ms : 0), true,
                   new_token);
}

int fifolock_etcd_timed_convert(fifolock_etcd *s, const char *name, int64_t token,
                                const fifolock_mode *to, const struct timespec *deadline,
                                int64_t *new_token)
{
    int64_t until = fifolock__etcd_deadline_ms(deadline);
    int rc;

    if (refused_as_interrupted(s))
        return EINTR;
    if (until <= fifolock__etcd_now_ms()) {
        /* A deadline already past: one try, and the answer a timed wait would give. */
        rc = convert(s, name, token, to, until, true, new_token);
        return rc == EBUSY ? ETIMEDOUT : rc;
    }
    return convert(s, name, token, to, until, false, new_token);
}
