/*
 * cellar_kernel.c - the `cellar-kernel` executable: a Jupyter kernel that is
 * a proxy in front of another one (see proxy.h).  It parses
 * `-f CONNECTION_FILE -- CMD...` and runs the relay.  CMD's first word
 * "python" stands for the interpreter beside this executable (bin/python of
 * the environment cellar was installed into), so that the kernelspec that
 * `pip install .` puts in a wheel, which cannot know the final path, still
 * starts that environment's ipykernel; when there is none, "python" is
 * looked up on PATH.  CELLAR_KERNEL_MAX_MESSAGE, in bytes, lowers or raises
 * the 1 GiB limit on one message (proxy.h).
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cellar/proxy.h"

static const char usage[] =
    "usage: cellar-kernel -f CONNECTION_FILE -- CMD [ARGS...]\n"
    "\n"
    "A Jupyter kernel that relays every channel to the kernel CMD starts (for\n"
    "example: python -m ipykernel_launcher), which it runs on private endpoints\n"
    "and restarts when it dies.  CMD gets -f CHILD_CONNECTION_FILE appended.\n"
    "A first word 'python' means the python beside cellar-kernel, if any.\n"
    "\n"
    "A message over CELLAR_KERNEL_MAX_MESSAGE bytes (default 1 GiB) is dropped.\n";

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

int main(int argc, char **argv)
{
    const char *file = NULL;
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
        if (!strcmp(argv[i], "-f") && i + 1 < argc) {
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
    char **cmd = argv + i;
    char python[PATH_MAX];
    if (!strcmp(cmd[0], "python") && python_beside(argv[0], python))
        cmd[0] = python;
    cellar_proxy_config cfg = {.connection_file = file, .child_argv = cmd};
    const char *limit = getenv("CELLAR_KERNEL_MAX_MESSAGE");
    if (limit && *limit) {
        char *end;
        unsigned long long v = strtoull(limit, &end, 10);
        if (*end || v == 0) {
            fprintf(stderr,
                    "cellar-kernel: CELLAR_KERNEL_MAX_MESSAGE='%s' is not a "
                    "positive number of bytes\n",
                    limit);
            return 2;
        }
        cfg.max_message = (size_t)v;
    }
    cellar_error err;
    cellar_error_clear(&err);
    int status = cellar_proxy_run(&cfg, &err);
    if (status != 0 && err.code != CELLAR_OK)
        fprintf(stderr, "cellar-kernel: %s\n", err.message);
    return status;
}
