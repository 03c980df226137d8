/* Messages a person can read, for the error codes this library returns. */
#include "fifolock.h"

#include <errno.h>

const char *fifolock_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case EPERM: /* == FIFOLOCK_WAITING, which is not an error */
        return "the mode is not held (or: the request is waiting)";
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
    default:
        return "unknown error";
    }
}
