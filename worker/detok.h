/* detok: incremental detokenization of one generated sequence, with stop
 * strings.
 *
 * Each generated token's bytes are appended as it is sampled (a token's piece
 * is a byte string: tok_decode of a sequence is the concatenation of its
 * pieces, so appending gives exactly tok_decode of all the ids, in O(piece)
 * per token instead of re-decoding every id at every step). After each
 * append, only the window where a stop string could newly end is searched
 * (the last max_stop_len - 1 old bytes plus the new piece), so a stop string
 * split across tokens, or across the bytes of one UTF-8 character, is found
 * the moment its last byte arrives.
 *
 * Invariants: once a stop string is found, the text ends before its first
 * occurrence and nothing more is appended; dtk_stable() never shrinks and
 * never exceeds the text's length; before a stop, the bytes it covers can
 * contain no prefix of a stop string that later tokens could complete, and
 * never end inside a UTF-8 character.
 */
#ifndef HELIUM_DETOK_H
#define HELIUM_DETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

typedef struct dtk dtk_t;

/* A detokenizer for one sequence; stops[0..n_stops) are copied (empty ones
 * are ignored). NULL on allocation failure (he_msg says so). */
dtk_t *dtk_new(const tok_t *tok, const char *const *stops, int n_stops);
void dtk_destroy(dtk_t **self_p);

/* Appends token id's bytes. Returns 1 when the text now contains a stop
 * string (the text is cut before it; the sequence should end), 0 otherwise,
 * or a negative herr code (bad id, out of memory). After a stop it appends
 * nothing and returns 1. */
int dtk_push(dtk_t *d, int32_t id);

/* The text so far (NUL-terminated; cut before a stop string once found). */
const char *dtk_text(const dtk_t *d, size_t *len);
/* Bytes of the text that may be shown now: all of it after a stop (or when
 * final), else all but what could still be the start of a stop string,
 * ending on a whole UTF-8 character. Never decreases. */
size_t dtk_stable(dtk_t *d, bool final);
bool dtk_stopped(const dtk_t *d);

#endif
