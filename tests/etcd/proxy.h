/*
 * A fault-injecting HTTP relay for the etcd tests: the library talks to
 * etcd through it, and it can lose the reply to a request after etcd has
 * applied it (the connection is closed instead of answered), the way a
 * network does. Requests with a Content-Length body and answers with a
 * Content-Length are relayed one by one; a streaming answer (a watch) turns
 * the connection into a plain pipe until either side closes. It can also
 * hold every answer for a while, as a slow etcd (a loaded disk) does.
 */
#ifndef FIFOLOCK_TESTS_ETCD_PROXY_H
#define FIFOLOCK_TESTS_ETCD_PROXY_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct proxy {
    int listen_fd;
    int upstream_port;
    char url[64];
    char drop_path[64];         /* lose the reply to the next request to this path */
    atomic_int drops_left;
    atomic_int dropped;
    atomic_int delay_ms;        /* hold every whole answer this long (a slow etcd) */
    pthread_t thread;
};

struct proxy_conn {
    struct proxy *p;
    int client;
};

/* Reads an HTTP head (through "\r\n\r\n") into buf; returns its length, or -1. */
static inline ssize_t proxy_read_head(int fd, char *buf, size_t size, size_t *have)
{
    for (;;) {
        char *end;
        ssize_t n;

        buf[*have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end)
            return end + 4 - buf;
        if (*have + 1 >= size)
            return -1;
        n = read(fd, buf + *have, size - 1 - *have);
        if (n <= 0)
            return -1;
        *have += (size_t)n;
    }
}

static inline long proxy_content_length(const char *head, size_t len)
{
    const char *p = head, *end = head + len;

    while (p < end) {
        const char *nl = strstr(p, "\r\n");
        if (nl == NULL)
            break;
        if (strncasecmp(p, "Content-Length:", 15) == 0)
            return atol(p + 15);
        p = nl + 2;
    }
    return -1;
}

static inline int proxy_write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        /* MSG_NOSIGNAL: a client gone meanwhile is an error here, not SIGPIPE. */
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads a full message (head + Content-Length body) into buf; returns its length or -1. */
static inline ssize_t proxy_read_message(int fd, char *buf, size_t size, size_t *have,
                                         ssize_t *head_len, long *clen)
{
    *head_len = proxy_read_head(fd, buf, size, have);
    if (*head_len < 0)
        return -1;
    *clen = proxy_content_length(buf, (size_t)*head_len);
    if (*clen < 0)
        return *head_len;
    while (*have < (size_t)*head_len + (size_t)*clen) {
        ssize_t n;
        if (*have + 1 >= size)
            return -1;
        n = read(fd, buf + *have, size - 1 - *have);
        if (n <= 0)
            return -1;
        *have += (size_t)n;
    }
    return *head_len + *clen;
}

static inline void proxy_pipe(int a, int b, const char *pending, size_t npending)
{
    char buf[16384];

    if (npending && proxy_write_all(a, pending, npending) != 0)
        return;
    for (;;) {
        struct pollfd fds[2] = { { b, POLLIN, 0 }, { a, POLLIN, 0 } };
        ssize_t n;

        if (poll(fds, 2, -1) <= 0)
            return;
        if (fds[0].revents) {
            n = read(b, buf, sizeof buf);
            if (n <= 0 || proxy_write_all(a, buf, (size_t)n) != 0)
                return;
        }
        if (fds[1].revents) {
            n = read(a, buf, sizeof buf);
            if (n <= 0 || proxy_write_all(b, buf, (size_t)n) != 0)
                return;
        }
    }
}

static inline void *proxy_conn_main(void *arg)
{
    struct proxy_conn *c = arg;
    struct proxy *p = c->p;
    struct sockaddr_in up = { 0 };
    int u = socket(AF_INET, SOCK_STREAM, 0);
    char *req = malloc(1 << 20), *resp = malloc(1 << 20);

    up.sin_family = AF_INET;
    up.sin_port = htons((uint16_t)p->upstream_port);
    up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(u, (struct sockaddr *)&up, sizeof up) != 0)
        goto out;
    for (;;) {
        size_t rhave = 0, shave = 0;
        ssize_t rhead, shead, rlen, slen;
        long rclen, sclen;
        bool drop;

        rlen = proxy_read_message(c->client, req, 1 << 20, &rhave, &rhead, &rclen);
        if (rlen < 0)
            break;
        drop = atomic_load(&p->drops_left) > 0 && strstr(req, p->drop_path) != NULL &&
               strstr(req, p->drop_path) < req + rhead;
        if (proxy_write_all(u, req, rhave) != 0)
            break;
        slen = proxy_read_message(u, resp, 1 << 20, &shave, &shead, &sclen);
        if (slen < 0)
            break;
        if (drop && atomic_fetch_sub(&p->drops_left, 1) > 0) {
            atomic_fetch_add(&p->dropped, 1);
            break;  /* applied by etcd, never answered */
        }
        if (atomic_load(&p->delay_ms) > 0 && strstr(req, "POST /v3/watch ") != req) {
            int ms = atomic_load(&p->delay_ms);
            struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

            nanosleep(&t, NULL);
        }
        if (sclen < 0) {
            proxy_pipe(c->client, u, resp, shave);
            break;
        }
        if (proxy_write_all(c->client, resp, shave) != 0)
            break;
    }
out:
    close(u);
    close(c->client);
    free(req);
    free(resp);
    free(c);
    return NULL;
}

static inline void *proxy_main(void *arg)
{
    struct proxy *p = arg;

    for (;;) {
        int fd = accept(p->listen_fd, NULL, NULL);
        struct proxy_conn *c;
        pthread_t t;

        if (fd < 0)
            return NULL;
        c = malloc(sizeof *c);
        c->p = p;
        c->client = fd;
        pthread_create(&t, NULL, proxy_conn_main, c);
        pthread_detach(t);
    }
}

/* Starts a relay to http://127.0.0.1:<upstream_port>; p->url is its endpoint. */
static inline void proxy_start(struct proxy *p, int upstream_port)
{
    struct sockaddr_in a = { 0 };
    socklen_t len = sizeof a;

    memset(p, 0, sizeof *p);
    p->upstream_port = upstream_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->listen_fd, 64) != 0) {
        perror("proxy");
        exit(1);
    }
    getsockname(p->listen_fd, (struct sockaddr *)&a, &len);
    snprintf(p->url, sizeof p->url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    pthread_create(&p->thread, NULL, proxy_main, p);
    pthread_detach(p->thread);
}

/* Holds every answer but a watch's `ms` before relaying it (the keepalive's too). */
static inline void proxy_delay(struct proxy *p, int ms)
{
    atomic_store(&p->delay_ms, ms);
}

/* Loses the replies to the next `count` requests to `path`. */
static inline void proxy_drop(struct proxy *p, const char *path, int count)
{
    snprintf(p->drop_path, sizeof p->drop_path, "POST %s ", path);
    atomic_store(&p->drops_left, count);
}

#endif
