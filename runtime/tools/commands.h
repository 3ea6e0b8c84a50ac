/*
 * commands.h - the `cellar` command's subcommands.  Each takes the arguments
 * after its own name (argv[0] is the subcommand), prints data to stdout and
 * problems to stderr, and returns the process exit status.  A non-zero status
 * always comes with a line on stderr that gives the whole reason (a
 * cellar_error's message, which error.h keeps whole up to 4 KiB).  Whether
 * stdout was really written is checked once for all of them, in cellar.c:
 * a failed write turns the status into the command's failure status.
 */
#ifndef CELLAR_TOOLS_COMMANDS_H
#define CELLAR_TOOLS_COMMANDS_H

/* cellar scan FILE|-: 0 clean, 1 source has errors (JSON still printed), 2 usage,
 * an input that cannot be read or is over the 16 MiB limit, or output that
 * cannot be written. */
int cellar_cmd_scan(int argc, char **argv);

/* Store commands; each accepts --dir PATH (default: $CELLAR_DIR, else ./.cellar),
 * --json where it prints data, and --help.  0 ok, 1 failure (including a
 * record that cannot be read, after showing the rest, and a store so damaged
 * that reading it crashed LMDB: the walk runs in a child, see store_cli.h),
 * 2 usage. */
int cellar_cmd_ls(int argc, char **argv);
int cellar_cmd_show(int argc, char **argv);
int cellar_cmd_log(int argc, char **argv);
int cellar_cmd_stats(int argc, char **argv);
/* cellar verify [--repair]: 0 clean (after --repair: clean now, whatever was
 * repaired), 1 problems found (after --repair: some remain), 2 the check could
 * not run (usage, no store, repairing a read-only store, an I/O error, output
 * that cannot be written). */
int cellar_cmd_verify(int argc, char **argv);

/* cellar forget NODE..., cellar gc [--max-size SIZE] [--keep N] [--dry-run],
 * cellar compact (cellar_gc.c): 0 done, 1 failure (for compact also: another
 * process has the store open), 2 usage. */
int cellar_cmd_forget(int argc, char **argv);
int cellar_cmd_gc(int argc, char **argv);
int cellar_cmd_compact(int argc, char **argv);
/* cellar journal [--session S]: the cells the cellar kernel ran.  0 ok, 1 the
 * store or a journal record cannot be read, 2 usage. */
int cellar_cmd_journal(int argc, char **argv);

/* cellar install-kernel [--user | --sys-prefix | --prefix P] [--name N]
 * [--display-name D] [--interrupt-mode M]: writes a kernelspec for
 * cellar-kernel.  0 ok, 1 it cannot be written, 2 usage. */
int cellar_cmd_install_kernel(int argc, char **argv);

#endif
