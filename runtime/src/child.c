/*
 * child.c - starting and reaping the kernel behind the proxy (see child.h).
 *
 * Everything the child needs (the program's path, the environment with
 * JPY_PARENT_PID) is built before fork, so that between fork and exec the
 * child only makes async-signal-safe calls: the proxy has ZeroMQ threads, and
 * after fork only the forking thread exists in the child.  The parent-death
 * signal is armed in the child and then the parent's pid is checked again,
 * because the parent may have died between fork and prctl.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include "cellar/child.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The executable for `name`: itself when it holds a '/', else the first
 * executable match on PATH, written into path[PATH_MAX]. */
static bool resolve(const char *name, char path[PATH_MAX])
{
    if (strchr(name, '/')) {
        snprintf(path, PATH_MAX, "%s", name);
        return access(path, X_OK) == 0;
    }
    const char *dirs = getenv("PATH");
    if (!dirs)
        dirs = "/usr/local/bin:/usr/bin:/bin";
    while (*dirs) {
        size_t n = strcspn(dirs, ":");
        int w = snprintf(path, PATH_MAX, "%.*s/%s", (int)n, n ? dirs : ".", name);
        if (w > 0 && w < PATH_MAX && access(path, X_OK) == 0)
            return true;
        dirs += n + (dirs[n] == ':');
    }
    return false;
}

/* environ without JPY_PARENT_PID, plus `extra`: a new array of borrowed
 * strings (free the array only). */
static char **child_environ(char *extra)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "JPY_PARENT_PID=", 15) != 0)
            env[k++] = environ[i];
    env[k++] = extra;
    env[k] = NULL;
    return env;
}

/* The CPUs children get back (cellar_child_remember_cpus). */
static cpu_set_t child_cpus;
static bool child_cpus_set;

bool cellar_child_remember_cpus(void)
{
    cpu_set_t now;
    if (sched_getaffinity(0, sizeof now, &now) != 0)
        return false;
    child_cpus = now;
    child_cpus_set = true;
    return true;
}

cellar_status cellar_child_start(char *const argv[], pid_t *pid, cellar_error *err)
{
    char path[PATH_MAX];
    if (!argv[0] || !resolve(argv[0], path))
        return cellar_error_set(err, CELLAR_ENOTFOUND,
                                "cannot find the kernel program '%s'",
                                argv[0] ? argv[0] : "");
    pid_t parent = getpid();
    char parent_var[64];
    snprintf(parent_var, sizeof parent_var, "JPY_PARENT_PID=%ld", (long)parent);
    char **env = child_environ(parent_var);
    if (!env)
        return cellar_error_set(err, CELLAR_ENOMEM, "out of memory starting the kernel");
    pid_t p = fork();
    if (p < 0) {
        free(env);
        return cellar_error_set(err, CELLAR_EIO, "cannot fork the kernel: %s",
                                strerror(errno));
    }
    if (p == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (child_cpus_set)
            (void)sched_setaffinity(0, sizeof child_cpus, &child_cpus);
        for (int s = 1; s < NSIG; s++)
            if (s != SIGKILL && s != SIGSTOP)
                signal(s, SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        execve(path, argv, env);
        _exit(127);
    }
    free(env);
    *pid = p;
    return CELLAR_OK;
}

static cellar_child_exit from_status(int status)
{
    cellar_child_exit e = {.exited = true};
    if (WIFSIGNALED(status)) {
        e.signaled = true;
        e.status = WTERMSIG(status);
    } else {
        e.status = WEXITSTATUS(status);
    }
    return e;
}

cellar_child_exit cellar_child_poll(pid_t pid)
{
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return (cellar_child_exit){.exited = false};
    if (r < 0)
        return (cellar_child_exit){.exited = true};
    return from_status(status);
}

cellar_child_exit cellar_child_stop(pid_t pid, int grace_ms)
{
    cellar_child_exit e = cellar_child_poll(pid);
    if (e.exited)
        return e;
    kill(pid, SIGTERM);
    for (int waited = 0; waited < grace_ms; waited += 10) {
        struct timespec ts = {0, 10L * 1000 * 1000};
        nanosleep(&ts, NULL);
        e = cellar_child_poll(pid);
        if (e.exited)
            return e;
    }
    kill(pid, SIGKILL);
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    return r == pid ? from_status(status) : (cellar_child_exit){.exited = true};
}
