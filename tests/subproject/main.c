/*
 * Somebody else's program that builds fifolock with add_subdirectory(). It
 * carries a warning on purpose: fifolock's -Werror must not reach it.
 */
#include <fifolock.h>
#include <stdio.h>

int main(void)
{
    fifolock lock;
    int unused_on_purpose;

    fifolock_init(&lock);
    if (fifolock_try_acquire(&lock, &fifolock_write) != 0 ||
        fifolock_try_acquire(&lock, &fifolock_read) == 0 ||
        fifolock_release(&lock, &fifolock_write) != 0 || fifolock_destroy(&lock) != 0) {
        puts("FAILED");
        return 1;
    }
    puts("ok");
    return 0;
}
