/*
 * Two processes share a counter in a file, guarded by a fifolock_shm lock.
 * The first one dies (SIGKILL) in the middle of an update, holding the lock
 * in write mode. The second one, waiting for the lock, gets it within a few
 * milliseconds with EOWNERDEAD, learns who died, repairs the counter from
 * its journal, and goes on.
 *
 * The repair pattern: the writer notes what it is about to do (a journal of
 * one entry: the value before), changes the data, then clears the note. A
 * reader of EOWNERDEAD rolls back any update whose note is still there.
 */
#define _GNU_SOURCE
#include <fifolock_shm.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct data {
    long counter;
    long journal_before; /* the counter before the update in progress */
    int journal_open;    /* an update is in progress */
};

static const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write };

int main(void)
{
    char lock_path[64];
    struct data *d;
    fifolock_shm lock;
    pid_t first;
    int pipefd[2], rc, status;
    char c;

    snprintf(lock_path, sizeof lock_path, "/tmp/fifolock-example-%d.lock", (int)getpid());
    d = mmap(NULL, sizeof *d, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (d == MAP_FAILED || pipe(pipefd) != 0)
        return 1;
    d->counter = 41;

    first = fork();
    if (first == 0) {
        /* The first process: takes the lock, starts an update, and dies. */
        if (fifolock_shm_open(&lock, lock_path, modes, 2) != 0 ||
            fifolock_shm_acquire(&lock, &fifolock_write) != 0)
            _exit(1);
        d->journal_before = d->counter;
        d->journal_open = 1;
        d->counter = -999; /* half done */
        if (write(pipefd[1], "x", 1) != 1)
            _exit(1);
        for (;;)
            pause(); /* killed here, holding the lock */
    }
    if (read(pipefd[0], &c, 1) != 1)
        return 1;

    /* The second process (this one) waits for the lock, then the first dies. */
    rc = fifolock_shm_open(&lock, lock_path, modes, 2);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", strerror(rc));
        return 1;
    }
    printf("first process %d holds the lock; killing it mid-update\n", (int)first);
    kill(first, SIGKILL);
    waitpid(first, &status, 0);

    rc = fifolock_shm_acquire(&lock, &fifolock_write);
    if (rc == EOWNERDEAD) {
        struct fifolock_shm_death dead[4];
        size_t n = fifolock_shm_dead_holders(&lock, dead, 4), i;

        for (i = 0; i < n && i < 4; i++)
            printf("EOWNERDEAD: process %d died holding %s\n", (int)dead[i].pid, dead[i].name);
        if (d->journal_open) {
            printf("repairing: counter %ld rolled back to %ld\n", d->counter, d->journal_before);
            d->counter = d->journal_before;
            d->journal_open = 0;
        }
        /* Repaired: later holders are no longer told of this death. */
        fifolock_shm_consistent(&lock);
    } else if (rc != 0) {
        fprintf(stderr, "acquire: %d\n", rc);
        return 1;
    }
    d->counter++;
    printf("counter is now %ld\n", d->counter);
    fifolock_shm_release(&lock, &fifolock_write);
    fifolock_shm_close(&lock);
    unlink(lock_path);
    return d->counter == 42 ? 0 : 1;
}
