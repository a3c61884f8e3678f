/* tests/c/test_account.c: mailoauth_account_test_begin and the operation
 * functions on an account test, from C against include/mailoauth.h, the
 * local identity imitation and the stack's Postfix and Dovecot.
 *
 * - success: a consented account, every step (token, smtp, imap, pop3)
 *   code 0 / "OK" with a message and a time, polled with op_wait(0) and
 *   op_info as a UI timer would; result after done; cancel after done is OK;
 *   a step failing alone (SMTP at a closed port: NETWORK with a hint) while
 *   the others pass.
 * - a test hanging on a silent server: info "running", result INVALID_STATE,
 *   cancel from another thread ends the wait with CANCELLED, result then
 *   CANCELLED; op_free of a running test.
 * - NULL for every pointer argument, a stale (freed) operation handle, a
 *   pointer that never was one; outputs untouched on failure.
 * - bad input: invalid UTF-8, malformed JSON, an unknown key, an unknown
 *   protocol, CR/LF in the account.
 *
 * Prints one line per failing check and ends with "N passed, N failed".
 * Environment: MAILOAUTH_STACK_FILE (default /tmp/mailoauth-stack.json),
 * MAILOAUTH_TEST_TIMEOUT (watchdog, seconds, default 600).
 * Build: tests/c/run.sh (ASan+UBSan build and a valgrind run). */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE /* mkdtemp */

#include "mailoauth.h"
#define TU_STACK_HELPERS
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define OWNER CAROL

static char MAIL_HOST[64];
static int SMTP_STARTTLS, IMAP_TLS, POP3_STARTTLS;

static void load_mail_ports(void)
{
    const char *path = getenv("MAILOAUTH_STACK_FILE");
    if (!path || !*path) path = "/tmp/mailoauth-stack.json";
    char *text = read_file(path, NULL);
    jval *root = text ? jparse(text, NULL) : NULL;
    const char *h = jstr(root, "smtp.host");
    snprintf(MAIL_HOST, sizeof MAIL_HOST, "%s", h ? h : "127.0.0.2");
    long long n;
    if (jint(root, "smtp.starttls", &n)) SMTP_STARTTLS = (int)n;
    if (jint(root, "imap.tls", &n)) IMAP_TLS = (int)n;
    if (jint(root, "pop3.starttls", &n)) POP3_STARTTLS = (int)n;
    jfree(root);
    free(text);
}

/* A context on the stack, cache in dir; the SMTP server at smtp_host:smtp_port
 * (NULL / 0: the stack's). */
static mailoauth_context *account_ctx(const char *dir, const char *smtp_host, int smtp_port)
{
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "{\"provider\":\"custom\",\"authority\":\"%s\",\"allow_plaintext_loopback\":true,"
             "\"tenant\":\"%s\",\"client_id\":\"%s\","
             "\"scopes\":{\"smtp\":\"https://outlook.office.com/SMTP.Send\","
             "\"imap\":\"https://outlook.office.com/IMAP.AccessAsUser.All\","
             "\"pop3\":\"https://outlook.office.com/POP.AccessAsUser.All\"},"
             "\"servers\":{\"smtp\":{\"host\":\"%s\",\"port\":%d,\"security\":\"starttls\"},"
             "\"imap\":{\"host\":\"%s\",\"port\":%d,\"security\":\"tls\"},"
             "\"pop3\":{\"host\":\"%s\",\"port\":%d,\"security\":\"starttls\"}},"
             "\"tls\":{\"ca_file\":\"%s\"},\"language\":\"de\","
             "\"browser\":\"none\",\"cache\":{\"protection\":\"none\",\"path\":\"%s\"}}",
             STACK.up ? STACK.http : "http://127.0.0.1:9", STACK.up ? STACK.tenant : "organizations",
             STACK.up ? STACK.client_id : "00000000-0000-0000-0000-0000000000a1",
             smtp_host ? smtp_host : MAIL_HOST, smtp_port ? smtp_port : (SMTP_STARTTLS ? SMTP_STARTTLS : 587),
             MAIL_HOST, IMAP_TLS ? IMAP_TLS : 993, MAIL_HOST, POP3_STARTTLS ? POP3_STARTTLS : 110,
             STACK.ca_file, dir);
    mailoauth_context *ctx = NULL;
    if (!EXPECT_OK(ctx_new(cfg, &ctx))) return NULL;
    return ctx;
}

/* A listening socket on 127.0.0.1 that never accepts: connects succeed (the
 * backlog) and then nothing is ever said. Returns the fd; *port set. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    int port = 0;
    int fd = silent_listener(&port);
    if (fd >= 0) close(fd);
    return port;
}

static char *result_json(mailoauth_op *op, jval **parsed)
{
    char *j = NULL;
    *parsed = NULL;
    if (!EXPECT_OK(mailoauth_op_result(op, &j))) return NULL;
    char *c = strdup(j);
    mailoauth_string_free(j);
    *parsed = jparse(c, NULL);
    CHECK(*parsed != NULL, "the result is JSON: %s", c);
    return c;
}

/* The step named `name` in a parsed {"steps": [...]}; NULL if absent. */
static const jval *find_step(const jval *root, const char *name)
{
    const jval *steps = jget(root, "steps");
    if (!steps || steps->t != J_ARR) return NULL;
    for (size_t i = 0; i < steps->count; i++) {
        const char *s = jstr(steps->items[i], "step");
        if (s && strcmp(s, name) == 0) return steps->items[i];
    }
    return NULL;
}

static long long step_code(const jval *root, const char *name)
{
    long long code = -1;
    const jval *s = find_step(root, name);
    if (!s || !jint(s, "code", &code)) return -1;
    return code;
}

/* ------------------------------------------------------- NULL arguments */

static void test_null_arguments(mailoauth_context *ctx)
{
    mailoauth_op *op = SENTINEL_OP;
    const char *req = "{\"account\":\"" OWNER "\"}";
    EXPECT_ERR(mailoauth_account_test_begin(NULL, req, &op), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, NULL, &op), MAILOAUTH_INVALID_ARGUMENT, "request_json");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, req, NULL), MAILOAUTH_INVALID_ARGUMENT, "out");
    CHECK(op == SENTINEL_OP, "account_test_begin wrote its output on failure");

    char *s = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_wait(NULL, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_info(NULL, &s), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_result(NULL, &s), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_cancel(NULL), MAILOAUTH_INVALID_ARGUMENT, "op");
    /* A pointer that never was an operation. */
    EXPECT_ERR(mailoauth_op_wait(SENTINEL_OP, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_info(SENTINEL_OP, &s), MAILOAUTH_INVALID_ARGUMENT, "op");
    CHECK(s == SENTINEL_STR, "outputs written on failure");
    mailoauth_op_free(NULL);
    mailoauth_op_free(SENTINEL_OP);
}

/* Bad input: refused before anything runs. */
static void test_bad_requests(mailoauth_context *ctx)
{
    mailoauth_op *op = SENTINEL_OP;
    EXPECT_ERR(mailoauth_account_test_begin(ctx, "{\"account\":\"c\xff@contoso.test\"}", &op),
               MAILOAUTH_INVALID_ARGUMENT, "request_json");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, "{\"account\":", &op), MAILOAUTH_INVALID_CONFIG, "JSON");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, "{\"account\":\"" OWNER "\",\"colour\":1}", &op),
               MAILOAUTH_INVALID_CONFIG, "colour");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, "{\"account\":\"" OWNER "\",\"protocols\":[\"nntp\"]}", &op),
               MAILOAUTH_INVALID_CONFIG, "nntp");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, "{\"account\":\"a\\r\\nb@contoso.test\"}", &op),
               MAILOAUTH_INVALID_ARGUMENT, "account");
    EXPECT_ERR(mailoauth_account_test_begin(ctx, "{}", &op), MAILOAUTH_INVALID_CONFIG, "account");
    CHECK(op == SENTINEL_OP, "account_test_begin wrote its output on failure");
}

/* ------------------------------------------------------- with the stack */

static void test_success(mailoauth_context *ctx)
{
    mailoauth_op *op = NULL;
    if (!EXPECT_OK(mailoauth_account_test_begin(ctx, "{\"account\":\"" OWNER "\"}", &op))) return;
    /* A UI timer: poll without blocking, look at the steps so far. */
    int32_t rc;
    int polls = 0;
    while ((rc = mailoauth_op_wait(op, 0)) == MAILOAUTH_PENDING && polls < 6000) {
        jval *v;
        char *j = op_info_json(op, &v);
        const char *state = jstr(v, "state");
        CHECK(state && (strcmp(state, "running") == 0 || strcmp(state, "done") == 0), "info state: %s",
              j ? j : "(null)");
        CHECK(jget(v, "steps") && jget(v, "steps")->t == J_ARR, "info lists the steps so far: %s", j ? j : "(null)");
        jfree(v);
        free(j);
        polls++;
        sleep_ms(10);
    }
    CHECK(rc == MAILOAUTH_OK, "the account test finishes OK, got %s", code_name(rc));
    jval *info;
    char *ij = op_info_json(op, &info);
    CHECK(jstr(info, "state") && strcmp(jstr(info, "state"), "done") == 0, "info after the end: %s",
          ij ? ij : "(null)");
    jfree(info);
    free(ij);

    jval *v;
    char *j = result_json(op, &v);
    const jval *steps = jget(v, "steps");
    CHECK(steps && steps->t == J_ARR && steps->count == 4, "four steps: %s", j ? j : "(null)");
    const char *names[] = {"token", "smtp", "imap", "pop3"};
    for (size_t i = 0; steps && i < steps->count && i < 4; i++) {
        const jval *s = steps->items[i];
        long long code = -1, ms = -1;
        CHECK(jstr(s, "step") && strcmp(jstr(s, "step"), names[i]) == 0, "step %zu is %s", i, names[i]);
        CHECK(jint(s, "code", &code) && code == 0, "step %s code 0: %s", names[i], j);
        CHECK(jstr(s, "name") && strcmp(jstr(s, "name"), "OK") == 0, "step %s name OK", names[i]);
        CHECK(jstr(s, "message") && jstr(s, "message")[0], "step %s has a message", names[i]);
        CHECK(jint(s, "ms", &ms) && ms >= 0, "step %s has ms", names[i]);
    }
    const jval *pop = find_step(v, "pop3");
    CHECK(pop && jstr(pop, "server_reply") && strncmp(jstr(pop, "server_reply"), "+OK", 3) == 0,
          "the POP3 step shows the STAT reply: %s", j ? j : "(null)");
    CHECK(j && tu_utf8_valid(j, strlen(j)), "the result is UTF-8");
    jfree(v);
    free(j);
    /* Done: waiting again and cancelling change nothing. */
    EXPECT_OK(mailoauth_op_wait(op, -1));
    EXPECT_OK(mailoauth_op_cancel(op));
    EXPECT_OK(mailoauth_op_wait(op, 0));
    mailoauth_op_free(op);
    /* Stale handle after free. */
    char *s = SENTINEL_STR;
    EXPECT_ERR(mailoauth_op_wait(op, 0), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_result(op, &s), MAILOAUTH_INVALID_ARGUMENT, "op");
    EXPECT_ERR(mailoauth_op_cancel(op), MAILOAUTH_INVALID_ARGUMENT, "op");
    CHECK(s == SENTINEL_STR, "result wrote its output on failure");
    mailoauth_op_free(op); /* a second free is a no-op */
}

static void test_one_step_fails(const char *dir)
{
    mailoauth_context *ctx = account_ctx(dir, "127.0.0.1", closed_port());
    if (!ctx) return;
    mailoauth_op *op = NULL;
    if (EXPECT_OK(mailoauth_account_test_begin(ctx, "{\"account\":\"" OWNER "\"}", &op))) {
        EXPECT_OK(mailoauth_op_wait(op, 120000));
        jval *v;
        char *j = result_json(op, &v);
        CHECK(step_code(v, "token") == 0, "token passes: %s", j ? j : "(null)");
        CHECK(step_code(v, "smtp") == MAILOAUTH_NETWORK, "smtp is NETWORK: %s", j ? j : "(null)");
        CHECK(step_code(v, "imap") == 0 && step_code(v, "pop3") == 0, "imap and pop3 still pass: %s",
              j ? j : "(null)");
        const jval *smtp = find_step(v, "smtp");
        CHECK(smtp && jstr(smtp, "hint") && strstr(jstr(smtp, "hint"), "servers.smtp"),
              "the SMTP step's hint (German) names servers.smtp: %s", j ? j : "(null)");
        CHECK(smtp && jstr(smtp, "name") && strcmp(jstr(smtp, "name"), "NETWORK") == 0, "name NETWORK");
        jfree(v);
        free(j);
        mailoauth_op_free(op);
    }
    mailoauth_context_free(ctx);
}

static void *cancel_later(void *arg)
{
    sleep_ms(200);
    mailoauth_op_cancel((mailoauth_op *)arg);
    return NULL;
}

static void test_cancel(const char *dir)
{
    int port = 0;
    int fd = silent_listener(&port);
    if (!CHECK(fd >= 0, "a silent listener")) return;
    mailoauth_context *ctx = account_ctx(dir, "127.0.0.1", port);
    if (ctx) {
        mailoauth_op *op = NULL;
        const char *req = "{\"account\":\"" OWNER "\",\"protocols\":[\"smtp\"],\"timeout_ms\":600000}";
        if (EXPECT_OK(mailoauth_account_test_begin(ctx, req, &op))) {
            char *s = SENTINEL_STR;
            EXPECT_ERR(mailoauth_op_result(op, &s), MAILOAUTH_INVALID_STATE, NULL);
            CHECK(s == SENTINEL_STR, "result wrote its output while running");
            pthread_t t;
            pthread_create(&t, NULL, cancel_later, op);
            EXPECT_ERR(mailoauth_op_wait(op, -1), MAILOAUTH_CANCELLED, NULL);
            pthread_join(t, NULL);
            EXPECT_ERR(mailoauth_op_result(op, &s), MAILOAUTH_CANCELLED, NULL);
            jval *v;
            char *j = op_info_json(op, &v);
            CHECK(jstr(v, "state") && strcmp(jstr(v, "state"), "cancelled") == 0, "info: %s", j ? j : "(null)");
            jfree(v);
            free(j);
            mailoauth_op_free(op);
        }
        /* Freeing a running test cancels it. */
        op = NULL;
        if (EXPECT_OK(mailoauth_account_test_begin(ctx, req, &op))) {
            sleep_ms(50);
            mailoauth_op_free(op);
        }
        mailoauth_context_free(ctx);
    }
    close(fd);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    /* SIGPIPE keeps its default action on purpose: a peer that closed first
     * must not kill the host (src/sigpipe.rs). */
    alarm((unsigned)env_int("MAILOAUTH_TEST_TIMEOUT", 600));

    load_stack();
    load_mail_ports();
    CHECK(!STACK.up || (STACK.ca_file[0] && SMTP_STARTTLS && IMAP_TLS && POP3_STARTTLS),
          "the stack file names smtp/imap/pop3 ports and ca_file");
    idp_reset();

    char *dir = make_temp_dir();
    CHECK(dir != NULL, "mkdtemp");
    mailoauth_context *ctx = dir ? account_ctx(dir, NULL, 0) : NULL;
    if (ctx) {
        test_null_arguments(ctx);
        test_bad_requests(ctx);
        if (STACK.up && CONSENT(ctx, OWNER)) {
            test_success(ctx);
            test_one_step_fails(dir);
            test_cancel(dir);
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
