/*
 * handoff_command OUT FIFO: the COMMAND that bench_etcd part (5) runs under
 * each lock tool. It reads CLOCK_MONOTONIC first thing and writes it (in
 * microseconds) to OUT, blocks until a byte arrives on FIFO, reads the clock
 * again, writes that too and exits.
 *
 * It is its own program, linked to libc alone, because its start and exit
 * are inside the handoff that bench_etcd times: bench_etcd itself loads
 * libcurl and its 30-odd libraries, which would add milliseconds to both
 * tools alike and push their ratio toward 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    long long start = now_us(), end;
    char line[64], c;
    int fd, f, n;

    if (argc != 3)
        return 2;
    fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    n = snprintf(line, sizeof line, "%lld\n", start);
    if (fd < 0 || write(fd, line, (size_t)n) != n)
        return 1;
    f = open(argv[2], O_RDONLY);
    if (f < 0 || read(f, &c, 1) < 0)
        return 1;
    end = now_us();
    n = snprintf(line, sizeof line, "%lld\n", end);
    if (write(fd, line, (size_t)n) != n)
        return 1;
    return 0;
}
