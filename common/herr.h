/* herr: typed error codes and a per-thread error message.
 *
 * Every fallible function in Helium returns an int: 0 (HE_OK) on success or a
 * negative herr code, after recording a human-readable message with he_set().
 * Callers show he_msg() to the user. Input from files or the network is never
 * asserted on: it is checked and reported through this module.
 *
 * An error about one workflow operator also names it as a field, the
 * thread's error subject (he_op), so no caller parses it back out of the
 * message: he_set() clears the subject, and the code that knows which
 * operator failed sets it after (he_set_op). The wire's map from these codes
 * to helium.ErrorCode is wire/werr.h.
 */
#ifndef HELIUM_HERR_H
#define HELIUM_HERR_H

#include <stddef.h>

typedef enum {
    HE_OK = 0,
    HE_EINVAL = -1,       /* bad argument or malformed input */
    HE_EIO = -2,          /* open/read/write/mmap failed */
    HE_EFORMAT = -3,      /* file or frame does not follow its format */
    HE_ENOMEM = -4,       /* allocation failed, or KV cache exhausted */
    HE_EUNSUPPORTED = -5, /* valid but not supported (arch, tensor type, ...) */
    HE_ERANGE = -6,       /* value out of range (offset past end, id >= vocab, ...) */
    HE_ECONTEXT = -7,     /* prompt (plus generation) longer than the context */
    HE_EEMPTY = -8,       /* empty prompt */
    HE_ENOTFOUND = -9,    /* key / tensor / job not found */
    HE_ECYCLE = -10,      /* workflow graph has a cycle */
    HE_EREF = -11,        /* dangling reference in a workflow */
    HE_ELIMIT = -12,      /* a configured limit exceeded */
    HE_EPROTO = -13,      /* malformed or unexpected protocol message */
    HE_ETIMEOUT = -14,
    HE_EUNAVAIL = -15,    /* peer unreachable / no worker available */
    HE_ECANCELED = -16,
    HE_EUNKNOWN = -17,    /* unknown kind of thing: operator type, message kind, key */
} he_code;

/* Records msg (printf format) as this thread's last error and returns code. */
int he_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's last error message ("" if none). */
const char *he_msg(void);
/* Short stable name for a code: "EFORMAT", ... */
const char *he_name(int code);
/* Clears the message and the subject. */
void he_clear(void);
/* Sets (NULL: clears) the id of the operator this thread's last error is
 * about; at most 127 bytes kept. Call after he_set(). */
void he_set_op(const char *op_id);
/* That operator id, "" if the last error names none. */
const char *he_op(void);

#endif
