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
 * the queue and, once granted, the fencing token. Nothing else is stored:
 * who holds follows from the queue, as in src/rule.c.
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
 * tests/etcd/lock.pml models these steps with clients that die or withdraw
 * anywhere, and spin checks E3, exclusion and E4 (tests/etcd/run_spin.sh).
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

static void queue_clear(struct queue *q)
{
    size_t i;

    for (i = 0; i < q->len; i++)
        free(q->v[i].key);
    q->len = 0;
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
        e->rev = rev;
        e->key = fifolock__etcd_get_b64(kv, "key", NULL);
        if (e->key == NULL)
            return ENOMEM;
        value = fifolock__etcd_get_b64(kv, "value", NULL);
        parse_value(s, value, e);
        free(value);
        q->len++;
    }
    /* The gateway sorted by create revision; entries from a W1 batch stay in order. */
    return 0;
}

static int64_t header_revision(json_object *obj)
{
    json_object *header;

    return json_object_object_get_ex(obj, "header", &header)
               ? fifolock__etcd_get_i64(header, "revision")
               : 0;
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

static json_object *compare_create(const char *key, int64_t rev)
{
    json_object *c = json_object_new_object(), *list = json_object_new_array();

    json_object_object_add(c, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(c, "target", json_object_new_string("CREATE"));
    json_object_object_add(c, "result", json_object_new_string("EQUAL"));
    json_object_object_add(c, "create_revision", fifolock__etcd_i64(rev));
    json_object_array_add(list, c);
    return list;
}

static json_object *put_op(int64_t lease, const char *key, const char *value)
{
    json_object *op = json_object_new_object(), *put = json_object_new_object();

    json_object_object_add(put, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(put, "value", fifolock__etcd_str_b64(value));
    json_object_object_add(put, "lease", fifolock__etcd_i64(lease));
    json_object_object_add(op, "request_put", put);
    return op;
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
    json_object_object_add(txn, "compare", compare_create(r->key, 0));
    json_object_array_add(success, put_op(r->lease, r->key, r->value));
    json_object_array_add(success, range_op(r->qprefix, r->qend));
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
    r->q.revision = header_revision(resp);
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
out:
    json_object_put(resp);
    return rc;
}

json_object *fifolock__etcd_reread_request(struct request *r, const char **path)
{
    *path = "/v3/kv/range";
    return range_request(r->qprefix, r->qend, r->rev);
}

/* W2's read: the queue up to rev(K). ENOLCK if K is gone. */
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
    if (rc == ENOENT)
        rc = EIO;
    if (rc != 0)
        return rc;
    r->q.revision = header_revision(resp);
    rc = queue_fill(r->s, &r->q, resp, r->rev);
    json_object_put(resp);
    if (rc == 0 && (r->q.len == 0 || strcmp(r->q.v[r->q.len - 1].key, r->key) != 0)) {
        fifolock__etcd_set_error("the request's entry was deleted while it waited");
        rc = ENOLCK;
    }
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

int fifolock__etcd_mark(fifolock_etcd *s, const char *key, int64_t token, int64_t lease,
                        const char *value, int64_t until_ms)
{
    json_object *txn = json_object_new_object(), *success = json_object_new_array(), *resp = NULL,
                *succeeded;
    int rc;

    if (txn == NULL || success == NULL) {
        json_object_put(txn);
        json_object_put(success);
        return ENOMEM;
    }
    json_object_object_add(txn, "compare", compare_create(key, token));
    json_object_array_add(success, put_op(lease, key, value));
    json_object_object_add(txn, "success", success);
    rc = fifolock__etcd_call(s, "/v3/kv/txn", txn, &resp, until_ms);
    json_object_put(txn);
    if (rc == ENOENT)
        rc = EIO;
    if (rc != 0)
        return rc;
    rc = json_object_object_get_ex(resp, "succeeded", &succeeded) &&
                 json_object_get_boolean(succeeded)
             ? 0
             : ENOLCK;
    json_object_put(resp);
    return rc;
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

    if (header_revision(msg) <= r->q.revision)
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
        json_object *kv;
        char *key;

        if (!json_object_object_get_ex(json_object_array_get_idx(events, i), "kv", &kv))
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
    if (header_revision(msg) > r->q.revision)
        r->q.revision = header_revision(msg);
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
            rc = run_watch(&r, r.qprefix, r.qend, true, on_wait_message, &w);
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

        if (waited || joined_at != r.rev) {
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

int fifolock_etcd_acquire_n(fifolock_etcd *s, const char *name, const fifolock_mode *mode,
                            size_t n, const struct timespec *deadline, int64_t *token)
{
    int64_t until = fifolock__etcd_deadline_ms(deadline);
    int rc;

    if (s != NULL && fifolock__etcd_interrupted(s)) {
        /* Interrupted before it began: nothing is sent, nothing is left. */
        fifolock__etcd_clear_error();
        fifolock__etcd_set_error("the session is interrupted");
        return EINTR;
    }
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
