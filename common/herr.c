/* herr: per-thread last-error message; see herr.h. */
#include "herr.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char he_buf[512];
static _Thread_local char he_subject[128]; /* the failing operator's id, "" if none */

int he_set(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(he_buf, sizeof he_buf, fmt, ap);
    va_end(ap);
    he_subject[0] = 0;
    return code;
}

const char *he_msg(void) { return he_buf; }
void he_clear(void) {
    he_buf[0] = 0;
    he_subject[0] = 0;
}

void he_set_op(const char *op_id) { snprintf(he_subject, sizeof he_subject, "%s", op_id ? op_id : ""); }
const char *he_op(void) { return he_subject; }

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
    case HE_EUNKNOWN: return "EUNKNOWN";
    default: return "E?";
    }
}
