/* pbcheck: a pre-unpack guard for protobuf wire data from the network.
 *
 * protobuf-c unpacks nested messages recursively without a depth bound, so a
 * small frame of deeply nested sub-messages (e.g. Operator -> MapOp.body ->
 * Operator -> ...) could exhaust the stack. pb_depth_ok walks the wire bytes
 * with the message descriptors (no allocation, bounded recursion) and rejects
 * nesting deeper than max_depth. It does not validate anything else: the
 * unpacker still does.
 */
#ifndef HELIUM_COORD_PBCHECK_H
#define HELIUM_COORD_PBCHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if data[0..len) is well-formed at the wire level and no sub-message
 * of desc's type nests deeper than max_depth. Work: O(len). */
bool pb_depth_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, int max_depth);

#endif
