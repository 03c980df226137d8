/* The shared-memory backend of the command line: LOCK is a file path. */
#include "backend.h"
#include "fifolock_shm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const fifolock_mode *mode;
} named[] = {
    { "mutex", &fifolock_mutex }, { "read", &fifolock_read },
    { "write", &fifolock_write }, { "upgradable", &fifolock_upgradable },
    { "is", &fifolock_is },       { "ix", &fifolock_ix },
    { "s", &fifolock_s },         { "six", &fifolock_six },
    { "x", &fifolock_x },
};

static int shm_parse_mode(const char *s, fifolock_mode *storage, const fifolock_mode **mode)
{
    size_t i;

    for (i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(s, named[i].name) == 0) {
            *mode = named[i].mode;
            return 0;
        }
    if (strncmp(s, "semaphore:", 10) == 0) {
        char *end;
        unsigned long long n;

        errno = 0;
        n = strtoull(s + 10, &end, 10);
        if (errno != 0 || end == s + 10 || *end != '\0' || n == 0 || n > SIZE_MAX ||
            s[10] == '-')
            return EINVAL;
        *storage = (fifolock_mode)FIFOLOCK_SEMAPHORE((size_t)n);
        *mode = storage;
        return 0;
    }
    return EINVAL;
}

static int shm_acquire(void **state, const struct tool_options *opt, const char *lock,
                       const fifolock_mode *mode, const struct timespec *deadline,
                       uint64_t *token, char *dead, size_t dead_size, char *err,
                       size_t err_size)
{
    const fifolock_mode *modes[FIFOLOCK_SHM_MAX_OPEN_MODES];
    fifolock_shm_config o = FIFOLOCK_SHM_CONFIG_INIT;
    fifolock_shm *l = malloc(sizeof *l);
    size_t n = 0;
    int rc;

    if (l == NULL) {
        snprintf(err, err_size, "out of memory");
        return ENOMEM;
    }
    /* Only this mode: every process knows every ready-made mode (a
     * semaphore of any size too) by its name, so any two fifolock commands
     * grant each other without telling the file about modes they never use. */
    modes[n++] = mode;
    o.capacity = opt->capacity;
    o.permissions = (mode_t)opt->file_mode;
    rc = fifolock_shm_open_config(l, lock, modes, n, &o);
    if (rc != 0) {
        const char *detail = fifolock_shm_last_error();

        snprintf(err, err_size, "cannot open lock file %s: %s", lock,
                 detail[0]       ? detail
                 : rc == EBADMSG ? "not a fifolock lock file, or corrupt"
                 : rc == EPROTO  ? "its modes disagree with this program's"
                                 : strerror(rc));
        free(l);
        return rc;
    }
    rc = fifolock_shm_acquire_n(l, mode, 1, deadline, token);
    if (rc == EOWNERDEAD) {
        struct fifolock_shm_death d[FIFOLOCK_SHM_REPORT_MAX];
        size_t k, nd = fifolock_shm_dead_holders(l, d, FIFOLOCK_SHM_REPORT_MAX);
        size_t used = 0;

        dead[0] = '\0';
        for (k = 0; k < nd && k < FIFOLOCK_SHM_REPORT_MAX && used < dead_size; k++) {
            int w = snprintf(dead + used, dead_size - used, "%s%ld:%s", k ? " " : "",
                             (long)d[k].pid, d[k].name);
            if (w < 0)
                break;
            used += (size_t)w;
        }
    } else if (rc != 0) {
        if (rc != ETIMEDOUT)
            snprintf(err, err_size, "cannot take lock %s: %s", lock,
                     fifolock_shm_last_error()[0] ? fifolock_shm_last_error()
                                                  : fifolock_strerror(rc));
        fifolock_shm_close(l);
        free(l);
        return rc;
    }
    *state = l;
    return rc;
}

static int shm_release(void *state, const fifolock_mode *mode, char *err, size_t err_size)
{
    fifolock_shm *l = state;
    int rc = fifolock_shm_release(l, mode);

    if (rc == 0)
        rc = fifolock_shm_close(l);
    if (rc != 0)
        snprintf(err, err_size, "%s", strerror(rc));
    free(l);
    return rc;
}

static int shm_keepalive_fd(void *state, char *err, size_t err_size)
{
    int fd, rc = fifolock_shm_keepalive_fd(state, &fd);

    if (rc != 0) {
        snprintf(err, err_size, "cannot pass the lock on to the command: %s", strerror(rc));
        return -1;
    }
    return fd;
}

/* EPERM (a read-only mode: it repaired nothing) leaves the report as it is. */
static void shm_repaired(void *state)
{
    (void)fifolock_shm_consistent(state);
}

const struct backend fifolock_tool_shm_backend = {
    "shm",       shm_parse_mode, shm_acquire,      NULL, NULL, NULL, shm_release,
    shm_keepalive_fd, shm_repaired,
};
