/*
 * file_version.h - versions of files and directories by their content, read
 * once: the fingerprint of a file is kept in the store with the file's
 * identity and reused while that identity holds.
 *
 * A node parameter whose value is a `pathlib.Path` is versioned by what the
 * path names, not by the path string.  Reading a 10 GB input at every run
 * would cost more than most nodes, so each regular file's content fingerprint
 * is kept in the store's `files` database with the file's device, inode,
 * size, modification and change times, and reused, across processes and
 * restarts, while all five match.  A record is trusted only when the file had
 * not been changed for CELLAR_FILE_SETTLE_NS before it was read: a write in
 * the same timestamp tick as the read could otherwise keep all five equal
 * with different bytes (git's "racy" entries), so such a file is read again
 * at its next use, until it has settled.
 *
 * What a version covers:
 *   - a regular file: its size and bytes;
 *   - a directory: the sorted names of its entries, each with its kind and
 *     version, recursively (hidden files included); symbolic links are
 *     followed, and a directory that contains itself is an error;
 *   - a missing path: "nothing there", so creating the file changes it.
 * Anything else (a FIFO, a socket, a device, an unreadable file) is an error:
 * such a path is never read, because reading a FIFO could block forever.
 *
 * Threads: any thread may call cellar_path_version, on the same store too
 * (it takes its own reader and batch).  It reads files with no lock held.
 */
#ifndef CELLAR_FILE_VERSION_H
#define CELLAR_FILE_VERSION_H

#include <stdint.h>

#include "cellar/error.h"
#include "cellar/fingerprint.h"
#include "cellar/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How long a file must have been left unchanged, before it was read, for its
 * kept fingerprint to be trusted: 2 s covers every Linux filesystem's
 * timestamp granularity (FAT's included). */
#define CELLAR_FILE_SETTLE_NS ((int64_t)2000000000)

/* What one call did, for reports, tests and benchmarks. */
typedef struct cellar_path_info {
    uint64_t files;      /* regular files seen */
    uint64_t read;       /* of those, how many were read (not found kept) */
    uint64_t bytes_read; /* bytes read from them */
} cellar_path_info;

/*
 * The version of what `path` names now, into `*out`.  `store` may be NULL
 * (nothing is kept or reused) or read-only (kept fingerprints are reused,
 * new ones are not kept); failing to keep a fingerprint is not an error.
 * `info` may be NULL.
 *
 * Returns CELLAR_OK; EINVAL (a NULL argument, a path naming something that is
 * neither a regular file nor a directory, a directory inside itself, more
 * than 1,000,000 entries); EIO (a file or directory that cannot be read: the
 * message names it and says why); ENOMEM.
 */
cellar_status cellar_path_version(cellar_store *store, const char *path, cellar_hash *out,
                                  cellar_path_info *info, cellar_error *err);

#ifdef __cplusplus
}
#endif

#endif
