/* pretok: the pre-tokenizer helium-mkmodel uses to split training text into
 * words before BPE training.
 *
 * PRETOK_LLAMA3 and PRETOK_QWEN2 are hand-written matchers for llama.cpp's
 * "llama-bpe" and "qwen2" pre-tokenizer regexes:
 *   (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|
 *   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (qwen2: \p{N} instead of \p{N}{1,3}). Text is decoded as UTF-8 and each code
 * point classified as letter / number / whitespace / other with a small table
 * that is exact for ASCII and approximate above it (good enough for training;
 * it never affects whether a model loads). Invalid UTF-8 bytes count as single
 * letter code points.
 *
 * PRETOK_SPM splits one line the way SentencePiece-style training sees it:
 * spaces become U+2581 and begin a new piece, and a piece is also cut where the
 * character class changes (letters / digits / other), the leading U+2581 staying
 * with the first part.
 *
 * Invariant: the pieces of a text partition it exactly, in order, and every piece
 * is non-empty.
 */
#ifndef HELIUM_PRETOK_H
#define HELIUM_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PRETOK_LLAMA3, PRETOK_QWEN2 } pretok_mode;

typedef enum { PRETOK_C_LETTER, PRETOK_C_NUMBER, PRETOK_C_SPACE, PRETOK_C_OTHER } pretok_class;

/* Decodes one code point at s[0..len) (len > 0); returns its byte length (1 for
 * an invalid sequence, whose *cp is then the byte value | 0x110000). */
size_t pretok_utf8(const char *s, size_t len, uint32_t *cp);
pretok_class pretok_classify(uint32_t cp);

/* Calls emit(piece, piece_len, ctx) for each pre-token of text[0..len) under
 * mode. Stops early and returns emit's value if emit returns nonzero; else 0,
 * or HE_ENOMEM. Work is linear in len. */
int pretok_split(pretok_mode mode, const char *text, size_t len,
                 int (*emit)(const char *piece, size_t n, void *ctx), void *ctx);

/* SPM view of one line (no '\n' inside): calls emit for each piece of
 * "\u2581" + line with ' ' replaced by "\u2581" (pieces are UTF-8 and may hold
 * U+2581). The piece buffer is temporary. Returns like pretok_split. */
int pretok_split_spm(const char *line, size_t len,
                     int (*emit)(const char *piece, size_t n, void *ctx), void *ctx);

#endif
