/*
 * The session: one lease for all its entries, and the background thread
 * that keeps it alive and watches what the session holds.
 *
 * The background thread runs one libcurl multi handle: the keepalive (a
 * POST every TTL/3, one at a time) and one watch per hold, on the hold's
 * own key, for its deletion. It is the only one to touch the multi handle
 * and the holds' streams. It tells the user of every loss (L in lock.c):
 *
 *   L1  a keepalive answered with TTL 0: the lease is gone (ENOLCK);
 *   L2  the clock passed safe_until (the send time of the last acknowledged
 *       keepalive plus the TTL) with no newer acknowledgement: the lease may
 *       have expired (ETIMEDOUT), whatever etcd says later;
 *   L3  a hold's watch saw its key deleted, not by its own release (ENOLCK).
 *
 * After L1 or L2 the session is lost for good (acquire says ENOLCK) and the
 * thread revokes the lease, so that what etcd may still keep for a session
 * its owner gave up is let go at once. A loss is reported once per hold,
 * outside the session's mutex.
 */
#include "etcd_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;

static void init_curl(void)
{
    curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s, int *nomem)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *nomem = 1;
    return d;
}

static void free_session(fifolock_etcd *s)
{
    size_t i;

    if (s->async_free)
        s->async_free(s);
    for (i = 0; i < s->nendpoints; i++)
        free(s->endpoints[i]);
    free(s->endpoints);
    free(s->ep_fail);
    free(s->prefix);
    free(s->modes);
    free(s->cacert);
    free(s->cert);
    free(s->key);
    free(s->user);
    free(s->password);
    free(s->auth_token);
    while (s->pool) {
        struct fifolock__etcd_http *h = s->pool;
        s->pool = h->next;
        curl_easy_cleanup(h->curl);
        free(h);
    }
    while (s->holds) {
        struct fifolock__etcd_hold *h = s->holds;
        s->holds = h->next;
        fifolock__etcd_stream_free(h->stream);
        free(h->name);
        free(h->key);
        free(h->mark_value);
        free(h);
    }
    while (s->orphans) {
        struct fifolock__etcd_orphan *o = s->orphans;
        s->orphans = o->next;
        free(o->key);
        free(o);
    }
    while (s->sems) {
        struct fifolock__etcd_sem *m = s->sems;
        s->sems = m->next;
        free(m);
    }
    if (s->multi)
        curl_multi_cleanup(s->multi);
    if (s->interrupt_fd >= 0)
        close(s->interrupt_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->renew_mu);
    free(s);
}

/* Splits "a,b,c" into trimmed, non-empty URLs without a trailing '/'. */
static int parse_endpoints(fifolock_etcd *s, const char *endpoints)
{
    const char *p = endpoints;

    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);

        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '/'))
            n--;
        if (n > 0) {
            char **v = realloc(s->endpoints, (s->nendpoints + 1) * sizeof *v);
            char *e;

            if (v == NULL)
                return ENOMEM;
            s->endpoints = v;
            if (strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0) {
                e = strndup(p, n);
            } else {
                /* A bare host:port, as etcdctl accepts it: http, or https with TLS files. */
                const char *scheme = (s->cacert || s->cert) ? "https://" : "http://";
                e = malloc(strlen(scheme) + n + 1);
                if (e)
                    sprintf(e, "%s%.*s", scheme, (int)n, p);
            }
            if (e == NULL)
                return ENOMEM;
            s->endpoints[s->nendpoints++] = e;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return s->nendpoints ? 0 : EINVAL;
}

static void *background(void *arg);

/*
 * A lease ID chosen here, not by etcd, so that a grant sent again (its
 * reply lost, an attempt timed out after etcd applied it) finds its own
 * lease ("lease already exists") instead of leaving a second one that
 * nobody keeps alive. Random, 63 bits: another client's lease is never hit.
 */
int64_t fifolock__etcd_new_lease_id(void)
{
    uint64_t v = 0;

    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        struct timespec t;

        clock_gettime(CLOCK_REALTIME, &t);
        v = ((uint64_t)t.tv_nsec << 32 ^ (uint64_t)t.tv_sec) * 0x9e3779b97f4a7c15ULL ^
            (uint64_t)getpid() << 16 ^ (uint64_t)(uintptr_t)&t;
    }
    v &= (uint64_t)INT64_MAX;
    return v ? (int64_t)v : 1;
}

json_object *fifolock__etcd_grant_request(fifolock_etcd *s, int64_t id)
{
    json_object *req = json_object_new_object();

    if (req == NULL)
        return NULL;
    json_object_object_add(req, "TTL", json_object_new_int(s->ttl));
    json_object_object_add(req, "ID", fifolock__etcd_i64(id));
    return req;
}

int fifolock__etcd_grant_answer(fifolock_etcd *s, int64_t id, int rc, json_object *resp,
                                int64_t sent, int64_t *safe_until_ms)
{
    int64_t ttl;

    if (rc == EEXIST) {
        /* An earlier attempt of this grant was applied: the lease is ours,
         * granted no earlier than `sent`. */
        *safe_until_ms = sent + 1000 * (int64_t)s->ttl;
        fifolock__etcd_clear_error();
        return 0;
    }
    if (rc == ENOENT)
        rc = EIO;
    if (rc != 0)
        return rc;
    ttl = fifolock__etcd_get_i64(resp, "TTL");
    if (fifolock__etcd_get_i64(resp, "ID") != id || ttl <= 0) {
        json_object_put(resp);
        fifolock__etcd_set_error("etcd granted no lease, or another one");
        return EIO;
    }
    *safe_until_ms = sent + 1000 * ttl;
    json_object_put(resp);
    return 0;
}

/* Grants lease `id` with the session's TTL; its safety bound in *safe_until_ms. */
static int grant_lease(fifolock_etcd *s, int64_t until, int64_t id, int64_t *safe_until_ms)
{
    json_object *req = fifolock__etcd_grant_request(s, id), *resp = NULL;
    int64_t sent;
    int rc;

    if (req == NULL)
        return ENOMEM;
    sent = fifolock__etcd_boot_ms();
    rc = fifolock__etcd_call(s, "/v3/lease/grant", req, &resp, until);
    json_object_put(req);
    return fifolock__etcd_grant_answer(s, id, rc, resp, sent, safe_until_ms);
}

void fifolock__etcd_renewed(fifolock_etcd *s, int64_t lost_lease, int64_t id,
                            int64_t safe_until_ms)
{
    pthread_mutex_lock(&s->mu);
    /* Unless another request (blocking or async) renewed it meanwhile: then
     * lease `id` is never kept alive and expires unused. */
    if (s->lease == lost_lease || s->lost) {
        s->lease = id;
        s->safe_until_ms = safe_until_ms;
        s->lost = 0;
    }
    pthread_mutex_unlock(&s->mu);
    fifolock__etcd_wake(s);     /* keepalives again */
}

/* Whether the caller's config struct has `field` (it was built knowing it). */
#define CONFIG_HAS(c, field) \
    ((c)->size >= offsetof(struct fifolock_etcd_config, field) + sizeof((c)->field))

int fifolock_etcd_open(fifolock_etcd **session, const char *endpoints,
                       const struct fifolock_etcd_options *options)
{
    struct fifolock_etcd_config config = FIFOLOCK_ETCD_CONFIG_INIT;

    if (options != NULL)
        config.options = *options;
    return fifolock_etcd_open_config(session, endpoints, &config);
}

int fifolock_etcd_open_config(fifolock_etcd **session, const char *endpoints,
                              const struct fifolock_etcd_config *config)
{
    static const struct fifolock_etcd_config defaults = FIFOLOCK_ETCD_CONFIG_INIT;
    const struct fifolock_etcd_config *c = config ? config : &defaults;
    const struct fifolock_etcd_options *o = &c->options;
    int attempt_timeout_ms;
    fifolock_etcd *s;
    int64_t until;
    int nomem = 0, rc;
    size_t i;

    fifolock__etcd_clear_error();
    if (!CONFIG_HAS(c, options)) {
        fifolock__etcd_set_error("config->size is %zu: start from FIFOLOCK_ETCD_CONFIG_INIT",
                                 c->size);
        return EINVAL;
    }
    attempt_timeout_ms = CONFIG_HAS(c, attempt_timeout_ms) ? c->attempt_timeout_ms : 0;
    if (session == NULL || endpoints == NULL || (o->nmodes > 0 && o->modes == NULL))
        return EINVAL;
    if (o->ttl != 0 && o->ttl < 2) {
        fifolock__etcd_set_error("a TTL of %d s is too short: at least 2", o->ttl);
        return EINVAL;
    }
    for (i = 0; i < o->nmodes; i++)
        if (o->modes[i] == NULL || o->modes[i]->name == NULL ||
            o->modes[i]->is_compatible == NULL) {
            fifolock__etcd_set_error("mode %zu of the table has no name or predicate", i);
            return EINVAL;
        }
    pthread_once(&curl_once, init_curl);
    if (curl_init_code != CURLE_OK)
        return ENOMEM;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->renew_mu, NULL);
    s->interrupt_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->interrupt_fd < 0) {
        rc = errno;
        fifolock__etcd_set_error("eventfd: %s", strerror(rc));
        free_session(s);
        return rc;
    }
    s->ttl = o->ttl ? o->ttl : 10;
    s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    s->attempt_ms = attempt_timeout_ms > 0 ? attempt_timeout_ms : 1000;
    if (s->attempt_ms > s->timeout_ms)
        s->attempt_ms = s->timeout_ms;
    s->lost_fn = o->lost;
    s->lost_arg = o->lost_arg;
    s->cacert = dup_or_null(o->cacert, &nomem);
    s->cert = dup_or_null(o->cert, &nomem);
    s->key = dup_or_null(o->key, &nomem);
    s->user = dup_or_null(o->user, &nomem);
    s->password = dup_or_null(o->password, &nomem);
    s->prefix = dup_or_null(o->prefix ? o->prefix : "fifolock/", &nomem);
    if (o->nmodes) {
        s->modes = malloc(o->nmodes * sizeof *s->modes);
        if (s->modes == NULL)
            nomem = 1;
        else
            memcpy(s->modes, o->modes, o->nmodes * sizeof *s->modes);
        s->nmodes = o->nmodes;
    }
    s->multi = curl_multi_init();
    if (nomem || s->multi == NULL) {
        free_session(s);
        return ENOMEM;
    }
    rc = parse_endpoints(s, endpoints);
    if (rc != 0) {
        if (rc == EINVAL)
            fifolock__etcd_set_error("no endpoint in \"%s\"", endpoints);
        free_session(s);
        return rc;
    }
    s->ep_fail = calloc(s->nendpoints, sizeof *s->ep_fail);
    if (s->ep_fail == NULL) {
        free_session(s);
        return ENOMEM;
    }
    until = fifolock__etcd_now_ms() + s->timeout_ms;
    s->opening = true;
    if (s->user) {
        rc = fifolock__etcd_authenticate(s, until);
        if (rc != 0) {
            free_session(s);
            return rc;
        }
    }
    s->lease = fifolock__etcd_new_lease_id();
    rc = grant_lease(s, until, s->lease, &s->safe_until_ms);
    if (rc != 0) {
        free_session(s);
        return rc;
    }
    s->opening = false;
    {
        /* The background thread takes no signal: the process's handlers run
         * on its own threads, and may call fifolock_etcd_interrupt(). */
        sigset_t all, old;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&s->thread, NULL, background, s);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != 0) {
        free_session(s);
        return rc;
    }
    *session = s;
    return 0;
}

static int revoke_lease(fifolock_etcd *s, int64_t lease, int64_t until)
{
    json_object *req = json_object_new_object(), *resp = NULL;
    int rc;

    if (req == NULL)
        return ENOMEM;
    json_object_object_add(req, "ID", fifolock__etcd_i64(lease));
    rc = fifolock__etcd_call(s, "/v3/lease/revoke", req, &resp, until);
    json_object_put(req);
    if (rc == 0)
        json_object_put(resp);
    return rc == ENOENT ? 0 : rc;   /* an expired lease is revoked already */
}

int fifolock_etcd_close(fifolock_etcd *s)
{
    int rc;

    if (s == NULL)
        return EINVAL;
    fifolock__etcd_clear_error();
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    fifolock__etcd_wake(s);
    pthread_join(s->thread, NULL);
    rc = revoke_lease(s, s->lease, fifolock__etcd_now_ms() + s->timeout_ms);
    free_session(s);
    return rc;
}

int fifolock__etcd_renew(fifolock_etcd *s, int64_t lost_lease, int64_t until_ms)
{
    /* The same ID for every try: a grant applied twice is one. */
    int64_t id = fifolock__etcd_new_lease_id();
    int rc = 0;

    pthread_mutex_lock(&s->renew_mu);
    for (;;) {
        struct pollfd p = { s->interrupt_fd, POLLIN, 0 };
        int64_t safe, now = fifolock__etcd_now_ms(), until;
        bool done;

        pthread_mutex_lock(&s->mu);
        done = s->lease != lost_lease && !s->lost;  /* another waiter renewed it */
        pthread_mutex_unlock(&s->mu);
        if (done)
            break;
        if (fifolock__etcd_interrupted(s)) {
            fifolock__etcd_set_error("the wait was interrupted");
            rc = EINTR;
            break;
        }
        if (now >= until_ms) {
            rc = ETIMEDOUT;
            break;
        }
        until = until_ms - now < s->timeout_ms ? until_ms : now + s->timeout_ms;
        rc = grant_lease(s, until, id, &safe);
        if (rc == 0) {
            fifolock__etcd_renewed(s, lost_lease, id, safe);
            break;
        }
        if (rc != ECONNREFUSED && rc != ETIMEDOUT)
            break;
        /* etcd is still away: again soon (an interrupt ends the pause). */
        poll(&p, 1, 200);
    }
    pthread_mutex_unlock(&s->renew_mu);
    return rc;
}

int fifolock_etcd_interrupt(fifolock_etcd *s)
{
    uint64_t one = 1;
    int saved = errno;  /* a signal handler's caller keeps its errno */
    ssize_t w;

    if (s == NULL)
        return EINVAL;
    /* EAGAIN only when the counter is full: it is interrupted already. */
    w = write(s->interrupt_fd, &one, sizeof one);
    (void)w;
    errno = saved;
    return 0;
}

int fifolock_etcd_clear_interrupt(fifolock_etcd *s)
{
    uint64_t count;
    ssize_t r;
    int saved = errno; /* async-signal-safe: errno is kept */

    if (s == NULL)
        return EINVAL;
    /* One read takes the counter to zero; EAGAIN when it was zero. */
    r = read(s->interrupt_fd, &count, sizeof count);
    (void)r;
    errno = saved;
    return 0;
}

bool fifolock__etcd_interrupted(fifolock_etcd *s)
{
    struct pollfd p = { s->interrupt_fd, POLLIN, 0 };

    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

void fifolock__etcd_wake(fifolock_etcd *s)
{
    curl_multi_wakeup(s->multi);
}

void fifolock__etcd_add_orphan(fifolock_etcd *s, const char *key)
{
    struct fifolock__etcd_orphan *o = malloc(sizeof *o);

    if (o == NULL)
        return; /* the lease bounds the entry's life */
    o->key = strdup(key);
    if (o->key == NULL) {
        free(o);
        return;
    }
    pthread_mutex_lock(&s->mu);
    o->next = s->orphans;
    s->orphans = o;
    pthread_mutex_unlock(&s->mu);
    fifolock__etcd_wake(s);
}

static struct fifolock__etcd_hold *find_hold(fifolock_etcd *s, const char *name, int64_t token)
{
    struct fifolock__etcd_hold *h;

    for (h = s->holds; h; h = h->next)
        if (!h->released && h->token == token && strcmp(h->name, name) == 0)
            return h;
    return NULL;
}

int fifolock_etcd_check(fifolock_etcd *s, const char *name, int64_t token,
                        struct timespec *safe_until)
{
    struct fifolock__etcd_hold *h;
    int64_t until;
    int rc;

    if (s == NULL || name == NULL)
        return EINVAL;
    pthread_mutex_lock(&s->mu);
    h = find_hold(s, name, token);
    until = s->safe_until_ms;
    if (h == NULL || h->releasing)
        rc = EPERM;
    else if (h->lost)
        rc = h->lost;
    else if (s->lost)
        rc = s->lost;
    else
        rc = fifolock__etcd_boot_ms() < until ? 0 : ETIMEDOUT;
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && safe_until) {
        safe_until->tv_sec = (time_t)(until / 1000);
        safe_until->tv_nsec = (long)(until % 1000) * 1000000L;
    }
    return rc;
}

struct timespec fifolock_etcd_safe_until(fifolock_etcd *s)
{
    struct timespec t = { 0, 0 };
    int64_t until;

    if (s == NULL)
        return t;
    pthread_mutex_lock(&s->mu);
    until = s->lost ? 0 : s->safe_until_ms;
    pthread_mutex_unlock(&s->mu);
    t.tv_sec = (time_t)(until / 1000);
    t.tv_nsec = (long)(until % 1000) * 1000000L;
    return t;
}

int fifolock_etcd_key(fifolock_etcd *s, const char *name, int64_t token, char *buf, size_t size)
{
    struct fifolock__etcd_hold *h;
    int rc = 0;

    if (s == NULL || name == NULL || buf == NULL)
        return EINVAL;
    pthread_mutex_lock(&s->mu);
    h = find_hold(s, name, token);
    if (h == NULL)
        rc = EPERM;
    else if (strlen(h->key) + 1 > size)
        rc = ERANGE;
    else
        memcpy(buf, h->key, strlen(h->key) + 1);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- the background thread ---- */

struct bg {
    fifolock_etcd *s;
    CURL *ka;                   /* the keepalive in flight, or NULL */
    struct curl_slist *ka_headers;
    char *ka_body;
    char ka_errbuf[CURL_ERROR_SIZE];
    struct fifolock__etcd_body ka_data; /* the keepalive's answer */
    int64_t ka_sent, ka_next;   /* CLOCK_MONOTONIC ms */
    int64_t ka_sent_boot;       /* CLOCK_BOOTTIME ms, for the safety bound */
    size_t ka_endpoint;
    int64_t ka_lease;           /* the lease the keepalive in flight is for */
    unsigned ka_failures;       /* keepalives failed in a row */
};

/* Marks the session lost (L1, L2): every hold with it. Under s->mu. */
static void lose_session(fifolock_etcd *s, int reason)
{
    struct fifolock__etcd_hold *h;

    if (s->lost == 0) {
        s->lost = reason;
        s->revoke = s->lease;
    }
    for (h = s->holds; h; h = h->next)
        if (!h->released && !h->releasing && h->lost == 0)
            h->lost = reason;
}

static void start_keepalive(struct bg *b)
{
    fifolock_etcd *s = b->s;
    char url[1024], body[64];
    struct curl_slist *hdr = fifolock__etcd_headers(s);

    pthread_mutex_lock(&s->mu);
    b->ka_endpoint = s->current;
    b->ka_lease = s->lease;
    pthread_mutex_unlock(&s->mu);
    b->ka = curl_easy_init();
    if (b->ka == NULL || hdr == NULL) {
        if (b->ka)
            curl_easy_cleanup(b->ka);
        b->ka = NULL;
        curl_slist_free_all(hdr);
        b->ka_next = fifolock__etcd_now_ms() + 100;
        return;
    }
    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", (long long)b->ka_lease);
    free(b->ka_body);
    b->ka_body = strdup(body);
    b->ka_headers = hdr;
    b->ka_data.len = 0;
    b->ka_errbuf[0] = '\0';
    snprintf(url, sizeof url, "%s/v3/lease/keepalive", s->endpoints[b->ka_endpoint]);
    fifolock__etcd_configure(s, b->ka);
    curl_easy_setopt(b->ka, CURLOPT_URL, url);
    curl_easy_setopt(b->ka, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(b->ka, CURLOPT_POSTFIELDS, b->ka_body);
    curl_easy_setopt(b->ka, CURLOPT_WRITEFUNCTION, fifolock__etcd_collect);
    curl_easy_setopt(b->ka, CURLOPT_WRITEDATA, &b->ka_data);
    curl_easy_setopt(b->ka, CURLOPT_ERRORBUFFER, b->ka_errbuf);
    /* One attempt: a member that does not answer within it is left for the
     * next one at once, well inside the TTL (L2). After failures it is
     * doubled each time (up to TTL/3), so that a cluster that is only slow
     * still renews the lease. */
    {
        long attempt = (long)s->attempt_ms << (b->ka_failures < 3 ? b->ka_failures : 3);

        if (attempt > s->ttl * 1000 / 3)
            attempt = s->ttl * 1000 / 3;
        curl_easy_setopt(b->ka, CURLOPT_TIMEOUT_MS, attempt);
    }
    curl_easy_setopt(b->ka, CURLOPT_CONNECTTIMEOUT_MS, (long)s->attempt_ms);
    b->ka_sent = fifolock__etcd_now_ms();
    b->ka_sent_boot = fifolock__etcd_boot_ms();
    curl_multi_add_handle(s->multi, b->ka);
}

/* L1 or an acknowledgement: what a finished keepalive says. */
static void finish_keepalive(struct bg *b, CURLcode code)
{
    fifolock_etcd *s = b->s;
    json_object *obj = NULL, *result = NULL;
    long status = 0;
    bool ok = false;

    curl_easy_getinfo(b->ka, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(s->multi, b->ka);
    curl_easy_cleanup(b->ka);
    b->ka = NULL;
    curl_slist_free_all(b->ka_headers);
    b->ka_headers = NULL;
    if (code == CURLE_OK && status == 200 && b->ka_data.data) {
        /* The answer streams: the first object is the one for our request. */
        json_tokener *tok = json_tokener_new();
        if (tok) {
            obj = json_tokener_parse_ex(tok, b->ka_data.data, (int)b->ka_data.len);
            json_tokener_free(tok);
        }
    }
    if (obj && json_object_object_get_ex(obj, "result", &result)) {
        int64_t ttl = fifolock__etcd_get_i64(result, "TTL");

        pthread_mutex_lock(&s->mu);
        if (b->ka_lease != s->lease) {
            /* For a lease lost and since replaced (lock.c renews): old news. */
        } else if (ttl <= 0) {
            lose_session(s, ENOLCK);
        } else if (!s->lost) {
            s->safe_until_ms = b->ka_sent_boot + 1000 * ttl;
            s->current = b->ka_endpoint;
        }
        pthread_mutex_unlock(&s->mu);
        ok = true;
        /* While answers take longer than one attempt, keep the longer one. */
        if (fifolock__etcd_now_ms() - b->ka_sent <= s->attempt_ms)
            b->ka_failures = 0;
        b->ka_next = b->ka_sent + s->ttl * 1000 / 3;
    }
    if (obj)
        json_object_put(obj);
    if (!ok) {
        /* Try the next endpoint at once (the watches on this one move too);
         * L2 decides if the lease may be gone. */
        pthread_mutex_lock(&s->mu);
        fifolock__etcd_endpoint_failed(s, b->ka_endpoint);
        pthread_mutex_unlock(&s->mu);
        b->ka_failures++;
        b->ka_next = fifolock__etcd_now_ms() + (fifolock__etcd_now_ms() - b->ka_sent < 100 ? 200 : 0);
    }
}

struct hold_watch {
    fifolock_etcd *s;
    struct fifolock__etcd_hold *h;
};

/* A message on a hold's watch (L3). Under no lock: takes s->mu. */
static int on_hold_message(json_object *msg, void *arg)
{
    struct fifolock__etcd_hold *h = arg;
    fifolock_etcd *s = h->stream->s;
    json_object *header, *events;
    int64_t rev = 0;
    size_t i, n;

    if (json_object_object_get_ex(msg, "header", &header))
        rev = fifolock__etcd_get_i64(header, "revision");
    pthread_mutex_lock(&s->mu);
    if (fifolock__etcd_get_i64(msg, "compact_revision") > 0) {
        h->need_check = true;
        pthread_mutex_unlock(&s->mu);
        return EAGAIN;
    }
    if (json_object_object_get_ex(msg, "canceled", &events) && json_object_get_boolean(events)) {
        json_object *reason;
        /* Canceled, e.g. for an expired auth token: start again, with a new one. */
        if (json_object_object_get_ex(msg, "cancel_reason", &reason) &&
            strstr(json_object_get_string(reason), "auth") != NULL)
            s->need_auth = true;
        pthread_mutex_unlock(&s->mu);
        return EAGAIN;
    }
    if (json_object_object_get_ex(msg, "events", &events) &&
        json_object_is_type(events, json_type_array)) {
        n = json_object_array_length(events);
        for (i = 0; i < n; i++) {
            json_object *ev = json_object_array_get_idx(events, i), *type, *kv;
            if (json_object_object_get_ex(ev, "type", &type) &&
                strcmp(json_object_get_string(type), "DELETE") == 0) {
                if (!h->releasing && !h->released && h->lost == 0)
                    h->lost = ENOLCK;
            }
            if (json_object_object_get_ex(ev, "kv", &kv)) {
                int64_t mod = fifolock__etcd_get_i64(kv, "mod_revision");
                if (mod + 1 > h->watch_from)
                    h->watch_from = mod + 1;
            }
        }
    }
    (void)rev;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* Under no lock: only the background thread adds or frees holds' streams. */
static void start_hold_watch(fifolock_etcd *s, struct fifolock__etcd_hold *h)
{
    struct fifolock__etcd_stream *st;
    json_object *req = json_object_new_object(), *create = json_object_new_object(),
                *filters = json_object_new_array();

    if (req == NULL || create == NULL || filters == NULL) {
        json_object_put(req);
        json_object_put(create);
        json_object_put(filters);
        return;
    }
    json_object_object_add(create, "key", fifolock__etcd_str_b64(h->key));
    json_object_object_add(create, "start_revision", fifolock__etcd_i64(h->watch_from));
    json_object_array_add(filters, json_object_new_string("NOPUT"));
    json_object_object_add(create, "filters", filters);
    json_object_object_add(req, "create_request", create);
    st = fifolock__etcd_stream_new(s, "/v3/watch", req, on_hold_message, h);
    json_object_put(req);
    pthread_mutex_lock(&s->mu);
    if (st && !h->lost && !h->releasing && !h->released) {
        h->stream = st;
        curl_multi_add_handle(s->multi, st->curl);
        st = NULL;
    } else {
        h->retry_at_ms = fifolock__etcd_now_ms() + 100;
    }
    pthread_mutex_unlock(&s->mu);
    fifolock__etcd_stream_free(st);
}

static void stop_hold_watch(fifolock_etcd *s, struct fifolock__etcd_hold *h)
{
    if (h->stream) {
        curl_multi_remove_handle(s->multi, h->stream->curl);
        fifolock__etcd_stream_free(h->stream);
        h->stream = NULL;
    }
}

/*
 * The background thread's own requests (mark, orphan delete, compaction
 * check, authentication) end within this: the keepalive, every TTL/3,
 * must not wait behind them.
 */
static int64_t bg_until(fifolock_etcd *s)
{
    int64_t budget = s->timeout_ms < s->ttl * 250 ? s->timeout_ms : s->ttl * 250;

    return fifolock__etcd_now_ms() + budget;
}

/* After a compaction: does the hold's key still exist with its revision? */
static void check_hold(fifolock_etcd *s, struct fifolock__etcd_hold *h, const char *key,
                       int64_t token)
{
    json_object *req = json_object_new_object(), *resp = NULL, *kvs;
    int rc;

    if (req == NULL)
        return;
    json_object_object_add(req, "key", fifolock__etcd_str_b64(key));
    rc = fifolock__etcd_call(s, "/v3/kv/range", req, &resp, bg_until(s));
    json_object_put(req);
    if (rc != 0)
        return;
    pthread_mutex_lock(&s->mu);
    if (json_object_object_get_ex(resp, "kvs", &kvs) && json_object_array_length(kvs) == 1 &&
        fifolock__etcd_get_i64(json_object_array_get_idx(kvs, 0), "create_revision") == token) {
        json_object *header;
        if (json_object_object_get_ex(resp, "header", &header))
            h->watch_from = fifolock__etcd_get_i64(header, "revision") + 1;
    } else if (!h->releasing && !h->released && h->lost == 0) {
        h->lost = ENOLCK;
    }
    h->need_check = false;
    pthread_mutex_unlock(&s->mu);
    json_object_put(resp);
}

struct report {
    char *name;
    int64_t token;
    int reason;
};

static void *background(void *arg)
{
    struct bg b;
    fifolock_etcd *s = arg;

    memset(&b, 0, sizeof b);
    b.s = s;
    /* The first keepalive TTL/3 after the grant was sent, not after the
     * thread started: an open that took long (a slow etcd) has used some. */
    pthread_mutex_lock(&s->mu);
    b.ka_next = fifolock__etcd_now_ms() + (s->safe_until_ms - fifolock__etcd_boot_ms()) -
                (int64_t)s->ttl * 1000 * 2 / 3;
    pthread_mutex_unlock(&s->mu);
    for (;;) {
        struct fifolock__etcd_hold *h, **link;
        struct report *reports = NULL;
        size_t nreports = 0, i;
        char *orphan = NULL;
        int64_t now = fifolock__etcd_now_ms(), wait_ms, revoke;
        int running, lost, need_watch = 0;
        CURLMsg *m;

        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* L2: the local bound passed without an acknowledgement. */
        if (!s->lost && fifolock__etcd_boot_ms() >= s->safe_until_ms)
            lose_session(s, ETIMEDOUT);
        lost = s->lost;
        /* Holds: start the missing watches, drop the finished holds, collect losses. */
        for (link = &s->holds; (h = *link) != NULL;) {
            if (h->released) {
                stop_hold_watch(s, h);
                *link = h->next;
                free(h->name);
                free(h->key);
                free(h->mark_value);
                free(h);
                continue;
            }
            if (h->lost && !h->reported) {
                struct report *r = realloc(reports, (nreports + 1) * sizeof *r);
                if (r) {
                    reports = r;
                    r[nreports].name = strdup(h->name);
                    r[nreports].token = h->token;
                    r[nreports].reason = h->lost;
                    if (r[nreports].name) {
                        nreports++;
                        h->reported = true;
                    }
                }
            }
            if (h->stream && !h->lost && !h->releasing && fifolock__etcd_stream_stalled(h->stream)) {
                /* Its member is paused or failing: watch again elsewhere now. */
                stop_hold_watch(s, h);
                h->retry_at_ms = now;
            }
            if (h->lost || h->releasing)
                stop_hold_watch(s, h);
            else if (h->stream == NULL && !h->need_check && now >= h->retry_at_ms)
                need_watch++;
            link = &h->next;
        }
        if (s->orphans && !lost) {
            struct fifolock__etcd_orphan *o = s->orphans;
            s->orphans = o->next;
            orphan = o->key;
            free(o);
        }
        pthread_mutex_unlock(&s->mu);

        for (i = 0; i < nreports; i++) {
            if (s->lost_fn)
                s->lost_fn(s, reports[i].name, reports[i].token, reports[i].reason, s->lost_arg);
            free(reports[i].name);
        }
        free(reports);

        pthread_mutex_lock(&s->mu);
        revoke = s->revoke;
        s->revoke = 0;
        pthread_mutex_unlock(&s->mu);
        if (revoke != 0 && revoke_lease(s, revoke, fifolock__etcd_now_ms() + 1000) != 0) {
            /* The user was told; let go on the cluster too (no-op if expired),
             * when etcd answers again. */
            pthread_mutex_lock(&s->mu);
            if (s->revoke == 0)
                s->revoke = revoke;
            pthread_mutex_unlock(&s->mu);
        }
        if (orphan) {
            json_object *req = json_object_new_object(), *resp = NULL;
            if (req) {
                json_object_object_add(req, "key", fifolock__etcd_str_b64(orphan));
                if (fifolock__etcd_call(s, "/v3/kv/deleterange", req, &resp, bg_until(s)) == 0)
                    json_object_put(resp);
                else
                    fifolock__etcd_add_orphan(s, orphan);
                json_object_put(req);
            }
            free(orphan);
        }
        pthread_mutex_lock(&s->mu);
        if (s->need_auth && s->user) {
            s->need_auth = false;
            pthread_mutex_unlock(&s->mu);
            (void)fifolock__etcd_authenticate(s, bg_until(s));
        } else {
            pthread_mutex_unlock(&s->mu);
        }

        /* M for new holds that waited (lock.c). */
        for (;;) {
            char *key = NULL, *value = NULL;
            int64_t token = 0, lease = 0;
            int mrc;

            pthread_mutex_lock(&s->mu);
            for (h = s->holds; h; h = h->next)
                if (h->mark_value && !h->released && !h->releasing && !h->lost) {
                    key = strdup(h->key);
                    value = h->mark_value;
                    h->mark_value = NULL;
                    token = h->token;
                    lease = h->lease;
                    break;
                }
            pthread_mutex_unlock(&s->mu);
            if (value == NULL)
                break;
            mrc = key ? fifolock__etcd_mark(s, key, token, lease, value, bg_until(s)) : ENOMEM;
            free(key);
            pthread_mutex_lock(&s->mu);
            if (mrc == ENOLCK && !h->releasing && !h->released && h->lost == 0)
                h->lost = ENOLCK;   /* L3: the entry was deleted */
            if (mrc != 0 && mrc != ENOLCK && !h->released) {
                h->mark_value = value;  /* try again on the next round */
                value = NULL;
            }
            pthread_mutex_unlock(&s->mu);
            free(value);
            if (mrc != 0 && mrc != ENOLCK)
                break;
        }

        /* New watches: made outside the mutex (the stream reads the session). */
        while (need_watch > 0) {
            struct fifolock__etcd_hold *todo = NULL;

            need_watch = 0;
            pthread_mutex_lock(&s->mu);
            for (h = s->holds; h && todo == NULL; h = h->next)
                if (h->stream == NULL && !h->need_check && !h->lost && !h->releasing &&
                    !h->released && now >= h->retry_at_ms)
                    todo = h;
            pthread_mutex_unlock(&s->mu);
            if (todo) {
                start_hold_watch(s, todo);
                need_watch = 1;
            }
        }
        pthread_mutex_lock(&s->mu);
        for (h = s->holds; h; h = h->next)
            if (h->need_check && !h->released && !h->lost) {
                char *key = strdup(h->key);
                int64_t token = h->token;
                pthread_mutex_unlock(&s->mu);
                if (key)
                    check_hold(s, h, key, token);
                free(key);
                pthread_mutex_lock(&s->mu);
                break;
            }
        pthread_mutex_unlock(&s->mu);

        /* The keepalive (not once lost). */
        now = fifolock__etcd_now_ms();
        if (!lost && b.ka == NULL && now >= b.ka_next)
            start_keepalive(&b);

        curl_multi_perform(s->multi, &running);
        while ((m = curl_multi_info_read(s->multi, &running)) != NULL) {
            struct fifolock__etcd_stream *st = NULL;

            if (m->msg != CURLMSG_DONE)
                continue;
            if (m->easy_handle == b.ka) {
                finish_keepalive(&b, m->data.result);
                continue;
            }
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&st);
            pthread_mutex_lock(&s->mu);
            for (h = s->holds; h; h = h->next)
                if (h->stream == st)
                    break;
            pthread_mutex_unlock(&s->mu);
            if (h == NULL || st == NULL)
                continue;
            /* The watch ended: restart it from where it was, later, elsewhere if broken. */
            if (m->data.result != CURLE_OK && st->stop == 0)
                fifolock__etcd_stream_failed(st, m->data.result);
            pthread_mutex_lock(&s->mu);
            stop_hold_watch(s, h);
            h->retry_at_ms = fifolock__etcd_now_ms() + 100;
            pthread_mutex_unlock(&s->mu);
        }

        now = fifolock__etcd_now_ms();
        wait_ms = b.ka ? 1000 : b.ka_next - now;
        pthread_mutex_lock(&s->mu);
        if (!s->lost && s->safe_until_ms - fifolock__etcd_boot_ms() < wait_ms)
            wait_ms = s->safe_until_ms - fifolock__etcd_boot_ms();
        for (h = s->holds; h; h = h->next)
            if (h->stream == NULL && !h->lost && !h->released && h->retry_at_ms - now < wait_ms)
                wait_ms = h->retry_at_ms - now;
        if (s->orphans && !s->lost)
            wait_ms = 0;
        pthread_mutex_unlock(&s->mu);
        if (wait_ms < 0)
            wait_ms = 0;
        if (wait_ms > 1000)
            wait_ms = 1000;
        curl_multi_poll(s->multi, NULL, 0, (int)wait_ms, NULL);
    }
    /* Leave the multi handle empty for free_session(). */
    if (b.ka) {
        curl_multi_remove_handle(s->multi, b.ka);
        curl_easy_cleanup(b.ka);
    }
    curl_slist_free_all(b.ka_headers);
    free(b.ka_body);
    free(b.ka_data.data);
    pthread_mutex_lock(&s->mu);
    {
        struct fifolock__etcd_hold *h;
        for (h = s->holds; h; h = h->next)
            stop_hold_watch(s, h);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}
