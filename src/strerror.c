/* Messages a person can read, for the error codes this library returns. */
#include "fifolock.h"

#include <errno.h>
#include <string.h>

const char *fifolock_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case FIFOLOCK_WAITING:
        return "the request is waiting (not an error)";
    case EPERM:
        return "the mode is not held";
    case EINVAL:
        return "invalid argument";
    case EBUSY:
        return "the lock is held or waited on";
    case EALREADY:
        return "the request was already granted; release it";
    case ETIMEDOUT:
        return "the deadline passed before the lock was granted";
    case ENOMEM:
        return "out of memory for the hold table";
    case EAGAIN:
        return "too many holders or waiters of one mode";
    case EDEADLK:
        return "the request would wait for ever: its mode never fits, or another conversion "
               "already waits on this lock";
    case EOWNERDEAD:
        return "held, but a previous holder died: repair what it left";
    case EBADMSG:
        return "not a fifolock lock file, or a corrupt one";
    case EPROTO:
        return "a mode of this name means something else to the lock's other users";
    case ENOSPC:
        return "the lock's fixed room (queue, modes or handles) is full";
#ifdef EUSERS /* not on Windows, which has no shared-memory lock */
    case EUSERS:
        return "lock file full: its handles, queue or modes (sized when it was made) are all in use";
#endif
    case ENOLCK:
        return "the lock was lost (its lease expired or its entry was deleted)";
    default:
        /* Codes that the etcd lock and the system pass on (ECONNREFUSED,
         * EACCES, EIO...) say what the C library says of them. */
        return err > 0 ? strerror(err) : "unknown error";
    }
}
