/* tokenizer: text <-> token ids from a GGUF model's tokenizer metadata.
 *
 * Supports tokenizer.ggml.model = "gpt2" (byte-level BPE with merges, with the
 * pre-tokenizer chosen by tokenizer.ggml.pre: "gpt2"/"default", "llama-bpe"
 * (Llama 3), "qwen2", "smollm") and "llama" (SentencePiece with scores and
 * byte fallback <0xXX>). Special/control tokens, BOS/EOS and add_bos follow
 * the metadata. Output matches llama.cpp's llama_tokenize for the same file
 * (tested against it in tests/conformance).
 *
 * The coordinator links this too (it tokenizes prompt templates), so it depends
 * only on gguf and herr.
 */
#ifndef HELIUM_TOKENIZER_H
#define HELIUM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tok tok_t;

typedef enum { TOK_KIND_BPE = 1, TOK_KIND_SPM = 2 } tok_kind;

/* Builds a tokenizer from g's metadata (copies what it needs; g may be closed
 * afterwards). Returns NULL with he_msg() set on malformed metadata. */
tok_t *tok_new_from_gguf(const gguf_t *g);
void tok_destroy(tok_t **self_p);

tok_kind tok_get_kind(const tok_t *t);
int32_t tok_n_vocab(const tok_t *t);
int32_t tok_bos(const tok_t *t);     /* -1 if none */
int32_t tok_eos(const tok_t *t);     /* -1 if none */
bool tok_add_bos_default(const tok_t *t); /* tokenizer.ggml.add_bos_token (model default) */
/* True for end-of-generation tokens (EOS, EOT, <|im_end|>, <|eot_id|>, ...). */
bool tok_is_eog(const tok_t *t, int32_t id);

/* Encodes text[0..len). add_bos prepends BOS (if the model has one);
 * parse_special lets special-token text (e.g. "<|im_start|>") map to its id.
 * Writes up to max_out ids to out and returns the total count needed (which may
 * exceed max_out: call again with a larger buffer), or a negative herr code. */
int tok_encode(const tok_t *t, const char *text, size_t len, bool add_bos, bool parse_special,
               int32_t *out, int max_out);

/* Encodes a prompt as Helium sends it to a model: parse_special = special,
 * and BOS first iff the model adds one (tok_add_bos_default) and the text
 * does not already start with the BOS token's text while special is on (a
 * rendered chat template often writes bos_token itself; this gives one BOS,
 * as transformers' apply_chat_template does, where llama.cpp would warn and
 * add a second). Returns as tok_encode. */
int tok_encode_prompt(const tok_t *t, const char *text, size_t len, bool special, int32_t *out, int max_out);

/* Writes the bytes that token id stands for (byte-level decoded for BPE,
 * '\xe2\x96\x81' -> ' ' and <0xXX> -> byte for SPM; control tokens give their
 * text only if render_special). Returns the byte count (may exceed buflen: the
 * output is then truncated), or a negative herr code for an invalid id. */
int tok_decode_piece(const tok_t *t, int32_t id, bool render_special, char *buf, int buflen);

/* Convenience: decodes ids into a malloc'd NUL-terminated string (caller frees). */
char *tok_decode(const tok_t *t, const int32_t *ids, int n, bool render_special);

/* Raw vocabulary text of id (as stored in the GGUF), or NULL. */
const char *tok_token_text(const tok_t *t, int32_t id, size_t *len);

#endif
