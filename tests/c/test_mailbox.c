/* tests/c/test_mailbox.c: the mailbox exports of the mailoauth C ABI, tested
 * from C against include/mailoauth.h, the local identity imitation and the
 * stack's Dovecot (tests/stack), with messages seeded by tests/stack/seed.py.
 *
 * Exports covered: mailoauth_mailbox_open, _poll, _fetch, _fetch_to_file,
 * _ack, _wait, _list_folders, _cancel, _free.
 *
 * - success: IMAP (implicit TLS) and POP3 (STARTTLS) with `start: new`,
 *   three seeded messages polled (ids, sizes, subjects), fetched (bytes
 *   equal to the size, read-ahead), written to a file, acknowledged (keep,
 *   seen, delete / move) and never returned again, also after a reopen;
 *   BUSY for a second open; wait TIMEOUT without mail; list_folders with
 *   special-use; cancel without a running call.
 * - NULL: every pointer argument of every export, a freed (stale) mailbox
 *   handle; outputs untouched on failure.
 * - bad input: invalid UTF-8, malformed JSON, an unknown key, CR/LF in the
 *   folder, an id and an action, an unknown action, move on POP3, an
 *   unknown id (NOT_FOUND), an untrusted server (UNTRUSTED_HOST).
 *
 * The mailbox's grant comes from a browser consent driven over HTTP with
 * the IdP's auto_consent (testutil.h). Prints one line per failing check
 * and ends with "N passed, N failed"; exits non-zero on failure.
 *
 * Environment: MAILOAUTH_STACK_FILE (default /tmp/mailoauth-stack.json;
 * required), MAILOAUTH_TEST_TIMEOUT (watchdog, seconds, default 600).
 * Build: tests/c/run.sh (ASan+UBSan build and a valgrind run). */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE /* mkdtemp */

#include "mailoauth.h"
#define TU_STACK_HELPERS
#include "testutil.h"

#include <pthread.h>
#include <signal.h>

/* The mailbox: a user the SMTP suite does not send from. */
#define OWNER BOB

#define SENTINEL_MB ((mailoauth_mailbox *)(uintptr_t)0x5e5e5e5e)
#define SENTINEL_BYTES ((uint8_t *)(uintptr_t)0x5e5e5e5e)

static char NONCE[40];
static char MAIL_HOST[64];
static int IMAP_TLS, POP3_STARTTLS;

static void load_mail_ports(void)
{
    const char *path = getenv("MAILOAUTH_STACK_FILE");
    if (!path || !*path) path = "/tmp/mailoauth-stack.json";
    char *text = read_file(path, NULL);
    jval *root = text ? jparse(text, NULL) : NULL;
    const char *h = jstr(root, "imap.host");
    snprintf(MAIL_HOST, sizeof MAIL_HOST, "%s", h ? h : "127.0.0.2");
    long long n;
    if (jint(root, "imap.tls", &n)) IMAP_TLS = (int)n;
    if (jint(root, "pop3.starttls", &n)) POP3_STARTTLS = (int)n;
    jfree(root);
    free(text);
}

/* A context with the stack's IMAP and POP3 servers and CA, cache in dir. */
static mailoauth_context *mailbox_ctx(const char *dir)
{
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "{\"provider\":\"custom\",\"authority\":\"%s\",\"allow_plaintext_loopback\":true,"
             "\"tenant\":\"%s\",\"client_id\":\"%s\","
             "\"scopes\":{\"smtp\":\"https://outlook.office.com/SMTP.Send\","
             "\"imap\":\"https://outlook.office.com/IMAP.AccessAsUser.All\","
             "\"pop3\":\"https://outlook.office.com/POP.AccessAsUser.All\"},"
             "\"servers\":{\"imap\":{\"host\":\"%s\",\"port\":%d,\"security\":\"tls\"},"
             "\"pop3\":{\"host\":\"%s\",\"port\":%d,\"security\":\"starttls\"}},"
             "\"tls\":{\"ca_file\":\"%s\"},"
             "\"browser\":\"none\",\"cache\":{\"protection\":\"none\",\"path\":\"%s\"}}",
             STACK.up ? STACK.http : "http://127.0.0.1:9", STACK.up ? STACK.tenant : "organizations",
             STACK.up ? STACK.client_id : "00000000-0000-0000-0000-0000000000a1", MAIL_HOST,
             IMAP_TLS ? IMAP_TLS : 993, MAIL_HOST, POP3_STARTTLS ? POP3_STARTTLS : 110,
             STACK.ca_file, dir);
    mailoauth_context *ctx = NULL;
    if (!EXPECT_OK(ctx_new(cfg, &ctx))) return NULL;
    return ctx;
}

/* Seeds n messages into OWNER's INBOX (seed.py next to this file). */
static int seed(int n, int seed_no)
{
    char here[1024];
    snprintf(here, sizeof here, "%s", __FILE__);
    char *slash = strrchr(here, '/');
    if (slash) *slash = 0; else snprintf(here, sizeof here, ".");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "python3 '%s/../stack/seed.py' --user %s --count %d --size 3000 --seed %d >/dev/null",
             here, OWNER, n, seed_no);
    int rc = system(cmd);
    return CHECK(rc == 0, "seed.py exit %d", rc);
}

static char *poll_json(mailoauth_mailbox *mb, int max, jval **parsed)
{
    char *j = NULL;
    *parsed = NULL;
    if (!EXPECT_OK(mailoauth_mailbox_poll(mb, max, &j))) return NULL;
    char *c = strdup(j);
    mailoauth_string_free(j);
    *parsed = jparse(c, NULL);
    CHECK(*parsed && (*parsed)->t == J_ARR, "poll returns a JSON array: %s", c);
    return c;
}

/* ------------------------------------------------------- NULL arguments */

static void test_null_arguments(mailoauth_context *ctx)
{
    mailoauth_mailbox *mb = SENTINEL_MB;
    const char *req = "{\"account\":\"" OWNER "\"}";
    EXPECT_ERR(mailoauth_mailbox_open(NULL, req, &mb), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_mailbox_open(ctx, NULL, &mb), MAILOAUTH_INVALID_ARGUMENT, "request_json");
    EXPECT_ERR(mailoauth_mailbox_open(ctx, req, NULL), MAILOAUTH_INVALID_ARGUMENT, "out");
    CHECK(mb == SENTINEL_MB, "open wrote its output on failure");

    char *s = SENTINEL_STR;
    uint8_t *b = SENTINEL_BYTES;
    int64_t len = 77;
    EXPECT_ERR(mailoauth_mailbox_poll(NULL, 10, &s), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_fetch(NULL, "1:1", &b, &len), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_fetch_to_file(NULL, "1:1", "/tmp/x"), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_ack(NULL, "1:1", "keep"), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_wait(NULL, 10), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_list_folders(NULL, &s), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_cancel(NULL), MAILOAUTH_INVALID_ARGUMENT, "mb");
    /* A pointer that was never a mailbox. */
    EXPECT_ERR(mailoauth_mailbox_poll(SENTINEL_MB, 10, &s), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_cancel(SENTINEL_MB), MAILOAUTH_INVALID_ARGUMENT, "mb");
    CHECK(s == SENTINEL_STR && b == SENTINEL_BYTES && len == 77, "outputs written on failure");
    mailoauth_mailbox_free(NULL);
    mailoauth_mailbox_free(SENTINEL_MB);
}

/* Bad input that needs no server. */
static void test_bad_requests(mailoauth_context *ctx)
{
    mailoauth_mailbox *mb = SENTINEL_MB;
    EXPECT_ERR(mailoauth_mailbox_open(ctx, "{\"account\":\"b\xff@contoso.test\"}", &mb), MAILOAUTH_INVALID_ARGUMENT,
               "request_json");
    EXPECT_ERR(mailoauth_mailbox_open(ctx, "{\"account\":", &mb), MAILOAUTH_INVALID_CONFIG, NULL);
    EXPECT_ERR(mailoauth_mailbox_open(ctx, "{\"account\":\"" OWNER "\",\"colour\":1}", &mb), MAILOAUTH_INVALID_CONFIG,
               "colour");
    EXPECT_ERR(mailoauth_mailbox_open(ctx, "{\"account\":\"" OWNER "\",\"protocol\":\"nntp\"}", &mb),
               MAILOAUTH_INVALID_CONFIG, "protocol");
    EXPECT_ERR(mailoauth_mailbox_open(ctx, "{\"account\":\"" OWNER "\",\"folder\":\"a\\r\\nb\"}", &mb),
               MAILOAUTH_INVALID_ARGUMENT, "folder");
    EXPECT_ERR(mailoauth_mailbox_open(ctx, "{\"account\":\"" OWNER "\",\"server\":{\"host\":\"imap.evil.example\"}}", &mb),
               MAILOAUTH_UNTRUSTED_HOST, "imap.evil.example");
    CHECK(mb == SENTINEL_MB, "open wrote its output on failure");
}

/* ------------------------------------------------------- with a server */

static void ack_and_check(mailoauth_context *ctx, const char *proto, const char *dir)
{
    char req[1024];
    snprintf(req, sizeof req,
             "{\"account\":\"%s\",\"protocol\":\"%s\",\"start\":\"new\",\"lock_timeout_ms\":5000}", OWNER, proto);
    mailoauth_mailbox *mb = NULL;
    if (!EXPECT_OK(mailoauth_mailbox_open(ctx, req, &mb))) return;
    int is_imap = strcmp(proto, "imap") == 0;

    /* start: new: what was there is acknowledged. */
    jval *list;
    char *text = poll_json(mb, 100, &list);
    CHECK(list && list->count == 0, "start: new polls nothing at first: %s", text ? text : "");
    jfree(list);
    free(text);

    /* A second open of the same state: BUSY. */
    mailoauth_mailbox *other = SENTINEL_MB;
    char busy[1024];
    snprintf(busy, sizeof busy, "{\"account\":\"%s\",\"protocol\":\"%s\",\"lock_timeout_ms\":100}", OWNER, proto);
    EXPECT_ERR(mailoauth_mailbox_open(ctx, busy, &other), MAILOAUTH_BUSY, NULL);
    CHECK(other == SENTINEL_MB, "BUSY wrote the output");

    /* No new mail: TIMEOUT (IMAP only: POP3 would log in again). */
    if (is_imap) EXPECT_ERR(mailoauth_mailbox_wait(mb, 300), MAILOAUTH_TIMEOUT, NULL);
    EXPECT_OK(mailoauth_mailbox_cancel(mb)); /* nothing running: no effect */

    seed(3, is_imap ? 11 : 12);
    EXPECT_OK(mailoauth_mailbox_wait(mb, 20000));
    text = poll_json(mb, 100, &list);
    CHECK(list && list->count == 3, "three new messages: %s", text ? text : "");
    const char *ids[3] = {NULL, NULL, NULL};
    long long sizes[3] = {0, 0, 0};
    for (size_t k = 0; list && k < list->count && k < 3; k++) {
        ids[k] = jstr(list->items[k], "id");
        jint(list->items[k], "size", &sizes[k]);
        CHECK(ids[k] && sizes[k] > 0, "entry %zu has an id and a size", k);
        CHECK(jstr(list->items[k], "subject") && jstr(list->items[k], "from") && jstr(list->items[k], "date") &&
                  jget(list->items[k], "to") && jstr(list->items[k], "message_id"),
              "entry %zu has every key", k);
    }
    if (ids[0] && ids[1] && ids[2]) {
        /* fetch: bytes of the announced size */
        for (int k = 0; k < 3; k++) {
            uint8_t *b = NULL;
            int64_t len = -1;
            if (EXPECT_OK(mailoauth_mailbox_fetch(mb, ids[k], &b, &len))) {
                CHECK(len == sizes[k], "fetched %lld bytes, size said %lld", (long long)len, sizes[k]);
                CHECK(b && mem_find(b, (size_t)len, "Message-ID:", 11), "looks like a message");
                mailoauth_bytes_free(b, len);
            }
        }
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.eml", dir, proto);
        if (EXPECT_OK(mailoauth_mailbox_fetch_to_file(mb, ids[0], path))) {
            size_t flen = 0;
            char *f = read_file(path, &flen);
            CHECK(f && (long long)flen == sizes[0], "file has %zu bytes", flen);
            free(f);
        }
        /* bad ids and actions */
        uint8_t *b = SENTINEL_BYTES;
        int64_t len = 77;
        EXPECT_ERR(mailoauth_mailbox_fetch(mb, "4242:4242", &b, &len), MAILOAUTH_NOT_FOUND, NULL);
        EXPECT_ERR(mailoauth_mailbox_fetch(mb, "1:1\r\n", &b, &len), MAILOAUTH_INVALID_ARGUMENT, "id");
        EXPECT_ERR(mailoauth_mailbox_fetch(mb, "\xff", &b, &len), MAILOAUTH_INVALID_ARGUMENT, "id");
        EXPECT_ERR(mailoauth_mailbox_fetch(mb, ids[0], NULL, &len), MAILOAUTH_INVALID_ARGUMENT, "out");
        EXPECT_ERR(mailoauth_mailbox_fetch(mb, ids[0], &b, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_len");
        EXPECT_ERR(mailoauth_mailbox_fetch(mb, NULL, &b, &len), MAILOAUTH_INVALID_ARGUMENT, "id");
        CHECK(b == SENTINEL_BYTES && len == 77, "fetch wrote its outputs on failure");
        EXPECT_ERR(mailoauth_mailbox_fetch_to_file(mb, ids[0], NULL), MAILOAUTH_INVALID_ARGUMENT, "path");
        EXPECT_ERR(mailoauth_mailbox_fetch_to_file(mb, NULL, path), MAILOAUTH_INVALID_ARGUMENT, "id");
        EXPECT_ERR(mailoauth_mailbox_fetch_to_file(mb, ids[0], "/nonexistent-dir/x.eml"), MAILOAUTH_INVALID_ARGUMENT,
                   NULL);
        EXPECT_ERR(mailoauth_mailbox_ack(mb, ids[0], "explode"), MAILOAUTH_INVALID_ARGUMENT, NULL);
        EXPECT_ERR(mailoauth_mailbox_ack(mb, ids[0], "move:a\r\nb"), MAILOAUTH_INVALID_ARGUMENT, "action");
        EXPECT_ERR(mailoauth_mailbox_ack(mb, ids[0], NULL), MAILOAUTH_INVALID_ARGUMENT, "action");
        EXPECT_ERR(mailoauth_mailbox_ack(mb, NULL, "keep"), MAILOAUTH_INVALID_ARGUMENT, "id");
        if (!is_imap) EXPECT_ERR(mailoauth_mailbox_ack(mb, ids[0], "move:Archive"), MAILOAUTH_INVALID_ARGUMENT, NULL);

        /* acks */
        EXPECT_OK(mailoauth_mailbox_ack(mb, ids[0], "keep"));
        EXPECT_OK(mailoauth_mailbox_ack(mb, ids[1], "seen"));
        EXPECT_OK(mailoauth_mailbox_ack(mb, ids[2], is_imap ? "move:Deleted Items" : "delete"));
        jval *again;
        char *t2 = poll_json(mb, 100, &again);
        CHECK(again && again->count == 0, "acknowledged messages do not come back: %s", t2 ? t2 : "");
        jfree(again);
        free(t2);
    }
    jfree(list);
    free(text);

    /* list_folders */
    char *folders = SENTINEL_STR;
    if (is_imap) {
        if (EXPECT_OK(mailoauth_mailbox_list_folders(mb, &folders))) {
            CHECK(strstr(folders, "\"name\":\"INBOX\"") && strstr(folders, "\"special\":\"inbox\"") &&
                      strstr(folders, "\"special\":\"sent\"") && strstr(folders, "\"special\":\"trash\""),
                  "folders with special use: %s", folders);
            mailoauth_string_free(folders);
        }
        folders = SENTINEL_STR;
        EXPECT_ERR(mailoauth_mailbox_list_folders(mb, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");
    } else {
        EXPECT_ERR(mailoauth_mailbox_list_folders(mb, &folders), MAILOAUTH_INVALID_STATE, NULL);
        CHECK(folders == SENTINEL_STR, "list_folders wrote its output on failure");
    }
    EXPECT_ERR(mailoauth_mailbox_poll(mb, 10, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");

    /* free, then the handle is stale; a reopen sees nothing unacknowledged */
    mailoauth_mailbox_free(mb);
    char *s = SENTINEL_STR;
    EXPECT_ERR(mailoauth_mailbox_poll(mb, 10, &s), MAILOAUTH_INVALID_ARGUMENT, "mb");
    EXPECT_ERR(mailoauth_mailbox_ack(mb, "1:1", "keep"), MAILOAUTH_INVALID_ARGUMENT, "mb");
    CHECK(s == SENTINEL_STR, "poll on a freed mailbox wrote its output");
    mailoauth_mailbox_free(mb); /* twice: ignored */
    mailoauth_mailbox *again_mb = NULL;
    if (EXPECT_OK(mailoauth_mailbox_open(ctx, req, &again_mb))) {
        text = poll_json(again_mb, 100, &list);
        CHECK(list && list->count == 0, "after a reopen nothing acknowledged returns: %s", text ? text : "");
        jfree(list);
        free(text);
        mailoauth_mailbox_free(again_mb);
    }
}

/* cancel from another thread during wait */
typedef struct {
    mailoauth_mailbox *mb;
    int32_t rc;
    long long took;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    long long t = now_ms();
    w->rc = mailoauth_mailbox_wait(w->mb, 30000);
    w->took = now_ms() - t;
    return NULL;
}

static void test_cancel(mailoauth_context *ctx)
{
    mailoauth_mailbox *mb = NULL;
    if (!EXPECT_OK(mailoauth_mailbox_open(ctx, "{\"account\":\"" OWNER "\",\"lock_timeout_ms\":5000}", &mb))) return;
    jval *list;
    char *text = poll_json(mb, 1000, &list);
    for (size_t k = 0; list && k < list->count; k++) {
        const char *id = jstr(list->items[k], "id");
        if (id) EXPECT_OK(mailoauth_mailbox_ack(mb, id, "keep"));
    }
    jfree(list);
    free(text);
    waiter w = {mb, -1, 0};
    pthread_t th;
    if (CHECK(pthread_create(&th, NULL, wait_thread, &w) == 0, "pthread_create")) {
        sleep_ms(500);
        EXPECT_OK(mailoauth_mailbox_cancel(mb));
        pthread_join(th, NULL);
        CHECK(w.rc == MAILOAUTH_CANCELLED, "wait returned %d %s", w.rc, code_name(w.rc));
        CHECK(w.took < 5000, "cancel took %lld ms", w.took);
    }
    /* the next call reconnects */
    text = poll_json(mb, 10, &list);
    CHECK(list && list->count == 0, "poll after a cancel: %s", text ? text : "");
    jfree(list);
    free(text);
    mailoauth_mailbox_free(mb);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    /* SIGPIPE keeps its default action on purpose: a peer that closed first
     * must not kill the host (src/sigpipe.rs). */
    alarm((unsigned)env_int("MAILOAUTH_TEST_TIMEOUT", 600));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(NONCE, sizeof NONCE, "%llx%x", (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, (unsigned)getpid());

    load_stack();
    load_mail_ports();
    CHECK(!STACK.up || (STACK.ca_file[0] && IMAP_TLS && POP3_STARTTLS), "the stack file names imap/pop3 ports and ca_file");
    idp_reset();

    char *dir = make_temp_dir();
    CHECK(dir != NULL, "mkdtemp");
    mailoauth_context *ctx = dir ? mailbox_ctx(dir) : NULL;
    if (ctx) {
        test_null_arguments(ctx);
        test_bad_requests(ctx);
        if (STACK.up && CONSENT(ctx, OWNER)) {
            ack_and_check(ctx, "imap", dir);
            ack_and_check(ctx, "pop3", dir);
            test_cancel(ctx);
        }
    }
    mailoauth_context_free(ctx);
    if (dir) {
        rm_dir(dir);
        free(dir);
    }
    if (STACK.up) idp_admin("/admin/reset", "{}", NULL);
    return tu_summary();
}
