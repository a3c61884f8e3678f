/* examples/demo_host.c: the smallest complete host of libmailoauth.
 *
 *   demo_host [CONFIG.json [ACCOUNT [TO]]]
 *
 * Creates a context from a configuration file (or, without one, from a plain
 * Microsoft 365 configuration with a placeholder client id), prints the
 * library version and what the library resolved. With an ACCOUNT it then
 * signs that account in once for SMTP, IMAP and POP3 (the browser opens at
 * the sign-in page, or the URL is printed), shows the cached account and
 * checks that a silent token is there for each protocol. With TO it sends
 * one mail from ACCOUNT's mailbox to TO over SMTP (XOAUTH2), then works the
 * way the CRM's background service does: customer enquiries arrive in
 * ACCOUNT's inbox (the demo sends them itself, to ACCOUNT), and it polls the
 * inbox over IMAP (waiting in IDLE), forwards each new message to TO and
 * acknowledges it (moved to the mailbox's "Deleted Items" folder, found by
 * its special use); then once more over POP3 (acknowledged by DELE). Last, it
 * shows how a host reports an error, with a configuration that is wrong on
 * purpose.
 *
 * The pattern to copy:
 *   - every fallible call returns an int32_t code; MAILOAUTH_OK is 0;
 *   - after a failure, read the details at once, on the same thread
 *     (mailoauth_last_error / mailoauth_last_error_message);
 *   - strings the library hands out are freed with mailoauth_string_free,
 *     never with free().
 *
 *   - a message is acknowledged only after the host is done with it (here:
 *     forwarded); if the host dies first, the next poll hands it out again.
 *
 * Build and run it with examples/demo.sh. */
#include "mailoauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Used when no configuration file is given. Replace the client id with your
 * app registration's "Application (client) ID" from Entra ID. */
static const char DEFAULT_CONFIG[] =
    "{\"provider\": \"microsoft\","
    " \"tenant\": \"organizations\","
    " \"client_id\": \"00000000-0000-0000-0000-000000000000\"}";

/* A typo on purpose: "hots" instead of "host". The library refuses unknown
 * keys and names them, so such a mistake never passes silently. */
static const char BAD_CONFIG[] =
    "{\"client_id\": \"00000000-0000-0000-0000-000000000000\","
    " \"servers\": {\"smtp\": {\"hots\": \"smtp.office365.com\"}}}";

/* Log lines from the library (optional). It calls this only from inside a
 * call into the library; keep it quick and do not call the library from it.
 * Messages never contain tokens or secrets. */
static void on_log(void *user_data, int32_t level, const char *message)
{
    static const char *const names[] = {"?", "error", "warn", "info", "debug", "trace"};
    (void)user_data;
    fprintf(stderr, "  [mailoauth %s] %s\n", names[level >= 1 && level <= 5 ? level : 0], message);
}

/* Prints the calling thread's last error: the code, its name, the message
 * (what you would show a user or write to your log) and the full record. */
static void print_last_error(int32_t rc)
{
    printf("  code    : %d %s\n", rc, mailoauth_result_str(rc));

    /* Ask for the size first (bytes including the NUL), then copy. */
    int32_t need = mailoauth_last_error_message(NULL, 0);
    char *message = malloc((size_t)need);
    if (message != NULL) {
        mailoauth_last_error_message(message, need);
        printf("  message : %s\n", message);
        free(message); /* our buffer: plain free() */
    }

    /* The whole record as JSON: code, name, message, hint, provider codes, ... */
    char *json = NULL;
    if (mailoauth_last_error(&json) == MAILOAUTH_OK) {
        printf("  record  : %s\n", json);
        mailoauth_string_free(json); /* the library's string: its free function */
    }
}

/* Signs ACCOUNT in once for all three protocols, unless the cache already
 * has a usable grant. Returns MAILOAUTH_OK or the failure's code. */
static int32_t consent_once(mailoauth_context *ctx, const char *account)
{
    /* A silent token for all protocols means the user consented before:
     * never ask twice. */
    char *token = NULL;
    int32_t rc = mailoauth_token_get(ctx, account, "smtp imap pop3", 0, &token);
    if (rc == MAILOAUTH_OK) {
        mailoauth_secret_free(token);
        printf("  %s already signed in: no consent needed\n", account);
        return MAILOAUTH_OK;
    }
    if (rc != MAILOAUTH_CONSENT_REQUIRED) return rc;

    /* One consent covers SMTP, IMAP and POP3. */
    char request[512];
    snprintf(request, sizeof request,
             "{\"account\": \"%s\", \"protocols\": [\"smtp\", \"imap\", \"pop3\"],"
             " \"flow\": \"browser\", \"prompt\": \"select_account\", \"timeout_s\": 300}",
             account); /* a real host escapes JSON properly; account names here are plain */
    mailoauth_op *op = NULL;
    rc = mailoauth_consent_begin(ctx, request, &op);
    if (rc != MAILOAUTH_OK) return rc;

    /* The URL the browser was sent to (a host with browser "none" opens it). */
    char *info = NULL;
    if (mailoauth_op_info(op, &info) == MAILOAUTH_OK) {
        printf("  sign-in started: %s\n", info);
        mailoauth_string_free(info);
    }

    /* Wait the way a UI would: short waits, free to do other work between. */
    while ((rc = mailoauth_op_wait(op, 250)) == MAILOAUTH_PENDING) {
    }
    if (rc == MAILOAUTH_OK) {
        char *result = NULL;
        if (mailoauth_op_result(op, &result) == MAILOAUTH_OK) {
            printf("  signed in: %s\n", result);
            mailoauth_string_free(result);
        }
    }
    mailoauth_op_free(op);
    return rc; /* on failure the last error describes it (read it on this thread) */
}

/* Shows the cached accounts and whether a silent token is available for each
 * protocol. The token itself is a secret: never print or log it. */
static void show_account(mailoauth_context *ctx, const char *account)
{
    char *accounts = NULL;
    if (mailoauth_account_list(ctx, &accounts) == MAILOAUTH_OK) {
        printf("  cached accounts: %s\n", accounts);
        mailoauth_string_free(accounts);
    }
    static const char *const protocols[] = {"smtp", "imap", "pop3"};
    for (int i = 0; i < 3; i++) {
        char *token = NULL;
        int32_t rc = mailoauth_token_get(ctx, account, protocols[i], 0, &token);
        if (rc == MAILOAUTH_OK) {
            printf("  %-4s: silent token available (%zu characters)\n", protocols[i], strlen(token));
            mailoauth_secret_free(token); /* zeroes it */
        } else {
            printf("  %-4s: no token\n", protocols[i]);
            print_last_error(rc);
        }
    }
}

/* Sends one mail from ACCOUNT's mailbox to TO. The request is JSON; the
 * library builds the message (UTF-8 subject and names encoded for the
 * headers, text and HTML as alternatives, a Message-ID and a Date), signs
 * in to the SMTP server with the account's token (XOAUTH2; a token the
 * server rejects is refreshed once and the send retried) and answers with
 * what the server said. The call blocks until the server has accepted the
 * message (or "timeout_ms" passed). */
static int32_t send_mail(mailoauth_context *ctx, const char *account, const char *to)
{
    char request[1024];
    snprintf(request, sizeof request,
             "{\"account\": \"%s\","
             " \"message\": {\"to\": [\"%s\"],"
             "              \"subject\": \"Grüße aus Köln: Bericht für März\","
             "              \"text\": \"Hallo!\\nDiese Nachricht kam über SMTP mit OAuth2 (XOAUTH2).\","
             "              \"html\": \"<p>Hallo!</p><p>Diese Nachricht kam über <b>SMTP mit OAuth2</b>.</p>\"},"
             " \"timeout_ms\": 60000}",
             account, to); /* again: a real host escapes JSON properly */
    char *result = NULL;
    int32_t rc = mailoauth_smtp_send(ctx, request, &result);
    if (rc == MAILOAUTH_OK) {
        /* {"message_id": "<…>", "accepted": [...], "server_reply": "250 …"} */
        printf("  sent: %s\n", result);
        mailoauth_string_free(result);
    }
    return rc; /* SEND_REJECTED: the last error's "rejected" lists refused recipients */
}

/* Sends a small "customer enquiry" to ACCOUNT itself, so that the polling
 * below has new mail to find (on a real mailbox, customers do this). */
static int32_t send_enquiry(mailoauth_context *ctx, const char *account, int n)
{
    char request[1024];
    snprintf(request, sizeof request,
             "{\"account\": \"%s\", \"message\": {\"to\": [\"%s\"],"
             " \"subject\": \"Anfrage %d: Lieferung nach Düsseldorf\","
             " \"text\": \"Guten Tag,\\nwann kommt meine Bestellung %d?\\nMit freundlichen Grüßen\"}}",
             account, account, n, 4711 + n);
    char *result = NULL;
    int32_t rc = mailoauth_smtp_send(ctx, request, &result);
    if (rc == MAILOAUTH_OK) mailoauth_string_free(result);
    return rc;
}

/* Copies the string value of "key" in a flat JSON object into out (no
 * escapes expected: ids and folder names here are plain). A real host uses
 * its JSON library. Returns 1 when found. */
static int json_string(const char *json, const char *key, char *out, size_t size)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *p = strstr(json, pattern);
    if (p == NULL) return 0;
    p += strlen(pattern);
    const char *end = strchr(p, '"');
    if (end == NULL || (size_t)(end - p) >= size) return 0;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return 1;
}

/* The name of the folder with the given special use ("trash", "archive",
 * ...), from mailoauth_mailbox_list_folders: names differ between servers
 * and languages ("Deleted Items", "Gelöschte Elemente"), special uses not. */
static int find_folder(mailoauth_mailbox *mb, const char *special, char *out, size_t size)
{
    char *folders = NULL;
    if (mailoauth_mailbox_list_folders(mb, &folders) != MAILOAUTH_OK) return 0;
    printf("  folders: %s\n", folders);
    char tag[64];
    snprintf(tag, sizeof tag, "\"special\":\"%s\"", special);
    int found = 0;
    /* Each folder is one {...} object; find the one carrying the tag. */
    for (const char *obj = strchr(folders, '{'); obj != NULL && !found; obj = strchr(obj + 1, '{')) {
        const char *close = strchr(obj, '}');
        if (close == NULL) break;
        const char *hit = strstr(obj, tag);
        if (hit != NULL && hit < close) found = json_string(obj, "name", out, size);
    }
    mailoauth_string_free(folders);
    return found;
}

/* The service loop, once: wait for new mail, poll, and for each message
 * fetch it, forward it to TO, and only then acknowledge it with ACTION.
 * Stops after `expected` messages or when no more mail comes. Returns
 * MAILOAUTH_OK or the first failure (its last error is on this thread). */
static int32_t process_new_mail(mailoauth_context *ctx, mailoauth_mailbox *mb, const char *account,
                                const char *to, const char *action, int expected)
{
    int done = 0;
    while (done < expected) {
        /* IMAP waits in IDLE and returns as soon as mail arrives; POP3 looks
         * again every few seconds. MAILOAUTH_TIMEOUT: nothing came. */
        int32_t rc = mailoauth_mailbox_wait(mb, 30000);
        if (rc == MAILOAUTH_TIMEOUT) {
            printf("  no more mail within 30 s\n");
            break;
        }
        if (rc != MAILOAUTH_OK) return rc;

        char *list = NULL;
        rc = mailoauth_mailbox_poll(mb, 100, &list);
        if (rc != MAILOAUTH_OK) return rc;
        /* [{"id":"…","size":…,"from":"…","subject":"…","date":"…",…}, …] */
        for (const char *obj = strchr(list, '{'); obj != NULL; obj = strchr(obj + 1, '{')) {
            char id[256], subject[512] = "";
            if (!json_string(obj, "id", id, sizeof id)) continue;
            json_string(obj, "subject", subject, sizeof subject);
            printf("  new     : %s  \"%s\"\n", id, subject);

            uint8_t *raw = NULL;
            int64_t raw_len = 0;
            rc = mailoauth_mailbox_fetch(mb, id, &raw, &raw_len);
            if (rc != MAILOAUTH_OK) break;

            char request[768], *sent = NULL;
            snprintf(request, sizeof request,
                     "{\"account\": \"%s\", \"to\": [\"%s\"], \"mode\": \"attachment\","
                     " \"comment\": \"Neue Kundenanfrage, bitte bearbeiten.\"}",
                     account, to);
            rc = mailoauth_smtp_forward(ctx, request, raw, raw_len, &sent);
            mailoauth_bytes_free(raw, raw_len); /* the library's bytes: its free function */
            if (rc != MAILOAUTH_OK) break; /* not acknowledged: the next poll brings it again */
            printf("  forwarded: %s\n", sent);
            mailoauth_string_free(sent);

            /* Recorded durably first, then the server is changed. */
            rc = mailoauth_mailbox_ack(mb, id, action);
            if (rc != MAILOAUTH_OK) break;
            printf("  acknowledged: %s\n", action);
            done++;
        }
        mailoauth_string_free(list);
        if (rc != MAILOAUTH_OK) return rc;
    }
    printf("  %d message(s) forwarded and acknowledged\n", done);
    return MAILOAUTH_OK;
}

/* Opens ACCOUNT's inbox over PROTOCOL. "start": "new" counts what is there
 * at the very first open as handled, so a service never floods TO with an
 * old inbox; the poll state (what was acknowledged) is kept beside the
 * token cache and survives restarts. */
static int32_t open_inbox(mailoauth_context *ctx, const char *account, const char *protocol,
                          mailoauth_mailbox **mb)
{
    char request[512];
    snprintf(request, sizeof request,
             "{\"account\": \"%s\", \"protocol\": \"%s\", \"folder\": \"INBOX\", \"start\": \"new\","
             " \"lock_timeout_ms\": 5000}",
             account, protocol);
    if (strcmp(protocol, "pop3") == 0) {
        /* POP3 knows only the inbox: no "folder". */
        snprintf(request, sizeof request,
                 "{\"account\": \"%s\", \"protocol\": \"pop3\", \"start\": \"new\", \"lock_timeout_ms\": 5000}",
                 account);
    }
    return mailoauth_mailbox_open(ctx, request, mb);
}

/* IMAP: enquiries arrive, each is forwarded, then moved to the trash
 * folder. POP3: the same with DELE (committed at the session's QUIT). */
static int32_t poll_forward_ack(mailoauth_context *ctx, const char *account, const char *to)
{
    mailoauth_mailbox *mb = NULL;
    printf("\npolling %s's inbox over IMAP, forwarding new mail to %s:\n", account, to);
    int32_t rc = open_inbox(ctx, account, "imap", &mb);
    if (rc != MAILOAUTH_OK) return rc;
    char trash[256], action[300] = "seen";
    if (find_folder(mb, "trash", trash, sizeof trash)) snprintf(action, sizeof action, "move:%s", trash);
    for (int n = 1; n <= 2 && rc == MAILOAUTH_OK; n++) rc = send_enquiry(ctx, account, n);
    if (rc == MAILOAUTH_OK) printf("  two enquiries sent to %s\n", account);
    if (rc == MAILOAUTH_OK) rc = process_new_mail(ctx, mb, account, to, action, 2);
    mailoauth_mailbox_free(mb);
    if (rc != MAILOAUTH_OK) return rc;

    printf("\npolling %s's inbox over POP3, forwarding new mail to %s:\n", account, to);
    rc = open_inbox(ctx, account, "pop3", &mb);
    if (rc != MAILOAUTH_OK) return rc;
    rc = send_enquiry(ctx, account, 3);
    if (rc == MAILOAUTH_OK) printf("  one enquiry sent to %s\n", account);
    if (rc == MAILOAUTH_OK) rc = process_new_mail(ctx, mb, account, to, "delete", 1);
    mailoauth_mailbox_free(mb); /* QUIT in the background commits the DELE */
    return rc;
}

/* Reads a whole file into a NUL-terminated buffer (free() it), or NULL. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    do {
        if (cap - len < 4096) {
            char *bigger = realloc(buf, cap += 65536);
            if (bigger == NULL) { free(buf); fclose(f); return NULL; }
            buf = bigger;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep our lines and the log lines (stderr) in order */

    /* 1. The library we loaded, and the header we were compiled with. A newer
     *    header than the library is refused by mailoauth_context_new
     *    (MAILOAUTH_ABI_MISMATCH); checking up front gives a clearer message. */
    printf("mailoauth %s, ABI %u (this host was built with %s, ABI %u)\n", mailoauth_version(),
           (unsigned)mailoauth_abi_version(), MAILOAUTH_VERSION, (unsigned)MAILOAUTH_ABI_VERSION);
    if (mailoauth_abi_version() < MAILOAUTH_ABI_VERSION) {
        fprintf(stderr, "the loaded library is older than this host's header\n");
        return 1;
    }

    /* 2. Optional: the library's log, up to level 3 (info). One per process. */
    mailoauth_set_logger(3, on_log, NULL);

    /* 3. The configuration: JSON text. The library copies it, so we may free
     *    our buffer right after the call. */
    char *from_file = NULL;
    const char *config = DEFAULT_CONFIG;
    if (argc > 1) {
        from_file = read_file(argv[1]);
        if (from_file == NULL) {
            perror(argv[1]);
            return 1;
        }
        config = from_file;
    }
    printf("\nconfiguration: %s\n", argc > 1 ? argv[1] : "(built in: Microsoft 365, placeholder client id)");

    /* 4. A context: one per configuration, shared by all of the host's threads. */
    mailoauth_context *ctx = NULL;
    int32_t rc = mailoauth_context_new(config, MAILOAUTH_ABI_VERSION, &ctx);
    free(from_file);
    if (rc != MAILOAUTH_OK) {
        printf("could not create the context:\n");
        print_last_error(rc);
        return 1;
    }

    /* 5. What the library made of it: presets filled in, defaults applied,
     *    secrets left out. */
    char *resolved = NULL;
    rc = mailoauth_context_describe(ctx, &resolved);
    if (rc == MAILOAUTH_OK) {
        printf("resolved: %s\n", resolved);
        mailoauth_string_free(resolved);
    } else {
        print_last_error(rc);
    }

    /* 6. Sign in once and show the silent tokens (when an account is given). */
    if (argc > 2) {
        printf("\nconsent for %s:\n", argv[2]);
        rc = consent_once(ctx, argv[2]);
        if (rc != MAILOAUTH_OK) {
            printf("  sign-in failed:\n");
            print_last_error(rc);
            mailoauth_context_free(ctx);
            return 1;
        }
        show_account(ctx, argv[2]);
    }

    /* 7. Send a mail (when a recipient is given). */
    int failed = 0;
    if (argc > 3) {
        printf("\nsending a mail from %s to %s:\n", argv[2], argv[3]);
        rc = send_mail(ctx, argv[2], argv[3]);
        if (rc != MAILOAUTH_OK) {
            printf("  the send failed:\n");
            print_last_error(rc);
            failed = 1;
        }
    }

    /* 8. The background service's work: poll, forward, acknowledge. */
    if (argc > 3 && !failed) {
        rc = poll_forward_ack(ctx, argv[2], argv[3]);
        if (rc != MAILOAUTH_OK) {
            printf("  polling failed:\n");
            print_last_error(rc);
            failed = 1;
        }
    }

    /* 9. Error reporting, shown with a configuration that is wrong on purpose. */
    printf("\na configuration with a typo (\"hots\"):\n");
    mailoauth_context *bad = NULL;
    rc = mailoauth_context_new(BAD_CONFIG, MAILOAUTH_ABI_VERSION, &bad);
    if (rc == MAILOAUTH_OK) {
        printf("  unexpectedly accepted\n");
        mailoauth_context_free(bad);
    } else {
        print_last_error(rc);
    }

    /* 10. Clean up: free the context; switch the logger off before the host's
     *    logging goes away. */
    mailoauth_context_free(ctx);
    mailoauth_set_logger(0, NULL, NULL);
    return failed;
}
