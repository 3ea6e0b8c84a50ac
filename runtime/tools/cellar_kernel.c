/*
 * cellar_kernel.c - the `cellar-kernel` executable: a Jupyter kernel that is
 * a proxy in front of another one (see proxy.h).  It parses
 * `-f CONNECTION_FILE -- CMD...` and runs the relay.  CMD's first word
 * "python" stands for the interpreter beside this executable (bin/python of
 * the environment cellar was installed into), so that the kernelspec that
 * `pip install .` puts in a wheel, which cannot know the final path, still
 * starts that environment's ipykernel; when there is none, "python" is
 * looked up on PATH.  CELLAR_KERNEL_MAX_MESSAGE, in bytes, lowers or raises
 * the 1 GiB limit on one message (proxy.h); CELLAR_KERNEL_TRACE names a file
 * that gets a line of timings per relayed message (off by default).
 *
 * Each run is one kernel session with a random id, which the child finds in
 * CELLAR_KERNEL_SESSION.  Its cells go into the journal of the store in
 * $CELLAR_DIR, else ./.cellar (the extension's default), through a journal
 * writer (journal_writer.h) whose hooks also give the proxy the cells to
 * replay after a crash.  When CMD runs ipykernel (`-m ipykernel_launcher` or
 * `-m ipykernel`), the extension is loaded into it at start
 * (--IPKernelApp.extra_extensions=cellar), silently since the session variable
 * is set; --no-extension leaves it out.
 *
 * The relay's threads run on one CPU (pin_relay), its kernel on all.
 */
#define _GNU_SOURCE /* sched_getaffinity, sched_getcpu */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

#include "cellar/child.h"
#include "cellar/fingerprint.h"
#include "cellar/journal_writer.h"
#include "cellar/proxy.h"

static const char usage[] =
    "usage: cellar-kernel -f CONNECTION_FILE -- CMD [ARGS...]\n"
    "\n"
    "A Jupyter kernel that relays every channel to the kernel CMD starts (for\n"
    "example: python -m ipykernel_launcher), which it runs on private endpoints\n"
    "and restarts when it dies.  CMD gets -f CHILD_CONNECTION_FILE appended.\n"
    "A first word 'python' means the python beside cellar-kernel, if any.\n"
    "\n"
    "A message over CELLAR_KERNEL_MAX_MESSAGE bytes (default 1 GiB) is dropped.\n"
    "CELLAR_KERNEL_TRACE=FILE writes a line of timings per relayed message.\n"
    "\n"
    "Cells are recorded in the journal of the store in $CELLAR_DIR (default\n"
    "./.cellar); see 'cellar journal'.  When the kernel dies on its own, a new one\n"
    "is started and this session's definition cells are replayed into it.  An\n"
    "ipykernel CMD gets the cellar extension loaded at start, unless\n"
    "--no-extension is given.\n";

/* Writes into out[PATH_MAX] the python beside this program; false if none. */
static bool python_beside(const char *argv0, char out[PATH_MAX])
{
    char self[PATH_MAX];
    if (strchr(argv0, '/')) {
        snprintf(self, sizeof self, "%s", argv0);
    } else {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return false;
        self[n] = '\0';
    }
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = '\0';
    int w = snprintf(out, PATH_MAX, "%s/python", self);
    return w > 0 && w < PATH_MAX && access(out, X_OK) == 0;
}

/* True when `cmd` runs ipykernel: "-m ipykernel_launcher" or "-m ipykernel". */
static bool runs_ipykernel(char **cmd)
{
    for (size_t i = 0; cmd[i] && cmd[i + 1]; i++)
        if (!strcmp(cmd[i], "-m") && (!strcmp(cmd[i + 1], "ipykernel_launcher") ||
                                      !strcmp(cmd[i + 1], "ipykernel")))
            return true;
    return false;
}

/*
 * Pins this thread, and so the threads started after it (libzmq's I/O
 * thread), to one CPU, after recording the full set for the kernel
 * (cellar_child_remember_cpus).  The journal writer, started before, keeps
 * every CPU: its transactions would otherwise hold up the relay.  A message crosses between the
 * relay thread and libzmq's I/O thread twice on its way through; between two
 * CPUs each crossing is a cross-CPU wakeup (an IPI, on a virtual machine an
 * exit to the hypervisor), on one CPU a plain switch, and the relay never
 * needs two CPUs at once (BENCHMARKS.md, cellar-kernel).  CELLAR_KERNEL_CPU
 * chooses: unset, empty or "auto", the CPU this process runs on now; a
 * number, that CPU; "off", no pinning.  Nothing is pinned when only one CPU
 * is allowed; a CPU that is not allowed is a warning and no pinning.
 */
static void pin_relay(void)
{
    const char *v = getenv("CELLAR_KERNEL_CPU");
    if (v && !strcmp(v, "off"))
        return;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return;
    int cpu = sched_getcpu();
    if (v && *v && strcmp(v, "auto")) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 0 || n >= CPU_SETSIZE || !CPU_ISSET((int)n, &allowed)) {
            fprintf(stderr,
                    "cellar-kernel: CELLAR_KERNEL_CPU='%s' is not a CPU this process may "
                    "run on (a number, \"auto\" or \"off\"); the relay is not pinned\n",
                    v);
            return;
        }
        cpu = (int)n;
    }
    if (cpu < 0 || !CPU_ISSET(cpu, &allowed) || !cellar_child_remember_cpus())
        return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    (void)sched_setaffinity(0, sizeof one, &one);
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    bool extension = true;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            puts("cellar-kernel 0.1.0");
            return 0;
        }
        if (!strcmp(argv[i], "--no-extension")) {
            extension = false;
        } else if (!strcmp(argv[i], "-f") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strncmp(argv[i], "--f=", 4) || !strncmp(argv[i], "-f=", 3)) {
            file = strchr(argv[i], '=') + 1;
        } else {
            fprintf(stderr, "cellar-kernel: unknown argument '%s'\n\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!file || i >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    char python[PATH_MAX];
    int ncmd = argc - i;
    /* The command, plus the extension's option, plus the NULL. */
    char **cmd = calloc((size_t)ncmd + 2, sizeof *cmd);
    if (!cmd) {
        fputs("cellar-kernel: out of memory\n", stderr);
        return 1;
    }
    memcpy(cmd, argv + i, (size_t)ncmd * sizeof *cmd);
    if (!strcmp(cmd[0], "python") && python_beside(argv[0], python))
        cmd[0] = python;
    if (extension && runs_ipykernel(cmd))
        cmd[ncmd] = (char *)"--IPKernelApp.extra_extensions=cellar";

    /* The session: random, from the same source as message ids. */
    uint64_t counter = 0;
    cellar_hash h = cellar_hash_unique(&counter);
    char session[CELLAR_HASH_HEX_LEN + 1];
    cellar_hash_to_hex(&h, session);
    setenv("CELLAR_KERNEL_SESSION", session, 1);
    const char *dir = getenv("CELLAR_DIR");
    cellar_error err;
    cellar_error_clear(&err);
    cellar_journal_writer *journal =
        cellar_journal_writer_new(dir && *dir ? dir : "./.cellar", session, 0, &err);
    if (!journal)
        fprintf(stderr, "cellar-kernel: the journal is off: %s\n", err.message);

    pin_relay(); /* after the journal's thread: it keeps every CPU */
    const char *trace = getenv("CELLAR_KERNEL_TRACE");
    cellar_proxy_config cfg = {.connection_file = file,
                               .child_argv = cmd,
                               .trace_file = trace && *trace ? trace : NULL};
    if (journal)
        cfg.hooks = cellar_journal_writer_hooks(journal);
    const char *limit = getenv("CELLAR_KERNEL_MAX_MESSAGE");
    if (limit && *limit) {
        char *end;
        unsigned long long v = strtoull(limit, &end, 10);
        if (*end || v == 0) {
            fprintf(stderr,
                    "cellar-kernel: CELLAR_KERNEL_MAX_MESSAGE='%s' is not a "
                    "positive number of bytes\n",
                    limit);
            cellar_journal_writer_free(journal);
            free(cmd);
            return 2;
        }
        cfg.max_message = (size_t)v;
    }
    cellar_error_clear(&err);
    int status = cellar_proxy_run(&cfg, &err);
    if (status != 0 && err.code != CELLAR_OK)
        fprintf(stderr, "cellar-kernel: %s\n", err.message);
    cellar_journal_writer_free(journal);
    free(cmd);
    return status;
}
