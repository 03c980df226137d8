/*
 * For the etcd lock's tests: a real etcd (tests/etcd/etcd-up.sh), started
 * on loopback with free ports and a temporary data dir, and stopped; and a
 * few raw requests (libcurl, json-c) to look at or change what it stores
 * behind the library's back. Not the library's code: the tests check the
 * library against etcd itself. With tests/check.h included first, also
 * what the etcd tests share: a thread that acquires and reports, a wait for
 * a queue's length, a count of lost locks, and main()'s loop.
 */
#ifndef FIFOLOCK_TESTS_ETCD_HARNESS_H
#define FIFOLOCK_TESTS_ETCD_HARNESS_H

#include "fifolock_etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ETCD_SKIP 77

struct etcd_server {
    char dir[256];
    char endpoints[1024];
    int members;
    char url[3][128];
    pid_t pid[3];
};

static inline int etcd_read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return -1;
    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

/* 0, or ETCD_SKIP when etcd is not installed (the test then exits with it). */
static inline int etcd_up(struct etcd_server *e, int members, const char *flags)
{
    char cmd[1024], path[300], buf[64];
    int rc, i;

    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "%s/fifolock-etcd-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(e->dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    e->members = members;
    snprintf(cmd, sizeof cmd, "ETCD_OWNER_PID=%ld %s/etcd-up.sh %s --members %d %s",
             (long)getpid(), FIFOLOCK_ETCD_SCRIPTS, e->dir, members, flags ? flags : "");
    rc = system(cmd);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == ETCD_SKIP) {
        rmdir(e->dir);
        return ETCD_SKIP;
    }
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fprintf(stderr, "etcd-up.sh failed (%d)\n", rc);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/endpoints", e->dir);
    etcd_read_file(path, e->endpoints, sizeof e->endpoints);
    for (i = 0; i < members; i++) {
        snprintf(path, sizeof path, "%s/member%d.url", e->dir, i);
        etcd_read_file(path, e->url[i], sizeof e->url[i]);
        snprintf(path, sizeof path, "%s/member%d.pid", e->dir, i);
        etcd_read_file(path, buf, sizeof buf);
        e->pid[i] = (pid_t)atol(buf);
    }
    return 0;
}

static inline void etcd_down(struct etcd_server *e)
{
    char cmd[600];

    snprintf(cmd, sizeof cmd, "%s/etcd-down.sh %s", FIFOLOCK_ETCD_SCRIPTS, e->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "etcd-down.sh failed\n");
}

/* Path of a file under the server's directory (certificates: "tls/ca.pem"). */
static inline const char *etcd_file(const struct etcd_server *e, const char *name)
{
    static char path[8][400];
    static int next;
    char *p = path[next++ % 8];

    snprintf(p, 400, "%s/%s", e->dir, name);
    return p;
}

/* ---- raw requests ---- */

struct etcd_raw_body {
    char *data;
    size_t len;
};

static inline size_t etcd_raw_collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct etcd_raw_body *b = arg;
    char *p = realloc(b->data, b->len + size * nmemb + 1);

    if (p == NULL)
        return 0;
    b->data = p;
    memcpy(p + b->len, ptr, size * nmemb);
    b->len += size * nmemb;
    p[b->len] = '\0';
    return size * nmemb;
}

/* TLS files for the raw requests (NULL: none). */
static const char *etcd_raw_cacert, *etcd_raw_cert, *etcd_raw_key;

/* POSTs `json` to url+path; returns the parsed answer (NULL on failure). */
static inline json_object *etcd_raw(const char *url, const char *path, const char *json,
                             const char *auth_token)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct etcd_raw_body b = { NULL, 0 };
    char full[600], authh[600];
    json_object *obj = NULL;

    if (auth_token) {
        snprintf(authh, sizeof authh, "Authorization: %s", auth_token);
        h = curl_slist_append(h, authh);
    }
    snprintf(full, sizeof full, "%s%s", url, path);
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, etcd_raw_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (etcd_raw_cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, etcd_raw_cacert);
    if (etcd_raw_cert)
        curl_easy_setopt(c, CURLOPT_SSLCERT, etcd_raw_cert);
    if (etcd_raw_key)
        curl_easy_setopt(c, CURLOPT_SSLKEY, etcd_raw_key);
    if (curl_easy_perform(c) == CURLE_OK && b.data)
        obj = json_tokener_parse(b.data);
    free(b.data);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return obj;
}

static inline char *etcd_b64(const char *s)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), i, o = 0;
    char *out = malloc(4 * (n + 2) / 3 + 5);

    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = i + 1 < n ? a[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* How many keys start with `prefix` (-1 if etcd did not answer). */
static inline long etcd_count(const char *url, const char *prefix, const char *auth_token)
{
    char end[512], body[1500], *k, *e;
    json_object *r, *count;
    size_t n = strlen(prefix);
    long result = -1;

    memcpy(end, prefix, n + 1);
    end[n - 1]++;
    k = etcd_b64(prefix);
    e = etcd_b64(end);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"range_end\":\"%s\",\"count_only\":true}", k, e);
    free(k);
    free(e);
    r = etcd_raw(url, "/v3/kv/range", body, auth_token);
    if (r && json_object_object_get_ex(r, "header", &count)) {
        result = json_object_object_get_ex(r, "count", &count) ? atol(json_object_get_string(count))
                                                               : 0;
    }
    json_object_put(r);
    return result;
}

static inline int etcd_put(const char *url, const char *key, const char *value)
{
    char body[2000], *k = etcd_b64(key), *v = etcd_b64(value);
    json_object *r;

    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    free(k);
    free(v);
    r = etcd_raw(url, "/v3/kv/put", body, NULL);
    json_object_put(r);
    return r ? 0 : -1;
}

static inline int etcd_delete(const char *url, const char *key)
{
    char body[1000], *k = etcd_b64(key);
    json_object *r;

    snprintf(body, sizeof body, "{\"key\":\"%s\"}", k);
    free(k);
    r = etcd_raw(url, "/v3/kv/deleterange", body, NULL);
    json_object_put(r);
    return r ? 0 : -1;
}

/* The create revision of `key` (0 if absent, -1 if etcd did not answer). */
static inline long long etcd_create_revision(const char *url, const char *key)
{
    char body[1000], *k = etcd_b64(key);
    json_object *r, *kvs, *rev;
    long long result = -1;

    snprintf(body, sizeof body, "{\"key\":\"%s\"}", k);
    free(k);
    r = etcd_raw(url, "/v3/kv/range", body, NULL);
    if (r) {
        result = 0;
        if (json_object_object_get_ex(r, "kvs", &kvs) && json_object_array_length(kvs) > 0 &&
            json_object_object_get_ex(json_object_array_get_idx(kvs, 0), "create_revision", &rev))
            result = atoll(json_object_get_string(rev));
    }
    json_object_put(r);
    return result;
}

/* How many leases the cluster has (-1 if it did not answer). */
static inline long etcd_lease_count(const char *url, const char *auth_token)
{
    json_object *r = etcd_raw(url, "/v3/lease/leases", "{}", auth_token), *leases;
    long n = -1;

    if (r && json_object_object_get_ex(r, "header", &leases))
        n = json_object_object_get_ex(r, "leases", &leases) ? (long)json_object_array_length(leases)
                                                          : 0;
    json_object_put(r);
    return n;
}

/* A token from etcd's Authenticate, in buf (empty on failure). */
static inline void etcd_login(const char *url, const char *user, const char *password, char *buf,
                              size_t size)
{
    char body[300];
    json_object *r, *tok;

    snprintf(body, sizeof body, "{\"name\":\"%s\",\"password\":\"%s\"}", user, password);
    r = etcd_raw(url, "/v3/auth/authenticate", body, NULL);
    buf[0] = '\0';
    if (r && json_object_object_get_ex(r, "token", &tok))
        snprintf(buf, size, "%s", json_object_get_string(tok));
    json_object_put(r);
}

/* The key and lease of the n-th oldest entry under `prefix` (0 if none). */
static inline long long etcd_nth_entry(const char *url, const char *prefix, int n, char *key,
                                       size_t size)
{
    char end[512], body[1500], *k, *e;
    json_object *r, *kvs, *kv, *f;
    size_t len = strlen(prefix);
    long long lease = 0;

    memcpy(end, prefix, len + 1);
    end[len - 1]++;
    k = etcd_b64(prefix);
    e = etcd_b64(end);
    snprintf(body, sizeof body,
             "{\"key\":\"%s\",\"range_end\":\"%s\",\"sort_target\":\"CREATE\","
             "\"sort_order\":\"ASCEND\"}", k, e);
    free(k);
    free(e);
    r = etcd_raw(url, "/v3/kv/range", body, NULL);
    key[0] = '\0';
    if (r && json_object_object_get_ex(r, "kvs", &kvs) &&
        (int)json_object_array_length(kvs) > n) {
        kv = json_object_array_get_idx(kvs, (size_t)n);
        if (json_object_object_get_ex(kv, "lease", &f))
            lease = atoll(json_object_get_string(f));
        if (json_object_object_get_ex(kv, "key", &f)) {
            /* base64 to text, by the library-independent way: a tiny decoder */
            static const char a[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            const char *in = json_object_get_string(f);
            unsigned acc = 0;
            int bits = 0;
            size_t o = 0;
            for (; *in && *in != '=' && o + 1 < size; in++) {
                acc = acc << 6 | (unsigned)(strchr(a, *in) - a);
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    key[o++] = (char)(acc >> bits & 0xff);
                }
            }
            key[o] = '\0';
        }
    }
    json_object_put(r);
    return lease;
}

static inline int etcd_revoke(const char *url, long long lease)
{
    char body[100];
    json_object *r;

    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", lease);
    r = etcd_raw(url, "/v3/lease/revoke", body, NULL);
    json_object_put(r);
    return r ? 0 : -1;
}

/*
 * etcd's counters: the gRPC calls it started (the gateway's included;
 * keepalives left out, they tick on their own) and the watch events it sent.
 */
struct etcd_counters {
    double requests, events;
};

static inline struct etcd_counters etcd_read_counters(const char *url)
{
    struct etcd_counters c = { 0, 0 };
    CURL *h = curl_easy_init();
    struct etcd_raw_body b = { NULL, 0 };
    char full[300];
    const char *line;

    snprintf(full, sizeof full, "%s/metrics", url);
    curl_easy_setopt(h, CURLOPT_URL, full);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, etcd_raw_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    for (line = b.data; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char one[512];

        if (len >= sizeof one)
            len = sizeof one - 1;
        memcpy(one, line, len);
        one[len] = '\0';
        if (strncmp(one, "grpc_server_started_total{", 26) == 0 &&
            strstr(one, "LeaseKeepAlive") == NULL && strstr(one, "grpc.health") == NULL)
            c.requests += atof(strrchr(one, ' ') + 1);
        else if (strncmp(one, "etcd_debugging_mvcc_events_total ", 33) == 0)
            c.events += atof(one + 33);
        line = nl ? nl + 1 : NULL;
    }
    free(b.data);
    return c;
}

/* The number of entries in the queue of lock `name` (default prefix), or -1. */
static inline long etcd_queue_len(const char *url, const char *name)
{
    char prefix[300];

    snprintf(prefix, sizeof prefix, "fifolock/%s/", name);
    return etcd_count(url, prefix, NULL);
}

/*
 * Starts member i again (after kill -9 or with it stopped), on its data dir
 * and ports, and waits up to 10 s until it answers. 0, or -1 if it did not.
 */
static inline int etcd_restart(struct etcd_server *e, int i)
{
    char cmd[700], path[300], buf[64];
    int w;

    snprintf(cmd, sizeof cmd, "bash %s/member%d.sh </dev/null & echo $! >%s/member%d.pid",
             e->dir, i, e->dir, i);
    if (system(cmd) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/member%d.pid", e->dir, i);
    etcd_read_file(path, buf, sizeof buf);
    e->pid[i] = (pid_t)atol(buf);
    for (w = 0; w < 200; w++) {
        CURL *c = curl_easy_init();
        struct etcd_raw_body b = { NULL, 0 };
        char url[200];
        long status = 0;

        snprintf(url, sizeof url, "%s/health", e->url[i]);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, etcd_raw_collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 500L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        free(b.data);
        if (status == 200)
            return 0;
        {
            struct timespec t = { 0, 50 * 1000000L };
            nanosleep(&t, NULL);
        }
    }
    return -1;
}

/* ---- time ---- */

static inline struct timespec etcd_in_ms(long ms)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static inline long etcd_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)(t.tv_sec * 1000 + t.tv_nsec / 1000000);
}

static inline void etcd_sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/*
 * Waits up to 2.5 s until the queue of lock `name` has n entries (a waiter
 * joined, or left); returns its length then.
 */
static inline long etcd_await_queue_len(const char *url, const char *name, long n)
{
    long len;
    int i;

    for (i = 0; (len = etcd_queue_len(url, name)) != n && i < 500; i++)
        etcd_sleep_ms(5);
    return len;
}

/*
 * With tests/check.h included first: a session that must open (the test
 * cannot go on without it: the message and exit 1), the helpers the etcd
 * tests share, and main()'s loop.
 */
#ifdef FIFOLOCK_TEST_CHECK_H

static inline fifolock_etcd *etcd_open_or_die(const char *endpoints,
                                              const struct fifolock_etcd_options *o)
{
    fifolock_etcd *s = NULL;
    int rc = fifolock_etcd_open(&s, endpoints, o);

    if (rc != 0) {
        fprintf(stderr, "%s: open %s: %s (%s)\n", check_current, endpoints,
                fifolock_etcd_strerror(rc), fifolock_etcd_last_error());
        exit(1);
    }
    return s;
}

/* CHECKs that the queue of `name` reaches n entries within 2.5 s. */
static inline void etcd_check_queue_len(const char *url, const char *name, long n)
{
    CHECK_EQ(etcd_await_queue_len(url, name, n), n);
}

/*
 * A thread that acquires and reports: fifolock_etcd_acquire(s, name, mode)
 * with a deadline wait_ms after its start (0: none). Threads never CHECK:
 * the test joins `thread` and checks rc, token and granted_at.
 */
struct etcd_waiter {
    fifolock_etcd *s;
    const char *name;
    const fifolock_mode *mode;
    long wait_ms;   /* its deadline, from its start; 0: none */
    bool say_why;   /* print why its acquire failed, if it did */
    int rc;         /* -1 until acquire returned */
    int64_t token;
    long granted_at; /* etcd_now_ms() when acquire returned */
    pthread_t thread;
};

static inline void *etcd_waiter_main(void *arg)
{
    struct etcd_waiter *w = arg;
    struct timespec d = etcd_in_ms(w->wait_ms);

    w->rc = fifolock_etcd_acquire(w->s, w->name, w->mode, w->wait_ms ? &d : NULL, &w->token);
    w->granted_at = etcd_now_ms();
    if (w->rc != 0 && w->say_why)
        fprintf(stderr, "%s: acquire: %s (%s)\n", check_current, fifolock_etcd_strerror(w->rc),
                fifolock_etcd_last_error());
    return NULL;
}

static inline void etcd_start_waiter(struct etcd_waiter *w, fifolock_etcd *s, const char *name,
                                     const fifolock_mode *mode, long wait_ms, bool say_why)
{
    memset(w, 0, sizeof *w);
    w->s = s;
    w->name = name;
    w->mode = mode;
    w->wait_ms = wait_ms;
    w->say_why = say_why;
    w->rc = -1;
    pthread_create(&w->thread, NULL, etcd_waiter_main, w);
}

/* A lost-lock callback (fifolock_etcd_options.lost, with lost_arg) that counts. */
struct etcd_lost_count {
    int calls;  /* atomic */
    int reason; /* the last one's; atomic */
};

static inline void etcd_count_lost(fifolock_etcd *s, const char *name, int64_t token, int reason,
                                   void *arg)
{
    struct etcd_lost_count *c = arg;

    (void)s, (void)name, (void)token;
    __atomic_store_n(&c->reason, reason, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&c->calls, 1, __ATOMIC_SEQ_CST);
}

/*
 * Runs the tests named on the command line (all when none is), as
 * RUN_TESTS does, and prints the tally. Returns the exit status: 0, or 1
 * when a check failed or a name matched no test.
 */
static inline int etcd_run_tests(const struct check_test *tests, size_t n, int argc, char **argv)
{
    size_t i, ran = 0, failed = 0;

    for (i = 0; i < n; i++) {
        int before = check_failures;

        if (!check_wanted(tests[i].name, argc, argv))
            continue;
        ran++;
        check_current = tests[i].name;
        tests[i].fn();
        if (check_failures != before) {
            failed++;
            fprintf(stderr, "FAIL %s\n", tests[i].name);
        }
    }
    if (argc > 1 && ran < (size_t)(argc - 1)) {
        fprintf(stderr, "no such test among those named\n");
        return 1;
    }
    printf("%zu passed, %zu failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}

#endif

#endif
