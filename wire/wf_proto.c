/* wf_proto: wf_t <-> Helium__Workflow; see wf_proto.h.
 *
 * from_proto walks the message recursively (depth bounded by WF_MAX_DEPTH)
 * and leaves every semantic check to wf_validate. to_proto allocates each
 * message, array and string with malloc so protobuf_c_message_free_unpacked
 * can free a partial tree after an allocation failure.
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strnlen, strncasecmp */
#include "wf_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herr.h"
#include "wfmsg.h"

/* ------------------------------------------------------------- proto -> wf */

static const char *nz(const char *s) { return s && *s ? s : NULL; }

static int tmpl_from(wf_tmpl *t, Helium__TemplatePart *const *v, size_t n, const char *oid) {
    for (size_t k = 0; k < n; k++) {
        const Helium__TemplatePart *p = v[k];
        int rc;
        if (!p) return he_set(HE_EFORMAT, "op '%s': missing template part", oid);
        switch (p->part_case) {
        case HELIUM__TEMPLATE_PART__PART_TEXT:
            rc = p->text ? wf_tmpl_add(t, WF_PART_TEXT, p->text, strlen(p->text)) : 0;
            break;
        case HELIUM__TEMPLATE_PART__PART_INPUT_REF:
            rc = wf_tmpl_add(t, WF_PART_INPUT, p->input_ref ? p->input_ref : "",
                             p->input_ref ? strlen(p->input_ref) : 0);
            break;
        case HELIUM__TEMPLATE_PART__PART_OP_REF:
            rc = wf_tmpl_add(t, WF_PART_OP, p->op_ref ? p->op_ref : "",
                             p->op_ref ? strlen(p->op_ref) : 0);
            break;
        case HELIUM__TEMPLATE_PART__PART_ITEM:
            rc = p->item ? wf_tmpl_add(t, WF_PART_ITEM, NULL, 0)
                         : he_set(HE_EFORMAT, "op '%s': template part 'item' is false", oid);
            break;
        case HELIUM__TEMPLATE_PART__PART_PREV:
            rc = p->prev ? wf_tmpl_add(t, WF_PART_PREV, NULL, 0)
                         : he_set(HE_EFORMAT, "op '%s': template part 'prev' is false", oid);
            break;
        default: rc = he_set(HE_EFORMAT, "op '%s': empty or unknown template part", oid); break;
        }
        if (rc) return rc;
        if (t->bytes > WF_MAX_PROMPT_BYTES)
            return he_set(HE_ELIMIT, "op '%s': template longer than %u bytes", oid,
                          WF_MAX_PROMPT_BYTES);
    }
    return 0;
}

static int op_from(wf_t *wf, const Helium__Operator *pb, int parent, const char *default_id,
                   int depth);

static int op_fields(wf_t *wf, const Helium__Operator *pb, int idx, int depth) {
    wf_op *op = wf->ops[idx];
    const char *oid = op->id;
    int rc = 0;
    if ((rc = wf_set_str(&op->description, nz(pb->description)))) return rc;
    switch (pb->kind_case) {
    case HELIUM__OPERATOR__KIND_LLM: {
        const Helium__LlmOp *l = pb->llm;
        if ((rc = tmpl_from(&op->llm.prompt, l->prompt, l->n_prompt, oid)) ||
            (rc = wf_set_str(&op->llm.model, nz(l->model))))
            return rc;
        for (size_t k = 0; k < l->n_messages && !rc; k++) { /* chat messages (common/wfmsg.h) */
            const Helium__ChatMessage *m = l->messages[k];
            if (!m) rc = he_set(HE_EFORMAT, "op '%s': empty chat message", oid);
            else if (!(rc = wfmsg_add(op, nz(m->role), NULL, 0)))
                rc = tmpl_from(&op->llm.messages[op->llm.n_messages - 1].content, m->content, m->n_content, oid);
        }
        op->llm.no_special = l->no_special;
        if (rc) return rc;
        if (l->sampling) {
            op->llm.sampling.temperature = l->sampling->temperature;
            op->llm.sampling.top_k = l->sampling->top_k;
            op->llm.sampling.top_p = l->sampling->top_p == 0 ? 1.0f : l->sampling->top_p;
            op->llm.sampling.seed = l->sampling->seed;
        }
        if (l->max_tokens) op->llm.max_tokens = l->max_tokens;
        for (size_t k = 0; k < l->n_stop && !rc; k++)
            rc = wf_add_stop(op, l->stop[k] ? l->stop[k] : "");
        return rc;
    }
    case HELIUM__OPERATOR__KIND_TOOL: {
        const Helium__ToolOp *t = pb->tool;
        if (nz(t->method)) {
            char m[8] = {0};
            size_t n = strlen(t->method);
            if (n >= sizeof m) return he_set(HE_EFORMAT, "op '%s': bad method", oid);
            for (size_t k = 0; k < n; k++)
                m[k] = (char)(t->method[k] >= 'a' && t->method[k] <= 'z' ? t->method[k] - 32
                                                                         : t->method[k]);
            if ((rc = wf_set_str(&op->tool.method, m))) return rc;
        }
        if ((rc = tmpl_from(&op->tool.url, t->url, t->n_url, oid)) ||
            (rc = tmpl_from(&op->tool.body, t->body, t->n_body, oid)))
            return rc;
        for (size_t k = 0; k < t->n_headers && !rc; k++) {
            const Helium__ToolOp__HeadersEntry *h = t->headers[k];
            rc = h && h->key && h->value ? wf_add_header(op, h->key, h->value)
                                         : he_set(HE_EFORMAT, "op '%s': bad header entry", oid);
        }
        if (t->timeout_ms) op->tool.timeout_ms = t->timeout_ms;
        if (t->max_response_bytes) op->tool.max_response_bytes = t->max_response_bytes;
        return rc;
    }
    case HELIUM__OPERATOR__KIND_MAP: {
        const Helium__MapOp *m = pb->map;
        const char *over = NULL;
        if (m->over_case == HELIUM__MAP_OP__OVER_OVER_OP) {
            op->map.over.kind = WF_PART_OP;
            over = m->over_op;
        } else if (m->over_case == HELIUM__MAP_OP__OVER_OVER_INPUT) {
            op->map.over.kind = WF_PART_INPUT;
            over = m->over_input;
        }
        if (over) {
            if ((rc = wf_set_str(&op->map.over.s, over))) return rc;
            op->map.over.len = strlen(over);
        }
        if (m->max_width) op->map.max_width = m->max_width;
        switch (m->split) {
        case HELIUM__LIST_SPLIT__LIST_SPLIT_AUTO: op->map.split = WF_SPLIT_AUTO; break;
        case HELIUM__LIST_SPLIT__LIST_SPLIT_LINES: op->map.split = WF_SPLIT_LINES; break;
        case HELIUM__LIST_SPLIT__LIST_SPLIT_JSON: op->map.split = WF_SPLIT_JSON; break;
        default: return he_set(HE_EFORMAT, "op '%s': unknown list split %d", oid, (int)m->split);
        }
        if (m->body) {
            char bid[WF_MAX_ID_LEN + 8];
            snprintf(bid, sizeof bid, "%s.body", oid);
            rc = op_from(wf, m->body, idx, bid, depth + 1);
        }
        return rc;
    }
    case HELIUM__OPERATOR__KIND_JOIN: {
        const Helium__JoinOp *j = pb->join;
        if ((rc = tmpl_from(&op->join.parts, j->parts, j->n_parts, oid))) return rc;
        return wf_set_str(&op->join.separator, nz(j->separator));
    }
    case HELIUM__OPERATOR__KIND_LOOP: {
        const Helium__LoopOp *l = pb->loop;
        if ((rc = wf_set_str(&op->loop.until_contains, nz(l->until_contains))) ||
            (rc = wf_set_str(&op->loop.output_id, nz(l->output))))
            return rc;
        if (l->max_rounds) op->loop.max_rounds = l->max_rounds;
        for (size_t k = 0; k < l->n_body && !rc; k++)
            rc = op_from(wf, l->body[k], idx, NULL, depth + 1);
        return rc;
    }
    default: return he_set(HE_EUNKNOWN, "op '%s': unknown operator kind", oid);
    }
}

static wf_kind kind_of(const Helium__Operator *pb) {
    switch (pb->kind_case) {
    case HELIUM__OPERATOR__KIND_LLM: return pb->llm ? WF_LLM : WF_KIND_COUNT;
    case HELIUM__OPERATOR__KIND_TOOL: return pb->tool ? WF_TOOL : WF_KIND_COUNT;
    case HELIUM__OPERATOR__KIND_MAP: return pb->map ? WF_MAP : WF_KIND_COUNT;
    case HELIUM__OPERATOR__KIND_JOIN: return pb->join ? WF_JOIN : WF_KIND_COUNT;
    case HELIUM__OPERATOR__KIND_LOOP: return pb->loop ? WF_LOOP : WF_KIND_COUNT;
    default: return WF_KIND_COUNT;
    }
}

static int op_from(wf_t *wf, const Helium__Operator *pb, int parent, const char *default_id,
                   int depth) {
    const char *where = parent < 0 ? "top level" : wf->ops[parent]->id;
    if (!pb) return he_set(HE_EFORMAT, "missing operator in '%s'", where);
    if (depth > WF_MAX_DEPTH)
        return he_set(HE_EFORMAT, "operators in '%s' nest too deep (loop > map > op at most)",
                      where);
    const char *id = nz(pb->id) ? pb->id : default_id;
    if (!id) return he_set(HE_EFORMAT, "an operator in '%s' has no id", where);
    if (!wf_valid_name(id))
        return he_set(HE_EFORMAT, "operator id '%.64s' is not valid (want [A-Za-z0-9_.-]{1,%d})",
                      id, WF_MAX_ID_LEN);
    wf_kind kind = kind_of(pb);
    if (kind == WF_KIND_COUNT) {
        he_set(HE_EUNKNOWN, "op '%s': unknown operator kind (unset, or from a newer protocol)", id);
        he_set_op(id);
        return HE_EUNKNOWN;
    }
    int idx = wf_add_op(wf, parent, id, kind);
    if (idx < 0) return idx;
    int rc = op_fields(wf, pb, idx, depth);
    if (rc && !*he_op()) he_set_op(wf->ops[idx]->id); /* the innermost failing op is the subject */
    return rc;
}

int wfp_from_proto(const Helium__Workflow *pb, wf_t **out) {
    if (!out) return he_set(HE_EINVAL, "wfp_from_proto: NULL out");
    *out = NULL;
    he_set_op(NULL); /* an error below names its operator, if any */
    if (!pb) return he_set(HE_EINVAL, "wfp_from_proto: NULL workflow");
    if (pb->protocol_version != 0 && pb->protocol_version != HELIUM__PROTOCOL__PROTOCOL_CURRENT)
        return he_set(HE_EPROTO, "workflow: protocol_version %u is not %d", pb->protocol_version,
                      HELIUM__PROTOCOL__PROTOCOL_CURRENT);
    if (pb->n_ops > WF_MAX_OPS)
        return he_set(HE_ELIMIT, "workflow has %zu operators (limit %d)", pb->n_ops, WF_MAX_OPS);
    wf_t *wf = wf_new();
    if (!wf) return HE_ENOMEM;
    int rc = 0;
    if ((rc = wf_set_str(&wf->name, nz(pb->name))) ||
        (rc = wf_set_str(&wf->description, nz(pb->description))) ||
        (rc = wf_set_str(&wf->output_id, nz(pb->output))))
        goto out;
    for (size_t k = 0; k < pb->n_inputs && !rc; k++) {
        const Helium__InputDecl *in = pb->inputs[k];
        if (!in || !in->name) {
            rc = he_set(HE_EFORMAT, "workflow: bad input declaration");
            break;
        }
        rc = wf_add_input(wf, in->name,
                          in->has_default ? (in->default_value ? in->default_value : "") : NULL,
                          nz(in->description));
    }
    for (size_t k = 0; k < pb->n_allow_hosts && !rc; k++)
        rc = wf_add_host(wf, pb->allow_hosts[k] ? pb->allow_hosts[k] : "");
    for (size_t k = 0; k < pb->n_ops && !rc; k++) rc = op_from(wf, pb->ops[k], -1, NULL, 0);
    if (!rc) rc = wf_validate(wf);
out:
    if (rc)
        wf_destroy(&wf);
    else
        *out = wf;
    return rc;
}

/* ------------------------------------------------------------- wf -> proto */

typedef struct {
    const wf_t *wf;
    int **kids;     /* (n_ops) body ops of each op, declaration order */
    size_t *n_kids; /* (n_ops) */
    bool oom;
} tp_ctx;

static char *ps(tp_ctx *c, const char *s) {
    char *p = strdup(s ? s : "");
    if (!p) c->oom = true;
    return p;
}

static void *pal(tp_ctx *c, size_t n, size_t sz) {
    if (!n) return NULL;
    void *p = calloc(n, sz);
    if (!p) c->oom = true;
    return p;
}

/* A malloc'd, initialized message of type d; NULL (and c->oom) on failure. */
static void *pnew(tp_ctx *c, const ProtobufCMessageDescriptor *d) {
    void *m = malloc(d->sizeof_message);
    if (!m) {
        c->oom = true;
        return NULL;
    }
    protobuf_c_message_init(d, m);
    return m;
}

static Helium__TemplatePart **tmpl_to(tp_ctx *c, const wf_tmpl *t, size_t *n_out) {
    Helium__TemplatePart **v = pal(c, t->n, sizeof *v);
    if (!v) return NULL;
    *n_out = t->n;
    for (size_t k = 0; k < t->n; k++) {
        Helium__TemplatePart *p = pnew(c, &helium__template_part__descriptor);
        if (!p) break;
        v[k] = p;
        const wf_part *w = &t->v[k];
        switch (w->kind) {
        case WF_PART_TEXT:
            p->part_case = HELIUM__TEMPLATE_PART__PART_TEXT;
            p->text = ps(c, w->s);
            break;
        case WF_PART_INPUT:
            p->part_case = HELIUM__TEMPLATE_PART__PART_INPUT_REF;
            p->input_ref = ps(c, w->s);
            break;
        case WF_PART_OP:
            p->part_case = HELIUM__TEMPLATE_PART__PART_OP_REF;
            p->op_ref = ps(c, w->s);
            break;
        case WF_PART_ITEM:
            p->part_case = HELIUM__TEMPLATE_PART__PART_ITEM;
            p->item = 1;
            break;
        case WF_PART_PREV:
            p->part_case = HELIUM__TEMPLATE_PART__PART_PREV;
            p->prev = 1;
            break;
        }
    }
    return v;
}

static Helium__Operator *op_to(tp_ctx *c, int i) {
    const wf_op *op = c->wf->ops[i];
    Helium__Operator *pb = pnew(c, &helium__operator__descriptor);
    if (!pb) return NULL;
    pb->id = ps(c, op->id);
    if (op->description) pb->description = ps(c, op->description);
    if (c->wf->valid && op->n_deps && (pb->deps = pal(c, op->n_deps, sizeof *pb->deps))) {
        pb->n_deps = op->n_deps;
        for (size_t k = 0; k < op->n_deps; k++) pb->deps[k] = ps(c, c->wf->ops[op->deps[k]]->id);
    }
    switch (op->kind) {
    case WF_LLM: {
        Helium__LlmOp *l = pnew(c, &helium__llm_op__descriptor);
        if (!l) break;
        pb->kind_case = HELIUM__OPERATOR__KIND_LLM;
        pb->llm = l;
        if (!op->llm.prompt_derived) l->prompt = tmpl_to(c, &op->llm.prompt, &l->n_prompt);
        if (op->llm.n_messages && (l->messages = pal(c, op->llm.n_messages, sizeof *l->messages))) {
            l->n_messages = op->llm.n_messages;
            for (size_t k = 0; k < op->llm.n_messages; k++) {
                Helium__ChatMessage *m = pnew(c, &helium__chat_message__descriptor);
                if (!(l->messages[k] = m)) break;
                m->role = ps(c, op->llm.messages[k].role);
                m->content = tmpl_to(c, &op->llm.messages[k].content, &m->n_content);
            }
        }
        l->no_special = op->llm.no_special;
        if (op->llm.model) l->model = ps(c, op->llm.model);
        l->max_tokens = op->llm.max_tokens;
        if ((l->sampling = pnew(c, &helium__sampling__descriptor))) {
            l->sampling->temperature = op->llm.sampling.temperature;
            l->sampling->top_k = op->llm.sampling.top_k;
            l->sampling->top_p = op->llm.sampling.top_p;
            l->sampling->seed = op->llm.sampling.seed;
        }
        if ((l->stop = pal(c, op->llm.n_stop, sizeof *l->stop))) {
            l->n_stop = op->llm.n_stop;
            for (size_t k = 0; k < op->llm.n_stop; k++) l->stop[k] = ps(c, op->llm.stop[k]);
        }
        break;
    }
    case WF_TOOL: {
        Helium__ToolOp *t = pnew(c, &helium__tool_op__descriptor);
        if (!t) break;
        pb->kind_case = HELIUM__OPERATOR__KIND_TOOL;
        pb->tool = t;
        if (op->tool.method) t->method = ps(c, op->tool.method);
        t->url = tmpl_to(c, &op->tool.url, &t->n_url);
        t->body = tmpl_to(c, &op->tool.body, &t->n_body);
        t->timeout_ms = op->tool.timeout_ms;
        t->max_response_bytes = op->tool.max_response_bytes;
        if ((t->headers = pal(c, op->tool.n_headers, sizeof *t->headers))) {
            t->n_headers = op->tool.n_headers;
            for (size_t k = 0; k < op->tool.n_headers; k++) {
                Helium__ToolOp__HeadersEntry *h =
                    pnew(c, &helium__tool_op__headers_entry__descriptor);
                if (!h) break;
                t->headers[k] = h;
                h->key = ps(c, op->tool.headers[k].key);
                h->value = ps(c, op->tool.headers[k].value);
            }
        }
        break;
    }
    case WF_MAP: {
        Helium__MapOp *m = pnew(c, &helium__map_op__descriptor);
        if (!m) break;
        pb->kind_case = HELIUM__OPERATOR__KIND_MAP;
        pb->map = m;
        if (op->map.over.kind == WF_PART_OP && op->map.over.s) {
            m->over_case = HELIUM__MAP_OP__OVER_OVER_OP;
            m->over_op = ps(c, op->map.over.s);
        } else if (op->map.over.kind == WF_PART_INPUT && op->map.over.s) {
            m->over_case = HELIUM__MAP_OP__OVER_OVER_INPUT;
            m->over_input = ps(c, op->map.over.s);
        }
        m->max_width = op->map.max_width;
        m->split = op->map.split == WF_SPLIT_LINES  ? HELIUM__LIST_SPLIT__LIST_SPLIT_LINES
                   : op->map.split == WF_SPLIT_JSON ? HELIUM__LIST_SPLIT__LIST_SPLIT_JSON
                                                    : HELIUM__LIST_SPLIT__LIST_SPLIT_AUTO;
        if (c->n_kids[i]) m->body = op_to(c, c->kids[i][0]);
        break;
    }
    case WF_JOIN: {
        Helium__JoinOp *j = pnew(c, &helium__join_op__descriptor);
        if (!j) break;
        pb->kind_case = HELIUM__OPERATOR__KIND_JOIN;
        pb->join = j;
        j->parts = tmpl_to(c, &op->join.parts, &j->n_parts);
        if (op->join.separator) j->separator = ps(c, op->join.separator);
        break;
    }
    case WF_LOOP: {
        Helium__LoopOp *l = pnew(c, &helium__loop_op__descriptor);
        if (!l) break;
        pb->kind_case = HELIUM__OPERATOR__KIND_LOOP;
        pb->loop = l;
        if (op->loop.until_contains) l->until_contains = ps(c, op->loop.until_contains);
        if (op->loop.output_id) l->output = ps(c, op->loop.output_id);
        l->max_rounds = op->loop.max_rounds;
        if ((l->body = pal(c, c->n_kids[i], sizeof *l->body))) {
            l->n_body = c->n_kids[i];
            for (size_t k = 0; k < c->n_kids[i] && !c->oom; k++)
                l->body[k] = op_to(c, c->kids[i][k]);
        }
        break;
    }
    default: break;
    }
    return pb;
}

int wfp_to_proto(const wf_t *wf, Helium__Workflow **out) {
    if (!out) return he_set(HE_EINVAL, "wfp_to_proto: NULL out");
    *out = NULL;
    if (!wf) return he_set(HE_EINVAL, "wfp_to_proto: NULL workflow");
    size_t n = wf->n_ops;
    tp_ctx c = {.wf = wf};
    c.kids = calloc(n + 1, sizeof *c.kids);
    c.n_kids = calloc(n + 1, sizeof *c.n_kids);
    int *flat = malloc((n + 1) * sizeof *flat);
    size_t *fill = calloc(n + 1, sizeof *fill);
    Helium__Workflow *pb = NULL;
    int rc = HE_ENOMEM;
    if (!c.kids || !c.n_kids || !flat || !fill) goto fail;
    /* children per op: kids[p] points into flat; top-level ops are kids of slot n */
    for (size_t i = 0; i < n; i++) {
        int p = wf->ops[i]->parent;
        if (p < -1 || p >= (int)i) {
            rc = he_set(HE_EFORMAT, "wfp_to_proto: op '%s' has a bad parent", wf->ops[i]->id);
            goto fail;
        }
        c.n_kids[p < 0 ? n : (size_t)p]++;
    }
    for (size_t i = 0, off = 0; i <= n; i++) {
        c.kids[i] = flat + off;
        off += c.n_kids[i];
    }
    for (size_t i = 0; i < n; i++) {
        int p = wf->ops[i]->parent;
        size_t s = p < 0 ? n : (size_t)p;
        c.kids[s][fill[s]++] = (int)i;
    }
    if (!(pb = pnew(&c, &helium__workflow__descriptor))) goto fail;
    pb->protocol_version = HELIUM__PROTOCOL__PROTOCOL_CURRENT;
    if (wf->name) pb->name = ps(&c, wf->name);
    if (wf->description) pb->description = ps(&c, wf->description);
    if (wf->output_id) pb->output = ps(&c, wf->output_id);
    if ((pb->allow_hosts = pal(&c, wf->n_allow_hosts, sizeof *pb->allow_hosts))) {
        pb->n_allow_hosts = wf->n_allow_hosts;
        for (size_t k = 0; k < wf->n_allow_hosts; k++)
            pb->allow_hosts[k] = ps(&c, wf->allow_hosts[k]);
    }
    if ((pb->inputs = pal(&c, wf->n_inputs, sizeof *pb->inputs))) {
        pb->n_inputs = wf->n_inputs;
        for (size_t k = 0; k < wf->n_inputs; k++) {
            Helium__InputDecl *d = pnew(&c, &helium__input_decl__descriptor);
            if (!d) break;
            pb->inputs[k] = d;
            d->name = ps(&c, wf->inputs[k].name);
            d->has_default = wf->inputs[k].has_default;
            if (wf->inputs[k].has_default) d->default_value = ps(&c, wf->inputs[k].def);
            if (wf->inputs[k].description) d->description = ps(&c, wf->inputs[k].description);
        }
    }
    if ((pb->ops = pal(&c, c.n_kids[n], sizeof *pb->ops))) {
        pb->n_ops = c.n_kids[n];
        for (size_t k = 0; k < c.n_kids[n] && !c.oom; k++) pb->ops[k] = op_to(&c, c.kids[n][k]);
    }
    if (!c.oom) rc = 0;
fail:
    if (rc == HE_ENOMEM) he_set(HE_ENOMEM, "wfp_to_proto: out of memory");
    if (rc) wfp_free(&pb);
    free(c.kids);
    free(c.n_kids);
    free(flat);
    free(fill);
    *out = pb;
    return rc;
}

void wfp_free(Helium__Workflow **pb) {
    if (!pb || !*pb) return;
    protobuf_c_message_free_unpacked(&(*pb)->base, NULL);
    *pb = NULL;
}
