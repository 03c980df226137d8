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
 *       lease) taking turns: requests and watch events per grant.
 *
 * What the counters cannot see: v3lock runs its Mutex inside the server with
 * an in-process client, so its own Txn/Range/Watch calls are not gRPC
 * messages; its watch events are counted. Keepalives are made rare (TTL 60).
 *
 * Usage: bench_etcd [quick]
 */
#include "../tests/etcd/harness.h"

#include <pthread.h>
#include <stdatomic.h>

static struct etcd_server srv;
static const char *ep;
static int quick;

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

int main(int argc, char **argv)
{
    quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    if (etcd_up(&srv, 1, NULL) == ETCD_SKIP) {
        fprintf(stderr, "etcd is not installed\n");
        return 1;
    }
    ep = srv.endpoints;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    {
        double load[3] = { 0, 0, 0 };
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
            if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
                load[0] = -1;
            fclose(f);
        }
        printf("bench_etcd: etcd 3.4 single member on loopback, load average %.2f\n", load[0]);
    }
    uncontended();
    handoff();
    crowd();
    etcd_down(&srv);
    return 0;
}
