/* workflow: a job's operator graph, parsed from the JSON workflow format and
 * validated (references resolved, dependencies and topological order derived).
 *
 * The structs here are plain C and mirror proto/helium.proto's Workflow one to
 * one, so common/ does not depend on generated proto code (the converter lives
 * in coordinator/wf_proto.c). docs/workflow-format.md describes the JSON.
 *
 * Layout: wf->ops holds every operator, nested ones included, in pre-order:
 * a map's body and a loop's body ops come after their parent (parent index <
 * child index always). Operators form scopes: the top level, each loop body,
 * each map body. A dependency edge always joins two ops of the same scope: a
 * reference from inside a body to an op outside it becomes a dependency of the
 * enclosing op that sits in the referenced op's scope.
 *
 * Templates: literal text and placeholders {{input.NAME}}, {{op.ID}},
 * {{item}} (inside a map body) and {{prev}} (inside a loop body: the previous
 * round's output). `\{{` is a literal "{{". In a run of three or more '{', all
 * but the last two are literal text.
 *
 * Ownership: every string and array hangs off the wf_t and is freed by
 * wf_destroy(). Builders may assign malloc'd strings to the char * fields.
 * Fields marked "derived" are (re)computed by wf_validate(); everything else is
 * input. Errors: 0 or a negative herr code with he_msg() naming the operator:
 * HE_EFORMAT bad JSON, shape or value (duplicate ids included), HE_EINVAL
 * unknown operator type, HE_EREF dangling reference, HE_ECYCLE cycle,
 * HE_ELIMIT a limit below exceeded.
 */
#ifndef HELIUM_WORKFLOW_H
#define HELIUM_WORKFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits (enforced by wf_validate and the parser) */
#define WF_MAX_OPS 4096                /* operators per workflow, nested ones included */
#define WF_MAX_PROMPT_BYTES (1u << 20) /* source bytes of one template / input default */
#define WF_MAX_JSON_BYTES (16u << 20)  /* a whole JSON workflow */
#define WF_MAX_MAP_WIDTH 4096          /* largest map max_width */
#define WF_MAX_ROUNDS 64               /* largest loop max_rounds */
#define WF_MAX_TOKENS 32768            /* largest llm max_tokens */
#define WF_MAX_ID_LEN 128              /* op ids and input names: [A-Za-z0-9_.-]{1,128} */
#define WF_MAX_INPUTS 256
#define WF_MAX_STOP 16                 /* stop strings per op */
#define WF_MAX_STOP_LEN 256
#define WF_MAX_HEADERS 64
#define WF_MAX_HOSTS 64
#define WF_MAX_TIMEOUT_MS 600000u
#define WF_MAX_RESPONSE_BYTES (16u << 20)
#define WF_MAX_DEPTH 2                 /* body nesting: loop > map > op at most */

/* ---- defaults (filled in by wf_add_op; proto zeros map to these) */
#define WF_DEFAULT_MAX_TOKENS 256
#define WF_DEFAULT_MAP_WIDTH 256
#define WF_DEFAULT_ROUNDS 3
#define WF_DEFAULT_TIMEOUT_MS 5000u
#define WF_DEFAULT_RESPONSE_BYTES 65536u

typedef enum { WF_LLM = 0, WF_TOOL, WF_MAP, WF_JOIN, WF_LOOP, WF_KIND_COUNT } wf_kind;

typedef enum {
    WF_PART_TEXT = 0, /* literal text */
    WF_PART_INPUT,    /* {{input.NAME}} */
    WF_PART_OP,       /* {{op.ID}} */
    WF_PART_ITEM,     /* {{item}} */
    WF_PART_PREV,     /* {{prev}} */
} wf_part_kind;

typedef struct {
    wf_part_kind kind;
    char *s; /* TEXT: the text; INPUT: input name; OP: op id; NULL for ITEM/PREV.
                NUL-terminated, len bytes */
    size_t len;
    int ref; /* derived: INPUT -> index in wf->inputs, OP -> index in wf->ops, else -1 */
} wf_part;

typedef struct {
    wf_part *v; /* (n) parts in order */
    size_t n, cap;
    size_t bytes; /* size in canonical syntax: text bytes plus each placeholder as
                     written ({{input.NAME}} = len + 10, {{op.ID}} = len + 7, 8 else);
                     at most WF_MAX_PROMPT_BYTES */
} wf_tmpl;

typedef enum { WF_SPLIT_AUTO = 0, WF_SPLIT_LINES, WF_SPLIT_JSON } wf_split;

typedef struct {
    float temperature; /* >= 0; 0 = greedy */
    uint32_t top_k;    /* 0 = off */
    float top_p;       /* (0, 1]; 1 = off */
    uint64_t seed;
} wf_sampling;

typedef struct {
    char *key, *value;
} wf_kv;

/* One chat message of an llm op: role (system, user, assistant or tool) and
 * content, a template like a prompt. */
typedef struct {
    char *role;
    wf_tmpl content;
} wf_msg;

typedef struct wf_op {
    char *id;
    wf_kind kind;
    int parent;        /* index of the enclosing map/loop op, -1 at top level */
    char *description; /* may be NULL */

    struct { /* WF_LLM */
        /* Either prompt or messages is given. With messages, prompt is derived
         * (wfmsg_derive): every content's parts in order, each message opened
         * by "\x1e" ROLE "\x1f", so deps, hashes and plans see the chat; the
         * coordinator may replace it by the chat as the model's template
         * renders it (coordinator/render.h rnd_chat_lower), and tasks render
         * the messages through that template. */
        wf_tmpl prompt;
        wf_msg *messages; /* (n_messages) */
        size_t n_messages;
        bool prompt_derived; /* derived: prompt was built from messages */
        bool no_special;     /* true: control-token text in the prompt stays text
                                (untrusted input); default false: parsed as the tokens */
        char *model; /* NULL = default model */
        wf_sampling sampling;
        uint32_t max_tokens;
        char **stop; /* (n_stop) */
        size_t n_stop;
    } llm;
    struct {          /* WF_TOOL */
        char *method; /* upper case */
        wf_tmpl url;
        wf_tmpl body;   /* may be empty */
        wf_kv *headers; /* (n_headers) */
        size_t n_headers;
        uint32_t timeout_ms;
        uint32_t max_response_bytes;
    } tool;
    struct {          /* WF_MAP */
        wf_part over; /* kind WF_PART_OP or WF_PART_INPUT; ref derived */
        uint32_t max_width;
        wf_split split;
        int body; /* derived: index of the body op */
    } map;
    struct { /* WF_JOIN */
        wf_tmpl parts;
        char *separator; /* NULL = "\n" */
    } join;
    struct {                  /* WF_LOOP */
        char *until_contains; /* NULL = run max_rounds rounds */
        uint32_t max_rounds;
        char *output_id; /* NULL = last body op */
        int output;      /* derived: index of the body op giving the round's output */
    } loop;

    /* derived by wf_validate */
    int *deps; /* (n_deps) same-scope ops this one waits for, ascending */
    size_t n_deps;
    int *order; /* (n_order) map/loop: body ops in topological order */
    size_t n_order;
} wf_op;

typedef struct {
    char *name;
    bool has_default;
    char *def;         /* default value if has_default */
    char *description; /* may be NULL */
} wf_input;

typedef struct wf {
    char *name; /* may be NULL */
    char *description;
    wf_input *inputs; /* (n_inputs) */
    size_t n_inputs;
    wf_op **ops; /* (n_ops) all operators, pre-order; pointers are stable */
    size_t n_ops, cap_ops;
    char **allow_hosts; /* (n_allow_hosts) */
    size_t n_allow_hosts;
    char *output_id; /* NULL = last top-level sink */

    /* derived by wf_validate */
    int *order; /* (n_order) top-level ops in topological order */
    size_t n_order;
    int output; /* index of the op whose output is the job's result */
    int *index; /* (index_cap) open-addressing id -> op index table, -1 empty */
    size_t index_cap;
    bool valid;
} wf_t;

/* ---- parsing and validation */

/* Parses a JSON workflow of len bytes (need not be NUL-terminated) and
 * validates it. On success *out owns a new wf_t; on failure *out is NULL.
 * Work is linear in len plus O(ops + template parts). */
int wf_parse_json(const char *text, size_t len, wf_t **out);

/* Checks every field against the limits above, resolves template references,
 * computes deps, scope orders and the output op (Kahn's algorithm; ties in
 * declaration order). Idempotent; call again after any change. */
int wf_validate(wf_t *wf);

/* Index of the op with this id, or -1 (hashed when wf is validated, else a scan). */
int wf_find(const wf_t *wf, const char *id);
/* Index of the input with this name, or -1. */
int wf_find_input(const wf_t *wf, const char *name);

void wf_destroy(wf_t **wf_p);

/* "llm", "tool", "map", "join", "loop" ("?" otherwise). */
const char *wf_kind_name(wf_kind kind);
/* The kind named s (as wf_kind_name), or -1. */
int wf_kind_from_name(const char *s);

/* ---- building (used by the parser and by the proto converter) */

wf_t *wf_new(void);
/* Appends an op with defaults filled in; returns its index or a negative code.
 * parent is -1 or the index of an existing map/loop op. */
int wf_add_op(wf_t *wf, int parent, const char *id, wf_kind kind);
/* Appends an input; def NULL = no default. */
int wf_add_input(wf_t *wf, const char *name, const char *def, const char *description);
int wf_add_host(wf_t *wf, const char *host);
int wf_add_stop(wf_op *op, const char *s);
int wf_add_header(wf_op *op, const char *key, const char *value);
/* Appends one part; adjacent text parts merge. s may be NULL for ITEM/PREV. */
int wf_tmpl_add(wf_tmpl *t, wf_part_kind kind, const char *s, size_t len);
/* Appends the parts of template source src (len bytes); errors name op_id. */
int wf_tmpl_parse(wf_tmpl *t, const char *src, size_t len, const char *op_id);
/* Replaces *dst with a copy of s (NULL clears it). */
int wf_set_str(char **dst, const char *s);

/* True if s is a valid op id / input name. */
bool wf_valid_name(const char *s);

#endif
