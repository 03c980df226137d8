/*
 * Private to libfifolock_etcd: the session, the wire (wire.c: libcurl and
 * json-c over etcd's JSON gateway) and the background thread (session.c)
 * that lock.c's protocol relies on.
 *
 * THE LAYERS. A file may call the non-static functions of the files after
 * its arrow, all below it, never of one above, so that no two files call
 * into each other:
 *
 *   async.c    the non-blocking API       -> lock.c, session.c, kv.c, wire.c
 *   lock.c     the lock protocol          -> session.c, kv.c, modes.c, wire.c
 *   session.c  lease, background thread   -> kv.c, wire.c
 *   kv.c       etcd's verbs (step M's put) -> wire.c
 *   modes.c    modes by name              -> (none)
 *   wire.c     requests, streams, JSON    -> (none)
 *
 * Where a lower file must reach a higher one it is handed a pointer: the
 * session frees async.c's state through s->async_free, set by async.c.
 */
#ifndef FIFOLOCK_ETCD_INTERNAL_H
#define FIFOLOCK_ETCD_INTERNAL_H

#include "fifolock_etcd.h"
#include "internal.h"

#include <curl/curl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>

/* A hold of the session, watched by the background thread for its loss. */
struct fifolock__etcd_hold {
    struct fifolock__etcd_hold *next;
    char *name;             /* the caller's lock name */
    char *key;              /* the entry's etcd key (NUL-terminated, no NUL inside) */
    int64_t token;          /* the entry's create revision */
    int64_t lease;          /* the lease its entry was put with */
    int64_t watch_from;     /* the watch must see every event from this revision */
    int lost;               /* 0, or ENOLCK / ETIMEDOUT once lost */
    bool reported;          /* the lost callback ran (or will, for this loss) */
    bool releasing;         /* a release deletes the key: its deletion is no loss */
    bool released;          /* gone: the background thread unlinks and frees it */
    bool need_check;        /* its watch was compacted: read the key once */
    char *mark_value;       /* step M still to do: the value marked granted (else NULL) */
    int64_t retry_at_ms;    /* no new watch before this time (after a failure) */
    struct fifolock__etcd_stream *stream;   /* its watch, owned by the background thread */
};

/* A key to delete that a call could not delete itself (etcd unreachable). */
struct fifolock__etcd_orphan {
    struct fifolock__etcd_orphan *next;
    char *key;
};

/* A pooled libcurl easy handle: each keeps its connection for reuse. */
struct fifolock__etcd_http {
    struct fifolock__etcd_http *next;
    CURL *curl;
};

struct fifolock__etcd_sem {
    struct fifolock__etcd_sem *next;
    fifolock_mode mode;
};

struct fifolock_etcd {
    /* Set by open, read-only afterwards. */
    char **endpoints;
    size_t nendpoints;
    char *prefix;
    const fifolock_mode **modes;
    size_t nmodes;
    fifolock_etcd_lost_fn *lost_fn;
    void *lost_arg;
    int timeout_ms;
    int attempt_ms;         /* one attempt at one endpoint (config.attempt_timeout_ms) */
    int ttl;
    char *cacert, *cert, *key, *user, *password;
    /*
     * fifolock_etcd_interrupt()'s state: an eventfd whose counter is nonzero
     * (readable) while the session is interrupted. Writing to it is
     * async-signal-safe; the waits poll it beside their watch's socket.
     */
    int interrupt_fd;

    pthread_mutex_t renew_mu;   /* one renewal of the lease at a time */
    pthread_mutex_t mu;     /* guards everything below */
    size_t current;         /* the endpoint that answered last */
    /*
     * Per endpoint: how many times a request found it failing (unreachable,
     * an attempt's time out, no leader). A watch notes the count of its
     * endpoint when it starts and moves on when it grows: a paused member
     * keeps a watch's connection open and silent, and a request of the
     * session (the keepalive, every TTL/3) is what notices.
     */
    unsigned *ep_fail;
    char *auth_token;       /* from etcd's Authenticate, NULL without auth */
    struct fifolock__etcd_http *pool;
    struct fifolock__etcd_hold *holds;
    struct fifolock__etcd_orphan *orphans;
    struct fifolock__etcd_sem *sems;
    size_t nsems;
    int64_t lease;          /* the session's lease; replaced when a waiter renews it */
    int64_t revoke;         /* a lost lease the background thread still revokes, or 0 */
    uint64_t seq;           /* makes each request's key unique */
    int64_t safe_until_ms;  /* CLOCK_BOOTTIME ms: last acknowledged keepalive's send + TTL */
    int lost;               /* 0, or why the lease is lost (ENOLCK, ETIMEDOUT): sticky */
    bool stopping;
    bool opening;           /* fifolock_etcd_open() runs: a failure may be a scheme mismatch */
    bool need_auth;         /* a watch was refused for its token: authenticate again */

    pthread_t thread;
    CURLM *multi;           /* the background thread's transfers */
    /* The non-blocking API's state (async.c): made on its first use, then
     * touched only by the one thread that calls it at a time. */
    struct fifolock__etcd_async *async;
    /*
     * Frees `async` (its requests, no callback runs), installed by async.c
     * with it: the session's close calls it without calling into async.c.
     * NULL while `async` is.
     */
    void (*async_free)(fifolock_etcd *s);
};

/* ---- time (CLOCK_MONOTONIC, milliseconds) ---- */
FIFOLOCK_HIDDEN int64_t fifolock__etcd_now_ms(void);
FIFOLOCK_HIDDEN int64_t fifolock__etcd_deadline_ms(const struct timespec *deadline);
/*
 * CLOCK_BOOTTIME, milliseconds: the clock of the lease's safety bound. Unlike
 * CLOCK_MONOTONIC it counts time the machine was suspended, during which the
 * lease runs out on the cluster all the same.
 */
FIFOLOCK_HIDDEN int64_t fifolock__etcd_boot_ms(void);
#define FIFOLOCK__ETCD_FOREVER INT64_MAX

/* ---- errors: the calling thread's detail message ---- */
FIFOLOCK_HIDDEN void fifolock__etcd_set_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
FIFOLOCK_HIDDEN void fifolock__etcd_clear_error(void);

/* ---- JSON helpers ---- */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_b64(const void *data, size_t len);
FIFOLOCK_HIDDEN json_object *fifolock__etcd_str_b64(const char *s);
FIFOLOCK_HIDDEN json_object *fifolock__etcd_i64(int64_t v);
FIFOLOCK_HIDDEN int64_t fifolock__etcd_get_i64(json_object *obj, const char *field);
/* Decodes a base64 field into a malloc'd NUL-terminated buffer; NULL if absent or bad. */
FIFOLOCK_HIDDEN char *fifolock__etcd_get_b64(json_object *obj, const char *field, size_t *len);
/* The key range of every key starting with `prefix` (etcd's "range_end"). */
FIFOLOCK_HIDDEN char *fifolock__etcd_prefix_end(const char *prefix);

/* ---- requests ---- */
/*
 * POSTs `req` to `path` (e.g. "/v3/kv/range") and stores the parsed answer
 * in *resp. Tries the endpoints in turn, retrying what may pass (refused
 * connections, a leader election) until `until_ms` or the session's
 * timeout, whichever is first. Returns 0, ENOENT (etcd said not found),
 * EEXIST (a lease ID granted already), EACCES, ECONNREFUSED, ETIMEDOUT,
 * EIO, ENOMEM; the detail goes to the thread's error message. Does not
 * take ownership of req.
 */
FIFOLOCK_HIDDEN int fifolock__etcd_call(fifolock_etcd *s, const char *path, json_object *req,
                                        json_object **resp, int64_t until_ms);

/* A growing buffer for an answer's body. */
struct fifolock__etcd_body {
    char *data;
    size_t len, cap;
};
/* A CURLOPT_WRITEFUNCTION that appends to a fifolock__etcd_body (its WRITEDATA). */
FIFOLOCK_HIDDEN size_t fifolock__etcd_collect(char *ptr, size_t size, size_t nmemb, void *arg);

/*
 * One unary call in progress: its attempts over the endpoints, as
 * fifolock__etcd_call() makes them (the one copy of the failover). For a
 * caller that runs the attempts itself on a multi handle (async.c):
 *   begin; then until it ends: attempt(curl) sets the easy handle up for
 *   the next attempt (or returns the call's final error), the transfer
 *   runs, result(curl, code) says 0 (*resp set), EAGAIN (attempt again,
 *   not before resume_ms when that is nonzero) or the final error (the
 *   thread's error message set); end frees what the call holds.
 * An expired auth token is renewed inside result(), blocking.
 */
struct fifolock__etcd_call {
    fifolock_etcd *s;
    const char *path;       /* not owned: a string literal */
    char *payload;
    int64_t until_ms;
    size_t tries, rounds, ep;
    int reauth;
    int rc;                 /* the error if the call ends now */
    int64_t resume_ms;      /* after EAGAIN: no attempt before this (0: at once) */
    struct curl_slist *hdr;
    struct fifolock__etcd_body b;
    char errbuf[CURL_ERROR_SIZE];
    char msg[400];
};
FIFOLOCK_HIDDEN int fifolock__etcd_call_begin(struct fifolock__etcd_call *c, fifolock_etcd *s,
                                              const char *path, json_object *req,
                                              int64_t until_ms);
FIFOLOCK_HIDDEN int fifolock__etcd_call_attempt(struct fifolock__etcd_call *c, CURL *curl);
FIFOLOCK_HIDDEN int fifolock__etcd_call_result(struct fifolock__etcd_call *c, CURL *curl,
                                               CURLcode code, json_object **resp);
FIFOLOCK_HIDDEN void fifolock__etcd_call_end(struct fifolock__etcd_call *c);

/* What every easy handle of the session shares: TLS files, TCP options, no signals. */
FIFOLOCK_HIDDEN void fifolock__etcd_configure(fifolock_etcd *s, CURL *c);

/*
 * A streaming answer (a watch): the messages arrive one JSON object at a
 * time; `on_message` gets each "result" (or the whole object when it has
 * none) and returns nonzero to end the stream.
 */
typedef int fifolock__etcd_message_fn(json_object *msg, void *arg);
struct fifolock__etcd_stream {
    CURL *curl;
    struct curl_slist *headers;
    json_tokener *tok;
    char *body;
    char errbuf[CURL_ERROR_SIZE];
    char why[CURL_ERROR_SIZE];  /* why it moves on (libcurl may overwrite errbuf) */
    fifolock__etcd_message_fn *on_message;
    void *arg;
    int stop;               /* on_message asked to end, or the stream was bad */
    size_t endpoint;
    fifolock_etcd *s;
    int64_t until_ms;       /* for the blocking watch: its deadline */
    int64_t started_ms;     /* when the stream was prepared (CLOCK_MONOTONIC) */
    unsigned fail_seen;     /* s->ep_fail[endpoint] then */
    bool created;           /* a first message came */
    bool endpoint_failed;   /* the member answered with an error: move on */
};

/* Prepares a stream on the current endpoint; NULL on ENOMEM. */
FIFOLOCK_HIDDEN struct fifolock__etcd_stream *
fifolock__etcd_stream_new(fifolock_etcd *s, const char *path, json_object *req,
                          fifolock__etcd_message_fn *on_message, void *arg);
FIFOLOCK_HIDDEN void fifolock__etcd_stream_free(struct fifolock__etcd_stream *st);
/* After a stream ended with `code`: the endpoint failed, try the next one. */
FIFOLOCK_HIDDEN void fifolock__etcd_stream_failed(struct fifolock__etcd_stream *st, CURLcode code);
/*
 * Should the stream move to another endpoint? Yes when it did not start
 * within one attempt's time (then its endpoint is marked failed), or when a
 * request found its endpoint failing since it started. Under s->mu.
 */
FIFOLOCK_HIDDEN bool fifolock__etcd_stream_stalled(struct fifolock__etcd_stream *st);
/* A request found endpoint `ep` failing: move on from it. Under s->mu. */
FIFOLOCK_HIDDEN void fifolock__etcd_endpoint_failed(fifolock_etcd *s, size_t ep);
/* The headers of every request: JSON, the auth token, "fail without a leader". */
FIFOLOCK_HIDDEN struct curl_slist *fifolock__etcd_headers(fifolock_etcd *s);

/* Pooled easy handles, configured for the session (TLS, auth header). */
FIFOLOCK_HIDDEN int fifolock__etcd_authenticate(fifolock_etcd *s, int64_t until_ms);

/*
 * For a request whose lease `lost_lease` was lost while it waited: gives the
 * session a new lease (unless another request did since), trying until
 * `until_ms` while etcd is away. Holds of the old lease stay lost. Returns
 * 0, EINTR (interrupted), ETIMEDOUT, or an error reaching etcd.
 */
FIFOLOCK_HIDDEN int fifolock__etcd_renew(fifolock_etcd *s, int64_t lost_lease, int64_t until_ms);

/* A new lease ID (random, 63 bits): a grant sent again finds its own lease. */
FIFOLOCK_HIDDEN int64_t fifolock__etcd_new_lease_id(void);

/*
 * The pieces of a lease grant by ID (session.c), for async.c: the request
 * (NULL: ENOMEM); what its answer says (rc: the call's; takes resp; `sent`:
 * CLOCK_BOOTTIME ms when it was sent): 0 with the lease's safety bound, or
 * an error; and, after a grant for a lost lease, making it the session's
 * lease unless another request did so with its own meanwhile.
 */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_grant_request(fifolock_etcd *s, int64_t id);
FIFOLOCK_HIDDEN int fifolock__etcd_grant_answer(fifolock_etcd *s, int64_t id, int rc,
                                                json_object *resp, int64_t sent,
                                                int64_t *safe_until_ms);
FIFOLOCK_HIDDEN void fifolock__etcd_renewed(fifolock_etcd *s, int64_t lost_lease, int64_t id,
                                            int64_t safe_until_ms);

/* Is the session interrupted (fifolock_etcd_interrupt(), not yet cleared)? */
FIFOLOCK_HIDDEN bool fifolock__etcd_interrupted(fifolock_etcd *s);

/* ---- the background thread (session.c) ---- */
FIFOLOCK_HIDDEN void fifolock__etcd_wake(fifolock_etcd *s);
FIFOLOCK_HIDDEN void fifolock__etcd_add_orphan(fifolock_etcd *s, const char *key);

/* ---- etcd's verbs (kv.c) ---- */
/* A transaction's "compare": the list [create_revision(key) == rev]. */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_compare_create(const char *key, int64_t rev);
/* A transaction's operation: put `value` on `key` with `lease` (0: none). */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_put_op(int64_t lease, const char *key,
                                                   const char *value);
/* A transaction's operation: delete `key`. */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_delete_op(const char *key);
/* A comparison: no key in [key, range_end) exists (create_revision == 0). */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_compare_range_empty(const char *key,
                                                                const char *range_end);
/* Adds "create_revision(key) == rev" to a list of comparisons. */
FIFOLOCK_HIDDEN void fifolock__etcd_cmp_add_create(json_object *cmp, const char *key,
                                                   int64_t rev);
/* Adds "mod_revision(key) == rev" to a list of comparisons. */
FIFOLOCK_HIDDEN void fifolock__etcd_cmp_add_mod(json_object *cmp, const char *key, int64_t rev);
/* The revision in an answer's (or a watch message's) header; 0 if it has none. */
FIFOLOCK_HIDDEN int64_t fifolock__etcd_header_revision(json_object *obj);
/*
 * Step M of lock.c for a hold: puts `value` on `key` if its create revision
 * is still `token`. Returns 0, ENOLCK (the entry is gone), or an error
 * reaching etcd (try again later).
 */
FIFOLOCK_HIDDEN int fifolock__etcd_mark(fifolock_etcd *s, const char *key, int64_t token,
                                        int64_t lease, const char *value, int64_t until_ms);

/* ---- lock.c's request, for the non-blocking API (async.c) ---- */
/* One entry of a queue as D reads it. */
struct entry {
    char *key;
    int64_t rev;
    int64_t at;                 /* its place: rev, or a converted hold's "at" (C4) */
    const fifolock_mode *mode;  /* NULL: a mode this process does not know */
    size_t n;
};

/* A conversion's claim V (C1): key NULL when the queue has none. */
struct claim {
    char *key;
    int64_t rev;                /* rev(V) */
    int64_t mod;                /* its mod revision: changes with C2 and with each C4 beside it */
    int64_t from;               /* the token of the hold it converts */
    int64_t bound;              /* the place it stands after (C2); 0: not yet written */
};

/* The entries up to K, oldest first (by place, then create revision). */
struct queue {
    struct entry *v;
    size_t len, cap;
    int64_t revision;           /* the list is exact at this revision */
    struct claim claim;         /* the conversion's claim V seen with it, if any (C1) */
    int64_t mark;               /* the tokens' mark T's mod revision seen with it (C7) */
};

/* One acquire's state through the steps of lock.c. */
struct request {
    fifolock_etcd *s;
    const char *name;
    char *qprefix, *qend, *key, *value;
    int64_t lease;              /* the session's lease when K was named: K's lease */
    int64_t rev;                /* rev(K), once known */
    int64_t until;              /* the deadline, ms */
    struct queue q;
};

/*
 * Checks the arguments as fifolock_etcd_acquire_n() does (EINVAL, EDEADLK,
 * ENOLCK for a lost session, ENOMEM) and names K for a new request; on 0,
 * *known_mode is the session's mode for `mode` and the request owns its
 * strings (fifolock__etcd_request_free()); on error nothing is left.
 */
FIFOLOCK_HIDDEN int fifolock__etcd_request_init(struct request *r, fifolock_etcd *s,
                                                const char *name, const fifolock_mode *mode,
                                                size_t n, int64_t until,
                                                const fifolock_mode **known_mode);
/* J2: a new key K' under the session's lease now, at the tail. */
FIFOLOCK_HIDDEN void fifolock__etcd_request_rejoin(struct request *r);
FIFOLOCK_HIDDEN void fifolock__etcd_request_free(struct request *r);
/* J's transaction (NULL: ENOMEM), and what its answer says (rc: the call's). */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_join_txn(struct request *r);
FIFOLOCK_HIDDEN int fifolock__etcd_join_answer(struct request *r, int rc, json_object *resp);
/*
 * W2's read of the queue up to rev(K) with its conversions' keys Q~ and the
 * mark T (C5, C7), to POST to *path (NULL: ENOMEM), and its answer (ENOLCK:
 * K is gone).
 */
FIFOLOCK_HIDDEN json_object *fifolock__etcd_reread_request(struct request *r, const char **path);
FIFOLOCK_HIDDEN int fifolock__etcd_reread_answer(struct request *r, int rc, json_object *resp);
/* D. */
FIFOLOCK_HIDDEN int fifolock__etcd_decide(struct request *r, bool *held, bool *ahead_held);
/*
 * W: one message of a watch after its first ("created") one, `pkey` the
 * key watched in W2 (NULL in W1). Returns FIFOLOCK__ETCD_HELD (K holds),
 * FIFOLOCK__ETCD_CHANGED (W2: P changed, read again), 0 (watch on),
 * EAGAIN (watch again after a read), or an error (ENOLCK: K was deleted).
 */
#define FIFOLOCK__ETCD_HELD 1
#define FIFOLOCK__ETCD_CHANGED 2
FIFOLOCK_HIDDEN int fifolock__etcd_wait_message(struct request *r, const char *pkey,
                                                json_object *msg);
/*
 * C7 at the grant: must K, granted, move to a larger token (its token is
 * below the mark T read with the queue)? Then, one transaction: the
 * request (NULL: ENOMEM; *newkey gets K'', malloc'd, which the answer
 * takes) and what its answer says (rc: the call's; takes resp): 0 with
 * r->key = K'' and r->rev its token (also when a lost attempt made it),
 * ENOLCK (K is gone), or the call's error, K left as it was.
 */
FIFOLOCK_HIDDEN bool fifolock__etcd_must_rekey(const struct request *r);
FIFOLOCK_HIDDEN json_object *fifolock__etcd_rekey_txn(struct request *r, const fifolock_mode *mode,
                                                      size_t n, char **newkey);
FIFOLOCK_HIDDEN int fifolock__etcd_rekey_answer(struct request *r, char *newkey, int rc,
                                                json_object *resp);
/* The grant: registers the hold (and M, if mark_value, which it takes). ENOLCK, ENOMEM. */
FIFOLOCK_HIDDEN int fifolock__etcd_register_hold(struct request *r, char *mark_value);
/* K's value (malloc'd; NULL: ENOMEM), "granted" for M. */
FIFOLOCK_HIDDEN char *fifolock__etcd_entry_value(const fifolock_mode *mode, size_t n,
                                                 bool granted);

/* ---- the non-blocking API (async.c) ---- */
struct fifolock__etcd_async;

/* A new hold's watch starts this long after the grant (it replays what it missed). */
#define FIFOLOCK__ETCD_WATCH_DELAY_MS 100

/* ---- modes (modes.c) ---- */
/* The session's mode for a wire (name, limit), or NULL if it knows none. Takes s->mu. */
FIFOLOCK_HIDDEN const fifolock_mode *fifolock__etcd_find_mode(fifolock_etcd *s, const char *name,
                                                             size_t limit);

#endif
