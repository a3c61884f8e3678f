/* Small helpers for the C tests of mailoauth: check counters, a strict JSON
 * reader (to look at what the library returns) and a UTF-8 validator.
 * Header-only; every function is static. C11 + pthreads. */
#ifndef MAILOAUTH_TESTUTIL_H
#define MAILOAUTH_TESTUTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* every helper is static and may go unused in a given test program */
#define TU_STATIC static __attribute__((unused))

/* ------------------------------------------------------------------ checks */

TU_STATIC atomic_int tu_passed;
TU_STATIC atomic_int tu_failed;

/* Records one check. On failure prints "file:line: FAIL: <what>: <details>". */
TU_STATIC int tu_check(int ok, const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
TU_STATIC int tu_check(int ok, const char *file, int line, const char *what, const char *fmt, ...)
{
    if (ok) {
        atomic_fetch_add(&tu_passed, 1);
        return 1;
    }
    atomic_fetch_add(&tu_failed, 1);
    char details[2048] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(details, sizeof details, fmt, ap);
        va_end(ap);
    }
    flockfile(stdout);
    printf("%s:%d: FAIL: %s%s%s\n", file, line, what, details[0] ? ": " : "", details);
    funlockfile(stdout);
    fflush(stdout);
    return 0;
}

/* CHECK(cond, "printf format", args...): the format is mandatory ("" is fine). */
#define CHECK(cond, ...) tu_check(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

/* A remark about behaviour the contract does not fix; never counts as a failure. */
#define NOTE(...)                                                                  \
    do {                                                                           \
        flockfile(stdout);                                                         \
        printf("%s:%d: note: ", __FILE__, __LINE__);                               \
        printf(__VA_ARGS__);                                                       \
        printf("\n");                                                              \
        funlockfile(stdout);                                                       \
        fflush(stdout);                                                            \
    } while (0)

TU_STATIC int tu_summary(void)
{
    int p = atomic_load(&tu_passed), f = atomic_load(&tu_failed);
    printf("%d passed, %d failed\n", p, f);
    fflush(stdout);
    return f == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------- UTF-8 */

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
TU_STATIC int tu_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return 0;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF) return 0;
        if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
        i += n + 1;
    }
    return 1;
}

TU_STATIC int tu_has_non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 1;
    return 0;
}

/* -------------------------------------------------------------------- JSON */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
    jtype t;
    int b;            /* J_BOOL */
    double n;         /* J_NUM */
    int is_int;       /* J_NUM without fraction or exponent */
    long long i;      /* J_NUM when is_int */
    char *s;          /* J_STR (decoded, NUL-terminated; may not contain NUL: rejected) */
    size_t count;     /* J_ARR / J_OBJ */
    char **keys;      /* J_OBJ */
    struct jval **items;
} jval;

typedef struct {
    const char *p;
    const char *end;
    int depth;
    const char *err;
} jparser;

TU_STATIC void jfree(jval *v)
{
    if (v == NULL) return;
    free(v->s);
    for (size_t k = 0; k < v->count; k++) {
        if (v->keys) free(v->keys[k]);
        jfree(v->items[k]);
    }
    free(v->keys);
    free(v->items);
    free(v);
}

TU_STATIC void jskip_ws(jparser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

TU_STATIC int jhex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

TU_STATIC size_t jput_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Parses a JSON string at ps->p (on the opening quote) into a new buffer. */
TU_STATIC char *jparse_string(jparser *ps)
{
    if (ps->p >= ps->end || *ps->p != '"') { ps->err = "expected string"; return NULL; }
    ps->p++;
    const char *start = ps->p;
    /* decoded output is never longer than the input */
    size_t cap = 1;
    for (const char *q = start; q < ps->end && *q != '"'; q++) { cap++; if (*q == '\\' && q + 1 < ps->end) { q++; cap++; } }
    char *out = malloc(cap + 4);
    if (!out) { ps->err = "oom"; return NULL; }
    size_t o = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { ps->err = "control character in string"; free(out); return NULL; }
        if (c != '\\') { out[o++] = (char)c; ps->p++; continue; }
        ps->p++;
        if (ps->p >= ps->end) break;
        char e = *ps->p++;
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (ps->end - ps->p < 4 || !jhex4(ps->p, &cp)) { ps->err = "bad \\u escape"; free(out); return NULL; }
            ps->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || !jhex4(ps->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    ps->err = "lone surrogate"; free(out); return NULL;
                }
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                ps->err = "lone surrogate"; free(out); return NULL;
            }
            if (cp == 0) { ps->err = "NUL in string"; free(out); return NULL; }
            o += jput_utf8(out + o, cp);
            break;
        }
        default: ps->err = "bad escape"; free(out); return NULL;
        }
    }
    if (ps->p >= ps->end) { ps->err = "unterminated string"; free(out); return NULL; }
    ps->p++; /* closing quote */
    out[o] = 0;
    if (!tu_utf8_valid(out, o)) { ps->err = "invalid UTF-8 in string"; free(out); return NULL; }
    return out;
}

TU_STATIC jval *jparse_value(jparser *ps);

TU_STATIC int jpush(jval *v, char *key, jval *item)
{
    jval **items = realloc(v->items, (v->count + 1) * sizeof *items);
    if (!items) return 0;
    v->items = items;
    if (v->t == J_OBJ) {
        char **keys = realloc(v->keys, (v->count + 1) * sizeof *keys);
        if (!keys) return 0;
        v->keys = keys;
        v->keys[v->count] = key;
    }
    v->items[v->count++] = item;
    return 1;
}

TU_STATIC jval *jparse_value(jparser *ps)
{
    jskip_ws(ps);
    if (ps->p >= ps->end) { ps->err = "unexpected end"; return NULL; }
    jval *v = calloc(1, sizeof *v);
    if (!v) { ps->err = "oom"; return NULL; }
    char c = *ps->p;
    if (c == '{' || c == '[') {
        if (++ps->depth > 64) { ps->err = "too deep"; free(v); return NULL; }
        int obj = c == '{';
        v->t = obj ? J_OBJ : J_ARR;
        ps->p++;
        jskip_ws(ps);
        if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) { ps->p++; ps->depth--; return v; }
        for (;;) {
            char *key = NULL;
            jskip_ws(ps);
            if (obj) {
                key = jparse_string(ps);
                if (!key) { jfree(v); return NULL; }
                for (size_t k = 0; k < v->count; k++)
                    if (strcmp(v->keys[k], key) == 0) { ps->err = "duplicate key"; free(key); jfree(v); return NULL; }
                jskip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') { ps->err = "expected ':'"; free(key); jfree(v); return NULL; }
                ps->p++;
            }
            jval *item = jparse_value(ps);
            if (!item) { free(key); jfree(v); return NULL; }
            if (!jpush(v, key, item)) { ps->err = "oom"; free(key); jfree(item); jfree(v); return NULL; }
            jskip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) { ps->p++; break; }
            ps->err = "expected ',' or closing bracket";
            jfree(v);
            return NULL;
        }
        ps->depth--;
        return v;
    }
    if (c == '"') {
        v->t = J_STR;
        v->s = jparse_string(ps);
        if (!v->s) { free(v); return NULL; }
        return v;
    }
    if (ps->end - ps->p >= 4 && memcmp(ps->p, "null", 4) == 0) { v->t = J_NULL; ps->p += 4; return v; }
    if (ps->end - ps->p >= 4 && memcmp(ps->p, "true", 4) == 0) { v->t = J_BOOL; v->b = 1; ps->p += 4; return v; }
    if (ps->end - ps->p >= 5 && memcmp(ps->p, "false", 5) == 0) { v->t = J_BOOL; ps->p += 5; return v; }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *s = ps->p;
        int integral = 1;
        if (*ps->p == '-') ps->p++;
        if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) { ps->err = "bad number"; free(v); return NULL; }
        if (*ps->p == '0') ps->p++;
        else while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
        if (ps->p < ps->end && *ps->p == '.') {
            integral = 0; ps->p++;
            if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) { ps->err = "bad number"; free(v); return NULL; }
            while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
        }
        if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
            integral = 0; ps->p++;
            if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
            if (ps->p >= ps->end || !(*ps->p >= '0' && *ps->p <= '9')) { ps->err = "bad number"; free(v); return NULL; }
            while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
        }
        char buf[64];
        size_t n = (size_t)(ps->p - s);
        if (n >= sizeof buf) n = sizeof buf - 1;
        memcpy(buf, s, n);
        buf[n] = 0;
        v->t = J_NUM;
        v->n = strtod(buf, NULL);
        v->is_int = integral;
        if (integral) v->i = strtoll(buf, NULL, 10);
        return v;
    }
    ps->err = "unexpected character";
    free(v);
    return NULL;
}

/* Parses a whole document; NULL if it is not exactly one valid JSON value
 * (duplicate keys count as invalid). *err (if given) says why. */
TU_STATIC jval *jparse(const char *text, const char **err)
{
    if (err) *err = NULL;
    if (text == NULL) { if (err) *err = "NULL text"; return NULL; }
    jparser ps = {text, text + strlen(text), 0, NULL};
    jval *v = jparse_value(&ps);
    if (v) {
        jskip_ws(&ps);
        if (ps.p != ps.end) { ps.err = "trailing characters"; jfree(v); v = NULL; }
    }
    if (!v && err) *err = ps.err ? ps.err : "invalid";
    return v;
}

/* Member of an object by key; NULL when absent or v is no object. */
TU_STATIC jval *jmember(const jval *v, const char *key)
{
    if (v == NULL || v->t != J_OBJ) return NULL;
    for (size_t k = 0; k < v->count; k++)
        if (strcmp(v->keys[k], key) == 0) return v->items[k];
    return NULL;
}

/* Value at a dotted path ("servers.smtp.host"); NULL when absent. */
TU_STATIC jval *jget(const jval *root, const char *path)
{
    char seg[128];
    const jval *v = root;
    while (v != NULL && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof seg) return NULL;
        memcpy(seg, path, n);
        seg[n] = 0;
        v = jmember(v, seg);
        path += n + (dot ? 1 : 0);
    }
    return (jval *)v;
}

/* String at path, or NULL when absent or not a string. */
TU_STATIC const char *jstr(const jval *root, const char *path)
{
    const jval *v = jget(root, path);
    return v != NULL && v->t == J_STR ? v->s : NULL;
}

/* Integer at path into *out; 0 when absent or not an integer. */
TU_STATIC int jint(const jval *root, const char *path, long long *out)
{
    const jval *v = jget(root, path);
    if (v == NULL || v->t != J_NUM || !v->is_int) return 0;
    *out = v->i;
    return 1;
}

/* 1 if the value at path is present and JSON null. */
TU_STATIC int jis_null(const jval *root, const char *path)
{
    const jval *v = jget(root, path);
    return v != NULL && v->t == J_NULL;
}

/* 1 if the value at path is the boolean b. */
TU_STATIC int jis_bool(const jval *root, const char *path, int b)
{
    const jval *v = jget(root, path);
    return v != NULL && v->t == J_BOOL && v->b == b;
}

/* 1 if any object anywhere in v has a member whose value is null. */
TU_STATIC int jhas_null_member(const jval *v)
{
    if (v == NULL) return 0;
    for (size_t k = 0; k < v->count; k++) {
        if (v->t == J_OBJ && v->items[k]->t == J_NULL) return 1;
        if (jhas_null_member(v->items[k])) return 1;
    }
    return 0;
}

#endif /* MAILOAUTH_TESTUTIL_H */
