// An audit of everything the library hands to the wrapper: each string,
// secret, byte buffer and handle a test receives must go back through the
// matching free function exactly once.
//
// LeakSanitizer cannot see these leaks: the library keeps every buffer it
// returns (and every handle) in its own table, so a buffer the host never
// frees stays reachable. Instead the test programs are linked with
// `-Wl,--wrap=<function>` for the producers and the free functions below
// (run-tests.sh: AUDIT_WRAPS), and these wrappers keep the count.
// Include this header in exactly one translation unit of a test program.
#ifndef MAILOAUTH_CPP_ALLOC_AUDIT_HPP
#define MAILOAUTH_CPP_ALLOC_AUDIT_HPP

#include "mailoauth.h"

#include <map>
#include <mutex>
#include <sstream>
#include <string>

namespace audit {

enum class kind { string, secret, bytes, context, op, mailbox };

inline const char *name(kind k)
{
    switch (k) {
    case kind::string: return "string";
    case kind::secret: return "secret";
    case kind::bytes: return "bytes";
    case kind::context: return "context";
    case kind::op: return "op";
    case kind::mailbox: return "mailbox";
    }
    return "?";
}

struct state {
    std::mutex lock;
    std::map<const void *, kind> live;
    long produced = 0, released = 0;
    std::string problems; // the first wrong-kind or unknown frees
    int problem_count = 0;
    void problem(const std::string &what)
    {
        if (++problem_count <= 3) problems += what + "; ";
    }
};

inline state &get()
{
    static state *s = new state; // never destroyed: frees may come late
    return *s;
}

inline void add(const void *p, kind k)
{
    if (p == nullptr) return;
    state &s = get();
    std::lock_guard<std::mutex> hold(s.lock);
    s.live[p] = k;
    ++s.produced;
}

inline void release(const void *p, kind k)
{
    if (p == nullptr) return;
    state &s = get();
    std::lock_guard<std::mutex> hold(s.lock);
    auto it = s.live.find(p);
    if (it == s.live.end()) {
        s.problem(std::string("a ") + name(k) + " free of a pointer the library did not hand out (or freed twice)");
        return;
    }
    if (it->second != k)
        s.problem(std::string("a ") + name(it->second) + " released with the " + name(k) + " free function");
    s.live.erase(it);
    ++s.released;
}

/// "" when everything handed out was released once with the right function.
inline std::string report(long *produced = nullptr)
{
    state &s = get();
    std::lock_guard<std::mutex> hold(s.lock);
    if (produced) *produced = s.produced;
    std::ostringstream o;
    if (s.problem_count > 0) o << s.problem_count << " bad frees: " << s.problems;
    if (!s.live.empty()) {
        std::map<kind, int> by;
        for (const auto &e : s.live) ++by[e.second];
        o << s.live.size() << " not released:";
        for (const auto &b : by) o << " " << b.second << " " << name(b.first);
    }
    return o.str();
}

} // namespace audit

// Functions that hand out memory: record what they return on success.
#define AUDIT_OUT(kind_, fn, params, args, out_expr)                                                                   \
    extern "C" int32_t __real_##fn params;                                                                             \
    extern "C" int32_t __wrap_##fn params                                                                              \
    {                                                                                                                  \
        const int32_t rc = __real_##fn args;                                                                           \
        if (rc == MAILOAUTH_OK && (out_expr) != nullptr) audit::add(*(out_expr), audit::kind::kind_);                  \
        return rc;                                                                                                     \
    }

AUDIT_OUT(string, mailoauth_context_describe, (mailoauth_context * c, char **out), (c, out), out)
AUDIT_OUT(string, mailoauth_last_error, (char **out), (out), out)
AUDIT_OUT(string, mailoauth_op_info, (mailoauth_op * o, char **out), (o, out), out)
AUDIT_OUT(string, mailoauth_op_result, (mailoauth_op * o, char **out), (o, out), out)
AUDIT_OUT(string, mailoauth_account_list, (mailoauth_context * c, char **out), (c, out), out)
AUDIT_OUT(string, mailoauth_smtp_send, (mailoauth_context * c, const char *r, char **out), (c, r, out), out)
AUDIT_OUT(string, mailoauth_smtp_send_mime,
          (mailoauth_context * c, const char *r, const uint8_t *m, int64_t n, char **out), (c, r, m, n, out), out)
AUDIT_OUT(string, mailoauth_smtp_forward,
          (mailoauth_context * c, const char *r, const uint8_t *m, int64_t n, char **out), (c, r, m, n, out), out)
AUDIT_OUT(string, mailoauth_mailbox_poll, (mailoauth_mailbox * b, int32_t n, char **out), (b, n, out), out)
AUDIT_OUT(string, mailoauth_mailbox_list_folders, (mailoauth_mailbox * b, char **out), (b, out), out)
AUDIT_OUT(secret, mailoauth_token_get,
          (mailoauth_context * c, const char *a, const char *p, int32_t f, char **out), (c, a, p, f, out), out)
AUDIT_OUT(bytes, mailoauth_mailbox_fetch, (mailoauth_mailbox * b, const char *id, uint8_t **out, int64_t *len),
          (b, id, out, len), out)
AUDIT_OUT(context, mailoauth_context_new, (const char *cfg, uint32_t v, mailoauth_context **out), (cfg, v, out), out)
AUDIT_OUT(op, mailoauth_consent_begin, (mailoauth_context * c, const char *r, mailoauth_op **out), (c, r, out), out)
AUDIT_OUT(op, mailoauth_account_test_begin, (mailoauth_context * c, const char *r, mailoauth_op **out), (c, r, out),
          out)
AUDIT_OUT(mailbox, mailoauth_mailbox_open, (mailoauth_context * c, const char *r, mailoauth_mailbox **out),
          (c, r, out), out)
#undef AUDIT_OUT

// The free functions.
#define AUDIT_FREE(kind_, fn, type)                                                                                    \
    extern "C" void __real_##fn(type p);                                                                               \
    extern "C" void __wrap_##fn(type p)                                                                                \
    {                                                                                                                  \
        audit::release(p, audit::kind::kind_);                                                                         \
        __real_##fn(p);                                                                                                \
    }
AUDIT_FREE(string, mailoauth_string_free, char *)
AUDIT_FREE(secret, mailoauth_secret_free, char *)
AUDIT_FREE(context, mailoauth_context_free, mailoauth_context *)
AUDIT_FREE(op, mailoauth_op_free, mailoauth_op *)
AUDIT_FREE(mailbox, mailoauth_mailbox_free, mailoauth_mailbox *)
#undef AUDIT_FREE
extern "C" void __real_mailoauth_bytes_free(uint8_t *p, int64_t len);
extern "C" void __wrap_mailoauth_bytes_free(uint8_t *p, int64_t len)
{
    audit::release(p, audit::kind::bytes);
    __real_mailoauth_bytes_free(p, len);
}

#endif
