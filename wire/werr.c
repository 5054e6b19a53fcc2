/* werr: herr -> helium.ErrorCode; see werr.h. */
#include "werr.h"

#include "herr.h"

Helium__ErrorCode werr_code(int he_code) {
    switch (he_code) {
    case HE_OK: return HELIUM__ERROR_CODE__ERROR_OK;
    case HE_EINVAL:
    case HE_EFORMAT:
    case HE_ERANGE:
    case HE_EEMPTY:
    case HE_EUNSUPPORTED: return HELIUM__ERROR_CODE__ERROR_INVALID;
    case HE_EUNKNOWN: return HELIUM__ERROR_CODE__ERROR_UNKNOWN_OP;
    case HE_ECYCLE: return HELIUM__ERROR_CODE__ERROR_CYCLE;
    case HE_EREF: return HELIUM__ERROR_CODE__ERROR_DANGLING_REF;
    case HE_ELIMIT: return HELIUM__ERROR_CODE__ERROR_LIMIT;
    case HE_ECONTEXT: return HELIUM__ERROR_CODE__ERROR_PROMPT_TOO_LONG;
    case HE_ENOTFOUND: return HELIUM__ERROR_CODE__ERROR_NOT_FOUND;
    case HE_EUNAVAIL: return HELIUM__ERROR_CODE__ERROR_UNAVAILABLE;
    case HE_EPROTO: return HELIUM__ERROR_CODE__ERROR_PROTOCOL;
    case HE_ECANCELED: return HELIUM__ERROR_CODE__ERROR_CANCELED;
    case HE_ETIMEOUT: return HELIUM__ERROR_CODE__ERROR_TIMEOUT;
    default: return HELIUM__ERROR_CODE__ERROR_INTERNAL;
    }
}
