/*
 * fifolock(1): runs a command while holding a FIFO lock, like flock(1), with
 * modes, strict first-in-first-out order, and recovery from dead holders.
 *
 *   fifolock [--mode MODE] [--timeout SECONDS] LOCKFILE COMMAND [ARG...]
 *
 * Exit status: COMMAND's (128 + N if a signal N killed it; 126 if it could
 * not be run, 127 if not found); 1 with a message if --timeout passed first;
 * 2 for a usage error or a lock that could not be taken.
 */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const fifolock_mode *const fifolock_tool_builtin_modes[] = {
    &fifolock_mutex, &fifolock_read, &fifolock_write, &fifolock_is,
    &fifolock_ix,    &fifolock_s,    &fifolock_six,   &fifolock_x,
};
const size_t fifolock_tool_builtin_count =
    sizeof fifolock_tool_builtin_modes / sizeof fifolock_tool_builtin_modes[0];

static const struct {
    const char *name;
    const fifolock_mode *mode;
} named[] = {
    { "mutex", &fifolock_mutex }, { "read", &fifolock_read }, { "write", &fifolock_write },
    { "is", &fifolock_is },       { "ix", &fifolock_ix },     { "s", &fifolock_s },
    { "six", &fifolock_six },     { "x", &fifolock_x },
};

static fifolock_mode semaphore = FIFOLOCK_SEMAPHORE(1);

static void usage(FILE *to)
{
    fputs("usage: fifolock [--mode MODE] [--timeout SECONDS] LOCKFILE COMMAND [ARG...]\n"
          "Runs COMMAND while holding LOCKFILE's lock in MODE; requests are granted in\n"
          "the order they were made, and a holder that dies loses the lock.\n"
          "  -m, --mode MODE        mutex (default), read, write, is, ix, s, six, x,\n"
          "                         semaphore:N\n"
          "  -t, --timeout SECONDS  give up after SECONDS (exit 1); 0: only if free now\n"
          "      --etcd ENDPOINTS   a lock on an etcd cluster (if built with it)\n"
          "  -h, --help             this text\n"
          "  -V, --version          the version\n"
          "COMMAND sees FIFOLOCK_TOKEN (a number that grows with the order of grants)\n"
          "and, if a previous holder died holding the lock, FIFOLOCK_OWNER_DEAD\n"
          "(\"PID:MODE ...\"). Exit status: COMMAND's; 1 on timeout; 2 on error.\n",
          to);
}

static const fifolock_mode *parse_mode(const char *s)
{
    size_t i;

    for (i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(s, named[i].name) == 0)
            return named[i].mode;
    if (strncmp(s, "semaphore:", 10) == 0) {
        char *end;
        unsigned long long n;

        errno = 0;
        n = strtoull(s + 10, &end, 10);
        if (errno != 0 || end == s + 10 || *end != '\0' || n == 0 || n > SIZE_MAX ||
            s[10] == '-')
            return NULL;
        semaphore.limit = (size_t)n;
        return &semaphore;
    }
    return NULL;
}

static int parse_timeout(const char *s, struct timespec *deadline)
{
    char *end;
    double secs;
    struct timespec now;
    double whole, frac;

    errno = 0;
    secs = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(secs >= 0) || secs > 1e9)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    frac = modf(secs, &whole);
    deadline->tv_sec = now.tv_sec + (time_t)whole;
    deadline->tv_nsec = now.tv_nsec + (long)(frac * 1e9);
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
    return 0;
}

static volatile sig_atomic_t child;

/* SIGTERM or SIGHUP while the command runs: pass it on, release after it. */
static void forward(int sig)
{
    if (child > 0)
        kill((pid_t)child, sig);
}

/*
 * Runs argv as a child; returns its exit status the shell's way. Meanwhile
 * this process ignores SIGINT and SIGQUIT (as system(3) does: the terminal
 * sends them to the command too) and forwards SIGTERM and SIGHUP, so that it
 * outlives the command and gives the lock back cleanly.
 */
static int run(char **argv)
{
    struct sigaction ign, fwd, old_int, old_quit, old_term, old_hup;
    pid_t pid;
    int status;

    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    memset(&fwd, 0, sizeof fwd);
    fwd.sa_handler = forward;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    sigaction(SIGTERM, &fwd, &old_term);
    sigaction(SIGHUP, &fwd, &old_hup);
    pid = fork();

    if (pid < 0) {
        fprintf(stderr, "fifolock: cannot fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
        execvp(argv[0], argv);
        fprintf(stderr, "fifolock: %s: %s\n", argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    child = pid;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 2;
    child = 0;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        { "mode", required_argument, NULL, 'm' }, { "timeout", required_argument, NULL, 't' },
        { "etcd", required_argument, NULL, 'e' }, { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },    { NULL, 0, NULL, 0 },
    };
    const struct backend *backend = &fifolock_tool_shm_backend;
    const fifolock_mode *mode = &fifolock_mutex;
    struct timespec deadline, *dl = NULL;
    char dead[512] = "", err[512] = "", token_text[32];
    uint64_t token = 0;
    void *state = NULL;
    int c, rc, status;

    while ((c = getopt_long(argc, argv, "+m:t:hV", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            mode = parse_mode(optarg);
            if (mode == NULL) {
                fprintf(stderr, "fifolock: unknown mode '%s'\n", optarg);
                return 2;
            }
            break;
        case 't':
            if (parse_timeout(optarg, &deadline) != 0) {
                fprintf(stderr, "fifolock: bad timeout '%s' (seconds, >= 0)\n", optarg);
                return 2;
            }
            dl = &deadline;
            break;
        case 'e':
            fprintf(stderr, "fifolock: this build has no etcd support\n");
            return 2;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("fifolock %s\n", FIFOLOCK_VERSION_STRING);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind < 2) {
        usage(stderr);
        return 2;
    }
    rc = backend->acquire(&state, argv[optind], mode, dl, &token, dead, sizeof dead, err,
                          sizeof err);
    if (rc == ETIMEDOUT) {
        fprintf(stderr, "fifolock: timed out waiting for %s\n", argv[optind]);
        return 1;
    }
    if (rc != 0 && rc != EOWNERDEAD) {
        fprintf(stderr, "fifolock: %s\n", err);
        return 2;
    }
    snprintf(token_text, sizeof token_text, "%" PRIu64, token);
    setenv("FIFOLOCK_TOKEN", token_text, 1);
    if (rc == EOWNERDEAD) {
        fprintf(stderr, "fifolock: a holder of %s died while holding it (%s)\n", argv[optind],
                dead);
        setenv("FIFOLOCK_OWNER_DEAD", dead, 1);
    } else {
        unsetenv("FIFOLOCK_OWNER_DEAD");
    }
    status = run(argv + optind + 1);
    rc = backend->release(state, mode);
    if (rc != 0)
        fprintf(stderr, "fifolock: releasing %s: %s\n", argv[optind], strerror(rc));
    return status;
}
