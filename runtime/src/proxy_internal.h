/*
 * proxy_internal.h - what proxy.c (the relay: the child, hooks, the loop) and
 * proxy_frames.c (whole messages on ZeroMQ sockets) share; private to them.
 * The proxy's state is one struct that the relay's thread owns.
 */
#ifndef CELLAR_PROXY_INTERNAL_H
#define CELLAR_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <limits.h>
#include <sys/types.h>
#include <zmq.h>

#include "cellar/connection.h"
#include "cellar/proxy.h"

/* A request the child has not answered yet. */
typedef struct inflight {
    zmq_msg_t *ids; /* copies of the routing identities */
    size_t n_ids;
    char *header; /* the request's header frame, parsed only if the child dies */
    size_t header_len;
    char msg_id[128];
    long execution_count;
} inflight;

/* The frames of the message being relayed. */
typedef struct parts {
    zmq_msg_t *msgs;
    cellar_wire_frame *frames;
    size_t n, cap;
    size_t bytes;
} parts;

typedef struct proxy {
    const cellar_proxy_config *cfg;
    cellar_connection conn;
    cellar_wire_auth *auth;
    void *zctx;
    void *front[CELLAR_CHANNEL_COUNT];
    void *back[CELLAR_CHANNEL_COUNT];
    /* The current child's heartbeat answered the proxy's probe: frontend pings
     * go to it from then on (until then, and with no child, the proxy echoes). */
    bool child_beats;
    int sigfd;
    /* Sockets to look at before the loop sleeps again (see cellar_proxy_run):
     * their fd fired, the proxy sent on them, or they were left unfinished. */
    bool check_front[CELLAR_CHANNEL_COUNT], check_back[CELLAR_CHANNEL_COUNT];
    char dir[128]; /* short: ipc paths must fit in a sockaddr_un */
    char child_file[PATH_MAX];
    unsigned generation;
    pid_t child;
    struct timespec child_started;
    int quick_deaths;
    char session[40];
    bool shutdown_seen;
    bool stop;
    int exit_status;
    inflight *pending;
    size_t n_pending, cap_pending;
    parts in;
    parts late; /* p->in's frames kept for a hook run after they were sent */
    unsigned long drops;
    FILE *trace;      /* cfg->trace_file, open; NULL when off */
    uint64_t woke_ns, sent_ns; /* when the loop last woke, last sent: the trace */
    /* Cells the proxy replayed into the current child: their msg_ids (whose
     * replies and outputs reach no frontend) and how many have not answered. */
    char (*replay_ids)[40];
    size_t n_replay, replay_left, replay_busy; /* sent; unanswered; not yet idle */
} proxy;

/* One line on stderr, "cellar-kernel: ...", written whole. */
__attribute__((format(printf, 1, 2))) void proxy_say(const char *fmt, ...);
/* Counts a dropped message and logs it (the first 100, then one in 1000). */
void proxy_drop(proxy *p, const char *from, const char *why);
/* Raises a hook event, when there are hooks. */
void proxy_hook(proxy *p, cellar_proxy_event ev, const cellar_wire_msg *m,
                const cellar_wire_info *info);
uint64_t proxy_now_ns(void); /* CLOCK_MONOTONIC */

/* Closes the frames in `in` (keeps its arrays); _free also frees those. */
void proxy_parts_clear(parts *in);
void proxy_parts_free(parts *in);
/* One whole message from `sock` without waiting: 1 with its frames in `in`,
 * 0 when none waits, -1 when it was over `limit` bytes or
 * CELLAR_PROXY_MAX_FRAMES frames (consumed and discarded). */
int proxy_receive(void *sock, parts *in, size_t limit);
/* Marks `sock` to be looked at before the loop sleeps (a send may have
 * taken the signal of a message that arrived on it). */
void proxy_touch(proxy *p, void *sock);
/* Sends frames [from, in->n) of `in` on `sock`, moving each zmq_msg_t; false
 * (the rest discarded) when the socket refuses.  `in` is left empty. */
bool proxy_forward(proxy *p, void *sock, parts *in, size_t from);
/* proxy_forward of p->in, with event `ev` raised for it: after it was sent
 * when its frames could be kept (p->late), before otherwise. */
bool proxy_forward_and_hook(proxy *p, void *sock, cellar_proxy_event ev,
                            const cellar_wire_msg *m, const cellar_wire_info *info);
/* Composes, signs and sends a message of the proxy's own to `ids` (none: a
 * publication); `parent` is borrowed, `content` stolen. */
void proxy_send_own(proxy *p, void *sock, zmq_msg_t *ids, size_t n_ids,
                    const char *msg_type, json_t *parent, json_t *content);
void proxy_send_composed(proxy *p, void *sock, zmq_msg_t *ids, size_t n_ids,
                         const cellar_wire_composed *c);

#endif
