/* wf_json: the workflow JSON format (docs/workflow-format.md) into a wf_t;
 * workflow.c builds and validates the graph.
 *
 * Every field is checked against its operator's kind; unknown fields are
 * errors (names starting with '_' are comments); nothing read from the JSON
 * is asserted on, and every error path leaves the wf_t destroyable. Errors
 * name the operator they are about (he_op).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "wfmsg.h"
#include "workflow.h"

/* text[0..len) and a NUL (len bytes kept even when text holds a NUL: the
 * parser is told the length). NULL when out of memory. */
static char *copy_text(const char *text, size_t len) {
    char *p = malloc(len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, text, len);
    p[len] = 0;
    return p;
}

/* Names op id as the subject of the error rc just recorded, unless an
 * operator nested in it already is (herr.h he_op). Returns rc. */
static int op_err(const char *id, int rc) {
    if (rc && !*he_op()) he_set_op(id);
    return rc;
}

/* Field names per operator kind; bit k of kinds = allowed for wf_kind k. */
enum {
    F_ID,
    F_TYPE,
    F_DESC,
    F_PROMPT,
    F_MODEL,
    F_MAXTOK,
    F_TEMP,
    F_TOPK,
    F_TOPP,
    F_SEED,
    F_STOP,
    F_MESSAGES,
    F_SPECIAL,
    F_METHOD,
    F_URL,
    F_BODY,
    F_HEADERS,
    F_TIMEOUT,
    F_MAXRESP,
    F_OVER,
    F_WIDTH,
    F_SPLIT,
    F_PARTS,
    F_SEP,
    F_REFS,
    F_UNTIL,
    F_ROUNDS,
    F_OUTPUT,
    F_COUNT
};
#define K(k) (1u << (k))
#define K_ALL (K(WF_LLM) | K(WF_TOOL) | K(WF_MAP) | K(WF_JOIN) | K(WF_LOOP))
static const struct {
    const char *name;
    unsigned kinds;
} fields[F_COUNT] = {
    [F_ID] = {"id", K_ALL},
    [F_TYPE] = {"type", K_ALL},
    [F_DESC] = {"description", K_ALL},
    [F_PROMPT] = {"prompt", K(WF_LLM)},
    [F_MODEL] = {"model", K(WF_LLM)},
    [F_MAXTOK] = {"max_tokens", K(WF_LLM)},
    [F_TEMP] = {"temperature", K(WF_LLM)},
    [F_TOPK] = {"top_k", K(WF_LLM)},
    [F_TOPP] = {"top_p", K(WF_LLM)},
    [F_SEED] = {"seed", K(WF_LLM)},
    [F_STOP] = {"stop", K(WF_LLM)},
    [F_MESSAGES] = {"messages", K(WF_LLM)},
    [F_SPECIAL] = {"special_tokens", K(WF_LLM)},
    [F_METHOD] = {"method", K(WF_TOOL)},
    [F_URL] = {"url", K(WF_TOOL)},
    [F_BODY] = {"body", K(WF_TOOL) | K(WF_MAP) | K(WF_LOOP)},
    [F_HEADERS] = {"headers", K(WF_TOOL)},
    [F_TIMEOUT] = {"timeout_ms", K(WF_TOOL)},
    [F_MAXRESP] = {"max_response_bytes", K(WF_TOOL)},
    [F_OVER] = {"over", K(WF_MAP)},
    [F_WIDTH] = {"max_width", K(WF_MAP)},
    [F_SPLIT] = {"split", K(WF_MAP)},
    [F_PARTS] = {"parts", K(WF_JOIN)},
    [F_SEP] = {"separator", K(WF_JOIN)},
    [F_REFS] = {"refs", K(WF_JOIN)},
    [F_UNTIL] = {"until_contains", K(WF_LOOP)},
    [F_ROUNDS] = {"max_rounds", K(WF_LOOP)},
    [F_OUTPUT] = {"output", K(WF_LOOP)},
};

static int j_str(const cJSON *it, const char *oid, const char **out) {
    if (!cJSON_IsString(it) || !it->valuestring)
        return he_set(HE_EFORMAT, "op '%s': '%s' must be a string", oid, it->string);
    *out = it->valuestring;
    return 0;
}

/* A non-negative integer that fits in 32 bits. */
static int j_u32(const cJSON *it, const char *oid, uint32_t *out) {
    if (!cJSON_IsNumber(it))
        return he_set(HE_EFORMAT, "op '%s': '%s' must be a number", oid, it->string);
    double d = it->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d))
        return he_set(HE_EFORMAT, "op '%s': '%s' must be a non-negative integer", oid, it->string);
    if (d > 4294967295.0) return he_set(HE_ELIMIT, "op '%s': '%s' is too large", oid, it->string);
    *out = (uint32_t)d;
    return 0;
}

static int j_float(const cJSON *it, const char *oid, float *out) {
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || fabs(it->valuedouble) > 1e30)
        return he_set(HE_EFORMAT, "op '%s': '%s' must be a finite number", oid, it->string);
    *out = (float)it->valuedouble;
    return 0;
}

/* A seed: an integer in [0, 2^53] or a string of decimal digits (any uint64). */
static int j_seed(const cJSON *it, const char *oid, uint64_t *out) {
    if (cJSON_IsString(it) && it->valuestring) {
        const char *s = it->valuestring;
        uint64_t v = 0;
        if (!*s) goto bad;
        for (; *s; s++) {
            if (*s < '0' || *s > '9') goto bad;
            unsigned d = (unsigned)(*s - '0');
            if (v > (UINT64_MAX - d) / 10) goto bad;
            v = v * 10 + d;
        }
        *out = v;
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (isfinite(d) && d >= 0 && d == floor(d) && d <= 9007199254740992.0) {
            *out = (uint64_t)d;
            return 0;
        }
    }
bad:
    return he_set(HE_EFORMAT,
                  "op '%s': 'seed' must be an integer in [0, 2^53] or a string of digits", oid);
}

/* "op.ID" or "input.NAME" -> a part. */
static int j_ref(const char *s, wf_part_kind *kind, const char **name) {
    if (strncmp(s, "op.", 3) == 0) {
        *kind = WF_PART_OP;
        *name = s + 3;
    } else if (strncmp(s, "input.", 6) == 0) {
        *kind = WF_PART_INPUT;
        *name = s + 6;
    } else {
        return -1;
    }
    return wf_valid_name(*name) ? 0 : -1;
}

static int parse_op(wf_t *wf, const cJSON *o, int parent, const char *default_id, int depth,
                    size_t pos);

/* "messages": [{"role": ROLE, "content": TEMPLATE}, ...] */
static int parse_messages(wf_op *op, const cJSON *it) {
    if (!cJSON_IsArray(it) || !it->child)
        return he_set(HE_EFORMAT, "op '%s': 'messages' must be a non-empty array of {role, content}", op->id);
    int rc = 0;
    for (const cJSON *m = it->child; m && !rc; m = m->next) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role"), *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(r) || !cJSON_IsString(c) || cJSON_GetArraySize(m) != 2)
            return he_set(HE_EFORMAT, "op '%s': each message must be {\"role\": string, \"content\": string}", op->id);
        rc = wfmsg_add(op, r->valuestring, c->valuestring, strlen(c->valuestring));
    }
    return rc;
}

/* One field of an llm or tool operator (or a field every kind has). Returns
 * 0 or an herr code; 1 for a field it does not handle (the caller's). */
static int parse_leaf_field(wf_op *op, int f, const cJSON *it) {
    const char *oid = op->id, *s = NULL;
    int rc = 0;
    switch (f) {
    case F_ID:
    case F_TYPE: break; /* read by parse_op */
    case F_DESC:
        if (!(rc = j_str(it, oid, &s))) rc = wf_set_str(&op->description, s);
        break;
    case F_PROMPT:
        if (!(rc = j_str(it, oid, &s))) rc = wf_tmpl_parse(&op->llm.prompt, s, strlen(s), oid);
        break;
    case F_MODEL:
        if (!(rc = j_str(it, oid, &s))) rc = wf_set_str(&op->llm.model, *s ? s : NULL);
        break;
    case F_MAXTOK: rc = j_u32(it, oid, &op->llm.max_tokens); break;
    case F_TEMP: rc = j_float(it, oid, &op->llm.sampling.temperature); break;
    case F_TOPK: rc = j_u32(it, oid, &op->llm.sampling.top_k); break;
    case F_TOPP: rc = j_float(it, oid, &op->llm.sampling.top_p); break;
    case F_SEED: rc = j_seed(it, oid, &op->llm.sampling.seed); break;
    case F_STOP:
        if (cJSON_IsString(it)) {
            rc = wf_add_stop(op, it->valuestring);
        } else if (cJSON_IsArray(it)) {
            for (const cJSON *e = it->child; e && !rc; e = e->next)
                rc = cJSON_IsString(e)
                         ? wf_add_stop(op, e->valuestring)
                         : he_set(HE_EFORMAT, "op '%s': 'stop' must hold strings", oid);
        } else {
            rc = he_set(HE_EFORMAT, "op '%s': 'stop' must be a string or an array", oid);
        }
        break;
    case F_MESSAGES: rc = parse_messages(op, it); break;
    case F_SPECIAL:
        if (!cJSON_IsBool(it)) rc = he_set(HE_EFORMAT, "op '%s': 'special_tokens' must be true or false", oid);
        else op->llm.no_special = cJSON_IsFalse(it);
        break;
    case F_METHOD:
        if (!(rc = j_str(it, oid, &s))) {
            char m[8] = {0};
            size_t n = strlen(s);
            for (size_t k = 0; k < n && k < sizeof m - 1; k++)
                m[k] = (char)(s[k] >= 'a' && s[k] <= 'z' ? s[k] - 32 : s[k]);
            rc = n < sizeof m ? wf_set_str(&op->tool.method, m)
                              : he_set(HE_EFORMAT, "op '%s': bad method", oid);
        }
        break;
    case F_URL:
        if (!(rc = j_str(it, oid, &s))) rc = wf_tmpl_parse(&op->tool.url, s, strlen(s), oid);
        break;
    case F_HEADERS:
        if (!cJSON_IsObject(it))
            return he_set(HE_EFORMAT, "op '%s': 'headers' must be an object of strings", oid);
        for (const cJSON *e = it->child; e && !rc; e = e->next)
            rc = cJSON_IsString(e) && e->string
                     ? wf_add_header(op, e->string, e->valuestring)
                     : he_set(HE_EFORMAT, "op '%s': header values must be strings", oid);
        break;
    case F_TIMEOUT: rc = j_u32(it, oid, &op->tool.timeout_ms); break;
    case F_MAXRESP: rc = j_u32(it, oid, &op->tool.max_response_bytes); break;
    default: return 1;
    }
    return rc;
}

/* One field of a map, join or loop operator: a map's or loop's body
 * (nested operators), what a map goes over, a join's parts or refs (kept in
 * *parts / *refs for finish_join), a loop's rounds. 0 or an herr code. */
static int parse_struct_field(wf_t *wf, int idx, int f, const cJSON *it, int depth, const cJSON **parts,
                              const cJSON **refs) {
    wf_op *op = wf->ops[idx];
    const char *oid = op->id, *s = NULL;
    int rc = 0;
    switch (f) {
    case F_BODY:
        if (op->kind == WF_TOOL) {
            if (!(rc = j_str(it, oid, &s)))
                rc = wf_tmpl_parse(&op->tool.body, s, strlen(s), oid);
        } else if (op->kind == WF_MAP) {
            char bid[WF_MAX_ID_LEN + 8];
            snprintf(bid, sizeof bid, "%s.body", oid);
            rc =
                cJSON_IsObject(it)
                    ? parse_op(wf, it, idx, bid, depth + 1, 0)
                    : he_set(HE_EFORMAT, "op '%s': map 'body' must be an operator object", oid);
        } else {
            if (!cJSON_IsArray(it))
                return he_set(HE_EFORMAT, "op '%s': loop 'body' must be an array of operators",
                              oid);
            size_t pos = 0;
            for (const cJSON *e = it->child; e && !rc; e = e->next)
                rc = parse_op(wf, e, idx, NULL, depth + 1, pos++);
        }
        break;
    case F_OVER: {
        wf_part_kind k;
        const char *name;
        if ((rc = j_str(it, oid, &s))) break;
        if (j_ref(s, &k, &name))
            return he_set(HE_EFORMAT, "op '%s': 'over' must be \"op.ID\" or \"input.NAME\"",
                          oid);
        op->map.over.kind = k;
        rc = wf_set_str(&op->map.over.s, name);
        op->map.over.len = strlen(name);
        break;
    }
    case F_WIDTH: rc = j_u32(it, oid, &op->map.max_width); break;
    case F_SPLIT:
        if ((rc = j_str(it, oid, &s))) break;
        if (strcmp(s, "auto") == 0)
            op->map.split = WF_SPLIT_AUTO;
        else if (strcmp(s, "lines") == 0)
            op->map.split = WF_SPLIT_LINES;
        else if (strcmp(s, "json") == 0)
            op->map.split = WF_SPLIT_JSON;
        else
            rc = he_set(HE_EFORMAT, "op '%s': 'split' must be auto, lines or json", oid);
        break;
    case F_PARTS: *parts = it; break;
    case F_SEP:
        if (!(rc = j_str(it, oid, &s))) rc = wf_set_str(&op->join.separator, s);
        break;
    case F_REFS:
        if (!cJSON_IsArray(it))
            return he_set(HE_EFORMAT, "op '%s': 'refs' must be an array", oid);
        *refs = it;
        break;
    case F_UNTIL:
        if (!(rc = j_str(it, oid, &s)))
            rc = wf_set_str(&op->loop.until_contains, *s ? s : NULL);
        break;
    case F_ROUNDS: rc = j_u32(it, oid, &op->loop.max_rounds); break;
    case F_OUTPUT:
        if (!(rc = j_str(it, oid, &s))) rc = wf_set_str(&op->loop.output_id, s);
        break;
    default: break;
    }
    return rc;
}

/* A join's parts: its 'parts' template, or its 'refs' list joined by the
 * separator. 0 or an herr code. */
static int finish_join(wf_op *op, const cJSON *parts, const cJSON *refs) {
    const char *oid = op->id, *s = NULL;
    int rc;
    if (parts) {
        if ((rc = j_str(parts, oid, &s))) return rc;
        return wf_tmpl_parse(&op->join.parts, s, strlen(s), oid);
    }
    if (refs) { /* ref, separator, ref, ... */
        const char *sep = op->join.separator ? op->join.separator : "\n";
        for (const cJSON *e = refs->child; e; e = e->next) {
            wf_part_kind k;
            const char *name;
            if (!cJSON_IsString(e) || j_ref(e->valuestring, &k, &name))
                return he_set(HE_EFORMAT,
                              "op '%s': 'refs' entries must be \"op.ID\" or \"input.NAME\"", oid);
            if ((e != refs->child &&
                 (rc = wf_tmpl_add(&op->join.parts, WF_PART_TEXT, sep, strlen(sep)))) ||
                (rc = wf_tmpl_add(&op->join.parts, k, name, strlen(name))))
                return rc;
            if (op->join.parts.bytes > WF_MAX_PROMPT_BYTES)
                return he_set(HE_ELIMIT, "op '%s': parts longer than %u bytes", oid,
                              WF_MAX_PROMPT_BYTES);
        }
    }
    return 0;
}

/* The fields of operator idx (its id and type were read by parse_op): each
 * name checked against the kind, none twice, names starting with '_' skipped
 * as comments. 0 or an herr code. */
static int parse_fields(wf_t *wf, const cJSON *o, int idx, int depth) {
    const cJSON *refs = NULL, *parts = NULL;
    uint64_t seen = 0;
    int rc = 0;
    for (const cJSON *it = o->child; it && !rc; it = it->next) {
        const char *oid = wf->ops[idx]->id; /* wf->ops may move as a body adds operators */
        if (!it->string) return he_set(HE_EFORMAT, "op '%s': field without a name", oid);
        int f = 0;
        while (f < F_COUNT && strcmp(it->string, fields[f].name) != 0) f++;
        if (f == F_COUNT && it->string[0] == '_') continue; /* "_comment" and friends */
        if (f == F_COUNT || !(fields[f].kinds & K(wf->ops[idx]->kind)))
            return he_set(HE_EFORMAT, "op '%s': unknown field '%.64s' for a %s op", oid, it->string,
                          wf_kind_name(wf->ops[idx]->kind));
        if (seen & (1ull << f))
            return he_set(HE_EFORMAT, "op '%s': duplicate field '%s'", oid, it->string);
        seen |= 1ull << f;
        rc = parse_leaf_field(wf->ops[idx], f, it);
        if (rc == 1) rc = parse_struct_field(wf, idx, f, it, depth, &parts, &refs);
    }
    if (rc) return rc;
    if (parts && refs)
        return he_set(HE_EFORMAT, "op '%s': give either 'parts' or 'refs', not both", wf->ops[idx]->id);
    return finish_join(wf->ops[idx], parts, refs);
}

static int parse_op(wf_t *wf, const cJSON *o, int parent, const char *default_id, int depth,
                    size_t pos) {
    const char *where = parent < 0 ? "top level" : wf->ops[parent]->id;
    if (depth > WF_MAX_DEPTH)
        return he_set(HE_EFORMAT,
                      "op #%zu in '%s': operators nest too deep (loop > map > op at most)", pos,
                      where);
    if (!cJSON_IsObject(o))
        return he_set(HE_EFORMAT, "op #%zu in '%s': an operator must be a JSON object", pos, where);
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *jty = cJSON_GetObjectItemCaseSensitive(o, "type");
    const char *id = default_id;
    if (jid) {
        if (!cJSON_IsString(jid))
            return he_set(HE_EFORMAT, "op #%zu in '%s': 'id' must be a string", pos, where);
        id = jid->valuestring;
    }
    if (!id) return he_set(HE_EFORMAT, "op #%zu in '%s' has no 'id'", pos, where);
    if (!wf_valid_name(id))
        return he_set(HE_EFORMAT, "operator id '%.64s' is not valid (want [A-Za-z0-9_.-]{1,%d})",
                      id, WF_MAX_ID_LEN);
    if (!cJSON_IsString(jty)) return he_set(HE_EFORMAT, "op '%s' has no string 'type'", id);
    int kind = wf_kind_from_name(jty->valuestring);
    if (kind < 0)
        return op_err(id, he_set(HE_EUNKNOWN,
                                 "op '%s': unknown operator type '%.64s' (want llm, tool, map, join "
                                 "or loop)",
                                 id, jty->valuestring));
    int idx = wf_add_op(wf, parent, id, (wf_kind)kind);
    if (idx < 0) return idx;
    int rc = parse_fields(wf, o, idx, depth);
    return rc ? op_err(wf->ops[idx]->id, rc) : 0;
}

static int parse_inputs(wf_t *wf, const cJSON *arr) {
    if (!cJSON_IsArray(arr)) return he_set(HE_EFORMAT, "workflow: 'inputs' must be an array");
    for (const cJSON *e = arr->child; e; e = e->next) {
        int rc;
        if (cJSON_IsString(e)) {
            rc = wf_add_input(wf, e->valuestring, NULL, NULL);
        } else if (cJSON_IsObject(e)) {
            const char *name = NULL, *def = NULL, *desc = NULL;
            for (const cJSON *f = e->child; f; f = f->next) {
                const char **dst = NULL;
                if (f->string && strcmp(f->string, "name") == 0)
                    dst = &name;
                else if (f->string && strcmp(f->string, "default") == 0)
                    dst = &def;
                else if (f->string && strcmp(f->string, "description") == 0)
                    dst = &desc;
                else if (f->string && f->string[0] == '_')
                    continue;
                else
                    return he_set(HE_EFORMAT, "workflow: unknown input field '%.64s'",
                                  f->string ? f->string : "");
                if (!cJSON_IsString(f) || *dst)
                    return he_set(HE_EFORMAT, "workflow: input field '%s' must be one string",
                                  f->string);
                *dst = f->valuestring;
            }
            if (!name) return he_set(HE_EFORMAT, "workflow: an input object has no 'name'");
            rc = wf_add_input(wf, name, def, desc);
        } else {
            rc = he_set(HE_EFORMAT, "workflow: each input must be a name or {\"name\":...}");
        }
        if (rc) return rc;
    }
    return 0;
}

int wf_parse_json(const char *text, size_t len, wf_t **out) {
    if (!out) return he_set(HE_EINVAL, "wf_parse_json: NULL out");
    *out = NULL;
    he_set_op(NULL); /* an error below names its operator, if any */
    if (!text && len) return he_set(HE_EINVAL, "wf_parse_json: NULL text");
    if (len > WF_MAX_JSON_BYTES)
        return he_set(HE_ELIMIT, "workflow JSON is %zu bytes (limit %u)", len, WF_MAX_JSON_BYTES);
    /* cJSON reads a NUL-terminated private copy, so it can never run past the
     * caller's buffer whatever the input looks like. */
    char *buf = copy_text(text, len);
    if (!buf) return he_set(HE_ENOMEM, "workflow: out of memory");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 0);
    if (!root) {
        size_t at = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        free(buf);
        return he_set(HE_EFORMAT, "workflow: invalid JSON near byte %zu", at);
    }
    /* cJSON stops after the first value; only whitespace (or NULs) may follow */
    for (const char *p = end; p && p < buf + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != 0) {
            size_t at = (size_t)(p - buf);
            cJSON_Delete(root);
            free(buf);
            return he_set(HE_EFORMAT, "workflow: trailing data after the JSON at byte %zu", at);
        }
    free(buf);
    int rc = 0;
    wf_t *wf = wf_new();
    if (!wf) {
        cJSON_Delete(root);
        return HE_ENOMEM;
    }
    if (!cJSON_IsObject(root)) {
        rc = he_set(HE_EFORMAT, "workflow: the top level must be a JSON object");
        goto out;
    }
    const cJSON *ops = NULL;
    unsigned seen = 0;
    static const char *const top[] = {"name", "description", "inputs",
                                      "ops",  "output",      "allow_hosts"};
    for (const cJSON *it = root->child; it && !rc; it = it->next) {
        unsigned f = 0;
        while (f < 6 && !(it->string && strcmp(it->string, top[f]) == 0)) f++;
        if (f == 6) {
            if (it->string && it->string[0] == '_') continue;
            rc =
                he_set(HE_EFORMAT, "workflow: unknown field '%.64s'", it->string ? it->string : "");
            break;
        }
        if (seen & (1u << f)) {
            rc = he_set(HE_EFORMAT, "workflow: duplicate field '%s'", top[f]);
            break;
        }
        seen |= 1u << f;
        if (f == 2) {
            rc = parse_inputs(wf, it);
        } else if (f == 3) {
            ops = it;
        } else if (f == 5) {
            if (!cJSON_IsArray(it)) {
                rc = he_set(HE_EFORMAT, "workflow: 'allow_hosts' must be an array of strings");
                break;
            }
            for (const cJSON *e = it->child; e && !rc; e = e->next)
                rc = cJSON_IsString(e)
                         ? wf_add_host(wf, e->valuestring)
                         : he_set(HE_EFORMAT, "workflow: 'allow_hosts' must hold strings");
        } else {
            if (!cJSON_IsString(it)) {
                rc = he_set(HE_EFORMAT, "workflow: '%s' must be a string", top[f]);
                break;
            }
            char **dst = f == 0 ? &wf->name : f == 1 ? &wf->description : &wf->output_id;
            rc = wf_set_str(dst, it->valuestring);
        }
    }
    if (rc) goto out;
    if (!cJSON_IsArray(ops)) {
        rc = he_set(HE_EFORMAT, "workflow: 'ops' must be an array of operators");
        goto out;
    }
    size_t pos = 0;
    for (const cJSON *e = ops->child; e && !rc; e = e->next)
        rc = parse_op(wf, e, -1, NULL, 0, pos++);
    if (!rc) rc = wf_validate(wf);
out:
    cJSON_Delete(root);
    if (rc)
        wf_destroy(&wf);
    else
        *out = wf;
    return rc;
}
