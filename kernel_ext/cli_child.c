/*
 * cli_child.c - runs the installed `cellar` command from the kernel, so that
 * the walks of whole LMDB databases (%cellar log, show, gc, and gc after a
 * commit over the budget) happen in another process: a damaged leaf or
 * B-tree can make LMDB fault or loop during a long cursor walk, and in a
 * child that costs a warning instead of the kernel.
 *
 * The command is $CELLAR_BIN, else `cellar` beside sys.executable, else in
 * the environment's scripts directory (where pip installs it).  It is started
 * with posix_spawn, never fork (the kernel has threads): stdin is /dev/null,
 * stdout and stderr are pipes, every other descriptor is closed, signals are
 * back to their defaults, and it has its own process group, so an interrupt
 * of the kernel does not reach a collection in the background.  Both pipes
 * are read as they fill (poll), so a child that writes much never blocks.
 * Waiting releases the GIL and checks for signals every 100 ms: an interrupt
 * kills the child and raises KeyboardInterrupt.  A child that has not
 * finished within its limit is killed (SIGKILL to its group).  Its stdout is
 * parsed as one JSON document (jansson).  Everything that can go wrong (no
 * command, a crash, a timeout, output that is not JSON) becomes one message
 * for a warning; nothing here raises but the interrupt.
 */
#include "cellar_ext.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define TICK_MS 100
#define DEFAULT_LIMIT_S 30 /* CELLAR_CLI_TIMEOUT's default, as store_cli.c */
#define MARGIN_S 5         /* beyond the command's own limit on its reader */
#define OUTPUT_MAX (64u << 20)

int64_t cellar_cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cellar_cli_limit_ms(void)
{
    const char *v = getenv("CELLAR_CLI_TIMEOUT");
    long t = DEFAULT_LIMIT_S;
    if (v && *v >= '0' && *v <= '9') {
        char *end;
        long n = strtol(v, &end, 10);
        if (!*end && n >= 0 && n <= 86400)
            t = n;
    }
    return t == 0 ? -1 : (int)((t + MARGIN_S) * 1000);
}

static bool executable(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

/* `dir`/cellar when it is an executable file; a new string, else NULL. */
static char *cellar_in(PyObject *dir)
{
    PyObject *path = dir ? PyUnicode_FromFormat("%U/cellar", dir) : NULL;
    const char *p = path ? PyUnicode_AsUTF8(path) : NULL;
    char *out = p && executable(p) ? strdup(p) : NULL;
    Py_XDECREF(path);
    PyErr_Clear();
    return out;
}

/* The command to run, as the header says; a malloc'd path, or NULL. */
static char *find_cellar(void)
{
    const char *env = getenv("CELLAR_BIN");
    if (env && *env)
        return strdup(env);
    char *found = NULL;
    PyObject *exe = PySys_GetObject("executable"); /* borrowed */
    PyObject *os_path = exe && PyUnicode_Check(exe) ? PyImport_ImportModule("os.path")
                                                    : NULL;
    PyObject *dir = os_path ? PyObject_CallMethod(os_path, "dirname", "O", exe) : NULL;
    if (dir && PyUnicode_Check(dir))
        found = cellar_in(dir);
    Py_XDECREF(dir);
    Py_XDECREF(os_path);
    if (!found) {
        PyObject *sysconfig = PyImport_ImportModule("sysconfig");
        PyObject *scripts =
            sysconfig ? PyObject_CallMethod(sysconfig, "get_path", "s", "scripts") : NULL;
        if (scripts && PyUnicode_Check(scripts))
            found = cellar_in(scripts);
        Py_XDECREF(scripts);
        Py_XDECREF(sysconfig);
    }
    PyErr_Clear();
    return found;
}

int cellar_cli_start(cellar_cli_child *c, const char *const *args, int limit_ms,
                     char *why, size_t why_len)
{
    *c = (cellar_cli_child){.pid = -1, .out = -1, .err = -1, .limit_ms = limit_ms};
    char *cmd = find_cellar();
    if (!cmd) {
        snprintf(why, why_len,
                 "the cellar command was not found (beside %s, in the environment's "
                 "scripts directory; CELLAR_BIN names it)",
                 "sys.executable");
        return -1;
    }
    size_t n = 0;
    while (args[n])
        n++;
    char **argv = calloc(n + 2, sizeof *argv);
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_ok = false, attr_ok = false;
    int rc = -1;
    if (!argv || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        snprintf(why, why_len, "cannot start %s: %s", cmd, strerror(argv ? errno : ENOMEM));
        goto done;
    }
    argv[0] = cmd;
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = (char *)args[i];
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE); /* Python ignores it, and ignored signals survive exec */
    sigaddset(&dflt, SIGINT);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGALRM);
    sigaddset(&dflt, SIGCHLD);
    fa_ok = posix_spawn_file_actions_init(&fa) == 0;
    attr_ok = posix_spawnattr_init(&attr) == 0;
    int e = !fa_ok || !attr_ok ? ENOMEM : 0;
    if (!e)
        e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    if (!e)
        e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!e)
        e = posix_spawnattr_setsigmask(&attr, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(&attr, &dflt);
    if (!e)
        e = posix_spawnattr_setpgroup(&attr, 0);
    if (!e)
        e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                POSIX_SPAWN_SETPGROUP);
    pid_t pid = -1;
    if (!e)
        e = posix_spawn(&pid, cmd, &fa, &attr, argv, environ);
    if (e) {
        snprintf(why, why_len, "cannot run %s: %s", cmd, strerror(e));
        goto done;
    }
    c->pid = pid;
    c->out = out[0];
    c->err = err[0];
    out[0] = err[0] = -1;
    c->started_ms = cellar_cli_now_ms();
    snprintf(c->what, sizeof c->what, "cellar %s", n ? args[0] : "");
    rc = 0;
done:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_ok)
        posix_spawnattr_destroy(&attr);
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    free(argv);
    free(cmd);
    return rc;
}

/* Appends what `fd` has now to `*buf`; false at its end (or on an error). */
static bool drain(int fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[16384];
    ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (got <= 0)
        return false;
    if (*len + (size_t)got + 1 > *cap && *len < OUTPUT_MAX) {
        size_t want = *cap ? *cap : sizeof chunk;
        while (want < *len + (size_t)got + 1)
            want *= 2;
        char *grown = realloc(*buf, want);
        if (!grown)
            return true; /* dropped, but still drained so the child goes on */
        *buf = grown;
        *cap = want;
    }
    if (*len + (size_t)got + 1 <= *cap) {
        memcpy(*buf + *len, chunk, (size_t)got);
        *len += (size_t)got;
        (*buf)[*len] = '\0';
    }
    return true;
}

/* Reads both pipes for at most `wait_ms` (0: only what is there). */
static void pump(cellar_cli_child *c, int wait_ms)
{
    struct pollfd p[2] = {{c->out, POLLIN, 0}, {c->err, POLLIN, 0}};
    if (c->out < 0 && c->err < 0) {
        if (wait_ms > 0)
            poll(NULL, 0, wait_ms);
        return;
    }
    int ready = poll(p, 2, wait_ms);
    if (ready <= 0)
        return;
    if (c->out >= 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
        !drain(c->out, &c->out_buf, &c->out_len, &c->out_cap)) {
        close(c->out);
        c->out = -1;
    }
    if (c->err >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
        !drain(c->err, &c->err_buf, &c->err_len, &c->err_cap)) {
        close(c->err);
        c->err = -1;
    }
}

void cellar_cli_kill(cellar_cli_child *c)
{
    if (c->pid > 0) {
        kill(-c->pid, SIGKILL); /* its group: the command's own reader child too */
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        c->pid = -1;
    }
}

void cellar_cli_free(cellar_cli_child *c)
{
    cellar_cli_kill(c);
    if (c->out >= 0)
        close(c->out);
    if (c->err >= 0)
        close(c->err);
    free(c->out_buf);
    free(c->err_buf);
    *c = (cellar_cli_child){.pid = -1, .out = -1, .err = -1};
}

/* The first line of what the child said on stderr, its "cellar CMD: "
 * prefix left out. */
static void stderr_line(const cellar_cli_child *c, char *out, size_t n)
{
    const char *s = c->err_buf ? c->err_buf : "";
    size_t prefix = strlen(c->what);
    if (!strncmp(s, c->what, prefix) && s[prefix] == ':')
        s += prefix + 1 + (s[prefix + 1] == ' ');
    size_t len = strcspn(s, "\n");
    snprintf(out, n, "%.*s", (int)len, s);
}

/* After the child exited with `status`: its document, or NULL with `why`. */
static json_t *finish(cellar_cli_child *c, int status, char *why, size_t why_len)
{
    char line[1024];
    stderr_line(c, line, sizeof line);
    if (WIFSIGNALED(status)) {
        snprintf(why, why_len, "%s crashed (signal %d, %s)%s%s", c->what,
                 WTERMSIG(status), strsignal(WTERMSIG(status)), *line ? ": " : "", line);
        return NULL;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    json_error_t jerr;
    json_t *doc = c->out_len && code <= 1
                      ? json_loadb(c->out_buf, c->out_len, 0, &jerr)
                      : NULL;
    if (doc && json_is_object(doc))
        return doc;
    json_decref(doc);
    if (*line)
        snprintf(why, why_len, "%s: %s", c->what, line);
    else
        snprintf(why, why_len, "%s exited with status %d and printed no JSON", c->what,
                 code);
    return NULL;
}

int cellar_cli_poll(cellar_cli_child *c, json_t **doc, char *why, size_t why_len)
{
    *doc = NULL;
    pump(c, 0);
    pump(c, 0);
    int status;
    pid_t got = waitpid(c->pid, &status, WNOHANG);
    if (got == 0) {
        if (c->limit_ms >= 0 && cellar_cli_now_ms() - c->started_ms > c->limit_ms) {
            cellar_cli_kill(c);
            snprintf(why, why_len, "%s did not finish within %d s and was stopped",
                     c->what, c->limit_ms / 1000);
            return -1;
        }
        return 0;
    }
    if (got < 0) {
        snprintf(why, why_len, "%s: cannot wait for it: %s", c->what, strerror(errno));
        c->pid = -1;
        return -1;
    }
    c->pid = -1;
    /* It exited: what it wrote is in the pipes, to their end (a grandchild
     * that still holds them was killed with its group, or is given 1 s). */
    int64_t until = cellar_cli_now_ms() + 1000;
    while ((c->out >= 0 || c->err >= 0) && cellar_cli_now_ms() < until)
        pump(c, TICK_MS);
    *doc = finish(c, status, why, why_len);
    return *doc ? 1 : -1;
}

json_t *cellar_cli_wait(cellar_cli_child *c, char *why, size_t why_len, bool *interrupted)
{
    *interrupted = false;
    json_t *doc = NULL;
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        pump(c, TICK_MS);
        Py_END_ALLOW_THREADS
        rc = cellar_cli_poll(c, &doc, why, why_len);
        if (rc != 0)
            break;
        if (PyErr_CheckSignals() < 0) {
            cellar_cli_kill(c);
            *interrupted = true;
            break;
        }
    }
    return doc;
}

json_t *cellar_cli_run(const char *const *args, char *why, size_t why_len,
                       bool *interrupted)
{
    cellar_cli_child c;
    *interrupted = false;
    if (cellar_cli_start(&c, args, cellar_cli_limit_ms(), why, why_len) < 0)
        return NULL;
    json_t *doc = cellar_cli_wait(&c, why, why_len, interrupted);
    cellar_cli_free(&c);
    return doc;
}
