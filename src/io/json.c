#include "io/json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/binary.h"

typedef struct parser {
    const unsigned char *text;
    size_t len, pos;
    const char *origin;
    /* strtod follows the process locale, where the decimal point may be a
     * comma; numbers are converted under a "C" locale made on first use. */
    locale_t c_locale;
} parser;

static sm_status syntax_error(const parser *ps, size_t at, const char *what)
{
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: invalid JSON at byte %zu: %s", ps->origin, at, what);
}

static sm_status out_of_memory(const parser *ps)
{
    return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory parsing JSON", ps->origin);
}

static void skip_whitespace(parser *ps)
{
    while (ps->pos < ps->len) {
        unsigned char c = ps->text[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

static int literal_at(const parser *ps, const char *word)
{
    size_t n = strlen(word);
    return ps->len - ps->pos >= n && memcmp(ps->text + ps->pos, word, n) == 0;
}

/* ---- strings ---- */

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(unsigned char *dst, unsigned cp)
{
    if (cp < 0x80) {
        dst[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        dst[0] = (unsigned char)(0xc0 | cp >> 6);
        dst[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (unsigned char)(0xe0 | cp >> 12);
        dst[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        dst[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (unsigned char)(0xf0 | cp >> 18);
    dst[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    dst[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    dst[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the well-formed UTF-8 sequence at p (at most avail bytes), or 0.
 * Overlong forms, surrogates and code points past U+10FFFF are ill-formed. */
static size_t utf8_sequence(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return n;
}

/* Decodes the \uXXXX escape (or surrogate pair) at ps->pos, which points at
 * the 'u', into dst. */
static sm_status decode_unicode_escape(parser *ps, size_t end, unsigned char *dst, size_t *written)
{
    size_t at = ps->pos - 1;
    unsigned cp;
    if (end - ps->pos < 5 || !hex4(ps->text + ps->pos + 1, &cp))
        return syntax_error(ps, at, "\\u must be followed by four hex digits");
    ps->pos += 5;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return syntax_error(ps, at, "unpaired low surrogate in \\u escape");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        unsigned low;
        if (end - ps->pos < 6 || ps->text[ps->pos] != '\\' || ps->text[ps->pos + 1] != 'u' ||
            !hex4(ps->text + ps->pos + 2, &low) || low < 0xdc00 || low > 0xdfff)
            return syntax_error(ps, at, "high surrogate in \\u escape not followed by a low one");
        ps->pos += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    *written = put_utf8(dst, cp);
    return SEGMAMBA_OK;
}

static char escaped_char(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    }
    return 0;
}

/* Parses the string whose opening quote is at ps->pos into a fresh buffer.
 * The decoded text is never longer than the quoted source (an escape of n
 * bytes yields at most n bytes of UTF-8), so one allocation suffices. */
static sm_status parse_string(parser *ps, char **out, size_t *out_len)
{
    size_t start = ps->pos;
    size_t end = start + 1;
    while (end < ps->len && ps->text[end] != '"') end += ps->text[end] == '\\' ? 2 : 1;
    if (end >= ps->len) return syntax_error(ps, start, "unterminated string");

    unsigned char *buf = malloc(end - start);
    if (!buf) return out_of_memory(ps);
    size_t n = 0;
    sm_status st = SEGMAMBA_OK;
    ps->pos = start + 1;
    while (ps->pos < end && st == SEGMAMBA_OK) {
        unsigned char c = ps->text[ps->pos];
        if (c == '\\') {
            unsigned char e = ps->text[++ps->pos];
            if (e == 'u') {
                size_t w = 0;
                st = decode_unicode_escape(ps, end, buf + n, &w);
                n += w;
            } else if (escaped_char(e)) {
                buf[n++] = (unsigned char)escaped_char(e);
                ps->pos++;
            } else {
                st = syntax_error(ps, ps->pos - 1, "invalid escape sequence in string");
            }
        } else if (c < 0x20) {
            st = syntax_error(ps, ps->pos, "control character inside string (must be escaped)");
        } else {
            size_t k = utf8_sequence(ps->text + ps->pos, end - ps->pos);
            if (k == 0) {
                st = syntax_error(ps, ps->pos, "string is not valid UTF-8");
            } else {
                memcpy(buf + n, ps->text + ps->pos, k);
                n += k;
                ps->pos += k;
            }
        }
    }
    if (st != SEGMAMBA_OK) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    ps->pos = end + 1;
    *out = (char *)buf;
    *out_len = n;
    return SEGMAMBA_OK;
}

/* ---- numbers ---- */

static size_t skip_digits(const parser *ps, size_t i)
{
    while (i < ps->len && ps->text[i] >= '0' && ps->text[i] <= '9') i++;
    return i;
}

/* The exact value of an integer literal [begin, end) (optional '-', then
 * digits), or 0 when it does not fit in int64_t. */
static int exact_integer(const parser *ps, size_t begin, size_t end, int64_t *out)
{
    int negative = ps->text[begin] == '-';
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (size_t i = begin + (size_t)negative; i < end; i++) {
        unsigned d = ps->text[i] - '0';
        if (v > (limit - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = !negative ? (int64_t)v : v == limit ? INT64_MIN : -(int64_t)v;
    return 1;
}

static sm_status convert_double(parser *ps, size_t begin, size_t end, double *out)
{
    if (!ps->c_locale) {
        ps->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (!ps->c_locale) return out_of_memory(ps);
    }
    char *copy = malloc(end - begin + 1);
    if (!copy) return out_of_memory(ps);
    memcpy(copy, ps->text + begin, end - begin);
    copy[end - begin] = 0;
    locale_t previous = uselocale(ps->c_locale);
    double v = strtod(copy, NULL);
    uselocale(previous);
    free(copy);
    if (isinf(v)) return syntax_error(ps, begin, "number is too large for a double");
    *out = v;
    return SEGMAMBA_OK;
}

/* Follows the RFC grammar exactly: no leading '+', no leading zeros, digits
 * on both sides of '.', so that "01" or "1." are errors as elsewhere. */
static sm_status parse_number(parser *ps, sm_json *out)
{
    size_t begin = ps->pos, i = begin;
    if (i < ps->len && ps->text[i] == '-') i++;
    if (i >= ps->len || ps->text[i] < '0' || ps->text[i] > '9')
        return syntax_error(ps, begin, "invalid number");
    i = ps->text[i] == '0' ? i + 1 : skip_digits(ps, i);
    size_t int_end = i;
    if (i < ps->len && ps->text[i] == '.') {
        size_t d = skip_digits(ps, i + 1);
        if (d == i + 1) return syntax_error(ps, i, "expected a digit after '.'");
        i = d;
    }
    if (i < ps->len && (ps->text[i] == 'e' || ps->text[i] == 'E')) {
        size_t e = i + 1;
        if (e < ps->len && (ps->text[e] == '+' || ps->text[e] == '-')) e++;
        size_t d = skip_digits(ps, e);
        if (d == e) return syntax_error(ps, i, "expected a digit in the exponent");
        i = d;
    }
    out->type = SM_JSON_NUMBER;
    ps->pos = i;
    if (i == int_end && exact_integer(ps, begin, i, &out->integer)) {
        out->is_integer = 1;
        out->number = (double)out->integer;
        return SEGMAMBA_OK;
    }
    return convert_double(ps, begin, i, &out->number);
}

/* ---- arrays, objects, values ---- */

static sm_status parse_value(parser *ps, sm_json *out, int depth);

/* Steps over the separator after an element, setting *closed at the
 * closing bracket. */
static sm_status after_element(parser *ps, char close, int *closed)
{
    skip_whitespace(ps);
    if (ps->pos < ps->len && ps->text[ps->pos] == ',') {
        ps->pos++;
        *closed = 0;
        return SEGMAMBA_OK;
    }
    if (ps->pos < ps->len && ps->text[ps->pos] == (unsigned char)close) {
        ps->pos++;
        *closed = 1;
        return SEGMAMBA_OK;
    }
    return syntax_error(ps, ps->pos,
                        close == ']' ? "expected ',' or ']' in array"
                                     : "expected ',' or '}' in object");
}

/* Elements are appended as they are parsed, so on failure *out holds what
 * was built so far and sm_json_free releases it. */
static sm_status parse_array(parser *ps, sm_json *out, int depth)
{
    out->type = SM_JSON_ARRAY;
    ps->pos++;
    skip_whitespace(ps);
    if (ps->pos < ps->len && ps->text[ps->pos] == ']') {
        ps->pos++;
        return SEGMAMBA_OK;
    }
    size_t cap = 0;
    for (int closed = 0; !closed;) {
        sm_json *items = sm_grow(out->items, &cap, out->count + 1, sizeof *items);
        if (!items) return out_of_memory(ps);
        out->items = items;
        sm_json *item = &out->items[out->count];
        memset(item, 0, sizeof *item);
        out->count++;
        SM_TRY(parse_value(ps, item, depth + 1));
        SM_TRY(after_element(ps, ']', &closed));
    }
    return SEGMAMBA_OK;
}

static sm_status parse_object(parser *ps, sm_json *out, int depth)
{
    out->type = SM_JSON_OBJECT;
    ps->pos++;
    skip_whitespace(ps);
    if (ps->pos < ps->len && ps->text[ps->pos] == '}') {
        ps->pos++;
        return SEGMAMBA_OK;
    }
    size_t cap = 0;
    for (int closed = 0; !closed;) {
        skip_whitespace(ps);
        if (ps->pos >= ps->len || ps->text[ps->pos] != '"')
            return syntax_error(ps, ps->pos, "expected a string key in object");
        sm_json_member *members = sm_grow(out->members, &cap, out->count + 1, sizeof *members);
        if (!members) return out_of_memory(ps);
        out->members = members;
        sm_json_member *m = &out->members[out->count];
        memset(m, 0, sizeof *m);
        out->count++;
        SM_TRY(parse_string(ps, &m->key, &m->key_length));
        skip_whitespace(ps);
        if (ps->pos >= ps->len || ps->text[ps->pos] != ':')
            return syntax_error(ps, ps->pos, "expected ':' after object key");
        ps->pos++;
        SM_TRY(parse_value(ps, &m->value, depth + 1));
        SM_TRY(after_element(ps, '}', &closed));
    }
    return SEGMAMBA_OK;
}

static sm_status parse_value(parser *ps, sm_json *out, int depth)
{
    skip_whitespace(ps);
    if (ps->pos >= ps->len)
        return syntax_error(ps, ps->pos, "unexpected end of input, expected a value");
    unsigned char c = ps->text[ps->pos];
    if (c == '[' || c == '{') {
        if (depth >= SM_JSON_MAX_DEPTH)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: invalid JSON at byte %zu: nested deeper than %d levels", ps->origin,
                           ps->pos, SM_JSON_MAX_DEPTH);
        return c == '[' ? parse_array(ps, out, depth) : parse_object(ps, out, depth);
    }
    if (c == '"') {
        out->type = SM_JSON_STRING;
        return parse_string(ps, &out->string, &out->length);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps, out);
    static const struct {
        const char *word;
        sm_json_type type;
        int boolean;
    } literals[] = {
        {"true", SM_JSON_BOOL, 1}, {"false", SM_JSON_BOOL, 0}, {"null", SM_JSON_NULL, 0}};
    for (size_t i = 0; i < sizeof literals / sizeof literals[0]; i++) {
        if (literal_at(ps, literals[i].word)) {
            out->type = literals[i].type;
            out->boolean = literals[i].boolean;
            ps->pos += strlen(literals[i].word);
            return SEGMAMBA_OK;
        }
    }
    if (c >= 0x21 && c < 0x7f)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: invalid JSON at byte %zu: unexpected character '%c'",
                       ps->origin, ps->pos, c);
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: invalid JSON at byte %zu: unexpected byte 0x%02x",
                   ps->origin, ps->pos, c);
}

sm_status sm_json_parse(const char *text, size_t len, const char *origin, sm_json *out)
{
    parser ps = {(const unsigned char *)text, len, 0, origin, (locale_t)0};
    memset(out, 0, sizeof *out);
    sm_status st = parse_value(&ps, out, 0);
    if (st == SEGMAMBA_OK) {
        skip_whitespace(&ps);
        if (ps.pos != len) st = syntax_error(&ps, ps.pos, "unexpected text after the value");
    }
    if (ps.c_locale) freelocale(ps.c_locale);
    if (st != SEGMAMBA_OK) sm_json_free(out);
    return st;
}

void sm_json_free(sm_json *v)
{
    if (v->type == SM_JSON_STRING) {
        free(v->string);
    } else if (v->type == SM_JSON_ARRAY) {
        for (size_t i = 0; i < v->count; i++) sm_json_free(&v->items[i]);
        free(v->items);
    } else if (v->type == SM_JSON_OBJECT) {
        for (size_t i = 0; i < v->count; i++) {
            free(v->members[i].key);
            sm_json_free(&v->members[i].value);
        }
        free(v->members);
    }
    memset(v, 0, sizeof *v);
}

const sm_json *sm_json_get(const sm_json *object, const char *key)
{
    if (!object || object->type != SM_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < object->count; i++) {
        const sm_json_member *m = &object->members[i];
        if (m->key_length == n && memcmp(m->key, key, n) == 0) return &m->value;
    }
    return NULL;
}

/* ---- writing ---- */

static void out_append(sm_json_out *o, const char *s, size_t n)
{
    if (o->failed) return;
    char *text = n < SIZE_MAX - o->len ? sm_grow(o->text, &o->cap, o->len + n + 1, 1) : NULL;
    if (!text) {
        o->failed = 1;
        return;
    }
    o->text = text;
    memcpy(o->text + o->len, s, n);
    o->len += n;
    o->text[o->len] = 0;
}

void sm_json_out_printf(sm_json_out *o, const char *fmt, ...)
{
    va_list ap, copy;
    va_start(ap, fmt);
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        out_append(o, s, (size_t)n);
        free(s);
    } else {
        o->failed = 1;
    }
    va_end(ap);
}

void sm_json_out_string(sm_json_out *o, const char *s, size_t len)
{
    out_append(o, "\"", 1);
    size_t run = 0; /* bytes copied through unchanged, appended in one go */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out_append(o, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': out_append(o, "\\\"", 2); break;
        case '\\': out_append(o, "\\\\", 2); break;
        case '\n': out_append(o, "\\n", 2); break;
        case '\r': out_append(o, "\\r", 2); break;
        case '\t': out_append(o, "\\t", 2); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); out_append(o, esc, 6);
        }
    }
    out_append(o, s + run, len - run);
    out_append(o, "\"", 1);
}

void sm_json_out_free(sm_json_out *o)
{
    free(o->text);
    memset(o, 0, sizeof *o);
}
