/*
 * cellar_ext.h - what the extension module's files share: the module state
 * and the internal functions of each part.
 *
 * The module is split by concept: module.c (initialization, state, the
 * IPython entry points), shell.c (the leaf all share: state, namespace,
 * warnings), hooks.c (the cell hooks), registry.c (the registry of
 * notebook-defined functions), values.c (pickling, data versions and the
 * checks behind in-memory reuse), code_version.c and code_fingerprint.c
 * (code versions), results.c (loading stored values), run.c (the entry
 * points of a run and of status queries) with plan.c, execute.c, save.c and
 * progress.c (planning, executing and saving it, and its live progress line;
 * they share run_state.h), report.c (the reports shown in the notebook),
 * graph_view.c (%cellar graph), lineage.c (what runs recorded: `%cellar log`,
 * `%cellar show`), results_view.c (`cellar.results`), gc_magic.c (the store's
 * size), auto.c (reactive mode) and magic.c (the `%cellar` line).  All state lives in cellar_state,
 * reached from the module object; every entry point holds the GIL, which
 * serializes access.
 */
#ifndef CELLAR_EXT_H
#define CELLAR_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "cellar/fingerprint.h"
#include "cellar/key.h"
#include "cellar/records.h"
#include "cellar/scanner.h"
#include "cellar/store.h"

/* A function defined at the top level of a notebook cell (a node unless its
 * name starts with '_'). */
typedef struct cellar_fn {
    PyObject *name;             /* str */
    PyObject *func;             /* the object the cell bound to `name` */
    PyObject *cell_id;          /* str, or Py_None when the frontend sent no cellId */
    cellar_hash source_version; /* the scanner's normalized-token hash */
    Py_ssize_t nparams;
    PyObject **param_names; /* str, owned */
    cellar_param_kind *kinds;
    bool *has_default;
    /* code_version.c's cache for a node that is a leaf function: its version,
     * valid while `func.__code__` is still `leaf_code` (strong, or NULL). */
    PyObject *leaf_code;
    cellar_hash leaf_version;
    /* The behaviour @cellar.node gave the function (behavior.c), or
     * CELLAR_BEHAVIOR_UNSET: read once, when the function is registered. */
    int behavior;
} cellar_fn;

/* behavior.c: how a node uses the cache, as Hamilton's caching behaviours.
 * default: a result in memory or in the store is reused, else computed and
 * stored; recompute: always computed, still stored (downstream cut off when
 * the value is equal); disable: computed every run, never stored, loaded nor
 * reused from memory, and its data version is unique per run (downstream
 * reruns); ignore: computed only when a node that uses it computes (or it is
 * a target), never stored, loaded nor reused, and downstream keys hold a fixed
 * marker instead of its data version. */
typedef enum {
    CELLAR_BEHAVIOR_DEFAULT,
    CELLAR_BEHAVIOR_RECOMPUTE,
    CELLAR_BEHAVIOR_DISABLE,
    CELLAR_BEHAVIOR_IGNORE,
    CELLAR_NBEHAVIORS
} cellar_behavior;
#define CELLAR_BEHAVIOR_UNSET (-1)

/* cli_child.c: a `cellar` command running in a child process. */
typedef struct cellar_cli_child {
    pid_t pid;     /* -1 when none runs */
    int out, err;  /* the read ends of its stdout and stderr, -1 once closed */
    char *out_buf, *err_buf; /* what it wrote (NUL-terminated), or NULL */
    size_t out_len, out_cap, err_len, err_cap;
    int64_t started_ms;
    int limit_ms;  /* -1: none */
    char what[32]; /* "cellar gc", for messages */
} cellar_cli_child;

typedef struct cellar_state {
    PyObject *module;         /* borrowed back-pointer, valid while the module lives */
    PyObject *RunError;       /* cellar.RunError */
    PyObject *StoreError;     /* cellar.StoreError */
    PyObject *NoResultError;  /* cellar.NoResultError (results_view.c) */
    PyTypeObject *ReportType; /* cellar.Report */

    /* Python helpers looked up once. */
    PyObject *pickle_loads;
    PyObject *literal_eval, *shlex_split, *print_exception;
    PyObject *str_protocol, *str_buffer_callback, *str_buffers;
    PyObject *str_dump, *str_getvalue, *str_reducer_override, *str_clear_memo,
        *str_truncate;
    PyObject *int_five;

    /* values.c: the fingerprinting picklers (subclasses of the C pickler and
     * of the pure-Python one, for values holding sets) and io.BytesIO. */
    PyObject *fast_pickler, *canonical_pickler, *bytes_io;
    /* The versioning-only pickler (the canonical one, writing notebook code
     * that pickle cannot name by its name): for data versions of values that
     * cannot be stored. */
    PyObject *version_pickler;
    /* file_inputs.c: pathlib.Path, whose instances are versioned by content. */
    PyObject *path_type;
    /* A C pickler kept for reuse between picklings (a tuple; NULL until the
     * first), and whether a pickling is using it right now. */
    PyObject *cached_pickler;
    bool pickler_busy;

    /* IPython integration; NULL when not loaded into a shell. */
    PyObject *shell;
    PyObject *pre_hook, *post_hook;
    /* Cells between their pre_run_cell and post_run_cell: ExecutionInfo ->
     * (scan capsule, previous objects).  A dict, because ipykernel 7 can run
     * cells on several subshell threads at once. */
    PyObject *pending;
    bool loading_cell; /* the cell that ran %load_ext has no pre_run_cell record */

    /* Registry: name -> capsule(cellar_fn), for every notebook function. */
    PyObject *functions;
    /* Values kept for this session: name -> (key bytes, dv bytes, value, size). */
    PyObject *memo;
    /* Names of globals already warned about (unfingerprintable). */
    PyObject *warned;
    /* Code versions (code_fingerprint.c), each made on first use: code object
     * id -> (code, fingerprint, names read); module name -> (module, is the
     * user's own); the library directories (tuple of str). */
    PyObject *code_cache, *module_kinds, *library_dirs;
    /* The code-version walk in progress (code_version.c), or NULL: a data
     * version taken inside it that meets notebook code joins it. */
    void *code_walk;

    cellar_store *store;
    /* gc_magic.c: the `cellar gc` started after a commit over the budget
     * (pid -1 when none), and the kernel's tally of result bytes: the last
     * figure a gc child measured plus what this kernel stored since, and when
     * it was measured (0: never; measured again after 60 s). */
    cellar_cli_child auto_gc;
    bool auto_gc_running;
    PyObject *auto_gc_hook; /* its post_run_cell callback, while it runs */
    uint64_t gc_tally, gc_tally_ms;
    /* gc_magic.c: the budget for automatic gc, from CELLAR_MAX_SIZE or
     * %cellar max-size (0: none), applied to each store opened. */
    uint64_t max_size;
    bool max_size_set;
    /* behavior.c: the behaviour of nodes that name none, from
     * CELLAR_DEFAULT_BEHAVIOR (read on first use) or %cellar default-behavior. */
    int default_behavior;
    bool default_behavior_set;
    cellar_key *keyenc;
    cellar_fingerprint *fp;
    uint64_t unique_counter;
    bool running;

    /* auto.c, reactive mode: on or off; the last notebook run's targets
     * (list of str), inputs (dict) and behaviour options (dict name -> int,
     * NULL when it gave none), or NULL before one; the baseline
     * (ancestor name -> key bytes or None), or NULL until taken; whether this
     * cell ran a run (or turned the mode on), whether a rerun is under way,
     * and whether a failed check was warned about (once until one succeeds). */
    bool auto_on;
    PyObject *auto_targets, *auto_inputs, *auto_behaviors, *auto_keys;
    bool auto_ran, auto_busy, auto_warned;
} cellar_state;

/* shell.c: the state of the module object `module` (never NULL once it is
 * initialized). */
cellar_state *cellar_state_of(PyObject *module);

/* getattr that treats a missing attribute as "none": 1 found, 0 missing,
 * -1 on another error (set). */
static inline int cellar_optional_attr(PyObject *obj, const char *name, PyObject **out)
{
    *out = PyObject_GetAttrString(obj, name);
    if (*out)
        return 1;
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* Takes the raised exception (with its traceback attached); new reference. */
static inline PyObject *cellar_fetch_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* shell.c */
/* The user's namespace: the shell's user_ns, else __main__'s dict.  Borrowed
 * (the shell or the module keeps it alive); NULL with a Python error. */
PyObject *cellar_user_ns(cellar_state *st);
/* Writes "cellar: warning: " and the printf-formatted message (cut at 1 kB)
 * to sys.stderr; a pending Python error is kept as it was. */
void cellar_warn(const char *fmt, ...);
/* Shows `exc` (borrowed) as IPython shows a cell's error: shell.showtraceback
 * with tb_offset 0 (a node's traceback starts at its own frame, since cellar
 * called it from C; %xmode and colours apply; a RunError renders as its one
 * line), or traceback.print_exception on stderr without a shell.  Never
 * raises. */
void cellar_show_exception(cellar_state *st, PyObject *exc);

/* module.c */
int cellar_open_store(cellar_state *st, PyObject *dir); /* -1 with StoreError set */
PyObject *cellar_store_summary(cellar_state *st);       /* "cellar: store PATH (...)" */

/* registry.c */
cellar_fn *cellar_fn_of(PyObject *capsule);
/* The name Python binds for identifier `utf8` from the scanner: NFKC
 * normalized (PEP 3131) when not ASCII.  New reference, NULL with an error. */
PyObject *cellar_registry_name(const char *utf8);
/* `name` as Python would bind it (NFKC when not ASCII), for names typed into
 * the magic: new reference, NULL with an error. */
PyObject *cellar_registry_normalize(PyObject *name);
/* `dict` (new reference) or a copy whose str keys are normalized so. */
PyObject *cellar_registry_normalize_keys(PyObject *dict);
/* Registers each function of `scan` that `ns` binds to a new object (one that
 * is not `previous[name]`; previous may be NULL).  With drop_missing and a
 * str cell_id, also drops the entries of that cell that the scan no longer
 * defines.  0, or -1 with a Python error. */
int cellar_registry_add_scan(cellar_state *st, const cellar_scan *scan, PyObject *cell_id,
                             PyObject *previous, PyObject *ns, bool drop_missing);
/* Drops registry entries whose name no longer refers to their object. */
int cellar_prune_functions(cellar_state *st, PyObject *ns);

/* hooks.c */
PyObject *cellar_pre_run_cell(PyObject *module, PyObject *info);
PyObject *cellar_post_run_cell(PyObject *module, PyObject *result);
/* Registers the functions that `src`, already executed, bound in the user
 * namespace (used for the cell that ran %load_ext). */
int cellar_register_source(cellar_state *st, const char *src, Py_ssize_t len,
                           PyObject *cell_id);
/* Registers what the cells now running (between their pre_run_cell and
 * post_run_cell) have bound so far, so that a run started from inside a cell
 * sees the definitions made above it.  0, or -1 with a Python error. */
int cellar_hooks_register_pending(cellar_state *st);
/* Called when the extension loads: the cell running `%load_ext` (if any) has
 * what it bound so far registered and, unless silent, joins the pending
 * table as if its pre_run_cell had run.  True when it did (its post_run_cell
 * then needs no fallback); a failure is a warning, never an error. */
bool cellar_hooks_adopt_loading_cell(cellar_state *st);

/* values.c */
/* A value serialized with pickle protocol 5: the stream, its out-of-band
 * buffers and, when the value holds notebook code, a last segment with that
 * code's versions; held (with the buffer views) until released, as store
 * segments.  dv is the fingerprint of exactly these segments. */
typedef struct cellar_pickled {
    PyObject *stream;  /* bytes */
    PyObject *buffers; /* list of PickleBuffer */
    PyObject *code;    /* bytes of 16-byte code versions, or NULL */
    Py_buffer *views;
    size_t nviews;
    cellar_segment *segs;
    size_t nsegs;
    uint64_t size; /* total bytes */
    cellar_hash dv;
    cellar_stage *stage; /* large segments already written (cellar_pickle_to_store) */
    /* Set on return 0 and 1 alike: false when dv is a unique version. */
    bool stable;
    /* cellar_pickle_to_store: the small buffers' bytes, copied when the node
     * returned (a list of bytes, or NULL), and whether every segment is
     * immutable now (copied, staged, or bytes of its own). */
    PyObject *copies;
    bool owned;
    /* It holds a pathlib.Path, versioned by the content it names now
     * (file_inputs.c): true of the file as it is, so never stored. */
    bool has_paths;
} cellar_pickled;
/* Creates the picklers; -1 with a Python error. */
int cellar_values_init(PyObject *module, cellar_state *st);

/* canonical_sets.c: whether a protocol-5 stream of `n` bytes holds a
 * non-empty set (or may: an opcode it does not know counts as yes); and the
 * reduction `(type, (sorted list,))` of a set or frozenset, elements sorted
 * by fingerprint (new reference, or NULL with an error: TypeError for an
 * element that cannot be pickled).  `memo` is the run's version memo. */
bool cellar_stream_has_sets(const unsigned char *p, size_t n);
PyObject *cellar_canonical_set(cellar_state *st, PyObject *obj, PyObject *memo);

/* file_inputs.c: pathlib.Path values, versioned by what they name.  Looks up
 * pathlib.Path; -1 with a Python error. */
int cellar_file_inputs_init(cellar_state *st);
/* True when `t` is pathlib.Path or a subclass. */
bool cellar_is_path(cellar_state *st, PyTypeObject *t);
/* The version of the content `path` names now (file_version.h, through the
 * state's store), tagged apart from code versions: 0 with *out set, or -1
 * with a Python error (OSError naming the path and why it cannot be read). */
int cellar_path_data_version(cellar_state *st, PyObject *path, cellar_hash *out);
/* Pickles and fingerprints `value`.  `memo` is the run's memo for code
 * versions (NULL: a fresh one).  0: done, *out holds references and views
 * until cellar_pickled_release.  1: the value cannot be pickled, so it must
 * not be stored (no Python error; *why gets a new str saying why, *out holds
 * no references); out->dv is still its data version: when only notebook
 * code that pickle cannot name stopped it (a function whose cell was re-run,
 * a lambda), the version it would have if the name reached that code, with
 * out->stable set; otherwise a unique version.  -1: hard error, Python error
 * set. */
int cellar_pickle(cellar_state *st, PyObject *value, PyObject *memo, cellar_pickled *out,
                  PyObject **why);
/* cellar_pickle for a result the run will store: the store's large segments
 * are written while they are hashed (cellar_store_stage), so the commit costs
 * no second pass; held in out->stage until released.  Same returns. */
int cellar_pickle_to_store(cellar_state *st, PyObject *value, PyObject *memo,
                           cellar_pickled *out, PyObject **why);
/* Safe on a zeroed or already released struct. */
void cellar_pickled_release(cellar_pickled *p);
/* Whether the segments, buffers read where they live, still hash to p->dv:
 * false once something wrote into a buffer after pickling. */
bool cellar_pickled_unchanged(cellar_state *st, const cellar_pickled *p);
/* Data version of any value, as cellar_pickle gives it (also for a value
 * that cannot be stored); *stable = false when that is a unique version.
 * -1 only on hard errors. */
int cellar_data_version(cellar_state *st, PyObject *value, PyObject *memo,
                        cellar_hash *out, bool *stable);
cellar_hash cellar_unique_version(cellar_state *st);
/* True for values nothing can change in place (numbers, str, bytes, None,
 * tuples of those): reuse needs no check.  Call with depth 0. */
bool cellar_value_is_immutable(PyObject *v, int depth);
/* True for iterators and generators: one consumer exhausts them. */
bool cellar_value_is_iterator(PyObject *v);
/* 1 when `value` still has data version `dv`, 0 when it changed (or can no
 * longer be pickled), -1 with a Python error. */
int cellar_value_unchanged(cellar_state *st, PyObject *value, const cellar_hash *dv,
                           PyObject *memo);

/* code_version.c */
/* Full code version of a registered node: the scanner's hash of its source
 * and the version of the object it is bound to (cellar_object_code_version).
 * `memo` is the run's memo dict (node names -> version bytes, and the walk's
 * entries); `ns` is unused (each function reads its own __globals__).  0, or
 * -1 with a Python error. */
int cellar_code_version(cellar_state *st, cellar_fn *fn, PyObject *ns, PyObject *memo,
                        cellar_hash *out);
/* The code version of `obj` when it is notebook code: a function (node, helper, lambda,
 * nested, exec-bound, or from one of the user's own modules), a bound method, or a class
 * (see code_version.c for what is covered).  Returns 1 and fills *out when obj is such
 * code, 0 when it is not (library code, builtins, C functions: pickle names those by
 * qualified name, which is stable), -1 with a Python error set.  `memo` is the run's memo
 * dict (NULL: a fresh one). */
int cellar_object_code_version(cellar_state *st, PyObject *obj, PyObject *memo,
                               cellar_hash *out);
/* Called while a code-version walk is in progress (from a data version that
 * the walk takes, such as a pickler's reducer_override), cellar_object_code_version
 * joins that walk and ignores `memo`; for a member of the component being built
 * it returns a placeholder version, which is right inside that component only.
 * This counter grows with each placeholder handed out (0 outside a walk): a data
 * version during which it grew must not be memoized beyond the walk. */
uint64_t cellar_code_walk_placeholders(cellar_state *st);

/* code_fingerprint.c */
/* Appends to a key, for fingerprints: a tag word, a str (as UTF-8; lone
 * surrogates kept), a hash.  0, or -1 (out of memory, or a Python error). */
int cellar_key_put_tag(cellar_key *k, const char *tag);
int cellar_key_put_pystr(cellar_key *k, PyObject *s);
int cellar_key_put_hash(cellar_key *k, const cellar_hash *h);
/* 1 when code whose __module__ is `modname` is the user's (`__main__`, no
 * importable module, or a module loaded from a file outside the standard
 * library and site-packages), 0 when it is library code, -1 on error. */
int cellar_module_is_users(cellar_state *st, PyObject *modname);
/* What kind of notebook code an object is. */
typedef enum cellar_code_kind_t {
    CELLAR_CODE_NONE,     /* not notebook code: data, library code, builtins */
    CELLAR_CODE_FUNCTION, /* a Python function of the user's */
    CELLAR_CODE_CLASS,    /* a heap class of the user's */
    CELLAR_CODE_METHOD,   /* a bound method of such a function */
    CELLAR_CODE_WRAPPED,  /* a callable whose __wrapped__ is such code (lru_cache) */
} cellar_code_kind_t;
/* The kind of `v` (a cellar_code_kind_t), or -1 with a Python error. */
int cellar_code_kind(cellar_state *st, PyObject *v);
/* The structural fingerprint of code object `code` (bytecode, constants,
 * names, argument layout, flags, exception table; never file names or line
 * numbers) and, when `names` is not NULL, the tuple of names it and its
 * nested code read (borrowed: take a reference before calling anything that
 * may run Python code).  Cached across runs.  0, or -1 with an error. */
int cellar_code_fingerprint(cellar_state *st, PyObject *code, cellar_hash *out,
                            PyObject **names);

/* results.c */
/* Loads a stored value; returns new ref, or NULL with *status = CELLAR_ENOTFOUND /
 * CELLAR_ECORRUPT (no Python error) or a Python error set (status CELLAR_OK). */
PyObject *cellar_load_value(cellar_state *st, cellar_reader *r, const cellar_hash *dv,
                            cellar_status *status, cellar_error *err);

/* report.c */
/* Creates cellar.Report, and gives st->RunError (created before) its
 * _render_traceback_, so that IPython shows a RunError without frames. */
int cellar_report_type_init(PyObject *module, cellar_state *st);
/* title: str; header: tuple of str; rows: list of tuples of str; note: str
 * shown after the table, or NULL. */
PyObject *cellar_report_new(cellar_state *st, PyObject *title, PyObject *header,
                            PyObject *rows, PyObject *note);

/* Shows a report: published as text/plain and text/html through the shell's
 * display publisher (IPython's generic formatters, which cost milliseconds a
 * call, have nothing to add), or printed when there is no shell. */
int cellar_report_show(cellar_state *st, PyObject *report);
/* The same, as the display `display_id` (a str, or NULL for a new display
 * without one), replacing that display's content when `update`.  Needs a
 * shell whose display publisher takes `transient` and `update` (ipykernel's)
 * when display_id is not NULL.  0, or -1 with a Python error. */
int cellar_report_publish(cellar_state *st, PyObject *report, PyObject *display_id,
                          bool update);
/* Publishes the mime bundle `data` (a dict) through the shell's display
 * publisher, with `display_id` and `update` as above.  0, or -1. */
int cellar_display_publish(cellar_state *st, PyObject *data, PyObject *display_id,
                           bool update);

/* run.c (with plan.c, execute.c, save.c: run_state.h) */
/* Runs `targets` (list of str) with `inputs` (dict); the nodes named in
 * `recompute` (a set of str, or NULL) are computed even when cached. */
PyObject *cellar_run(cellar_state *st, PyObject *targets, PyObject *inputs,
                     PyObject *recompute);
/* The same, with `behaviors` (a dict node name -> cellar_behavior as int, or
 * NULL) overriding the nodes' own behaviours for this run (behavior.c makes
 * it: cellar_behavior_add). */
PyObject *cellar_run_behaving(cellar_state *st, PyObject *targets, PyObject *inputs,
                              PyObject *behaviors);
PyObject *cellar_status_report(cellar_state *st, PyObject *inputs);
/* name -> (state, key bytes | None, why str | None), as %cellar status plans. */
PyObject *cellar_node_statuses(cellar_state *st, PyObject *inputs);
/* The same, planned with a run's behaviour options (as cellar_run_behaving's
 * `behaviors`, or NULL), as that run would key its nodes; with `only` (a list
 * of node names, or NULL for all), for those and their ancestors alone (a
 * cycle elsewhere is still a RunError). */
PyObject *cellar_node_statuses_behaving(cellar_state *st, PyObject *inputs,
                                        PyObject *behaviors, PyObject *only);

/* graph_view.c: %cellar graph, published as SVG, HTML and text. */
PyObject *cellar_graph_show(cellar_state *st, PyObject *targets, PyObject *inputs);

/* lineage.c: the inputs a run read, for its run record, and what the
 * store's records say, as `%cellar log` and `%cellar show` show it. */
/* Notes that a node of the run read input `name` with `value` and data
 * version `dv` (the first read of a name counts); `given` and `ns` are the
 * run's inputs and namespace, which say where the value came from.  `read` is
 * a dict the run owns.  0, or -1 with a Python error. */
int cellar_lineage_note_input(PyObject *read, PyObject *name, PyObject *value,
                              const cellar_hash *dv, PyObject *given, PyObject *ns);
/* The inputs noted in `read` (may be NULL: none), as run-record inputs whose
 * strings are borrowed from `read`; *n gets the count.  The array is the
 * caller's (PyMem_Free); NULL only when out of memory. */
cellar_run_input *cellar_lineage_inputs(PyObject *read, size_t *n);
/* `%cellar log [N]`: the N newest runs; `%cellar show NODE`.  Both publish
 * reports and return None (new reference), or NULL with a Python error. */
PyObject *cellar_log_show(cellar_state *st, Py_ssize_t n);
PyObject *cellar_node_show(cellar_state *st, PyObject *name);

/* results_view.c: cellar.results and cellar.NoResultError, added to the
 * module.  0, or -1 with a Python error. */
int cellar_results_init(PyObject *module, cellar_state *st);
/* The names in `names` (an iterable of str, may be NULL) as a set of
 * registered node names (NFKC as Python binds them); RunError for a name that
 * is not a node.  New reference (NULL for NULL), or NULL with an error. */
PyObject *cellar_results_node_set(cellar_state *st, PyObject *names, const char *what);
/* gc_magic.c: %cellar forget, gc and max-size. */
bool cellar_gc_magic_handles(PyObject *cmd);
PyObject *cellar_gc_magic(cellar_state *st, PyObject *args);
/* Reads CELLAR_MAX_SIZE the first time; the budget is the kernel's: the
 * store's own automatic gc stays off (gc runs in a `cellar gc` child). */
void cellar_gc_configure(cellar_state *st);
/* After a commit that stored `added` bytes of new results: starts `cellar
 * gc` in the background when the budget may be crossed (at most one at a
 * time), and reaps one that finished.  Never raises. */
void cellar_gc_after_commit(cellar_state *st, uint64_t added);
/* Reaps a background gc that finished, printing its one-line note or
 * warning; with `wait`, first waits for it (within its limit).  Never raises. */
void cellar_gc_reap(cellar_state *st, bool wait);

/* cli_child.c: the `cellar` command run in a child process (posix_spawn,
 * stdout and stderr through pipes, a time limit).  See cellar_cli_child. */
/* CLOCK_MONOTONIC in ms. */
int64_t cellar_cli_now_ms(void);
/* CELLAR_CLI_TIMEOUT (default 30 s) plus a margin, in ms; -1 for none. */
int cellar_cli_limit_ms(void);
/* Starts `cellar ARGS...` (`args` NULL-terminated, borrowed for the call)
 * into `*c`, which cellar_cli_free releases afterwards.  0, or -1 with `why`
 * set (no command, no pipe, spawn failed); `*c` needs no free then. */
int cellar_cli_start(cellar_cli_child *c, const char *const *args, int limit_ms,
                     char *why, size_t why_len);
/* Without blocking: 0 while it runs; 1 when it exited and printed a JSON
 * object (`*doc`, a new reference; its exit status was 0 or 1 and its stderr
 * is in c->err_buf); -1 with `why` when it failed, crashed, printed no JSON,
 * or passed its limit (then it is killed). */
int cellar_cli_poll(cellar_cli_child *c, json_t **doc, char *why, size_t why_len);
/* Waits for it (GIL released, signals checked every 100 ms): the document,
 * or NULL with `why`, or NULL with `*interrupted` and KeyboardInterrupt set
 * (the child is killed). */
json_t *cellar_cli_wait(cellar_cli_child *c, char *why, size_t why_len, bool *interrupted);
/* Kills a running child (its process group) and reaps it. */
void cellar_cli_kill(cellar_cli_child *c);
void cellar_cli_free(cellar_cli_child *c);
/* Start, wait, free: the document, or NULL as cellar_cli_wait. */
json_t *cellar_cli_run(const char *const *args, char *why, size_t why_len,
                       bool *interrupted);
/* restore.c: `%cellar restore [--session S]`; `args` is the magic's split
 * line, "restore" first.  None, or NULL with an error. */
PyObject *cellar_restore(cellar_state *st, PyObject *args);

/* auto.c: reactive mode. */
/* Notes a run started from the notebook (`%cellar run`, cellar.run) before
 * it starts: its targets (list of str), inputs (dict) and behaviour options
 * (dict name -> int, as cellar_run_behaving takes them; may be NULL) are what
 * a change reruns.  0, or -1 with a Python error. */
int cellar_auto_note_run(cellar_state *st, PyObject *targets, PyObject *inputs,
                         PyObject *behaviors);
/* At the end of each cell (post_run_cell, `result` being IPython's
 * ExecutionResult): with the mode on, reruns the last run's targets when a
 * key they depend on changed.  Never raises: errors are shown or warned. */
void cellar_auto_after_cell(cellar_state *st, PyObject *result);
/* `%cellar auto [on|off]`; `args` is the split line, "auto" first. */
PyObject *cellar_auto_magic(cellar_state *st, PyObject *args);
/* behavior.c */
/* "default", "recompute", "disable", "ignore". */
extern const char *const cellar_behavior_names[CELLAR_NBEHAVIORS];
/* The behaviour named `name` (str), or -1 with a RunError listing the names
 * (`what` says where the name came from). */
int cellar_behavior_parse(cellar_state *st, PyObject *name, const char *what);
/* The default behaviour, reading CELLAR_DEFAULT_BEHAVIOR on first use (a bad
 * name: a warning, and "default"). Never fails. */
int cellar_behavior_default(cellar_state *st);
/* What @cellar.node marked `func` with (its __cellar_behavior__ attribute),
 * or CELLAR_BEHAVIOR_UNSET.  Never fails: a bad mark is a warning. */
int cellar_behavior_of(cellar_state *st, PyObject *func);
/* Adds each node named in `names` (an iterable of str, or None: nothing) to
 * `behaviors` (a dict name -> int) with `behavior`; RunError for a name that
 * is not a node or that already has another behaviour.  0, or -1. */
int cellar_behavior_add(cellar_state *st, PyObject *behaviors, PyObject *names,
                        int behavior);
/* A run's options (`behaviors` as above, or NULL) as the magic takes them:
 * " --recompute a,b --ignore c", names sorted, "" for none.  New str, or
 * NULL with a Python error. */
PyObject *cellar_behavior_options_text(PyObject *behaviors);
/* cellar.node(func=None, *, behavior="default"). */
PyObject *cellar_behavior_node_py(PyObject *module, PyObject *args, PyObject *kwargs);
/* `%cellar default-behavior [NAME]`: shows or sets it.  None, or NULL. */
PyObject *cellar_behavior_magic(cellar_state *st, PyObject *args);

/* magic.c */
PyObject *cellar_magic(PyObject *module, PyObject *line);
extern const char cellar_magic_usage[];

#endif
