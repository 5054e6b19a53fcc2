/* werr: the one map from herr codes (common/herr.h) to the wire's
 * helium.ErrorCode (proto/helium.proto), used by every process: the
 * coordinator's replies, the workflow converter's callers, heliumctl's local
 * checks and the worker's OpResult errors.
 *
 *   HE_OK                                      OK
 *   HE_EINVAL, HE_EFORMAT, HE_ERANGE,
 *   HE_EEMPTY, HE_EUNSUPPORTED                 INVALID (a bad request or input)
 *   HE_EUNKNOWN                                UNKNOWN_OP (an unknown operator type)
 *   HE_ECYCLE / HE_EREF                        CYCLE / DANGLING_REF
 *   HE_ELIMIT                                  LIMIT
 *   HE_ECONTEXT                                PROMPT_TOO_LONG
 *   HE_ENOTFOUND                               NOT_FOUND
 *   HE_EUNAVAIL                                UNAVAILABLE
 *   HE_EPROTO                                  PROTOCOL
 *   HE_ECANCELED / HE_ETIMEOUT                 CANCELED / TIMEOUT
 *   anything else (HE_EIO, HE_ENOMEM, ...)     INTERNAL
 *
 * The operator an error is about travels as Error.op_id, from he_op().
 */
#ifndef HELIUM_WIRE_WERR_H
#define HELIUM_WIRE_WERR_H

#include "helium.pb-c.h"

/* The wire code for an herr code (0 or negative). */
Helium__ErrorCode werr_code(int he_code);

#endif
