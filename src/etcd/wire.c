/*
 * The wire: etcd's JSON gateway (grpc-gateway in front of the v3 API) over
 * HTTP with libcurl, bodies with json-c. Keys and values travel in base64,
 * 64-bit integers as decimal strings. A unary call is one POST; a watch is
 * one POST whose answer streams one JSON object per message.
 *
 * Endpoint failover: every call starts at the endpoint that answered last
 * and moves on at a connection failure or a "try again" answer (no leader,
 * leader changed), until its time budget is spent. Only linearizable reads
 * are used (etcd's default), so any member gives the same answers.
 */
#include "etcd_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[512];

void fifolock__etcd_set_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

void fifolock__etcd_clear_error(void)
{
    last_error[0] = '\0';
}

const char *fifolock_etcd_last_error(void)
{
    return last_error;
}

int64_t fifolock__etcd_now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t fifolock__etcd_boot_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_BOOTTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int64_t fifolock__etcd_deadline_ms(const struct timespec *deadline)
{
    if (deadline == NULL)
        return FIFOLOCK__ETCD_FOREVER;
    return (int64_t)deadline->tv_sec * 1000 + (deadline->tv_nsec + 999999) / 1000000;
}

/* ---- base64 (RFC 4648, as the gateway's JSON bytes) ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

json_object *fifolock__etcd_b64(const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i, o = 0, outlen = 4 * ((len + 2) / 3);
    char *out = malloc(outlen + 1);
    json_object *obj;

    if (out == NULL)
        return NULL;
    for (i = 0; i + 2 < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = b64_alphabet[v >> 6 & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0);
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    obj = json_object_new_string_len(out, (int)o);
    free(out);
    return obj;
}

json_object *fifolock__etcd_str_b64(const char *s)
{
    return fifolock__etcd_b64(s, strlen(s));
}

static int b64_value(int c)
{
    const char *p = c ? strchr(b64_alphabet, c) : NULL;

    return p ? (int)(p - b64_alphabet) : -1;
}

char *fifolock__etcd_get_b64(json_object *obj, const char *field, size_t *len)
{
    json_object *f;
    const char *in;
    size_t i, inlen, o = 0;
    unsigned acc = 0;
    int bits = 0;
    char *out;

    if (!json_object_object_get_ex(obj, field, &f) || !json_object_is_type(f, json_type_string))
        return NULL;
    in = json_object_get_string(f);
    inlen = (size_t)json_object_get_string_len(f);
    out = malloc(inlen / 4 * 3 + 4);
    if (out == NULL)
        return NULL;
    for (i = 0; i < inlen && in[i] != '='; i++) {
        int v = b64_value((unsigned char)in[i]);

        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits & 0xff);
        }
    }
    out[o] = '\0';
    if (len)
        *len = o;
    return out;
}

json_object *fifolock__etcd_i64(int64_t v)
{
    char buf[32];

    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return json_object_new_string(buf);
}

int64_t fifolock__etcd_get_i64(json_object *obj, const char *field)
{
    json_object *f;

    if (obj == NULL || !json_object_object_get_ex(obj, field, &f))
        return 0;
    if (json_object_is_type(f, json_type_string)) {
        const char *str = json_object_get_string(f);
        char *end;
        long long v = strtoll(str, &end, 10);

        return *end == '\0' ? (int64_t)v : 0;
    }
    return json_object_get_int64(f);
}

char *fifolock__etcd_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    char *end = malloc(n + 1);

    if (end == NULL)
        return NULL;
    memcpy(end, prefix, n + 1);
    /* The prefixes here end with '/', never with 0xff: add one to the last byte. */
    while (n > 0 && (unsigned char)end[n - 1] == 0xff)
        end[--n] = '\0';
    if (n > 0)
        end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    return end;
}

/* ---- easy handles ---- */

size_t fifolock__etcd_collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct fifolock__etcd_body *b = arg;
    size_t n = size * nmemb;

    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->data, cap);

        if (p == NULL)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

void fifolock__etcd_configure(fifolock_etcd *s, CURL *c)
{
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    if (s->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, s->cacert);
    if (s->cert)
        curl_easy_setopt(c, CURLOPT_SSLCERT, s->cert);
    if (s->key)
        curl_easy_setopt(c, CURLOPT_SSLKEY, s->key);
}

struct curl_slist *fifolock__etcd_headers(fifolock_etcd *s)
{
    /* "hasleader" is clientv3's WithRequireLeader through the gateway: a
     * member that knows it has no leader refuses at once ("etcdserver: no
     * leader") instead of holding the request, and cancels such a watch. */
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json"), *h2;
    char *auth = NULL;

    h2 = h ? curl_slist_append(h, "Grpc-Metadata-hasleader: true") : NULL;
    if (h2 == NULL) {
        curl_slist_free_all(h);
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    if (s->auth_token) {
        size_t n = strlen(s->auth_token) + sizeof "Authorization: ";
        auth = malloc(n);
        if (auth)
            snprintf(auth, n, "Authorization: %s", s->auth_token);
    }
    pthread_mutex_unlock(&s->mu);
    if (auth && h) {
        h2 = curl_slist_append(h, auth);
        if (h2 == NULL) {
            curl_slist_free_all(h);
            h = NULL;
        }
    }
    free(auth);
    return h;
}

static struct fifolock__etcd_http *take_http(fifolock_etcd *s)
{
    struct fifolock__etcd_http *h;

    pthread_mutex_lock(&s->mu);
    h = s->pool;
    if (h)
        s->pool = h->next;
    pthread_mutex_unlock(&s->mu);
    if (h)
        return h;
    h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        free(h);
        return NULL;
    }
    return h;
}

static void give_http(fifolock_etcd *s, struct fifolock__etcd_http *h)
{
    pthread_mutex_lock(&s->mu);
    h->next = s->pool;
    s->pool = h;
    pthread_mutex_unlock(&s->mu);
}

/*
 * Does the endpoint's host and port answer in the other scheme (plain HTTP
 * when `tls` is false)? Asked only when the session opens and a request
 * failed in a way a scheme mismatch would explain: a yes makes the mistake
 * plain (EPROTO) instead of a refusal or a timeout. Whether the server is
 * trusted does not matter here, only that it speaks TLS.
 */
static bool speaks(fifolock_etcd *s, const char *endpoint, bool tls)
{
    const char *hostport = strstr(endpoint, "://");
    char url[1024], errbuf[CURL_ERROR_SIZE] = "";
    struct fifolock__etcd_body b = { NULL, 0, 0 };
    CURL *c;
    CURLcode code;

    if (hostport == NULL || (c = curl_easy_init()) == NULL)
        return false;
    snprintf(url, sizeof url, "%s://%s/health", tls ? "https" : "http", hostport + 3);
    fifolock__etcd_configure(s, c);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fifolock__etcd_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->attempt_ms);
    code = curl_easy_perform(c);
    curl_easy_cleanup(c);
    free(b.data);
    if (!tls)
        return code == CURLE_OK;
    /* A handshake, whatever its end: a TLS server (a refused client certificate too). */
    return code == CURLE_OK || code == CURLE_PEER_FAILED_VERIFICATION ||
           strstr(errbuf, "alert") != NULL;
}

/*
 * What a failed transfer means, for TLS: 0 when it is not about TLS or the
 * scheme (the endpoint may be failing: move on), else the final errno, with
 * msg saying why. A refusal is final: another attempt would get the same.
 *   ENOKEY   the server's certificate is not trusted (wrong or missing CA);
 *   EACCES   the server refused our client certificate (a TLS alert);
 *   EPROTO   https:// to a plain HTTP server, or http:// to a TLS one.
 */
static int tls_failure(fifolock_etcd *s, size_t ep, CURLcode code, const char *errbuf, char *msg,
                       size_t msgsize)
{
    const char *url = s->endpoints[ep];
    bool https = strncmp(url, "https://", 8) == 0, alert = strstr(errbuf, "alert") != NULL;

    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        snprintf(msg, msgsize, "%s: the server's certificate is not trusted by %s%s: %s", url,
                 s->cacert ? "the CA certificate " : "the system's CAs (no CA certificate given)",
                 s->cacert ? s->cacert : "", errbuf[0] ? errbuf : curl_easy_strerror(code));
        return ENOKEY;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_USE_SSL_FAILED:
        return EACCES;
    case CURLE_SSL_CONNECT_ERROR:
        if (alert)
            return EACCES;
        if (s->opening && https && speaks(s, url, false)) {
            snprintf(msg, msgsize, "%s speaks plain HTTP, not TLS: give it as http://%s", url,
                     url + 8);
            return EPROTO;
        }
        return 0;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        /* TLS 1.3: the server refuses a client certificate after the handshake. */
        if (https && alert)
            return EACCES;
        if (s->opening && !https && strncmp(url, "http://", 7) == 0 && speaks(s, url, true)) {
            snprintf(msg, msgsize, "%s speaks TLS, not plain HTTP: give it as https://%s with "
                     "its CA certificate", url, url + 7);
            return EPROTO;
        }
        return 0;
    default:
        return 0;
    }
}

static int transient_errno(CURLcode code)
{
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return ETIMEDOUT;
    default:
        return ECONNREFUSED;
    }
}

/*
 * A failure of this process, not of the endpoint: no other endpoint would
 * do better, so the request ends with it. 0 for the endpoint's failures.
 */
static int local_failure(CURLcode code)
{
    switch (code) {
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR:     /* our write callback could not grow its buffer */
        return ENOMEM;
    case CURLE_FAILED_INIT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_NOT_BUILT_IN:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_READ_ERROR:
        return EIO;
    default:
        return 0;
    }
}

void fifolock__etcd_endpoint_failed(fifolock_etcd *s, size_t ep)
{
    s->ep_fail[ep]++;
    if (s->current == ep)
        s->current = (ep + 1) % s->nendpoints;
}

/* grpc status codes the gateway reports. */
enum { GRPC_INVALID_ARGUMENT = 3, GRPC_DEADLINE = 4, GRPC_NOT_FOUND = 5,
       GRPC_PERMISSION_DENIED = 7, GRPC_UNAVAILABLE = 14, GRPC_UNAUTHENTICATED = 16 };

/*
 * Classifies an error answer: 0 = try again (elsewhere), -1 = authenticate
 * again and retry, else the errno to return.
 */
static int classify(json_object *err, char *msg, size_t msgsize)
{
    json_object *m = NULL;
    int64_t code = fifolock__etcd_get_i64(err, "code");
    const char *text = "unexpected answer from etcd";

    if (err && (json_object_object_get_ex(err, "message", &m) ||
                json_object_object_get_ex(err, "error", &m)) &&
        json_object_is_type(m, json_type_string))
        text = json_object_get_string(m);
    snprintf(msg, msgsize, "%s", text);
    if (strstr(text, "invalid auth token") || strstr(text, "auth token is expired") ||
        code == GRPC_UNAUTHENTICATED)
        return -1;
    if (strstr(text, "authentication failed"))
        return EKEYREJECTED;    /* a wrong user or password */
    if (strstr(text, "authentication is not enabled"))
        return ENOTSUP;         /* a user given, and etcd has no auth */
    if (strstr(text, "user name is empty") || strstr(text, "permission denied") ||
        code == GRPC_PERMISSION_DENIED)
        return EACCES;
    if (code == GRPC_NOT_FOUND)
        return ENOENT;
    if (strstr(text, "lease already exists"))
        return EEXIST;          /* a grant of a lease ID sent again (session.c) */
    if (code == GRPC_UNAVAILABLE || code == GRPC_DEADLINE || strstr(text, "leader") ||
        strstr(text, "timed out") || strstr(text, "deadline exceeded"))
        return 0;
    return EIO;
}

/*
 * A unary call, attempt by attempt: the one copy of the endpoint failover,
 * run to its end by fifolock__etcd_call() (blocking) and by async.c (one
 * attempt at a time on its multi handle).
 */
int fifolock__etcd_call_begin(struct fifolock__etcd_call *c, fifolock_etcd *s, const char *path,
                              json_object *req, int64_t until_ms)
{
    const char *payload = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    int64_t budget_end = fifolock__etcd_now_ms() + s->timeout_ms;

    memset(c, 0, sizeof *c);
    c->payload = payload ? strdup(payload) : NULL;
    if (c->payload == NULL)
        return ENOMEM;
    c->s = s;
    c->path = path;
    c->until_ms = until_ms > budget_end ? budget_end : until_ms;
    c->rc = ECONNREFUSED;
    snprintf(c->msg, sizeof c->msg, "no endpoint answered");
    pthread_mutex_lock(&s->mu);
    c->ep = s->current;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void fifolock__etcd_call_end(struct fifolock__etcd_call *c)
{
    curl_slist_free_all(c->hdr);
    c->hdr = NULL;
    free(c->b.data);
    c->b.data = NULL;
    free(c->payload);
    c->payload = NULL;
}

/* The call ends with c->rc: its detail becomes the thread's error message. */
static int call_failed(struct fifolock__etcd_call *c)
{
    if (c->rc != ENOENT && c->rc != EEXIST)
        fifolock__etcd_set_error("%s", c->msg);
    return c->rc;
}

int fifolock__etcd_call_attempt(struct fifolock__etcd_call *c, CURL *curl)
{
    fifolock_etcd *s = c->s;
    int64_t left = c->until_ms - fifolock__etcd_now_ms();
    char url[1024];
    long attempt;

    if (left <= 0 && c->tries > 0)
        return call_failed(c);
    if (left <= 0)
        left = 1;
    /* One attempt may not take the whole budget: a member that cannot
     * answer (a proposal lost with a dead leader, a paused process) is
     * left after one attempt's time, and the next one is asked. Each
     * round doubles it (up to 8 times), so that a cluster that is only
     * slow (a loaded disk) is still waited for within the budget. */
    attempt = (long)s->attempt_ms << (c->rounds < 3 ? c->rounds : 3);
    if (attempt > left)
        attempt = (long)left;
    snprintf(url, sizeof url, "%s%s", s->endpoints[c->ep], c->path);
    curl_slist_free_all(c->hdr);
    c->hdr = fifolock__etcd_headers(s);
    if (c->hdr == NULL) {
        c->rc = ENOMEM;
        return call_failed(c);
    }
    free(c->b.data);
    memset(&c->b, 0, sizeof c->b);
    c->errbuf[0] = '\0';
    curl_easy_reset(curl);
    fifolock__etcd_configure(s, curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, c->payload);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, fifolock__etcd_collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c->b);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, attempt);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, attempt);
    return 0;
}

int fifolock__etcd_call_result(struct fifolock__etcd_call *c, CURL *curl, CURLcode code,
                               json_object **resp)
{
    fifolock_etcd *s = c->s;
    size_t ep = c->ep;
    long status = 0;
    int verdict;

    curl_slist_free_all(c->hdr);
    c->hdr = NULL;
    c->tries++;
    c->resume_ms = 0;
    if (code == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK) {
        snprintf(c->msg, sizeof c->msg, "%s: %s", s->endpoints[ep],
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(code));
        free(c->b.data);
        c->b.data = NULL;
        c->rc = tls_failure(s, ep, code, c->errbuf, c->msg, sizeof c->msg);
        if (c->rc != 0)
            return call_failed(c);
        c->rc = local_failure(code);
        if (c->rc != 0)
            return call_failed(c);
        c->rc = transient_errno(code);
        pthread_mutex_lock(&s->mu);
        fifolock__etcd_endpoint_failed(s, ep);
        pthread_mutex_unlock(&s->mu);
        c->ep = (ep + 1) % s->nendpoints;
    } else {
        json_object *obj = c->b.data ? json_tokener_parse(c->b.data) : NULL;
        json_object *err = NULL;

        free(c->b.data);
        c->b.data = NULL;
        if (obj == NULL) {
            snprintf(c->msg, sizeof c->msg, "%s: HTTP %ld, no JSON answer", s->endpoints[ep],
                     status);
            c->rc = EIO;
            return call_failed(c);
        }
        if (status == 200 && !json_object_object_get_ex(obj, "error", &err)) {
            pthread_mutex_lock(&s->mu);
            s->current = ep;
            pthread_mutex_unlock(&s->mu);
            *resp = obj;
            c->rc = 0;
            return 0;
        }
        verdict = classify(err ? err : obj, c->msg, sizeof c->msg);
        json_object_put(obj);
        if (verdict < 0 && s->user && c->reauth++ < 2) {
            int arc = fifolock__etcd_authenticate(s, c->until_ms);

            if (arc != 0) {
                c->rc = arc;
                return call_failed(c);
            }
            return EAGAIN;
        }
        if (verdict < 0)
            verdict = EACCES;
        if (verdict > 0) {
            c->rc = verdict;
            return call_failed(c);
        }
        /* No leader, leader changed, timed out: elsewhere, or after an election. */
        c->rc = ETIMEDOUT;
        pthread_mutex_lock(&s->mu);
        fifolock__etcd_endpoint_failed(s, ep);
        pthread_mutex_unlock(&s->mu);
        c->ep = (ep + 1) % s->nendpoints;
    }
    if (c->tries % s->nendpoints == 0) {
        /* A whole round failed: pause before the next one, longer each
         * round (50, 100, 200 ms), within the budget. */
        long ms = 50L << (c->rounds < 2 ? c->rounds : 2);
        int64_t left;

        c->rounds++;
        left = c->until_ms - fifolock__etcd_now_ms();
        if (left <= 0)
            return call_failed(c);
        if (ms > left)
            ms = (long)left;
        c->resume_ms = fifolock__etcd_now_ms() + ms;
    }
    return EAGAIN;
}

int fifolock__etcd_call(fifolock_etcd *s, const char *path, json_object *req,
                        json_object **resp, int64_t until_ms)
{
    struct fifolock__etcd_call c;
    struct fifolock__etcd_http *h;
    int rc = fifolock__etcd_call_begin(&c, s, path, req, until_ms);

    if (rc != 0)
        return rc;
    h = take_http(s);
    if (h == NULL) {
        fifolock__etcd_call_end(&c);
        return ENOMEM;
    }
    for (;;) {
        int64_t pause_ms;

        rc = fifolock__etcd_call_attempt(&c, h->curl);
        if (rc != 0)
            break;
        rc = fifolock__etcd_call_result(&c, h->curl, curl_easy_perform(h->curl), resp);
        if (rc != EAGAIN)
            break;
        pause_ms = c.resume_ms - fifolock__etcd_now_ms();
        if (c.resume_ms != 0 && pause_ms > 0) {
            struct timespec pause = { 0, (long)pause_ms * 1000000L };

            nanosleep(&pause, NULL);
        }
    }
    give_http(s, h);
    fifolock__etcd_call_end(&c);
    return rc;
}

int fifolock__etcd_authenticate(fifolock_etcd *s, int64_t until_ms)
{
    json_object *req = json_object_new_object(), *resp = NULL, *tok;
    char *saved;
    int rc;

    if (req == NULL)
        return ENOMEM;
    json_object_object_add(req, "name", json_object_new_string(s->user));
    json_object_object_add(req, "password", json_object_new_string(s->password ? s->password : ""));
    /* Authenticate without the old token: it is the one that expired. */
    pthread_mutex_lock(&s->mu);
    saved = s->auth_token;
    s->auth_token = NULL;
    pthread_mutex_unlock(&s->mu);
    free(saved);
    rc = fifolock__etcd_call(s, "/v3/auth/authenticate", req, &resp, until_ms);
    json_object_put(req);
    if (rc == ENOENT)
        rc = EACCES;
    if (rc != 0)
        return rc;
    if (!json_object_object_get_ex(resp, "token", &tok) ||
        !json_object_is_type(tok, json_type_string)) {
        json_object_put(resp);
        fifolock__etcd_set_error("etcd answered Authenticate without a token");
        return EIO;
    }
    saved = strdup(json_object_get_string(tok));
    json_object_put(resp);
    if (saved == NULL)
        return ENOMEM;
    pthread_mutex_lock(&s->mu);
    free(s->auth_token);
    s->auth_token = saved;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- streams ---- */

static size_t stream_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct fifolock__etcd_stream *st = arg;
    size_t n = size * nmemb, off = 0;

    while (off < n && !st->stop) {
        json_object *obj = json_tokener_parse_ex(st->tok, ptr + off, (int)(n - off));
        enum json_tokener_error e = json_tokener_get_error(st->tok);

        if (obj == NULL) {
            if (e == json_tokener_continue)
                return n;
            st->stop = EIO;
            break;
        }
        off += json_tokener_get_parse_end(st->tok);
        json_tokener_reset(st->tok);
        st->created = true;
        {
            json_object *result, *err;
            int r;

            if (json_object_object_get_ex(obj, "error", &err)) {
                /* The stream failed on the member's side (no leader: the
                 * "hasleader" header): end it, move on. */
                char msg[200];
                int verdict = classify(err, msg, sizeof msg);

                json_object_put(obj);
                if (verdict == 0)
                    st->endpoint_failed = true;
                if (verdict < 0) {
                    /* Its auth token expired: the background thread gets a new one. */
                    pthread_mutex_lock(&st->s->mu);
                    st->s->need_auth = true;
                    pthread_mutex_unlock(&st->s->mu);
                }
                snprintf(st->why, sizeof st->why, "%s: %s", st->s->endpoints[st->endpoint], msg);
                st->stop = EAGAIN;
                break;
            }
            if (json_object_object_get_ex(obj, "result", &result))
                r = st->on_message(result, st->arg);
            else
                r = st->on_message(obj, st->arg);
            json_object_put(obj);
            if (r)
                st->stop = r;
        }
        while (off < n && (ptr[off] == '\n' || ptr[off] == '\r' || ptr[off] == ' '))
            off++;
    }
    /* Returning less than n ends the transfer: the caller reads st->stop. */
    return st->stop ? 0 : n;
}

struct fifolock__etcd_stream *fifolock__etcd_stream_new(fifolock_etcd *s, const char *path,
                                                        json_object *req,
                                                        fifolock__etcd_message_fn *on_message,
                                                        void *arg)
{
    struct fifolock__etcd_stream *st = calloc(1, sizeof *st);
    const char *payload = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    char url[1024];

    if (st == NULL || payload == NULL)
        goto fail;
    st->s = s;
    st->on_message = on_message;
    st->arg = arg;
    st->body = strdup(payload);
    st->tok = json_tokener_new();
    st->curl = curl_easy_init();
    st->headers = fifolock__etcd_headers(s);
    if (st->body == NULL || st->tok == NULL || st->curl == NULL || st->headers == NULL)
        goto fail;
    pthread_mutex_lock(&s->mu);
    st->endpoint = s->current;
    st->fail_seen = s->ep_fail[st->endpoint];
    pthread_mutex_unlock(&s->mu);
    st->started_ms = fifolock__etcd_now_ms();
    snprintf(url, sizeof url, "%s%s", s->endpoints[st->endpoint], path);
    fifolock__etcd_configure(s, st->curl);
    curl_easy_setopt(st->curl, CURLOPT_URL, url);
    curl_easy_setopt(st->curl, CURLOPT_HTTPHEADER, st->headers);
    curl_easy_setopt(st->curl, CURLOPT_POSTFIELDS, st->body);
    curl_easy_setopt(st->curl, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(st->curl, CURLOPT_WRITEDATA, st);
    curl_easy_setopt(st->curl, CURLOPT_ERRORBUFFER, st->errbuf);
    curl_easy_setopt(st->curl, CURLOPT_PRIVATE, st);
    curl_easy_setopt(st->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)s->attempt_ms);
    return st;
fail:
    fifolock__etcd_stream_free(st);
    return NULL;
}

void fifolock__etcd_stream_free(struct fifolock__etcd_stream *st)
{
    if (st == NULL)
        return;
    if (st->curl)
        curl_easy_cleanup(st->curl);
    curl_slist_free_all(st->headers);
    if (st->tok)
        json_tokener_free(st->tok);
    free(st->body);
    free(st);
}

void fifolock__etcd_stream_failed(struct fifolock__etcd_stream *st, CURLcode code)
{
    fifolock_etcd *s = st->s;

    (void)code;
    pthread_mutex_lock(&s->mu);
    if (s->ep_fail[st->endpoint] == st->fail_seen)
        fifolock__etcd_endpoint_failed(s, st->endpoint);
    pthread_mutex_unlock(&s->mu);
}

bool fifolock__etcd_stream_stalled(struct fifolock__etcd_stream *st)
{
    fifolock_etcd *s = st->s;

    if (s->ep_fail[st->endpoint] != st->fail_seen) {
        snprintf(st->why, sizeof st->why, "%s: a request of the session found it failing",
                 s->endpoints[st->endpoint]);
        return true;
    }
    if (!st->created && fifolock__etcd_now_ms() - st->started_ms > s->attempt_ms) {
        /* Connected, and nothing came: the member is paused or stuck. */
        snprintf(st->why, sizeof st->why, "%s: no answer within %d ms",
                 s->endpoints[st->endpoint], s->attempt_ms);
        fifolock__etcd_endpoint_failed(s, st->endpoint);
        return true;
    }
    return false;
}
