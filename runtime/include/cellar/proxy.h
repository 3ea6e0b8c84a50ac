/*
 * proxy.h - the relay behind `cellar-kernel`: binds the five Jupyter channels
 * a frontend's connection file names, runs the real kernel on private ipc
 * endpoints with the same key, and relays every message between the two
 * unchanged (signature included), after checking the frontend's signatures.
 * It survives the kernel: a child that dies on its own gets its in-flight
 * execute requests answered with an error and is started again, and the
 * cells its hooks name (the session's definition cells) are replayed into the
 * new one.
 *
 * What it guarantees, for the documentation and the tests:
 *   - a message from a frontend with a missing, wrong or replayed signature,
 *     a malformed frame list, or more than the size limit (1 GiB unless the
 *     config says otherwise) or CELLAR_PROXY_MAX_FRAMES frames is dropped
 *     with a line on stderr, and never reaches the kernel; the same limits
 *     drop an oversize message from the kernel;
 *   - shell, control and stdin share one routing id towards the kernel, so
 *     the kernel's stdin requests reach the frontend that sent the execute;
 *   - iopub subscriptions are answered with the proxy's own signed
 *     iopub_welcome (JEP 65); the kernel's welcome to the proxy is not relayed;
 *   - SIGINT is not forwarded: the kernel is in the proxy's process group and
 *     receives jupyter_client's signal itself; SIGTERM, SIGHUP and SIGQUIT
 *     stop the kernel (SIGTERM, then SIGKILL after 2 s) and the proxy;
 *   - after a shutdown_request the proxy exits once the kernel has exited and
 *     its last replies are relayed.
 */
#ifndef CELLAR_PROXY_H
#define CELLAR_PROXY_H

#include <stddef.h>

#include "cellar/error.h"
#include "cellar/wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Messages beyond these are dropped (and logged): 1 GiB in all (by default),
 * 65536 frames. */
#define CELLAR_PROXY_MAX_MESSAGE ((size_t)1 << 30)
#define CELLAR_PROXY_MAX_FRAMES 65536

/* What the relay tells its hooks.  The message events are raised after the
 * frontend's signature was checked (requests), just after the message was
 * forwarded (its frames kept by zmq_msg_copy; before, if a copy fails), and
 * before the next message is read; a hook sees the frames exactly as relayed. */
typedef enum cellar_proxy_event {
    CELLAR_PROXY_EXECUTE_REQUEST, /* frontend -> kernel, shell */
    CELLAR_PROXY_EXECUTE_INPUT,   /* kernel -> frontends, iopub */
    CELLAR_PROXY_EXECUTE_REPLY,   /* kernel -> frontend, shell */
    CELLAR_PROXY_STATUS,          /* kernel -> frontends, iopub */
    CELLAR_PROXY_CHILD_STARTED,   /* msg and info are NULL */
    CELLAR_PROXY_CHILD_DIED,      /* on its own, not after a shutdown; NULLs */
} cellar_proxy_event;

/* A cell to run again in a new child after a crash. */
typedef struct cellar_replay_cell {
    const char *code; /* NUL-terminated */
    const char *cell_id; /* "" for none */
} cellar_replay_cell;

/*
 * The journal's way in.  `on_event` runs on the relay's thread with borrowed
 * `msg` (its frames valid only during the call) and `info` (header fields,
 * empty strings when the header is unreadable); it must not block: a hook
 * that needs to write does so off this thread.  `on_event` NULL means no hooks.
 *
 * `replay` (may be NULL) is asked, on the relay's thread, right after
 * CELLAR_PROXY_CHILD_DIED, for the cells to run again in the next child, in
 * order: it sets `*cells` to an array it owns, valid until its next call, and
 * returns their number.  The proxy sends each as an execute_request of its own
 * (signed by it, store_history false, metadata.cellId as recorded) before
 * anything a frontend sends next; their replies and outputs reach no frontend,
 * and a status idle is published when the last one has answered.
 */
typedef struct cellar_proxy_hooks {
    void *ctx;
    void (*on_event)(void *ctx, cellar_proxy_event event, const cellar_wire_msg *msg,
                     const cellar_wire_info *info);
    size_t (*replay)(void *ctx, const cellar_replay_cell **cells);
} cellar_proxy_hooks;

typedef struct cellar_proxy_config {
    const char *connection_file; /* the frontend's */
    /* The kernel's command, NULL-terminated; the proxy appends
     * "-f CHILD_CONNECTION_FILE".  Borrowed for the run. */
    char *const *child_argv;
    cellar_proxy_hooks hooks;
    size_t max_message; /* bytes in all frames of one message; 0: the default */
    /* NULL, or a file that gets one line per message relayed, for measuring
     * the relay: "WAKE_NS SIDE CHANNEL BYTES GOT_NS SENT_NS DONE_NS" with
     * WAKE_NS the CLOCK_MONOTONIC time the loop woke, and from then to the
     * message fully received, to it sent on (0: not sent) and to its hooks
     * done.  Written through stdio's buffer, complete at exit.  A file
     * that cannot be opened is a warning; the relay runs without it. */
    const char *trace_file;
} cellar_proxy_config;

/*
 * Runs the proxy until the kernel has been shut down or the proxy is told
 * to stop by a signal.  Returns the process exit status: 0 after a shutdown
 * or SIGTERM; 1 when it could not start (the reason in `err`: a bad
 * connection file, a port that cannot be bound, a kernel that cannot be
 * started) or when the kernel died five times in a row within 2 s of its
 * start.  Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGCHLD in the calling
 * thread for its own signalfd; call it before starting other threads.
 */
int cellar_proxy_run(const cellar_proxy_config *cfg, cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
