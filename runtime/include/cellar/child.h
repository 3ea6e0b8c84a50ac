/*
 * child.h - the kernel process the proxy runs: started with fork and exec so
 * that it can be tied to the proxy's life, and reaped without blocking.
 */
#ifndef CELLAR_CHILD_H
#define CELLAR_CHILD_H

#include <stdbool.h>
#include <sys/types.h>

#include "cellar/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starts `argv[0]` (searched on PATH when it has no '/') with arguments
 * `argv` (NULL-terminated, borrowed) and the environment of the caller plus
 * JPY_PARENT_PID=<caller's pid>.  In the child, before exec: the signal mask
 * is emptied and every signal the caller may have changed is reset to its
 * default (so SIGINT raises KeyboardInterrupt in Python), and
 * PR_SET_PDEATHSIG delivers SIGKILL when the caller dies; a caller that is
 * already gone by then makes the child exit at once.  The child stays in the
 * caller's process group, so a signal to the group reaches it once, directly.
 * Returns the child's pid in `*pid` and CELLAR_OK; CELLAR_ENOTFOUND when the
 * program is not found; CELLAR_EIO when fork fails; CELLAR_ENOMEM.
 * An exec that fails in the child makes it exit with status 127.
 */
cellar_status cellar_child_start(char *const argv[], pid_t *pid, cellar_error *err);

/*
 * Records the set of CPUs the calling thread may run on now: every child
 * started afterwards gets that set back before exec, so that the caller may
 * then pin itself to fewer CPUs without pinning its kernels.  A set the
 * system refuses in the child (CPUs gone offline) leaves the child the
 * caller's.  Returns false, recording nothing, when the set cannot be read.
 */
bool cellar_child_remember_cpus(void);

/* What became of a child: `exited` false means it still runs. */
typedef struct cellar_child_exit {
    bool exited;
    int status; /* exit status, or the signal number when `signaled` */
    bool signaled;
} cellar_child_exit;

/* Reaps `pid` if it has ended, never blocking; EINTR is retried.  A pid that
 * is not (or no longer) our child counts as exited with status 0. */
cellar_child_exit cellar_child_poll(pid_t pid);

/*
 * Ends `pid`: SIGTERM, then SIGKILL after `grace_ms` milliseconds if it still
 * runs, and reaps it.  Blocks for at most grace_ms plus the time the kernel
 * takes to deliver SIGKILL.
 */
cellar_child_exit cellar_child_stop(pid_t pid, int grace_ms);

#ifdef __cplusplus
}
#endif

#endif
