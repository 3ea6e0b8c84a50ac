/*
 * run_state.h - the state of one run (or status query), shared by the files
 * that plan, execute, save, report and show the progress of it.
 *
 * A run_ctx holds the graph of the registry's nodes and one slot per node:
 * its status, cache key, data version, value and timings.  The calls go one
 * way: run.c (the entry points) drives plan.c (graph, inputs, keys, session
 * memory, status planning), execute.c (compute, load, visit), save.c (the
 * run's batch and lineage), progress.c (the live line) and report.c (the
 * rows); execute.c uses plan.c and progress.c, and nothing calls back into
 * run.c.  Everything here runs with the GIL held.
 */
#ifndef CELLAR_RUN_STATE_H
#define CELLAR_RUN_STATE_H

#include "cellar_ext.h"

#include <pthread.h>
#include <time.h>

#include "cellar/graph.h"

typedef enum {
    ST_PENDING,
    ST_COMPUTED,
    ST_LOADED,
    ST_MEMORY,
    ST_FAILED,
    ST_SKIPPED
} node_status;

/* "pending", "computed", "loaded", "in memory", "failed", "skipped". */
extern const char *const run_status_names[];

typedef struct slot {
    PyObject *cap; /* strong: keeps the cellar_fn alive during the run */
    cellar_fn *fn;
    node_status status;
    cellar_hash key, dv, code_version;
    bool keyed;      /* `key` is the node's current key */
    PyObject *value; /* strong, once available */
    PyObject *error; /* str, when failed or skipped */
    double seconds;  /* compute or load time, < 0 when none */
    uint64_t size;
    bool have_size;
    bool stored;        /* computed, picklable: to be written */
    uint64_t last_used; /* the key record's, for hits from the store */
    bool replace;       /* its stored result failed to load: overwrite it */
    bool handed;        /* its value went to a body since it was last checked */
    bool exposed;       /* its value went to a body during this run */
    bool iterator;      /* its value is an iterator: never stored or reused */
    int behavior;       /* cellar_behavior, for this run (plan.c) */
    bool idle;          /* an ignored node nothing needed: skipped, not a failure */
    cellar_pickled pickled;
} slot;

/* The live progress line (progress.c).  The watcher thread reads and writes
 * these fields only with the GIL held, and `stop` only with `mu` locked. */
typedef struct run_progress {
    uint64_t started_ns;  /* CLOCK_MONOTONIC at the start of the run; 0: no progress */
    uint64_t shown_ns;    /* when the line was last drawn, 0 before the first */
    size_t done;          /* nodes planned so far */
    int current;          /* the node computing or loading (or last to), -1 none */
    bool loading;         /* `current` is loading, not computing */
    bool busy;            /* a draw is under way (it runs Python code) */
    bool paused;          /* erased for a traceback: not drawn until the next node */
    PyObject *display_id; /* str, once the line is a display in a notebook */
    unsigned displays;    /* displays made so far: a fresh one follows a clear_output */
    PyObject *hook;       /* the display publisher's hook noting clear_output, or NULL */
    PyObject *cleared;    /* list the hook appends to at each clear_output, or NULL */
    size_t drawn;         /* characters of the line on stderr, in a terminal */
    int where;            /* 0 not decided yet, 1 a notebook display, 2 stderr */
    /* The watcher thread, started at the run's first computation. */
    bool watching, thread_running, stop;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    PyObject *context; /* contextvars of the run, entered by the watcher */
} run_progress;

typedef struct run_ctx {
    cellar_state *st;
    PyObject *ns, *inputs;
    PyObject *versions;       /* per-run memo for code and global versions */
    PyObject *input_versions; /* id(value) -> dv bytes, for this run */
    cellar_graph *g;
    slot *slots;
    size_t n;
    int *order;
    size_t norder;
    cellar_reader *reader;
    PyObject *behaviors;   /* the run's behaviour options (name -> int), or NULL */
    bool behaving;         /* some node of the graph has a behaviour but default */
    PyObject *inputs_read; /* lineage.c's record of the inputs read, or NULL */
    PyObject *failure;     /* strong: the last failed node's exception, or NULL */
    bool interrupted;
    bool gc_was_enabled; /* the cyclic GC is paused for cellar's own bookkeeping */
    run_progress progress;
} run_ctx;

static inline uint64_t run_now_ns(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline PyObject *run_hash_bytes(const cellar_hash *h)
{
    return PyBytes_FromStringAndSize((const char *)h->bytes, 16);
}

/* plan.c */
/* Sets up `ctx` for a run or a status query with `inputs` (borrowed, must
 * outlive ctx): registers pending definitions, prunes the registry, builds
 * the graph, opens a reader when there is a store.  0, or -1 with a Python
 * error; run_release must follow either way. */
int run_start(run_ctx *ctx, cellar_state *st, PyObject *inputs);
void run_release(run_ctx *ctx);
/* Gives the slots the run's behaviour options (`behaviors`, a dict name ->
 * cellar_behavior, or NULL), above the nodes' own; O(options).  0, or -1. */
int run_apply_behaviors(run_ctx *ctx, PyObject *behaviors);
/* The fixed data version an ignored node gives its dependants' keys. */
cellar_hash run_ignored_version(void);
/* Orders the ancestors of `targets` (ids) into ctx->order; RunError on a
 * cycle. */
int run_plan_order(run_ctx *ctx, const int *targets, size_t ntargets);
/* Fills the slot's key from the parameters' data versions.  0 when the key
 * is known, 1 when the node cannot run (status and error set), -1 on a
 * Python error.  When `values` is not NULL it receives each parameter's
 * value (new references). */
int run_node_key(run_ctx *ctx, int id, PyObject **values);
/* The slot's status and error (`msg` is stolen; NULL keeps none). */
void run_set_error(slot *s, node_status status, PyObject *msg);
/* The inputs of node `id` that nothing gives (not --input, not a global, no
 * default), as a new list of str; NULL with a Python error. */
PyObject *run_missing_inputs(run_ctx *ctx, int id);
/* Status planning, as %cellar status and %cellar graph show it: every node
 * in topological order gets ST_LOADED ("up to date": its key has a result
 * in memory or in the store), ST_FAILED ("needs input", error naming it) or
 * ST_SKIPPED ("needs run"); `keyed` says whether its key is known.  Starts
 * `ctx` (run_release must follow).  `behaviors` (a run's options, or NULL)
 * overrides the nodes' own behaviours.  With `only` (a list of node names,
 * or NULL for all) only those and their ancestors are planned (in ctx->order);
 * a cycle anywhere is still a RunError.  0, or -1 with a Python error. */
int run_plan_statuses(run_ctx *ctx, cellar_state *st, PyObject *inputs,
                      PyObject *behaviors, PyObject *only);

/* plan.c: this session's memory of values (cellar_state.memo). */
/* Reuses the session's value for the slot's key while it still has its data
 * version.  1 reused (ST_MEMORY), 0 not, -1 on error. */
int run_memo_lookup(run_ctx *ctx, slot *s);
int run_memo_store(run_ctx *ctx, slot *s);
void run_warn_changed(slot *s);

/* execute.c */
/* Plans one node: in memory, a store hit (loaded later, when needed), or
 * computed now.  0, or -1 with a Python error. */
int run_visit(run_ctx *ctx, int id);
/* 0 when the node's value is available, 1 when it failed, -1 on error. */
int run_ensure_value(run_ctx *ctx, int id);

/* save.c: the run's results, key touches, node records and lineage, in one
 * batch; failures become a warning. */
void run_save(run_ctx *ctx, PyObject *targets, uint64_t started_ns);

/* progress.c */
/* Called when node `id` starts computing (or, with `loading`, loading), `now`
 * being CLOCK_MONOTONIC: past the first half second of a run (one whose
 * progress.started_ns is set), draws or redraws the line, at most every
 * 0.2 s.  1 when it drew (time passed: read the clock again), else 0.  Never
 * fails: a line that cannot be shown is cleared and forgotten. */
int run_progress_tick(run_ctx *ctx, int id, bool loading, uint64_t now);
/* Ends the line: in a notebook the display becomes `report` (or, when NULL,
 * a note that the run stopped); in a terminal the line is erased.  Returns
 * 1 when `report` was shown in place of the line, 0 when it still has to be
 * shown, -1 with a Python error. */
int run_progress_end(run_ctx *ctx, PyObject *report);

/* Erases the line from a terminal before something else is written there
 * (a node's traceback); the next node draws it again.  Never fails. */
void run_progress_interrupt(run_ctx *ctx);

/* report.c */
/* The run's report (a cellar.Report); `seconds` is the run's wall time. */
PyObject *run_report(run_ctx *ctx, double seconds);
/* The report of a planned status query (run_plan_statuses). */
PyObject *run_status_report(run_ctx *ctx);

#endif
