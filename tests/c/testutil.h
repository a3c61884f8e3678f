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

/* ============================================================ stack helpers
 * For the programs that run against the local stack (tests/stack): define
 * TU_STACK_HELPERS and the POSIX feature macros (_POSIX_C_SOURCE 200809L,
 * _XOPEN_SOURCE 700, _DEFAULT_SOURCE) before including this header, after
 * mailoauth.h. Last-error checks (EXPECT_OK, EXPECT_ERR), files and folders,
 * the stack file, a tiny HTTP/1.1 client, the IdP's admin API and a browser
 * consent driven over HTTP (auto_consent). */
#ifdef TU_STACK_HELPERS

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A pointer value that the library must not write into an output on failure. */
#define SENTINEL_CTX ((mailoauth_context *)(uintptr_t)0x5e5e5e5e)
#define SENTINEL_OP ((mailoauth_op *)(uintptr_t)0x5e5e5e5e)
#define SENTINEL_STR ((char *)(uintptr_t)0x5e5e5e5e)

#define ALICE "alice@contoso.test"
#define BOB "bob@contoso.test"
#define CAROL "carol@contoso.test"

/* -------------------------------------------------------------- helpers */

TU_STATIC void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

/* 1 if needle occurs in hay[0..len) (memmem without _GNU_SOURCE). */
TU_STATIC int mem_find(const void *hay, size_t len, const void *needle, size_t nlen)
{
    const unsigned char *h = hay;
    if (nlen == 0) return 1;
    for (size_t k = 0; k + nlen <= len; k++)
        if (h[k] == *(const unsigned char *)needle && memcmp(h + k, needle, nlen) == 0) return 1;
    return 0;
}

TU_STATIC long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

TU_STATIC const char *code_name(int32_t code)
{
    const char *s = mailoauth_result_str(code);
    return s ? s : "(null)";
}

/* The calling thread's last error, parsed. */
typedef struct {
    char *json;          /* malloc'd copy of the JSON, or NULL */
    jval *root;          /* parsed, or NULL */
    long long code;      /* -1 if unreadable */
    const char *name;    /* "" if absent */
    const char *message; /* "" if absent */
} lasterr;

TU_STATIC void le_get(lasterr *e)
{
    memset(e, 0, sizeof *e);
    e->code = -1;
    e->name = "";
    e->message = "";
    char *j = NULL;
    int32_t rc = mailoauth_last_error(&j);
    if (rc != MAILOAUTH_OK || j == NULL) return;
    e->json = strdup(j);
    mailoauth_string_free(j);
    e->root = jparse(e->json, NULL);
    if (e->root == NULL) return;
    long long c;
    if (jint(e->root, "code", &c)) e->code = c;
    if (jstr(e->root, "name")) e->name = jstr(e->root, "name");
    if (jstr(e->root, "message")) e->message = jstr(e->root, "message");
}

TU_STATIC void le_free(lasterr *e)
{
    jfree(e->root);
    free(e->json);
    memset(e, 0, sizeof *e);
}

/* A malloc'd copy of the calling thread's last error JSON ("" if unreadable). */
TU_STATIC char *le_json(void)
{
    char *j = NULL;
    if (mailoauth_last_error(&j) != MAILOAUTH_OK || j == NULL) return strdup("");
    char *c = strdup(j);
    mailoauth_string_free(j);
    return c;
}

/* Checks that rc is want and that the last error matches rc: same code, the
 * exact name, a non-empty UTF-8 message, no null-valued keys, and (if needle
 * is given) a message naming it. Reads the last error right away. */
TU_STATIC int expect_err_at(const char *file, int line, const char *what, int32_t rc, int32_t want, const char *needle)
{
    lasterr e;
    le_get(&e);
    char problem[256] = "";
    if (rc != want) snprintf(problem, sizeof problem, "wrong result code");
    else if (e.root == NULL) snprintf(problem, sizeof problem, "last error is not valid JSON");
    else if (e.code != rc) snprintf(problem, sizeof problem, "last error code differs from the result");
    else if (strcmp(e.name, code_name(rc)) != 0) snprintf(problem, sizeof problem, "last error name differs from result_str");
    else if (e.message[0] == 0) snprintf(problem, sizeof problem, "empty message");
    else if (!tu_utf8_valid(e.message, strlen(e.message))) snprintf(problem, sizeof problem, "message is not UTF-8");
    else if (jhas_null_member(e.root)) snprintf(problem, sizeof problem, "last error has a null-valued key (keys only when known)");
    else if (needle != NULL && strstr(e.message, needle) == NULL)
        snprintf(problem, sizeof problem, "message does not name '%s'", needle);
    int ok = problem[0] == 0;
    tu_check(ok, file, line, what, "%s: got %d %s, want %d %s; last error %s", problem, rc, code_name(rc), want,
             code_name(want), e.json ? e.json : "(unreadable)");
    le_free(&e);
    return ok;
}
#define EXPECT_ERR(call, want, needle) expect_err_at(__FILE__, __LINE__, #call, (call), (want), (needle))

TU_STATIC int expect_ok_at(const char *file, int line, const char *what, int32_t rc)
{
    if (rc == MAILOAUTH_OK) return tu_check(1, file, line, what, "%s", "");
    lasterr e;
    le_get(&e);
    tu_check(0, file, line, what, "got %d %s; last error %s", rc, code_name(rc), e.json ? e.json : "(unreadable)");
    le_free(&e);
    return 0;
}
#define EXPECT_OK(call) expect_ok_at(__FILE__, __LINE__, #call, (call))

TU_STATIC int32_t ctx_new(const char *json, mailoauth_context **out)
{
    return mailoauth_context_new(json, MAILOAUTH_ABI_VERSION, out);
}

/* Watchdog: a hang (deadlock in the library) must not stall CI forever. */
TU_STATIC void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: watchdog: the test hung (deadlock?)\n0 passed, 1 failed\n";
    ssize_t r = write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

TU_STATIC int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == 0) return dflt;
    int n = atoi(v);
    return n > 0 ? n : dflt;
}

TU_STATIC char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

TU_STATIC int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* Removes a folder and the files in it (no subfolders expected). */
TU_STATIC void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *ent;
        char p[1024];
        while ((ent = readdir(d)) != NULL) {
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* 1 if a file in dir has a name starting with prefix (the name into found). */
TU_STATIC int dir_has_prefix(const char *dir, const char *prefix, char *found, size_t found_len)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *ent;
    int hit = 0;
    while ((ent = readdir(d)) != NULL) {
        if (strncmp(ent->d_name, prefix, strlen(prefix)) == 0) {
            if (found) snprintf(found, found_len, "%s", ent->d_name);
            hit = 1;
            break;
        }
    }
    closedir(d);
    return hit;
}

TU_STATIC char *make_temp_dir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/mailoauth-ctest-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(tmpl) == NULL) return NULL;
    return strdup(tmpl);
}

/* ------------------------------------------------------ the stack file */

typedef struct {
    int up;
    char http[128];    /* "http://127.0.0.1:10088" */
    int port;          /* the IdP's HTTP port */
    char tenant[128];
    char client_id[128];
    char ca_file[512];     /* the stack's CA (tls.ca_file) */
    char maildir[512];     /* "<state>/mail/%d/%n/Maildir" */
    char smtp_host[64];    /* "127.0.0.2" */
    int smtp_starttls;     /* submission port with STARTTLS */
    int smtp_tls;          /* submission port with implicit TLS */
} stackinfo;

TU_STATIC stackinfo STACK;

/* The string value after "key": in text (from `from` on); 0 if absent. */
TU_STATIC int find_json_string(const char *text, const char *key, char *out, size_t out_len)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(text, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != ':') return 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != '"') return 0;
    const char *end = strchr(p, '"');
    if (!end || (size_t)(end - p) >= out_len) return 0;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = 0;
    return 1;
}

TU_STATIC void load_stack(void)
{
    const char *path = getenv("MAILOAUTH_STACK_FILE");
    if (!path || !*path) path = "/tmp/mailoauth-stack.json";
    char *text = read_file(path, NULL);
    if (!CHECK(text != NULL, "the local stack is not running (no %s): start it with tests/stack/up.sh", path))
        return;
    const char *idp = strstr(text, "\"idp\"");
    int ok = idp && find_json_string(idp, "http", STACK.http, sizeof STACK.http) &&
             find_json_string(idp, "tenant", STACK.tenant, sizeof STACK.tenant) &&
             find_json_string(idp, "client_id", STACK.client_id, sizeof STACK.client_id);
    const char *colon = ok ? strrchr(STACK.http, ':') : NULL;
    if (ok && strncmp(STACK.http, "http://127.0.0.1:", 17) == 0 && colon) STACK.port = atoi(colon + 1);
    STACK.up = ok && STACK.port > 0;
    /* the mail side (optional for programs that only need the IdP) */
    jval *root = jparse(text, NULL);
    const char *v;
    if ((v = jstr(root, "ca_file")) != NULL) snprintf(STACK.ca_file, sizeof STACK.ca_file, "%s", v);
    if ((v = jstr(root, "maildir")) != NULL) snprintf(STACK.maildir, sizeof STACK.maildir, "%s", v);
    if ((v = jstr(root, "smtp.host")) != NULL) snprintf(STACK.smtp_host, sizeof STACK.smtp_host, "%s", v);
    long long n;
    if (jint(root, "smtp.starttls", &n)) STACK.smtp_starttls = (int)n;
    if (jint(root, "smtp.tls", &n)) STACK.smtp_tls = (int)n;
    jfree(root);
    CHECK(STACK.up, "cannot read idp.http, idp.tenant, idp.client_id from %s", path);
    free(text);
}

/* ------------------------------------------------ a tiny HTTP/1.1 client */

typedef struct {
    int status;      /* 0: no answer */
    char *head;      /* status line and headers */
    char *body;
} http_resp;

TU_STATIC void http_free(http_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Connects to ip:port (IPv4 or IPv6 literal); -1 on failure (errno set). */
TU_STATIC int tcp_connect(const char *ip, int port, int timeout_s)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    int family;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) return -1;
        sl = sizeof *a;
        family = AF_INET6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) return -1;
        sl = sizeof *a;
        family = AF_INET;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* One request with "Connection: close"; reads the answer to EOF. */
TU_STATIC int http_request(int port, const char *host_header, const char *method, const char *target,
                        const char *json_body, http_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = tcp_connect("127.0.0.1", port, 60);
    if (fd < 0) return 0;
    size_t blen = json_body ? strlen(json_body) : 0;
    size_t cap = strlen(target) + strlen(host_header) + blen + 256;
    char *req = malloc(cap);
    int n;
    if (json_body)
        n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mailoauth-c-test\r\nAccept: */*\r\n"
                     "Connection: close\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, target, host_header, blen, json_body);
    else
        n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mailoauth-c-test\r\nAccept: */*\r\n"
                     "Connection: close\r\n\r\n",
                     method, target, host_header);
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    free(req);
    size_t rcap = 8192, rlen = 0;
    char *resp = malloc(rcap + 1);
    for (;;) {
        if (rlen == rcap) {
            rcap *= 2;
            resp = realloc(resp, rcap + 1);
        }
        ssize_t got = recv(fd, resp + rlen, rcap - rlen, 0);
        if (got <= 0) break;
        rlen += (size_t)got;
    }
    close(fd);
    resp[rlen] = 0;
    char *sep = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.", 7) != 0 || sep == NULL) {
        free(resp);
        return 0;
    }
    r->status = atoi(resp + 9);
    r->head = strndup(resp, (size_t)(sep - resp));
    r->body = strdup(sep + 4);
    free(resp);
    return r->status > 0;
}

/* A header's value (case-insensitive name) into out; 0 if absent. */
TU_STATIC int http_header(const http_resp *r, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    for (const char *p = r->head; p && *p; ) {
        const char *eol = strstr(p, "\r\n");
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            size_t vl = ll - (size_t)(v - p);
            if (vl >= out_len) return 0;
            memcpy(out, v, vl);
            out[vl] = 0;
            return 1;
        }
        p = eol ? eol + 2 : NULL;
    }
    return 0;
}

/* Splits "http://host:port/target"; host "localhost" maps to 127.0.0.1
 * (the library's listener binds 127.0.0.1 and ::1). */
TU_STATIC int split_url(const char *url, char *host, size_t host_len, int *port, const char **target)
{
    if (strncmp(url, "http://", 7) != 0) return 0;
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    const char *colon = strchr(h, ':');
    if (!colon || (slash && colon > slash)) return 0;
    size_t hl = (size_t)(colon - h);
    if (hl >= host_len) return 0;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = atoi(colon + 1);
    *target = slash ? slash : "/";
    return *port > 0;
}

/* Sends method url (an http:// URL on loopback) and returns the answer. */
TU_STATIC int http_url(const char *method, const char *url, const char *json_body, http_resp *r)
{
    char host[256];
    int port;
    const char *target;
    memset(r, 0, sizeof *r);
    if (!split_url(url, host, sizeof host, &port, &target)) return 0;
    if (strcmp(host, "localhost") != 0 && strcmp(host, "127.0.0.1") != 0) return 0;
    char host_header[300];
    snprintf(host_header, sizeof host_header, "%s:%d", host, port);
    return http_request(port, host_header, method, target, json_body, r);
}

/* POST /admin/... on the IdP; returns the HTTP status (0: no answer). */
TU_STATIC int idp_admin(const char *path, const char *json_body, char **body_out)
{
    http_resp r;
    char host_header[64];
    snprintf(host_header, sizeof host_header, "127.0.0.1:%d", STACK.port);
    http_request(STACK.port, host_header, json_body ? "POST" : "GET", path, json_body, &r);
    int st = r.status;
    if (body_out) *body_out = r.body ? strdup(r.body) : NULL;
    http_free(&r);
    return st;
}

/* An IdP counter ("token.refresh_token", "token.errors"; -1 if unreadable). */
TU_STATIC long long idp_counter(const char *path)
{
    char *body = NULL;
    long long n = -1;
    if (idp_admin("/admin/counters", NULL, &body) == 200 && body) {
        jval *v = jparse(body, NULL);
        if (!jint(v, path, &n)) n = -1;
        jfree(v);
    }
    free(body);
    return n;
}

/* The IdP's count of successful refresh_token grants (-1 if unreadable). */
TU_STATIC long long idp_refresh_count(void)
{
    return idp_counter("token.refresh_token");
}

TU_STATIC void idp_reset(void)
{
    if (!STACK.up) return;
    CHECK(idp_admin("/admin/reset", "{}", NULL) == 200, "POST /admin/reset");
    CHECK(idp_admin("/admin/settings", "{\"auto_consent\": true}", NULL) == 200, "POST /admin/settings auto_consent");
}

/* ------------------------------------------------------------- configs */

TU_STATIC void config_json(char *buf, size_t len, const char *cache)
{
    snprintf(buf, len,
             "{\"provider\":\"custom\",\"authority\":\"%s\",\"allow_plaintext_loopback\":true,"
             "\"tenant\":\"%s\",\"client_id\":\"%s\","
             "\"scopes\":{\"smtp\":\"https://outlook.office.com/SMTP.Send\","
             "\"imap\":\"https://outlook.office.com/IMAP.AccessAsUser.All\","
             "\"pop3\":\"https://outlook.office.com/POP.AccessAsUser.All\"},"
             "\"browser\":\"none\",\"cache\":%s}",
             STACK.up ? STACK.http : "http://127.0.0.1:9", STACK.up ? STACK.tenant : "organizations",
             STACK.up ? STACK.client_id : "00000000-0000-0000-0000-0000000000a1", cache);
}

/* A context whose cache is the plaintext file store in dir. */
TU_STATIC mailoauth_context *file_ctx(const char *dir)
{
    char cache[1200], cfg[4096];
    snprintf(cache, sizeof cache, "{\"protection\":\"none\",\"path\":\"%s\"}", dir);
    config_json(cfg, sizeof cfg, cache);
    mailoauth_context *ctx = NULL;
    if (!EXPECT_OK(ctx_new(cfg, &ctx))) return NULL;
    return ctx;
}

/* --------------------------------------------------- driving a consent */

TU_STATIC char *op_info_json(mailoauth_op *op, jval **parsed)
{
    char *j = NULL;
    *parsed = NULL;
    if (mailoauth_op_info(op, &j) != MAILOAUTH_OK || j == NULL) return NULL;
    char *c = strdup(j);
    mailoauth_string_free(j);
    *parsed = jparse(c, NULL);
    return c;
}

/* Completes a browser consent as a browser would: GET the authorize URL
 * (auto_consent: a 302 at once), follow the Location to the loopback
 * listener and read its page. */
TU_STATIC int drive_browser_at(const char *file, int line, mailoauth_op *op)
{
    jval *v;
    char *j = op_info_json(op, &v);
    const char *url = jstr(v, "authorize_url");
    int ok = tu_check(url != NULL, file, line, "op_info has an authorize_url", "info %s", j ? j : "(null)");
    if (ok) {
        http_resp r;
        http_url("GET", url, NULL, &r);
        char loc[4096] = "";
        ok = tu_check(r.status == 302 && http_header(&r, "Location", loc, sizeof loc), file, line,
                      "GET authorize_url answers 302 with a Location", "status %d", r.status);
        http_free(&r);
        if (ok) {
            ok = tu_check(strncmp(loc, "http://localhost:", 17) == 0 || strncmp(loc, "http://127.0.0.1:", 17) == 0,
                          file, line, "the Location goes to the loopback listener", "%s", loc);
        }
        if (ok) {
            http_url("GET", loc, NULL, &r);
            ok = tu_check(r.status == 200, file, line, "the loopback listener answers the redirect with 200",
                          "status %d", r.status);
            http_free(&r);
        }
    }
    jfree(v);
    free(j);
    return ok;
}
#define DRIVE_BROWSER(op) drive_browser_at(__FILE__, __LINE__, (op))

/* Begins a browser consent for account, drives it and waits; 1 on success. */
TU_STATIC int consent_req_at(const char *file, int line, mailoauth_context *ctx, const char *req)
{
    mailoauth_op *op = NULL;
    if (!expect_ok_at(file, line, "mailoauth_consent_begin", mailoauth_consent_begin(ctx, req, &op))) return 0;
    int ok = drive_browser_at(file, line, op) &&
             expect_ok_at(file, line, "mailoauth_op_wait after the browser flow", mailoauth_op_wait(op, 60000));
    mailoauth_op_free(op);
    return ok;
}

TU_STATIC int consent_at(const char *file, int line, mailoauth_context *ctx, const char *account)
{
    char req[512];
    snprintf(req, sizeof req, "{\"account\":\"%s\",\"flow\":\"browser\",\"timeout_s\":120}", account);
    return consent_req_at(file, line, ctx, req);
}
#define CONSENT(ctx, account) consent_at(__FILE__, __LINE__, (ctx), (account))

#endif /* TU_STACK_HELPERS */

#endif /* MAILOAUTH_TESTUTIL_H */
