/* tests/c/test_tokens.c: consent operations, tokens, accounts, the host
 * store and the cache functions of the mailoauth C ABI, tested from C
 * against include/mailoauth.h and the local identity imitation
 * (tests/stack/idp).
 *
 * Exports covered: mailoauth_consent_begin, mailoauth_op_wait,
 * mailoauth_op_info, mailoauth_op_result, mailoauth_op_cancel,
 * mailoauth_op_free, mailoauth_token_get (+ MAILOAUTH_TOKEN_FORCE_REFRESH),
 * mailoauth_account_list, mailoauth_account_remove,
 * mailoauth_context_set_store, mailoauth_blob_set,
 * mailoauth_context_set_cache_key, mailoauth_cache_reset.
 *
 * Every export gets a success test, NULL tests (each pointer argument and
 * each output pointer: INVALID_ARGUMENT naming the parameter, outputs
 * untouched) and bad-input tests (bad UTF-8, bad request JSON, wrong state,
 * stale handles, unknown flags, wrong lengths). The scenarios drive the
 * browser consent end to end as a browser would: GET the authorize URL from
 * the IdP (auto_consent answers with a 302 at once) and follow its Location
 * to the library's loopback listener, over a tiny HTTP/1.1 client.
 *
 * Prints one line per failing check with file:line and ends with
 * "N passed, N failed"; exits non-zero on failure.
 *
 * Environment:
 *   MAILOAUTH_STACK_FILE    the stack file of tests/stack/up.sh
 *                           (default /tmp/mailoauth-stack.json); required
 *   MAILOAUTH_TEST_TIMEOUT  watchdog in seconds (default 600)
 *
 * Build: see tests/c/run.sh (ASan+UBSan build and a valgrind run). */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE /* mkdtemp, strncasecmp */

#include "mailoauth.h"
#define TU_STACK_HELPERS
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* the shared helpers (stack file, HTTP client, IdP admin, consent) are in testutil.h */

static int op_state_is(mailoauth_op *op, const char *state)
{
    jval *v;
    char *j = op_info_json(op, &v);
    const char *s = jstr(v, "state");
    int ok = s && strcmp(s, state) == 0;
    jfree(v);
    free(j);
    return ok;
}

/* Decodes %XX in place. */
static void url_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '%' && s[1] && s[2]) {
            char hex[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

/* The loopback port of the op's redirect_uri (from its authorize_url); 0 if unknown. */
static int op_listener_port(mailoauth_op *op)
{
    jval *v;
    char *j = op_info_json(op, &v);
    const char *url = jstr(v, "authorize_url");
    int port = 0;
    const char *p = url ? strstr(url, "redirect_uri=") : NULL;
    if (p) {
        char ru[512];
        p += strlen("redirect_uri=");
        size_t n = strcspn(p, "&");
        if (n < sizeof ru) {
            memcpy(ru, p, n);
            ru[n] = 0;
            url_decode(ru);
            char host[256];
            const char *target;
            if (!split_url(ru, host, sizeof host, &port, &target)) port = 0;
        }
    }
    jfree(v);
    free(j);
    return port;
}

/* 1 if something accepts connections on ip:port. */
static int port_open(const char *ip, int port)
{
    int fd = tcp_connect(ip, port, 2);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

/* Waits up to ms for ip:port to refuse connections; 1 if it does. */
static int port_closes(const char *ip, int port, int ms)
{
    long long end = now_ms() + ms;
    do {
        if (!port_open(ip, port)) return 1;
        sleep_ms(50);
    } while (now_ms() < end);
    return 0;
}


/* token_get into a malloc'd copy (NULL on failure, *rc set). */
static char *token_copy(mailoauth_context *ctx, const char *account, const char *protocols, int32_t flags, int32_t *rc)
{
    char *t = SENTINEL_STR;
    *rc = mailoauth_token_get(ctx, account, protocols, flags, &t);
    if (*rc != MAILOAUTH_OK) {
        CHECK(t == SENTINEL_STR, "token_get wrote *out_token although it failed with %d", *rc);
        return NULL;
    }
    char *c = t ? strdup(t) : NULL;
    mailoauth_secret_free(t);
    return c;
}

static int token_plausible(const char *t)
{
    if (t == NULL || strlen(t) < 1000) return 0;
    for (const char *p = t; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return 0;
    return 1;
}

/* The account_list document, parsed (caller jfree()s); *raw gets the text. */
static jval *account_list(mailoauth_context *ctx, char **raw)
{
    char *j = SENTINEL_STR;
    *raw = NULL;
    if (!EXPECT_OK(mailoauth_account_list(ctx, &j))) return NULL;
    *raw = strdup(j ? j : "");
    mailoauth_string_free(j);
    const char *err = NULL;
    jval *v = jparse(*raw, &err);
    CHECK(v != NULL && v->t == J_ARR, "account_list is a JSON array: %s: %s", err ? err : "", *raw);
    return v;
}

static const jval *list_entry(const jval *list, const char *account)
{
    for (size_t k = 0; list && list->t == J_ARR && k < list->count; k++) {
        const char *a = jstr(list->items[k], "account");
        if (a && strcmp(a, account) == 0) return list->items[k];
    }
    return NULL;
}

/* ============================================================ offline tests */

/* Invalid UTF-8 strings (as C strings). */
static const char *BAD_UTF8[] = {
    "\xff",
    "alice\xc0\xaf@contoso.test",  /* overlong '/' */
    "\xed\xa0\x80@contoso.test",   /* UTF-16 surrogate */
    "alice@contoso.test\xe2\x82",  /* truncated sequence */
};
#define NBAD_UTF8 (sizeof BAD_UTF8 / sizeof BAD_UTF8[0])

static void test_consent_begin_arguments(mailoauth_context *ctx)
{
    const char *req = "{\"account\":\"" ALICE "\",\"timeout_s\":60}";
    mailoauth_op *op = SENTINEL_OP;
    EXPECT_ERR(mailoauth_consent_begin(NULL, req, &op), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    CHECK(op == SENTINEL_OP, "*out written on failure");
    EXPECT_ERR(mailoauth_consent_begin(ctx, NULL, &op), MAILOAUTH_INVALID_ARGUMENT, "request_json");
    CHECK(op == SENTINEL_OP, "*out written on failure");
    EXPECT_ERR(mailoauth_consent_begin(ctx, req, NULL), MAILOAUTH_INVALID_ARGUMENT, "out");
    EXPECT_ERR(mailoauth_consent_begin(NULL, NULL, NULL), MAILOAUTH_INVALID_ARGUMENT, NULL);

    /* a pointer that never was a context (the handle table refuses it) */
    int not_a_handle = 0;
    EXPECT_ERR(mailoauth_consent_begin((mailoauth_context *)&not_a_handle, req, &op), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    CHECK(op == SENTINEL_OP, "*out written on failure");

    /* bad UTF-8: INVALID_ARGUMENT, never repaired */
    for (size_t k = 0; k < NBAD_UTF8; k++) {
        char json[256];
        snprintf(json, sizeof json, "{\"account\":\"%s\"}", BAD_UTF8[k]);
        op = SENTINEL_OP;
        EXPECT_ERR(mailoauth_consent_begin(ctx, json, &op), MAILOAUTH_INVALID_ARGUMENT, "request_json");
        CHECK(op == SENTINEL_OP, "*out written on failure (bad UTF-8 #%zu)", k);
    }
    op = SENTINEL_OP;
    EXPECT_ERR(mailoauth_consent_begin(ctx, "{\"\xfe\":1}", &op), MAILOAUTH_INVALID_ARGUMENT, "request_json");

    /* malformed JSON, unknown keys, wrong types, out-of-range values: INVALID_CONFIG */
    static const struct { const char *json; const char *needle; } bad_config[] = {
        {"", NULL},
        {"{", NULL},
        {"{\"account\":\"" ALICE "\",}", NULL},
        {"[1]", NULL},
        {"\"browser\"", NULL},
        {"null", NULL},
        {"{\"account\":\"" ALICE "\"} x", NULL},
        {"{\"acount\":\"" ALICE "\"}", "acount"},
        {"{\"account\":\"" ALICE "\",\"zz_future_key\":true}", "zz_future_key"},
        {"{\"account\":42}", "account"},
        {"{\"protocols\":\"smtp\"}", "protocols"},
        {"{\"flow\":1}", "flow"},
        {"{\"timeout_s\":0}", "timeout_s"},
        {"{\"timeout_s\":\"60\"}", "timeout_s"},
        {"{\"account\":\"" ALICE "\",\"account\":\"" BOB "\"}", NULL}, /* duplicate key */
    };
    for (size_t k = 0; k < sizeof bad_config / sizeof bad_config[0]; k++) {
        op = SENTINEL_OP;
        expect_err_at(__FILE__, __LINE__, bad_config[k].json, mailoauth_consent_begin(ctx, bad_config[k].json, &op),
                      MAILOAUTH_INVALID_CONFIG, bad_config[k].needle);
        CHECK(op == SENTINEL_OP, "*out written on failure (%s)", bad_config[k].json);
    }

    /* unknown enum text and CR/LF in the account: INVALID_ARGUMENT */
    static const struct { const char *json; const char *needle; } bad_arg[] = {
        {"{\"flow\":\"fax\"}", "flow"},
        {"{\"prompt\":\"maybe\"}", "prompt"},
        {"{\"protocols\":[\"smtp\",\"fax\"]}", "fax"},
        {"{\"account\":\"alice@contoso.test\\r\\nX-Evil: 1\"}", "account"},
        {"{\"account\":\"alice\\u0000@contoso.test\"}", "account"},
    };
    for (size_t k = 0; k < sizeof bad_arg / sizeof bad_arg[0]; k++) {
        op = SENTINEL_OP;
        expect_err_at(__FILE__, __LINE__, bad_arg[k].json, mailoauth_consent_begin(ctx, bad_arg[k].json, &op),
                      MAILOAUTH_INVALID_ARGUMENT, bad_arg[k].needle);
        CHECK(op == SENTINEL_OP, "*out written on failure (%s)", bad_arg[k].json);
    }
}

/* Wrong state for consent_begin: the configured redirect.port is in use. */
static void test_consent_begin_port_in_use(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof a;
    if (!CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0 &&
                   getsockname(fd, (struct sockaddr *)&a, &sl) == 0,
               "a listening socket for the port-in-use test: %s", strerror(errno))) {
        if (fd >= 0) close(fd);
        return;
    }
    int port = ntohs(a.sin_port);
    char cache[128], cfg[4096];
    snprintf(cache, sizeof cache, "{\"protection\":\"none\",\"path\":\"/nonexistent-mailoauth-ctest\"},"
                                  "\"redirect\":{\"host\":\"localhost\",\"port\":%d}", port);
    config_json(cfg, sizeof cfg, cache);
    mailoauth_context *ctx = NULL;
    if (EXPECT_OK(ctx_new(cfg, &ctx))) {
        mailoauth_op *op = SENTINEL_OP;
        EXPECT_ERR(mailoauth_consent_begin(ctx, "{\"account\":\"" ALICE "\"}", &op), MAILOAUTH_INVALID_STATE, NULL);
        CHECK(op == SENTINEL_OP, "*out written on failure");
        /* the port is free again: the next begin listens there */
        close(fd);
        fd = -1;
        op = NULL;
        if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" ALICE "\"}", &op))) {
            CHECK(op_listener_port(op) == port, "redirect_uri uses the configured redirect.port %d", port);
            /* handles may be freed in any order: the context first, the running op after */
            mailoauth_context_free(ctx);
            ctx = NULL;
            char *j = NULL;
            EXPECT_OK(mailoauth_op_info(op, &j));
            mailoauth_string_free(j);
            EXPECT_OK(mailoauth_op_cancel(op));
            mailoauth_op_free(op);
        }
        mailoauth_context_free(ctx);
    }
    if (fd >= 0) close(fd);
}

static void test_op_null_arguments(void)
{
    char *j = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_wait(NULL, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_wait(NULL, -1), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_info(NULL, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    CHECK(j == SENTINEL_STR, "*out_json written on failure");
    EXPECT_ERR(mailoauth_op_result(NULL, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    CHECK(j == SENTINEL_STR, "*out_json written on failure");
    EXPECT_ERR(mailoauth_op_cancel(NULL), MAILOAUTH_INVALID_ARGUMENT, "op");
    mailoauth_op_free(NULL);
    CHECK(1, "op_free(NULL) is a no-op");

    /* a pointer that never was an op */
    int not_a_handle = 0;
    mailoauth_op *fake = (mailoauth_op *)&not_a_handle;
    EXPECT_ERR(mailoauth_op_wait(fake, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_info(fake, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_result(fake, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_cancel(fake), MAILOAUTH_INVALID_ARGUMENT, "op");
    mailoauth_op_free(fake);
    CHECK(not_a_handle == 0 && j == SENTINEL_STR, "a foreign pointer was written through");
}

/* NULL and bad inputs of token_get, account_list, account_remove, set_cache_key,
 * cache_reset, set_store, blob_set (outside a load callback). */
static void test_context_call_arguments(mailoauth_context *ctx)
{
    char *t = SENTINEL_STR;
    /* token_get */
    EXPECT_ERR(mailoauth_token_get(NULL, ALICE, "smtp", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_token_get(ctx, NULL, "smtp", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, "smtp", 0, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_token");
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, NULL, 0, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_token");
    EXPECT_ERR(mailoauth_token_get(ctx, "", "smtp", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_token_get(ctx, "alice@contoso.test\r\n", "smtp", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_token_get(ctx, "alice\n@contoso.test", "smtp", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "account");
    for (size_t k = 0; k < NBAD_UTF8; k++) {
        EXPECT_ERR(mailoauth_token_get(ctx, BAD_UTF8[k], "smtp", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "account");
        EXPECT_ERR(mailoauth_token_get(ctx, ALICE, BAD_UTF8[k], 0, &t), MAILOAUTH_INVALID_ARGUMENT, "protocols");
    }
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, "fax", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "fax");
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, "smtp fax", 0, &t), MAILOAUTH_INVALID_ARGUMENT, "fax");
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, "SMTP\r\n", 0, &t), MAILOAUTH_INVALID_ARGUMENT, NULL);
    const int32_t bad_flags[] = {2, 3, 4, 0x100, INT32_MIN, -1, INT32_MAX};
    for (size_t k = 0; k < sizeof bad_flags / sizeof bad_flags[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "token_get flags %d", bad_flags[k]);
        expect_err_at(__FILE__, __LINE__, what, mailoauth_token_get(ctx, ALICE, "smtp", bad_flags[k], &t),
                      MAILOAUTH_INVALID_ARGUMENT, "flags");
    }
    CHECK(t == SENTINEL_STR, "*out_token written on failure");
    /* no grant yet: CONSENT_REQUIRED, with and without FORCE_REFRESH */
    EXPECT_ERR(mailoauth_token_get(ctx, "nobody@contoso.test", "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
    EXPECT_ERR(mailoauth_token_get(ctx, "nobody@contoso.test", NULL, MAILOAUTH_TOKEN_FORCE_REFRESH, &t),
               MAILOAUTH_CONSENT_REQUIRED, NULL);
    CHECK(t == SENTINEL_STR, "*out_token written on failure");

    /* account_list */
    char *j = SENTINEL_STR;
    EXPECT_ERR(mailoauth_account_list(NULL, &j), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_account_list(ctx, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");
    CHECK(j == SENTINEL_STR, "*out_json written on failure");
    if (EXPECT_OK(mailoauth_account_list(ctx, &j))) {
        CHECK(j != NULL && strcmp(j, "[]") == 0, "empty store: account_list is [], got %s", j ? j : "(null)");
        mailoauth_string_free(j);
    }

    /* account_remove */
    EXPECT_ERR(mailoauth_account_remove(NULL, ALICE), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_account_remove(ctx, NULL), MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_account_remove(ctx, ""), MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_account_remove(ctx, "alice@contoso.test\n"), MAILOAUTH_INVALID_ARGUMENT, "account");
    for (size_t k = 0; k < NBAD_UTF8; k++)
        EXPECT_ERR(mailoauth_account_remove(ctx, BAD_UTF8[k]), MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_account_remove(ctx, "nobody@contoso.test"), MAILOAUTH_NOT_FOUND, NULL);

    /* set_cache_key */
    uint8_t key[64];
    for (size_t k = 0; k < sizeof key; k++) key[k] = (uint8_t)(k * 7 + 1);
    EXPECT_ERR(mailoauth_context_set_cache_key(NULL, key, 32), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_context_set_cache_key(ctx, NULL, 32), MAILOAUTH_INVALID_ARGUMENT, "key");
    EXPECT_ERR(mailoauth_context_set_cache_key(ctx, NULL, 0), MAILOAUTH_INVALID_ARGUMENT, "key");
    const int64_t bad_len[] = {0, 1, 16, 31, 33, 64, -1, -32, INT64_MIN, INT64_MAX};
    for (size_t k = 0; k < sizeof bad_len / sizeof bad_len[0]; k++) {
        char what[64];
        snprintf(what, sizeof what, "set_cache_key key_len %lld", (long long)bad_len[k]);
        /* the key buffer holds 64 bytes: a library that read key_len bytes past 64 would trip ASan */
        expect_err_at(__FILE__, __LINE__, what, mailoauth_context_set_cache_key(ctx, key, bad_len[k]),
                      MAILOAUTH_INVALID_ARGUMENT, "key_len");
    }
    EXPECT_OK(mailoauth_context_set_cache_key(ctx, key, 32));
    EXPECT_OK(mailoauth_context_set_cache_key(ctx, key + 32, 32)); /* replaces */

    /* cache_reset */
    EXPECT_ERR(mailoauth_cache_reset(NULL), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_OK(mailoauth_cache_reset(ctx)); /* an empty store: nothing to move */

    /* set_store: load and save go together; both NULL unregisters */
    EXPECT_ERR(mailoauth_context_set_store(NULL, NULL, NULL, NULL, NULL), MAILOAUTH_INVALID_ARGUMENT, "ctx");

    /* blob_set outside any load callback */
    int fake_sink = 0;
    uint8_t data[4] = {1, 2, 3, 4};
    EXPECT_ERR(mailoauth_blob_set(NULL, data, 4), MAILOAUTH_INVALID_ARGUMENT, "sink");
    EXPECT_ERR(mailoauth_blob_set((mailoauth_blob *)&fake_sink, data, 4), MAILOAUTH_INVALID_ARGUMENT, "sink");
    EXPECT_ERR(mailoauth_blob_set((mailoauth_blob *)&fake_sink, data, -1), MAILOAUTH_INVALID_ARGUMENT, NULL);
    EXPECT_ERR(mailoauth_blob_set((mailoauth_blob *)&fake_sink, NULL, 0), MAILOAUTH_INVALID_ARGUMENT, "sink");
    CHECK(fake_sink == 0, "blob_set wrote through a pointer that is no sink");
}

/* Every context export with a freed context: INVALID_ARGUMENT, no crash. */
static void test_stale_context(void)
{
    char cfg[4096];
    config_json(cfg, sizeof cfg, "{\"protection\":\"none\",\"path\":\"/nonexistent-mailoauth-ctest\"}");
    mailoauth_context *ctx = NULL;
    if (!EXPECT_OK(ctx_new(cfg, &ctx))) return;
    mailoauth_context_free(ctx);
    /* ctx is stale now: the library's handle table must refuse it */
    mailoauth_op *op = SENTINEL_OP;
    char *s = SENTINEL_STR;
    uint8_t key[32] = {0};
    EXPECT_ERR(mailoauth_consent_begin(ctx, "{}", &op), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, NULL, 0, &s), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_account_list(ctx, &s), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_account_remove(ctx, ALICE), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_context_set_cache_key(ctx, key, 32), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_cache_reset(ctx), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_context_set_store(ctx, NULL, NULL, NULL, NULL), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    CHECK(op == SENTINEL_OP && s == SENTINEL_STR, "an output written on failure");
    mailoauth_context_free(ctx); /* a second free is a no-op */
    CHECK(1, "double context_free");
}

/* ==================================================== consent operations */

typedef struct {
    mailoauth_op *op;
    int delay_ms;
} cancel_arg;

static void *thread_cancel_later(void *p)
{
    cancel_arg *a = p;
    sleep_ms(a->delay_ms);
    int32_t rc = mailoauth_op_cancel(a->op);
    CHECK(rc == MAILOAUTH_OK, "op_cancel from another thread: %d %s", rc, code_name(rc));
    return NULL;
}

/* A running op: PENDING, INVALID_STATE for the result, cancel, stale handle. */
static void test_op_running_and_cancel(mailoauth_context *ctx)
{
    mailoauth_op *op = SENTINEL_OP;
    if (!EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" ALICE "\",\"timeout_s\":120}", &op))) return;
    CHECK(op != NULL && op != SENTINEL_OP, "consent_begin returned no op");

    /* info right away: waiting_for_user with an authorize_url on the IdP */
    jval *v;
    char *info = op_info_json(op, &v);
    CHECK(v != NULL && v->t == J_OBJ, "op_info is a JSON object: %s", info ? info : "(null)");
    const char *state = jstr(v, "state");
    CHECK(state && strcmp(state, "waiting_for_user") == 0, "state after begin: %s", info ? info : "(null)");
    const char *url = jstr(v, "authorize_url");
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/%s/oauth2/v2.0/authorize?", STACK.up ? STACK.http : "http://127.0.0.1:9",
             STACK.up ? STACK.tenant : "organizations");
    CHECK(url && strncmp(url, prefix, strlen(prefix)) == 0, "authorize_url %s, want a prefix %s", url ? url : "(none)",
          prefix);
    CHECK(url && strstr(url, "code_challenge=") && strstr(url, "state=") && strstr(url, "login_hint=alice%40contoso.test"),
          "authorize_url lacks PKCE, state or login_hint: %s", url ? url : "(none)");
    CHECK(!jhas_null_member(v), "op_info has a null-valued key: %s", info ? info : "");
    long long exp = 0;
    CHECK(jint(v, "expires_at", &exp) && exp > (long long)time(NULL) && exp <= (long long)time(NULL) + 130,
          "expires_at is about now + timeout_s: %s", info ? info : "");
    jfree(v);
    free(info);

    int port = op_listener_port(op);
    CHECK(port > 0, "redirect_uri port in the authorize_url");
    int v6 = port > 0 && port_open("::1", port);
    CHECK(port > 0 && port_open("127.0.0.1", port), "the loopback listener accepts on 127.0.0.1:%d", port);

    /* PENDING sets nothing: the last error of an earlier failure stays, and so does "no error" */
    char *j = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_info(NULL, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    char *before = le_json();
    long long t0 = now_ms();
    int32_t rc = mailoauth_op_wait(op, 0);
    long long took = now_ms() - t0;
    char *after = le_json();
    CHECK(rc == MAILOAUTH_PENDING, "op_wait(0) on a running op: got %d %s", rc, code_name(rc));
    CHECK(strcmp(before, after) == 0, "PENDING sets nothing: last error was %s, is %s", before, after);
    CHECK(took < 1000, "op_wait(0) returns at once (took %lld ms)", took);
    free(before);
    free(after);
    j = NULL;
    EXPECT_OK(mailoauth_op_info(op, &j)); /* a success: last error is OK now */
    mailoauth_string_free(j);
    before = le_json();
    t0 = now_ms();
    rc = mailoauth_op_wait(op, 300);
    took = now_ms() - t0;
    after = le_json();
    CHECK(rc == MAILOAUTH_PENDING, "op_wait(300) on a running op: got %d %s", rc, code_name(rc));
    CHECK(took >= 250, "op_wait(300) waited only %lld ms", took);
    CHECK(strcmp(before, after) == 0 && strstr(after, "\"code\":0") != NULL, "PENDING sets nothing: was %s, is %s",
          before, after);
    free(before);
    free(after);

    /* the result of an unfinished op: INVALID_STATE, output untouched */
    j = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_result(op, &j), MAILOAUTH_INVALID_STATE, NULL);
    CHECK(j == SENTINEL_STR, "*out_json written on failure");
    EXPECT_ERR(mailoauth_op_result(op, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");
    EXPECT_ERR(mailoauth_op_info(op, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");

    /* cancel from another thread while op_wait(-1) blocks: CANCELLED promptly */
    pthread_t th;
    cancel_arg ca = {op, 300};
    pthread_create(&th, NULL, thread_cancel_later, &ca);
    t0 = now_ms();
    EXPECT_ERR(mailoauth_op_wait(op, -1), MAILOAUTH_CANCELLED, NULL);
    took = now_ms() - t0;
    pthread_join(th, NULL);
    CHECK(took < 10000, "op_wait(-1) returned %lld ms after the cancel was due", took - 300);
    /* finished now: every wait and the result repeat the failure; cancel changes nothing */
    EXPECT_ERR(mailoauth_op_wait(op, 0), MAILOAUTH_CANCELLED, NULL);
    EXPECT_OK(mailoauth_op_cancel(op));
    EXPECT_ERR(mailoauth_op_wait(op, 1000), MAILOAUTH_CANCELLED, NULL);
    j = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_result(op, &j), MAILOAUTH_CANCELLED, NULL);
    CHECK(j == SENTINEL_STR, "*out_json written on failure");
    CHECK(op_state_is(op, "cancelled"), "op_info state after cancel is cancelled");
    if (port > 0) {
        CHECK(port_closes("127.0.0.1", port, 5000), "the listener on 127.0.0.1:%d still accepts after op_cancel", port);
        if (v6) CHECK(port_closes("::1", port, 5000), "the listener on [::1]:%d still accepts after op_cancel", port);
    }

    /* stale op: every op export refuses it without a crash */
    mailoauth_op_free(op);
    j = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_wait(op, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_wait(op, -1), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_info(op, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_result(op, &j), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_cancel(op), MAILOAUTH_INVALID_ARGUMENT, "op");
    CHECK(j == SENTINEL_STR, "*out_json written on failure");
    mailoauth_op_free(op); /* double free: a no-op */
    CHECK(1, "double op_free");
}

/* op_cancel then op_wait (same thread), and op_free of a running op. */
static void test_op_cancel_and_free_running(mailoauth_context *ctx)
{
    mailoauth_op *op = NULL;
    if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" BOB "\",\"protocols\":[\"imap\"]}", &op))) {
        EXPECT_OK(mailoauth_op_cancel(op));
        EXPECT_ERR(mailoauth_op_wait(op, 10000), MAILOAUTH_CANCELLED, NULL);
        jval *v;
        char *info = op_info_json(op, &v);
        CHECK(jstr(v, "state") && strcmp(jstr(v, "state"), "cancelled") == 0, "state: %s", info ? info : "(null)");
        jfree(v);
        free(info);
        mailoauth_op_free(op);
    }

    /* op_free of a running op: no leak, no crash, listener closed */
    op = NULL;
    if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" BOB "\"}", &op))) {
        int port = op_listener_port(op);
        int v6 = port > 0 && port_open("::1", port);
        CHECK(port > 0 && port_open("127.0.0.1", port), "the listener accepts before op_free (port %d)", port);
        mailoauth_op_free(op);
        if (port > 0) {
            CHECK(port_closes("127.0.0.1", port, 5000), "127.0.0.1:%d still accepts after op_free of a running op", port);
            if (v6) CHECK(port_closes("::1", port, 5000), "[::1]:%d still accepts after op_free of a running op", port);
        }
        EXPECT_ERR(mailoauth_op_wait(op, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    }
}

/* The browser consent end to end, then tokens, accounts, revoke, remove. */
static void test_consent_and_tokens(mailoauth_context *ctx, const char *dir)
{

    /* ------------------------------------------------ consent for alice */
    mailoauth_op *op = NULL;
    if (!EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" ALICE "\",\"protocols\":[\"smtp\",\"imap\",\"pop3\"],"
                                                "\"flow\":\"browser\",\"prompt\":\"select_account\",\"timeout_s\":120}",
                                           &op)))
        return;
    CHECK(op_state_is(op, "waiting_for_user"), "state after begin is waiting_for_user");
    int port = op_listener_port(op);
    DRIVE_BROWSER(op);
    EXPECT_OK(mailoauth_op_wait(op, 60000));
    EXPECT_OK(mailoauth_op_wait(op, 0)); /* settled: stays OK */
    CHECK(op_state_is(op, "done"), "state after success is done");
    if (port > 0) CHECK(port_closes("127.0.0.1", port, 5000), "the listener closes after success (port %d)", port);
    char *j = SENTINEL_STR;
    if (EXPECT_OK(mailoauth_op_result(op, &j))) {
        jval *r = jparse(j, NULL);
        CHECK(r && r->t == J_OBJ, "op_result is a JSON object: %s", j);
        const char *acc = jstr(r, "account");
        CHECK(acc && strcmp(acc, ALICE) == 0, "result account: %s", j);
        const char *user = jstr(r, "username");
        CHECK(user && strcmp(user, ALICE) == 0, "result username: %s", j);
        CHECK(jstr(r, "tenant_id") && strcmp(jstr(r, "tenant_id"), STACK.tenant) == 0, "result tenant_id: %s", j);
        const jval *sc = jget(r, "scopes");
        CHECK(sc && sc->t == J_ARR && sc->count >= 3, "result scopes: %s", j);
        long long exp = 0;
        CHECK(jint(r, "expires_at", &exp) && exp > (long long)time(NULL), "result expires_at: %s", j);
        CHECK(!strstr(j, "refresh_token") && !strstr(j, "access_token\""), "a secret in the result: %s", j);
        jfree(r);
        mailoauth_string_free(j);
    }
    mailoauth_op_free(op);

    /* -------------------------------------------------------- token_get */
    long long refreshes0 = idp_refresh_count();
    int32_t rc;
    char *t_smtp = token_copy(ctx, ALICE, "smtp", 0, &rc);
    if (!t_smtp) expect_ok_at(__FILE__, __LINE__, "token_get smtp", rc);
    CHECK(token_plausible(t_smtp), "token for smtp: %zu characters", t_smtp ? strlen(t_smtp) : 0);
    char *t_ip = token_copy(ctx, ALICE, "imap pop3", 0, &rc);
    if (!t_ip) expect_ok_at(__FILE__, __LINE__, "token_get imap pop3", rc);
    CHECK(token_plausible(t_ip), "token for imap pop3: %zu characters", t_ip ? strlen(t_ip) : 0);
    char *t_all = token_copy(ctx, ALICE, NULL, 0, &rc);
    if (!t_all) expect_ok_at(__FILE__, __LINE__, "token_get NULL (all)", rc);
    CHECK(token_plausible(t_all), "token for all: %zu characters", t_all ? strlen(t_all) : 0);
    CHECK(t_smtp && t_ip && t_all && strcmp(t_smtp, t_ip) == 0 && strcmp(t_smtp, t_all) == 0,
          "one access token serves every consented protocol (the cached one)");
    {
        char *raw = SENTINEL_STR;
        EXPECT_OK(mailoauth_token_get(ctx, ALICE, " smtp  imap ", 0, &raw));
        mailoauth_secret_free(raw == SENTINEL_STR ? NULL : raw);
    }
    long long refreshes1 = idp_refresh_count();
    CHECK(refreshes0 >= 0 && refreshes1 == refreshes0, "cached token_get contacted the token endpoint (%lld -> %lld)",
          refreshes0, refreshes1);
    /* FORCE_REFRESH: one refresh, a new token */
    char *t_forced = token_copy(ctx, ALICE, "smtp", MAILOAUTH_TOKEN_FORCE_REFRESH, &rc);
    if (!t_forced) expect_ok_at(__FILE__, __LINE__, "token_get FORCE_REFRESH", rc);
    CHECK(token_plausible(t_forced) && t_smtp && strcmp(t_forced, t_smtp) != 0, "FORCE_REFRESH gives a new token");
    long long refreshes2 = idp_refresh_count();
    CHECK(refreshes2 == refreshes1 + 1, "FORCE_REFRESH made %lld refresh grants, want 1", refreshes2 - refreshes1);
    char *t_after = token_copy(ctx, ALICE, "pop3", 0, &rc);
    CHECK(t_after && t_forced && strcmp(t_after, t_forced) == 0, "after a forced refresh the new token is cached");
    free(t_smtp);
    free(t_ip);
    free(t_all);
    free(t_forced);
    free(t_after);

    /* ------------------------------------------------------ account_list */
    char *raw = NULL;
    jval *list = account_list(ctx, &raw);
    const jval *e = list_entry(list, ALICE);
    CHECK(e != NULL, "account_list names %s: %s", ALICE, raw ? raw : "");
    CHECK(e && jstr(e, "state") && strcmp(jstr(e, "state"), "ok") == 0, "state ok: %s", raw ? raw : "");
    CHECK(e && jstr(e, "username") && strcmp(jstr(e, "username"), ALICE) == 0, "username: %s", raw ? raw : "");
    CHECK(raw && strstr(raw, "\"state\":\"ok\""), "account_list has \"state\":\"ok\": %s", raw ? raw : "");
    CHECK(raw && !strstr(raw, "refresh_token"), "account_list shows a refresh_token: %s", raw ? raw : "");
    const jval *protos = jget(e, "protocols");
    CHECK(protos && protos->t == J_ARR && protos->count == 3, "protocols of %s: %s", ALICE, raw ? raw : "");
    {
        long long since = 0, at_exp = 0, now = (long long)time(NULL);
        CHECK(jint(e, "since", &since) && since > now - 600 && since <= now + 5, "since: %s", raw ? raw : "");
        CHECK(jint(e, "access_token_expires_at", &at_exp) && at_exp > now, "access_token_expires_at: %s", raw ? raw : "");
        CHECK(jstr(e, "tenant_id") && strcmp(jstr(e, "tenant_id"), STACK.tenant) == 0, "tenant_id: %s", raw ? raw : "");
        CHECK(!jhas_null_member(list), "account_list has null-valued keys: %s", raw ? raw : "");
    }
    jfree(list);
    free(raw);

    /* the file store: <encoded key>.blob, plaintext JSON for protection none */
    char path[1200];
    snprintf(path, sizeof path, "%s/grant%%3Aalice@contoso.test.blob", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) == 0,
          "the grant file %s exists and is owner-only", path);

    /* ------------------------- a consent for some protocols covers only those */
#define SHARED "shared@contoso.test"
    if (consent_req_at(__FILE__, __LINE__, ctx, "{\"account\":\"" SHARED "\",\"protocols\":[\"imap\"]}")) {
        char *ts = token_copy(ctx, SHARED, "imap", 0, &rc);
        CHECK(token_plausible(ts), "token for the consented protocol (rc %d %s)", rc, code_name(rc));
        free(ts);
        char *t = SENTINEL_STR;
        EXPECT_ERR(mailoauth_token_get(ctx, SHARED, "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
        EXPECT_ERR(mailoauth_token_get(ctx, SHARED, "imap pop3", MAILOAUTH_TOKEN_FORCE_REFRESH, &t),
                   MAILOAUTH_CONSENT_REQUIRED, NULL);
        CHECK(t == SENTINEL_STR, "*out_token written on failure");
        list = account_list(ctx, &raw);
        e = list_entry(list, SHARED);
        protos = jget(e, "protocols");
        CHECK(protos && protos->t == J_ARR && protos->count == 1 && protos->items[0]->t == J_STR &&
                  strcmp(protos->items[0]->s, "imap") == 0,
              "protocols of %s: %s", SHARED, raw ? raw : "");
        jfree(list);
        free(raw);
        /* a later consent for more protocols keeps the grant and adds them; this one is
           settled by op_result alone (it stores the grant when no wait did yet) */
        mailoauth_op *op2 = NULL;
        if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" SHARED "\",\"protocols\":[\"smtp\"]}", &op2)) &&
            DRIVE_BROWSER(op2)) {
            char *j2 = NULL;
            int32_t r2;
            long long end = now_ms() + 20000;
            while ((r2 = mailoauth_op_result(op2, &j2)) == MAILOAUTH_INVALID_STATE && now_ms() < end) sleep_ms(20);
            if (expect_ok_at(__FILE__, __LINE__, "op_result without a wait", r2)) {
                CHECK(strstr(j2, "\"account\":\"" SHARED "\"") != NULL, "op_result: %s", j2);
                mailoauth_string_free(j2);
            }
            CHECK(op_state_is(op2, "done"), "state done after op_result");
            EXPECT_OK(mailoauth_op_wait(op2, 0));
            char *t2 = token_copy(ctx, SHARED, "smtp imap", 0, &rc);
            CHECK(token_plausible(t2), "after a second consent smtp and imap both work (rc %d %s)", rc, code_name(rc));
            free(t2);
        }
        mailoauth_op_free(op2);
        EXPECT_OK(mailoauth_account_remove(ctx, SHARED));
    }

    /* -------------------------------------- revoke: FORCE_REFRESH fails */
    if (CONSENT(ctx, CAROL)) {
        char *tc = token_copy(ctx, CAROL, "smtp", 0, &rc);
        CHECK(token_plausible(tc), "carol's token (rc %d)", rc);
        free(tc);
        char *body = NULL;
        CHECK(idp_admin("/admin/revoke_refresh_tokens", "{\"user\":\"" CAROL "\"}", &body) == 200,
              "POST /admin/revoke_refresh_tokens: %s", body ? body : "");
        free(body);
        char *t = SENTINEL_STR;
        if (EXPECT_ERR(mailoauth_token_get(ctx, CAROL, "smtp", MAILOAUTH_TOKEN_FORCE_REFRESH, &t),
                       MAILOAUTH_CONSENT_REQUIRED, NULL)) {
            lasterr le;
            le_get(&le);
            const char *pc = jstr(le.root, "provider_code");
            CHECK(pc && strncmp(pc, "AADSTS", 6) == 0, "the last error has provider_code: %s", le.json ? le.json : "");
            CHECK(pc && strcmp(pc, "AADSTS50173") == 0, "provider_code of a revoked RT is AADSTS50173: %s",
                  le.json ? le.json : "");
            le_free(&le);
        }
        CHECK(t == SENTINEL_STR, "*out_token written on failure");
        /* marked: further calls fail fast with CONSENT_REQUIRED, without contacting the IdP */
        long long ok_before = idp_refresh_count(), err_before = idp_counter("token.errors");
        EXPECT_ERR(mailoauth_token_get(ctx, CAROL, "smtp", MAILOAUTH_TOKEN_FORCE_REFRESH, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
        EXPECT_ERR(mailoauth_token_get(ctx, CAROL, "imap", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
        long long ok_after = idp_refresh_count(), err_after = idp_counter("token.errors");
        CHECK(err_before >= 0 && ok_after == ok_before && err_after == err_before,
              "a marked account fails fast without the token endpoint (at most once a minute): "
              "%lld refreshes, %lld errors more", ok_after - ok_before, err_after - err_before);
        list = account_list(ctx, &raw);
        e = list_entry(list, CAROL);
        CHECK(e && jstr(e, "state") && strcmp(jstr(e, "state"), "consent_required") == 0,
              "carol's state after invalid_grant is consent_required: %s", raw ? raw : "");
        CHECK(e && jget(e, "last_error") && jget(e, "last_error")->t == J_OBJ, "carol's last_error: %s", raw ? raw : "");
        e = list_entry(list, ALICE);
        CHECK(e && jstr(e, "state") && strcmp(jstr(e, "state"), "ok") == 0, "alice stays ok: %s", raw ? raw : "");
        CHECK(raw && !strstr(raw, "refresh_token"), "account_list shows a refresh_token: %s", raw ? raw : "");
        jfree(list);
        free(raw);
        /* a new consent clears the mark */
        if (CONSENT(ctx, CAROL)) {
            char *tn = token_copy(ctx, CAROL, "imap", MAILOAUTH_TOKEN_FORCE_REFRESH, &rc);
            CHECK(token_plausible(tn), "after a new consent carol refreshes again (rc %d %s)", rc, code_name(rc));
            free(tn);
        }
    }

    /* --------------------------------- cache_reset of a corrupt grant file */
    snprintf(path, sizeof path, "%s/grant%%3Abob@contoso.test.blob", dir);
    static const char garbage[] = "\x01\x02garbage, not a grant blob\xff\xfe{\"v\":";
    CHECK(write_file(path, garbage, sizeof garbage - 1), "write %s", path);
    chmod(path, 0600);
    char *t = SENTINEL_STR;
    EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", 0, &t), MAILOAUTH_CACHE_CORRUPT, NULL);
    CHECK(t == SENTINEL_STR, "*out_token written on failure");
    {
        char *lj = NULL;
        int32_t lrc = mailoauth_account_list(ctx, &lj);
        NOTE("account_list with a corrupt grant file: %d %s%s%s", lrc, code_name(lrc), lj ? " " : "", lj ? lj : "");
        mailoauth_string_free(lj);
    }
    EXPECT_OK(mailoauth_cache_reset(ctx));
    char aside[512] = "";
    CHECK(access(path, F_OK) != 0, "the corrupt file is still there after cache_reset");
    CHECK(dir_has_prefix(dir, "grant%3Abob@contoso.test.blob.corrupt-", aside, sizeof aside),
          "the corrupt file was moved aside (grant%%3Abob@contoso.test.blob.corrupt-*)");
    if (aside[0]) {
        char ap[1200];
        snprintf(ap, sizeof ap, "%s/%s", dir, aside);
        size_t alen = 0;
        char *adata = read_file(ap, &alen);
        CHECK(adata && alen == sizeof garbage - 1 && memcmp(adata, garbage, alen) == 0,
              "the moved-aside file keeps the bytes");
        free(adata);
    }
    EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
    CHECK(t == SENTINEL_STR, "*out_token written on failure");
    {
        char *ta = token_copy(ctx, ALICE, "smtp", 0, &rc);
        CHECK(token_plausible(ta), "a readable grant stays after cache_reset (rc %d %s)", rc, code_name(rc));
        free(ta);
    }
    EXPECT_OK(mailoauth_cache_reset(ctx)); /* nothing more to move */

    /* ----------------------------------------- account_remove: sign-out */
    EXPECT_OK(mailoauth_account_remove(ctx, ALICE));
    EXPECT_ERR(mailoauth_token_get(ctx, ALICE, "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
    EXPECT_ERR(mailoauth_account_remove(ctx, ALICE), MAILOAUTH_NOT_FOUND, NULL);
    snprintf(path, sizeof path, "%s/grant%%3Aalice@contoso.test.blob", dir);
    CHECK(access(path, F_OK) != 0, "the grant file is gone after account_remove");
    list = account_list(ctx, &raw);
    CHECK(list && list_entry(list, ALICE) == NULL, "alice still listed after account_remove: %s", raw ? raw : "");
    jfree(list);
    free(raw);
}

/* A failing consent: the user cancels at the IdP (DECLINED), the failure is
 * copied into the waiting thread's last error. */
static void test_consent_declined(mailoauth_context *ctx)
{
    CHECK(idp_admin("/admin/settings", "{\"auto_consent\": false}", NULL) == 200, "auto_consent off");
    mailoauth_op *op = NULL;
    if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" ALICE "\"}", &op))) {
        /* the redirect a browser would get after "Cancel" on the sign-in page */
        jval *v;
        char *info = op_info_json(op, &v);
        const char *url = jstr(v, "authorize_url");
        const char *st = url ? strstr(url, "&state=") : NULL;
        if (!st && url) st = strstr(url, "?state=");
        int port = op_listener_port(op);
        if (CHECK(st && port > 0, "state and port in %s", url ? url : "(none)")) {
            char state[256];
            st += 7;
            size_t n = strcspn(st, "&");
            snprintf(state, sizeof state, "%.*s", (int)(n < 200 ? n : 200), st);
            char target[1024];
            snprintf(target, sizeof target,
                     "http://localhost:%d/?error=access_denied&error_description=AADSTS65004%%3A+User+declined&state=%s",
                     port, state);
            http_resp r;
            http_url("GET", target, NULL, &r);
            CHECK(r.status == 200, "the listener answers the error redirect: %d", r.status);
            http_free(&r);
            if (EXPECT_ERR(mailoauth_op_wait(op, 30000), MAILOAUTH_DECLINED, NULL)) {
                lasterr le;
                le_get(&le);
                const char *pe = jstr(le.root, "provider_error"), *pc = jstr(le.root, "provider_code");
                CHECK(pe && strcmp(pe, "access_denied") == 0, "provider_error of a decline: %s", le.json ? le.json : "");
                CHECK(pc && strcmp(pc, "AADSTS65004") == 0, "provider_code of a decline: %s", le.json ? le.json : "");
                le_free(&le);
            }
            CHECK(op_state_is(op, "failed"), "state after a decline is failed");
            char *j = SENTINEL_STR;
            EXPECT_ERR(mailoauth_op_result(op, &j), MAILOAUTH_DECLINED, NULL);
            CHECK(j == SENTINEL_STR, "*out_json written on failure");
        }
        jfree(v);
        free(info);
        mailoauth_op_free(op);
    }
    CHECK(idp_admin("/admin/settings", "{\"auto_consent\": true}", NULL) == 200, "auto_consent on");
}

/* ============================================================ host store */

#define HS_MAX 16

typedef struct {
    pthread_mutex_t mu;
    struct { char *key; uint8_t *data; size_t len; } e[HS_MAX];
    int n;
    int loads, saves, grant_saves, locks, unlocks, held, held_min;
    int32_t save_fail, lock_fail, load_fail;
    pthread_t expected[4]; /* the threads that are inside a call into the library */
    int nexpected;
    int wrong_thread;     /* callbacks on another thread */
    int after_free;       /* callbacks after mailoauth_context_free returned */
    int bad_key;          /* a key that is not grant:/poll:/index: */
    /* blob_set probes from inside a load callback */
    int probes_done;
    int32_t rc_null_sink, rc_fake_sink, rc_negative, rc_null_data, rc_too_large, rc_empty, rc_other_thread, rc_good;
    /* a slow load (for the replacement race) */
    int load_sleep_ms;
    atomic_int in_load;
    atomic_int revoked;   /* set once a set_store that replaced these callbacks returned */
    int after_revoke;     /* callbacks after that */
    mailoauth_blob *last_sink;
} hstore;

static atomic_int g_ctx_freed;

static void hs_init(hstore *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static void hs_destroy(hstore *s)
{
    for (int k = 0; k < s->n; k++) {
        free(s->e[k].key);
        free(s->e[k].data);
    }
    pthread_mutex_destroy(&s->mu);
}

/* Declares the calling thread as the one about to call into the library. */
static void hs_expect_self(hstore *s)
{
    pthread_mutex_lock(&s->mu);
    s->expected[0] = pthread_self();
    s->nexpected = 1;
    pthread_mutex_unlock(&s->mu);
}

/* Declares the calling thread as one more that calls into the library. */
static void hs_expect_add(hstore *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->nexpected < 4) s->expected[s->nexpected++] = pthread_self();
    pthread_mutex_unlock(&s->mu);
}

/* Common bookkeeping of every callback (under the mutex). */
static void hs_enter(hstore *s, const char *key)
{
    if (atomic_load(&g_ctx_freed)) s->after_free++;
    if (atomic_load(&s->revoked)) s->after_revoke++;
    int known = 0;
    for (int k = 0; k < s->nexpected; k++)
        if (pthread_equal(s->expected[k], pthread_self())) known = 1;
    if (!known) s->wrong_thread++;
    if (key == NULL || (strncmp(key, "grant:", 6) != 0 && strncmp(key, "poll:", 5) != 0 && strncmp(key, "index:", 6) != 0 &&
                        strncmp(key, "corrupt:", 8) != 0))
        s->bad_key++;
}

static int hs_find(hstore *s, const char *key)
{
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->e[k].key, key) == 0) return k;
    return -1;
}

typedef struct {
    mailoauth_blob *sink;
    int32_t rc;
} blob_probe;

static void *thread_blob_set(void *p)
{
    blob_probe *b = p;
    uint8_t x = 1;
    b->rc = mailoauth_blob_set(b->sink, &x, 1);
    return NULL;
}

static int32_t hs_load(void *user_data, const char *key, mailoauth_blob *sink)
{
    hstore *s = user_data;
    pthread_mutex_lock(&s->mu);
    hs_enter(s, key);
    s->loads++;
    int sleep_for = s->load_sleep_ms;
    pthread_mutex_unlock(&s->mu);
    if (sleep_for > 0) {
        atomic_store(&s->in_load, 1);
        sleep_ms(sleep_for);
        atomic_store(&s->in_load, 0);
    }
    pthread_mutex_lock(&s->mu);
    int32_t rc = s->load_fail;
    if (rc == 0) {
        if (!s->probes_done) {
            /* blob_set with anything but this sink, or a bad length, is refused */
            int fake = 0;
            uint8_t b = 1;
            s->rc_null_sink = mailoauth_blob_set(NULL, &b, 1);
            s->rc_fake_sink = mailoauth_blob_set((mailoauth_blob *)&fake, &b, 1);
            s->rc_negative = mailoauth_blob_set(sink, &b, -1);
            s->rc_null_data = mailoauth_blob_set(sink, NULL, 1);
            /* larger than 64 MiB: TOO_LARGE (a real buffer of that size, lazily zeroed) */
            size_t big_len = (size_t)64 * 1024 * 1024 + 1;
            uint8_t *big = calloc(1, big_len);
            s->rc_too_large = big ? mailoauth_blob_set(sink, big, (int64_t)big_len) : -1;
            free(big);
            /* NULL data with len 0: an empty sink (nothing stored) */
            s->rc_empty = mailoauth_blob_set(sink, NULL, 0);
            /* the right sink, but from another thread than the callback's */
            blob_probe bp = {sink, -1};
            pthread_t th;
            if (pthread_create(&th, NULL, thread_blob_set, &bp) == 0) pthread_join(th, NULL);
            s->rc_other_thread = bp.rc;
            s->probes_done = 1;
        }
        s->last_sink = sink;
        int k = hs_find(s, key);
        if (k >= 0) {
            s->rc_good = mailoauth_blob_set(sink, s->e[k].data, (int64_t)s->e[k].len);
            if (s->rc_good != MAILOAUTH_OK) rc = 99;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int32_t hs_save(void *user_data, const char *key, const uint8_t *data, int64_t len)
{
    hstore *s = user_data;
    pthread_mutex_lock(&s->mu);
    hs_enter(s, key);
    s->saves++;
    if (key && strncmp(key, "grant:", 6) == 0 && len > 0) s->grant_saves++;
    int32_t rc = s->save_fail;
    if (rc == 0 && key != NULL) {
        int k = hs_find(s, key);
        if (len <= 0) { /* 0 bytes: remove the blob */
            if (k >= 0) {
                free(s->e[k].key);
                free(s->e[k].data);
                s->e[k] = s->e[--s->n];
            }
        } else {
            if (k < 0 && s->n < HS_MAX) {
                k = s->n++;
                s->e[k].key = strdup(key);
                s->e[k].data = NULL;
            }
            if (k >= 0) {
                free(s->e[k].data);
                s->e[k].data = malloc((size_t)len);
                memcpy(s->e[k].data, data, (size_t)len);
                s->e[k].len = (size_t)len;
            } else {
                rc = 98;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int32_t hs_lock(void *user_data, const char *key, int32_t lock, int32_t timeout_ms)
{
    (void)timeout_ms;
    hstore *s = user_data;
    pthread_mutex_lock(&s->mu);
    hs_enter(s, key);
    int32_t rc = 0;
    if (lock == 1) {
        if (s->lock_fail) rc = s->lock_fail;
        else { s->locks++; s->held++; }
    } else if (lock == 0) {
        s->unlocks++;
        s->held--;
        if (s->held < s->held_min) s->held_min = s->held;
    } else {
        s->bad_key++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A copy of a stored blob (NULL if absent). */
static uint8_t *hs_get(hstore *s, const char *key, size_t *len)
{
    pthread_mutex_lock(&s->mu);
    int k = hs_find(s, key);
    uint8_t *d = NULL;
    *len = 0;
    if (k >= 0) {
        d = malloc(s->e[k].len);
        memcpy(d, s->e[k].data, s->e[k].len);
        *len = s->e[k].len;
    }
    pthread_mutex_unlock(&s->mu);
    return d;
}

typedef struct {
    hstore *s;
    mailoauth_op *op;
    mailoauth_context *ctx;
    int32_t rc;
    char *err;
    char *token;
    hstore *also; /* a second store whose callbacks may run on this thread */
} hs_call;

static void *thread_op_wait(void *p)
{
    hs_call *c = p;
    hs_expect_add(c->s);
    c->rc = mailoauth_op_wait(c->op, 60000);
    c->err = le_json();
    return NULL;
}

static void *thread_token_get(void *p)
{
    hs_call *c = p;
    hs_expect_self(c->s);
    if (c->also) hs_expect_add(c->also);
    char *t = NULL;
    c->rc = mailoauth_token_get(c->ctx, BOB, "imap", 0, &t);
    c->token = t ? strdup(t) : NULL;
    mailoauth_secret_free(t);
    c->err = le_json();
    return NULL;
}

/* set_store returns only when no callback of the previous registration
 * runs, and none runs afterwards: a slow load on another thread, replaced
 * from this one. Ends with `store` registered. */
static void test_store_replace_race(mailoauth_context *ctx, hstore *store)
{
    static hstore slow;
    hs_init(&slow);
    slow.load_sleep_ms = 400;
    slow.probes_done = 1;
    if (!EXPECT_OK(mailoauth_context_set_store(ctx, hs_load, hs_save, hs_lock, &slow))) return;
    hs_expect_self(store);
    hs_call c = {&slow, NULL, ctx, -1, NULL, NULL, store};
    pthread_t th;
    pthread_create(&th, NULL, thread_token_get, &c);
    long long end = now_ms() + 20000;
    while (!atomic_load(&slow.in_load) && now_ms() < end) sleep_ms(5);
    int was_in = atomic_load(&slow.in_load);
    CHECK(was_in, "the slow load callback started");
    int32_t rc = mailoauth_context_set_store(ctx, hs_load, hs_save, hs_lock, store);
    int still_in = atomic_load(&slow.in_load);
    atomic_store(&slow.revoked, 1);
    expect_ok_at(__FILE__, __LINE__, "set_store replacing a registration whose load runs", rc);
    CHECK(!(was_in && still_in), "set_store returned while a callback of the previous registration still ran");
    pthread_join(th, NULL);
    NOTE("token_get whose store was replaced during its load: %d %s", c.rc, code_name(c.rc));
    free(c.token);
    free(c.err);
    sleep_ms(100);
    pthread_mutex_lock(&slow.mu);
    CHECK(slow.after_revoke == 0, "%d callbacks of the replaced registration ran after set_store returned",
          slow.after_revoke);
    CHECK(slow.wrong_thread == 0, "%d slow callbacks on a thread not inside a library call", slow.wrong_thread);
    pthread_mutex_unlock(&slow.mu);
    hs_destroy(&slow);
    hs_expect_self(store);
}

static mailoauth_context *key_ctx(void)
{
    char cfg[4096];
    config_json(cfg, sizeof cfg, "{\"protection\":\"key\"}");
    mailoauth_context *ctx = NULL;
    if (!EXPECT_OK(ctx_new(cfg, &ctx))) return NULL;
    return ctx;
}

static void test_host_store(void)
{
    static hstore store;
    hs_init(&store);
    atomic_store(&g_ctx_freed, 0);
    uint8_t key[32];
    for (int k = 0; k < 32; k++) key[k] = (uint8_t)(0xA0 ^ (k * 13));

    mailoauth_context *ctx = key_ctx();
    if (!ctx) { hs_destroy(&store); return; }
    hs_expect_self(&store);

    /* set_store arguments */
    EXPECT_ERR(mailoauth_context_set_store(ctx, hs_load, NULL, hs_lock, &store), MAILOAUTH_INVALID_ARGUMENT, "save");
    EXPECT_ERR(mailoauth_context_set_store(ctx, NULL, hs_save, NULL, &store), MAILOAUTH_INVALID_ARGUMENT, "load");
    EXPECT_OK(mailoauth_context_set_store(ctx, NULL, NULL, NULL, NULL)); /* unregister: nothing was set */
    EXPECT_OK(mailoauth_context_set_store(ctx, hs_load, hs_save, NULL, &store)); /* lock optional */
    EXPECT_OK(mailoauth_context_set_store(ctx, hs_load, hs_save, hs_lock, &store)); /* replace */
    EXPECT_OK(mailoauth_context_set_cache_key(ctx, key, 32));
    test_store_replace_race(ctx, &store);

    /* an empty store */
    char *raw = NULL;
    jval *list = account_list(ctx, &raw);
    CHECK(list && list->count == 0, "an empty host store lists no accounts: %s", raw ? raw : "");
    jfree(list);
    free(raw);
    char *t = SENTINEL_STR;
    EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
    CHECK(t == SENTINEL_STR, "*out_token written on failure");
    pthread_mutex_lock(&store.mu);
    int loads0 = store.loads;
    pthread_mutex_unlock(&store.mu);
    CHECK(loads0 > 0, "the library loads through the host store (%d loads)", loads0);

    /* blob_set probes ran inside the first load callback */
    CHECK(store.probes_done, "a load callback ran");
    CHECK(store.rc_null_sink == MAILOAUTH_INVALID_ARGUMENT, "blob_set(NULL sink) in a load callback: %d", store.rc_null_sink);
    CHECK(store.rc_fake_sink == MAILOAUTH_INVALID_ARGUMENT, "blob_set(another sink) in a load callback: %d", store.rc_fake_sink);
    CHECK(store.rc_negative == MAILOAUTH_INVALID_ARGUMENT, "blob_set(len -1) in a load callback: %d", store.rc_negative);
    CHECK(store.rc_null_data == MAILOAUTH_INVALID_ARGUMENT, "blob_set(NULL data, len 1) in a load callback: %d",
          store.rc_null_data);
    CHECK(store.rc_too_large == MAILOAUTH_TOO_LARGE, "blob_set(64 MiB + 1) in a load callback: %d", store.rc_too_large);
    CHECK(store.rc_empty == MAILOAUTH_OK, "blob_set(NULL, 0) in a load callback: %d", store.rc_empty);
    CHECK(store.rc_other_thread == MAILOAUTH_INVALID_ARGUMENT,
          "blob_set with the running callback's sink from another thread: %d", store.rc_other_thread);
    /* a sink after its callback returned: refused */
    if (store.last_sink) {
        uint8_t b = 1;
        EXPECT_ERR(mailoauth_blob_set(store.last_sink, &b, 1), MAILOAUTH_INVALID_ARGUMENT, "sink");
        EXPECT_ERR(mailoauth_blob_set(store.last_sink, &b, -5), MAILOAUTH_INVALID_ARGUMENT, NULL);
    }

    /* ---------------------------------------- consent, stored on a waiting thread */
    mailoauth_op *op = NULL;
    if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" BOB "\",\"timeout_s\":120}", &op))) {
        DRIVE_BROWSER(op);
        /* two threads wait at once: both see OK, the grant is stored once, on one of them */
        pthread_mutex_lock(&store.mu);
        store.nexpected = 0;
        int grant_saves0 = store.grant_saves;
        pthread_mutex_unlock(&store.mu);
        hs_call c[2] = {{&store, op, ctx, -1, NULL, NULL, NULL}, {&store, op, ctx, -1, NULL, NULL, NULL}};
        pthread_t th[2];
        for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, thread_op_wait, &c[k]);
        for (int k = 0; k < 2; k++) {
            pthread_join(th[k], NULL);
            CHECK(c[k].rc == MAILOAUTH_OK, "op_wait on thread %d: %d %s; %s", k, c[k].rc, code_name(c[k].rc),
                  c[k].err ? c[k].err : "");
            free(c[k].err);
        }
        pthread_mutex_lock(&store.mu);
        int grant_saves = store.grant_saves - grant_saves0;
        pthread_mutex_unlock(&store.mu);
        CHECK(grant_saves == 1, "the consent's grant was saved %d times, want once", grant_saves);
        hs_expect_self(&store);
        char *j = NULL;
        if (EXPECT_OK(mailoauth_op_result(op, &j))) {
            CHECK(strstr(j, "\"account\":\"" BOB "\"") != NULL, "op_result names bob: %s", j);
            mailoauth_string_free(j);
        }
        mailoauth_op_free(op);
    }
    size_t blen = 0;
    uint8_t *blob = hs_get(&store, "grant:" BOB, &blen);
    CHECK(blob != NULL && blen > 0, "the grant is stored under grant:%s", BOB);

    /* token_get: on this thread and on another one */
    int32_t rc;
    char *tok = token_copy(ctx, BOB, "smtp", 0, &rc);
    if (!tok) expect_ok_at(__FILE__, __LINE__, "token_get through the host store", rc);
    CHECK(token_plausible(tok), "bob's token: %zu characters", tok ? strlen(tok) : 0);
    {
        hs_call c = {&store, NULL, ctx, -1, NULL, NULL, NULL};
        pthread_t th;
        pthread_create(&th, NULL, thread_token_get, &c);
        pthread_join(th, NULL);
        CHECK(c.rc == MAILOAUTH_OK && token_plausible(c.token), "token_get on another thread: %d %s; %s", c.rc,
              code_name(c.rc), c.err ? c.err : "");
        free(c.token);
        free(c.err);
        hs_expect_self(&store);
    }
    /* registering the store again forgets what the context holds in memory: the grant is read back */
    EXPECT_OK(mailoauth_context_set_store(ctx, hs_load, hs_save, hs_lock, &store));
    {
        char *t2 = token_copy(ctx, BOB, "pop3", 0, &rc);
        CHECK(token_plausible(t2), "the grant is read back from the host store (rc %d %s)", rc, code_name(rc));
        free(t2);
        /* with another key the blob cannot be decrypted; with the right one again it can */
        uint8_t other[32];
        memset(other, 0x11, sizeof other);
        EXPECT_OK(mailoauth_context_set_cache_key(ctx, other, 32));
        EXPECT_ERR(mailoauth_token_get(ctx, BOB, "pop3", 0, &t), MAILOAUTH_CACHE_CORRUPT, NULL);
        EXPECT_OK(mailoauth_context_set_cache_key(ctx, key, 32));
        t2 = token_copy(ctx, BOB, "pop3", 0, &rc);
        CHECK(token_plausible(t2), "the right key again reads the grant (rc %d %s)", rc, code_name(rc));
        free(t2);
    }
    /* the blob is encrypted: no JSON keys, no token in it */
    if (blob) {
        uint8_t *now = hs_get(&store, "grant:" BOB, &blen);
        CHECK(now && !mem_find(now, blen, "refresh_token", 13), "the stored blob holds plaintext (\"refresh_token\")");
        CHECK(now && !mem_find(now, blen, "access_token", 12), "the stored blob holds plaintext (\"access_token\")");
        CHECK(now && tok && !mem_find(now, blen, tok, 32), "the stored blob holds the access token in plaintext");
        CHECK(now && !mem_find(now, blen, BOB, strlen(BOB)), "the stored blob holds the account name in plaintext");
        free(now);
    }
    free(blob);

    /* account_list */
    list = account_list(ctx, &raw);
    const jval *e = list_entry(list, BOB);
    CHECK(e && jstr(e, "state") && strcmp(jstr(e, "state"), "ok") == 0, "bob listed with state ok: %s", raw ? raw : "");
    CHECK(raw && !strstr(raw, "refresh_token") && (!tok || !strstr(raw, tok)), "a secret in account_list: %s",
          raw ? raw : "");
    CHECK(raw && strstr(raw, "\"state\":\"ok\""), "account_list has \"state\":\"ok\": %s", raw ? raw : "");
    jfree(list);
    free(raw);
    free(tok);

    /* the lock brackets: balanced, never unlocked more than locked */
    pthread_mutex_lock(&store.mu);
    int locks = store.locks, unlocks = store.unlocks, held_min = store.held_min;
    pthread_mutex_unlock(&store.mu);
    CHECK(locks > 0, "the lock callback ran (%d locks)", locks);
    CHECK(locks == unlocks && held_min >= 0, "lock/unlock balanced: %d locks, %d unlocks, min held %d", locks, unlocks,
          held_min);

    /* a failing save: CACHE_IO with the callback's value */
    pthread_mutex_lock(&store.mu);
    store.save_fail = 7;
    pthread_mutex_unlock(&store.mu);
    t = SENTINEL_STR;
    if (EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", MAILOAUTH_TOKEN_FORCE_REFRESH, &t), MAILOAUTH_CACHE_IO, "7")) {
        lasterr le;
        le_get(&le);
        CHECK(strstr(le.message, "save") != NULL, "the CACHE_IO message names the save callback: %s", le.message);
        le_free(&le);
    }
    CHECK(t == SENTINEL_STR, "*out_token written on failure");
    EXPECT_ERR(mailoauth_account_remove(ctx, BOB), MAILOAUTH_CACHE_IO, "7");
    pthread_mutex_lock(&store.mu);
    store.save_fail = 0;
    pthread_mutex_unlock(&store.mu);

    /* a lock that is not had in time: BUSY */
    pthread_mutex_lock(&store.mu);
    store.lock_fail = 1;
    pthread_mutex_unlock(&store.mu);
    EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", MAILOAUTH_TOKEN_FORCE_REFRESH, &t), MAILOAUTH_BUSY, NULL);
    EXPECT_ERR(mailoauth_account_remove(ctx, BOB), MAILOAUTH_BUSY, NULL);
    CHECK(t == SENTINEL_STR, "*out_token written on failure");
    pthread_mutex_lock(&store.mu);
    store.lock_fail = 0;
    pthread_mutex_unlock(&store.mu);
    blob = hs_get(&store, "grant:" BOB, &blen);
    CHECK(blob != NULL, "the grant survives a failed save and a BUSY lock");
    free(blob);

    /* a failing load: CACHE_IO with its value (registering again empties the memory) */
    EXPECT_OK(mailoauth_context_set_store(ctx, hs_load, hs_save, hs_lock, &store));
    pthread_mutex_lock(&store.mu);
    store.load_fail = 5;
    pthread_mutex_unlock(&store.mu);
    EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", 0, &t), MAILOAUTH_CACHE_IO, "5");
    raw = SENTINEL_STR;
    EXPECT_ERR(mailoauth_account_list(ctx, &raw), MAILOAUTH_CACHE_IO, "5");
    CHECK(raw == SENTINEL_STR, "*out_json written on failure");
    pthread_mutex_lock(&store.mu);
    store.load_fail = 0;
    pthread_mutex_unlock(&store.mu);

    /* sign-out: the blob is deleted (save with len 0) */
    EXPECT_OK(mailoauth_account_remove(ctx, BOB));
    blob = hs_get(&store, "grant:" BOB, &blen);
    CHECK(blob == NULL, "account_remove deleted the blob");
    free(blob);
    EXPECT_ERR(mailoauth_token_get(ctx, BOB, "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
    EXPECT_ERR(mailoauth_account_remove(ctx, BOB), MAILOAUTH_NOT_FOUND, NULL);

    /* cache_reset through the host store: a corrupt blob is moved aside */
    if (CONSENT(ctx, CAROL)) {
        pthread_mutex_lock(&store.mu);
        int k = hs_find(&store, "grant:" CAROL);
        if (k >= 0) {
            memset(store.e[k].data, 0x5a, store.e[k].len / 2); /* garbage over an indexed grant */
        }
        pthread_mutex_unlock(&store.mu);
        CHECK(k >= 0, "carol's grant is in the host store");
        /* registering again empties the memory: the next call reads the store */
        if (k >= 0 && EXPECT_OK(mailoauth_context_set_store(ctx, hs_load, hs_save, hs_lock, &store))) {
            EXPECT_ERR(mailoauth_token_get(ctx, CAROL, "smtp", 0, &t), MAILOAUTH_CACHE_CORRUPT, NULL);
            EXPECT_OK(mailoauth_cache_reset(ctx));
            blob = hs_get(&store, "grant:" CAROL, &blen);
            CHECK(blob == NULL, "cache_reset left the corrupt blob under grant:%s", CAROL);
            free(blob);
            int aside = 0;
            pthread_mutex_lock(&store.mu);
            for (int m = 0; m < store.n; m++)
                if (strncmp(store.e[m].key, "corrupt:", 8) == 0 && strstr(store.e[m].key, "grant:" CAROL)) aside = 1;
            pthread_mutex_unlock(&store.mu);
            CHECK(aside, "cache_reset kept the corrupt blob aside (a corrupt:*:grant:%s key)", CAROL);
            EXPECT_ERR(mailoauth_token_get(ctx, CAROL, "smtp", 0, &t), MAILOAUTH_CONSENT_REQUIRED, NULL);
            EXPECT_OK(mailoauth_cache_reset(ctx)); /* nothing more to move */
        }
    }
    CHECK(t == SENTINEL_STR, "*out_token written on failure");

    /* context_free with an op still alive: no callback afterwards, whatever the op does */
    op = NULL;
    if (EXPECT_OK(mailoauth_consent_begin(ctx, "{\"account\":\"" CAROL "\",\"timeout_s\":60}", &op))) {
        mailoauth_context_free(ctx);
        atomic_store(&g_ctx_freed, 1);
        /* the browser finishes after the host freed the context */
        jval *v;
        char *info = op_info_json(op, &v);
        const char *url = jstr(v, "authorize_url");
        if (url) {
            http_resp r;
            http_url("GET", url, NULL, &r);
            char loc[4096];
            if (r.status == 302 && http_header(&r, "Location", loc, sizeof loc)) {
                http_resp r2;
                http_url("GET", loc, NULL, &r2);
                http_free(&r2);
            }
            http_free(&r);
        }
        jfree(v);
        free(info);
        int32_t wrc = mailoauth_op_wait(op, 20000);
        NOTE("op_wait of a consent whose context was freed: %d %s", wrc, code_name(wrc));
        char *j = NULL;
        int32_t rrc = mailoauth_op_result(op, &j);
        mailoauth_string_free(j);
        (void)rrc;
        mailoauth_op_free(op);
    } else {
        mailoauth_context_free(ctx);
        atomic_store(&g_ctx_freed, 1);
    }
    sleep_ms(200);
    pthread_mutex_lock(&store.mu);
    CHECK(store.after_free == 0, "%d host store callbacks ran after mailoauth_context_free returned", store.after_free);
    CHECK(store.wrong_thread == 0, "%d host store callbacks ran on a thread that was not inside a library call",
          store.wrong_thread);
    CHECK(store.bad_key == 0, "%d callbacks with an unexpected key or lock value", store.bad_key);
    CHECK(store.locks == store.unlocks, "lock/unlock balanced at the end: %d/%d", store.locks, store.unlocks);
    pthread_mutex_unlock(&store.mu);
    hs_destroy(&store);
}

/* -------------------------------------------------------------------- main */

/* Runs one test; with MAILOAUTH_TEST_TIMING=1 prints how long it took. */
#define RUN(call)                                                                             \
    do {                                                                                      \
        long long t0_ = now_ms();                                                             \
        call;                                                                                 \
        if (getenv("MAILOAUTH_TEST_TIMING")) printf("timing: %s: %lld ms\n", #call, now_ms() - t0_); \
    } while (0)

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    /* SIGPIPE keeps its default action on purpose: a peer that closed first
     * must not kill the host (src/sigpipe.rs). */
    alarm((unsigned)env_int("MAILOAUTH_TEST_TIMEOUT", 600));

    load_stack();
    idp_reset();

    char *dir = make_temp_dir();
    CHECK(dir != NULL, "mkdtemp");
    mailoauth_context *ctx = dir ? file_ctx(dir) : NULL;
    if (ctx) {
        RUN(test_consent_begin_arguments(ctx));
        RUN(test_op_null_arguments());
        RUN(test_context_call_arguments(ctx));
    }
    RUN(test_stale_context());
    RUN(test_consent_begin_port_in_use());
    if (ctx) {
        RUN(test_op_running_and_cancel(ctx));
        RUN(test_op_cancel_and_free_running(ctx));
        if (STACK.up) RUN(test_consent_declined(ctx));
        if (STACK.up) RUN(test_consent_and_tokens(ctx, dir));
    }
    mailoauth_context_free(ctx);
    if (dir) { rm_dir(dir); free(dir); }

    if (STACK.up) {
        RUN(test_host_store());
        idp_admin("/admin/reset", "{}", NULL);
    }
    return tu_summary();
}
