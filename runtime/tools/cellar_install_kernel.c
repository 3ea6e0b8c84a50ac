/*
 * cellar_install_kernel.c - `cellar install-kernel`: writes a kernelspec for
 * cellar-kernel somewhere other than the environment `pip install .` put it
 * in (the user's Jupyter data directory, an environment, any prefix), under
 * any name.  Unlike the packaged kernelspec, this one names absolute paths:
 * the cellar-kernel and python beside this `cellar` executable, which is
 * where pip installed all three.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"

static const char usage[] =
    "usage: cellar install-kernel [--user | --sys-prefix | --prefix P] [--name N]\n"
    "                             [--display-name D] [--interrupt-mode signal|message]\n"
    "\n"
    "Install a Jupyter kernelspec that runs ipykernel behind cellar-kernel.\n"
    "  --user          into the user's Jupyter data directory ($JUPYTER_DATA_DIR,\n"
    "                  else $XDG_DATA_HOME/jupyter, else ~/.local/share/jupyter)\n"
    "  --sys-prefix    into the environment cellar is installed in (the default)\n"
    "  --prefix P      into P/share/jupyter\n"
    "  --name N        the kernel's name (default: cellar)\n"
    "  --display-name D  its name in menus (default: Python 3 (cellar))\n";

/* mkdir -p; true when `path` is a directory afterwards. */
static bool make_dirs(char *path)
{
    for (char *s = path + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        int r = mkdir(path, 0755);
        *s = '/';
        if (r != 0 && errno != EEXIST)
            return false;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}

static bool valid_name(const char *n)
{
    if (!*n)
        return false;
    for (; *n; n++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                    *n))
            return false;
    return true;
}

int cellar_cmd_install_kernel(int argc, char **argv)
{
    const char *where = "sys-prefix", *prefix = NULL, *name = "cellar";
    const char *display = "Python 3 (cellar)", *interrupt = "signal";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--user") || !strcmp(a, "--sys-prefix")) {
            where = a + 2;
        } else if (!strcmp(a, "--prefix") && has_value) {
            where = "prefix";
            prefix = argv[++i];
        } else if (!strcmp(a, "--name") && has_value) {
            name = argv[++i];
        } else if (!strcmp(a, "--display-name") && has_value) {
            display = argv[++i];
        } else if (!strcmp(a, "--interrupt-mode") && has_value) {
            interrupt = argv[++i];
        } else {
            fprintf(stderr, "cellar install-kernel: bad argument '%s'\n\n%s", a, usage);
            return 2;
        }
    }
    if (!valid_name(name) ||
        (strcmp(interrupt, "signal") != 0 && strcmp(interrupt, "message") != 0)) {
        fprintf(stderr, "cellar install-kernel: the name may hold only letters, digits, "
                        "'.', '_' and '-'; the interrupt mode is signal or message\n");
        return 2;
    }
    char bin[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", bin, sizeof bin - 1);
    char *slash = n > 0 ? (bin[n] = '\0', strrchr(bin, '/')) : NULL;
    if (!slash) {
        fprintf(stderr, "cellar install-kernel: cannot find where cellar is installed\n");
        return 1;
    }
    *slash = '\0';
    char dir[3 * PATH_MAX];
    const char *env = getenv("JUPYTER_DATA_DIR"), *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (!strcmp(where, "prefix"))
        snprintf(dir, sizeof dir, "%s/share/jupyter/kernels/%s", prefix, name);
    else if (!strcmp(where, "sys-prefix"))
        snprintf(dir, sizeof dir, "%s/../share/jupyter/kernels/%s", bin, name);
    else if (env && *env)
        snprintf(dir, sizeof dir, "%s/kernels/%s", env, name);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/jupyter/kernels/%s", xdg, name);
    else
        snprintf(dir, sizeof dir, "%s/.local/share/jupyter/kernels/%s", home ? home : "",
                 name);
    char kernel[PATH_MAX + 16], python[PATH_MAX + 16], file[3 * PATH_MAX + 16];
    snprintf(kernel, sizeof kernel, "%s/cellar-kernel", bin);
    snprintf(python, sizeof python, "%s/python", bin);
    if (access(python, X_OK) != 0)
        snprintf(python, sizeof python, "python3");
    snprintf(file, sizeof file, "%s/kernel.json", dir);
    json_t *spec =
        json_pack("{s:[s,s,s,s,s,s,s], s:s, s:s, s:s, s:{s:b}}", "argv", kernel, "-f",
                  "{connection_file}", "--", python, "-m", "ipykernel_launcher",
                  "display_name", display, "language", "python", "interrupt_mode",
                  interrupt, "metadata", "debugger", 1);
    bool ok = spec && make_dirs(dir) && json_dump_file(spec, file, JSON_INDENT(1)) == 0;
    json_decref(spec);
    if (!ok) {
        fprintf(stderr, "cellar install-kernel: cannot write %s: %s\n", file,
                strerror(errno));
        return 1;
    }
    char real[PATH_MAX];
    printf("installed kernelspec %s in %s\n", name, realpath(dir, real) ? real : dir);
    return 0;
}
