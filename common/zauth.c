/* zauth: see zauth.h. Key files, socket options, and the ZAP handler thread.
 *
 * The thread polls three kinds of sockets: the ZAP REP socket (one request,
 * one reply, RFC 27), a control PAIR to the creating thread (commands "WATCH
 * <endpoint>" and "STOP", each answered "OK" or an error, so every command is
 * synchronous) and one PAIR per watched socket's monitor. The key set is an
 * array of decoded 32-byte keys with their names, guarded by mu; the counters
 * are atomics. Bound: a ZAP request costs one pass over the key set.
 */
#include "zauth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "herr.h"
#include "log.h"

#define ZAUTH_MAX_WATCH 8
#define ZAUTH_MAX_KEYS 65536

typedef struct {
    uint8_t key[32];
    char name[64];
} zauth_entry;

struct zauth {
    void *zctx;
    char label[32];
    char ctl_ep[64];
    void *ctl;             /* the creating thread's end of the control pipe */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    zauth_entry *keys;     /* guarded by mu */
    size_t n_keys;         /* guarded by mu */
    int n_watch;           /* monitors created so far (creating thread only) */
    atomic_ullong allowed, unknown_key, mechanism, crypto, protocol;
};

uint64_t zauth_refused(const zauth_counts *c) { return c->unknown_key + c->mechanism + c->crypto + c->protocol; }

bool zauth_key_ok(const char *s) {
    uint8_t raw[32];
    return s && strlen(s) == ZAUTH_KEY_LEN && zmq_z85_decode(raw, s) != NULL;
}

/* ------------------------------------------------------------- key files */

/* The first whitespace-separated word of the first line of path that is
 * neither blank nor a '#' comment, into out (ZAUTH_KEY_LEN + 1 bytes). */
static int read_first_key(const char *path, char *out, const char *what) {
    FILE *f = fopen(path, "r");
    if (!f) return he_set(HE_EIO, "cannot read %s key file %s: %s", what, path, strerror(errno));
    char line[512];
    int rc = he_set(HE_EFORMAT, "%s key file %s holds no key", what, path);
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t\r\n");
        if (!*p || *p == '#') continue;
        size_t n = strcspn(p, " \t\r\n");
        if (n != ZAUTH_KEY_LEN) {
            rc = he_set(HE_EFORMAT, "%s key file %s: a key is %d Z85 characters, not %zu", what, path, ZAUTH_KEY_LEN, n);
            break;
        }
        memcpy(out, p, n);
        out[n] = 0;
        rc = zauth_key_ok(out) ? 0 : he_set(HE_EFORMAT, "%s key file %s: not a Z85 key", what, path);
        break;
    }
    fclose(f);
    return rc;
}

int zauth_read_secret(const char *path, zauth_keys *k) {
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "warning: secret key file %s is readable by others (mode %04o); chmod 600 it\n", path,
                (unsigned)(st.st_mode & 07777));
    int rc = read_first_key(path, k->sec, "secret");
    if (rc) return rc;
    if (zmq_curve_public(k->pub, k->sec) != 0)
        return he_set(HE_EUNSUPPORTED, "cannot derive the public key of %s: %s (libzmq without CURVE?)", path,
                      zmq_strerror(zmq_errno()));
    return 0;
}

int zauth_read_public(const char *path, char out[ZAUTH_KEY_LEN + 1]) { return read_first_key(path, out, "public"); }

/* Creates path exclusively with mode and writes text. */
static int write_new(const char *path, mode_t mode, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return he_set(errno == EEXIST ? HE_EINVAL : HE_EIO, "cannot create %s: %s", path,
                      errno == EEXIST ? "it exists (remove it first)" : strerror(errno));
    size_t len = strlen(text);
    bool ok = fchmod(fd, mode) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int err = errno;
    if (close(fd) != 0) ok = false;
    if (!ok) {
        unlink(path);
        return he_set(HE_EIO, "cannot write %s: %s", path, strerror(err));
    }
    return 0;
}

int zauth_keygen(const char *name) {
    if (!name || !*name) return he_set(HE_EINVAL, "keygen needs a NAME");
    char pub[ZAUTH_KEY_LEN + 1], sec[ZAUTH_KEY_LEN + 1];
    if (zmq_curve_keypair(pub, sec) != 0)
        return he_set(HE_EUNSUPPORTED, "cannot make a CURVE key pair: %s (libzmq without CURVE?)",
                      zmq_strerror(zmq_errno()));
    size_t n = strlen(name);
    char *kpath = malloc(n + 5), *ppath = malloc(n + 5), text[ZAUTH_KEY_LEN + 160];
    if (!kpath || !ppath) {
        free(kpath);
        free(ppath);
        return he_set(HE_ENOMEM, "out of memory");
    }
    snprintf(kpath, n + 5, "%s.key", name);
    snprintf(ppath, n + 5, "%s.pub", name);
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    snprintf(text, sizeof text, "# Helium CURVE secret key (Z85) of %.64s: keep it secret\n%s\n", base, sec);
    int rc = write_new(kpath, 0600, text);
    if (!rc) {
        snprintf(text, sizeof text, "%s %.64s\n", pub, base);
        rc = write_new(ppath, 0644, text);
        if (rc) unlink(kpath);
    }
    memset(sec, 0, sizeof sec);
    memset(text, 0, sizeof text);
    free(kpath);
    free(ppath);
    return rc;
}

/* ------------------------------------------------------- socket options */

int zauth_set_server(void *sock, const zauth_keys *k) {
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->sec, ZAUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "helium", 6) != 0)
        return he_set(HE_EIO, "cannot make a CURVE server socket: %s", zmq_strerror(zmq_errno()));
    return 0;
}

int zauth_set_client(void *sock, const zauth_keys *k, const char *server_pub) {
    if (!server_pub) server_pub = k->server;
    if (!zauth_key_ok(server_pub)) return he_set(HE_EINVAL, "no valid server public key for a CURVE client");
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_pub, ZAUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k->pub, ZAUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k->sec, ZAUTH_KEY_LEN) != 0)
        return he_set(HE_EIO, "cannot make a CURVE client socket: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* --------------------------------------------------------------- key set */

/* Parses one authorized-keys line into e; 1 if it holds a key, 0 if it is
 * blank or a comment, negative on a bad line. */
static int parse_line(char *line, zauth_entry *e) {
    char *p = line + strspn(line, " \t\r\n");
    if (!*p || *p == '#') return 0;
    size_t n = strcspn(p, " \t\r\n");
    if (n != ZAUTH_KEY_LEN) return -1;
    char key[ZAUTH_KEY_LEN + 1];
    memcpy(key, p, n);
    key[n] = 0;
    if (!zmq_z85_decode(e->key, key)) return -1;
    p += n;
    p += strspn(p, " \t");
    size_t m = strcspn(p, "\r\n");
    if (m >= sizeof e->name) m = sizeof e->name - 1;
    memcpy(e->name, p, m);
    e->name[m] = 0;
    return 1;
}

int zauth_load(zauth_t *za, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return he_set(HE_EIO, "cannot read authorized keys %s: %s", path, strerror(errno));
    zauth_entry *v = NULL;
    size_t n = 0, cap = 0;
    char line[1024];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        zauth_entry e;
        int r = parse_line(line, &e);
        if (r < 0) {
            rc = he_set(HE_EFORMAT, "%s:%d: want a 40-character Z85 public key, then a comment naming it", path,
                        lineno);
            break;
        }
        if (r == 0) continue;
        if (n == ZAUTH_MAX_KEYS) {
            rc = he_set(HE_ELIMIT, "%s: more than %d keys", path, ZAUTH_MAX_KEYS);
            break;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            zauth_entry *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = he_set(HE_ENOMEM, "out of memory");
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = e;
    }
    fclose(f);
    if (rc) {
        free(v);
        return rc;
    }
    pthread_mutex_lock(&za->mu);
    zauth_entry *old = za->keys;
    za->keys = v;
    za->n_keys = n;
    pthread_mutex_unlock(&za->mu);
    free(old);
    return (int)n;
}

size_t zauth_n_keys(zauth_t *za) {
    pthread_mutex_lock(&za->mu);
    size_t n = za->n_keys;
    pthread_mutex_unlock(&za->mu);
    return n;
}

/* Whether key (32 bytes) is in the set; its name into name (cap bytes). */
static bool key_allowed(zauth_t *za, const uint8_t *key, char *name, size_t cap) {
    bool ok = false;
    pthread_mutex_lock(&za->mu);
    for (size_t i = 0; i < za->n_keys && !ok; i++)
        if (!memcmp(za->keys[i].key, key, 32)) {
            ok = true;
            snprintf(name, cap, "%s", za->keys[i].name[0] ? za->keys[i].name : "(unnamed)");
        }
    pthread_mutex_unlock(&za->mu);
    return ok;
}

zauth_counts zauth_stats(zauth_t *za) {
    zauth_counts c = {0};
    if (!za) return c;
    c.allowed = atomic_load(&za->allowed);
    c.unknown_key = atomic_load(&za->unknown_key);
    c.mechanism = atomic_load(&za->mechanism);
    c.crypto = atomic_load(&za->crypto);
    c.protocol = atomic_load(&za->protocol);
    return c;
}

/* ----------------------------------------------------------- the thread */

/* Receives every frame of one message (at most max kept; the rest closed).
 * Returns the number of frames, or -1. */
static int recv_frames(void *sock, zmq_msg_t *f, int max) {
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n && i < max; i++) zmq_msg_close(&f[i]);
            return -1;
        }
        more = zmq_msg_more(&m);
        if (n < max) f[n] = m;
        else zmq_msg_close(&m);
        n++;
    }
    return n;
}

static bool frame_is(zmq_msg_t *m, const char *s) {
    return zmq_msg_size(m) == strlen(s) && !memcmp(zmq_msg_data(m), s, zmq_msg_size(m));
}

/* Answers one ZAP request (RFC 27): version, request id, domain, address,
 * routing id, mechanism, credentials... */
static void zap_answer(zauth_t *za, void *rep) {
    zmq_msg_t f[8];
    int n = recv_frames(rep, f, 8);
    if (n < 0) return;
    const char *status = "400", *text = "unknown key";
    char user[64] = "";
    int kept = n < 8 ? n : 8;
    if (n >= 6 && frame_is(&f[0], "1.0")) {
        if (!frame_is(&f[5], "CURVE")) {
            atomic_fetch_add(&za->mechanism, 1);
            text = "CURVE required";
            clog_msg(CLOG_WARN, "%s: refused a client without CURVE", za->label);
        } else if (n >= 7 && zmq_msg_size(&f[6]) == 32 && key_allowed(za, zmq_msg_data(&f[6]), user, sizeof user)) {
            atomic_fetch_add(&za->allowed, 1);
            status = "200";
            text = "OK";
        } else {
            atomic_fetch_add(&za->unknown_key, 1);
            char z85[ZAUTH_KEY_LEN + 1] = "?";
            if (n >= 7 && zmq_msg_size(&f[6]) == 32) zmq_z85_encode(z85, zmq_msg_data(&f[6]), 32);
            clog_msg(CLOG_WARN, "%s: refused a client key not authorized: %s", za->label, z85);
        }
    } else {
        atomic_fetch_add(&za->protocol, 1);
        text = "bad ZAP request";
    }
    /* reply: version, request id, status code, status text, user id, metadata */
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2) zmq_send(rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else zmq_send(rep, "", 0, ZMQ_SNDMORE);
    zmq_send(rep, status, 3, ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
    for (int i = 0; i < kept; i++) zmq_msg_close(&f[i]);
}

/* Counts one monitor event: [u16 event, u32 value], [endpoint]. */
static void monitor_event(zauth_t *za, void *mon) {
    zmq_msg_t f[2];
    int n = recv_frames(mon, f, 2);
    if (n < 0) return;
    if (n >= 1 && zmq_msg_size(&f[0]) == 6) {
        uint16_t ev;
        uint32_t val;
        memcpy(&ev, zmq_msg_data(&f[0]), 2);
        memcpy(&val, (uint8_t *)zmq_msg_data(&f[0]) + 2, 4);
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            if (val == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) atomic_fetch_add(&za->mechanism, 1);
            else if (val == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) atomic_fetch_add(&za->crypto, 1);
            else atomic_fetch_add(&za->protocol, 1);
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            atomic_fetch_add(&za->protocol, 1);
        } /* HANDSHAKE_FAILED_AUTH: the ZAP answer above counted it */
    }
    for (int i = 0; i < n && i < 2; i++) zmq_msg_close(&f[i]);
}

typedef struct {
    zauth_t *za;
    int rc;            /* 0 once the ZAP socket is bound */
    char err[160];
} start_t;

static void *thread_main(void *arg) {
    start_t *st = arg;
    zauth_t *za = st->za;
    void *rep = zmq_socket(za->zctx, ZMQ_REP), *ctl = zmq_socket(za->zctx, ZMQ_PAIR);
    void *mon[ZAUTH_MAX_WATCH];
    int n_mon = 0, zero = 0;
    if (rep) zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof zero);
    if (ctl) zmq_setsockopt(ctl, ZMQ_LINGER, &zero, sizeof zero);
    bool ok = rep && ctl && zmq_connect(ctl, za->ctl_ep) == 0;
    if (ok && zmq_bind(rep, "inproc://zeromq.zap.01") != 0) {
        snprintf(st->err, sizeof st->err, "cannot bind the ZAP handler: %s", zmq_strerror(zmq_errno()));
        ok = false;
    } else if (!ok) {
        snprintf(st->err, sizeof st->err, "cannot create the ZAP sockets: %s", zmq_strerror(zmq_errno()));
    }
    st->rc = ok ? 0 : -1;
    /* st belongs to zauth_new, which reads it once this "ready" arrives */
    if (ctl) zmq_send(ctl, ok ? "OK" : "NO", 2, 0);
    while (ok) {
        zmq_pollitem_t it[2 + ZAUTH_MAX_WATCH];
        it[0] = (zmq_pollitem_t){.socket = ctl, .events = ZMQ_POLLIN};
        it[1] = (zmq_pollitem_t){.socket = rep, .events = ZMQ_POLLIN};
        for (int i = 0; i < n_mon; i++) it[2 + i] = (zmq_pollitem_t){.socket = mon[i], .events = ZMQ_POLLIN};
        if (zmq_poll(it, 2 + n_mon, -1) < 0) {
            if (zmq_errno() == EINTR) continue;
            break;
        }
        if (it[1].revents & ZMQ_POLLIN) zap_answer(za, rep);
        for (int i = 0; i < n_mon; i++)
            if (it[2 + i].revents & ZMQ_POLLIN) monitor_event(za, mon[i]);
        if (it[0].revents & ZMQ_POLLIN) {
            char cmd[128];
            int len = zmq_recv(ctl, cmd, sizeof cmd - 1, 0);
            if (len < 0) break;
            cmd[len < (int)sizeof cmd - 1 ? len : (int)sizeof cmd - 1] = 0;
            if (!strcmp(cmd, "STOP")) {
                zmq_send(ctl, "OK", 2, 0);
                break;
            }
            bool done = false;
            if (!strncmp(cmd, "WATCH ", 6) && n_mon < ZAUTH_MAX_WATCH) {
                void *m = zmq_socket(za->zctx, ZMQ_PAIR);
                if (m && zmq_setsockopt(m, ZMQ_LINGER, &zero, sizeof zero) == 0 && zmq_connect(m, cmd + 6) == 0) {
                    mon[n_mon++] = m;
                    done = true;
                } else if (m) {
                    zmq_close(m);
                }
            }
            zmq_send(ctl, done ? "OK" : "NO", 2, 0);
        }
    }
    for (int i = 0; i < n_mon; i++) zmq_close(mon[i]);
    if (rep) zmq_close(rep);
    if (ctl) zmq_close(ctl);
    return NULL;
}

/* Sends cmd to the thread and waits for its answer; 0 if "OK". */
static int command(zauth_t *za, const char *cmd) {
    char ans[2];
    if (zmq_send(za->ctl, cmd, strlen(cmd), 0) < 0 || zmq_recv(za->ctl, ans, 2, 0) != 2) return -1;
    return memcmp(ans, "OK", 2) ? -1 : 0;
}

zauth_t *zauth_new(void *zctx, const char *label) {
    zauth_t *za = calloc(1, sizeof *za);
    if (!za) {
        he_set(HE_ENOMEM, "out of memory");
        return NULL;
    }
    za->zctx = zctx;
    pthread_mutex_init(&za->mu, NULL);
    snprintf(za->label, sizeof za->label, "%s", label ? label : "zauth");
    snprintf(za->ctl_ep, sizeof za->ctl_ep, "inproc://zauth-ctl-%p", (void *)za);
    int zero = 0;
    za->ctl = zmq_socket(zctx, ZMQ_PAIR);
    if (!za->ctl || zmq_setsockopt(za->ctl, ZMQ_LINGER, &zero, sizeof zero) || zmq_bind(za->ctl, za->ctl_ep)) {
        he_set(HE_EIO, "cannot create the ZAP control pipe: %s", zmq_strerror(zmq_errno()));
        zauth_destroy(&za);
        return NULL;
    }
    start_t st = {.za = za, .rc = -1};
    if (pthread_create(&za->thread, NULL, thread_main, &st) != 0) {
        he_set(HE_EIO, "cannot start the ZAP handler thread");
        zauth_destroy(&za);
        return NULL;
    }
    za->started = true;
    char ans[2];
    int len = zmq_recv(za->ctl, ans, 2, 0); /* the thread's "bound" (or not) */
    if (len != 2 || st.rc != 0) {
        he_set(HE_EIO, "%s: %s", za->label, st.err[0] ? st.err : "the ZAP handler did not start");
        pthread_join(za->thread, NULL);
        za->started = false;
        zauth_destroy(&za);
        return NULL;
    }
    return za;
}

int zauth_watch(zauth_t *za, void *sock) {
    char ep[96], cmd[110];
    snprintf(ep, sizeof ep, "inproc://zauth-mon-%p-%d", (void *)za, za->n_watch);
    int ev = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (za->n_watch >= ZAUTH_MAX_WATCH) return he_set(HE_ELIMIT, "at most %d watched sockets", ZAUTH_MAX_WATCH);
    if (zmq_socket_monitor(sock, ep, ev) != 0)
        return he_set(HE_EIO, "cannot monitor a socket: %s", zmq_strerror(zmq_errno()));
    snprintf(cmd, sizeof cmd, "WATCH %s", ep);
    if (command(za, cmd) != 0) return he_set(HE_EIO, "the ZAP handler cannot watch %s", ep);
    za->n_watch++;
    return 0;
}

void zauth_destroy(zauth_t **self_p) {
    if (!self_p || !*self_p) return;
    zauth_t *za = *self_p;
    if (za->started) {
        command(za, "STOP");
        pthread_join(za->thread, NULL);
    }
    if (za->ctl) zmq_close(za->ctl);
    pthread_mutex_destroy(&za->mu);
    free(za->keys);
    free(za);
    *self_p = NULL;
}
