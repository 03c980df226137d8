/*
 * fifolock(1): runs a command while holding a FIFO lock, like flock(1), with
 * modes, strict first-in-first-out order, and recovery from dead holders.
 *
 *   fifolock [--mode MODE] [--timeout SECONDS] LOCKFILE COMMAND [ARG...]
 *   fifolock --etcd ENDPOINTS [TLS and auth options] [--mode MODE]
 *            [--timeout SECONDS] LOCK COMMAND [ARG...]
 *
 * Exit status: COMMAND's (128 + N if a signal N killed it; 126 if it could
 * not be run, 127 if not found); 128 + N if SIGINT, SIGTERM or SIGHUP (N)
 * came while an etcd lock was awaited (the request is withdrawn, nothing
 * is left on etcd); 1 with a message if --timeout passed first;
 * 2 for a usage error or a lock that could not be taken; 3 if an etcd lock
 * was lost while COMMAND ran (COMMAND got SIGTERM; the message says why).
 */
#define _GNU_SOURCE
#include "backend.h"
#include "fifolock_shm.h" /* FIFOLOCK_SHM_MAX_CAPACITY */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *to)
{
    fputs("usage: fifolock [--mode MODE] [--timeout SECONDS] [--capacity N]\n"
          "                [--file-mode MODE] LOCKFILE COMMAND [ARG...]\n"
          "       fifolock --etcd ENDPOINTS [--cacert FILE] [--cert FILE] [--key FILE]\n"
          "                [--user NAME[:PASSWORD]] [--ttl SECONDS] [--mode MODE]\n"
          "                [--timeout SECONDS] LOCK COMMAND [ARG...]\n"
          "Runs COMMAND while holding the lock in MODE; requests are granted in\n"
          "the order they were made, and a holder that dies loses the lock.\n"
          "  -m, --mode MODE        mutex (default), read, write, upgradable, is, ix,\n"
          "                         s, six, x, semaphore:N\n"
          "  -t, --timeout SECONDS  give up after SECONDS (exit 1); 0: only if free now\n"
          "      --capacity N       a new lock file's room: N handles (default 4096)\n"
          "      --file-mode MODE   a new lock file's mode (octal, before the umask;\n"
          "                         0600: nobody else may even read it)\n"
          "      --etcd ENDPOINTS   a lock named LOCK on an etcd cluster (comma-separated\n"
          "                         URLs), if built with it; the password of --user NAME\n"
          "                         comes from FIFOLOCK_ETCD_PASSWORD\n"
          "  -h, --help             this text\n"
          "  -V, --version          the version\n"
          "COMMAND sees FIFOLOCK_TOKEN (a number that grows with the order of grants)\n"
          "and, if a previous holder died holding the lock, FIFOLOCK_OWNER_DEAD\n"
          "(\"PID:MODE ...\"). Exit status: COMMAND's; 1 on timeout; 2 on error;\n"
          "3 if an etcd lock was lost while COMMAND ran (it got SIGTERM).\n",
          to);
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
static volatile sig_atomic_t stop_signal;
static void (*interrupt_wait)(void);

/* SIGINT, SIGTERM or SIGHUP while the lock is awaited: give the wait up. */
static void stop_waiting(int sig)
{
    if (stop_signal == 0)
        stop_signal = sig;
    interrupt_wait();
}

/*
 * SIGTERM or SIGHUP while the command runs: pass it on, release after it.
 * Before the command is started, keep it for run() to pass on then.
 */
static void forward(int sig)
{
    if (child > 0)
        kill((pid_t)child, sig);
    else if (stop_signal == 0)
        stop_signal = sig;
}

/*
 * The command's environment: this one without FIFOLOCK_TOKEN and
 * FIFOLOCK_OWNER_DEAD, plus the new ones. Built before the fork rather than
 * with setenv(), which would race with the etcd session's thread (libcurl
 * reads the environment). NULL if out of memory.
 */
static char **child_env(const char *token, const char *dead)
{
    size_t n = 0, k = 0, i;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 3, sizeof *env);
    if (env == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        if (strncmp(environ[i], "FIFOLOCK_TOKEN=", 15) != 0 &&
            strncmp(environ[i], "FIFOLOCK_OWNER_DEAD=", 20) != 0)
            env[k++] = environ[i];
    env[k++] = (char *)token;
    if (dead != NULL)
        env[k++] = (char *)dead;
    env[k] = NULL;
    return env;
}

/*
 * Runs argv as a child with `env`; returns its exit status the shell's way.
 * Meanwhile this process ignores SIGINT and SIGQUIT (as system(3) does: the
 * terminal sends them to the command too) and forwards SIGTERM and SIGHUP,
 * so that it outlives the command and gives the lock back cleanly. The
 * backend learns the child's pid (to signal it if the lock is lost).
 */
static int run(char **argv, char **env, const struct backend *backend, void *state)
{
    struct sigaction ign, fwd, old_int, old_quit, old_term, old_hup;
    pid_t pid, parent = getpid();
    int status, keep = -1;
    char err[256];

    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    memset(&fwd, 0, sizeof fwd);
    fwd.sa_handler = forward;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    sigaction(SIGTERM, &fwd, &old_term);
    sigaction(SIGHUP, &fwd, &old_hup);
    if (stop_signal != 0)
        return 128 + stop_signal; /* came after the grant, before these handlers */
    if (backend->keepalive_fd != NULL) {
        keep = backend->keepalive_fd(state, err, sizeof err);
        if (keep < 0) {
            fprintf(stderr, "fifolock: %s\n", err);
            return 2;
        }
    }
    pid = fork();

    if (pid < 0) {
        fprintf(stderr, "fifolock: cannot fork: %s\n", strerror(errno));
        if (keep >= 0)
            close(keep);
        return 2;
    }
    if (pid == 0) {
        if (keep < 0) {
            /* Nothing the command holds keeps the lock: it dies with this
             * program. Set in the child, then the parent checked: if the
             * parent died before the prctl, nobody would send the signal. */
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
                raise(SIGKILL);
        }
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
        execvpe(argv[0], argv, env);
        fprintf(stderr, "fifolock: %s: %s\n", argv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    if (keep >= 0)
        close(keep); /* the command's copy keeps the hold; this process has its own */
    child = pid;
    if (stop_signal != 0)
        kill(pid, stop_signal); /* came between the check above and now */
    if (backend->started != NULL)
        backend->started(state, pid);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 2;
    child = 0;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/*
 * --user NAME:PASSWORD, as etcdctl takes it: split, and blank the password
 * in argv so that ps(1) shows it no longer (it was visible until now: the
 * environment is the safer place). Without a colon the password comes from
 * FIFOLOCK_ETCD_PASSWORD. Returns 0, or -1 when out of memory.
 */
static char *user_copy, *password_copy; /* live until exit */

static int split_user(char *arg, struct tool_options *opt)
{
    char *colon = strchr(arg, ':');

    if (colon == NULL) {
        opt->user = arg;
        opt->password = getenv("FIFOLOCK_ETCD_PASSWORD");
        return 0;
    }
    free(user_copy);
    free(password_copy);
    opt->user = user_copy = strndup(arg, (size_t)(colon - arg));
    opt->password = password_copy = strdup(colon + 1);
    if (user_copy == NULL || password_copy == NULL)
        return -1;
    memset(colon + 1, 'x', strlen(colon + 1));
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_ETCD = 256, OPT_CACERT, OPT_CERT, OPT_KEY, OPT_USER, OPT_TTL, OPT_CAPACITY,
           OPT_FILE_MODE };
    static const struct option options[] = {
        { "mode", required_argument, NULL, 'm' },     { "timeout", required_argument, NULL, 't' },
        { "etcd", required_argument, NULL, OPT_ETCD }, { "cacert", required_argument, NULL, OPT_CACERT },
        { "cert", required_argument, NULL, OPT_CERT }, { "key", required_argument, NULL, OPT_KEY },
        { "user", required_argument, NULL, OPT_USER }, { "ttl", required_argument, NULL, OPT_TTL },
        { "capacity", required_argument, NULL, OPT_CAPACITY },
        { "file-mode", required_argument, NULL, OPT_FILE_MODE },
        { "help", no_argument, NULL, 'h' },           { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const struct backend *backend = &fifolock_tool_shm_backend;
    const fifolock_mode *mode = &fifolock_mutex;
    fifolock_mode storage;
    struct tool_options opt;
    struct timespec deadline, *dl = NULL;
    char dead[512] = "", err[512] = "", token_text[48], dead_text[560], why[256];
    const char *mode_text = NULL, *what;
    char **env, *end;
    uint64_t token = 0;
    void *state = NULL;
    int c, rc, status;
    bool told;
    long ttl;

    memset(&opt, 0, sizeof opt);
    while ((c = getopt_long(argc, argv, "+m:t:hV", options, NULL)) != -1) {
        switch (c) {
        case 'm':
            mode_text = optarg;
            break;
        case 't':
            if (parse_timeout(optarg, &deadline) != 0) {
                fprintf(stderr, "fifolock: bad timeout '%s' (seconds, >= 0)\n", optarg);
                return 2;
            }
            dl = &deadline;
            break;
        case OPT_ETCD:
#ifdef FIFOLOCK_TOOL_ETCD
            backend = &fifolock_tool_etcd_backend;
            opt.endpoints = optarg;
            break;
#else
            fprintf(stderr, "fifolock: this build has no etcd support\n");
            return 2;
#endif
        case OPT_CACERT:
            opt.cacert = optarg;
            break;
        case OPT_CERT:
            opt.cert = optarg;
            break;
        case OPT_KEY:
            opt.key = optarg;
            break;
        case OPT_USER:
            if (split_user(optarg, &opt) != 0) {
                fprintf(stderr, "fifolock: out of memory\n");
                return 2;
            }
            break;
        case OPT_TTL:
            errno = 0;
            ttl = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || ttl < 2 || ttl > 1000000) {
                fprintf(stderr, "fifolock: bad TTL '%s' (whole seconds, >= 2)\n", optarg);
                return 2;
            }
            opt.ttl = (int)ttl;
            break;
        case OPT_CAPACITY:
            errno = 0;
            ttl = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || ttl < 1 ||
                ttl > FIFOLOCK_SHM_MAX_CAPACITY) {
                fprintf(stderr, "fifolock: bad capacity '%s' (1 to %d handles)\n", optarg,
                        FIFOLOCK_SHM_MAX_CAPACITY);
                return 2;
            }
            opt.capacity = (size_t)ttl;
            break;
        case OPT_FILE_MODE:
            errno = 0;
            ttl = strtol(optarg, &end, 8);
            if (errno != 0 || end == optarg || *end != '\0' || ttl < 1 || ttl > 0777) {
                fprintf(stderr, "fifolock: bad file mode '%s' (octal, e.g. 0600)\n", optarg);
                return 2;
            }
            opt.file_mode = (unsigned)ttl;
            break;
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
    if (opt.endpoints == NULL && (opt.cacert || opt.cert || opt.key || opt.user || opt.ttl)) {
        fprintf(stderr, "fifolock: --cacert, --cert, --key, --user and --ttl need --etcd\n");
        return 2;
    }
    if (opt.endpoints != NULL && (opt.capacity || opt.file_mode)) {
        fprintf(stderr, "fifolock: --capacity and --file-mode are for lock files, not --etcd\n");
        return 2;
    }
    if (mode_text != NULL && backend->parse_mode(mode_text, &storage, &mode) != 0) {
        fprintf(stderr,
                "fifolock: unknown mode '%s' (mutex, read, write, upgradable, is, ix, s, "
                "six, x, semaphore:N)\n",
                mode_text);
        return 2;
    }
    what = argv[optind];
    if (backend->interrupt != NULL) {
        /* Until run() sets its own: a signal while waiting withdraws the
         * request and ends the program with 128 + the signal. A signal
         * ignored on entry (nohup, a background job of a script) stays so. */
        static const int stops[] = { SIGINT, SIGTERM, SIGHUP };
        struct sigaction stop, old;
        size_t i;

        memset(&stop, 0, sizeof stop);
        stop.sa_handler = stop_waiting;
        sigemptyset(&stop.sa_mask);
        interrupt_wait = backend->interrupt;
        for (i = 0; i < sizeof stops / sizeof stops[0]; i++)
            if (sigaction(stops[i], &stop, &old) == 0 && old.sa_handler == SIG_IGN)
                sigaction(stops[i], &old, NULL);
    }
    rc = backend->acquire(&state, &opt, what, mode, dl, &token, dead, sizeof dead, err,
                          sizeof err);
    if (stop_signal != 0) {
        /* Interrupted (EINTR: withdrawn), or granted just before: let go. */
        if ((rc == 0 || rc == EOWNERDEAD) && backend->release(state, mode, err, sizeof err) != 0)
            fprintf(stderr, "fifolock: releasing %s: %s\n", what, err);
        else if (rc != 0 && rc != EOWNERDEAD && rc != EINTR && rc != ETIMEDOUT)
            fprintf(stderr, "fifolock: %s\n", err);
        return 128 + stop_signal;
    }
    if (rc == ETIMEDOUT) {
        fprintf(stderr, "fifolock: timed out waiting for %s\n", what);
        return 1;
    }
    if (rc != 0 && rc != EOWNERDEAD) {
        fprintf(stderr, "fifolock: %s\n", err);
        return 2;
    }
    told = rc == EOWNERDEAD;
    snprintf(token_text, sizeof token_text, "FIFOLOCK_TOKEN=%" PRIu64, token);
    if (rc == EOWNERDEAD) {
        fprintf(stderr, "fifolock: a holder of %s died while holding it (%s)\n", what, dead);
        snprintf(dead_text, sizeof dead_text, "FIFOLOCK_OWNER_DEAD=%s", dead);
    }
    env = child_env(token_text, rc == EOWNERDEAD ? dead_text : NULL);
    if (env == NULL) {
        fprintf(stderr, "fifolock: out of memory\n");
        status = 2;
    } else {
        status = run(argv + optind + 1, env, backend, state);
        free(env);
    }
    if (backend->lost != NULL && backend->lost(state, why, sizeof why) != 0) {
        fprintf(stderr, "fifolock: lost the lock %s while the command ran: %s\n", what, why);
        status = 3;
    }
    if (told && status == 0 && backend->repaired != NULL)
        backend->repaired(state);
    rc = backend->release(state, mode, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "fifolock: releasing %s: %s\n", what, err);
    return status;
}
