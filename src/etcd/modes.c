/*
 * Modes by name: how a session maps a wire (name, limit) to a mode, how the
 * command line spells modes, and the messages for this library's codes.
 */
#include "etcd_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const fifolock_mode *const ready_made[] = {
    &fifolock_mutex, &fifolock_read, &fifolock_write, &fifolock_upgradable,
    &fifolock_is,    &fifolock_ix,   &fifolock_s,     &fifolock_six,
    &fifolock_x,
};
#define NREADY (sizeof ready_made / sizeof ready_made[0])

/* At most this many semaphore sizes per session: a queue cannot make it allocate more. */
#define MAX_SEMS 64

const fifolock_mode *fifolock__etcd_find_mode(fifolock_etcd *s, const char *name, size_t limit)
{
    struct fifolock__etcd_sem *m;
    const fifolock_mode *found = NULL;
    size_t i;

    for (i = 0; i < s->nmodes; i++)
        if (s->modes[i]->limit == limit && strcmp(s->modes[i]->name, name) == 0)
            return s->modes[i];
    for (i = 0; i < NREADY; i++)
        if (ready_made[i]->limit == limit && strcmp(ready_made[i]->name, name) == 0)
            return ready_made[i];
    if (strcmp(name, "semaphore") != 0 || limit == 0)
        return NULL;
    /* A semaphore of any size: one mode per size, the same for every entry. */
    pthread_mutex_lock(&s->mu);
    for (m = s->sems; m; m = m->next)
        if (m->mode.limit == limit) {
            found = &m->mode;
            break;
        }
    if (found == NULL && s->nsems < MAX_SEMS && (m = malloc(sizeof *m)) != NULL) {
        fifolock_mode sem = FIFOLOCK_SEMAPHORE(limit);
        m->mode = sem;
        m->next = s->sems;
        s->sems = m;
        s->nsems++;
        found = &m->mode;
    }
    pthread_mutex_unlock(&s->mu);
    return found;
}

int fifolock_etcd_parse_mode(const char *text, fifolock_mode *storage,
                             const fifolock_mode **mode)
{
    static const struct {
        const char *word;
        const fifolock_mode *mode;
    } words[] = {
        { "mutex", &fifolock_mutex }, { "read", &fifolock_read },
        { "write", &fifolock_write }, { "upgradable", &fifolock_upgradable },
        { "is", &fifolock_is },       { "ix", &fifolock_ix },
        { "s", &fifolock_s },         { "six", &fifolock_six },
        { "x", &fifolock_x },
    };
    size_t i;

    if (text == NULL || mode == NULL)
        return EINVAL;
    for (i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(text, words[i].word) == 0) {
            *mode = words[i].mode;
            return 0;
        }
    if (strncmp(text, "semaphore:", 10) == 0 && storage != NULL) {
        const char *digits = text + 10;
        char *end;
        unsigned long long n;

        if (*digits < '0' || *digits > '9')
            return EINVAL;
        n = strtoull(digits, &end, 10);
        if (*end != '\0' || n == 0 || n > (unsigned long long)SIZE_MAX / 2)
            return EINVAL;
        {
            fifolock_mode sem = FIFOLOCK_SEMAPHORE((size_t)n);
            *storage = sem;
        }
        *mode = storage;
        return 0;
    }
    return EINVAL;
}

void fifolock_etcd_kill_on_loss(fifolock_etcd *session, const char *name, int64_t token,
                                int reason, void *arg)
{
    struct fifolock_etcd_kill *k = arg;

    (void)session;
    (void)name;
    (void)token;
    pid_t pid;

    if (k == NULL || __atomic_load_n(&k->lost, __ATOMIC_SEQ_CST))
        return;
    __atomic_store_n(&k->reason, reason, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&k->lost, 1, __ATOMIC_SEQ_CST))
        return; /* another loss got here first */
    /*
     * lost is stored before pid is read, and the program stores pid before
     * it reads lost (see the header): with both sequentially consistent, at
     * least one of the two sees the other, so the command is signalled.
     */
    pid = __atomic_load_n(&k->pid, __ATOMIC_SEQ_CST);
    if (pid > 0)
        kill(pid, k->signal ? k->signal : SIGTERM);
}

const char *fifolock_etcd_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case EINVAL:
        return "invalid argument (a NULL pointer, an empty name, a mode the session does not know)";
    case EBUSY:
        return "the lock cannot be granted at once";
    case EPERM:
        return "this session holds no such lock";
    case ETIMEDOUT:
        return "the deadline passed (or no keepalive was acknowledged within the TTL)";
    case ENOLCK:
        return "the lock was lost: the session's lease or the entry is gone";
    case EACCES:
        return "etcd refused the client: its TLS certificate, or the user's permission on the keys";
    case ENOKEY:
        return "the etcd server's TLS certificate is not trusted: wrong or missing CA certificate";
    case EKEYREJECTED:
        return "etcd rejected the user name or password";
    case ENOTSUP:
        return "a user was given, but etcd does not have authentication enabled";
    case EPROTO:
        return "wrong scheme: an https:// endpoint speaks plain HTTP, or an http:// one speaks TLS";
    case ECONNREFUSED:
        return "no etcd endpoint could be reached";
    case EIO:
        return "etcd gave an answer this library does not understand";
    case ENOMEM:
        return "out of memory";
    case ERANGE:
        return "the buffer is too small";
    case EINTR:
        return "the wait was interrupted (fifolock_etcd_interrupt)";
    case EMFILE:
    case ENFILE:
        return "no file descriptor left for the session";
    default:
        return "unknown error";
    }
}
