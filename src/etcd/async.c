/*
 * The etcd lock for event loops: fifolock_etcd_acquire_async() and the
 * descriptor, timeout and process() that drive it.
 *
 * The same steps as the blocking acquire (lock.c: J, D, W, C7, M, X, J2),
 * the same helpers for each (the join's transaction and answer, the
 * queue's read with its conversions' keys, D, W's handling of a watch
 * message, C7's move, the grant's registration), run as a state machine
 * instead of a thread's stack:
 *
 *   JOIN      J is in flight (a transaction, attempts over the endpoints);
 *   WATCH     W: a watch is open (W1 on the queue's deletions and, for a
 *             conversion's keys Q~, its puts too (C5); W2 on P);
 *             a read may be in flight beside it (`reading`): the watch
 *             started after the revision D used, and the queue is read
 *             again to close the gap, exactly as lock.c's on_created() does
 *             inside its callback. Messages that arrive meanwhile wait in
 *             `msgs`, so that none is applied to a list the read replaces;
 *   REREAD    W2's P changed, W1 saw a conversion's key, or a watch
 *             ended: the queue is read, then D;
 *   REKEY     C7: K, granted, has a token below the tokens' mark T; its
 *             entry moves to K'' (one transaction) before the hold is
 *             registered, so that its token is larger than every token
 *             handed out before it;
 *   WITHDRAW  X: K is deleted before the request reports its error;
 *   RENEW     J2: the session's lease was lost while the request waited:
 *             a new lease is granted (or found granted by another request);
 *   FINISHED  the outcome waits for process() to report it.
 *
 * Every transfer of every async request of a session runs on one libcurl
 * multi handle (connections reused between them), driven through one epoll
 * descriptor (libcurl's sockets, CURLMOPT_SOCKETFUNCTION) and one timer
 * (CURLMOPT_TIMERFUNCTION), by process() on the caller's thread: no thread
 * per request. An eventfd in the same epoll set makes the descriptor
 * readable when an async call left work for process().
 *
 * Invariants:
 *   A1  a request is in s->async->reqs from acquire_async() until its done
 *       callback runs or cancel returns 0; `done` runs exactly once, from
 *       process(), and only for a request still in the list;
 *   A2  at most one unary call (`curl` in the multi, or waiting for its
 *       resume time) and at most one watch per request;
 *   A3  a request reports 0 only after its hold is registered in the
 *       session (fifolock_etcd_release()/check() see it), and an error only
 *       after K was deleted or handed to the background thread (orphan).
 */
#include "etcd_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* While a watch runs, process() looks this often for a failed member or a lost session. */
#define TICK_MS 200

enum state { JOIN, WATCH, REREAD, REKEY, WITHDRAW, RENEW, FINISHED };

struct fifolock_etcd_request {
    struct fifolock_etcd_request *next;
    fifolock_etcd *s;
    struct request r;           /* lock.c's request: K, the queue, rev(K) */
    char *name;
    const fifolock_mode *known;
    size_t n;
    int64_t until;              /* the caller's deadline, ms */
    fifolock_etcd_done_fn *done;
    void *arg;
    enum state state;
    bool waited;                /* it watched: M will be needed */
    int64_t joined_at;
    int result;                 /* FINISHED: what done gets; WITHDRAW: what it will get */

    /* The unary call in flight (A2). */
    struct fifolock__etcd_call call;
    bool calling;               /* call begun, not ended */
    bool in_multi;              /* curl is in the multi handle */
    CURL *curl;
    const char *call_path;

    /* W. */
    struct fifolock__etcd_stream *watch;
    char *pkey;                 /* W2: the key watched; NULL in W1 */
    bool reading;               /* WATCH: the gap's read is in flight */
    json_object **msgs;         /* messages not yet applied */
    size_t nmsgs, capmsgs;

    /* C7: K'' while its transaction is in flight (REKEY), else NULL. */
    char *newkey;

    /* J2. */
    int64_t lost_lease;
    int64_t new_lease;
    int64_t grant_sent_boot;
};

struct fifolock__etcd_async {
    CURLM *multi;
    int epfd;
    int evfd;
    int64_t curl_timer_ms;      /* when libcurl wants its timeout action; -1: never */
    struct fifolock_etcd_request *reqs;
};

/* ---- the multi handle, the descriptor, the timer ---- */

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct fifolock__etcd_async *a = userp;
    struct epoll_event ev;

    (void)e, (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);    /* EBADF if closed already */
        return 0;
    }
    memset(&ev, 0, sizeof ev);
    ev.data.fd = fd;
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    if (epoll_ctl(a->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct fifolock__etcd_async *a = userp;

    (void)multi;
    a->curl_timer_ms = timeout_ms < 0 ? -1 : fifolock__etcd_now_ms() + timeout_ms;
    return 0;
}

static void async_free(fifolock_etcd *s);

/* The session's async state, made on first use. 0, ENOMEM, EMFILE, ENFILE. */
static int async_state(fifolock_etcd *s, struct fifolock__etcd_async **out)
{
    struct fifolock__etcd_async *a = s->async;
    struct epoll_event ev;

    if (a != NULL) {
        *out = a;
        return 0;
    }
    a = calloc(1, sizeof *a);
    if (a == NULL)
        return ENOMEM;
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    a->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a->multi = curl_multi_init();
    a->curl_timer_ms = -1;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = a->evfd;
    if (a->epfd < 0 || a->evfd < 0 || a->multi == NULL ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->evfd, &ev) != 0) {
        int rc = a->multi == NULL ? ENOMEM : errno;

        if (a->epfd >= 0)
            close(a->epfd);
        if (a->evfd >= 0)
            close(a->evfd);
        if (a->multi)
            curl_multi_cleanup(a->multi);
        free(a);
        fifolock__etcd_set_error("the event loop's descriptors: %s", strerror(rc));
        return rc;
    }
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
    s->async = a;
    s->async_free = async_free;
    *out = a;
    return 0;
}

/* Makes the descriptor readable: process() has work (A1's report, a new request). */
static void poke(struct fifolock__etcd_async *a)
{
    uint64_t one = 1;
    ssize_t w = write(a->evfd, &one, sizeof one);

    (void)w;
}

/* ---- one request's transfers ---- */

static void stop_call(struct fifolock_etcd_request *q)
{
    if (q->in_multi) {
        curl_multi_remove_handle(q->s->async->multi, q->curl);
        q->in_multi = false;
    }
    if (q->calling) {
        fifolock__etcd_call_end(&q->call);
        q->calling = false;
    }
}

static void drop_msgs(struct fifolock_etcd_request *q)
{
    size_t i;

    for (i = 0; i < q->nmsgs; i++)
        json_object_put(q->msgs[i]);
    q->nmsgs = 0;
}

static void stop_watch(struct fifolock_etcd_request *q)
{
    if (q->watch) {
        curl_multi_remove_handle(q->s->async->multi, q->watch->curl);
        fifolock__etcd_stream_free(q->watch);
        q->watch = NULL;
    }
    free(q->pkey);
    q->pkey = NULL;
    q->reading = false;
    drop_msgs(q);
}

/* Starts the call's next attempt (now, or at its resume time: process() looks). */
static int attempt(struct fifolock_etcd_request *q)
{
    int rc;

    if (q->call.resume_ms > fifolock__etcd_now_ms())
        return 0;
    rc = fifolock__etcd_call_attempt(&q->call, q->curl);
    if (rc != 0)
        return rc;
    curl_easy_setopt(q->curl, CURLOPT_PRIVATE, q);
    if (curl_multi_add_handle(q->s->async->multi, q->curl) != CURLM_OK)
        return ENOMEM;
    q->in_multi = true;
    return 0;
}

static void call_done(struct fifolock_etcd_request *q, int rc, json_object *resp);

/* Begins a unary call of the request; its answer goes to call_done(). */
static void begin_call(struct fifolock_etcd_request *q, const char *path, json_object *req,
                       int64_t until)
{
    int rc = ENOMEM;

    stop_call(q);
    if (q->curl == NULL)
        q->curl = curl_easy_init();
    if (req != NULL && q->curl != NULL) {
        rc = fifolock__etcd_call_begin(&q->call, q->s, path, req, until);
        if (rc == 0) {
            q->calling = true;
            q->call_path = path;
            rc = attempt(q);
        }
    }
    json_object_put(req);
    if (rc != 0) {
        stop_call(q);
        call_done(q, rc, NULL);
    }
}

/* ---- the steps ---- */

static void decide_and_wait(struct fifolock_etcd_request *q);
static void fail(struct fifolock_etcd_request *q, int rc);

static void finish(struct fifolock_etcd_request *q, int result)
{
    stop_watch(q);
    stop_call(q);
    q->state = FINISHED;
    q->result = result;
}

static void join(struct fifolock_etcd_request *q)
{
    int64_t until = q->until;

    /* A join gets the session's timeout even when the deadline is past: try once. */
    if (until < fifolock__etcd_now_ms() + 1)
        until = fifolock__etcd_now_ms() + q->s->timeout_ms;
    q->state = JOIN;
    begin_call(q, "/v3/kv/txn", fifolock__etcd_join_txn(&q->r), until);
}

static void reread(struct fifolock_etcd_request *q)
{
    const char *path;
    json_object *req = fifolock__etcd_reread_request(&q->r, &path);

    begin_call(q, path, req, q->until);
}

/* The hold is registered (A3), then reported by process(). M with it, unless C7 made K''. */
static void register_hold(struct fifolock_etcd_request *q, bool rekeyed)
{
    char *mark_value = NULL;
    int rc = 0;

    /* M, by the background thread: someone may have seen K waiting after rev(K). */
    if (!rekeyed && (q->waited || q->joined_at != q->r.rev)) {
        mark_value = fifolock__etcd_entry_value(q->known, q->n, true);
        if (mark_value == NULL)
            rc = ENOMEM;
    }
    if (rc == 0)
        rc = fifolock__etcd_register_hold(&q->r, mark_value);
    if (rc != 0) {
        fail(q, rc);
        return;
    }
    finish(q, 0);
}

/* The grant: C7's move first if K's token is below the mark (REKEY), then the hold. */
static void grant(struct fifolock_etcd_request *q)
{
    json_object *txn;

    stop_watch(q);
    stop_call(q);
    if (!fifolock__etcd_must_rekey(&q->r)) {
        register_hold(q, false);
        return;
    }
    free(q->newkey);
    txn = fifolock__etcd_rekey_txn(&q->r, q->known, q->n, &q->newkey);
    q->state = REKEY;
    begin_call(q, "/v3/kv/txn", txn, q->until);     /* NULL txn: ENOMEM, to call_done() */
}

static json_object *watch_request(const char *key, const char *range_end)
{
    json_object *req = json_object_new_object(), *create = json_object_new_object();

    if (req == NULL || create == NULL) {
        json_object_put(req);
        json_object_put(create);
        return NULL;
    }
    json_object_object_add(create, "key", fifolock__etcd_str_b64(key));
    if (range_end) {
        /* W1 takes puts too: a conversion's claim is one (C5). */
        json_object_object_add(create, "range_end", fifolock__etcd_str_b64(range_end));
    }
    json_object_object_add(req, "create_request", create);
    return req;
}

/* A watch message, in libcurl's write callback: kept for process() (WATCH). */
static int on_watch_message(json_object *msg, void *arg)
{
    struct fifolock_etcd_request *q = arg;

    if (q->nmsgs == q->capmsgs) {
        size_t cap = q->capmsgs ? 2 * q->capmsgs : 8;
        json_object **v = realloc(q->msgs, cap * sizeof *v);

        if (v == NULL)
            return ENOMEM;
        q->msgs = v;
        q->capmsgs = cap;
    }
    q->msgs[q->nmsgs++] = json_object_get(msg);
    return 0;
}

/* W: watches what can change D's answer (W1: the queue, deletions and Q~; W2: P). */
static void start_watch(struct fifolock_etcd_request *q, bool ahead_held)
{
    json_object *req;

    q->state = WATCH;
    q->reading = false;
    if (ahead_held) {
        req = watch_request(q->r.qprefix, q->r.qend);
    } else {
        q->pkey = strdup(q->r.q.v[q->r.q.len - 2].key);
        req = q->pkey ? watch_request(q->pkey, NULL) : NULL;
    }
    q->watch = req ? fifolock__etcd_stream_new(q->s, "/v3/watch", req, on_watch_message, q)
                   : NULL;
    json_object_put(req);
    if (q->watch == NULL) {
        fail(q, ENOMEM);
        return;
    }
    curl_easy_setopt(q->watch->curl, CURLOPT_PRIVATE, q);
    if (curl_multi_add_handle(q->s->async->multi, q->watch->curl) != CURLM_OK) {
        fifolock__etcd_stream_free(q->watch);
        q->watch = NULL;
        fail(q, ENOMEM);
    }
}

static bool lease_lost(struct fifolock_etcd_request *q)
{
    fifolock_etcd *s = q->s;
    bool lost;

    pthread_mutex_lock(&s->mu);
    lost = s->lost || s->lease != q->r.lease;
    pthread_mutex_unlock(&s->mu);
    return lost;
}

/* D, then W if not held. */
static void decide_and_wait(struct fifolock_etcd_request *q)
{
    bool held = false, ahead_held = false;
    int rc;

    stop_watch(q);
    rc = fifolock__etcd_decide(&q->r, &held, &ahead_held);
    if (rc != 0) {
        fail(q, rc);
        return;
    }
    if (held) {
        grant(q);
        return;
    }
    if (lease_lost(q)) {
        /* L1/L2 while it waited: K is gone or going with the lease. */
        fifolock__etcd_set_error("the session's lease was lost");
        fail(q, ENOLCK);
        return;
    }
    if (fifolock__etcd_now_ms() >= q->until) {
        fail(q, ETIMEDOUT);
        return;
    }
    q->waited = true;
    start_watch(q, ahead_held);
}

/* X, then the report (or J2). */
static void fail(struct fifolock_etcd_request *q, int rc)
{
    json_object *req = json_object_new_object();
    int64_t until = fifolock__etcd_now_ms() + (q->s->timeout_ms < 1000 ? q->s->timeout_ms : 1000);

    stop_watch(q);
    stop_call(q);
    q->state = WITHDRAW;
    q->result = rc;
    if (req != NULL)
        json_object_object_add(req, "key", fifolock__etcd_str_b64(q->r.key));
    begin_call(q, "/v3/kv/deleterange", req, until);
}

/*
 * J2: K went with the session's lease while it waited; it held nothing. A
 * new lease (unless another request of the session gave it one), then J
 * with a new key, at the tail, while the deadline allows.
 */
static void renew(struct fifolock_etcd_request *q)
{
    fifolock_etcd *s = q->s;
    bool done;
    int64_t now = fifolock__etcd_now_ms();

    pthread_mutex_lock(&s->mu);
    done = s->lease != q->lost_lease && !s->lost;
    pthread_mutex_unlock(&s->mu);
    if (done) {
        fifolock__etcd_request_rejoin(&q->r);
        q->waited = true;
        join(q);
        return;
    }
    if (now >= q->until) {
        fifolock__etcd_set_error("the session's lease was lost while it waited, and "
                                 "etcd gave no new one before the deadline");
        finish(q, ETIMEDOUT);
        return;
    }
    q->state = RENEW;
    if (q->new_lease == 0)
        q->new_lease = fifolock__etcd_new_lease_id();   /* the same for every try */
    q->grant_sent_boot = fifolock__etcd_boot_ms();
    begin_call(q, "/v3/lease/grant", fifolock__etcd_grant_request(s, q->new_lease),
               q->until - now < s->timeout_ms ? q->until : now + s->timeout_ms);
}

/* The answer to J2's grant (which this takes). */
static void renewed(struct fifolock_etcd_request *q, int rc, json_object *resp)
{
    int64_t safe;

    rc = fifolock__etcd_grant_answer(q->s, q->new_lease, rc, resp, q->grant_sent_boot, &safe);
    if (rc == 0) {
        fifolock__etcd_renewed(q->s, q->lost_lease, q->new_lease, safe);
        q->new_lease = 0;
        renew(q);   /* the session has a new lease now: J with it */
        return;
    }
    if (rc == ECONNREFUSED || rc == ETIMEDOUT) {
        /* etcd is still away (the call tried for a whole budget): again,
         * with the same ID, while the deadline allows. */
        renew(q);
        return;
    }
    finish(q, rc);
}

/* After X: the report, or J2 when the lease went while it waited. */
static void withdrawn(struct fifolock_etcd_request *q, int rc)
{
    if (rc != 0)
        fifolock__etcd_add_orphan(q->s, q->r.key);  /* the background thread deletes it */
    if (q->result == ENOLCK && fifolock__etcd_now_ms() < q->until && lease_lost(q)) {
        q->lost_lease = q->r.lease;
        renew(q);
        return;
    }
    finish(q, q->result);
}

/* A unary call of the request ended: 0 with resp (which this takes), or its error. */
static void call_done(struct fifolock_etcd_request *q, int rc, json_object *resp)
{
    stop_call(q);
    switch (q->state) {
    case JOIN:
        rc = fifolock__etcd_join_answer(&q->r, rc, resp);
        if (rc != 0) {
            fail(q, rc);    /* did the put happen? Unknown: withdraw */
            break;
        }
        q->joined_at = q->r.q.revision;
        decide_and_wait(q);
        break;
    case WATCH:
    case REREAD: {
        bool gap = q->state == WATCH;

        rc = fifolock__etcd_reread_answer(&q->r, rc, resp);
        if (rc == ECONNREFUSED || rc == ETIMEDOUT) {
            /* etcd out of reach for a while: the waiting goes on until the deadline. */
            if (fifolock__etcd_now_ms() >= q->until)
                fail(q, ETIMEDOUT);
            else
                decide_and_wait(q);
            break;
        }
        if (rc != 0) {
            fail(q, rc);
            break;
        }
        if (gap) {
            /* The watch's gap is closed: D again on the fresh queue. */
            bool held = false, ahead_held = false;

            q->reading = false;
            rc = fifolock__etcd_decide(&q->r, &held, &ahead_held);
            if (rc != 0)
                fail(q, rc);
            else if (held)
                grant(q);
            else if (q->pkey && (ahead_held ||
                                 strcmp(q->r.q.v[q->r.q.len - 2].key, q->pkey) != 0))
                decide_and_wait(q);     /* watch what is ahead now */
            break;
        }
        decide_and_wait(q);
        break;
    }
    case REKEY: {
        char *newkey = q->newkey;

        q->newkey = NULL;
        if (newkey == NULL) {
            json_object_put(resp);
            rc = rc != 0 ? rc : ENOMEM;
        } else {
            rc = fifolock__etcd_rekey_answer(&q->r, newkey, rc, resp);
        }
        if (rc != 0)
            fail(q, rc);
        else
            register_hold(q, true);
        break;
    }
    case WITHDRAW:
        json_object_put(resp);
        withdrawn(q, rc);
        break;
    case RENEW:
        renewed(q, rc, resp);
        break;
    case FINISHED:
        json_object_put(resp);
        break;
    }
}

/* Applies the watch's messages in order, while no read is in flight. */
static void apply_msgs(struct fifolock_etcd_request *q)
{
    while (q->state == WATCH && !q->reading && q->nmsgs > 0) {
        json_object *msg = q->msgs[0], *flag;
        int rc;

        q->nmsgs--;
        memmove(q->msgs, q->msgs + 1, q->nmsgs * sizeof *q->msgs);
        if (json_object_object_get_ex(msg, "created", &flag) && json_object_get_boolean(flag)) {
            /* W started after R: read again first, so that no change between is
             * missed; the messages after this one wait for the read (lock.c's
             * on_created() reads inside the callback, to the same effect). */
            bool gap = fifolock__etcd_header_revision(msg) > q->r.q.revision;

            json_object_put(msg);
            if (gap) {
                q->reading = true;
                reread(q);
            }
            continue;
        }
        rc = fifolock__etcd_wait_message(&q->r, q->pkey, msg);
        json_object_put(msg);
        if (rc == 0)
            continue;
        if (rc == FIFOLOCK__ETCD_HELD) {
            grant(q);
        } else if (rc == FIFOLOCK__ETCD_CHANGED || rc == EAGAIN) {
            stop_watch(q);
            q->state = REREAD;
            reread(q);
        } else {
            fail(q, rc);
        }
        return;
    }
}

/* The watch's transfer ended (as lock.c's run_watch() reads its end). */
static void watch_ended(struct fifolock_etcd_request *q, CURLcode code)
{
    struct fifolock__etcd_stream *st = q->watch;

    if (st->endpoint_failed) {
        /* Its member failed: read and watch again at once, elsewhere. */
        fifolock__etcd_set_error("watch: %s", st->why[0] ? st->why : "its member failed");
        fifolock__etcd_stream_failed(st, code);
    } else if (st->stop && st->stop != EAGAIN) {
        fail(q, st->stop);
        return;
    } else if (code != CURLE_OK && st->stop == 0) {
        fifolock__etcd_set_error("watch: %s", st->errbuf[0] ? st->errbuf
                                                         : curl_easy_strerror(code));
        fifolock__etcd_stream_failed(st, code);
    }
    stop_watch(q);
    stop_call(q);
    q->state = REREAD;
    reread(q);
}

/* What process() checks of a watching request besides its transfers. */
static void check_watch(struct fifolock_etcd_request *q, int64_t now)
{
    fifolock_etcd *s = q->s;
    bool lost, stalled = false;

    if (now >= q->until) {
        fifolock__etcd_set_error("the deadline passed");
        fail(q, ETIMEDOUT);
        return;
    }
    pthread_mutex_lock(&s->mu);
    lost = s->lost != 0 || s->lease != q->r.lease;
    if (!lost && q->watch)
        stalled = fifolock__etcd_stream_stalled(q->watch);
    pthread_mutex_unlock(&s->mu);
    if (lost) {
        fifolock__etcd_set_error("the session's lease was lost");
        fail(q, ENOLCK);
    } else if (stalled) {
        q->watch->endpoint_failed = true;
        watch_ended(q, CURLE_OK);
    }
}

/* ---- the API ---- */

static struct fifolock_etcd_request *find(struct fifolock__etcd_async *a,
                                          struct fifolock_etcd_request *req,
                                          struct fifolock_etcd_request ***link)
{
    struct fifolock_etcd_request **l;

    for (l = &a->reqs; *l; l = &(*l)->next)
        if (*l == req) {
            if (link)
                *link = l;
            return req;
        }
    return NULL;
}

static void free_request(struct fifolock_etcd_request *q)
{
    stop_watch(q);
    stop_call(q);
    if (q->curl)
        curl_easy_cleanup(q->curl);
    fifolock__etcd_request_free(&q->r);
    free(q->newkey);
    free(q->msgs);
    free(q->name);
    free(q);
}

int fifolock_etcd_acquire_async(fifolock_etcd *s, const char *name, const fifolock_mode *mode,
                                size_t n, const struct timespec *deadline,
                                fifolock_etcd_done_fn *done, void *arg,
                                fifolock_etcd_request **req)
{
    struct fifolock__etcd_async *a = NULL; /* set when async_state() returns 0 */
    struct fifolock_etcd_request *q;
    int rc;

    fifolock__etcd_clear_error();
    if (s == NULL || done == NULL || req == NULL)
        return EINVAL;
    rc = async_state(s, &a);
    if (rc != 0)
        return rc;
    q = calloc(1, sizeof *q);
    if (q == NULL)
        return ENOMEM;
    q->name = name ? strdup(name) : NULL;
    if (name != NULL && q->name == NULL) {
        free(q);
        return ENOMEM;
    }
    rc = fifolock__etcd_request_init(&q->r, s, q->name, mode, n,
                                     fifolock__etcd_deadline_ms(deadline), &q->known);
    if (rc != 0) {
        free(q->name);
        free(q);
        return rc;
    }
    q->s = s;
    q->n = n;
    q->until = q->r.until;
    q->done = done;
    q->arg = arg;
    q->next = a->reqs;
    a->reqs = q;
    join(q);
    *req = q;
    poke(a);
    return 0;
}

int fifolock_etcd_cancel(fifolock_etcd *s, fifolock_etcd_request *req)
{
    struct fifolock_etcd_request **link, *q;

    fifolock__etcd_clear_error();
    if (s == NULL || req == NULL || s->async == NULL || (q = find(s->async, req, &link)) == NULL)
        return EINVAL;
    *link = q->next;
    if (q->state == FINISHED && q->result == 0) {
        /* Granted, not yet reported: the hold goes, as a release would. */
        struct fifolock__etcd_hold *h;

        pthread_mutex_lock(&s->mu);
        for (h = s->holds; h; h = h->next)
            if (!h->released && !h->releasing && h->token == q->r.rev &&
                strcmp(h->key, q->r.key) == 0)
                h->released = true;     /* the background thread unlinks it */
        pthread_mutex_unlock(&s->mu);
        fifolock__etcd_add_orphan(s, q->r.key);
    } else if (q->state != FINISHED && q->r.key != NULL) {
        /* X, by the background thread: the caller's loop does not wait for it. */
        fifolock__etcd_add_orphan(s, q->r.key);
        if (q->newkey != NULL)
            fifolock__etcd_add_orphan(s, q->newkey);  /* C7 in flight: K'' may exist */
    }
    free_request(q);
    poke(s->async);
    return 0;
}

int fifolock_etcd_fd(fifolock_etcd *s)
{
    struct fifolock__etcd_async *a = NULL; /* set when async_state() returns 0 */
    int rc;

    if (s == NULL) {
        errno = EINVAL;
        return -1;
    }
    rc = async_state(s, &a);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return a->epfd;
}

int fifolock_etcd_timeout(fifolock_etcd *s)
{
    struct fifolock__etcd_async *a = s ? s->async : NULL;
    struct fifolock_etcd_request *q;
    int64_t now = fifolock__etcd_now_ms(), at = -1;

    if (a == NULL)
        return -1;
#define SOONER(t) do { if ((t) >= 0 && (at < 0 || (t) < at)) at = (t); } while (0)
    SOONER(a->curl_timer_ms);
    for (q = a->reqs; q; q = q->next) {
        if (q->state == FINISHED || (q->nmsgs > 0 && !q->reading))
            SOONER(now);
        if (q->calling && !q->in_multi)
            SOONER(q->call.resume_ms);
        if (q->state == WATCH || q->state == REREAD) {
            if (q->until != FIFOLOCK__ETCD_FOREVER)
                SOONER(q->until);
            SOONER(now + TICK_MS);
        }
    }
#undef SOONER
    if (at < 0)
        return -1;
    if (at <= now)
        return 0;
    return at - now > INT_MAX ? INT_MAX : (int)(at - now);
}

int fifolock_etcd_process(fifolock_etcd *s)
{
    struct fifolock__etcd_async *a = NULL; /* set when async_state() returns 0 */
    struct fifolock_etcd_request *q;
    struct epoll_event evs[64];
    CURLMsg *m;
    uint64_t count;
    int64_t now;
    int i, n, running, left;

    if (s == NULL)
        return EINVAL;
    a = s->async;
    if (a == NULL)
        return 0;
    if (read(a->evfd, &count, sizeof count) < 0) {
        /* EAGAIN: nothing was poked */
    }
    n = epoll_wait(a->epfd, evs, 64, 0);
    for (i = 0; i < n; i++) {
        int flags = 0;

        if (evs[i].data.fd == a->evfd)
            continue;
        if (evs[i].events & EPOLLIN)
            flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(a->multi, evs[i].data.fd, flags, &running);
    }
    if (a->curl_timer_ms >= 0 && fifolock__etcd_now_ms() >= a->curl_timer_ms) {
        a->curl_timer_ms = -1;
        curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    /* Messages first: a watch's last ones come before its end. */
    for (q = a->reqs; q; q = q->next)
        apply_msgs(q);
    while ((m = curl_multi_info_read(a->multi, &left)) != NULL) {
        CURL *easy = m->easy_handle;
        CURLcode code = m->data.result;

        if (m->msg != CURLMSG_DONE)
            continue;
        q = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&q);
        if (q == NULL)
            continue;
        if (q->in_multi && easy == q->curl) {
            json_object *resp = NULL;
            int rc;

            curl_multi_remove_handle(a->multi, easy);
            q->in_multi = false;
            rc = fifolock__etcd_call_result(&q->call, easy, code, &resp);
            if (rc == EAGAIN) {
                rc = attempt(q);    /* or later, at its resume time */
                if (rc == 0)
                    continue;
            }
            call_done(q, rc, resp);
        } else if (q->watch && easy == q->watch->curl) {
            apply_msgs(q);
            if (q->watch && easy == q->watch->curl && q->state == WATCH)
                watch_ended(q, code);
        }
    }
    now = fifolock__etcd_now_ms();
    for (q = a->reqs; q; q = q->next) {
        if (q->calling && !q->in_multi && q->call.resume_ms <= now) {
            int rc = attempt(q);

            if (rc != 0)
                call_done(q, rc, NULL);
        }
        apply_msgs(q);
        if (q->state == WATCH || q->state == REREAD)
            check_watch(q, now);
    }
    /* The reports, last (A1): a callback may acquire or cancel. */
    for (;;) {
        struct fifolock_etcd_request **link;

        for (link = &a->reqs; *link && (*link)->state != FINISHED; link = &(*link)->next)
            ;
        if (*link == NULL)
            break;
        q = *link;
        *link = q->next;
        q->done(q, q->result, q->result == 0 ? q->r.rev : 0, q->arg);
        free_request(q);
    }
    return 0;
}

/* s->async_free: the session's async requests (no callback runs) and their state. */
static void async_free(fifolock_etcd *s)
{
    struct fifolock__etcd_async *a = s->async;

    if (a == NULL)
        return;
    while (a->reqs) {
        struct fifolock_etcd_request *q = a->reqs;

        a->reqs = q->next;
        free_request(q);
    }
    curl_multi_cleanup(a->multi);
    close(a->epfd);
    close(a->evfd);
    free(a);
    s->async = NULL;
    s->async_free = NULL;
}
