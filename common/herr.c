/* herr: per-thread last-error message; see herr.h. */
#include "herr.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char he_buf[512];

int he_set(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(he_buf, sizeof he_buf, fmt, ap);
    va_end(ap);
    return code;
}

const char *he_msg(void) { return he_buf; }
void he_clear(void) { he_buf[0] = 0; }

const char *he_name(int code) {
    switch (code) {
    case HE_OK: return "OK";
    case HE_EINVAL: return "EINVAL";
    case HE_EIO: return "EIO";
    case HE_EFORMAT: return "EFORMAT";
    case HE_ENOMEM: return "ENOMEM";
    case HE_EUNSUPPORTED: return "EUNSUPPORTED";
    case HE_ERANGE: return "ERANGE";
    case HE_ECONTEXT: return "ECONTEXT";
    case HE_EEMPTY: return "EEMPTY";
    case HE_ENOTFOUND: return "ENOTFOUND";
    case HE_ECYCLE: return "ECYCLE";
    case HE_EREF: return "EREF";
    case HE_ELIMIT: return "ELIMIT";
    case HE_EPROTO: return "EPROTO";
    case HE_ETIMEOUT: return "ETIMEOUT";
    case HE_EUNAVAIL: return "EUNAVAIL";
    case HE_ECANCELED: return "ECANCELED";
    default: return "EUNKNOWN";
    }
}
