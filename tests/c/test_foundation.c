/* tests/c/test_foundation.c: the foundation of the mailoauth C ABI
 * (library functions, last error, logger, frees, context new/describe/
 * cancel/free), tested from C against include/mailoauth.h.
 *
 * Every export gets a success test, NULL tests (each pointer argument and
 * each output pointer) and bad-input tests. Output parameters are checked to
 * be written only on success. Prints one line per failing check with
 * file:line and ends with "N passed, N failed"; exits non-zero on failure.
 *
 * Environment:
 *   MAILOAUTH_TEST_CA_PEM   path of a valid PEM CA certificate (run.sh makes one)
 *   MAILOAUTH_TEST_LOOPS    contexts per thread in the threaded tests (default 40)
 *   MAILOAUTH_TEST_TIMEOUT  watchdog in seconds (default 900)
 *
 * Build: see tests/c/run.sh (ASan+UBSan build and a valgrind run). */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700

#include "mailoauth.h"
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* Values that must never appear in a log line, a describe document or an error. */
#define SECRET "S3cr3t-Xq9-never-log-me"
#define PROXY_PW "Pr0xyPw-77zq"

#define OK_CONFIG "{\"client_id\":\"11111111-2222-3333-4444-555555555555\"}"
/* Entra ID client ids are GUIDs; the library checks that for microsoft* providers */
#define CUSTOM_IDP "\"provider\":\"custom\",\"authority\":\"https://idp.example\""
#define CID "00000000-0000-0000-0000-0000000000c1"

/* A pointer value that the library must not write into an output on failure. */
#define SENTINEL_CTX ((mailoauth_context *)(uintptr_t)0x5e5e5e5e)
#define SENTINEL_STR ((char *)(uintptr_t)0x5e5e5e5e)

/* -------------------------------------------------------------- helpers */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static const char *code_name(int32_t code)
{
    const char *s = mailoauth_result_str(code);
    return s ? s : "(null)";
}

/* The calling thread's last error, parsed. */
typedef struct {
    char *json;        /* malloc'd copy of the JSON, or NULL */
    jval *root;        /* parsed, or NULL */
    long long code;    /* -1 if unreadable */
    const char *name;  /* "" if absent */
    const char *message; /* "" if absent */
} lasterr;

static void le_get(lasterr *e)
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

static void le_free(lasterr *e)
{
    jfree(e->root);
    free(e->json);
    memset(e, 0, sizeof *e);
}

/* Checks that rc is one of want1/want2 and that the last error matches rc:
 * same code, the exact name, a non-empty message, no null-valued keys, and
 * (if needle is given) a message naming it. Reads the last error right away,
 * on this thread. */
static int expect_err_at(const char *file, int line, const char *what, int32_t rc, int32_t want1,
                         int32_t want2, const char *needle)
{
    lasterr e;
    le_get(&e);
    char problem[256] = "";
    if (rc != want1 && rc != want2) snprintf(problem, sizeof problem, "wrong result code");
    else if (e.root == NULL) snprintf(problem, sizeof problem, "last error is not valid JSON");
    else if (e.code != rc) snprintf(problem, sizeof problem, "last error code differs from the result");
    else if (strcmp(e.name, code_name(rc)) != 0) snprintf(problem, sizeof problem, "last error name differs from result_str");
    else if (e.message[0] == 0) snprintf(problem, sizeof problem, "empty message");
    else if (!tu_utf8_valid(e.message, strlen(e.message))) snprintf(problem, sizeof problem, "message is not UTF-8");
    else if (jhas_null_member(e.root))
        snprintf(problem, sizeof problem, "last error has a null-valued key (keys only when known)");
    else if (needle != NULL && strstr(e.message, needle) == NULL)
        snprintf(problem, sizeof problem, "message does not name '%s'", needle);
    else if (strstr(e.json, SECRET) != NULL || strstr(e.json, PROXY_PW) != NULL)
        snprintf(problem, sizeof problem, "secret in the last error");
    int ok = problem[0] == 0;
    char want[96];
    if (want1 == want2) snprintf(want, sizeof want, "%d %s", want1, code_name(want1));
    else snprintf(want, sizeof want, "%d %s or %d %s", want1, code_name(want1), want2, code_name(want2));
    tu_check(ok, file, line, what, "%s: got %d %s, want %s; last error %s", problem, rc, code_name(rc), want,
             e.json ? e.json : "(unreadable)");
    le_free(&e);
    return ok;
}
#define EXPECT_ERR(call, want, needle) expect_err_at(__FILE__, __LINE__, #call, (call), (want), (want), (needle))
#define EXPECT_ERR2(call, w1, w2, needle) expect_err_at(__FILE__, __LINE__, #call, (call), (w1), (w2), (needle))

static int expect_ok_at(const char *file, int line, const char *what, int32_t rc)
{
    if (rc == MAILOAUTH_OK) return tu_check(1, file, line, what, "%s", "");
    lasterr e;
    le_get(&e);
    tu_check(0, file, line, what, "got %d %s; last error %s", rc, code_name(rc), e.json ? e.json : "(unreadable)");
    le_free(&e);
    return 0;
}
#define EXPECT_OK(call) expect_ok_at(__FILE__, __LINE__, #call, (call))

/* The last error must be "no error": {"code":0,"name":"OK"}. */
static int expect_no_error_at(const char *file, int line, const char *what)
{
    lasterr e;
    le_get(&e);
    int ok = e.root != NULL && e.code == 0 && strcmp(e.name, "OK") == 0 && e.root->t == J_OBJ && e.root->count == 2;
    tu_check(ok, file, line, what, "want {\"code\":0,\"name\":\"OK\"}, got %s", e.json ? e.json : "(unreadable)");
    le_free(&e);
    return ok;
}
#define EXPECT_NO_ERROR(what) expect_no_error_at(__FILE__, __LINE__, what)

static int32_t ctx_new(const char *json, mailoauth_context **out)
{
    return mailoauth_context_new(json, MAILOAUTH_ABI_VERSION, out);
}

/* Creates a context from json and frees it; returns the result code. */
static int32_t try_config(const char *json)
{
    mailoauth_context *ctx = SENTINEL_CTX;
    int32_t rc = ctx_new(json, &ctx);
    if (rc == MAILOAUTH_OK) mailoauth_context_free(ctx);
    else if (ctx != SENTINEL_CTX) {
        CHECK(0, "context_new wrote *out although it failed with %d for %s", rc, json);
    }
    return rc;
}

/* Creates a context, describes it, frees it. Returns the parsed document
 * (caller jfree()s) and, if raw is given, a malloc'd copy of the text. */
static jval *resolve_at(const char *file, int line, const char *json, char **raw)
{
    if (raw) *raw = NULL;
    mailoauth_context *ctx = NULL;
    if (!expect_ok_at(file, line, json, ctx_new(json, &ctx))) return NULL;
    char *out = NULL;
    jval *root = NULL;
    if (expect_ok_at(file, line, "mailoauth_context_describe", mailoauth_context_describe(ctx, &out))) {
        const char *err = NULL;
        root = jparse(out, &err);
        tu_check(root != NULL, file, line, "describe returns valid JSON", "%s: %s", err ? err : "", out ? out : "(null)");
        if (raw && out) *raw = strdup(out);
        mailoauth_string_free(out);
    }
    mailoauth_context_free(ctx);
    return root;
}
#define RESOLVE(json, raw) resolve_at(__FILE__, __LINE__, (json), (raw))

#define CHECK_STR(root, path, want)                                                              \
    do {                                                                                         \
        const char *got_ = jstr((root), (path));                                                 \
        CHECK(got_ != NULL && strcmp(got_, (want)) == 0, "%s: want \"%s\", got %s%s%s", (path),  \
              (want), got_ ? "\"" : "", got_ ? got_ : "(absent or not a string)", got_ ? "\"" : ""); \
    } while (0)

#define CHECK_INT(root, path, want)                                                          \
    do {                                                                                     \
        long long got_ = 0;                                                                  \
        int has_ = jint((root), (path), &got_);                                              \
        CHECK(has_ && got_ == (long long)(want), "%s: want %lld, got %s%lld", (path),        \
              (long long)(want), has_ ? "" : "(absent or not an integer) ", got_);           \
    } while (0)

#define CHECK_PREFIX(root, path, prefix)                                                        \
    do {                                                                                        \
        const char *got_ = jstr((root), (path));                                                \
        CHECK(got_ != NULL && strncmp(got_, (prefix), strlen(prefix)) == 0,                     \
              "%s: want a string starting with \"%s\", got %s", (path), (prefix),               \
              got_ ? got_ : "(absent or not a string)");                                        \
    } while (0)

/* Writes text into a new temporary file; returns its malloc'd path. */
static char *temp_file(const char *text)
{
    const char *dir = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/mailoauth-test-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0) return NULL;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) { close(fd); unlink(tmpl); return NULL; }
    close(fd);
    return strdup(tmpl);
}

/* Watchdog: a hang (deadlock in the library) must not stall CI forever. */
static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_foundation.c: FAIL: watchdog: the test hung (deadlock?)\n0 passed, 1 failed\n";
    ssize_t r = write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == 0) return dflt;
    int n = atoi(v);
    return n > 0 ? n : dflt;
}

/* ------------------------------------------------- version and ABI version */

static void test_version(void)
{
    const char *v = mailoauth_version();
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", (int)MAILOAUTH_VERSION_MAJOR, (int)MAILOAUTH_VERSION_MINOR,
             (int)MAILOAUTH_VERSION_PATCH);
    CHECK(v != NULL && strcmp(v, want) == 0, "mailoauth_version() = %s, macros say %s", v ? v : "(null)", want);
    CHECK(mailoauth_version() == v, "version is a static string (same pointer each call)");
    CHECK(mailoauth_abi_version() == (uint32_t)MAILOAUTH_ABI_VERSION, "abi_version() = %u, header says %u",
          (unsigned)mailoauth_abi_version(), (unsigned)MAILOAUTH_ABI_VERSION);
    CHECK(MAILOAUTH_ABI_VERSION >= 1, "MAILOAUTH_ABI_VERSION is %u", (unsigned)MAILOAUTH_ABI_VERSION);
}

/* ------------------------------------------------------------ result codes */

static const struct {
    int32_t macro;
    int32_t number;
    const char *name;
} CODES[] = {
    {MAILOAUTH_OK, 0, "OK"},
    {MAILOAUTH_PENDING, 1, "PENDING"},
    {MAILOAUTH_INVALID_ARGUMENT, 100, "INVALID_ARGUMENT"},
    {MAILOAUTH_INVALID_CONFIG, 101, "INVALID_CONFIG"},
    {MAILOAUTH_ABI_MISMATCH, 102, "ABI_MISMATCH"},
    {MAILOAUTH_INVALID_STATE, 103, "INVALID_STATE"},
    {MAILOAUTH_BUSY, 104, "BUSY"},
    {MAILOAUTH_CONSENT_REQUIRED, 200, "CONSENT_REQUIRED"},
    {MAILOAUTH_CANCELLED, 201, "CANCELLED"},
    {MAILOAUTH_TIMEOUT, 202, "TIMEOUT"},
    {MAILOAUTH_DECLINED, 203, "DECLINED"},
    {MAILOAUTH_PROVIDER_ERROR, 204, "PROVIDER_ERROR"},
    {MAILOAUTH_THROTTLED, 205, "THROTTLED"},
    {MAILOAUTH_ACCOUNT_MISMATCH, 206, "ACCOUNT_MISMATCH"},
    {MAILOAUTH_NETWORK, 300, "NETWORK"},
    {MAILOAUTH_TLS, 301, "TLS"},
    {MAILOAUTH_PROTOCOL, 302, "PROTOCOL"},
    {MAILOAUTH_AUTH_REJECTED, 303, "AUTH_REJECTED"},
    {MAILOAUTH_MAILBOX_ACCESS_DENIED, 304, "MAILBOX_ACCESS_DENIED"},
    {MAILOAUTH_SEND_REJECTED, 305, "SEND_REJECTED"},
    {MAILOAUTH_NOT_FOUND, 306, "NOT_FOUND"},
    {MAILOAUTH_TOO_LARGE, 307, "TOO_LARGE"},
    {MAILOAUTH_UNTRUSTED_HOST, 308, "UNTRUSTED_HOST"},
    {MAILOAUTH_CACHE_IO, 400, "CACHE_IO"},
    {MAILOAUTH_CACHE_CORRUPT, 401, "CACHE_CORRUPT"},
    {MAILOAUTH_CACHE_VERSION, 402, "CACHE_VERSION"},
    {MAILOAUTH_INTERNAL, 900, "INTERNAL"},
};
#define NCODES (sizeof CODES / sizeof CODES[0])

static void test_result_str(void)
{
    for (size_t k = 0; k < NCODES; k++) {
        CHECK(CODES[k].macro == CODES[k].number, "MAILOAUTH_%s is %d, ABI.md says %d", CODES[k].name,
              CODES[k].macro, CODES[k].number);
        const char *s = mailoauth_result_str(CODES[k].number);
        CHECK(s != NULL && strcmp(s, CODES[k].name) == 0, "result_str(%d) = %s, want %s", CODES[k].number,
              s ? s : "(null)", CODES[k].name);
    }
    const int32_t unknown[] = {2, 3, 99, 105, 199, 207, 299, 309, 399, 403, 899, 901, 1000, -1, INT32_MIN, INT32_MAX};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        const char *s = mailoauth_result_str(unknown[k]);
        int known = 0;
        for (size_t m = 0; s && m < NCODES; m++)
            if (strcmp(s, CODES[m].name) == 0) known = 1;
        CHECK(s != NULL && s[0] != 0 && !known && tu_utf8_valid(s, strlen(s)),
              "result_str(%d) = %s: want a generic text that is no code name", unknown[k], s ? s : "(null)");
    }
}

/* ------------------------------------------------------------- last error */

static void test_last_error_basics(void)
{
    /* nothing has failed on this thread yet */
    EXPECT_NO_ERROR("fresh thread: last error is {\"code\":0,\"name\":\"OK\"}");
    {
        char *j = NULL;
        EXPECT_OK(mailoauth_last_error(&j));
        CHECK(j != NULL && strcmp(j, "{\"code\":0,\"name\":\"OK\"}") == 0, "no error: got %s", j ? j : "(null)");
        mailoauth_string_free(j);
    }

    /* a failure: code, name, message */
    mailoauth_context *ctx = SENTINEL_CTX;
    EXPECT_ERR(ctx_new("{\"client_id\":\"" CID "\",\"clientid\":1}", &ctx), MAILOAUTH_INVALID_CONFIG, "clientid");
    CHECK(ctx == SENTINEL_CTX, "*out written on failure");
    /* the getters do not change it */
    {
        lasterr a, b;
        le_get(&a);
        le_get(&b);
        CHECK(a.json && b.json && strcmp(a.json, b.json) == 0, "reading the last error twice gives the same record");
        int32_t need = mailoauth_last_error_message(NULL, 0);
        CHECK(need == (int32_t)strlen(a.message) + 1, "last_error_message(NULL,0) = %d, message needs %d", need,
              (int)strlen(a.message) + 1);
        le_free(&b);
        le_get(&b);
        CHECK(b.code == MAILOAUTH_INVALID_CONFIG, "last_error_message must not clear the record");
        le_free(&a);
        le_free(&b);
    }
    /* the frees neither set nor clear it (ffi-conventions 2.6) */
    mailoauth_string_free(NULL);
    mailoauth_secret_free(NULL);
    mailoauth_bytes_free(NULL, 0);
    {
        lasterr e;
        le_get(&e);
        CHECK(e.code == MAILOAUTH_INVALID_CONFIG, "a *_free call cleared the last error: %s", e.json ? e.json : "");
        le_free(&e);
    }

    /* a successful call clears it */
    EXPECT_OK(ctx_new(OK_CONFIG, &ctx));
    EXPECT_NO_ERROR("after a successful context_new");
    EXPECT_ERR(mailoauth_context_cancel(NULL), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_OK(mailoauth_context_cancel(ctx));
    EXPECT_NO_ERROR("after a successful context_cancel");
    EXPECT_ERR(mailoauth_context_describe(NULL, NULL), MAILOAUTH_INVALID_ARGUMENT, NULL);
    {
        char *d = NULL;
        EXPECT_OK(mailoauth_context_describe(ctx, &d));
        mailoauth_string_free(d);
    }
    EXPECT_NO_ERROR("after a successful context_describe");
    mailoauth_context_free(ctx);

    /* NULL output pointer of the getter itself: like every export, INVALID_ARGUMENT with a
       last error naming the parameter (the record of the earlier failure is replaced) */
    EXPECT_ERR(ctx_new("{", &ctx), MAILOAUTH_INVALID_CONFIG, NULL);
    EXPECT_ERR(mailoauth_last_error(NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");
}

/* Checks mailoauth_last_error_message against the current last error with
 * every buffer length: the return value, NUL termination, truncation at a
 * character boundary, nothing written beyond buf_len or for buf_len <= 0. */
static void check_message_copy_at(const char *file, int line, const char *label)
{
    lasterr e;
    le_get(&e);
    const char *msg = e.message;
    size_t mlen = strlen(msg);
    int32_t need = mailoauth_last_error_message(NULL, 0);
    tu_check(need == (int32_t)mlen + 1, file, line, label, "buf NULL, len 0: returned %d, want %d (message %s)",
             need, (int)mlen + 1, msg);

    int bad = 0;
    char first[512] = "";
    for (int32_t len = 1; len <= (int32_t)mlen + 3; len++) {
        char *buf = malloc((size_t)len); /* exact size: ASan sees any write past it */
        memset(buf, 0x5A, (size_t)len);
        int32_t r = mailoauth_last_error_message(buf, len);
        size_t cap = (size_t)len - 1, want = mlen < cap ? mlen : cap;
        while (want < mlen && want > 0 && ((unsigned char)msg[want] & 0xC0) == 0x80) want--;
        void *nul = memchr(buf, 0, (size_t)len);
        const char *why = NULL;
        if (r != need) why = "return value is not the needed size";
        else if (nul == NULL) why = "not NUL-terminated within buf_len";
        else if (strlen(buf) != want) why = "wrong truncation length (not the longest prefix ending on a character boundary)";
        else if (memcmp(buf, msg, want) != 0) why = "not a prefix of the message";
        else if (!tu_utf8_valid(buf, strlen(buf))) why = "cut inside a UTF-8 character";
        if (why && !bad++)
            snprintf(first, sizeof first, "buf_len %d: %s (returned %d, copied %zu bytes, want %zu)", len, why, r,
                     nul ? strlen(buf) : (size_t)len, want);
        free(buf);
    }
    tu_check(bad == 0, file, line, label, "%d buffer lengths wrong; first: %s; message: %s", bad, first, msg);

    char guard[16];
    memset(guard, 0x5A, sizeof guard);
    int32_t r0 = mailoauth_last_error_message(guard, 0);
    int32_t rneg = mailoauth_last_error_message(guard, -1);
    int32_t rmin = mailoauth_last_error_message(guard, INT32_MIN);
    int untouched = 1;
    for (size_t k = 0; k < sizeof guard; k++)
        if ((unsigned char)guard[k] != 0x5A) untouched = 0;
    tu_check(r0 == need && rneg == need && rmin == need && untouched, file, line, label,
             "buf_len 0/-1/INT32_MIN: returned %d/%d/%d (want %d), buffer %s", r0, rneg, rmin, need,
             untouched ? "untouched" : "WRITTEN");
    int32_t rnull = mailoauth_last_error_message(NULL, 64);
    tu_check(rnull == need, file, line, label, "buf NULL with buf_len 64: returned %d, want %d", rnull, need);
    le_free(&e);
}
#define CHECK_MESSAGE_COPY(label) check_message_copy_at(__FILE__, __LINE__, (label))

static void test_last_error_message_and_language(void)
{
    /* no error: an empty (or short) message, still NUL-terminated */
    {
        mailoauth_context *ctx = NULL;
        EXPECT_OK(ctx_new(OK_CONFIG, &ctx));
        mailoauth_context_free(ctx);
        int32_t need = mailoauth_last_error_message(NULL, 0);
        CHECK(need >= 1, "no error: needed size %d", need);
        char buf[256];
        memset(buf, 0x5A, sizeof buf);
        int32_t r = mailoauth_last_error_message(buf, (int32_t)sizeof buf);
        CHECK(r == need && memchr(buf, 0, sizeof buf) != NULL && (int32_t)strlen(buf) == need - 1,
              "no error: returned %d, need %d", r, need);
    }

    /* English vs German for the same mistakes */
    static const struct {
        const char *en, *de, *needle;
    } pairs[] = {
        {"{\"language\":\"en\",\"client_id\":\"" CID "\",\"übergröße\":1}",
         "{\"language\":\"de\",\"client_id\":\"" CID "\",\"übergröße\":1}", "übergröße"},
        {"{\"language\":\"en\",\"tenant\":\"common\"}", "{\"language\":\"de\",\"tenant\":\"common\"}", "client_id"},
        {"{\"language\":\"en\",\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"port\":\"587\"}}}",
         "{\"language\":\"de\",\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"port\":\"587\"}}}", "servers.smtp.port"},
        {"{\"language\":\"en\",\"client_id\":\"" CID "\",\"tls\":{\"ca_file\":\"/nonexistent/mailoauth/ca.pem\"}}",
         "{\"language\":\"de\",\"client_id\":\"" CID "\",\"tls\":{\"ca_file\":\"/nonexistent/mailoauth/ca.pem\"}}",
         "tls.ca_file"},
    };
    int german_non_ascii = 0;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        mailoauth_context *ctx = SENTINEL_CTX;
        EXPECT_ERR(ctx_new(pairs[k].en, &ctx), MAILOAUTH_INVALID_CONFIG, pairs[k].needle);
        lasterr en;
        le_get(&en);
        CHECK_MESSAGE_COPY(pairs[k].en);
        EXPECT_ERR(ctx_new(pairs[k].de, &ctx), MAILOAUTH_INVALID_CONFIG, pairs[k].needle);
        lasterr de;
        le_get(&de);
        CHECK(strcmp(en.message, de.message) != 0, "language de gives the same message as en: %s", de.message);
        CHECK_MESSAGE_COPY(pairs[k].de);
        /* the German text beyond the quoted key must have its own non-ASCII letters sometimes */
        char *stripped = strdup(de.message), *p;
        while ((p = strstr(stripped, pairs[k].needle)) != NULL) memset(p, '_', strlen(pairs[k].needle));
        if (tu_has_non_ascii(stripped)) german_non_ascii++;
        free(stripped);
        le_free(&en);
        le_free(&de);
        CHECK(ctx == SENTINEL_CTX, "*out written on failure");
    }
    if (german_non_ascii == 0)
        NOTE("none of the German config messages has an umlaut of its own; truncation was tested on the key name");
}

/* An error on one thread is invisible on another. */
static void *thread_fail_and_report(void *arg)
{
    long long *seen = arg;
    lasterr e;
    le_get(&e);
    seen[0] = e.code; /* before anything: a fresh thread has no error */
    le_free(&e);
    mailoauth_context *ctx = NULL;
    seen[1] = ctx_new("{\"client_id\":\"" CID "\",\"only_on_worker\":1}", &ctx);
    le_get(&e);
    seen[2] = e.code;
    seen[3] = strstr(e.message, "only_on_worker") != NULL;
    le_free(&e);
    return NULL;
}

static void test_last_error_thread_local(void)
{
    mailoauth_context *ctx = NULL;
    EXPECT_ERR(ctx_new(NULL, &ctx), MAILOAUTH_INVALID_ARGUMENT, "config_json");
    long long seen[4] = {-1, -1, -1, -1};
    pthread_t t;
    pthread_create(&t, NULL, thread_fail_and_report, seen);
    pthread_join(t, NULL);
    CHECK(seen[0] == 0, "a new thread sees the main thread's error (code %lld)", seen[0]);
    CHECK(seen[1] == MAILOAUTH_INVALID_CONFIG && seen[2] == MAILOAUTH_INVALID_CONFIG && seen[3] == 1,
          "worker thread: rc %lld, last error code %lld, names key %lld", seen[1], seen[2], seen[3]);
    lasterr e;
    le_get(&e);
    CHECK(e.code == MAILOAUTH_INVALID_ARGUMENT && strstr(e.message, "config_json") != NULL,
          "main thread's error replaced by another thread's: %s", e.json ? e.json : "");
    le_free(&e);

    /* and the other way round: a clean main thread stays clean */
    EXPECT_OK(ctx_new(OK_CONFIG, &ctx));
    mailoauth_context_free(ctx);
    pthread_create(&t, NULL, thread_fail_and_report, seen);
    pthread_join(t, NULL);
    EXPECT_NO_ERROR("main thread after a worker failed");
}

/* ------------------------------------------------------------------ frees */

static void *thread_free_string(void *arg)
{
    mailoauth_string_free(arg);
    return NULL;
}

static char *describe_string(void)
{
    mailoauth_context *ctx = NULL;
    char *s = NULL;
    if (ctx_new(OK_CONFIG, &ctx) != MAILOAUTH_OK) return NULL;
    if (mailoauth_context_describe(ctx, &s) != MAILOAUTH_OK) s = NULL;
    mailoauth_context_free(ctx);
    return s;
}

static void test_frees(void)
{
    /* NULL is a no-op */
    mailoauth_string_free(NULL);
    mailoauth_secret_free(NULL);
    mailoauth_bytes_free(NULL, 0);
    mailoauth_bytes_free(NULL, 100);
    mailoauth_bytes_free(NULL, -1);
    CHECK(1, "NULL frees survived");

    /* normal, then twice */
    char *s = describe_string();
    CHECK(s != NULL, "describe for the free tests");
    mailoauth_string_free(s);
    mailoauth_string_free(s); /* double free: the library must ignore it */
    mailoauth_secret_free(s);
    mailoauth_bytes_free((uint8_t *)s, 10);
    CHECK(1, "double free survived");

    /* pointers the library never returned: ignored, content untouched */
    char *mine = strdup("hello, host memory");
    char on_stack[] = "stack memory";
    mailoauth_string_free(mine);
    mailoauth_secret_free(mine); /* must not zero memory it does not own */
    mailoauth_bytes_free((uint8_t *)mine, 5);
    mailoauth_string_free(on_stack);
    mailoauth_secret_free(on_stack);
    mailoauth_bytes_free((uint8_t *)on_stack, (int64_t)sizeof on_stack);
    CHECK(strcmp(mine, "hello, host memory") == 0, "a foreign buffer was changed by a free: %s", mine);
    CHECK(strcmp(on_stack, "stack memory") == 0, "a foreign stack buffer was changed by a free: %s", on_stack);
    free(mine);

    /* an interior pointer is not a returned pointer */
    s = describe_string();
    if (s) {
        mailoauth_string_free(s + 1);
        CHECK(s[0] == '{', "interior-pointer free changed the string");
        mailoauth_string_free(s);
    }

    /* the host wrote into the string: a shorter string, then no NUL at all */
    s = describe_string();
    if (s) {
        s[1] = 0;
        mailoauth_string_free(s);
    }
    s = describe_string();
    if (s) {
        size_t n = strlen(s);
        s[n] = 'x'; /* the terminating NUL is gone: the free must not strlen() past the buffer */
        mailoauth_string_free(s);
    }
    CHECK(1, "frees after host writes survived");

    /* the wrong free function with a wrong length, then the right one */
    s = describe_string();
    if (s) {
        mailoauth_bytes_free((uint8_t *)s, 3);
        mailoauth_string_free(s);
    }
    s = describe_string();
    if (s) {
        mailoauth_secret_free(s);
        mailoauth_string_free(s);
    }
    CHECK(1, "mismatched frees survived");

    /* from another thread */
    s = describe_string();
    pthread_t t;
    pthread_create(&t, NULL, thread_free_string, s);
    pthread_join(t, NULL);
    CHECK(1, "free on another thread survived");
}

/* ----------------------------------------------------------------- logger */

#define MAXMSG 4096

typedef struct {
    pthread_mutex_t mu;
    int max_level;
    int count;                    /* messages stored (up to MAXMSG) */
    char *msg[MAXMSG];
    int lvl[MAXMSG];
    atomic_int calls;             /* all calls */
    atomic_int per_level[7];
    atomic_int bad_level;         /* outside 1..5 or above max_level */
    atomic_int bad_text;          /* NULL or not UTF-8 */
    atomic_int secret_seen;
    atomic_int retired;           /* set by the test after replacing this logger */
    atomic_int late;              /* calls after retirement */
    void *self;
} capture;

static void cap_init(capture *c, int max_level)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->max_level = max_level;
    c->self = c;
}

static void cap_free(capture *c)
{
    for (int k = 0; k < c->count; k++) free(c->msg[k]);
    pthread_mutex_destroy(&c->mu);
}

static void log_cb(void *user_data, int32_t level, const char *message)
{
    capture *c = user_data;
    if (c == NULL || c->self != c) return; /* wrong user_data: counted by the caller via calls */
    atomic_fetch_add(&c->calls, 1);
    if (atomic_load(&c->retired)) atomic_fetch_add(&c->late, 1);
    if (level < 1 || level > 5 || level > c->max_level) atomic_fetch_add(&c->bad_level, 1);
    else atomic_fetch_add(&c->per_level[level], 1);
    if (message == NULL || !tu_utf8_valid(message, strlen(message))) {
        atomic_fetch_add(&c->bad_text, 1);
        return;
    }
    if (strstr(message, SECRET) || strstr(message, PROXY_PW)) atomic_fetch_add(&c->secret_seen, 1);
    pthread_mutex_lock(&c->mu);
    if (c->count < MAXMSG) {
        c->lvl[c->count] = level;
        c->msg[c->count++] = strdup(message);
    }
    pthread_mutex_unlock(&c->mu);
}

/* 1 if a stored message at exactly `level` contains needle. */
static int cap_has(capture *c, int level, const char *needle)
{
    int found = 0;
    pthread_mutex_lock(&c->mu);
    for (int k = 0; k < c->count && !found; k++)
        if ((level == 0 || c->lvl[k] == level) && strstr(c->msg[k], needle)) found = 1;
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void cap_dump(capture *c, const char *label)
{
    pthread_mutex_lock(&c->mu);
    printf("  %s received %d messages:\n", label, c->count);
    for (int k = 0; k < c->count && k < 20; k++) printf("    [%d] %s\n", c->lvl[k], c->msg[k]);
    pthread_mutex_unlock(&c->mu);
}

#define CONFIG_WITH_SECRET                                                                    \
    "{\"client_id\":\"" CID "\",\"client_secret\":\"" SECRET "\","                        \
    "\"http\":{\"proxy\":\"http://user:" PROXY_PW "@proxy.example:3128\"}}"
#define CONFIG_IGNORED_KEYS                                                                   \
    "{\"client_id\":\"" CID "\",\"ignore_unknown_keys\":true,\"zz_unknown_top\":1,"                 \
    "\"servers\":{\"smtp\":{\"zz_unknown_nested\":2}},\"client_secret\":\"" SECRET "\"}"

static int32_t reentrant_rc = -12345;
static void reentrant_cb(void *user_data, int32_t level, const char *message)
{
    (void)level;
    (void)message;
    atomic_int *calls = user_data;
    if (atomic_fetch_add(calls, 1) == 0) reentrant_rc = mailoauth_set_logger(5, NULL, NULL);
}

static void test_logger(void)
{
    capture a, b, c;
    cap_init(&a, 5);
    cap_init(&b, 2);
    cap_init(&c, 5);

    int failed_before = atomic_load(&tu_failed);

    /* level 5: info on context creation, never a secret */
    EXPECT_OK(mailoauth_set_logger(5, log_cb, &a));
    EXPECT_NO_ERROR("set_logger success clears the last error");
    mailoauth_context *ctx = NULL;
    EXPECT_OK(ctx_new(CONFIG_WITH_SECRET, &ctx));
    {
        char *d = NULL;
        EXPECT_OK(mailoauth_context_describe(ctx, &d));
        mailoauth_string_free(d);
    }
    EXPECT_OK(mailoauth_context_cancel(ctx));
    mailoauth_context_free(ctx);
    CHECK(atomic_load(&a.calls) >= 1, "no log message on context creation at level 5");
    CHECK(atomic_load(&a.per_level[3]) >= 1, "no info (level 3) message on context creation");
    CHECK(atomic_load(&a.bad_level) == 0, "%d messages with a level outside 1..5", atomic_load(&a.bad_level));
    CHECK(atomic_load(&a.bad_text) == 0, "%d messages NULL or not UTF-8", atomic_load(&a.bad_text));

    /* an ignored unknown key is a warning naming it */
    EXPECT_OK(ctx_new(CONFIG_IGNORED_KEYS, &ctx));
    {
        char *d = NULL;
        EXPECT_OK(mailoauth_context_describe(ctx, &d));
        CHECK(d && !strstr(d, "zz_unknown"), "describe shows an ignored key: %s", d ? d : "");
        mailoauth_string_free(d);
    }
    mailoauth_context_free(ctx);
    CHECK(cap_has(&a, 2, "zz_unknown_top"), "no warning (level 2) naming the ignored key zz_unknown_top");
    CHECK(cap_has(&a, 2, "zz_unknown_nested"), "no warning (level 2) naming servers.smtp.zz_unknown_nested");
    if (!cap_has(&a, 2, "servers.smtp.zz_unknown_nested") && cap_has(&a, 2, "zz_unknown_nested"))
        NOTE("the warning names the nested key without its path servers.smtp.");
    CHECK(atomic_load(&a.secret_seen) == 0, "a secret appeared in %d log messages", atomic_load(&a.secret_seen));
    /* a failing config logs too, without the secret */
    EXPECT_ERR(ctx_new("{\"client_id\":\"" CID "\",\"client_secret\":\"" SECRET "\",\"bogus_key\":1}", &ctx),
               MAILOAUTH_INVALID_CONFIG, "bogus_key");
    CHECK(atomic_load(&a.secret_seen) == 0, "a secret appeared in a log message");
    if (atomic_load(&tu_failed) > failed_before) cap_dump(&a, "logger A");

    /* replace it: the first one receives nothing afterwards; max_level filters */
    int a_before = atomic_load(&a.calls);
    EXPECT_OK(mailoauth_set_logger(2, log_cb, &b));
    atomic_store(&a.retired, 1);
    EXPECT_OK(ctx_new(OK_CONFIG, &ctx));
    mailoauth_context_free(ctx);
    EXPECT_OK(ctx_new(CONFIG_IGNORED_KEYS, &ctx));
    mailoauth_context_free(ctx);
    CHECK(atomic_load(&a.calls) == a_before && atomic_load(&a.late) == 0, "the replaced logger got %d more calls",
          atomic_load(&a.calls) - a_before);
    CHECK(cap_has(&b, 2, "zz_unknown_top"), "second logger (max 2) did not get the warning");
    CHECK(atomic_load(&b.bad_level) == 0, "logger with max_level 2 got %d messages above level 2",
          atomic_load(&b.bad_level));
    CHECK(atomic_load(&b.secret_seen) == 0, "secret in a log message");

    /* invalid levels: refused, and the current logger stays */
    EXPECT_ERR(mailoauth_set_logger(6, log_cb, &c), MAILOAUTH_INVALID_ARGUMENT, "max_level");
    EXPECT_ERR(mailoauth_set_logger(-1, log_cb, &c), MAILOAUTH_INVALID_ARGUMENT, "max_level");
    EXPECT_ERR(mailoauth_set_logger(INT32_MAX, NULL, NULL), MAILOAUTH_INVALID_ARGUMENT, "max_level");
    int b_before = atomic_load(&b.calls);
    EXPECT_OK(ctx_new(CONFIG_IGNORED_KEYS, &ctx));
    mailoauth_context_free(ctx);
    CHECK(atomic_load(&c.calls) == 0, "a logger refused for its level was installed (%d calls)",
          atomic_load(&c.calls));
    CHECK(atomic_load(&b.calls) > b_before, "a refused set_logger removed the previous logger");

    /* level 0 = off */
    EXPECT_OK(mailoauth_set_logger(0, log_cb, &c));
    atomic_store(&b.retired, 1);
    EXPECT_OK(ctx_new(CONFIG_IGNORED_KEYS, &ctx));
    mailoauth_context_free(ctx);
    CHECK(atomic_load(&c.calls) == 0, "max_level 0 should be off, got %d calls", atomic_load(&c.calls));
    CHECK(atomic_load(&b.late) == 0, "replaced logger called %d times", atomic_load(&b.late));

    /* NULL fn = off */
    EXPECT_OK(mailoauth_set_logger(5, log_cb, &c));
    EXPECT_OK(mailoauth_set_logger(5, NULL, NULL));
    atomic_store(&c.retired, 1);
    EXPECT_OK(ctx_new(CONFIG_IGNORED_KEYS, &ctx));
    mailoauth_context_free(ctx);
    CHECK(atomic_load(&c.late) == 0, "logger called %d times after set_logger(NULL)", atomic_load(&c.late));
    EXPECT_OK(mailoauth_set_logger(3, NULL, &c)); /* off with user_data: fine */

    /* a callback that calls set_logger must not deadlock (ffi-conventions 2.13: INVALID_STATE) */
    atomic_int rcalls = 0;
    EXPECT_OK(mailoauth_set_logger(5, reentrant_cb, &rcalls));
    EXPECT_OK(ctx_new(OK_CONFIG, &ctx));
    mailoauth_context_free(ctx);
    CHECK(atomic_load(&rcalls) >= 1, "re-entrant logger never called");
    CHECK(reentrant_rc == MAILOAUTH_INVALID_STATE, "set_logger inside the callback returned %d %s, want INVALID_STATE",
          reentrant_rc, code_name(reentrant_rc));
    EXPECT_OK(mailoauth_set_logger(5, NULL, NULL));

    cap_free(&a);
    cap_free(&b);
    cap_free(&c);
}

/* Replacing the logger while 4 threads log: the old one is never called
 * after set_logger returned. */
typedef struct {
    int id, loops;
    atomic_int *stop;
} logthread_arg;

static void *thread_log_loop(void *p)
{
    logthread_arg *arg = p;
    for (int i = 0; i < arg->loops && !atomic_load(arg->stop); i++) {
        mailoauth_context *ctx = NULL;
        if (ctx_new(i % 2 ? CONFIG_IGNORED_KEYS : CONFIG_WITH_SECRET, &ctx) == MAILOAUTH_OK)
            mailoauth_context_free(ctx);
    }
    return NULL;
}

static void test_logger_threads(int loops)
{
    capture d, e;
    cap_init(&d, 5);
    cap_init(&e, 5);
    atomic_int stop = 0;
    EXPECT_OK(mailoauth_set_logger(5, log_cb, &d));
    pthread_t t[4];
    logthread_arg args[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (logthread_arg){k, loops, &stop};
        pthread_create(&t[k], NULL, thread_log_loop, &args[k]);
    }
    /* Wait for traffic (not for a fixed time: valgrind starts threads slowly). */
    for (int w = 0; w < 1000 && atomic_load(&d.calls) == 0; w++) sleep_ms(10);
    EXPECT_OK(mailoauth_set_logger(5, log_cb, &e));
    atomic_store(&d.retired, 1);
    for (int w = 0; w < 1000 && atomic_load(&e.calls) == 0; w++) sleep_ms(10);
    EXPECT_OK(mailoauth_set_logger(0, NULL, NULL));
    atomic_store(&e.retired, 1);
    for (int k = 0; k < 4; k++) pthread_join(t[k], NULL);
    CHECK(atomic_load(&d.calls) > 0, "no messages from the threads");
    CHECK(atomic_load(&d.late) == 0, "replaced logger called %d times after set_logger returned",
          atomic_load(&d.late));
    CHECK(atomic_load(&e.late) == 0, "removed logger called %d times after set_logger(NULL) returned",
          atomic_load(&e.late));
    CHECK(atomic_load(&d.secret_seen) + atomic_load(&e.secret_seen) == 0, "secret in a log message");
    CHECK(atomic_load(&d.bad_level) + atomic_load(&e.bad_level) == 0, "bad levels");
    cap_free(&d);
    cap_free(&e);
}

/* --------------------------------------------------- context_new: arguments */

static void test_context_new_arguments(void)
{
    mailoauth_context *ctx = SENTINEL_CTX;
    EXPECT_ERR(ctx_new(NULL, &ctx), MAILOAUTH_INVALID_ARGUMENT, "config_json");
    CHECK(ctx == SENTINEL_CTX, "*out written on failure");
    EXPECT_ERR(ctx_new(OK_CONFIG, NULL), MAILOAUTH_INVALID_ARGUMENT, "out");
    EXPECT_ERR(mailoauth_context_new(NULL, MAILOAUTH_ABI_VERSION, NULL), MAILOAUTH_INVALID_ARGUMENT, NULL);

    /* success */
    ctx = SENTINEL_CTX;
    EXPECT_OK(ctx_new(OK_CONFIG, &ctx));
    CHECK(ctx != NULL && ctx != SENTINEL_CTX, "no context returned");
    if (ctx != SENTINEL_CTX) mailoauth_context_free(ctx);

    /* ABI version: newer host refused, older accepted */
    ctx = SENTINEL_CTX;
    EXPECT_ERR(mailoauth_context_new(OK_CONFIG, MAILOAUTH_ABI_VERSION + 1, &ctx), MAILOAUTH_ABI_MISMATCH, NULL);
    CHECK(ctx == SENTINEL_CTX, "*out written on ABI mismatch");
    EXPECT_ERR(mailoauth_context_new(OK_CONFIG, UINT32_MAX, &ctx), MAILOAUTH_ABI_MISMATCH, NULL);
    ctx = NULL;
    EXPECT_OK(mailoauth_context_new(OK_CONFIG, 1, &ctx));
    mailoauth_context_free(ctx);
    ctx = NULL;
    EXPECT_OK(mailoauth_context_new(OK_CONFIG, MAILOAUTH_ABI_VERSION, &ctx));
    mailoauth_context_free(ctx);

    /* invalid UTF-8 is INVALID_ARGUMENT, never repaired */
    static const char *bad_utf8[] = {
        "\xff",
        "{\"client_id\":\"\xff\"}",
        "{\"client_id\":\"" CID "\",\"tenant\":\"\xc0\xaf\"}",          /* overlong '/' */
        "{\"client_id\":\"\xed\xa0\x80\"}",                       /* UTF-16 surrogate */
        "{\"client_id\":\"" CID "\",\"tenant\":\"ab\xe2\x82\"}",         /* truncated sequence */
        "{\"client_id\":\"" CID "\",\"\xfe\":1}",                       /* in a key */
    };
    for (size_t k = 0; k < sizeof bad_utf8 / sizeof bad_utf8[0]; k++) {
        ctx = SENTINEL_CTX;
        EXPECT_ERR(ctx_new(bad_utf8[k], &ctx), MAILOAUTH_INVALID_ARGUMENT, "config_json");
        CHECK(ctx == SENTINEL_CTX, "*out written on failure (bad UTF-8 #%zu)", k);
    }
}

/* ------------------------------------------------- context_new: bad configs */

static void test_context_new_bad_json(void)
{
    static const char *malformed[] = {
        "", " ", "{", "}", "{\"client_id\":", "{\"client_id\":\"" CID "\"", "{\"client_id\":\"" CID "\",}",
        "not json", "[]", "null", "42", "\"client_id\"", "{\"client_id\":\"" CID "\"} trailing",
        "{'client_id':'x'}", "{\"client_id\":\"" CID "\" /* comment */}",
        "{\"client_id\":\"\\ud800\"}", /* lone surrogate escape */
    };
    for (size_t k = 0; k < sizeof malformed / sizeof malformed[0]; k++) {
        mailoauth_context *ctx = SENTINEL_CTX;
        expect_err_at(__FILE__, __LINE__, malformed[k], ctx_new(malformed[k], &ctx), MAILOAUTH_INVALID_CONFIG,
                      k == sizeof malformed / sizeof malformed[0] - 1 ? MAILOAUTH_INVALID_ARGUMENT
                                                                      : MAILOAUTH_INVALID_CONFIG,
                      NULL);
        CHECK(ctx == SENTINEL_CTX, "*out written on failure for %s", malformed[k]);
    }

    /* unknown keys are named with their path */
    static const struct {
        const char *json, *name;
    } unknown[] = {
        {"{\"client_id\":\"" CID "\",\"clientid\":1}", "clientid"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"hots\":\"smtp.office365.com\"}}}", "servers.smtp.hots"},
        {"{\"client_id\":\"" CID "\",\"endpoints\":{\"tokn\":\"https://a.example/t\"}}", "endpoints.tokn"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"imapp\":{}}}", "servers.imapp"},
        {"{\"client_id\":\"" CID "\",\"cache\":{\"protect\":\"user\"}}", "cache.protect"},
        {"{\"client_id\":\"" CID "\",\"limits\":{\"max_msg_bytes\":1}}", "limits.max_msg_bytes"},
        {"{\"client_id\":\"" CID "\",\"ignore_unknown_keys\":false,\"Client_Id\":\"y\"}", "Client_Id"},
    };
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++)
        expect_err_at(__FILE__, __LINE__, unknown[k].json, try_config(unknown[k].json), MAILOAUTH_INVALID_CONFIG,
                      MAILOAUTH_INVALID_CONFIG, unknown[k].name);

    /* wrong types are named with their path */
    static const struct {
        const char *json, *name;
    } wrong_type[] = {
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"port\":\"587\"}}}", "servers.smtp.port"},
        {"{\"client_id\":123}", "client_id"},
        {"{\"client_id\":\"" CID "\",\"trusted_hosts\":\"a.example\"}", "trusted_hosts"},
        {"{\"client_id\":\"" CID "\",\"allow_plaintext_loopback\":\"yes\"}", "allow_plaintext_loopback"},
        {"{\"client_id\":\"" CID "\",\"http\":{\"timeout_ms\":\"30\"}}", "http.timeout_ms"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"port\":70000}}}", "servers.smtp.port"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"imap\":{\"port\":-1}}}", "servers.imap.port"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"port\":587.5}}}", "servers.smtp.port"},
        {"{\"client_id\":\"" CID "\",\"servers\":[]}", "servers"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"port\":0}}}", "servers.smtp.port"},
    };
    for (size_t k = 0; k < sizeof wrong_type / sizeof wrong_type[0]; k++)
        expect_err_at(__FILE__, __LINE__, wrong_type[k].json, try_config(wrong_type[k].json),
                      MAILOAUTH_INVALID_CONFIG, MAILOAUTH_INVALID_CONFIG, wrong_type[k].name);

    /* client_id is required and must be a usable string */
    static const char *no_client[] = {"{}", "{\"tenant\":\"common\"}", "{\"client_id\":null}", "{\"client_id\":\"\"}"};
    for (size_t k = 0; k < sizeof no_client / sizeof no_client[0]; k++)
        expect_err_at(__FILE__, __LINE__, no_client[k], try_config(no_client[k]), MAILOAUTH_INVALID_CONFIG,
                      MAILOAUTH_INVALID_CONFIG, "client_id");

    /* unknown enum texts are refused and named */
    static const struct {
        const char *json, *name;
    } bad_enum[] = {
        {"{\"client_id\":\"" CID "\",\"provider\":\"google\"}", "provider"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"security\":\"ssl\"}}}", "servers.smtp.security"},
        {"{\"client_id\":\"" CID "\",\"language\":\"fr\"}", "language"},
        {"{\"client_id\":\"" CID "\",\"browser\":\"firefox\"}", "browser"},
        {"{\"client_id\":\"" CID "\",\"cache\":{\"protection\":\"strong\"}}", "cache.protection"},
        {"{\"client_id\":\"" CID "\",\"redirect\":{\"host\":\"example.com\"}}", "redirect.host"},
        {"{\"client_id\":\"" CID "\",\"redirect\":{\"host\":\"10.1.2.3\"}}", "redirect.host"},
        {"{\"client_id\":\"" CID "\",\"http\":{\"proxy\":\"not a url\"}}", "http.proxy"},
    };
    for (size_t k = 0; k < sizeof bad_enum / sizeof bad_enum[0]; k++)
        expect_err_at(__FILE__, __LINE__, bad_enum[k].json, try_config(bad_enum[k].json), MAILOAUTH_INVALID_CONFIG,
                      MAILOAUTH_INVALID_ARGUMENT, bad_enum[k].name);

    /* CR, LF and NUL in ids and hosts are refused */
    static const struct {
        const char *json, *name;
    } crlf[] = {
        {"{" CUSTOM_IDP ",\"client_id\":\"abc\\r\\nX-Injected: 1\"}", "client_id"},
        {"{" CUSTOM_IDP ",\"client_id\":\"abc\\ndef\"}", "client_id"},
        {"{" CUSTOM_IDP ",\"client_id\":\"abc\\rdef\"}", "client_id"},
        {"{" CUSTOM_IDP ",\"client_id\":\"abc\\u0000def\"}", "client_id"},
        {"{\"client_id\":\"" CID "\\r\\n\"}", "client_id"},
        {"{\"client_id\":\"" CID "\",\"tenant\":\"organizations\\r\\nHost: evil\"}", "tenant"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"host\":\"smtp.office365.com\\r\\n\"}}}", "servers.smtp.host"},
        {"{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example\",\"trusted_hosts\":[\"a\\nb\"]}",
         "trusted_hosts"},
    };
    for (size_t k = 0; k < sizeof crlf / sizeof crlf[0]; k++)
        expect_err_at(__FILE__, __LINE__, crlf[k].json, try_config(crlf[k].json), MAILOAUTH_INVALID_ARGUMENT,
                      MAILOAUTH_INVALID_CONFIG, crlf[k].name);

    /* values that would bend URLs or carry credentials */
    static const struct {
        const char *json, *name;
    } bad_value[] = {
        {"{\"client_id\":\"" CID "\",\"tenant\":\"a/b?c#d\"}", "tenant"},
        {"{\"client_id\":\"" CID "\",\"tenant\":\"\"}", "tenant"},
        {"{\"client_id\":\"" CID "\",\"authority\":\"https://user:pw@login.microsoftonline.com\"}", "authority"},
        {"{\"client_id\":\"" CID "\",\"authority\":\"https://login.microsoftonline.com/?x=1\"}", "authority"},
        {"{\"client_id\":\"" CID "\",\"authority\":\"ftp://login.microsoftonline.com\"}", "authority"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"host\":\"\"}}}", "servers.smtp.host"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"host\":\"smtp.office365.com:587\"}}}", "servers.smtp.host"},
    };
    for (size_t k = 0; k < sizeof bad_value / sizeof bad_value[0]; k++)
        expect_err_at(__FILE__, __LINE__, bad_value[k].json, try_config(bad_value[k].json), MAILOAUTH_INVALID_CONFIG,
                      MAILOAUTH_INVALID_ARGUMENT, bad_value[k].name);

    /* duplicate keys: which one wins would be a silent choice */
    {
        int32_t rc = try_config("{\"client_id\":\"" CID "\",\"client_id\":\"00000000-0000-0000-0000-0000000000c2\"}");
        if (rc == MAILOAUTH_OK) NOTE("a duplicate key (client_id twice) is accepted silently");
        else expect_err_at(__FILE__, __LINE__, "duplicate client_id", rc, MAILOAUTH_INVALID_CONFIG,
                           MAILOAUTH_INVALID_CONFIG, "client_id");
    }

    /* hostile sizes: refused, not crashed */
    {
        size_t n = 17u * 1024 * 1024 + 100; /* above the 16 MiB max_json_bytes default */
        char *big = malloc(n + 64);
        strcpy(big, "{\"client_id\":\"" CID "\"");
        size_t len = strlen(big);
        memset(big + len, ' ', n - len);
        strcpy(big + n, "}");
        expect_err_at(__FILE__, __LINE__, "17 MiB configuration", try_config(big), MAILOAUTH_TOO_LARGE,
                      MAILOAUTH_INVALID_CONFIG, NULL);
        free(big);
    }
    {
        size_t depth = 100000;
        char *deep = malloc(depth + 64);
        strcpy(deep, "{\"client_id\":\"" CID "\",\"limits\":");
        size_t len = strlen(deep);
        memset(deep + len, '[', depth);
        deep[len + depth] = 0;
        expect_err_at(__FILE__, __LINE__, "100000 nested brackets", try_config(deep), MAILOAUTH_INVALID_CONFIG,
                      MAILOAUTH_TOO_LARGE, NULL);
        free(deep);
    }
}

/* ----------------------------------------------- context_describe, presets */

static void check_all_keys_at(const char *file, int line, const jval *d)
{
    static const char *keys[] = {
        "provider", "tenant", "client_id", "client_secret", "authority", "endpoints.authorize", "endpoints.token",
        "endpoints.device_code", "scopes.smtp", "scopes.imap", "scopes.pop3", "scopes.app", "servers.smtp.host",
        "servers.smtp.port", "servers.smtp.security", "servers.imap.host", "servers.imap.port",
        "servers.imap.security", "servers.pop3.host", "servers.pop3.port", "servers.pop3.security",
        "trusted_hosts", "cache.path", "cache.protection", "tls.ca_file", "http.proxy", "http.timeout_ms",
        "smtp.max_connections", "limits", "redirect.host", "redirect.port", "browser", "language",
        "allow_plaintext_loopback",
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        tu_check(jget(d, keys[k]) != NULL, file, line, "describe has every documented key", "missing %s", keys[k]);
    const jval *th = jget(d, "trusted_hosts");
    tu_check(th && th->t == J_ARR, file, line, "trusted_hosts is an array", "%s", "");
    const jval *lim = jget(d, "limits");
    tu_check(lim && lim->t == J_OBJ, file, line, "limits is an object", "%s", "");
}

static void test_describe(void)
{
    mailoauth_context *ctx = NULL;
    char *out = SENTINEL_STR;
    EXPECT_ERR(mailoauth_context_describe(NULL, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    CHECK(out == SENTINEL_STR, "*out_json written on failure");
    EXPECT_OK(ctx_new(CONFIG_WITH_SECRET, &ctx));
    EXPECT_ERR(mailoauth_context_describe(ctx, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");
    EXPECT_ERR(mailoauth_context_describe(NULL, NULL), MAILOAUTH_INVALID_ARGUMENT, NULL);

    out = NULL;
    EXPECT_OK(mailoauth_context_describe(ctx, &out));
    CHECK(out != NULL && tu_utf8_valid(out, strlen(out)), "describe output");
    if (out) {
        CHECK(strstr(out, SECRET) == NULL, "describe shows the client_secret: %s", out);
        CHECK(strstr(out, PROXY_PW) == NULL, "describe shows the proxy password: %s", out);
        jval *d = jparse(out, NULL);
        CHECK(d != NULL, "describe is JSON: %s", out);
        CHECK_STR(d, "client_secret", "set");
        CHECK_STR(d, "client_id", CID);
        check_all_keys_at(__FILE__, __LINE__, d);
        jfree(d);
    }
    mailoauth_string_free(out);

    /* describing twice, from a shared context on several threads, is fine; cancel doesn't break it */
    EXPECT_OK(mailoauth_context_cancel(ctx));
    EXPECT_OK(mailoauth_context_cancel(ctx));
    out = NULL;
    EXPECT_OK(mailoauth_context_describe(ctx, &out));
    mailoauth_string_free(out);
    mailoauth_context_free(ctx);
    mailoauth_context_free(NULL);
    CHECK(1, "context_free(NULL) is a no-op");

    /* defaults of the microsoft preset */
    jval *d = RESOLVE(OK_CONFIG, NULL);
    if (d) {
        check_all_keys_at(__FILE__, __LINE__, d);
        CHECK_STR(d, "provider", "microsoft");
        CHECK_STR(d, "tenant", "organizations");
        CHECK_STR(d, "client_id", "11111111-2222-3333-4444-555555555555");
        CHECK(jis_null(d, "client_secret"), "client_secret should be null without a secret");
        CHECK_STR(d, "authority", "https://login.microsoftonline.com");
        CHECK_STR(d, "endpoints.authorize", "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize");
        CHECK_STR(d, "endpoints.token", "https://login.microsoftonline.com/organizations/oauth2/v2.0/token");
        CHECK_STR(d, "endpoints.device_code", "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode");
        CHECK_STR(d, "scopes.smtp", "https://outlook.office.com/SMTP.Send");
        CHECK_STR(d, "scopes.imap", "https://outlook.office.com/IMAP.AccessAsUser.All");
        CHECK_STR(d, "scopes.pop3", "https://outlook.office.com/POP.AccessAsUser.All");
        CHECK_STR(d, "scopes.app", "https://outlook.office365.com/.default");
        CHECK_STR(d, "servers.smtp.host", "smtp.office365.com");
        CHECK_INT(d, "servers.smtp.port", 587);
        CHECK_STR(d, "servers.smtp.security", "starttls");
        CHECK_STR(d, "servers.imap.host", "outlook.office365.com");
        CHECK_INT(d, "servers.imap.port", 993);
        CHECK_STR(d, "servers.imap.security", "tls");
        CHECK_STR(d, "servers.pop3.host", "outlook.office365.com");
        CHECK_INT(d, "servers.pop3.port", 995);
        CHECK_STR(d, "servers.pop3.security", "tls");
        CHECK_STR(d, "cache.protection", "user");
        CHECK(jis_null(d, "tls.ca_file"), "tls.ca_file default null");
        CHECK_STR(d, "http.proxy", "system");
        CHECK_INT(d, "http.timeout_ms", 30000);
        CHECK_INT(d, "smtp.max_connections", 2);
        CHECK_INT(d, "limits.max_message_bytes", 157286400);
        CHECK_INT(d, "limits.max_json_bytes", 16777216);
        CHECK_STR(d, "redirect.host", "localhost");
        CHECK_INT(d, "redirect.port", 0);
        CHECK_STR(d, "browser", "system");
        CHECK_STR(d, "language", "en");
        CHECK(jis_bool(d, "allow_plaintext_loopback", 0), "allow_plaintext_loopback default false");
        const jval *th = jget(d, "trusted_hosts");
        CHECK(th && th->t == J_ARR && th->count == 0, "trusted_hosts default []");
        jfree(d);
    }

    /* US government cloud */
    d = RESOLVE("{\"client_id\":\"" CID "\",\"provider\":\"microsoft-usgov\"}", NULL);
    if (d) {
        CHECK_STR(d, "provider", "microsoft-usgov");
        CHECK_STR(d, "authority", "https://login.microsoftonline.us");
        CHECK_PREFIX(d, "endpoints.token", "https://login.microsoftonline.us/organizations/");
        CHECK_STR(d, "servers.smtp.host", "smtp.office365.us");
        CHECK_INT(d, "servers.smtp.port", 587);
        CHECK_STR(d, "servers.imap.host", "outlook.office365.us");
        CHECK_INT(d, "servers.imap.port", 993);
        CHECK_STR(d, "servers.pop3.host", "outlook.office365.us");
        CHECK_INT(d, "servers.pop3.port", 995);
        CHECK_PREFIX(d, "scopes.smtp", "https://outlook.office365.us/");
        CHECK_PREFIX(d, "scopes.imap", "https://outlook.office365.us/");
        CHECK_PREFIX(d, "scopes.pop3", "https://outlook.office365.us/");
        CHECK_PREFIX(d, "scopes.app", "https://outlook.office365.us/");
        jfree(d);
    }

    /* China (21Vianet) */
    d = RESOLVE("{\"client_id\":\"" CID "\",\"provider\":\"microsoft-china\"}", NULL);
    if (d) {
        CHECK_STR(d, "provider", "microsoft-china");
        CHECK_STR(d, "authority", "https://login.partner.microsoftonline.cn");
        CHECK_PREFIX(d, "endpoints.authorize", "https://login.partner.microsoftonline.cn/organizations/");
        CHECK_STR(d, "servers.smtp.host", "partner.outlook.cn");
        CHECK_INT(d, "servers.smtp.port", 587);
        CHECK_STR(d, "servers.imap.host", "partner.outlook.cn");
        CHECK_STR(d, "servers.pop3.host", "partner.outlook.cn");
        CHECK_PREFIX(d, "scopes.smtp", "https://partner.outlook.cn/");
        jfree(d);
    }

    /* explicit keys win over the preset, key by key */
    d = RESOLVE("{\"client_id\":\"" CID "\",\"provider\":\"microsoft-usgov\",\"tenant\":\"contoso.onmicrosoft.com\","
                "\"servers\":{\"smtp\":{\"port\":25}},\"scopes\":{\"smtp\":\"https://outlook.office365.us/SMTP.Send\"},"
                "\"endpoints\":{\"token\":\"https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token2\"},"
                "\"http\":{\"timeout_ms\":5000},\"smtp\":{\"max_connections\":4},\"language\":\"de\",\"browser\":\"none\","
                "\"redirect\":{\"host\":\"127.0.0.1\",\"port\":8400},\"cache\":{\"protection\":\"none\"},"
                "\"limits\":{\"max_message_bytes\":1048576}}",
                NULL);
    if (d) {
        CHECK_STR(d, "tenant", "contoso.onmicrosoft.com");
        CHECK_PREFIX(d, "endpoints.authorize", "https://login.microsoftonline.us/contoso.onmicrosoft.com/");
        CHECK_STR(d, "endpoints.token", "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token2");
        CHECK_STR(d, "servers.smtp.host", "smtp.office365.us");
        CHECK_INT(d, "servers.smtp.port", 25);
        CHECK_STR(d, "servers.smtp.security", "starttls");
        CHECK_STR(d, "scopes.smtp", "https://outlook.office365.us/SMTP.Send");
        CHECK_INT(d, "http.timeout_ms", 5000);
        CHECK_INT(d, "smtp.max_connections", 4);
        CHECK_STR(d, "language", "de");
        CHECK_STR(d, "browser", "none");
        CHECK_STR(d, "redirect.host", "127.0.0.1");
        CHECK_INT(d, "redirect.port", 8400);
        CHECK_STR(d, "cache.protection", "none");
        CHECK_INT(d, "limits.max_message_bytes", 1048576);
        CHECK_INT(d, "limits.max_json_bytes", 16777216);
        jfree(d);
    }
    d = RESOLVE("{\"client_id\":\"" CID "\",\"tenant\":\"common\",\"servers\":{\"imap\":{\"port\":143,\"security\":\"starttls\"}}}",
                NULL);
    if (d) {
        CHECK_STR(d, "servers.imap.host", "outlook.office365.com");
        CHECK_INT(d, "servers.imap.port", 143);
        CHECK_STR(d, "servers.imap.security", "starttls");
        CHECK_STR(d, "endpoints.token", "https://login.microsoftonline.com/common/oauth2/v2.0/token");
        jfree(d);
    }

    /* custom: everything from authority / endpoints and the configured servers */
    d = RESOLVE("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example.org\","
                "\"servers\":{\"smtp\":{\"host\":\"mail.example.org\",\"port\":465,\"security\":\"tls\"},"
                "\"imap\":{\"host\":\"imap.example.org\",\"port\":993,\"security\":\"tls\"},"
                "\"pop3\":{\"host\":\"pop.example.org\",\"port\":995,\"security\":\"tls\"}}}",
                NULL);
    if (d) {
        CHECK_STR(d, "provider", "custom");
        CHECK_STR(d, "authority", "https://idp.example.org");
        CHECK_PREFIX(d, "endpoints.token", "https://idp.example.org/");
        CHECK_STR(d, "servers.smtp.host", "mail.example.org");
        CHECK_INT(d, "servers.smtp.port", 465);
        CHECK_STR(d, "servers.smtp.security", "tls");
        CHECK_STR(d, "servers.imap.host", "imap.example.org");
        CHECK_STR(d, "servers.pop3.host", "pop.example.org");
        jfree(d);
    }
    d = RESOLVE("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"endpoints\":{\"authorize\":\"https://a.example/auth\","
                "\"token\":\"https://a.example/token\",\"device_code\":\"https://a.example/device\"},"
                "\"servers\":{\"smtp\":{\"host\":\"mail.example.org\",\"port\":587,\"security\":\"starttls\"}}}",
                NULL);
    if (d) {
        CHECK_STR(d, "endpoints.authorize", "https://a.example/auth");
        CHECK_STR(d, "endpoints.token", "https://a.example/token");
        CHECK_STR(d, "endpoints.device_code", "https://a.example/device");
        jfree(d);
    }
    expect_err_at(__FILE__, __LINE__, "custom without authority or endpoints",
                  try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\"}"), MAILOAUTH_INVALID_CONFIG,
                  MAILOAUTH_INVALID_CONFIG, NULL);
}

/* ------------------------------------------- plaintext, hosts, trust, TLS */

#define LOOP_SERVERS                                                                                   \
    "\"servers\":{\"smtp\":{\"host\":\"127.0.0.1\",\"port\":2525,\"security\":\"starttls\"},"        \
    "\"imap\":{\"host\":\"127.0.0.1\",\"port\":2993,\"security\":\"tls\"},"                          \
    "\"pop3\":{\"host\":\"127.0.0.1\",\"port\":2995,\"security\":\"tls\"}}"

static void test_plaintext_loopback(void)
{
    /* http:// authority: only loopback IP literals, only with the flag, never with a secret */
    jval *d = RESOLVE("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://127.0.0.1:8080\","
                      "\"allow_plaintext_loopback\":true," LOOP_SERVERS "}",
                      NULL);
    if (d) {
        CHECK_STR(d, "authority", "http://127.0.0.1:8080");
        CHECK(jis_bool(d, "allow_plaintext_loopback", 1), "allow_plaintext_loopback true");
        CHECK_PREFIX(d, "endpoints.token", "http://127.0.0.1:8080/");
        jfree(d);
    }
    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://127.8.9.10:1\","
                         "\"allow_plaintext_loopback\":true," LOOP_SERVERS "}"));
    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://[::1]:8080\","
                         "\"allow_plaintext_loopback\":true," LOOP_SERVERS "}"));
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://127.0.0.1:8080\","
                          LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, "authority");
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://10.0.0.1:8080\","
                          "\"allow_plaintext_loopback\":true," LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, "authority");
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://localhost:8080\","
                          "\"allow_plaintext_loopback\":true," LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, "authority");
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://127.0.0.1.evil.example:80\","
                          "\"allow_plaintext_loopback\":true," LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, "authority");
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://127.0.0.1:8080\","
                          "\"allow_plaintext_loopback\":true,\"client_secret\":\"" SECRET "\"," LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, NULL);
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"authority\":\"http://login.microsoftonline.com\"}"),
               MAILOAUTH_INVALID_CONFIG, "authority");
    /* never through a proxy */
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"http://127.0.0.1:8080\","
                          "\"allow_plaintext_loopback\":true,\"http\":{\"proxy\":\"http://proxy.example:3128\"},"
                          LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, NULL);
    /* an http:// endpoint is the same as an http:// authority */
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example\","
                          "\"endpoints\":{\"token\":\"http://127.0.0.1:9/token\"}," LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, "endpoints.token");
    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example\","
                         "\"allow_plaintext_loopback\":true,\"endpoints\":{\"token\":\"http://127.0.0.1:9/token\"},"
                         LOOP_SERVERS "}"));
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example\","
                          "\"allow_plaintext_loopback\":true,\"endpoints\":{\"token\":\"http://192.168.1.1/token\"},"
                          LOOP_SERVERS "}"),
               MAILOAUTH_INVALID_CONFIG, "endpoints.token");

    /* security: none, same rules */
#define NONE_CFG(host, extra)                                                                         \
    "{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example\"" extra ","  \
    "\"servers\":{\"smtp\":{\"host\":\"" host "\",\"port\":2525,\"security\":\"none\"}}}"
    d = RESOLVE(NONE_CFG("127.0.0.1", ",\"allow_plaintext_loopback\":true"), NULL);
    if (d) {
        CHECK_STR(d, "servers.smtp.security", "none");
        jfree(d);
    }
    EXPECT_OK(try_config(NONE_CFG("::1", ",\"allow_plaintext_loopback\":true")));
    EXPECT_ERR(try_config(NONE_CFG("127.0.0.1", "")), MAILOAUTH_INVALID_CONFIG, "servers.smtp");
    EXPECT_ERR(try_config(NONE_CFG("mail.example.com", ",\"allow_plaintext_loopback\":true")),
               MAILOAUTH_INVALID_CONFIG, "servers.smtp");
    EXPECT_ERR(try_config(NONE_CFG("localhost", ",\"allow_plaintext_loopback\":true")), MAILOAUTH_INVALID_CONFIG,
               "servers.smtp");
    EXPECT_ERR(try_config(NONE_CFG("127.0.0.1", ",\"allow_plaintext_loopback\":true,\"client_secret\":\"" SECRET "\"")),
               MAILOAUTH_INVALID_CONFIG, NULL);
    /* with a microsoft provider too */
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"servers\":{\"imap\":{\"security\":\"none\"}}}"),
               MAILOAUTH_INVALID_CONFIG, "servers.imap");
#undef NONE_CFG
}

static void test_trusted_hosts(void)
{
    /* provider microsoft: only that cloud's mail hosts, unless trusted */
    static const struct {
        const char *json, *needle;
    } refused[] = {
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"host\":\"mail.example.com\"}}}", "mail.example.com"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"imap\":{\"host\":\"outlook.office365.com.evil.example\"}}}",
         "outlook.office365.com.evil.example"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"pop3\":{\"host\":\"evil-office365.com\"}}}", "evil-office365.com"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"imap\":{\"host\":\"outlook.office365.us\"}}}", "outlook.office365.us"},
        {"{\"client_id\":\"" CID "\",\"provider\":\"microsoft-usgov\",\"servers\":{\"smtp\":{\"host\":\"smtp.office365.com\"}}}",
         "smtp.office365.com"},
        {"{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"host\":\"127.0.0.1\"}}}", "127.0.0.1"},
        {"{\"client_id\":\"" CID "\",\"trusted_hosts\":[\"other.example.com\"],\"servers\":{\"smtp\":{\"host\":\"mail.example.com\"}}}",
         "mail.example.com"},
    };
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
        expect_err_at(__FILE__, __LINE__, refused[k].json, try_config(refused[k].json), MAILOAUTH_INVALID_CONFIG,
                      MAILOAUTH_INVALID_CONFIG, refused[k].needle);

    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"trusted_hosts\":[\"mail.example.com\"],"
                         "\"servers\":{\"smtp\":{\"host\":\"mail.example.com\"}}}"));
    jval *d = RESOLVE("{\"client_id\":\"" CID "\",\"trusted_hosts\":[\"mail.example.com\",\"imap.example.com\"],"
                      "\"servers\":{\"smtp\":{\"host\":\"mail.example.com\"},\"imap\":{\"host\":\"imap.example.com\"}}}",
                      NULL);
    if (d) {
        const jval *th = jget(d, "trusted_hosts");
        CHECK(th && th->t == J_ARR && th->count == 2 && th->items[0]->t == J_STR &&
                  strcmp(th->items[0]->s, "mail.example.com") == 0,
              "trusted_hosts not shown as configured");
        CHECK_STR(d, "servers.smtp.host", "mail.example.com");
        jfree(d);
    }
    /* the Outlook.com (consumer) SMTP host is a Microsoft mail host of the global cloud */
    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"tenant\":\"consumers\",\"servers\":{\"smtp\":{\"host\":\"smtp-mail.outlook.com\"}}}"));
    /* host names are case-insensitive */
    if (try_config("{\"client_id\":\"" CID "\",\"servers\":{\"smtp\":{\"host\":\"SMTP.Office365.com\"}}}") != MAILOAUTH_OK)
        NOTE("SMTP.Office365.com (upper case) is refused as an untrusted host");
    /* custom: the configured servers are the trusted ones */
    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"provider\":\"custom\",\"authority\":\"https://idp.example\","
                         "\"servers\":{\"smtp\":{\"host\":\"mail.example.com\",\"port\":587,\"security\":\"starttls\"}}}"));
}

static char *json_escape(const char *s)
{
    char *o = malloc(strlen(s) * 6 + 1), *p = o;
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') { *p++ = '\\'; *p++ = *s; }
        else if ((unsigned char)*s < 0x20) p += sprintf(p, "\\u%04x", (unsigned char)*s);
        else *p++ = *s;
    }
    *p = 0;
    return o;
}

static void test_ca_file(void)
{
    char json[4096];
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"tls\":{\"ca_file\":\"/nonexistent/mailoauth/ca.pem\"}}"),
               MAILOAUTH_INVALID_CONFIG, "tls.ca_file");
    char *notpem = temp_file("this is not a certificate\n");
    char *empty = temp_file("");
    char *badpem = temp_file("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    CHECK(notpem && empty && badpem, "temporary files");
    const char *paths[] = {notpem, badpem, empty, "/"};
    for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
        if (!paths[k]) continue;
        char *esc = json_escape(paths[k]);
        snprintf(json, sizeof json, "{\"client_id\":\"" CID "\",\"tls\":{\"ca_file\":\"%s\"}}", esc);
        expect_err_at(__FILE__, __LINE__, json, try_config(json), MAILOAUTH_INVALID_CONFIG, MAILOAUTH_INVALID_CONFIG,
                      "tls.ca_file");
        free(esc);
    }
    const char *pem = getenv("MAILOAUTH_TEST_CA_PEM");
    CHECK(pem && *pem, "MAILOAUTH_TEST_CA_PEM is not set (run through tests/c/run.sh)");
    if (pem && *pem) {
        char *esc = json_escape(pem);
        snprintf(json, sizeof json, "{\"client_id\":\"" CID "\",\"tls\":{\"ca_file\":\"%s\"}}", esc);
        jval *d = RESOLVE(json, NULL);
        if (d) {
            CHECK_STR(d, "tls.ca_file", pem);
            jfree(d);
        }
        free(esc);
    }
    if (notpem) { unlink(notpem); free(notpem); }
    if (empty) { unlink(empty); free(empty); }
    if (badpem) { unlink(badpem); free(badpem); }
}

static void test_ignore_unknown_keys(void)
{
    /* off by default, on when asked; known keys still type-checked */
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"zz_future_key\":1}"), MAILOAUTH_INVALID_CONFIG, "zz_future_key");
    EXPECT_OK(try_config("{\"client_id\":\"" CID "\",\"ignore_unknown_keys\":true,\"zz_future_key\":1}"));
    EXPECT_ERR(try_config("{\"client_id\":\"" CID "\",\"ignore_unknown_keys\":true,\"zz_future_key\":1,"
                          "\"servers\":{\"smtp\":{\"port\":\"587\"}}}"),
               MAILOAUTH_INVALID_CONFIG, "servers.smtp.port");
}

/* ------------------------------------------------------- threads, cancel */

typedef struct {
    int id, loops;
    mailoauth_context *shared;
    atomic_int *errors;
} ctxthread_arg;

static void *thread_context_loop(void *p)
{
    ctxthread_arg *arg = p;
    for (int i = 0; i < arg->loops; i++) {
        mailoauth_context *ctx = NULL;
        if (ctx_new(OK_CONFIG, &ctx) != MAILOAUTH_OK || ctx == NULL) { atomic_fetch_add(arg->errors, 1); continue; }
        char *d = NULL;
        if (mailoauth_context_describe(ctx, &d) != MAILOAUTH_OK || d == NULL || !strstr(d, "11111111-2222"))
            atomic_fetch_add(arg->errors, 1);
        mailoauth_string_free(d);
        if (mailoauth_context_cancel(ctx) != MAILOAUTH_OK) atomic_fetch_add(arg->errors, 1);
        mailoauth_context_free(ctx);

        /* this thread's own error, not another thread's */
        char json[128], key[64];
        snprintf(key, sizeof key, "thread%d_key%d", arg->id, i);
        snprintf(json, sizeof json, "{\"client_id\":\"" CID "\",\"%s\":1}", key);
        if (ctx_new(json, &ctx) != MAILOAUTH_INVALID_CONFIG) atomic_fetch_add(arg->errors, 1);
        lasterr e;
        le_get(&e);
        if (e.code != MAILOAUTH_INVALID_CONFIG || !strstr(e.message, key)) atomic_fetch_add(arg->errors, 1);
        le_free(&e);

        /* the shared context from many threads at once */
        d = NULL;
        if (mailoauth_context_describe(arg->shared, &d) != MAILOAUTH_OK) atomic_fetch_add(arg->errors, 1);
        mailoauth_string_free(d);
        if (mailoauth_context_cancel(arg->shared) != MAILOAUTH_OK) atomic_fetch_add(arg->errors, 1);
    }
    return NULL;
}

static void *thread_free_context(void *p)
{
    mailoauth_context_free(p);
    return NULL;
}

static void test_context_threads(int loops)
{
    mailoauth_context *shared = NULL;
    EXPECT_OK(ctx_new(OK_CONFIG, &shared));
    atomic_int errors = 0;
    pthread_t t[4];
    ctxthread_arg args[4];
    for (int k = 0; k < 4; k++) {
        args[k] = (ctxthread_arg){k, loops, shared, &errors};
        pthread_create(&t[k], NULL, thread_context_loop, &args[k]);
    }
    for (int k = 0; k < 4; k++) pthread_join(t[k], NULL);
    CHECK(atomic_load(&errors) == 0, "%d failures in %d threaded context iterations", atomic_load(&errors), 4 * loops);
    /* a context created here, freed on another thread (a .NET finalizer does that) */
    pthread_t f;
    pthread_create(&f, NULL, thread_free_context, shared);
    pthread_join(f, NULL);
    CHECK(1, "context freed on another thread");
}

/* -------------------------------------------------------------------- main */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)env_int("MAILOAUTH_TEST_TIMEOUT", 900));
    int loops = env_int("MAILOAUTH_TEST_LOOPS", 40);

    test_last_error_basics(); /* first: needs a thread with no error yet */
    test_version();
    test_result_str();
    test_last_error_message_and_language();
    test_last_error_thread_local();
    test_frees();
    test_logger();
    test_logger_threads(loops);
    test_context_new_arguments();
    test_context_new_bad_json();
    test_describe();
    test_plaintext_loopback();
    test_trusted_hosts();
    test_ca_file();
    test_ignore_unknown_keys();
    test_context_threads(loops);
    mailoauth_set_logger(0, NULL, NULL);
    return tu_summary();
}
