/*
 * bench_etcd: the etcd lock (fifolock_etcd) against etcd's own lock service
 * (v3lock, served by etcd 3.4 through the same JSON gateway: mutex only), side
 * by side in one run, on one single-member etcd on loopback that this program
 * starts (tests/etcd/etcd-up.sh) and stops.
 *
 * Parts
 *   (1) uncontended acquire+release: latency (median, p90) and, per pair,
 *       the etcd requests (gRPC calls the server started, gateway calls
 *       included) and watch events (etcd's mvcc events counter);
 *   (2) handoff: one client holds, one waits; the time from the start of the
 *       release to the return of the waiter's acquire (median, p90);
 *   (3) with 1, 10 and 50 waiting clients (threads, each its own session or
 *       lease) taking turns: requests and watch events per grant;
 *   (4) the handoff of (2), fifolock_etcd only, against its floor: one put
 *       seen by one watcher through the same gateway (HTTP/1.1, libcurl),
 *       alternating round by round;
 *   (5) the command lines a user runs, `fifolock --etcd` against
 *       `etcdctl lock` (gRPC, Go's concurrency.Mutex), alternating round by
 *       round: from one holder's COMMAND's end to the next one's start, and
 *       etcd's gRPC calls per run by method;
 *   (6) the handoff of (2) with the waiter on the non-blocking API
 *       (fifolock_etcd_acquire_async() in a poll() loop) against the
 *       blocking waiter, alternating round by round.
 *
 * What the counters cannot see: v3lock runs its Mutex inside the server with
 * an in-process client, so its own Txn/Range/Watch calls are not gRPC
 * messages; its watch events are counted. Keepalives are made rare (TTL 60).
 *
 * Usage: bench_etcd [quick] [parts=123456] [rounds=R] [n=N]
 *   parts: which parts to run (the default: all); rounds (at most 16) and n:
 *   the rounds and samples per round of parts (4), (5) and (6).
 */
#include "../tests/etcd/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FIFOLOCK_TOOL_PATH
#define FIFOLOCK_TOOL_PATH "" /* the command line is not built: no part (5) */
#define FIFOLOCK_HANDOFF_COMMAND ""
#endif

static struct etcd_server srv;
static const char *ep;
static int quick;
static int opt_rounds, opt_n; /* rounds= and n= for parts (4) and (5); 0: the default */

/* ---- etcd's counters ---- */

struct counters {
    double requests, events;
};

static struct counters read_counters(void)
{
    struct counters c = { 0, 0 };
    CURL *h = curl_easy_init();
    struct etcd_raw_body b = { NULL, 0 };
    char url[300];
    const char *line;

    snprintf(url, sizeof url, "%s/metrics", ep);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, etcd_raw_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    for (line = b.data; line && *line;) {
        const char *nl = strchr(line, '\n');
        const char *sp;

        if (strncmp(line, "grpc_server_started_total{", 26) == 0) {
            char one[512];
            size_t len = nl ? (size_t)(nl - line) : strlen(line);

            if (len >= sizeof one)
                len = sizeof one - 1;
            memcpy(one, line, len);
            one[len] = '\0';
            sp = strrchr(one, ' ');
            if (sp && strstr(one, "grpc.health") == NULL)
                c.requests += atof(sp + 1);
        } else if (strncmp(line, "etcd_debugging_mvcc_events_total ", 33) == 0) {
            c.events += atof(line + 33);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(b.data);
    return c;
}

/* ---- a v3lock client over the gateway ---- */

struct v3lock {
    CURL *h;
    long long lease;
    char key[512];      /* base64, as the gateway gave it */
};

static json_object *v3_post(struct v3lock *v, const char *path, const char *body)
{
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    struct etcd_raw_body b = { NULL, 0 };
    char url[300];
    json_object *obj = NULL;

    snprintf(url, sizeof url, "%s%s", ep, path);
    curl_easy_setopt(v->h, CURLOPT_URL, url);
    curl_easy_setopt(v->h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(v->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(v->h, CURLOPT_WRITEFUNCTION, etcd_raw_collect);
    curl_easy_setopt(v->h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(v->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(v->h, CURLOPT_TCP_NODELAY, 1L);
    if (curl_easy_perform(v->h) == CURLE_OK && b.data)
        obj = json_tokener_parse(b.data);
    curl_slist_free_all(hdr);
    free(b.data);
    return obj;
}

static void v3_open(struct v3lock *v)
{
    json_object *r, *id;

    v->h = curl_easy_init();
    r = v3_post(v, "/v3/lease/grant", "{\"TTL\":60}");
    if (r == NULL || !json_object_object_get_ex(r, "ID", &id)) {
        fprintf(stderr, "lease grant failed\n");
        exit(1);
    }
    v->lease = atoll(json_object_get_string(id));
    json_object_put(r);
}

static void v3_lock(struct v3lock *v, const char *name)
{
    char body[300], *n = etcd_b64(name);
    json_object *r, *key;

    snprintf(body, sizeof body, "{\"name\":\"%s\",\"lease\":\"%lld\"}", n, v->lease);
    free(n);
    r = v3_post(v, "/v3/lock/lock", body);
    if (r == NULL || !json_object_object_get_ex(r, "key", &key)) {
        fprintf(stderr, "v3lock lock failed\n");
        exit(1);
    }
    snprintf(v->key, sizeof v->key, "%s", json_object_get_string(key));
    json_object_put(r);
}

static void v3_unlock(struct v3lock *v)
{
    char body[600];

    snprintf(body, sizeof body, "{\"key\":\"%s\"}", v->key);
    json_object_put(v3_post(v, "/v3/lock/unlock", body));
}

static void v3_close(struct v3lock *v)
{
    char body[100];

    snprintf(body, sizeof body, "{\"ID\":\"%lld\"}", v->lease);
    json_object_put(v3_post(v, "/v3/lease/revoke", body));
    curl_easy_cleanup(v->h);
}

/* ---- fifolock_etcd ---- */

static fifolock_etcd *fl_open(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s = NULL;
    int rc;

    o.ttl = 60;
    rc = fifolock_etcd_open(&s, ep, &o);
    if (rc != 0) {
        fprintf(stderr, "open: %s (%s)\n", fifolock_etcd_strerror(rc), fifolock_etcd_last_error());
        exit(1);
    }
    return s;
}

/* One client of either kind. */
struct client {
    fifolock_etcd *s;
    struct v3lock v;
    int64_t token;
};

static void client_open(struct client *c, int v3)
{
    memset(c, 0, sizeof *c);
    if (v3)
        v3_open(&c->v);
    else
        c->s = fl_open();
}

static void client_lock(struct client *c, int v3, const char *name)
{
    if (v3)
        v3_lock(&c->v, name);
    else if (fifolock_etcd_acquire(c->s, name, &fifolock_mutex, NULL, &c->token) != 0) {
        fprintf(stderr, "acquire failed: %s\n", fifolock_etcd_last_error());
        exit(1);
    }
}

static void client_unlock(struct client *c, int v3, const char *name)
{
    if (v3)
        v3_unlock(&c->v);
    else
        fifolock_etcd_release(c->s, name, c->token);
}

static void client_close(struct client *c, int v3)
{
    if (v3)
        v3_close(&c->v);
    else
        fifolock_etcd_close(c->s);
}

static long long now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return x < y ? -1 : x > y;
}

static long long pct(long long *v, int n, int p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_ll);
    return v[(n - 1) * p / 100];
}

static const char *kind_name[2] = { "fifolock_etcd", "etcd v3lock" };

/* ---- (1) uncontended ---- */

static void uncontended(void)
{
    int v3, i, n = quick ? 50 : 300;
    long long *lat = malloc(sizeof *lat * (size_t)n);

    printf("\n(1) uncontended acquire+release, %d pairs\n\n", n);
    printf("| lock | median us | p90 us | requests/pair | watch events/pair |\n");
    printf("|---|---|---|---|---|\n");
    for (v3 = 0; v3 < 2; v3++) {
        struct client c;
        struct counters a, b;

        client_open(&c, v3);
        client_lock(&c, v3, "bench-un");
        client_unlock(&c, v3, "bench-un");
        etcd_sleep_ms(200);
        a = read_counters();
        for (i = 0; i < n; i++) {
            long long t0 = now_us();
            client_lock(&c, v3, "bench-un");
            client_unlock(&c, v3, "bench-un");
            lat[i] = now_us() - t0;
        }
        b = read_counters();
        printf("| %s | %lld | %lld | %.2f | %.2f |\n", kind_name[v3], pct(lat, n, 50),
               pct(lat, n, 90), (b.requests - a.requests) / n, (b.events - a.events) / n);
        client_close(&c, v3);
    }
    free(lat);
}

/* ---- (2) handoff ---- */

struct handoff {
    struct client *c;
    int v3;
    long long granted_at;
};

static void *handoff_waiter(void *arg)
{
    struct handoff *h = arg;

    client_lock(h->c, h->v3, "bench-handoff");
    h->granted_at = now_us();
    return NULL;
}

static void handoff(void)
{
    int v3, i, n = quick ? 10 : 40;
    long long *lat = malloc(sizeof *lat * (size_t)n);

    printf("\n(2) handoff: release by one client to grant of the waiting one, %d times\n\n", n);
    printf("| lock | median us | p90 us |\n|---|---|---|\n");
    for (v3 = 0; v3 < 2; v3++) {
        struct client holder, waiter;

        client_open(&holder, v3);
        client_open(&waiter, v3);
        for (i = 0; i < n; i++) {
            struct handoff h = { &waiter, v3, 0 };
            pthread_t t;
            long long t0;

            client_lock(&holder, v3, "bench-handoff");
            pthread_create(&t, NULL, handoff_waiter, &h);
            etcd_sleep_ms(30); /* the waiter is queued and watching */
            t0 = now_us();
            client_unlock(&holder, v3, "bench-handoff");
            pthread_join(t, NULL);
            lat[i] = h.granted_at - t0;
            client_unlock(&waiter, v3, "bench-handoff");
        }
        printf("| %s | %lld | %lld |\n", kind_name[v3], pct(lat, n, 50), pct(lat, n, 90));
        client_close(&holder, v3);
        client_close(&waiter, v3);
    }
    free(lat);
}

/* ---- (3) per grant, with N waiting ---- */

struct crowd {
    struct client c;
    int v3;
    atomic_int *grants;
    int target;
    atomic_int *ready;
};

static void *crowd_main(void *arg)
{
    struct crowd *w = arg;

    atomic_fetch_add(w->ready, 1);
    for (;;) {
        client_lock(&w->c, w->v3, "bench-crowd");
        if (atomic_fetch_add(w->grants, 1) >= w->target) {
            client_unlock(&w->c, w->v3, "bench-crowd");
            break;
        }
        client_unlock(&w->c, w->v3, "bench-crowd");
    }
    return NULL;
}

static void crowd(void)
{
    static const int sizes[] = { 1, 10, 50 };
    int v3, k, i;

    printf("\n(3) per grant, with N clients waiting while one holds (each loops acquire, "
           "release)\n\n");
    printf("| lock | N waiting | grants | requests/grant | watch events/grant | grants/s |\n");
    printf("|---|---|---|---|---|---|\n");
    for (v3 = 0; v3 < 2; v3++)
        for (k = 0; k < 3; k++) {
            int n = sizes[k] + 1, target = quick ? 20 : 100 + 2 * n;
            struct crowd *w = calloc((size_t)n, sizeof *w);
            pthread_t *t = calloc((size_t)n, sizeof *t);
            atomic_int grants = 0, ready = 0;
            struct counters a, b;
            long long t0, t1;
            int done;

            for (i = 0; i < n; i++) {
                client_open(&w[i].c, v3);
                w[i].v3 = v3;
                w[i].grants = &grants;
                w[i].target = target;
                w[i].ready = &ready;
            }
            etcd_sleep_ms(200);
            a = read_counters();
            t0 = now_us();
            for (i = 0; i < n; i++)
                pthread_create(&t[i], NULL, crowd_main, &w[i]);
            for (i = 0; i < n; i++)
                pthread_join(t[i], NULL);
            t1 = now_us();
            b = read_counters();
            done = atomic_load(&grants);
            printf("| %s | %d | %d | %.2f | %.2f | %.0f |\n", kind_name[v3], n - 1, done,
                   (b.requests - a.requests) / done, (b.events - a.events) / done,
                   done / ((t1 - t0) / 1e6));
            fflush(stdout);
            for (i = 0; i < n; i++)
                client_close(&w[i].c, v3);
            free(w);
            free(t);
        }
}

/* ---- (4) library handoff against the floor: one write seen by one watch ---- */

/*
 * The floor of any etcd lock's handoff through the gateway: the releasing
 * client's write (one raft entry, one fsync) and the waiting client's watch
 * event, both over HTTP/1.1 with libcurl as the library talks to etcd (a
 * kept connection, TCP_NODELAY). The watcher stays open across the puts;
 * the time runs from just before the put is sent to the watcher's write
 * callback seeing the event.
 */
struct floor_watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int created, events, stop;
    long long seen_at;
};

static size_t floor_on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct floor_watch *w = arg;
    size_t n = size * nmemb;
    long long t = now_us();

    pthread_mutex_lock(&w->mu);
    if (memmem(ptr, n, "\"events\"", 8) != NULL) {
        w->seen_at = t;
        w->events++;
    } else if (memmem(ptr, n, "\"created\"", 9) != NULL) {
        w->created = 1;
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return w->stop ? 0 : n;
}

static void *floor_watcher(void *arg)
{
    struct floor_watch *w = arg;
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *h = curl_easy_init();
    char url[300], body[200], *k = etcd_b64("bench-floor");

    snprintf(url, sizeof url, "%s/v3/watch", ep);
    snprintf(body, sizeof body, "{\"create_request\":{\"key\":\"%s\"}}", k);
    free(k);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, floor_on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_perform(h); /* until floor_on_data refuses, once stop is set */
    curl_easy_cleanup(h);
    curl_slist_free_all(hdr);
    return NULL;
}

/* One round of n puts, each awaited by the watcher; the times into lat. */
static void floor_round(long long *lat, int n)
{
    struct floor_watch w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0 };
    struct v3lock writer = { curl_easy_init(), 0, "" };
    char body[200], *k = etcd_b64("bench-floor"), *v = etcd_b64("x");
    pthread_t t;
    int i;

    snprintf(body, sizeof body, "{\"key\":\"%s\",\"value\":\"%s\"}", k, v);
    free(k);
    free(v);
    json_object_put(v3_post(&writer, "/v3/kv/put", body)); /* the connection, made */
    pthread_create(&t, NULL, floor_watcher, &w);
    pthread_mutex_lock(&w.mu);
    while (!w.created)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    for (i = 0; i < n; i++) {
        long long t0;
        int before;

        etcd_sleep_ms(30); /* as in the handoff: the waiter is idle when the write comes */
        pthread_mutex_lock(&w.mu);
        before = w.events;
        pthread_mutex_unlock(&w.mu);
        t0 = now_us();
        json_object_put(v3_post(&writer, "/v3/kv/put", body));
        pthread_mutex_lock(&w.mu);
        while (w.events == before)
            pthread_cond_wait(&w.cv, &w.mu);
        lat[i] = w.seen_at - t0;
        pthread_mutex_unlock(&w.mu);
    }
    w.stop = 1;
    json_object_put(v3_post(&writer, "/v3/kv/put", body)); /* wakes the watcher to stop */
    pthread_join(t, NULL);
    curl_easy_cleanup(writer.h);
}

/* One round of n library handoffs (as part 2, fifolock_etcd only). */
static void lib_round(long long *lat, int n)
{
    struct client holder, waiter;
    int i;

    client_open(&holder, 0);
    client_open(&waiter, 0);
    for (i = 0; i < n; i++) {
        struct handoff h = { &waiter, 0, 0 };
        pthread_t t;
        long long t0;

        client_lock(&holder, 0, "bench-handoff");
        pthread_create(&t, NULL, handoff_waiter, &h);
        etcd_sleep_ms(30); /* the waiter is queued and watching */
        t0 = now_us();
        client_unlock(&holder, 0, "bench-handoff");
        pthread_join(t, NULL);
        lat[i] = h.granted_at - t0;
        client_unlock(&waiter, 0, "bench-handoff");
    }
    client_close(&holder, 0);
    client_close(&waiter, 0);
}

/* Median and spread of rounds x n samples, each round's median too. */
struct summary {
    long long median, p10, p90, round_median[16];
};

static struct summary summarize(const long long *all, int rounds, int n)
{
    struct summary s;
    long long *tmp = malloc(sizeof *tmp * (size_t)(rounds * n)); /* all stays in order */
    int r;

    memset(&s, 0, sizeof s);
    for (r = 0; r < rounds && r < 16; r++) {
        memcpy(tmp, all + (size_t)r * n, sizeof *tmp * (size_t)n);
        s.round_median[r] = pct(tmp, n, 50);
    }
    memcpy(tmp, all, sizeof *tmp * (size_t)(rounds * n));
    s.median = pct(tmp, rounds * n, 50);
    s.p10 = pct(tmp, rounds * n, 10);
    s.p90 = pct(tmp, rounds * n, 90);
    free(tmp);
    return s;
}

static void print_summary(const char *what, struct summary *s, int rounds, int n)
{
    int r;

    printf("| %s | %d | %lld | %lld | %lld | ", what, rounds * n, s->median, s->p10, s->p90);
    for (r = 0; r < rounds && r < 16; r++)
        printf("%s%lld", r ? ", " : "", s->round_median[r]);
    printf(" |\n");
}

static double loadavg(void)
{
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");

    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1;
        fclose(f);
    }
    return load;
}

static void floor_vs_lib(void)
{
    int rounds = opt_rounds ? opt_rounds : quick ? 1 : 5, n = opt_n ? opt_n : quick ? 10 : 30, r;
    long long *lib = malloc(sizeof *lib * (size_t)(rounds * n));
    long long *flo = malloc(sizeof *flo * (size_t)(rounds * n));
    struct summary a, b;

    printf("\n(4) library handoff (release -> the waiter's acquire returns) against the "
           "floor (a put -> a watcher sees it; gateway, HTTP/1.1, libcurl), alternating "
           "%d rounds of %d, load %.2f\n\n",
           rounds, n, loadavg());
    for (r = 0; r < rounds; r++) {
        /* Alternate which goes first, so that neither always follows the other. */
        if (r % 2 == 0) {
            lib_round(lib + (size_t)r * n, n);
            floor_round(flo + (size_t)r * n, n);
        } else {
            floor_round(flo + (size_t)r * n, n);
            lib_round(lib + (size_t)r * n, n);
        }
    }
    a = summarize(lib, rounds, n);
    b = summarize(flo, rounds, n);
    printf("| | samples | median us | p10 us | p90 us | median of each round, us |\n");
    printf("|---|---|---|---|---|---|\n");
    print_summary("fifolock_etcd handoff", &a, rounds, n);
    print_summary("floor: put + watch event", &b, rounds, n);
    printf("\nratio of medians: %.2f (load now %.2f)\n", (double)a.median / (double)b.median,
           loadavg());
    free(lib);
    free(flo);
}

/* ---- (6) the handoff to a waiter on the non-blocking API ---- */

struct async_waiter {
    fifolock_etcd *s;
    int done;
    int err;
    int64_t token;
    long long granted_at;
};

static void async_done(fifolock_etcd_request *req, int err, int64_t token, void *arg)
{
    struct async_waiter *w = arg;

    (void)req;
    w->granted_at = now_us();
    w->err = err;
    w->token = token;
    w->done = 1;
}

/* The event loop's thread: one request, polled until it is reported. */
static void *async_loop(void *arg)
{
    struct async_waiter *w = arg;
    fifolock_etcd_request *req;

    if (fifolock_etcd_acquire_async(w->s, "bench-handoff", &fifolock_mutex, 1, NULL, async_done,
                                    w, &req) != 0) {
        w->err = EIO;
        return NULL;
    }
    while (!w->done) {
        struct pollfd p = { fifolock_etcd_fd(w->s), POLLIN, 0 };

        poll(&p, 1, fifolock_etcd_timeout(w->s));
        fifolock_etcd_process(w->s);
    }
    return NULL;
}

/* One round of n handoffs to an async waiter (as lib_round()). */
static void async_round(long long *lat, int n)
{
    struct client holder;
    fifolock_etcd *s = fl_open();
    int i;

    client_open(&holder, 0);
    for (i = 0; i < n; i++) {
        struct async_waiter w = { s, 0, 0, 0, 0 };
        pthread_t t;
        long long t0;

        client_lock(&holder, 0, "bench-handoff");
        pthread_create(&t, NULL, async_loop, &w);
        etcd_sleep_ms(30); /* the waiter is queued and watching */
        t0 = now_us();
        client_unlock(&holder, 0, "bench-handoff");
        pthread_join(t, NULL);
        if (w.err != 0) {
            fprintf(stderr, "async acquire: %s\n", fifolock_etcd_strerror(w.err));
            exit(1);
        }
        lat[i] = w.granted_at - t0;
        fifolock_etcd_release(s, "bench-handoff", w.token);
    }
    client_close(&holder, 0);
    fifolock_etcd_close(s);
}

static void async_vs_blocking(void)
{
    int rounds = opt_rounds ? opt_rounds : quick ? 1 : 5, n = opt_n ? opt_n : quick ? 10 : 30, r;
    long long *blk = malloc(sizeof *blk * (size_t)(rounds * n));
    long long *asy = malloc(sizeof *asy * (size_t)(rounds * n));
    struct summary a, b;

    printf("\n(6) handoff to a waiter on the non-blocking API (acquire_async in a poll() "
           "loop) against a blocking waiter, alternating %d rounds of %d, load %.2f\n\n",
           rounds, n, loadavg());
    for (r = 0; r < rounds; r++) {
        if (r % 2 == 0) {
            lib_round(blk + (size_t)r * n, n);
            async_round(asy + (size_t)r * n, n);
        } else {
            async_round(asy + (size_t)r * n, n);
            lib_round(blk + (size_t)r * n, n);
        }
    }
    a = summarize(asy, rounds, n);
    b = summarize(blk, rounds, n);
    printf("| | samples | median us | p10 us | p90 us | median of each round, us |\n");
    printf("|---|---|---|---|---|---|\n");
    print_summary("async waiter (one loop, one descriptor)", &a, rounds, n);
    print_summary("blocking waiter (its thread)", &b, rounds, n);
    printf("\nratio of medians: %.2f (load now %.2f)\n", (double)a.median / (double)b.median,
           loadavg());
    free(blk);
    free(asy);
}

/* ---- (5) the command lines: fifolock --etcd against etcdctl lock ---- */

/*
 * Each run of a tool holds the lock while its COMMAND, handoff_command OUT
 * FIFO (bench/helpers: libc only), runs: the command reads the clock first
 * thing and writes it to OUT, then blocks on FIFO; when this program writes a
 * byte there, the command reads the clock, writes it and exits. A handoff is
 * from that last reading of one holder's command to the first reading of the
 * next holder's command: the command's exit, the tool seeing it and letting
 * go, etcd, the waiting tool learning it and starting its command. Both
 * tools run the same command, so its own start and exit weigh the same on
 * both sides. The next run is started and queued (its entry is in etcd, and
 * 150 ms more for its watch) before the byte is written; this program only
 * waits (waitpid, then polls OUT each ms) while a handoff runs.
 */
static char workdir[400];

/* The stamps the command of run i wrote so far (0 when not yet). */
static void read_stamps(int i, long long *start, long long *end)
{
    char path[500];
    FILE *f;

    *start = *end = 0;
    snprintf(path, sizeof path, "%s/out%d", workdir, i);
    f = fopen(path, "r");
    if (f == NULL)
        return;
    if (fscanf(f, "%lld", start) == 1 && fscanf(f, "%lld", end) != 1)
        *end = 0;
    fclose(f);
}

static pid_t start_run(int tool, int i)
{
    char out[500], fifo[500];
    pid_t pid;

    snprintf(out, sizeof out, "%s/out%d", workdir, i);
    snprintf(fifo, sizeof fifo, "%s/fifo%d", workdir, i);
    unlink(out);
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) {
        perror("mkfifo");
        exit(1);
    }
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 1); /* etcdctl prints the key it holds */
        if (tool == 0)
            execl(FIFOLOCK_TOOL_PATH, "fifolock", "--etcd", ep, "bench-cli",
                  FIFOLOCK_HANDOFF_COMMAND, out, fifo, (char *)NULL);
        else {
            char epv[1100];

            snprintf(epv, sizeof epv, "--endpoints=%s", ep);
            setenv("ETCDCTL_API", "3", 1);
            execlp("etcdctl", "etcdctl", epv, "lock", "bench-cli", FIFOLOCK_HANDOFF_COMMAND,
                   out, fifo, (char *)NULL);
        }
        _exit(127);
    }
    return pid;
}

static void wait_started(int i)
{
    long long s, e;
    int ms;

    for (ms = 0; ms < 20000; ms++) {
        read_stamps(i, &s, &e);
        if (s != 0)
            return;
        etcd_sleep_ms(1);
    }
    fprintf(stderr, "run %d never started its command\n", i);
    exit(1);
}

static void let_go(int i)
{
    char fifo[500];
    int f;

    snprintf(fifo, sizeof fifo, "%s/fifo%d", workdir, i);
    f = open(fifo, O_WRONLY);
    if (f < 0 || write(f, "x", 1) != 1) {
        perror("fifo");
        exit(1);
    }
    close(f);
}

static void wait_exit(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            break;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "a lock tool ended with status %d\n", status);
}

/* etcd's gRPC calls by method (grpc_server_started_total). */
#define METHODS 80
struct methods {
    char name[METHODS][48];
    double count[METHODS];
    int n;
};

static void read_methods(struct methods *m)
{
    CURL *h = curl_easy_init();
    struct etcd_raw_body b = { NULL, 0 };
    char url[300];
    const char *line;

    memset(m, 0, sizeof *m);
    snprintf(url, sizeof url, "%s/metrics", ep);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, etcd_raw_collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    for (line = b.data; line && *line;) {
        const char *nl = strchr(line, '\n'), *meth = strstr(line, "grpc_method=\"");
        const char *svc = strstr(line, "grpc_service=\"");

        if (strncmp(line, "grpc_server_started_total{", 26) == 0 && meth && svc &&
            (!nl || meth < nl) && strncmp(svc + 14, "grpc.health", 11) != 0 &&
            m->n < METHODS) {
            const char *q = strchr(meth + 13, '"'), *sp = nl ? nl : line + strlen(line);

            while (sp > line && sp[-1] != ' ')
                sp--;
            snprintf(m->name[m->n], sizeof m->name[0], "%.*s", (int)(q - meth - 13),
                     meth + 13);
            m->count[m->n++] = atof(sp);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(b.data);
}

static double method_delta(const struct methods *a, const struct methods *b, const char *name)
{
    double x = 0, y = 0;
    int i;

    for (i = 0; i < a->n; i++)
        if (strcmp(a->name[i], name) == 0)
            x += a->count[i];
    for (i = 0; i < b->n; i++)
        if (strcmp(b->name[i], name) == 0)
            y += b->count[i];
    return y - x;
}

/*
 * An observer beside the two tools: a watch on the whole keyspace that
 * notes when the first DELETE event after let_go() reaches it. That splits a
 * handoff in two: the holder's side (its command's end to its release seen
 * by a watcher) and the waiter's side (from there to the next command's
 * start). It is the same extra watcher for both tools.
 */
struct observer {
    pthread_mutex_t mu;
    int created, armed, stop;
    long long deleted_at;
};

static size_t observer_on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct observer *o = arg;
    size_t n = size * nmemb;
    long long t = now_us();

    pthread_mutex_lock(&o->mu);
    if (o->armed && memmem(ptr, n, "\"DELETE\"", 8) != NULL) {
        o->deleted_at = t;
        o->armed = 0;
    } else if (memmem(ptr, n, "\"created\"", 9) != NULL) {
        o->created = 1;
    }
    pthread_mutex_unlock(&o->mu);
    return o->stop ? 0 : n;
}

static void *observer_main(void *arg)
{
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *h = curl_easy_init();
    char url[300];

    snprintf(url, sizeof url, "%s/v3/watch", ep);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS,
                     "{\"create_request\":{\"key\":\"AA==\",\"range_end\":\"AA==\"}}");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, observer_on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, arg);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdr);
    return NULL;
}

/* n handoffs between n + 1 runs of one tool; their times into lat, the
 * holder's side of each into side. */
static void cli_round(int tool, long long *lat, long long *side, int n, double *calls,
                      struct methods *ma, struct methods *mb)
{
    const char *prefix = tool == 0 ? "fifolock/" : "bench-cli/";
    struct observer o = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0 };
    pthread_t ot;
    pid_t holder, next;
    int i, polls = 0;

    pthread_create(&ot, NULL, observer_main, &o);
    while (!__atomic_load_n(&o.created, __ATOMIC_SEQ_CST))
        etcd_sleep_ms(1);
    read_methods(ma);
    holder = start_run(tool, 0);
    wait_started(0);
    for (i = 0; i < n; i++) {
        long long s0, e0, s1, e1;
        int ms;

        next = start_run(tool, i + 1);
        for (ms = 0; etcd_count(ep, prefix, NULL) < 2; ms++, polls++) {
            if (ms > 20000) {
                fprintf(stderr, "run %d never queued\n", i + 1);
                exit(1);
            }
            etcd_sleep_ms(1);
        }
        polls++;
        etcd_sleep_ms(150); /* its watch is open */
        pthread_mutex_lock(&o.mu);
        o.armed = 1;
        o.deleted_at = 0;
        pthread_mutex_unlock(&o.mu);
        let_go(i);
        wait_exit(holder);
        wait_started(i + 1);
        read_stamps(i, &s0, &e0);
        read_stamps(i + 1, &s1, &e1);
        lat[i] = s1 - e0;
        pthread_mutex_lock(&o.mu);
        side[i] = o.deleted_at ? o.deleted_at - e0 : -1;
        pthread_mutex_unlock(&o.mu);
        holder = next;
    }
    let_go(n);
    wait_exit(holder);
    read_methods(mb);
    o.stop = 1;
    json_object_put(etcd_raw(ep, "/v3/kv/put", "{\"key\":\"AA==\",\"value\":\"\"}", NULL));
    pthread_join(ot, NULL);
    *calls = polls;
}

static void cli(void)
{
    int rounds = opt_rounds ? opt_rounds : quick ? 1 : 5, n = opt_n ? opt_n : quick ? 5 : 30;
    int r, tool;
    long long *lat[2], *side[2], *grant[2];
    struct methods ma, mb;
    static const char *tool_name[2] = { "fifolock --etcd", "etcdctl lock" };
    static const char *shown[] = { "LeaseGrant", "Txn",         "Range", "Put",
                                   "DeleteRange", "Watch",      "LeaseRevoke",
                                   "LeaseKeepAlive", "Lock",    "Unlock" };
    double per_run[2][10] = { { 0 } };
    struct summary s[2];
    size_t k;

    if (FIFOLOCK_TOOL_PATH[0] == '\0') {
        printf("\n(5) skipped: the command line is not built\n");
        return;
    }
    if (system("command -v etcdctl >/dev/null 2>&1") != 0) {
        printf("\n(5) skipped: etcdctl is not installed\n");
        return;
    }
    snprintf(workdir, sizeof workdir, "%s/cli", srv.dir);
    mkdir(workdir, 0700);
    lat[0] = malloc(sizeof *lat[0] * (size_t)(rounds * n));
    lat[1] = malloc(sizeof *lat[1] * (size_t)(rounds * n));
    for (tool = 0; tool < 2; tool++) {
        side[tool] = malloc(sizeof *side[tool] * (size_t)(rounds * n));
        grant[tool] = malloc(sizeof *grant[tool] * (size_t)(rounds * n));
    }
    printf("\n(5) command lines: from the holder's COMMAND's last clock reading to the next "
           "holder's COMMAND's first, alternating the tools round by round, %d rounds of %d "
           "handoffs each, load %.2f\n\n",
           rounds, n, loadavg());
    fflush(stdout);
    for (r = 0; r < rounds; r++)
        for (tool = 0; tool < 2; tool++) {
            int t = r % 2 ? 1 - tool : tool; /* fifolock first in even rounds */
            double polls;

            cli_round(t, lat[t] + (size_t)r * n, side[t] + (size_t)r * n, n, &polls, &ma,
                      &mb);
            for (k = 0; k < sizeof shown / sizeof shown[0]; k++)
                per_run[t][k] += method_delta(&ma, &mb, shown[k]);
            per_run[t][2] -= polls; /* the bench's own key counts */
        }
    printf("| tool | handoffs | median us | p10 us | p90 us | median of each round, us |\n");
    printf("|---|---|---|---|---|---|\n");
    for (tool = 0; tool < 2; tool++) {
        s[tool] = summarize(lat[tool], rounds, n);
        print_summary(tool_name[tool], &s[tool], rounds, n);
    }
    printf("\nratio of medians (fifolock / etcdctl): %.2f; per round:", (double)s[0].median /
                                                                         (double)s[1].median);
    for (r = 0; r < rounds; r++)
        printf(" %.2f", (double)s[0].round_median[r] / (double)s[1].round_median[r]);
    printf("\n\nThe same handoffs split where a watcher of this program saw the release "
           "(the DELETE event):\n\n");
    printf("| tool, side | handoffs | median us | p10 us | p90 us | median of each round, us "
           "|\n|---|---|---|---|---|---|\n");
    for (tool = 0; tool < 2; tool++) {
        struct summary a, b;
        char what[100];
        int k2;

        for (k2 = 0; k2 < rounds * n; k2++)
            grant[tool][k2] = lat[tool][k2] - side[tool][k2];
        a = summarize(side[tool], rounds, n);
        b = summarize(grant[tool], rounds, n);
        snprintf(what, sizeof what, "%s: command's end -> release seen", tool_name[tool]);
        print_summary(what, &a, rounds, n);
        snprintf(what, sizeof what, "%s: release seen -> next command starts",
                 tool_name[tool]);
        print_summary(what, &b, rounds, n);
    }
    printf("\n(The split is as good as the watcher's own wake-up: on a loaded machine it "
           "is late at times, which moves time from the second side to the first.)\n");
    printf("\n\netcd's gRPC calls per run of the tool (one run = one acquire, one COMMAND, "
           "one release; the bench's own key counts taken out):\n\n| tool |");
    for (k = 0; k < sizeof shown / sizeof shown[0]; k++)
        printf(" %s |", shown[k]);
    printf("\n|---|");
    for (k = 0; k < sizeof shown / sizeof shown[0]; k++)
        printf("---|");
    printf("\n");
    for (tool = 0; tool < 2; tool++) {
        printf("| %s |", tool_name[tool]);
        for (k = 0; k < sizeof shown / sizeof shown[0]; k++)
            printf(" %.2f |", per_run[tool][k] / (rounds * (n + 1)));
        printf("\n");
    }
    printf("\nload now %.2f\n", loadavg());
    for (tool = 0; tool < 2; tool++) {
        free(lat[tool]);
        free(side[tool]);
        free(grant[tool]);
    }
}

int main(int argc, char **argv)
{
    const char *parts = "123456";
    int i;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "quick") == 0)
            quick = 1;
        else if (strncmp(argv[i], "parts=", 6) == 0)
            parts = argv[i] + 6;
        else if (strncmp(argv[i], "rounds=", 7) == 0 && atoi(argv[i] + 7) > 0)
            opt_rounds = atoi(argv[i] + 7) < 16 ? atoi(argv[i] + 7) : 16;
        else if (strncmp(argv[i], "n=", 2) == 0 && atoi(argv[i] + 2) > 0)
            opt_n = atoi(argv[i] + 2);
        else {
            fprintf(stderr, "usage: bench_etcd [quick] [parts=123456] [rounds=R] [n=N]\n");
            return 2;
        }
    if (etcd_up(&srv, 1, NULL) == ETCD_SKIP) {
        fprintf(stderr, "etcd is not installed\n");
        return 1;
    }
    ep = srv.endpoints;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    printf("bench_etcd: etcd 3.4 single member on loopback, load average %.2f\n", loadavg());
    if (strchr(parts, '1'))
        uncontended();
    if (strchr(parts, '2'))
        handoff();
    if (strchr(parts, '3'))
        crowd();
    if (strchr(parts, '4'))
        floor_vs_lib();
    if (strchr(parts, '5'))
        cli();
    if (strchr(parts, '6'))
        async_vs_blocking();
    printf("\nload average at the end %.2f\n", loadavg());
    etcd_down(&srv);
    return 0;
}
