/*
 * The etcd lock on a libuv loop: no thread waits.
 *
 * A few jobs want the same lock on an etcd cluster. Each asks with
 * fifolock_etcd_acquire_async(), which returns at once; the loop goes on
 * (here a heartbeat timer keeps ticking, to show it is never blocked), and
 * the job's callback runs when etcd grants it, with its fencing token. The
 * job holds the lock across asynchronous work (a timer), then releases it.
 * One impatient job gives up after a while with fifolock_etcd_cancel().
 *
 * How the session joins the loop (docs/etcd.md, "Event loops"):
 *
 *  - one uv_poll_t on fifolock_etcd_fd(), for readable: the descriptor
 *    stands for every transfer of every request of the session;
 *  - one uv_timer_t set to fifolock_etcd_timeout() (ms; -1: none);
 *  - when either fires: fifolock_etcd_process(), which runs the done
 *    callbacks, then the timer is set again. After any call that starts or
 *    cancels a request, set it again too.
 *
 * Usage: etcd_uv ENDPOINTS [LOCK-NAME]
 * Prints one line per event and a last line "result=ok" when every job was
 * granted once, in FIFO order (growing tokens), never two at a time, and
 * the impatient one was cancelled without ever being granted.
 */
#define _POSIX_C_SOURCE 200809L /* uv.h needs POSIX types under -std=c11 */
#include <fifolock_etcd.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOBS 4

struct job {
    int id;
    fifolock_etcd_request *req;
    uv_timer_t work;
    int64_t token;
    int state;                  /* 0 waiting, 1 holding, 2 done, 3 cancelled */
};

static fifolock_etcd *session;
static const char *lock_name = "etcd-uv-example";
static uv_poll_t poll_handle;
static uv_timer_t due, heartbeat, patience;
static struct job jobs[JOBS], impatient;
static int holding, finished, failures, beats;
static int64_t last_token;

static void rearm(void);

static void on_work_done(uv_timer_t *t)
{
    struct job *j = t->data;
    int rc = fifolock_etcd_release(session, lock_name, j->token);

    printf("job %d releases (token %lld): %s\n", j->id, (long long)j->token,
           rc ? fifolock_etcd_strerror(rc) : "ok");
    failures += rc != 0;
    holding--;
    j->state = 2;
    if (++finished == JOBS) {
        /* Everything is done: let the loop end. */
        if (impatient.state != 3)
            failures++;
        /* No request is left pending: the cancelled one is gone too. */
        if (fifolock_etcd_timeout(session) != -1)
            failures++;
        uv_close((uv_handle_t *)&poll_handle, NULL);
        uv_close((uv_handle_t *)&due, NULL);
        uv_close((uv_handle_t *)&heartbeat, NULL);
    }
}

static void on_patience_over(uv_timer_t *t);
static void on_granted(fifolock_etcd_request *req, int err, int64_t token, void *arg);

/* Once the first job holds: one more request, that waits 20 ms at most. */
static void ask_impatiently(void)
{
    int rc;

    impatient.id = JOBS;
    rc = fifolock_etcd_acquire_async(session, lock_name, &fifolock_mutex, 1, NULL, on_granted,
                                     &impatient, &impatient.req);
    if (rc != 0) {
        fprintf(stderr, "acquire_async: %s\n", fifolock_etcd_strerror(rc));
        failures++;
        return;
    }
    printf("an impatient job asks too\n");
    uv_timer_init(uv_default_loop(), &patience);
    uv_timer_start(&patience, on_patience_over, 20, 0);
}

static void on_granted(fifolock_etcd_request *req, int err, int64_t token, void *arg)
{
    struct job *j = arg;

    (void)req;
    if (err != 0) {
        printf("job %d: %s\n", j->id, fifolock_etcd_strerror(err));
        failures++;
        return;
    }
    printf("job %d granted, token %lld\n", j->id, (long long)token);
    if (j == &impatient || holding != 0 || token <= last_token)
        failures++;     /* cancelled, not alone, or out of FIFO order */
    holding++;
    if (last_token == 0)
        ask_impatiently();
    last_token = token;
    j->token = token;
    j->state = 1;
    /* The work under the lock: asynchronous too. */
    uv_timer_init(uv_default_loop(), &j->work);
    j->work.data = j;
    uv_timer_start(&j->work, on_work_done, 50, 0);
}

static void on_patience_over(uv_timer_t *t)
{
    int rc = fifolock_etcd_cancel(session, impatient.req);

    (void)t;
    printf("the impatient job gives up: %s\n", rc ? fifolock_etcd_strerror(rc) : "withdrawn");
    failures += rc != 0;
    impatient.state = 3;
    uv_close((uv_handle_t *)&patience, NULL);
    rearm();
}

static void process(void)
{
    int rc = fifolock_etcd_process(session);

    if (rc != 0) {
        fprintf(stderr, "process: %s\n", fifolock_etcd_strerror(rc));
        failures++;
    }
    rearm();
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)p, (void)status, (void)events;
    process();
}

static void on_due(uv_timer_t *t)
{
    (void)t;
    process();
}

/* The session's next deadline, after every call that may have changed it. */
static void rearm(void)
{
    int ms;

    if (uv_is_closing((uv_handle_t *)&due))
        return;
    ms = fifolock_etcd_timeout(session);
    if (ms < 0)
        uv_timer_stop(&due);
    else
        uv_timer_start(&due, on_due, (uint64_t)ms, 0);
}

static void on_beat(uv_timer_t *t)
{
    (void)t;
    beats++;
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    struct fifolock_etcd_options o = { 0 };
    int rc, i, fd;

    if (argc < 2) {
        fprintf(stderr, "usage: %s ENDPOINTS [LOCK-NAME]\n", argv[0]);
        return 2;
    }
    if (argc > 2)
        lock_name = argv[2];
    o.timeout_ms = 3000;
    rc = fifolock_etcd_open(&session, argv[1], &o);
    if (rc != 0) {
        fprintf(stderr, "open %s: %s (%s)\n", argv[1], fifolock_etcd_strerror(rc),
                fifolock_etcd_last_error());
        return 1;
    }
    fd = fifolock_etcd_fd(session);
    if (fd < 0) {
        perror("fifolock_etcd_fd");
        return 1;
    }
    uv_poll_init(loop, &poll_handle, fd);
    uv_poll_start(&poll_handle, UV_READABLE, on_readable);
    uv_timer_init(loop, &due);
    uv_timer_init(loop, &heartbeat);
    uv_timer_start(&heartbeat, on_beat, 10, 10);

    /* The jobs ask at once; etcd orders them (a token each, in that order). */
    for (i = 0; i < JOBS; i++) {
        jobs[i].id = i;
        rc = fifolock_etcd_acquire_async(session, lock_name, &fifolock_mutex, 1, NULL,
                                         on_granted, &jobs[i], &jobs[i].req);
        if (rc != 0) {
            fprintf(stderr, "acquire_async: %s\n", fifolock_etcd_strerror(rc));
            return 1;
        }
    }
    rearm();
    uv_run(loop, UV_RUN_DEFAULT);
    fifolock_etcd_close(session);
    printf("heartbeats while the jobs ran: %d\n", beats);
    printf("result=%s\n", failures == 0 && finished == JOBS ? "ok" : "FAILED");
    return failures == 0 && finished == JOBS ? 0 : 1;
}
