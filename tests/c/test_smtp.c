/* tests/c/test_smtp.c: the SMTP exports of the mailoauth C ABI, tested from
 * C against include/mailoauth.h, the local identity imitation and the
 * stack's Postfix (tests/stack), reading what was delivered back from the
 * maildirs.
 *
 * Exports covered: mailoauth_smtp_send, mailoauth_smtp_send_mime,
 * mailoauth_smtp_forward.
 *
 * - success: a message with a German subject, text and HTML, an attachment
 *   read from a path, Cc and Bcc (STARTTLS and implicit TLS), read back from
 *   the maildir: subject decoded, both parts, the attachment byte for byte,
 *   Bcc absent; host MIME with "envelope": "from_headers" (LF line endings
 *   arrive as CRLF, Bcc removed) and with an explicit envelope; a forward of
 *   a delivered message in attachment mode (message/rfc822, not base64).
 * - NULL: every pointer argument, a freed context; outputs untouched.
 * - bad input: invalid UTF-8, malformed JSON, unknown key, no recipients,
 *   CR/LF in an address and in the subject, an unreadable attachment path,
 *   a missing envelope, an unknown forward mode, negative lengths, lengths
 *   over limits.max_message_bytes (TOO_LARGE before a byte is read), an
 *   untrusted server override, messages in German; nothing is delivered.
 * - a recipient Postfix refuses at RCPT (a bare numeric domain):
 *   SEND_REJECTED with `rejected` and `server_reply`, the good recipient
 *   gets nothing.
 *
 * The sender's grant comes from a browser consent driven over HTTP with the
 * IdP's auto_consent (testutil.h). Prints one line per failing check and
 * ends with "N passed, N failed"; exits non-zero on failure.
 *
 * Environment: MAILOAUTH_STACK_FILE (default /tmp/mailoauth-stack.json;
 * required), MAILOAUTH_TEST_TIMEOUT (watchdog, seconds, default 600).
 * Build: tests/c/run.sh (ASan+UBSan build and a valgrind run). */
#define _POSIX_C_SOURCE 200809L
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE /* mkdtemp, strncasecmp */

#include "mailoauth.h"
#define TU_STACK_HELPERS
#include "testutil.h"

/* The sender: its own user, so other suites' grants are not touched. */
#define SENDER CAROL

static char NONCE[40];

/* ------------------------------------------------------------- helpers */

/* "<local>-<nonce>@contoso.test": a recipient no other run has used. */
static void rcpt(char *buf, size_t len, const char *local)
{
    snprintf(buf, len, "%s-%s@contoso.test", local, NONCE);
}

/* The maildir folder `sub` ("new", "cur") of an address. */
static void maildir_of(const char *address, const char *sub, char *out, size_t len)
{
    char local[256], domain[256];
    const char *at = strchr(address, '@');
    size_t ll = at ? (size_t)(at - address) : 0;
    snprintf(local, sizeof local, "%.*s", (int)ll, address);
    snprintf(domain, sizeof domain, "%s", at ? at + 1 : "");
    char path[1024] = "";
    size_t o = 0;
    for (const char *p = STACK.maildir; *p && o + 256 < sizeof path; p++) {
        if (p[0] == '%' && p[1] == 'd') { o += (size_t)snprintf(path + o, sizeof path - o, "%s", domain); p++; }
        else if (p[0] == '%' && p[1] == 'n') { o += (size_t)snprintf(path + o, sizeof path - o, "%s", local); p++; }
        else path[o++] = *p;
    }
    path[o] = 0;
    snprintf(out, len, "%s/%s", path, sub);
}

/* How many messages an address has received. */
static int mail_count(const char *address)
{
    int n = 0;
    const char *subs[] = {"new", "cur"};
    for (int k = 0; k < 2; k++) {
        char dir[1100];
        maildir_of(address, subs[k], dir, sizeof dir);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') n++;
        closedir(d);
    }
    return n;
}

/* The first delivered message to `address` that contains `needle`, waiting
 * up to timeout_ms (malloc'd; NULL if none arrived). */
static char *wait_mail(const char *address, const char *needle, int timeout_ms, size_t *len)
{
    long long end = now_ms() + timeout_ms;
    do {
        char dir[1100];
        maildir_of(address, "new", dir, sizeof dir);
        DIR *d = opendir(dir);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') continue;
                char p[1400];
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                size_t n = 0;
                char *bytes = read_file(p, &n);
                if (bytes && mem_find(bytes, n, needle, strlen(needle))) {
                    closedir(d);
                    if (len) *len = n;
                    return bytes;
                }
                free(bytes);
            }
            closedir(d);
        }
        sleep_ms(50);
    } while (now_ms() < end);
    return NULL;
}

/* Case-insensitive search of needle in hay[0..len). */
static const char *ci_find(const char *hay, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t k = 0; k + nl <= len; k++)
        if (strncasecmp(hay + k, needle, nl) == 0) return hay + k;
    return NULL;
}

/* Base64 into out (room for len bytes); skips line breaks; returns the size. */
static size_t b64_decode(const char *in, size_t len, unsigned char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t k = 0; k < len; k++) {
        const char *pos = in[k] ? strchr(A, in[k]) : NULL;
        if (pos == NULL) continue; /* CR, LF, '=' */
        acc = (acc << 6) | (uint32_t)(pos - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)((acc >> bits) & 0xFF);
        }
    }
    return o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Quoted-printable (soft line breaks dropped); q: RFC 2047 "Q" ('_' = space). */
static size_t qp_decode(const char *in, size_t len, unsigned char *out, int q)
{
    size_t o = 0;
    for (size_t k = 0; k < len; k++) {
        if (in[k] == '=' && k + 1 < len && in[k + 1] == '\r') { k += 2; continue; }
        if (in[k] == '=' && k + 1 < len && in[k + 1] == '\n') { k += 1; continue; }
        if (in[k] == '=' && k + 2 < len && hexval(in[k + 1]) >= 0 && hexval(in[k + 2]) >= 0) {
            out[o++] = (unsigned char)(hexval(in[k + 1]) * 16 + hexval(in[k + 2]));
            k += 2;
            continue;
        }
        out[o++] = (unsigned char)(q && in[k] == '_' ? ' ' : in[k]);
    }
    return o;
}

/* A header of the message's header section, unfolded (malloc'd; NULL if absent). */
static char *header_of(const char *msg, size_t len, const char *name)
{
    const char *end = mem_find(msg, len, "\r\n\r\n", 4) ? NULL : msg + len;
    for (size_t k = 0; end == NULL && k + 4 <= len; k++)
        if (memcmp(msg + k, "\r\n\r\n", 4) == 0) end = msg + k + 2;
    size_t nl = strlen(name);
    for (const char *p = msg; p < end;) {
        const char *eol = p;
        while (eol < end && *eol != '\r') eol++;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            char *v = malloc((size_t)(end - p) + 1);
            size_t o = 0;
            const char *q = p + nl + 1;
            while (*q == ' ') q++;
            for (;;) {
                while (q < end && *q != '\r') v[o++] = *q++;
                if (q + 2 < end && (q[2] == ' ' || q[2] == '\t')) { q += 2; continue; }
                break;
            }
            v[o] = 0;
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Decodes RFC 2047 encoded words (B or Q) of an unfolded header value;
 * white space between two encoded words is dropped (malloc'd). */
static char *rfc2047_decode(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    size_t o = 0, ws_len = 0;
    const char *ws = NULL, *p = in;
    int after_word = 0;
    while (*p) {
        if (p[0] == '=' && p[1] == '?') {
            const char *q1 = strchr(p + 2, '?');
            const char *end = q1 && q1[1] && q1[2] == '?' ? strstr(q1 + 3, "?=") : NULL;
            if (end && strchr("BbQq", q1[1])) {
                if (!after_word && ws_len) { memcpy(out + o, ws, ws_len); o += ws_len; }
                ws_len = 0;
                const char *t = q1 + 3;
                if (q1[1] == 'B' || q1[1] == 'b') o += b64_decode(t, (size_t)(end - t), (unsigned char *)out + o);
                else o += qp_decode(t, (size_t)(end - t), (unsigned char *)out + o, 1);
                p = end + 2;
                after_word = 1;
                continue;
            }
        }
        if (*p == ' ' || *p == '\t') {
            if (ws_len == 0) ws = p;
            ws_len++;
            p++;
            continue;
        }
        if (ws_len) { memcpy(out + o, ws, ws_len); o += ws_len; ws_len = 0; }
        out[o++] = *p++;
        after_word = 0;
    }
    if (ws_len) { memcpy(out + o, ws, ws_len); o += ws_len; }
    out[o] = 0;
    return out;
}

/* The decoded body of the first MIME part whose headers contain `marker`
 * (e.g. "Content-Type: text/plain"), CR removed for text; malloc'd, size in
 * *out_len; NULL if absent. */
static unsigned char *part_body(const char *msg, size_t len, const char *marker, int keep_cr, size_t *out_len)
{
    const char *m = ci_find(msg, len, marker);
    if (m == NULL) return NULL;
    size_t rest = len - (size_t)(m - msg);
    const char *hend = mem_find(m, rest, "\r\n\r\n", 4) ? NULL : NULL;
    for (size_t k = 0; k + 4 <= rest; k++)
        if (memcmp(m + k, "\r\n\r\n", 4) == 0) { hend = m + k; break; }
    if (hend == NULL) return NULL;
    const char *cte = ci_find(m, (size_t)(hend - m), "Content-Transfer-Encoding:");
    const char *body = hend + 4;
    size_t blen = len - (size_t)(body - msg);
    for (size_t k = 0; k + 4 <= blen; k++)
        if (memcmp(body + k, "\r\n--", 4) == 0) { blen = k; break; }
    unsigned char *out = malloc(blen + 1);
    size_t o;
    if (cte && strncasecmp(cte + 26, " base64", 7) == 0) o = b64_decode(body, blen, out);
    else if (cte && strncasecmp(cte + 26, " quoted-printable", 17) == 0) o = qp_decode(body, blen, out, 0);
    else { memcpy(out, body, blen); o = blen; }
    if (!keep_cr) {
        size_t w = 0;
        for (size_t k = 0; k < o; k++)
            if (out[k] != '\r') out[w++] = out[k];
        o = w;
        while (o > 0 && out[o - 1] == '\n') o--;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* A JSON string literal body: escapes '"' and '\\' (the tests' values
 * have no control characters). */
static void json_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; *in && o + 3 < len; in++) {
        if (*in == '"' || *in == '\\') out[o++] = '\\';
        out[o++] = *in;
    }
    out[o] = 0;
}

/* ------------------------------------------------------------- configs */

/* A context for the stack: IdP over plain http on loopback, servers.smtp =
 * the stack's submission port with STARTTLS, the stack's CA, cache in dir;
 * `extra` (",\"key\":…" or "") appended at the top level. */
static mailoauth_context *smtp_ctx(const char *dir, const char *extra)
{
    char ca[600], cfg[4096];
    json_escape(STACK.ca_file, ca, sizeof ca);
    snprintf(cfg, sizeof cfg,
             "{\"provider\":\"custom\",\"authority\":\"%s\",\"allow_plaintext_loopback\":true,"
             "\"tenant\":\"%s\",\"client_id\":\"%s\","
             "\"scopes\":{\"smtp\":\"https://outlook.office.com/SMTP.Send\","
             "\"imap\":\"https://outlook.office.com/IMAP.AccessAsUser.All\","
             "\"pop3\":\"https://outlook.office.com/POP.AccessAsUser.All\"},"
             "\"servers\":{\"smtp\":{\"host\":\"%s\",\"port\":%d,\"security\":\"starttls\"}},"
             "\"tls\":{\"ca_file\":\"%s\"},\"http\":{\"proxy\":\"none\"},"
             "\"browser\":\"none\",\"cache\":{\"protection\":\"none\",\"path\":\"%s\"}%s}",
             STACK.up ? STACK.http : "http://127.0.0.1:9", STACK.up ? STACK.tenant : "organizations",
             STACK.up ? STACK.client_id : "00000000-0000-0000-0000-0000000000a1",
             STACK.smtp_host[0] ? STACK.smtp_host : "127.0.0.2", STACK.smtp_starttls ? STACK.smtp_starttls : 9, ca,
             dir, extra);
    mailoauth_context *ctx = NULL;
    if (!EXPECT_OK(ctx_new(cfg, &ctx))) return NULL;
    return ctx;
}

/* Calls send and checks the result JSON: message_id "<…>", `accepted`
 * holds want_accepted addresses, server_reply "250 …". Returns the
 * message_id (malloc'd) or NULL. */
static char *send_ok_at(const char *file, int line, int32_t rc, char *out, int want_accepted)
{
    if (!expect_ok_at(file, line, "smtp call", rc)) return NULL;
    char *id = NULL;
    jval *v = jparse(out, NULL);
    const char *mid = jstr(v, "message_id");
    const char *reply = jstr(v, "server_reply");
    const jval *acc = jget(v, "accepted");
    tu_check(v != NULL && mid && mid[0] == '<' && mid[strlen(mid) - 1] == '>', file, line,
             "result has a message_id <...>", "%s", out ? out : "(null)");
    tu_check(reply && strncmp(reply, "250", 3) == 0, file, line, "result server_reply is 250 ...", "%s", out);
    tu_check(acc && acc->t == J_ARR && (int)acc->count == want_accepted, file, line,
             "result accepted lists every recipient", "want %d: %s", want_accepted, out);
    if (mid) id = strdup(mid);
    jfree(v);
    mailoauth_string_free(out);
    return id;
}
/* (the call runs before `out` is read: the comma operator sequences them) */
static int32_t g_rc;
#define SEND_OK(call, out, n) (g_rc = (call), send_ok_at(__FILE__, __LINE__, g_rc, (out), (n)))

/* ======================================================== success tests */

static const char SUBJECT[] = "Grüße aus Köln: Übergrößenträger Ä Ö Ü ä ö ü ß";
static const char TEXT[] = "Hallo Bob,\nanbei der Bericht für März.\nViele Grüße";
static const char HTML[] = "<p>Hallo Bob,<br>anbei der Bericht f\xc3\xbcr <b>M\xc3\xa4rz</b>.</p>";

/* The message the forward test sends on (a delivered file). */
static char *g_delivered;
static size_t g_delivered_len;

static void test_send(mailoauth_context *ctx, const char *dir)
{
    char to[128], cc[128], bcc[128], attach[1024];
    rcpt(to, sizeof to, "send-to");
    rcpt(cc, sizeof cc, "send-cc");
    rcpt(bcc, sizeof bcc, "send-bcc");
    /* an attachment with every byte value, CRLF and a lone dot line */
    unsigned char bin[3000];
    for (size_t k = 0; k < sizeof bin; k++) bin[k] = (unsigned char)((k * 7 + k / 256) & 0xFF);
    memcpy(bin + 100, "\r\n.\r\n", 5);
    snprintf(attach, sizeof attach, "%s/bericht-m\xc3\xa4rz.bin", dir);
    CHECK(write_file(attach, bin, sizeof bin), "write %s", attach);

    char req[8192], esc[1200];
    json_escape(attach, esc, sizeof esc);
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"from\":\"Carol M\xc3\xbcller <" SENDER ">\","
             "\"to\":[\"Bob B\xc3\xa4r <%s>\"],\"cc\":[\"%s\"],\"bcc\":[\"%s\"],\"subject\":\"%s %s\","
             "\"text\":\"Hallo Bob,\\nanbei der Bericht f\xc3\xbcr M\xc3\xa4rz.\\nViele Gr\xc3\xbc\xc3\x9f" "e\","
             "\"html\":\"%s\",\"attachments\":[{\"name\":\"bericht.bin\",\"content_type\":\"application/octet-stream\","
             "\"path\":\"%s\"}]}}",
             to, cc, bcc, SUBJECT, NONCE, HTML, esc);
    char *out = SENTINEL_STR;
    char *mid = SEND_OK(mailoauth_smtp_send(ctx, req, &out), out, 3);

    size_t len = 0;
    char *msg = wait_mail(to, NONCE, 20000, &len);
    if (!CHECK(msg != NULL, "the message to %s arrived", to)) { free(mid); return; }

    char *subj = header_of(msg, len, "Subject");
    char *dec = subj ? rfc2047_decode(subj) : NULL;
    char want[512];
    snprintf(want, sizeof want, "%s %s", SUBJECT, NONCE);
    CHECK(dec && strcmp(dec, want) == 0, "the subject arrives intact: got '%s' (raw '%s')", dec ? dec : "",
          subj ? subj : "(none)");
    CHECK(subj && !tu_has_non_ascii(subj), "the raw Subject header is ASCII (RFC 2047): %s", subj ? subj : "");
    free(subj);
    free(dec);

    char *from = header_of(msg, len, "From");
    char *fdec = from ? rfc2047_decode(from) : NULL;
    CHECK(fdec && strstr(fdec, "Carol M\xc3\xbcller") && strstr(fdec, "<" SENDER ">"), "From: %s", fdec ? fdec : "");
    free(from);
    free(fdec);
    char *hdr_to = header_of(msg, len, "To");
    char *tdec = hdr_to ? rfc2047_decode(hdr_to) : NULL;
    CHECK(tdec && strstr(tdec, "Bob B\xc3\xa4r") && strstr(tdec, to), "To: %s", tdec ? tdec : "");
    free(hdr_to);
    free(tdec);
    char *hdr_cc = header_of(msg, len, "Cc");
    CHECK(hdr_cc && strstr(hdr_cc, cc), "Cc: %s", hdr_cc ? hdr_cc : "(none)");
    free(hdr_cc);
    char *hdr_mid = header_of(msg, len, "Message-ID");
    CHECK(hdr_mid && mid && strcmp(hdr_mid, mid) == 0, "Message-ID %s equals the result's %s", hdr_mid ? hdr_mid : "",
          mid ? mid : "");
    free(hdr_mid);
    char *date = header_of(msg, len, "Date");
    CHECK(date != NULL, "a Date header");
    free(date);

    CHECK(!mem_find(msg, len, bcc, strlen(bcc)), "the Bcc address is nowhere in the To recipient's copy");
    CHECK(!ci_find(msg, len, "\nBcc:"), "no Bcc header");
    CHECK(ci_find(msg, len, "multipart/alternative") != NULL, "text and html as multipart/alternative");

    size_t n = 0;
    unsigned char *text = part_body(msg, len, "Content-Type: text/plain", 0, &n);
    CHECK(text && n == strlen(TEXT) && memcmp(text, TEXT, n) == 0, "the text part: '%s'", text ? (char *)text : "(none)");
    free(text);
    unsigned char *html = part_body(msg, len, "Content-Type: text/html", 0, &n);
    CHECK(html && n == strlen(HTML) && memcmp(html, HTML, n) == 0, "the html part: '%s'", html ? (char *)html : "(none)");
    free(html);
    unsigned char *att = part_body(msg, len, "bericht.bin", 1, &n);
    CHECK(att && n == sizeof bin && memcmp(att, bin, n) == 0, "the attachment arrives byte for byte (%zu bytes)", n);
    free(att);
    CHECK(ci_find(msg, len, "application/octet-stream") != NULL, "the attachment's content type");

    /* Cc and Bcc got their copies; the Bcc copy has no Bcc header either. */
    size_t blen = 0;
    char *bmsg = wait_mail(bcc, NONCE, 20000, &blen);
    CHECK(bmsg != NULL, "the Bcc recipient got the message");
    CHECK(bmsg && !ci_find(bmsg, blen, "\nBcc:"), "no Bcc header in the Bcc copy");
    free(bmsg);
    char *cmsg = wait_mail(cc, NONCE, 20000, NULL);
    CHECK(cmsg != NULL, "the Cc recipient got the message");
    free(cmsg);

    free(g_delivered);
    g_delivered = msg;
    g_delivered_len = len;
    free(mid);
}

/* The same through implicit TLS: a request's server override to the
 * stack's TLS port (the same host, so trusted). */
static void test_send_implicit_tls(mailoauth_context *ctx)
{
    char to[128], req[2048];
    rcpt(to, sizeof to, "tls");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"server\":{\"host\":\"%s\",\"port\":%d,\"security\":\"tls\"},"
             "\"timeout_ms\":30000,\"message\":{\"to\":[\"%s\"],\"subject\":\"TLS %s\",\"text\":\"implicit TLS\"}}",
             STACK.smtp_host, STACK.smtp_tls, to, NONCE);
    char *out = SENTINEL_STR;
    int32_t rc = mailoauth_smtp_send(ctx, req, &out);
    if (rc == MAILOAUTH_UNTRUSTED_HOST) {
        NOTE("a server override to another port of the configured host is UNTRUSTED_HOST");
        return;
    }
    free(SEND_OK(rc, out, 1));
    char *msg = wait_mail(to, NONCE, 20000, NULL);
    CHECK(msg != NULL, "the implicit-TLS message arrived");
    free(msg);
}

static void test_send_mime(mailoauth_context *ctx)
{
    char to[128], cc[128], bcc[128], other[128];
    rcpt(to, sizeof to, "mime-to");
    rcpt(cc, sizeof cc, "mime-cc");
    rcpt(bcc, sizeof bcc, "mime-bcc");
    rcpt(other, sizeof other, "mime-env");
    /* LF line endings on purpose: they must arrive as CRLF */
    char mime[4096];
    int n = snprintf(mime, sizeof mime,
                     "From: Carol <" SENDER ">\n"
                     "To: %s\n"
                     "Cc: %s\n"
                     "Bcc: %s\n"
                     "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_MIME?= %s\n"
                     "Message-ID: <mime-%s@contoso.test>\n"
                     "MIME-Version: 1.0\n"
                     "Content-Type: text/plain; charset=utf-8\n"
                     "Content-Transfer-Encoding: 8bit\n"
                     "\n"
                     "Zeile eins mit \xc3\xa4\xc3\xb6\xc3\xbc\n"
                     ".eine Zeile mit Punkt\n"
                     "Ende %s\n",
                     to, cc, bcc, NONCE, NONCE, NONCE);
    char *out = SENTINEL_STR;
    const char *req = "{\"account\":\"" SENDER "\",\"envelope\":\"from_headers\"}";
    char *mid = SEND_OK(mailoauth_smtp_send_mime(ctx, req, (const uint8_t *)mime, n, &out), out, 3);
    char want_mid[128];
    snprintf(want_mid, sizeof want_mid, "<mime-%s@contoso.test>", NONCE);
    CHECK(mid && strcmp(mid, want_mid) == 0, "the result's message_id is the MIME's own: %s", mid ? mid : "(null)");
    free(mid);

    size_t len = 0;
    char *msg = wait_mail(to, NONCE, 20000, &len);
    if (CHECK(msg != NULL, "the MIME message to %s arrived", to)) {
        CHECK(!ci_find(msg, len, "\nBcc:") && !mem_find(msg, len, bcc, strlen(bcc)),
              "Bcc removed from the bytes sent (from_headers)");
        char body[256];
        snprintf(body, sizeof body, "\r\n\r\nZeile eins mit \xc3\xa4\xc3\xb6\xc3\xbc\r\n.eine Zeile mit Punkt\r\nEnde %s\r\n",
                 NONCE);
        CHECK(mem_find(msg, len, body, strlen(body)), "the body arrives as sent, with CRLF and the dot line intact");
        int bare_lf = 0;
        for (size_t k = 0; k < len; k++)
            if (msg[k] == '\n' && (k == 0 || msg[k - 1] != '\r')) bare_lf = 1;
        CHECK(!bare_lf, "no bare LF in the delivered file");
        char *subj = header_of(msg, len, "Subject");
        char *dec = subj ? rfc2047_decode(subj) : NULL;
        char want[128];
        snprintf(want, sizeof want, "Gr\xc3\xbc\xc3\x9f" "e MIME %s", NONCE);
        CHECK(dec && strcmp(dec, want) == 0, "the MIME subject: %s", dec ? dec : "(none)");
        free(subj);
        free(dec);
    }
    free(msg);
    char *b = wait_mail(bcc, NONCE, 20000, &len);
    CHECK(b != NULL && !ci_find(b, len, "\nBcc:"), "the Bcc recipient got the message, without a Bcc header");
    free(b);
    char *c = wait_mail(cc, NONCE, 20000, NULL);
    CHECK(c != NULL, "the Cc recipient got the message");
    free(c);

    /* An explicit envelope wins over the headers: only `other` gets it. */
    char req2[1024];
    snprintf(req2, sizeof req2, "{\"account\":\"" SENDER "\",\"envelope\":{\"from\":\"" SENDER "\",\"to\":[\"%s\"]}}",
             other);
    int before = mail_count(to);
    out = SENTINEL_STR;
    free(SEND_OK(mailoauth_smtp_send_mime(ctx, req2, (const uint8_t *)mime, n, &out), out, 1));
    char *o = wait_mail(other, NONCE, 20000, &len);
    CHECK(o != NULL, "the envelope recipient got the message");
    /* An explicit envelope sends the bytes as they are, Bcc header included;
     * but Postfix drops Bcc headers itself (message_drop_headers), so the
     * delivered copy cannot tell, and the from_headers check above proves
     * only that no Bcc reached the mailbox, not who removed it. */
    if (o && ci_find(o, len, "\nBcc:") == NULL)
        NOTE("the server dropped the Bcc header (Postfix message_drop_headers): Bcc removal by the library is not "
             "observable here");
    free(o);
    sleep_ms(300);
    CHECK(mail_count(to) == before, "the header To got nothing from the explicit envelope");
}

static void test_forward(mailoauth_context *ctx)
{
    if (!CHECK(g_delivered != NULL, "a delivered message to forward (test_send)")) return;
    char to[128], req[1024];
    rcpt(to, sizeof to, "fwd");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"to\":[\"%s\"],\"mode\":\"attachment\","
             "\"comment\":\"Siehe unten \xe2\x80\x93 weitergeleitet %s-fwd\"}",
             to, NONCE);
    char *out = SENTINEL_STR;
    free(SEND_OK(mailoauth_smtp_forward(ctx, req, (const uint8_t *)g_delivered, (int64_t)g_delivered_len, &out), out, 1));
    char needle[64];
    snprintf(needle, sizeof needle, "%s-fwd", NONCE);
    size_t len = 0;
    char *msg = wait_mail(to, NONCE, 20000, &len);
    if (!CHECK(msg != NULL, "the forward to %s arrived", to)) return;
    char *from = header_of(msg, len, "From");
    CHECK(from && strstr(from, SENDER), "the forward is from the mailbox: %s", from ? from : "");
    free(from);
    char *subj = header_of(msg, len, "Subject");
    char *dec = subj ? rfc2047_decode(subj) : NULL;
    CHECK(dec && strstr(dec, SUBJECT) && strstr(dec, NONCE), "the forward's subject names the original: %s",
          dec ? dec : "(none)");
    free(subj);
    free(dec);
    const char *part = ci_find(msg, len, "Content-Type: message/rfc822");
    if (CHECK(part != NULL, "the original is a message/rfc822 part")) {
        size_t rest = len - (size_t)(part - msg);
        const char *hend = NULL;
        for (size_t k = 0; k + 4 <= rest; k++)
            if (memcmp(part + k, "\r\n\r\n", 4) == 0) { hend = part + k; break; }
        size_t hl = hend ? (size_t)(hend - part) : 0;
        CHECK(hend && !ci_find(part, hl, "base64"), "the message/rfc822 part is not base64");
        /* the original's own Message-ID and its attachment's base64 are inside, unchanged */
        char *omid = header_of(g_delivered, g_delivered_len, "Message-ID");
        CHECK(omid && mem_find(part, rest, omid, strlen(omid)), "the original's Message-ID is inside the part");
        free(omid);
    }
    size_t n = 0;
    unsigned char *text = part_body(msg, len, "Content-Type: text/plain", 0, &n);
    CHECK(text && strstr((char *)text, "weitergeleitet") != NULL, "the comment is the first text part: %s",
          text ? (char *)text : "(none)");
    free(text);
    free(msg);
}

/* ========================================================== NULL tests */

static void test_null_arguments(mailoauth_context *ctx, const char *dir)
{
    const char *send_req = "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"null@discard.test\"],\"text\":\"x\"}}";
    const char *mime_req = "{\"account\":\"" SENDER "\",\"envelope\":\"from_headers\"}";
    const char *fwd_req = "{\"account\":\"" SENDER "\",\"to\":[\"null@discard.test\"]}";
    const uint8_t bytes[] = "From: " SENDER "\r\nTo: null@discard.test\r\n\r\nx\r\n";
    int64_t blen = (int64_t)sizeof bytes - 1;
    char *out = SENTINEL_STR;

    EXPECT_ERR(mailoauth_smtp_send(NULL, send_req, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_smtp_send(ctx, NULL, &out), MAILOAUTH_INVALID_ARGUMENT, "request_json");
    EXPECT_ERR(mailoauth_smtp_send(ctx, send_req, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");

    EXPECT_ERR(mailoauth_smtp_send_mime(NULL, mime_req, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, NULL, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "request_json");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, mime_req, NULL, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "mime");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, mime_req, bytes, blen, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");

    EXPECT_ERR(mailoauth_smtp_forward(NULL, fwd_req, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, NULL, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "request_json");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, fwd_req, NULL, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "original");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, fwd_req, bytes, blen, NULL), MAILOAUTH_INVALID_ARGUMENT, "out_json");

    /* NULL with length 0 is an empty buffer, not a NULL error: the empty
     * message then fails on its own terms (no headers to take an envelope
     * from; nothing to forward). */
    int32_t rc = mailoauth_smtp_send_mime(ctx, mime_req, NULL, 0, &out);
    lasterr e;
    le_get(&e);
    CHECK(rc != MAILOAUTH_OK && !strstr(e.message, "'mime' is NULL"), "send_mime(NULL, 0) is not a NULL error: %d %s",
          rc, e.json ? e.json : "");
    le_free(&e);
    rc = mailoauth_smtp_forward(ctx, fwd_req, NULL, 0, &out);
    le_get(&e);
    CHECK(rc == MAILOAUTH_OK || !strstr(e.message, "'original' is NULL"), "forward(NULL, 0) is not a NULL error: %s",
          e.json ? e.json : "");
    if (rc == MAILOAUTH_OK) {
        NOTE("forward of an empty original (NULL, 0) was sent: %s", out);
        mailoauth_string_free(out);
        out = SENTINEL_STR;
    } else {
        NOTE("forward of an empty original (NULL, 0): %d %s", rc, e.message);
    }
    le_free(&e);
    CHECK(out == SENTINEL_STR, "no output written by a failed call");

    /* a freed context */
    mailoauth_context *stale = smtp_ctx(dir, "");
    mailoauth_context_free(stale);
    if (stale) {
        EXPECT_ERR(mailoauth_smtp_send(stale, send_req, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
        EXPECT_ERR(mailoauth_smtp_send_mime(stale, mime_req, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
        EXPECT_ERR(mailoauth_smtp_forward(stale, fwd_req, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "ctx");
    }
    CHECK(out == SENTINEL_STR, "out_json untouched by every failed call");
}

/* ===================================================== bad input tests */

static const char *BAD_UTF8[] = {
    "{\"account\":\"\xff\"}",
    "{\"account\":\"carol\xc0\xaf@contoso.test\"}", /* overlong '/' */
    "{\"account\":\"\xed\xa0\x80@contoso.test\"}",  /* UTF-16 surrogate */
    "{\"account\":\"carol@contoso.test\xe2\x82\"}", /* truncated */
};
#define NBAD_UTF8 (sizeof BAD_UTF8 / sizeof BAD_UTF8[0])

static void test_bad_input(mailoauth_context *ctx, const char *dir)
{
    char *out = SENTINEL_STR;
    const uint8_t bytes[] = "From: " SENDER "\r\nTo: x@contoso.test\r\nSubject: x\r\n\r\nx\r\n";
    int64_t blen = (int64_t)sizeof bytes - 1;
    char victim[128], req[2048];
    rcpt(victim, sizeof victim, "bad");

    for (size_t k = 0; k < NBAD_UTF8; k++) {
        EXPECT_ERR(mailoauth_smtp_send(ctx, BAD_UTF8[k], &out), MAILOAUTH_INVALID_ARGUMENT, "request_json");
        EXPECT_ERR(mailoauth_smtp_send_mime(ctx, BAD_UTF8[k], bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT,
                   "request_json");
        EXPECT_ERR(mailoauth_smtp_forward(ctx, BAD_UTF8[k], bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT,
                   "request_json");
    }
    /* malformed JSON, not an object, unknown keys */
    EXPECT_ERR(mailoauth_smtp_send(ctx, "{\"account\":", &out), MAILOAUTH_INVALID_CONFIG, "JSON");
    EXPECT_ERR(mailoauth_smtp_send(ctx, "", &out), MAILOAUTH_INVALID_CONFIG, "JSON");
    EXPECT_ERR(mailoauth_smtp_send(ctx, "[1]", &out), MAILOAUTH_INVALID_CONFIG, "object");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, "{,}", bytes, blen, &out), MAILOAUTH_INVALID_CONFIG, "JSON");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, "nope", bytes, blen, &out), MAILOAUTH_INVALID_CONFIG, "JSON");
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"messgae\":{\"to\":[\"%s\"]}}", victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_CONFIG, "messgae");
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"sbuject\":\"x\"}}", victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_CONFIG, "message.sbuject");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"attachments\":[{\"name\":\"a\",\"pth\":\"/x\"}]}}",
             victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_CONFIG, "pth");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, "{\"account\":\"" SENDER "\",\"envelope\":\"from_headers\",\"x\":1}",
                                        bytes, blen, &out),
               MAILOAUTH_INVALID_CONFIG, "'x'");
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"to\":[\"%s\"],\"mode\":\"attachment\",\"commnet\":\"\"}",
             victim);
    EXPECT_ERR(mailoauth_smtp_forward(ctx, req, bytes, blen, &out), MAILOAUTH_INVALID_CONFIG, "commnet");
    /* a missing account */
    snprintf(req, sizeof req, "{\"message\":{\"to\":[\"%s\"]}}", victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_CONFIG, "account");

    /* no recipients */
    EXPECT_ERR(mailoauth_smtp_send(ctx, "{\"account\":\"" SENDER "\",\"message\":{\"to\":[],\"text\":\"x\"}}", &out),
               MAILOAUTH_INVALID_CONFIG, "recipients");
    EXPECT_ERR(mailoauth_smtp_send(ctx, "{\"account\":\"" SENDER "\",\"message\":{\"text\":\"x\"}}", &out),
               MAILOAUTH_INVALID_CONFIG, "recipients");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, "{\"account\":\"" SENDER "\",\"to\":[]}", bytes, blen, &out),
               MAILOAUTH_INVALID_CONFIG, NULL);
    const uint8_t no_rcpt[] = "From: " SENDER "\r\nSubject: x\r\n\r\nx\r\n";
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, "{\"account\":\"" SENDER "\",\"envelope\":\"from_headers\"}", no_rcpt,
                                        (int64_t)sizeof no_rcpt - 1, &out),
               MAILOAUTH_INVALID_CONFIG, "To, Cc or Bcc");
    /* send_mime: the envelope is required; unknown forward mode */
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, "{\"account\":\"" SENDER "\"}", bytes, blen, &out),
               MAILOAUTH_INVALID_CONFIG, "envelope");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, "{\"account\":\"" SENDER "\",\"envelope\":\"from_body\"}", bytes, blen,
                                        &out),
               MAILOAUTH_INVALID_CONFIG, "envelope");
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"to\":[\"%s\"],\"mode\":\"bounce\"}", victim);
    EXPECT_ERR(mailoauth_smtp_forward(ctx, req, bytes, blen, &out), MAILOAUTH_INVALID_CONFIG, "mode");

    /* CR/LF in an address or a header value (JSON escapes) */
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\\r\\nRCPT TO:<evil@contoso.test>\"],\"text\":\"x\"}}",
             victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_ARGUMENT, "message.to[0]");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"cc\":[\"a@contoso.test\\n\"],\"text\":\"x\"}}",
             victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_ARGUMENT, "message.cc[0]");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"subject\":\"hi\\r\\nBcc: evil@contoso.test\","
             "\"text\":\"x\"}}",
             victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_ARGUMENT, "message.subject");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"from\":\"" SENDER "\\r\\n\",\"to\":[\"%s\"],\"text\":\"x\"}}",
             victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_ARGUMENT, "message.from");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"envelope\":{\"from\":\"" SENDER "\",\"to\":[\"%s\\r\\nDATA\"]}}", victim);
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, req, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "envelope.to[0]");
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"to\":[\"%s\\n\"]}", victim);
    EXPECT_ERR(mailoauth_smtp_forward(ctx, req, bytes, blen, &out), MAILOAUTH_INVALID_ARGUMENT, "to[0]");
    EXPECT_ERR(mailoauth_smtp_send(ctx, "{\"account\":\"carol@contoso.test\\r\\n\",\"message\":{\"to\":[\"a@contoso.test\"]}}",
                                   &out),
               MAILOAUTH_INVALID_ARGUMENT, "account");

    /* an attachment path that cannot be read: named */
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/fehlt-%s.pdf", dir, NONCE);
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"text\":\"x\","
             "\"attachments\":[{\"name\":\"a.pdf\",\"path\":\"%s\"}]}}",
             victim, missing);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_INVALID_ARGUMENT, "fehlt-");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"text\":\"x\","
             "\"attachments\":[{\"name\":\"a.pdf\",\"base64\":\"%%%%not base64\"}]}}",
             victim);
    int32_t rc = mailoauth_smtp_send(ctx, req, &out);
    CHECK(rc == MAILOAUTH_INVALID_ARGUMENT || rc == MAILOAUTH_INVALID_CONFIG, "bad base64 attachment: %d", rc);

    /* lengths */
    const char *mime_req = "{\"account\":\"" SENDER "\",\"envelope\":\"from_headers\"}";
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"to\":[\"%s\"]}", victim);
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, mime_req, bytes, -1, &out), MAILOAUTH_INVALID_ARGUMENT, "mime_len");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, mime_req, bytes, INT64_MIN, &out), MAILOAUTH_INVALID_ARGUMENT, "mime_len");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, req, bytes, -5, &out), MAILOAUTH_INVALID_ARGUMENT, "original_len");
    /* far past the buffer and every limit: refused before a byte is read
     * (ASan/valgrind would see an over-read) */
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, mime_req, bytes, INT64_MAX, &out), MAILOAUTH_TOO_LARGE,
               "max_message_bytes");
    EXPECT_ERR(mailoauth_smtp_forward(ctx, req, bytes, INT64_MAX, &out), MAILOAUTH_TOO_LARGE, "max_message_bytes");
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, mime_req, bytes, (int64_t)157286400 + 1, &out), MAILOAUTH_TOO_LARGE,
               "max_message_bytes");

    /* an untrusted server override: refused before connecting */
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"server\":{\"host\":\"smtp.evil.test\",\"port\":587,\"security\":\"starttls\"},"
             "\"message\":{\"to\":[\"%s\"],\"text\":\"x\"}}",
             victim);
    EXPECT_ERR(mailoauth_smtp_send(ctx, req, &out), MAILOAUTH_UNTRUSTED_HOST, "smtp.evil.test");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"server\":{\"host\":\"127.0.0.99\",\"port\":%d,\"security\":\"starttls\"},"
             "\"envelope\":\"from_headers\"}",
             STACK.smtp_starttls);
    EXPECT_ERR(mailoauth_smtp_send_mime(ctx, req, bytes, blen, &out), MAILOAUTH_UNTRUSTED_HOST, NULL);
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"server\":{\"host\":\"smtp.evil.test\",\"port\":465,\"security\":\"tls\"},"
             "\"to\":[\"%s\"]}",
             victim);
    EXPECT_ERR(mailoauth_smtp_forward(ctx, req, bytes, blen, &out), MAILOAUTH_UNTRUSTED_HOST, NULL);

    CHECK(out == SENTINEL_STR, "out_json untouched by every failed call");
    sleep_ms(300);
    CHECK(mail_count(victim) == 0, "nothing was delivered by a refused request");
}

/* A context with a small message limit and one in German. */
static void test_limits_and_language(const char *dir)
{
    mailoauth_context *small = smtp_ctx(dir, ",\"limits\":{\"max_message_bytes\":1024}");
    char *out = SENTINEL_STR;
    char victim[128], req[1024];
    rcpt(victim, sizeof victim, "small");
    if (small) {
        uint8_t *big = malloc(2048);
        int n = snprintf((char *)big, 2048, "From: " SENDER "\r\nTo: %s\r\nSubject: big\r\n\r\n", victim);
        memset(big + n, 'x', 2048 - (size_t)n);
        const char *mime_req = "{\"account\":\"" SENDER "\",\"envelope\":\"from_headers\"}";
        EXPECT_ERR(mailoauth_smtp_send_mime(small, mime_req, big, 2048, &out), MAILOAUTH_TOO_LARGE, "max_message_bytes");
        EXPECT_ERR(mailoauth_smtp_send_mime(small, mime_req, big, 1025, &out), MAILOAUTH_TOO_LARGE, "1024");
        snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"to\":[\"%s\"]}", victim);
        EXPECT_ERR(mailoauth_smtp_forward(small, req, big, 2048, &out), MAILOAUTH_TOO_LARGE, "max_message_bytes");
        /* a composed message over the limit (a long text) */
        char *long_req = malloc(4096);
        int m = snprintf(long_req, 4096, "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"text\":\"", victim);
        memset(long_req + m, 'y', 2000);
        snprintf(long_req + m + 2000, 4096 - (size_t)m - 2000, "\"}}");
        EXPECT_ERR(mailoauth_smtp_send(small, long_req, &out), MAILOAUTH_TOO_LARGE, "max_message_bytes");
        free(long_req);
        free(big);
        mailoauth_context_free(small);
    }
    mailoauth_context *de = smtp_ctx(dir, ",\"language\":\"de\"");
    if (de) {
        EXPECT_ERR(mailoauth_smtp_send(de, "{\"account\":\"" SENDER "\",\"messgae\":{}}", &out), MAILOAUTH_INVALID_CONFIG,
                   "unbekannter Schl\xc3\xbcssel");
        EXPECT_ERR(mailoauth_smtp_send(de, NULL, &out), MAILOAUTH_INVALID_ARGUMENT, "ist NULL");
        EXPECT_ERR(mailoauth_smtp_send_mime(de, "{}", NULL, 3, &out), MAILOAUTH_INVALID_ARGUMENT, "ist NULL");
        mailoauth_context_free(de);
    }
    CHECK(out == SENTINEL_STR, "out_json untouched");
    CHECK(mail_count(victim) == 0, "nothing was delivered");
}

/* ====================================================== SEND_REJECTED */

static void test_send_rejected(mailoauth_context *ctx)
{
    /* Postfix refuses a bare numeric domain at RCPT ("501 5.1.3 Bad
     * recipient address syntax"); the library's address check lets it pass. */
    char good[128], req[1024];
    rcpt(good, sizeof good, "rej-good");
    snprintf(req, sizeof req,
             "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\",\"nobody@1.2.3.4\"],\"subject\":\"rej %s\","
             "\"text\":\"x\"}}",
             good, NONCE);
    char *out = SENTINEL_STR;
    int32_t rc = mailoauth_smtp_send(ctx, req, &out);
    if (rc == MAILOAUTH_OK) {
        NOTE("Postfix accepted nobody@1.2.3.4: no SEND_REJECTED case on this stack (%s)", out);
        mailoauth_string_free(out);
        return;
    }
    lasterr e;
    le_get(&e);
    EXPECT_ERR(rc, MAILOAUTH_SEND_REJECTED, "nobody@1.2.3.4");
    const jval *rej = jget(e.root, "rejected");
    CHECK(rej && rej->t == J_ARR && rej->count == 1 && rej->items[0]->t == J_STR &&
              strcmp(rej->items[0]->s, "nobody@1.2.3.4") == 0,
          "last error 'rejected' lists the refused address only: %s", e.json ? e.json : "");
    const char *reply = jstr(e.root, "server_reply");
    CHECK(reply && strncmp(reply, "5", 1) == 0, "last error has the server's reply: %s", e.json ? e.json : "");
    le_free(&e);
    CHECK(out == SENTINEL_STR, "out_json untouched");
    sleep_ms(500);
    CHECK(mail_count(good) == 0, "nothing was sent: the accepted recipient got nothing");

    /* The connection (or the pool) is fine afterwards. */
    snprintf(req, sizeof req, "{\"account\":\"" SENDER "\",\"message\":{\"to\":[\"%s\"],\"subject\":\"after %s\",\"text\":\"x\"}}",
             good, NONCE);
    free(SEND_OK(mailoauth_smtp_send(ctx, req, &out), out, 1));
}

/* -------------------------------------------------------------------- main */

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
    CHECK(!STACK.up || (STACK.maildir[0] && STACK.smtp_host[0] && STACK.smtp_starttls && STACK.smtp_tls && STACK.ca_file[0]),
          "the stack file names maildir, smtp.host/starttls/tls and ca_file");
    idp_reset();

    char *dir = make_temp_dir();
    CHECK(dir != NULL, "mkdtemp");
    mailoauth_context *ctx = dir ? smtp_ctx(dir, "") : NULL;
    if (ctx) {
        test_null_arguments(ctx, dir);
        test_bad_input(ctx, dir);
        test_limits_and_language(dir);
        if (STACK.up && CONSENT(ctx, SENDER)) {
            test_send(ctx, dir);
            test_send_implicit_tls(ctx);
            test_send_mime(ctx);
            test_forward(ctx);
            test_send_rejected(ctx);
        }
    }
    mailoauth_context_free(ctx);
    free(g_delivered);
    if (dir) {
        rm_dir(dir);
        free(dir);
    }
    if (STACK.up) idp_admin("/admin/reset", "{}", NULL);
    return tu_summary();
}
