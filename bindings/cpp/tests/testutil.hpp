// Helpers for the C++ binding tests: check counters, expecting a
// mailoauth::error, the local stack (tests/stack) with its identity
// imitation's admin API, a tiny HTTP/1.1 client that plays the browser for
// an auto-consent, seeding a mailbox, temporary folders and a watchdog.
// POSIX only (the tests run on Linux; the wrapper itself is portable).
#ifndef MAILOAUTH_CPP_TESTUTIL_HPP
#define MAILOAUTH_CPP_TESTUTIL_HPP

#include "mailoauth.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

namespace tu {

namespace fs = std::filesystem;
namespace mo = mailoauth;
using mo::json::value;
using namespace std::chrono_literals;

inline std::atomic<int> passed{0};
inline std::atomic<int> failed{0};
inline std::mutex out_lock;

/// Records one check; prints "file:line: FAIL: what: details" when it fails.
inline bool check_at(bool ok, const char *file, int line, const char *what, const std::string &details)
{
    if (ok) {
        ++passed;
        return true;
    }
    ++failed;
    std::lock_guard<std::mutex> hold(out_lock);
    std::cout << file << ":" << line << ": FAIL: " << what << (details.empty() ? "" : ": ") << details << std::endl;
    return false;
}

inline std::string cat() { return {}; }
template <typename T, typename... Rest> std::string cat(const T &first, const Rest &...rest)
{
    std::ostringstream s;
    s << first;
    return s.str() + cat(rest...);
}

/// CHECK(cond, details...): details are streamed into the failure line.
#define CHECK(cond, ...) ::tu::check_at(static_cast<bool>(cond), __FILE__, __LINE__, #cond, ::tu::cat(__VA_ARGS__))

inline int summary()
{
    const int p = passed.load(), f = failed.load();
    std::cout << p << " passed, " << f << " failed" << std::endl;
    return f == 0 ? 0 : 1;
}

/// Runs fn, expects a mailoauth::error with `code` (and, if given, a message
/// containing `needle`); returns it (or a placeholder) for further checks.
template <typename Fn>
mo::error expect_error_at(const char *file, int line, const char *what, Fn &&fn, int32_t code, const char *needle)
{
    try {
        fn();
    } catch (const mo::error &e) {
        bool ok = e.code() == code && e.name() == mo::result_name(code) && !e.message().empty() &&
                  (needle == nullptr || e.message().find(needle) != std::string::npos);
        check_at(ok, file, line, what,
                 cat("got ", e.code(), " ", e.name(), " '", e.message(), "', want ", code, " ", mo::result_name(code),
                     needle ? cat(" naming '", needle, "'") : std::string()));
        return e;
    } catch (const std::exception &e) {
        check_at(false, file, line, what, cat("threw a non-mailoauth exception: ", e.what()));
        return mo::error(-1, "");
    }
    check_at(false, file, line, what, cat("did not throw; want ", mo::result_name(code)));
    return mo::error(-1, "");
}
#define EXPECT_ERROR(expr, code, needle) ::tu::expect_error_at(__FILE__, __LINE__, #expr, [&] { (void)(expr); }, (code), (needle))

/// Runs fn and records a failure (with the error) if it throws; true when it did not.
template <typename Fn> bool expect_ok_at(const char *file, int line, const char *what, Fn &&fn)
{
    try {
        fn();
        return check_at(true, file, line, what, "");
    } catch (const mo::error &e) {
        return check_at(false, file, line, what,
                        cat("threw ", e.what(), e.hint().empty() ? "" : cat(" (hint: ", e.hint(), ")"),
                            " last error ", e.json()));
    } catch (const std::exception &e) {
        return check_at(false, file, line, what, cat("threw ", e.what()));
    }
}
#define EXPECT_OK(stmt) ::tu::expect_ok_at(__FILE__, __LINE__, #stmt, [&] { stmt; })

// ---------------------------------------------------------------- misc

inline void on_alarm(int)
{
    static const char msg[] = "FAIL: watchdog: the test hung\n0 passed, 1 failed\n";
    ssize_t r = write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)r;
    _exit(3);
}

inline void start_watchdog(unsigned default_s)
{
    const char *v = std::getenv("MAILOAUTH_TEST_TIMEOUT");
    unsigned s = v && *v ? static_cast<unsigned>(std::atoi(v)) : default_s;
    std::signal(SIGALRM, on_alarm);
    alarm(s > 0 ? s : default_s);
    // SIGPIPE keeps its default action: the library must not raise it in the
    // host when a peer closed first (src/sigpipe.rs).
    // MAILOAUTH_TEST_IGNORE_SIGPIPE=1 ignores it, as many hosts do.
    const char *ignore = std::getenv("MAILOAUTH_TEST_IGNORE_SIGPIPE");
    if (ignore && std::string(ignore) == "1") std::signal(SIGPIPE, SIG_IGN);
}

inline std::string read_text(const fs::path &p)
{
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

/// A fresh temporary folder, removed with everything in it on destruction.
struct temp_dir {
    fs::path path;
    temp_dir()
    {
        const char *t = std::getenv("TMPDIR");
        std::string tmpl = std::string(t && *t ? t : "/tmp") + "/mailoauth-cpptest-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path = buf.data();
    }
    ~temp_dir()
    {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    temp_dir(const temp_dir &) = delete;
    temp_dir &operator=(const temp_dir &) = delete;
};

/// A short random tag so that messages of this run are told apart.
inline std::string nonce()
{
    static const std::string n = [] {
        std::ostringstream s;
        s << std::hex << static_cast<unsigned long>(getpid()) << "-"
          << static_cast<unsigned long>(std::chrono::steady_clock::now().time_since_epoch().count() & 0xffffff);
        return s.str();
    }();
    return n;
}

// ---------------------------------------------------------- the stack

struct stack_info {
    bool up = false;
    std::string http; // "http://127.0.0.1:10088"
    int idp_port = 0;
    std::string tenant, client_id, ca_file, mail_host;
    int smtp_starttls = 0, imap_tls = 0, pop3_starttls = 0;
};

inline stack_info &stack()
{
    static stack_info s;
    return s;
}

/// Reads MAILOAUTH_STACK_FILE (default /tmp/mailoauth-stack.json).
inline bool load_stack()
{
    const char *p = std::getenv("MAILOAUTH_STACK_FILE");
    const std::string path = p && *p ? p : "/tmp/mailoauth-stack.json";
    const std::string text = read_text(path);
    if (!CHECK(!text.empty(), "the local stack is not running (no ", path, "): start it with tests/stack/up.sh"))
        return false;
    try {
        const value v = mo::json::parse(text);
        stack_info &s = stack();
        s.http = v["idp"].string_or("http");
        s.tenant = v["idp"].string_or("tenant");
        s.client_id = v["idp"].string_or("client_id");
        s.ca_file = v.string_or("ca_file");
        s.mail_host = v["smtp"].string_or("host", "127.0.0.2");
        s.smtp_starttls = static_cast<int>(v["smtp"].int_or("starttls", 0));
        s.imap_tls = static_cast<int>(v["imap"].int_or("tls", 0));
        s.pop3_starttls = static_cast<int>(v["pop3"].int_or("starttls", 0));
        const auto colon = s.http.rfind(':');
        if (s.http.rfind("http://127.0.0.1:", 0) == 0 && colon != std::string::npos)
            s.idp_port = std::atoi(s.http.c_str() + colon + 1);
        s.up = s.idp_port > 0 && !s.tenant.empty() && !s.client_id.empty() && s.smtp_starttls > 0 && s.imap_tls > 0;
    } catch (const std::exception &e) {
        CHECK(false, "cannot read ", path, ": ", e.what());
        return false;
    }
    return CHECK(stack().up, "the stack file lacks idp/smtp/imap entries: ", path);
}

/// The configuration for the stack: custom provider over plain HTTP on
/// loopback, its SMTP/IMAP/POP3 servers and CA, the file cache in `dir`.
inline value stack_config(const fs::path &dir, const std::string &language = "en")
{
    const stack_info &s = stack();
    return mo::json::object({
        {"provider", "custom"},
        {"authority", s.http},
        {"allow_plaintext_loopback", true},
        {"tenant", s.tenant},
        {"client_id", s.client_id},
        {"scopes", mo::json::object({{"smtp", "https://outlook.office.com/SMTP.Send"},
                                     {"imap", "https://outlook.office.com/IMAP.AccessAsUser.All"},
                                     {"pop3", "https://outlook.office.com/POP.AccessAsUser.All"}})},
        {"servers",
         mo::json::object({{"smtp", mo::json::object({{"host", s.mail_host}, {"port", s.smtp_starttls}, {"security", "starttls"}})},
                           {"imap", mo::json::object({{"host", s.mail_host}, {"port", s.imap_tls}, {"security", "tls"}})},
                           {"pop3", mo::json::object({{"host", s.mail_host}, {"port", s.pop3_starttls}, {"security", "starttls"}})}})},
        {"tls", mo::json::object({{"ca_file", s.ca_file}})},
        {"http", mo::json::object({{"proxy", "none"}})},
        {"browser", "none"},
        {"language", language},
        {"cache", mo::json::object({{"protection", "none"}, {"path", dir.string()}})},
    });
}

// --------------------------------------------------- a tiny HTTP client

struct http_response {
    int status = 0;
    std::string head, body;
    std::string header(const std::string &name) const
    {
        std::istringstream in(head);
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.size() > name.size() && line[name.size()] == ':' &&
                strncasecmp(line.c_str(), name.c_str(), name.size()) == 0) {
                std::size_t v = name.size() + 1;
                while (v < line.size() && line[v] == ' ') ++v;
                return line.substr(v);
            }
        }
        return {};
    }
};

/// Connects to 127.0.0.1:port; -1 when refused.
inline int tcp_connect(int port)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    timeval tv{30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/// One request to 127.0.0.1:port with "Connection: close".
inline http_response http_request(int port, const std::string &method, const std::string &target,
                                  const std::string &json_body = {})
{
    http_response r;
    int fd = tcp_connect(port);
    if (fd < 0) return r;
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                      "\r\nUser-Agent: mailoauth-cpp-test\r\nConnection: close\r\n";
    if (!json_body.empty() || method == "POST")
        req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(json_body.size()) + "\r\n";
    req += "\r\n" + json_body;
    std::size_t off = 0;
    while (off < req.size()) {
        ssize_t w = send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
    }
    std::string resp;
    char buf[8192];
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0) break;
        resp.append(buf, static_cast<std::size_t>(got));
    }
    close(fd);
    const auto sep = resp.find("\r\n\r\n");
    if (resp.rfind("HTTP/1.", 0) != 0 || sep == std::string::npos) return r;
    r.status = std::atoi(resp.c_str() + 9);
    r.head = resp.substr(0, sep);
    r.body = resp.substr(sep + 4);
    return r;
}

/// Splits "http://host:port/target" (host localhost or 127.0.0.1).
inline bool split_url(const std::string &url, int &port, std::string &target)
{
    std::string rest;
    if (url.rfind("http://localhost:", 0) == 0) rest = url.substr(17);
    else if (url.rfind("http://127.0.0.1:", 0) == 0) rest = url.substr(17);
    else return false;
    port = std::atoi(rest.c_str());
    const auto slash = rest.find('/');
    target = slash == std::string::npos ? "/" : rest.substr(slash);
    return port > 0;
}

inline http_response http_get(const std::string &url)
{
    int port = 0;
    std::string target;
    if (!split_url(url, port, target)) return {};
    return http_request(port, "GET", target);
}

/// POST (or GET without a body) to the identity imitation's admin API.
inline http_response idp_admin(const std::string &path, const std::string &json_body = {})
{
    return http_request(stack().idp_port, json_body.empty() ? "GET" : "POST", path, json_body);
}

inline void idp_auto_consent(bool on)
{
    CHECK(idp_admin("/admin/settings", on ? "{\"auto_consent\": true}" : "{\"auto_consent\": false}").status == 200,
          "POST /admin/settings auto_consent");
}

/// Plays the browser for an auto-consent: GET authorize_url (302 at once),
/// follow the Location to the library's loopback listener.
inline bool drive_browser(const value &info)
{
    const std::string url = info.string_or("authorize_url");
    if (!CHECK(!url.empty(), "op info has an authorize_url: ", info.dump())) return false;
    int port = 0;
    std::string target;
    const std::string authority = stack().http;
    if (!CHECK(url.rfind(authority, 0) == 0 && split_url(url, port, target), "authorize_url at the stack: ", url))
        return false;
    http_response r = http_request(port, "GET", target);
    const std::string loc = r.header("Location");
    if (!CHECK(r.status == 302 && !loc.empty(), "GET authorize_url answers 302 with a Location (status ", r.status, ")"))
        return false;
    http_response back = http_get(loc);
    return CHECK(back.status == 200, "the loopback listener answers the redirect with 200 (status ", back.status, ")");
}

/// The loopback redirect port named in an authorize_url (0 if none).
inline int redirect_port(const std::string &authorize_url)
{
    const std::string key = "redirect_uri=http%3A%2F%2Flocalhost%3A";
    auto at = authorize_url.find(key);
    std::size_t skip = key.size();
    if (at == std::string::npos) {
        const std::string key2 = "redirect_uri=http%3A%2F%2F127.0.0.1%3A";
        at = authorize_url.find(key2);
        skip = key2.size();
    }
    return at == std::string::npos ? 0 : std::atoi(authorize_url.c_str() + at + skip);
}

/// A browser consent for `account` through the wrapper's blocking helper.
inline bool consent(const mo::context &ctx, const std::string &account)
{
    return EXPECT_OK(ctx.consent(mo::json::object({{"account", account}, {"flow", "browser"}, {"timeout_s", 120}}),
                                 60s, [](const value &info) { drive_browser(info); }));
}

/// Seeds n messages into user's INBOX with tests/stack/seed.py.
inline bool seed(const std::string &user, int n, int seed_no)
{
    const fs::path here = fs::path(__FILE__).parent_path();
    const std::string cmd = "python3 '" + (here / "../../../tests/stack/seed.py").string() + "' --user " + user +
                            " --count " + std::to_string(n) + " --size 3000 --seed " + std::to_string(seed_no) +
                            " >/dev/null";
    const int rc = std::system(cmd.c_str());
    return CHECK(rc == 0, "seed.py exit ", rc);
}

} // namespace tu

#endif
