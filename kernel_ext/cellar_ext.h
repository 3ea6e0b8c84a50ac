/*
 * cellar_ext.h - what the extension module's files share: the module state
 * and the internal functions of each part.
 *
 * The module is split by concept: module.c (initialization, state, the
 * IPython entry points), cells.c (cell hooks and the registry of
 * notebook-defined functions), versions.c (code versions and data versions),
 * results.c (moving Python values in and out of the store), run.c (planning
 * and executing a run), report.c (the run report shown in the notebook) and
 * magic.c (the `%cellar` line).  All state lives in cellar_state, reached from
 * the module object; every entry point holds the GIL, which serializes access.
 */
#ifndef CELLAR_EXT_H
#define CELLAR_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stdint.h>

#include "cellar/fingerprint.h"
#include "cellar/key.h"
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
} cellar_fn;

typedef struct cellar_state {
    PyObject *module;         /* borrowed back-pointer, valid while the module lives */
    PyObject *RunError;       /* cellar.RunError */
    PyObject *StoreError;     /* cellar.StoreError */
    PyTypeObject *ReportType; /* cellar.Report */

    /* Python helpers looked up once. */
    PyObject *pickle_dumps, *pickle_loads, *marshal_dumps;
    PyObject *literal_eval, *shlex_split, *print_exception;
    PyObject *str_protocol, *str_buffer_callback, *str_buffers;
    PyObject *int_five;

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

    cellar_store *store;
    cellar_key *keyenc;
    cellar_fingerprint *fp;
    uint64_t unique_counter;
    bool running;
} cellar_state;

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

/* module.c */
PyObject *
cellar_user_ns(cellar_state *st); /* borrowed; the shell's user_ns or __main__'s dict */
void cellar_warn(const char *fmt, ...); /* "cellar: warning: ..." to sys.stderr */
int cellar_open_store(cellar_state *st, PyObject *dir); /* -1 with StoreError set */
PyObject *cellar_store_summary(cellar_state *st);       /* "cellar: store PATH (...)" */

/* cells.c */
PyObject *cellar_pre_run_cell(PyObject *module, PyObject *info);
PyObject *cellar_post_run_cell(PyObject *module, PyObject *result);
/* Registers the functions that `src`, already executed, bound in the user
 * namespace (used for the cell that ran %load_ext). */
int cellar_register_source(cellar_state *st, const char *src, Py_ssize_t len,
                           PyObject *cell_id);
cellar_fn *cellar_fn_of(PyObject *capsule);
/* Drops registry entries whose name no longer refers to their object. */
int cellar_prune_functions(cellar_state *st, PyObject *ns);

/* versions.c */
/* A value serialized with pickle protocol 5: the stream and its out-of-band
 * buffers, held (with their buffer views) until released, as store segments. */
typedef struct cellar_pickled {
    PyObject *stream;  /* bytes */
    PyObject *buffers; /* list of PickleBuffer */
    Py_buffer *views;
    cellar_segment *segs;
    size_t nsegs;
    uint64_t size; /* total bytes */
    cellar_hash dv;
} cellar_pickled;
/* 0: pickled and fingerprinted.  1: the value cannot be pickled (no Python
 * error; *why gets a new str saying why).  -1: hard error, Python error set. */
int cellar_pickle(cellar_state *st, PyObject *value, cellar_pickled *out, PyObject **why);
void cellar_pickled_release(cellar_pickled *p);
/* Data version of any value; an unpicklable value gets a unique version and
 * *picklable = false.  -1 only on hard errors. */
int cellar_data_version(cellar_state *st, PyObject *value, cellar_hash *out,
                        bool *picklable);
cellar_hash cellar_unique_version(cellar_state *st);
/* Full code version of a registered function: its source plus what it reads
 * from the notebook.  `memo` maps names to versions within one run. */
int cellar_code_version(cellar_state *st, cellar_fn *fn, PyObject *ns, PyObject *memo,
                        cellar_hash *out);

/* results.c */
/* Loads a stored value; returns new ref, or NULL with *status = CELLAR_ENOTFOUND /
 * CELLAR_ECORRUPT (no Python error) or a Python error set (status CELLAR_OK). */
PyObject *cellar_load_value(cellar_state *st, cellar_reader *r, const cellar_hash *dv,
                            cellar_status *status, cellar_error *err);

/* report.c */
int cellar_report_type_init(PyObject *module, cellar_state *st);
/* title: str; header: tuple of str; rows: list of tuples of str; note: str
 * shown after the table, or NULL. */
PyObject *cellar_report_new(cellar_state *st, PyObject *title, PyObject *header,
                            PyObject *rows, PyObject *note);

/* Shows a report: published as text/plain and text/html through the shell's
 * display publisher (IPython's generic formatters, which cost milliseconds a
 * call, have nothing to add), or printed when there is no shell. */
int cellar_report_show(cellar_state *st, PyObject *report);

/* run.c */
PyObject *cellar_run(cellar_state *st, PyObject *targets, PyObject *inputs);
PyObject *cellar_status_report(cellar_state *st, PyObject *inputs);
/* name -> (state, key bytes | None, why str | None), as %cellar status plans. */
PyObject *cellar_node_statuses(cellar_state *st, PyObject *inputs);

/* graph_view.c: %cellar graph, published as SVG, HTML and text. */
PyObject *cellar_graph_show(cellar_state *st, PyObject *targets, PyObject *inputs);

/* magic.c */
PyObject *cellar_magic(PyObject *module, PyObject *line);
extern const char cellar_magic_usage[];

#endif
