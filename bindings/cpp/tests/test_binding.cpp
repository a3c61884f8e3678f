// bindings/cpp/tests/test_binding.cpp: the C++ wrapper against the real
// library and the local stack (tests/stack: the identity imitation with
// auto-consent, Postfix and Dovecot).
//
// - consent through context::consent (the browser played over HTTP), tokens
//   as secret_string, account_list / account_remove;
// - the consent helper's timeout cancels the operation: TIMEOUT thrown, the
//   op's state "cancelled", its loopback listener closed; destroying or
//   move-assigning over a running op cancels it too;
// - errors carry code, message, hint, provider code, server reply and the
//   refused recipients (revoked grant → AADSTS50173, SEND_REJECTED);
// - SMTP send / send_mime / forward, the messages read back over IMAP;
// - mailbox open / poll / fetch / fetch_to_file / ack / wait / list_folders /
//   cancel (from another thread) over IMAP and POP3 with seeded messages;
//   a destroyed or moved-over mailbox releases its lock (reopen not BUSY);
// - the logger sees activity and never the token; the host store through
//   std::function callbacks, kept alive for a mailbox that outlives its
//   context (ASan would see a call into freed callbacks);
// - the account test (mailoauth_account_test_begin): every step OK, a
//   failed step inside the result, bad requests.
// ASan's leak check at exit covers "RAII frees everything".
// Prints one line per failing check and "N passed, N failed".
#include "testutil.hpp"
#include "alloc_audit.hpp"

#include <map>

using tu::value;
namespace mo = mailoauth;
namespace json = mailoauth::json;
using namespace std::chrono_literals;

namespace {

const std::string ALICE = "alice@contoso.test";
const std::string BOB = "bob@contoso.test";
const std::string CAROL = "carol@contoso.test";

/// Polls until pred(list) holds, waiting for new mail in between; at most
/// `rounds` polls. Returns the last list.
template <typename Pred>
std::vector<mo::message_summary> poll_until(const mo::mailbox &mb, Pred pred, int rounds = 120)
{
    std::vector<mo::message_summary> list;
    for (int r = 0; r < rounds; ++r) {
        list = mb.poll(100);
        if (pred(list)) return list;
        // wait returns at once while unacknowledged messages are there
        if (mb.wait(2s)) std::this_thread::sleep_for(250ms);
    }
    return list;
}

const mo::message_summary *by_message_id(const std::vector<mo::message_summary> &list, const std::string &mid)
{
    for (const auto &m : list)
        if (m.message_id == mid) return &m;
    return nullptr;
}

bool contains(const std::vector<uint8_t> &bytes, const std::string &needle)
{
    return std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end()) != bytes.end();
}

// ------------------------------------------------------ consent, tokens

void test_consent_and_tokens(const mo::context &ctx)
{
    CHECK(tu::consent(ctx, ALICE), "alice consents");
    CHECK(tu::consent(ctx, BOB), "bob consents");
    CHECK(tu::consent(ctx, CAROL), "carol consents");

    try {
        mo::secret_string t = ctx.token(ALICE, "smtp");
        CHECK(t.size() >= 100, "a token of plausible length: ", t.size());
        mo::secret_string forced = ctx.token(ALICE, "smtp imap", true);
        CHECK(!forced.empty() && forced.view() != t.view(), "a forced refresh gives a new token");
        const value list = ctx.account_list();
        int ok = 0;
        for (const value &a : list.items())
            if (a["state"].as_string() == "ok") ++ok;
        CHECK(list.size() == 3 && ok == 3, "three accounts in state ok: ", list.dump());
        CHECK(list.dump().find(std::string(t.view())) == std::string::npos, "account_list holds no token");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }
    EXPECT_ERROR(ctx.token("nobody@contoso.test"), MAILOAUTH_CONSENT_REQUIRED, nullptr);
    EXPECT_ERROR(ctx.token(ALICE, "smtp nntp"), MAILOAUTH_INVALID_ARGUMENT, nullptr);
    EXPECT_ERROR(ctx.consent_begin(json::object({{"account", ALICE}, {"flow", "carrier pigeon"}})),
                 MAILOAUTH_INVALID_ARGUMENT, "flow");
    EXPECT_ERROR(ctx.consent_begin(json::object({{"acount", ALICE}})), MAILOAUTH_INVALID_CONFIG, "acount");
}

// One context from many threads: each thread's error is its own (the
// wrapper reads the last error on the failing thread).
void test_threads(const mo::context &ctx)
{
    constexpr int N = 8, ROUNDS = 20;
    std::atomic<int> ok{0}, bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < N; ++t) {
        threads.emplace_back([&, t] {
            const std::string nobody = "nobody" + std::to_string(t) + "@contoso.test";
            for (int r = 0; r < ROUNDS; ++r) {
                try {
                    if ((t + r) % 2 == 0) {
                        mo::secret_string tok = ctx.token(ALICE, "smtp");
                        if (tok.empty()) ++bad;
                        else ++ok;
                    } else {
                        ctx.token(nobody, "smtp");
                        ++bad; // must have thrown
                    }
                } catch (const mo::error &e) {
                    if (e.code() == MAILOAUTH_CONSENT_REQUIRED && e.message().find(nobody) != std::string::npos) ++ok;
                    else ++bad;
                }
            }
        });
    }
    for (auto &th : threads) th.join();
    CHECK(ok.load() == N * ROUNDS && bad.load() == 0, "threads: ", ok.load(), " ok, ", bad.load(),
          " wrong (an error naming another thread's account, or none)");
}

void test_logger(const mo::context &ctx)
{
    std::mutex m;
    std::vector<std::string> lines;
    mo::set_logger(5, [&](int level, const std::string &msg) {
        std::lock_guard<std::mutex> hold(m);
        lines.push_back(std::to_string(level) + " " + msg);
    });
    std::string token;
    try {
        mo::secret_string t = ctx.token(ALICE, "", true);
        token.assign(t.view());
    } catch (const mo::error &e) {
        CHECK(false, e.what());
    }
    mo::clear_logger();
    std::lock_guard<std::mutex> hold(m);
    CHECK(!lines.empty(), "a forced refresh logs something");
    bool leaked = false;
    for (const auto &l : lines)
        leaked = leaked || (!token.empty() && l.find(token.substr(0, 24)) != std::string::npos);
    CHECK(!leaked, "no log line holds the token");
}

// ------------------------------------------- consent helper: timeout

bool port_open(int port)
{
    int fd = tu::tcp_connect(port);
    if (fd < 0) return false;
    close(fd);
    return true;
}

/// True once the port refuses connections (checked up to 50 times).
bool port_closes(int port)
{
    for (int k = 0; k < 50; ++k) {
        if (!port_open(port)) return true;
        std::this_thread::sleep_for(100ms);
    }
    return false;
}

/// The loopback port of a waiting browser consent (0 if unknown).
int listener_port(const mo::op &o)
{
    for (int k = 0; k < 100; ++k) {
        const value info = o.info();
        if (info.find("authorize_url") != nullptr) return tu::redirect_port(info.string_or("authorize_url"));
        o.wait(50ms);
    }
    return 0;
}

void test_consent_timeout(const mo::context &ctx)
{
    tu::idp_auto_consent(false); // nobody clicks: the consent waits for the user
    const value req = json::object({{"account", ALICE}, {"flow", "browser"}, {"timeout_s", 120}});

    // op::wait_or_cancel: TIMEOUT, the op cancelled, its listener closed.
    try {
        mo::op o = ctx.consent_begin(req);
        const int port = listener_port(o);
        CHECK(port > 0 && port_open(port), "a waiting browser consent listens on loopback (port ", port, ")");
        CHECK(!o.wait(0ms), "still pending");
        EXPECT_ERROR(o.wait_or_cancel(300ms), MAILOAUTH_TIMEOUT, "cancelled");
        CHECK(o.info()["state"].as_string() == "cancelled", "state after the timeout: ", o.info_json());
        EXPECT_ERROR(o.result(), MAILOAUTH_CANCELLED, nullptr);
        CHECK(port > 0 && port_closes(port), "the loopback listener closed after the timeout");
    } catch (const mo::error &e) {
        CHECK(false, e.what());
    }

    // context::consent: the same through the blocking helper; on_waiting sees the URL.
    std::string url;
    EXPECT_ERROR(ctx.consent(req, 400ms, [&](const value &info) { url = info.string_or("authorize_url"); }),
                 MAILOAUTH_TIMEOUT, nullptr);
    const int port = tu::redirect_port(url);
    CHECK(port > 0, "on_waiting received the authorize_url: ", url);
    CHECK(port > 0 && port_closes(port), "the helper's consent was cancelled (listener closed)");

    // An op destroyed while running is cancelled; so is one moved over.
    try {
        int p1 = 0, p2 = 0;
        {
            mo::op a = ctx.consent_begin(req);
            p1 = listener_port(a);
            mo::op b = ctx.consent_begin(req);
            p2 = listener_port(b);
            CHECK(p1 > 0 && p2 > 0 && p1 != p2 && port_open(p1) && port_open(p2), "two waiting consents");
            a = std::move(b); // the old a is freed: cancelled
            CHECK(!b && a, "moved");
            CHECK(port_closes(p1), "move-assigning over a running op cancelled it");
            CHECK(port_open(p2), "the moved op still runs");
            CHECK(!a.wait(0ms), "the moved op is still pending");
        }
        CHECK(port_closes(p2), "destroying a running op cancelled it");
    } catch (const mo::error &e) {
        CHECK(false, e.what());
    }

    // cancel() from another thread while wait() blocks: CANCELLED.
    try {
        mo::op o = ctx.consent_begin(req);
        std::atomic<int> code{-1};
        std::thread waiter([&] {
            try {
                o.wait(60s);
                code = 0;
            } catch (const mo::error &e) {
                code = e.code();
            }
        });
        while (code.load() == -1) {
            o.cancel();
            std::this_thread::sleep_for(50ms);
        }
        waiter.join();
        CHECK(code.load() == MAILOAUTH_CANCELLED, "a blocked wait ends with CANCELLED: ", code.load());
    } catch (const mo::error &e) {
        CHECK(false, e.what());
    }
    tu::idp_auto_consent(true);
}

// ------------------------------------------------- errors with details

void test_provider_error(const mo::context &ctx)
{
    // A revoked grant: CONSENT_REQUIRED with the provider's code.
    CHECK(tu::idp_admin("/admin/revoke_refresh_tokens", "{\"user\":\"" + CAROL + "\"}").status == 200, "revoke");
    const mo::error e = EXPECT_ERROR(ctx.token(CAROL, "smtp", true), MAILOAUTH_CONSENT_REQUIRED, nullptr);
    CHECK(e.provider_code() == "AADSTS50173", "provider_code: ", e.json());
    CHECK(e.provider_error() == "invalid_grant", "provider_error: ", e.json());
    CHECK(std::string(e.what()).find("CONSENT_REQUIRED (200)") == 0, e.what());
    // A fresh consent repairs it.
    CHECK(tu::consent(ctx, CAROL), "carol consents again");
    EXPECT_OK(ctx.token(CAROL, "smtp"));
}

// Sign-out and the cache's repair switch.
void test_account_remove_and_reset(const mo::context &ctx)
{
    EXPECT_OK(ctx.cache_reset()); // a readable cache: the grants stay
    EXPECT_OK(ctx.token(CAROL, "smtp"));
    EXPECT_OK(ctx.account_remove(CAROL));
    EXPECT_ERROR(ctx.token(CAROL, "smtp"), MAILOAUTH_CONSENT_REQUIRED, nullptr);
    EXPECT_ERROR(ctx.account_remove(CAROL), MAILOAUTH_NOT_FOUND, nullptr);
    bool listed = false;
    try {
        for (const value &a : ctx.account_list().items()) listed = listed || a.string_or("account") == CAROL;
    } catch (const mo::error &e) {
        CHECK(false, e.what());
    }
    CHECK(!listed, "a removed account is not listed");
}

// ---------------------------------------------------------------- SMTP

struct sent {
    std::string message_id, subject;
};

sent test_smtp(const mo::context &ctx)
{
    sent out;
    const std::string subject = "C++ \"quoted\" \\ backslash Grüße 😀 " + tu::nonce();
    const value req = json::object(
        {{"account", ALICE},
         {"message", json::object({{"to", json::array({CAROL})},
                                   {"subject", subject},
                                   {"text", "Zeile 1\nLine 2 with \"quotes\" and \\ and \x01 control\n"},
                                   {"html", "<p>Grüße &amp; <b>bold</b></p>"},
                                   {"attachments", json::array({json::object({{"name", "a.txt"},
                                                                              {"content_type", "text/plain"},
                                                                              {"base64", "aGVsbG8="}})})}})}});
    try {
        const mo::send_result r = ctx.smtp_send(req);
        CHECK(r.message_id.size() > 2 && r.message_id.front() == '<' && r.message_id.back() == '>', r.message_id);
        CHECK(r.accepted == std::vector<std::string>{CAROL}, "accepted carol");
        CHECK(r.server_reply.rfind("250", 0) == 0, r.server_reply);
        out = sent{r.message_id, subject};
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }

    // send_mime with the envelope from the headers
    const std::string mime_id = "<cpp-mime-" + tu::nonce() + "@contoso.test>";
    const std::string mime = "From: " + ALICE + "\r\nTo: " + CAROL + "\r\nSubject: mime " + tu::nonce() +
                             "\r\nMessage-ID: " + mime_id + "\r\n\r\nbody\r\n";
    try {
        const mo::send_result r = ctx.smtp_send_mime(json::object({{"account", ALICE}, {"envelope", "from_headers"}}),
                                                     std::vector<uint8_t>(mime.begin(), mime.end()));
        CHECK(r.accepted == std::vector<std::string>{CAROL}, "mime accepted carol");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }

    // A refused recipient: SEND_REJECTED, the address in rejected(), the reply.
    const mo::error rej = EXPECT_ERROR(
        ctx.smtp_send(json::object({{"account", ALICE},
                                    {"message", json::object({{"to", json::array({CAROL, "nobody@1.2.3.4"})},
                                                              {"subject", "rej"},
                                                              {"text", "x"}})}})),
        MAILOAUTH_SEND_REJECTED, "nobody@1.2.3.4");
    CHECK(rej.rejected() == std::vector<std::string>{"nobody@1.2.3.4"}, "rejected(): ", rej.json());
    CHECK(!rej.server_reply().empty() && rej.server_reply()[0] == '5', "server_reply(): ", rej.json());

    // Bad input: caught by the library's strict request parser.
    EXPECT_ERROR(ctx.smtp_send(json::object({{"account", ALICE}, {"mesage", json::object()}})), MAILOAUTH_INVALID_CONFIG,
                 "mesage");
    EXPECT_ERROR(ctx.smtp_send(json::object(
                     {{"account", ALICE},
                      {"message", json::object({{"to", json::array({CAROL})}, {"subject", "a\r\nBcc: x@y.z"}})}})),
                 MAILOAUTH_INVALID_ARGUMENT, "subject");
    EXPECT_ERROR(ctx.smtp_send_mime(json::object({{"account", ALICE}}), std::vector<uint8_t>{'x'}),
                 MAILOAUTH_INVALID_CONFIG, "envelope");
    return out;
}

// ---------------------------------------------------- mailbox: carol

/// carol's INBOX opened with start: new before the sends, so that only
/// this run's mail is polled (a shared stack's mailboxes hold older mail).
void test_read_back_and_forward(const mo::context &ctx, const mo::mailbox &mb, const sent &s)
{
    if (s.message_id.empty() || !mb) return;
    try {
        auto list = poll_until(mb, [&](const auto &l) { return by_message_id(l, s.message_id) != nullptr; });
        const mo::message_summary *m = by_message_id(list, s.message_id);
        if (!CHECK(m != nullptr, "the sent message arrived in carol's INBOX")) return;
        CHECK(m->subject == s.subject, "the subject survived JSON, MIME and IMAP: '", m->subject, "' vs '", s.subject, "'");
        CHECK(m->from.find(ALICE) != std::string::npos, "from: ", m->from);
        const std::vector<uint8_t> bytes = mb.fetch(m->id);
        CHECK(static_cast<int64_t>(bytes.size()) == m->size, "fetched ", bytes.size(), " bytes, size ", m->size);
        CHECK(contains(bytes, s.message_id) && contains(bytes, "a.txt"), "the bytes are the message");

        mo::mailbox ma = ctx.open_mailbox(json::object({{"account", ALICE}, {"start", "new"}}));
        const mo::send_result f = ctx.smtp_forward(
            json::object({{"account", CAROL}, {"to", json::array({ALICE})}, {"mode", "attachment"}, {"comment", "FYI ✓"}}),
            bytes);
        CHECK(f.accepted == std::vector<std::string>{ALICE}, "forward accepted alice");
        EXPECT_OK(mb.ack(m->id, "delete"));
        list = mb.poll(100);
        CHECK(by_message_id(list, s.message_id) == nullptr, "an acknowledged message is not polled again");

        // The forward reached alice as a message/rfc822 attachment.
        auto al = poll_until(ma, [&](const auto &l) {
            for (const auto &x : l)
                if (x.subject.find(tu::nonce()) != std::string::npos && x.subject.find("C++") != std::string::npos)
                    return true;
            return false;
        });
        bool found = false;
        for (const auto &x : al)
            if (x.subject.find(tu::nonce()) != std::string::npos) {
                const auto fb = ma.fetch(x.id);
                found = found || (contains(fb, "message/rfc822") && contains(fb, s.message_id));
                ma.ack(x.id, "delete");
            }
        CHECK(found, "alice got the forward with the original attached");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }
}

// ------------------------------------------------------ mailbox: bob

void test_mailbox_imap(const mo::context &ctx, const tu::fs::path &dir)
{
    const value open_req =
        json::object({{"account", BOB}, {"protocol", "imap"}, {"start", "new"}, {"lock_timeout_ms", 5000}});
    try {
        mo::mailbox mb = ctx.open_mailbox(open_req);
        CHECK(mb.poll().empty(), "start: new polls nothing at first");
        CHECK(!mb.wait(300ms), "no new mail: wait says false (TIMEOUT)");

        // held: a second open is BUSY
        EXPECT_ERROR(ctx.open_mailbox(json::object({{"account", BOB}, {"lock_timeout_ms", 100}})), MAILOAUTH_BUSY, nullptr);

        const auto folders = mb.list_folders();
        bool inbox = false;
        for (const auto &f : folders) inbox = inbox || (f.name == "INBOX" && f.special == "inbox");
        CHECK(inbox, "list_folders has INBOX as inbox (", folders.size(), " folders)");

        tu::seed(BOB, 3, 21);
        CHECK(mb.wait(20s), "wait sees the seeded mail");
        const auto list = poll_until(mb, [](const auto &l) { return l.size() >= 3; });
        CHECK(list.size() == 3, "three seeded messages: ", list.size());
        const char *actions[] = {"keep", "seen", "delete"};
        for (std::size_t k = 0; k < list.size() && k < 3; ++k) {
            const auto &m = list[k];
            CHECK(!m.id.empty() && m.size > 0 && !m.subject.empty() && !m.date.empty() && !m.message_id.empty() &&
                      !m.to.empty(),
                  "entry ", k, " has every key");
            const auto bytes = mb.fetch(m.id);
            CHECK(static_cast<int64_t>(bytes.size()) == m.size, "fetch: ", bytes.size(), " bytes, size ", m.size);
            const tu::fs::path file = dir / ("msg" + std::to_string(k) + ".eml");
            mb.fetch_to_file(m.id, file.string());
            CHECK(tu::read_text(file) == std::string(bytes.begin(), bytes.end()), "fetch_to_file wrote the same bytes");
            mb.ack(m.id, actions[k]);
        }
        CHECK(mb.poll().empty(), "acknowledged messages are not polled again");

        // bad input
        EXPECT_ERROR(mb.ack("1:999999", "keep"), MAILOAUTH_NOT_FOUND, nullptr);
        EXPECT_ERROR(mb.fetch("1:999999"), MAILOAUTH_NOT_FOUND, nullptr);
        if (!list.empty()) {
            EXPECT_ERROR(mb.ack(list[0].id, "bogus"), MAILOAUTH_INVALID_ARGUMENT, nullptr);
            EXPECT_ERROR(mb.ack(list[0].id, "move:a\r\nb"), MAILOAUTH_INVALID_ARGUMENT, nullptr);
        }
        EXPECT_ERROR(mb.fetch(std::string("1:1\0x", 5)), MAILOAUTH_INVALID_ARGUMENT, "NUL");
        EXPECT_ERROR(mb.fetch_to_file("1:1", ""), MAILOAUTH_INVALID_ARGUMENT, nullptr);

        // cancel from another thread ends a long wait with CANCELLED
        std::atomic<int> code{-1};
        std::thread waiter([&] {
            try {
                code = mb.wait(60s) ? 0 : MAILOAUTH_TIMEOUT;
            } catch (const mo::error &e) {
                code = e.code();
            }
        });
        while (code.load() == -1) {
            mb.cancel();
            std::this_thread::sleep_for(50ms);
        }
        waiter.join();
        CHECK(code.load() == MAILOAUTH_CANCELLED, "mailbox::cancel ended wait with CANCELLED: ", code.load());
        CHECK(mb.poll().empty(), "the mailbox works after a cancel");

        // context::cancel reaches the mailbox's wait too
        code = -1;
        std::thread waiter2([&] {
            try {
                code = mb.wait(60s) ? 0 : MAILOAUTH_TIMEOUT;
            } catch (const mo::error &e) {
                code = e.code();
            }
        });
        while (code.load() == -1) {
            ctx.cancel();
            std::this_thread::sleep_for(50ms);
        }
        waiter2.join();
        CHECK(code.load() == MAILOAUTH_CANCELLED, "context::cancel ended wait with CANCELLED: ", code.load());
        CHECK(mb.poll().empty(), "the mailbox works after a context cancel");

        // moves: the handle travels, the moved-from one refuses
        mo::mailbox other(std::move(mb));
        CHECK(!mb && other, "moved");
        EXPECT_ERROR(mb.poll(), MAILOAUTH_INVALID_STATE, "moved-from");
        EXPECT_OK(other.poll());
        other = mo::mailbox(); // frees it: the lock goes
        EXPECT_OK(mo::mailbox again = ctx.open_mailbox(json::object({{"account", BOB}, {"lock_timeout_ms", 0}})));
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }
    // a mailbox destroyed at the end of a scope released its lock too
    EXPECT_OK(mo::mailbox again = ctx.open_mailbox(json::object({{"account", BOB}, {"lock_timeout_ms", 0}})));
    EXPECT_ERROR(ctx.open_mailbox(json::object({{"account", BOB}, {"colour", "red"}})), MAILOAUTH_INVALID_CONFIG,
                 "colour");
    EXPECT_ERROR(ctx.open_mailbox(json::object({{"account", BOB}, {"server", json::object({{"host", "imap.evil.example"}})}})),
                 MAILOAUTH_UNTRUSTED_HOST, "imap.evil.example");
}

void test_mailbox_pop3(const mo::context &ctx)
{
    try {
        mo::mailbox mb = ctx.open_mailbox(json::object({{"account", BOB}, {"protocol", "pop3"}, {"start", "new"}}));
        CHECK(mb.poll().empty(), "POP3 start: new polls nothing at first");
        EXPECT_ERROR(mb.list_folders(), MAILOAUTH_INVALID_STATE, nullptr);
        EXPECT_ERROR(mb.ack("x", "move:Archive"), MAILOAUTH_INVALID_ARGUMENT, nullptr);
        tu::seed(BOB, 2, 22);
        const auto list = poll_until(mb, [](const auto &l) { return l.size() >= 2; });
        CHECK(list.size() == 2, "two seeded messages over POP3: ", list.size());
        for (const auto &m : list) {
            CHECK(static_cast<int64_t>(mb.fetch(m.id).size()) == m.size, "POP3 fetch size");
            mb.ack(m.id, "delete");
        }
        CHECK(mb.poll().empty(), "POP3: acknowledged messages are gone");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }
}

// ------------------------------------------------------------ host store

struct memory_store {
    std::mutex m;
    std::map<std::string, std::vector<uint8_t>> blobs;
    int loads = 0, saves = 0, locks = 0, unlocks = 0;

    mo::store_callbacks callbacks()
    {
        mo::store_callbacks cb;
        cb.load = [this](const std::string &key) -> std::optional<std::vector<uint8_t>> {
            std::lock_guard<std::mutex> hold(m);
            ++loads;
            auto it = blobs.find(key);
            if (it == blobs.end()) return std::nullopt;
            return it->second;
        };
        cb.save = [this](const std::string &key, const std::vector<uint8_t> &data) {
            std::lock_guard<std::mutex> hold(m);
            ++saves;
            if (data.empty()) blobs.erase(key);
            else blobs[key] = data;
        };
        cb.lock = [this](const std::string &, bool lock, int32_t) {
            std::lock_guard<std::mutex> hold(m);
            ++(lock ? locks : unlocks);
            return true;
        };
        return cb;
    }
};

void test_host_store()
{
    memory_store store;
    std::vector<uint8_t> key(32);
    for (std::size_t k = 0; k < key.size(); ++k) key[k] = static_cast<uint8_t>(0x5A ^ (k * 7));
    tu::temp_dir dir;
    auto cfg = [&] {
        value c = tu::stack_config(dir.path);
        c.set("cache", json::object({{"protection", "key"}}));
        return c;
    };
    try {
        mo::context ctx(cfg());
        ctx.set_cache_key(key);
        ctx.set_store(store.callbacks());
        CHECK(tu::consent(ctx, BOB), "bob consents into the host store");
        {
            std::lock_guard<std::mutex> hold(store.m);
            CHECK(store.blobs.count("grant:" + BOB) == 1, "the grant is saved under grant:<account>");
            CHECK(store.saves > 0 && store.loads > 0, "loads ", store.loads, " saves ", store.saves);
        }
        // The poll state goes through the store too, under the store's lock while open.
        {
            mo::mailbox mb = ctx.open_mailbox(json::object({{"account", BOB}, {"start", "new"}, {"lock_timeout_ms", 5000}}));
            mb.poll();
            std::lock_guard<std::mutex> hold(store.m);
            CHECK(store.locks == store.unlocks + 1, "the open mailbox holds its lock: locks ", store.locks, " unlocks ",
                  store.unlocks);
        }
        {
            std::lock_guard<std::mutex> hold(store.m);
            bool poll_key = false;
            for (const auto &b : store.blobs) poll_key = poll_key || b.first.rfind("poll:" + BOB + "/imap/", 0) == 0;
            CHECK(poll_key, "the poll state is in the host store");
            CHECK(store.locks > 0 && store.locks == store.unlocks, "a destroyed mailbox unlocked: locks ", store.locks,
                  " unlocks ", store.unlocks);
        }
        EXPECT_ERROR(ctx.set_store(mo::store_callbacks{}), MAILOAUTH_INVALID_ARGUMENT, "load");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }

    // A mailbox that outlives its context: its calls answer INVALID_STATE,
    // destroying it afterwards is safe (the wrapper keeps the callbacks alive
    // for the handle; ASan would see a call into freed ones).
    try {
        mo::mailbox survivor;
        int locks_before = 0, unlocks_before = 0;
        {
            mo::context ctx(cfg());
            ctx.set_cache_key(key);
            ctx.set_store(store.callbacks());
            survivor = ctx.open_mailbox(json::object({{"account", BOB}, {"lock_timeout_ms", 5000}}));
            survivor.poll();
            std::lock_guard<std::mutex> hold(store.m);
            locks_before = store.locks;
            unlocks_before = store.unlocks;
        }
        EXPECT_ERROR(survivor.poll(), MAILOAUTH_INVALID_STATE, "context");
        survivor = mo::mailbox();
        std::lock_guard<std::mutex> hold(store.m);
        // Freeing the context released the mailbox's poll-state lock through
        // the host store, while the callbacks were still the host's to call.
        CHECK(store.unlocks > unlocks_before && store.locks == store.unlocks,
              "freeing the context unlocks its mailbox's poll state: locks ", store.locks, " unlocks ",
              store.unlocks, " (", locks_before, "/", unlocks_before, " before)");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }

    // Another context with the same store and key: the grant is there, silently.
    try {
        mo::context ctx2(cfg());
        ctx2.set_cache_key(key);
        ctx2.set_store(store.callbacks());
        CHECK(!ctx2.token(BOB, "imap").empty(), "a token from the host store");
        // A failing load: CACHE_IO with the callback's value in the record.
        mo::store_callbacks broken = store.callbacks();
        broken.load = [](const std::string &) -> std::optional<std::vector<uint8_t>> { throw mo::store_failure(4242); };
        ctx2.set_store(broken);
        const mo::error e = EXPECT_ERROR(ctx2.token(BOB, "imap"), MAILOAUTH_CACHE_IO, nullptr);
        CHECK(e.json().find("4242") != std::string::npos, "the callback's value is in the last error: ", e.json());
        ctx2.set_store(std::nullopt); // back to files: protection "key" then needs cache.path
        EXPECT_ERROR(ctx2.token(BOB, "imap"), MAILOAUTH_INVALID_CONFIG, "cache.path");
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }
}

// ---------------------------------------------------------- account test

void test_account_test(const mo::context &ctx, const tu::fs::path &dir)
{
    try {
        const value r = ctx.account_test(json::object({{"account", ALICE}}), 120s);
        const value &steps = r["steps"];
        CHECK(steps.is_array() && steps.size() == 4, "four steps: ", r.dump());
        std::vector<std::string> names;
        for (const value &s : steps.items()) {
            names.push_back(s.string_or("step"));
            CHECK(s["code"].is_int() && s["code"].as_int() == 0 && s.string_or("name") == "OK" && s["ms"].is_int(),
                  "step ok: ", s.dump());
        }
        CHECK((names == std::vector<std::string>{"token", "smtp", "imap", "pop3"}), r.dump());

        // An account without a grant: the token step fails, inside the result.
        const value bad = ctx.account_test(
            json::object({{"account", "nobody@contoso.test"}, {"protocols", json::array({"smtp"})}}), 120s);
        CHECK(bad["steps"][0]["code"].is_int() && bad["steps"][0]["code"].as_int() == MAILOAUTH_CONSENT_REQUIRED,
              "a failed step is reported, not thrown: ", bad.dump());

        // One server unreachable (IMAP on a closed port): only its step fails,
        // with a message; the others pass. Same cache folder: alice's grant.
        value cfg = tu::stack_config(dir);
        cfg.set("servers", json::object({{"smtp", tu::stack_config(dir)["servers"]["smtp"]},
                                         {"imap", json::object({{"host", "127.0.0.1"}, {"port", 1}, {"security", "tls"}})},
                                         {"pop3", tu::stack_config(dir)["servers"]["pop3"]}}));
        mo::context broken(cfg);
        const value one = broken.account_test(json::object({{"account", ALICE}}), 120s);
        int ok = 0;
        for (const value &st : one["steps"].items()) {
            if (st.string_or("step") == "imap")
                CHECK(st.int_or("code", 0) == MAILOAUTH_NETWORK && !st.string_or("message").empty(),
                      "the IMAP step fails with NETWORK: ", st.dump());
            else if (st.int_or("code", -1) == 0)
                ++ok;
        }
        CHECK(ok == 3, "the other three steps pass: ", one.dump());

        EXPECT_ERROR(ctx.account_test_begin(json::object({{"acount", ALICE}})), MAILOAUTH_INVALID_CONFIG, "acount");
        EXPECT_ERROR(ctx.account_test_begin(json::object({{"account", "a\r\nb@contoso.test"}})),
                     MAILOAUTH_INVALID_ARGUMENT, nullptr);

        // The blocking helper with no time at all: either done at the first
        // look, or TIMEOUT and the op cancelled.
        mo::op o = ctx.account_test_begin(json::object({{"account", ALICE}}));
        int code = 0;
        try {
            (void)o.wait_or_cancel(0ms);
        } catch (const mo::error &e) {
            code = e.code();
        }
        CHECK(code == 0 || (code == MAILOAUTH_TIMEOUT && o.info()["state"].as_string() == "cancelled"),
              "wait_or_cancel(0): code ", code, " info ", o.info_json());
    } catch (const mo::error &e) {
        CHECK(false, e.what(), " ", e.json());
    }
}

} // namespace

int main()
{
    tu::start_watchdog(900);
    if (!tu::load_stack()) return tu::summary();
    CHECK(tu::idp_admin("/admin/reset", "{}").status == 200, "POST /admin/reset");
    tu::idp_auto_consent(true);
    {
        tu::temp_dir dir;
        try {
            mo::context ctx(tu::stack_config(dir.path));
            test_consent_and_tokens(ctx);
            test_threads(ctx);
            test_logger(ctx);
            test_consent_timeout(ctx);
            mo::mailbox carol_inbox;
            EXPECT_OK(carol_inbox = ctx.open_mailbox(json::object({{"account", CAROL}, {"start", "new"}})));
            const sent s = test_smtp(ctx);
            test_read_back_and_forward(ctx, carol_inbox, s);
            test_mailbox_imap(ctx, dir.path);
            test_mailbox_pop3(ctx);
            test_account_test(ctx, dir.path);
            test_provider_error(ctx);
            test_account_remove_and_reset(ctx);
        } catch (const std::exception &e) {
            CHECK(false, "unexpected exception: ", e.what());
        }
    }
    test_host_store();
    tu::idp_admin("/admin/reset", "{}");
    long produced = 0;
    const std::string leaks = audit::report(&produced);
    CHECK(produced > 0, "the allocation audit saw nothing: linked without the -Wl,--wrap options of run-tests.sh?");
    CHECK(leaks.empty(), "library memory and handles the wrapper did not release: ", leaks);
    return tu::summary();
}
