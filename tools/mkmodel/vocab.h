/* vocab: builds a GGUF tokenizer vocabulary for helium-mkmodel by training BPE
 * on a corpus.
 *
 * VOCAB_BPE (tokenizer.ggml.model "gpt2"): ids 0..255 are the single bytes
 * 0x00..0xFF, each written in GPT-2's byte-to-unicode form; then the learned
 * tokens in merge order; then four control tokens "<|begin_of_text|>" (BOS),
 * "<|end_of_text|>" (EOS), "<|im_start|>", "<|im_end|>". merges[] lists every
 * learned merge as "left right" (byte-encoded), in rank order; left, right and
 * their concatenation are all tokens.
 *
 * VOCAB_SPM (tokenizer.ggml.model "llama"): <unk>=0, <s>=1, </s>=2, then
 * <0x00>..<0xFF> (byte fallback), then the learned multi-character pieces in
 * merge order, then the base characters (most frequent first); U+2581 stands for
 * a space. Scores: 0 for the first 259, then -rank for the pieces and
 * characters in that order. No merges.
 *
 * Invariant: exactly n_vocab tokens, all distinct, none empty.
 */
#ifndef HELIUM_VOCAB_H
#define HELIUM_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "pretok.h"

typedef enum { VOCAB_BPE, VOCAB_SPM } vocab_kind;

/* GGUF token types (llama.cpp numbering). */
enum { VOCAB_T_NORMAL = 1, VOCAB_T_UNKNOWN = 2, VOCAB_T_CONTROL = 3, VOCAB_T_BYTE = 6 };

typedef struct {
    vocab_kind kind;
    int32_t n;       /* vocabulary size */
    char **tokens;   /* (n) NUL-terminated token text as stored in GGUF */
    int32_t *types;  /* (n) VOCAB_T_* */
    float *scores;   /* (n) SPM only, else NULL */
    char **merges;   /* (n_merges) BPE only, else NULL */
    size_t n_merges;
    int32_t bos, eos, unk; /* unk = -1 for BPE */
    int64_t min_merge_count; /* weighted count of the last merge (training diagnostics) */
} vocab_t;

/* Trains a vocabulary of exactly n_vocab tokens on text[0..len). mode picks the
 * pre-tokenizer for VOCAB_BPE (ignored for SPM). Returns 0 and *out, or a
 * negative herr code with a message (HE_ERANGE if the corpus is too small for
 * n_vocab, HE_EINVAL for a too-small n_vocab). */
int vocab_build(vocab_kind kind, pretok_mode mode, const char *text, size_t len, int32_t n_vocab,
                vocab_t **out);
void vocab_destroy(vocab_t **self_p);

#endif
