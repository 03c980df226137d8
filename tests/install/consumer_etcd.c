/*
 * A program that uses the installed etcd library beside the core: the
 * ready-made modes it hands out must be the core's own (a mode is its
 * address), so the two libraries share one copy of the core. Needs no etcd
 * server.
 */
#include <fifolock.h>
#include <fifolock_etcd.h>

#include <errno.h>
#include <stdio.h>

int main(void)
{
    fifolock_mode storage;
    const fifolock_mode *mode = NULL;

    if (fifolock_etcd_parse_mode("write", &storage, &mode) != 0 || mode != &fifolock_write) {
        printf("the etcd library's write mode is not the core's fifolock_write\n");
        return 1;
    }
    printf("one fifolock_write; %s\n", fifolock_etcd_strerror(ENOLCK));
    return 0;
}
