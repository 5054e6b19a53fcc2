/* zauth: CURVE keys and the ZAP handler every Helium process uses to
 * authenticate its ZeroMQ sockets (docs/security.md).
 *
 * Keys are Z85 text (40 characters for 32 bytes). `heliumctl keygen NAME`
 * (zauth_keygen) writes NAME.key, the secret key (mode 0600), and NAME.pub,
 * "PUBLIC NAME" on one line, so that `cat NAME.pub >> authorized_keys` adds
 * it. An authorized-keys file holds one public key a line followed by a
 * comment naming it; '#' lines and blank lines are skipped.
 *
 * The handler (zauth_t) is a thread of its own with the ZAP REP socket bound
 * at inproc://zeromq.zap.01 in the caller's ZeroMQ context. zauth_new
 * returns only once that socket is bound, so a CURVE server socket created
 * afterwards is always checked: libzmq lets every client in when no handler
 * is bound, and Debian's libzmq has no ZMQ_ZAP_ENFORCE_DOMAIN to refuse
 * instead. Invariants: the handler answers 200 only to the CURVE mechanism
 * with a client key in the current set; every refusal is counted, whether it
 * is the handler's (unknown key) or the handshake's (another mechanism such
 * as NULL, a client holding the wrong server key, a peer that does not speak
 * ZMTP), the latter through monitors of the sockets given to zauth_watch.
 * The key set can be replaced at any time (SIGHUP re-reads the file); a
 * failed reload keeps the previous set.
 */
#ifndef HELIUM_ZAUTH_H
#define HELIUM_ZAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZAUTH_KEY_LEN 40 /* Z85 characters of a CURVE key */

typedef struct zauth zauth_t;

/* A process's identity: its own key pair and (for a client) the server's
 * public key. Strings are NUL-terminated Z85; empty = not set. */
typedef struct {
    char pub[ZAUTH_KEY_LEN + 1];
    char sec[ZAUTH_KEY_LEN + 1];
    char server[ZAUTH_KEY_LEN + 1];
} zauth_keys;

/* Refusal counters (monotonic, since zauth_new). */
typedef struct {
    uint64_t allowed;       /* ZAP said yes */
    uint64_t unknown_key;   /* ZAP said no: a CURVE client key not in the set */
    uint64_t mechanism;     /* the client spoke another mechanism (NULL, PLAIN) */
    uint64_t crypto;        /* a CURVE handshake that did not decrypt: the client holds
                               the wrong server key, or sent garbage boxes */
    uint64_t protocol;      /* any other failed handshake (not ZMTP, cut short) */
} zauth_counts;

/* Total refusals of c. */
uint64_t zauth_refused(const zauth_counts *c);

/* True if s is a 40-character Z85 key that decodes. */
bool zauth_key_ok(const char *s);

/* Writes NAME.key (secret, mode 0600) and NAME.pub; refuses to overwrite
 * either. The comment in NAME.pub is NAME's last path component. Returns 0
 * or a herr code with he_msg() set. */
int zauth_keygen(const char *name);

/* Reads a secret key file into k->sec and derives k->pub. Warns (through
 * stderr) if the file is readable by group or others. 0 or a herr code. */
int zauth_read_secret(const char *path, zauth_keys *k);
/* Reads the first key of a public key file (NAME.pub) into out. */
int zauth_read_public(const char *path, char out[ZAUTH_KEY_LEN + 1]);

/* Makes sock a CURVE server with k's secret key (before its bind). */
int zauth_set_server(void *sock, const zauth_keys *k);
/* Makes sock a CURVE client of the server whose public key is server_pub
 * (NULL = k->server), presenting k's key pair (before its connect). */
int zauth_set_client(void *sock, const zauth_keys *k, const char *server_pub);

/* Starts the handler in zctx and binds its ZAP socket; label names it in
 * logs. Accepts no key until zauth_load or zauth_allow. NULL on failure
 * (he_msg() set), for instance when another handler is bound already. */
zauth_t *zauth_new(void *zctx, const char *label);
/* Stops the thread and closes its sockets; call it before zmq_ctx_term and
 * after closing the sockets it watches. Accepts NULL. */
void zauth_destroy(zauth_t **self_p);

/* Replaces the key set with the file's keys. On a bad line (line number in
 * he_msg()) or an unreadable file the set is kept. Returns the number of
 * keys or a negative herr code. Any thread. */
int zauth_load(zauth_t *za, const char *path);
/* The key set's size. */
size_t zauth_n_keys(zauth_t *za);

/* Counts the failed handshakes of sock (a CURVE server socket of the same
 * context), through a monitor read by the handler thread. Call from the
 * socket's thread, before its bind. 0 or a herr code. */
int zauth_watch(zauth_t *za, void *sock);

/* The counters so far. Any thread. */
zauth_counts zauth_stats(zauth_t *za);

#endif
