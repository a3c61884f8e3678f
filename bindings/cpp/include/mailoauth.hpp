// mailoauth.hpp: a header-only C++17 wrapper over the mailoauth C ABI
// (include/mailoauth.h; the contract is ABI.md).
//
// - Owning, move-only handle types (context, op, mailbox) that free their C
//   handle in the destructor; child handles keep what their callbacks need
//   alive, so handles may be destroyed in any order.
// - Results as std::string, std::vector<uint8_t>, json::value or small
//   structs. Library memory is copied and released at once through
//   mailoauth_string_free / mailoauth_secret_free / mailoauth_bytes_free;
//   tokens come back as secret_string, whose copy is zeroed on destruction.
// - Every failure throws mailoauth::error carrying the result code, its name,
//   the message, hint, provider codes and server reply of the thread's last
//   error (read on the failing thread, right after the call).
// - json::value builds request documents with correct escaping (quotes,
//   backslash, control characters as \u00XX, UTF-8 passed through, invalid
//   UTF-8 refused) and reads the library's answers with a strict parser, so a
//   host never assembles JSON with sprintf.
// - Thread safety is the C library's: a context may be used from many
//   threads at once; op::cancel and mailbox::cancel may be called from any
//   thread while another thread waits in a call on the same object. Do not
//   destroy a wrapper while another thread is inside a call on it.
//
// No dependency beyond the C++17 standard library and mailoauth.h. Safe to
// include after <windows.h> without NOMINMAX (min/max are never expanded).
#ifndef MAILOAUTH_HPP
#define MAILOAUTH_HPP

#include "mailoauth.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace mailoauth {

// ======================================================================= error

/// A failed call: the result code and the thread's last error record.
class error : public std::runtime_error {
public:
    /// An error made by the wrapper itself (not from the library's last error).
    error(int32_t code, std::string message)
        : std::runtime_error(compose(code, name_of(code), message)),
          code_(code),
          name_(name_of(code)),
          message_(std::move(message))
    {
    }

    /// Builds the error for result code `rc` from the calling thread's last
    /// error. Call it right after the failing call, on the same thread.
    static error from_last_error(int32_t rc) noexcept;

    int32_t code() const noexcept { return code_; }
    /// "CONSENT_REQUIRED", … (mailoauth_result_str)
    const std::string &name() const noexcept { return name_; }
    /// In the context's language (English or German).
    const std::string &message() const noexcept { return message_; }
    /// What an administrator or user should do; empty when the library gave none.
    const std::string &hint() const noexcept { return hint_; }
    /// The identity provider's error ("invalid_grant"); empty when unknown.
    const std::string &provider_error() const noexcept { return provider_error_; }
    /// The provider's code ("AADSTS700082"); empty when unknown.
    const std::string &provider_code() const noexcept { return provider_code_; }
    /// The mail server's reply, control characters removed, at most 1 KiB.
    const std::string &server_reply() const noexcept { return server_reply_; }
    const std::string &correlation_id() const noexcept { return correlation_id_; }
    /// Seconds to wait before retrying (THROTTLED), when known.
    std::optional<int64_t> retry_after_s() const noexcept { return retry_after_s_; }
    /// Refused recipients (SEND_REJECTED).
    const std::vector<std::string> &rejected() const noexcept { return rejected_; }
    /// The whole last-error record as the library wrote it ("" for wrapper errors).
    const std::string &json() const noexcept { return json_; }

private:
    static std::string name_of(int32_t code)
    {
        const char *s = mailoauth_result_str(code);
        return s != nullptr ? s : "UNKNOWN";
    }
    static std::string compose(int32_t code, const std::string &name, const std::string &message)
    {
        std::string w = name;
        w += " (";
        w += std::to_string(code);
        w += "): ";
        w += message;
        return w;
    }

    int32_t code_;
    std::string name_;
    std::string message_;
    std::string hint_;
    std::string provider_error_;
    std::string provider_code_;
    std::string server_reply_;
    std::string correlation_id_;
    std::optional<int64_t> retry_after_s_;
    std::vector<std::string> rejected_;
    std::string json_;
};

/// Throws error::from_last_error(rc) unless rc is MAILOAUTH_OK.
inline void check(int32_t rc)
{
    if (rc != MAILOAUTH_OK) throw error::from_last_error(rc);
}

/// The library's version ("0.1.0").
inline std::string version()
{
    const char *v = mailoauth_version();
    return v != nullptr ? v : "";
}

/// The ABI version of the loaded library.
inline uint32_t abi_version() noexcept { return mailoauth_abi_version(); }

/// True when the loaded library serves this header's ABI (a newer library
/// serves an older host; context creation fails with ABI_MISMATCH otherwise).
inline bool abi_compatible() noexcept { return mailoauth_abi_version() >= MAILOAUTH_ABI_VERSION; }

/// The static English name of a result code.
inline std::string result_name(int32_t code)
{
    const char *s = mailoauth_result_str(code);
    return s != nullptr ? s : "UNKNOWN";
}

namespace detail {

/// true if s is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF);
/// *bad receives the offset of the first bad byte.
inline bool utf8_valid(std::string_view s, std::size_t *bad = nullptr) noexcept
{
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 3;
            cp = c & 0x07u;
        } else {
            if (bad) *bad = i;
            return false;
        }
        if (n - i <= len) {
            if (bad) *bad = i;
            return false;
        }
        for (std::size_t k = 1; k <= len; ++k) {
            if ((p[i + k] & 0xC0u) != 0x80u) {
                if (bad) *bad = i;
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3Fu);
        }
        if ((len == 2 && cp < 0x800) || (len == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            if (bad) *bad = i;
            return false;
        }
        i += len + 1;
    }
    return true;
}

/// A string argument for the C API: refused (INVALID_ARGUMENT) if it holds a
/// NUL, which C would silently cut off.
inline const char *c_arg(const std::string &s, const char *what)
{
    if (s.find('\0') != std::string::npos)
        throw error(MAILOAUTH_INVALID_ARGUMENT, std::string(what) + " contains a NUL character");
    return s.c_str();
}

/// Copies a library string and frees it with mailoauth_string_free.
inline std::string take_string(char *s)
{
    std::unique_ptr<char, void (*)(char *)> guard(s, mailoauth_string_free);
    return s != nullptr ? std::string(s) : std::string();
}

inline int32_t clamp_ms(std::chrono::milliseconds ms) noexcept
{
    if (ms.count() < 0) return 0;
    if (ms.count() > (std::numeric_limits<int32_t>::max)()) return (std::numeric_limits<int32_t>::max)();
    return static_cast<int32_t>(ms.count());
}

/// At most INT32_MAX ms (about 24 days), so that now() + timeout cannot overflow.
inline std::chrono::milliseconds clamp_duration(std::chrono::milliseconds ms) noexcept
{
    return ms.count() > (std::numeric_limits<int32_t>::max)() ? std::chrono::milliseconds((std::numeric_limits<int32_t>::max)())
                                                              : ms;
}

inline int64_t byte_len(std::size_t n, const char *what)
{
    if (n > static_cast<uint64_t>((std::numeric_limits<int64_t>::max)()))
        throw error(MAILOAUTH_TOO_LARGE, std::string(what) + " is too large");
    return static_cast<int64_t>(n);
}

/// Overwrites memory in a way the optimiser keeps.
inline void secure_zero(void *p, std::size_t n) noexcept
{
    volatile unsigned char *v = static_cast<volatile unsigned char *>(p);
    while (n-- > 0) *v++ = 0;
}

} // namespace detail

// ============================================================ secret_string

/// A token or secret. The copy lives in a buffer of its own (not a
/// std::string, whose small-string moves leave copies behind) and is zeroed
/// when the object is destroyed or moved from. Move-only; never printed.
class secret_string {
public:
    secret_string() = default;
    secret_string(const char *data, std::size_t len) : len_(len)
    {
        buf_.reset(new char[len + 1]);
        if (len > 0) std::memcpy(buf_.get(), data, len);
        buf_[len] = '\0';
    }
    secret_string(const secret_string &) = delete;
    secret_string &operator=(const secret_string &) = delete;
    secret_string(secret_string &&o) noexcept : buf_(std::move(o.buf_)), len_(o.len_) { o.len_ = 0; }
    secret_string &operator=(secret_string &&o) noexcept
    {
        if (this != &o) {
            wipe();
            buf_ = std::move(o.buf_);
            len_ = o.len_;
            o.len_ = 0;
        }
        return *this;
    }
    ~secret_string() { wipe(); }

    std::string_view view() const noexcept { return buf_ ? std::string_view(buf_.get(), len_) : std::string_view(); }
    const char *c_str() const noexcept { return buf_ ? buf_.get() : ""; }
    std::size_t size() const noexcept { return len_; }
    bool empty() const noexcept { return len_ == 0; }

private:
    void wipe() noexcept
    {
        if (buf_) detail::secure_zero(buf_.get(), len_ + 1);
        buf_.reset();
        len_ = 0;
    }
    std::unique_ptr<char[]> buf_;
    std::size_t len_ = 0;
};

namespace detail {
/// Copies a library secret into a secret_string and frees it with
/// mailoauth_secret_free (which zeroes the library's copy).
inline secret_string take_secret(char *s)
{
    std::unique_ptr<char, void (*)(char *)> guard(s, mailoauth_secret_free);
    return s != nullptr ? secret_string(s, std::strlen(s)) : secret_string();
}

/// Copies library bytes and frees them with mailoauth_bytes_free.
inline std::vector<uint8_t> take_bytes(uint8_t *p, int64_t len)
{
    struct guard_t {
        uint8_t *p;
        int64_t len;
        ~guard_t() { mailoauth_bytes_free(p, len); }
    } guard{p, len};
    if (p == nullptr || len <= 0) return {};
    return std::vector<uint8_t>(p, p + len);
}
} // namespace detail

// ===================================================================== json

namespace json {

enum class kind { null, boolean, number, string, array, object };

/// A JSON value: for building requests (dump() escapes correctly and refuses
/// invalid UTF-8) and reading the library's answers (parse() is strict:
/// one document, no duplicate keys, valid UTF-8, depth at most 128).
class value {
public:
    value() noexcept = default;
    value(std::nullptr_t) noexcept {}
    value(bool b) noexcept : kind_(kind::boolean), b_(b) {}
    template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                               !std::is_same_v<T, char>,
                                           int> = 0>
    value(T n) : kind_(kind::number), is_int_(true)
    {
        if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(int64_t)) {
            if (n > static_cast<T>((std::numeric_limits<int64_t>::max)()))
                throw error(MAILOAUTH_INVALID_ARGUMENT, "integer too large for JSON (int64)");
        }
        i_ = static_cast<int64_t>(n);
        d_ = static_cast<double>(n);
    }
    value(double d) : kind_(kind::number), d_(d)
    {
        if (!std::isfinite(d)) throw error(MAILOAUTH_INVALID_ARGUMENT, "JSON numbers must be finite");
    }
    value(const char *s) : kind_(kind::string), s_(s != nullptr ? s : "")
    {
        if (s == nullptr) kind_ = kind::null;
    }
    value(char *s) : value(static_cast<const char *>(s)) {}
    value(std::string s) noexcept : kind_(kind::string), s_(std::move(s)) {}
    value(std::string_view s) : kind_(kind::string), s_(s) {}
    value(const std::vector<std::string> &items) : kind_(kind::array)
    {
        items_.reserve(items.size());
        for (const auto &s : items) items_.emplace_back(s);
    }
    /// Pointers other than strings would silently become booleans.
    template <typename T> value(T *) = delete;

    /// An object: json::value::object({{"account", a}, {"protocols", json::value::array({"smtp"})}}).
    /// A key given twice is refused.
    static value object(std::initializer_list<std::pair<std::string, value>> members = {})
    {
        value v;
        v.kind_ = kind::object;
        for (const auto &m : members) {
            if (v.find(m.first) != nullptr)
                throw error(MAILOAUTH_INVALID_ARGUMENT, "JSON object key '" + m.first + "' given twice");
            v.keys_.push_back(m.first);
            v.items_.push_back(m.second);
        }
        return v;
    }
    static value array(std::initializer_list<value> items = {})
    {
        value v;
        v.kind_ = kind::array;
        v.items_.assign(items.begin(), items.end());
        return v;
    }

    kind type() const noexcept { return kind_; }
    bool is_null() const noexcept { return kind_ == kind::null; }
    bool is_bool() const noexcept { return kind_ == kind::boolean; }
    bool is_number() const noexcept { return kind_ == kind::number; }
    /// A number written without fraction or exponent that fits int64.
    bool is_int() const noexcept { return kind_ == kind::number && is_int_; }
    bool is_string() const noexcept { return kind_ == kind::string; }
    bool is_array() const noexcept { return kind_ == kind::array; }
    bool is_object() const noexcept { return kind_ == kind::object; }

    bool as_bool() const
    {
        expect(kind::boolean, "a boolean");
        return b_;
    }
    int64_t as_int() const
    {
        if (!is_int()) throw error(MAILOAUTH_PROTOCOL, "JSON value is not an integer");
        return i_;
    }
    double as_double() const
    {
        expect(kind::number, "a number");
        return d_;
    }
    const std::string &as_string() const &
    {
        expect(kind::string, "a string");
        return s_;
    }
    /// On a temporary (ctx.describe()["tenant"].as_string()): a copy, never a dangling reference.
    std::string as_string() &&
    {
        expect(kind::string, "a string");
        return std::move(s_);
    }

    /// Members of an array or object (0 for anything else).
    std::size_t size() const noexcept { return items_.size(); }
    const std::vector<value> &items() const & noexcept { return items_; }
    /// On a temporary (for (auto &a : ctx.account_list().items())): moved out, so the loop is safe.
    std::vector<value> items() && noexcept { return std::move(items_); }
    /// An object's keys, in document order (parallel to items()).
    const std::vector<std::string> &keys() const & noexcept { return keys_; }
    std::vector<std::string> keys() && noexcept { return std::move(keys_); }

    /// An object's member, or nullptr.
    const value *find(std::string_view key) const noexcept
    {
        if (kind_ != kind::object) return nullptr;
        for (std::size_t k = 0; k < keys_.size(); ++k)
            if (keys_[k] == key) return &items_[k];
        return nullptr;
    }
    /// An object's member, or a null value when absent (so lookups chain).
    /// On a temporary the member is moved out (no dangling reference).
    const value &operator[](const char *key) const & noexcept { return or_null(find(key)); }
    const value &operator[](const std::string &key) const & noexcept { return or_null(find(key)); }
    value operator[](const char *key) && { return take(find(key)); }
    value operator[](const std::string &key) && { return take(find(key)); }
    /// An array's element, or a null value when out of range.
    const value &operator[](std::size_t index) const & noexcept { return or_null(at_index(index)); }
    const value &operator[](int index) const & noexcept { return or_null(at_index(index)); }
    value operator[](std::size_t index) && { return take(at_index(index)); }
    value operator[](int index) && { return take(at_index(index)); }

    /// The string at key, or `fallback` when absent or not a string.
    std::string string_or(std::string_view key, std::string fallback = {}) const
    {
        const value *v = find(key);
        return v != nullptr && v->is_string() ? v->s_ : fallback;
    }
    /// The integer at key, or `fallback` when absent or not an integer.
    int64_t int_or(std::string_view key, int64_t fallback) const noexcept
    {
        const value *v = find(key);
        return v != nullptr && v->is_int() ? v->i_ : fallback;
    }
    /// An array of strings at key (non-strings skipped; empty when absent).
    std::vector<std::string> strings_at(std::string_view key) const
    {
        std::vector<std::string> out;
        const value *v = find(key);
        if (v != nullptr && v->is_array())
            for (const auto &item : v->items_)
                if (item.is_string()) out.push_back(item.s_);
        return out;
    }

    /// Sets (or replaces) an object's member; a null value becomes an object.
    value &set(std::string key, value v)
    {
        if (kind_ == kind::null) kind_ = kind::object;
        expect(kind::object, "an object", MAILOAUTH_INVALID_ARGUMENT);
        for (std::size_t k = 0; k < keys_.size(); ++k)
            if (keys_[k] == key) {
                items_[k] = std::move(v);
                return *this;
            }
        keys_.push_back(std::move(key));
        items_.push_back(std::move(v));
        return *this;
    }
    /// Appends to an array; a null value becomes an array.
    value &push_back(value v)
    {
        if (kind_ == kind::null) kind_ = kind::array;
        expect(kind::array, "an array", MAILOAUTH_INVALID_ARGUMENT);
        items_.push_back(std::move(v));
        return *this;
    }

    /// The compact JSON text. Throws error(INVALID_ARGUMENT) for a string or
    /// key that is not valid UTF-8 (naming the key), never repairing it.
    std::string dump() const
    {
        std::string out;
        dump_to(out, "");
        return out;
    }

    /// Deep equality (object member order does not matter; 1 == 1.0).
    friend bool operator==(const value &a, const value &b)
    {
        if (a.kind_ != b.kind_) return false;
        switch (a.kind_) {
        case kind::null: return true;
        case kind::boolean: return a.b_ == b.b_;
        case kind::number: return a.is_int_ && b.is_int_ ? a.i_ == b.i_ : a.d_ == b.d_;
        case kind::string: return a.s_ == b.s_;
        case kind::array: return a.items_ == b.items_;
        case kind::object:
            if (a.keys_.size() != b.keys_.size()) return false;
            for (std::size_t k = 0; k < a.keys_.size(); ++k) {
                const value *o = b.find(a.keys_[k]);
                if (o == nullptr || !(a.items_[k] == *o)) return false;
            }
            return true;
        }
        return false;
    }
    friend bool operator!=(const value &a, const value &b) { return !(a == b); }

private:
    friend class parser;

    static const value &null_value() noexcept
    {
        static const value null;
        return null;
    }
    static const value &or_null(const value *v) noexcept { return v != nullptr ? *v : null_value(); }
    const value *at_index(std::size_t index) const noexcept
    {
        return kind_ == kind::array && index < items_.size() ? &items_[index] : nullptr;
    }
    const value *at_index(int index) const noexcept
    {
        return index < 0 ? nullptr : at_index(static_cast<std::size_t>(index));
    }
    /// Moves a member of this (temporary) value out.
    value take(const value *member)
    {
        return member != nullptr ? std::move(*const_cast<value *>(member)) : value();
    }
    void expect(kind k, const char *what, int32_t code = MAILOAUTH_PROTOCOL) const
    {
        if (kind_ != k) throw error(code, std::string("JSON value is not ") + what);
    }

    static void dump_string(std::string &out, const std::string &s, std::string_view key)
    {
        std::size_t bad = 0;
        if (!detail::utf8_valid(s, &bad)) {
            std::string where = key.empty() || !detail::utf8_valid(key) ? std::string("a JSON string")
                                                                          : "JSON key '" + std::string(key) + "'";
            throw error(MAILOAUTH_INVALID_ARGUMENT,
                        where + " is not valid UTF-8 (byte " + std::to_string(bad) + ")");
        }
        static const char hex[] = "0123456789abcdef";
        out += '"';
        for (const char ch : s) {
            const auto c = static_cast<unsigned char>(ch);
            if (c == '"') {
                out += "\\\"";
            } else if (c == '\\') {
                out += "\\\\";
            } else if (c < 0x20 || c == 0x7F) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 0x0F];
            } else {
                out += ch; // UTF-8 passes through as it is
            }
        }
        out += '"';
    }

    void dump_to(std::string &out, std::string_view key) const
    {
        switch (kind_) {
        case kind::null: out += "null"; break;
        case kind::boolean: out += b_ ? "true" : "false"; break;
        case kind::number: {
            char buf[64];
            std::to_chars_result r = is_int_ ? std::to_chars(buf, buf + sizeof buf, i_)
                                             : std::to_chars(buf, buf + sizeof buf, d_);
            if (r.ec != std::errc()) throw error(MAILOAUTH_INTERNAL, "number formatting failed");
            out.append(buf, r.ptr);
            break;
        }
        case kind::string: dump_string(out, s_, key); break;
        case kind::array:
            out += '[';
            for (std::size_t k = 0; k < items_.size(); ++k) {
                if (k > 0) out += ',';
                items_[k].dump_to(out, key);
            }
            out += ']';
            break;
        case kind::object:
            out += '{';
            for (std::size_t k = 0; k < items_.size(); ++k) {
                if (k > 0) out += ',';
                dump_string(out, keys_[k], keys_[k]);
                out += ':';
                items_[k].dump_to(out, keys_[k]);
            }
            out += '}';
            break;
        }
    }

    kind kind_ = kind::null;
    bool b_ = false;
    bool is_int_ = false;
    int64_t i_ = 0;
    double d_ = 0;
    std::string s_;
    std::vector<value> items_;
    std::vector<std::string> keys_;
};

/// Short forms for building: json::object({{"k", v}}), json::array({"a", "b"}).
inline value object(std::initializer_list<std::pair<std::string, value>> members = {})
{
    return value::object(members);
}
inline value array(std::initializer_list<value> items = {}) { return value::array(items); }

/// The strict reader behind parse().
class parser {
public:
    explicit parser(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

    value document()
    {
        value v = parse_value(0);
        skip_ws();
        if (p_ != end_) fail("trailing characters after the JSON document");
        return v;
    }

private:
    [[noreturn]] void fail(const char *why) const { throw error(MAILOAUTH_PROTOCOL, std::string("invalid JSON: ") + why); }

    void skip_ws() noexcept
    {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }
    bool literal(std::string_view word) noexcept
    {
        if (static_cast<std::size_t>(end_ - p_) >= word.size() && std::string_view(p_, word.size()) == word) {
            p_ += word.size();
            return true;
        }
        return false;
    }
    static void put_utf8(std::string &o, uint32_t cp)
    {
        if (cp < 0x80) {
            o += static_cast<char>(cp);
        } else if (cp < 0x800) {
            o += static_cast<char>(0xC0 | (cp >> 6));
            o += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            o += static_cast<char>(0xE0 | (cp >> 12));
            o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            o += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            o += static_cast<char>(0xF0 | (cp >> 18));
            o += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            o += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            o += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    uint32_t hex4()
    {
        if (end_ - p_ < 4) fail("truncated \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = *p_++;
            v <<= 4;
            if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
            else fail("bad \\u escape");
        }
        return v;
    }
    std::string parse_string()
    {
        if (p_ >= end_ || *p_ != '"') fail("expected a string");
        ++p_;
        std::string out;
        for (;;) {
            if (p_ >= end_) fail("unterminated string");
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') {
                ++p_;
                break;
            }
            if (c < 0x20) fail("control character in a string");
            if (c != '\\') {
                out += static_cast<char>(c);
                ++p_;
                continue;
            }
            ++p_;
            if (p_ >= end_) fail("unterminated string");
            const char e = *p_++;
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                uint32_t cp = hex4();
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail("lone surrogate");
                    p_ += 2;
                    const uint32_t lo = hex4();
                    if (lo < 0xDC00 || lo > 0xDFFF) fail("lone surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail("lone surrogate");
                }
                put_utf8(out, cp);
                break;
            }
            default: fail("bad escape");
            }
        }
        if (!detail::utf8_valid(out)) fail("a string is not valid UTF-8");
        return out;
    }
    value parse_number()
    {
        const char *start = p_;
        bool integral = true;
        if (p_ < end_ && *p_ == '-') ++p_;
        auto digit = [this] { return p_ < end_ && *p_ >= '0' && *p_ <= '9'; };
        if (!digit()) fail("bad number");
        if (*p_ == '0') ++p_;
        else
            while (digit()) ++p_;
        if (p_ < end_ && *p_ == '.') {
            integral = false;
            ++p_;
            if (!digit()) fail("bad number");
            while (digit()) ++p_;
        }
        if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
            integral = false;
            ++p_;
            if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (!digit()) fail("bad number");
            while (digit()) ++p_;
        }
        value v;
        v.kind_ = kind::number;
        if (integral) {
            int64_t i = 0;
            const auto r = std::from_chars(start, p_, i);
            if (r.ec == std::errc() && r.ptr == p_) {
                v.is_int_ = true;
                v.i_ = i;
                v.d_ = static_cast<double>(i);
                return v;
            }
        }
        double d = 0;
        const auto r = std::from_chars(start, p_, d);
        if (r.ec != std::errc() || r.ptr != p_ || !std::isfinite(d)) fail("number out of range");
        v.d_ = d;
        return v;
    }
    value parse_value(int depth)
    {
        skip_ws();
        if (p_ >= end_) fail("unexpected end");
        const char c = *p_;
        if (c == '{' || c == '[') {
            if (depth >= 128) fail("nested too deeply");
            const bool obj = c == '{';
            value v;
            v.kind_ = obj ? kind::object : kind::array;
            ++p_;
            skip_ws();
            if (p_ < end_ && *p_ == (obj ? '}' : ']')) {
                ++p_;
                return v;
            }
            for (;;) {
                skip_ws();
                if (obj) {
                    std::string key = parse_string();
                    if (v.find(key) != nullptr) fail("duplicate key");
                    skip_ws();
                    if (p_ >= end_ || *p_ != ':') fail("expected ':'");
                    ++p_;
                    v.keys_.push_back(std::move(key));
                }
                v.items_.push_back(parse_value(depth + 1));
                skip_ws();
                if (p_ < end_ && *p_ == ',') {
                    ++p_;
                    continue;
                }
                if (p_ < end_ && *p_ == (obj ? '}' : ']')) {
                    ++p_;
                    break;
                }
                fail("expected ',' or a closing bracket");
            }
            return v;
        }
        if (c == '"') return value(parse_string());
        if (literal("null")) return value();
        if (literal("true")) return value(true);
        if (literal("false")) return value(false);
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail("unexpected character");
    }

    const char *p_;
    const char *end_;
};

/// Parses exactly one JSON document; throws error(MAILOAUTH_PROTOCOL) saying
/// why when the text is not valid JSON (or has duplicate keys).
inline value parse(std::string_view text) { return parser(text).document(); }

} // namespace json

// ------------------------------------------------- error::from_last_error

inline error error::from_last_error(int32_t rc) noexcept
{
    try {
        char *raw = nullptr;
        std::string text;
        if (mailoauth_last_error(&raw) == MAILOAUTH_OK) text = detail::take_string(raw);
        std::string message;
        json::value rec;
        bool parsed = false;
        if (!text.empty()) {
            try {
                rec = json::parse(text);
                parsed = rec.is_object() && rec.int_or("code", -1) == rc;
            } catch (const error &) {
                parsed = false;
            }
        }
        if (parsed) message = rec.string_or("message");
        if (message.empty()) message = name_of(rc);
        error e(rc, message);
        e.json_ = text;
        if (parsed) {
            e.hint_ = rec.string_or("hint");
            e.provider_error_ = rec.string_or("provider_error");
            e.provider_code_ = rec.string_or("provider_code");
            e.server_reply_ = rec.string_or("server_reply");
            e.correlation_id_ = rec.string_or("correlation_id");
            if (const json::value *r = rec.find("retry_after_s"); r != nullptr && r->is_int())
                e.retry_after_s_ = r->as_int();
            e.rejected_ = rec.strings_at("rejected");
        }
        return e;
    } catch (...) {
        // Out of memory while describing an error: keep the code at least.
        return error(rc, "");
    }
}

// =================================================================== logger

/// Receives the library's log lines: level 1 (error) .. 5 (trace) and a
/// UTF-8 message (never a token, code, secret or password). Runs on a thread
/// that is inside a library call; must return quickly, must not call into
/// the library; exceptions it throws are swallowed.
using log_function = std::function<void(int level, const std::string &message)>;

namespace detail {
struct logger_slot {
    std::mutex lock;
    log_function *current = nullptr;
};
// Never destroyed: a log call could still arrive while statics are torn down.
inline logger_slot &logger() noexcept
{
    static logger_slot *slot = new logger_slot;
    return *slot;
}
inline void log_trampoline(void *user_data, int32_t level, const char *message) noexcept
{
    try {
        auto *fn = static_cast<log_function *>(user_data);
        if (fn != nullptr && *fn) (*fn)(static_cast<int>(level), std::string(message != nullptr ? message : ""));
    } catch (...) {
        // a logger must never throw through the library
    }
}
} // namespace detail

/// Installs the process-wide logger (the library has one per process),
/// replacing the previous one; the wrapper keeps `fn` alive until it is
/// replaced or cleared. An empty `fn` or `max_level` 0 turns logging off.
inline void set_logger(int max_level, log_function fn)
{
    detail::logger_slot &slot = detail::logger();
    std::lock_guard<std::mutex> hold(slot.lock);
    std::unique_ptr<log_function> next;
    if (fn && max_level > 0) next = std::make_unique<log_function>(std::move(fn));
    const int32_t rc = next ? mailoauth_set_logger(max_level, detail::log_trampoline, next.get())
                            : mailoauth_set_logger(0, nullptr, nullptr);
    if (rc != MAILOAUTH_OK) throw error::from_last_error(rc);
    // mailoauth_set_logger returned: no call of the old logger is running.
    delete slot.current;
    slot.current = next.release();
}

/// Turns the logger off and releases the function.
inline void clear_logger() { set_logger(0, nullptr); }

// ============================================================= host store

/// Thrown by a store callback to fail with a value of its own (it reaches
/// the host in the last error of the CACHE_IO the library reports).
struct store_failure : std::runtime_error {
    explicit store_failure(int32_t value_, const std::string &what = "store callback failed")
        : std::runtime_error(what), value(value_ != 0 ? value_ : 1)
    {
    }
    int32_t value;
};

/// The token cache and poll state in the host's own database: opaque,
/// already protected blobs, one per key ("grant:<account>",
/// "poll:<account>/<protocol>/<folder>"). Use cache protection "key".
/// Callbacks run on a thread inside a library call and must not call into
/// the library. An exception becomes a failure (store_failure's value, else 1).
struct store_callbacks {
    /// The blob of `key`, or std::nullopt when there is none. Required.
    std::function<std::optional<std::vector<uint8_t>>(const std::string &key)> load;
    /// Stores `data` under `key`; empty data removes the blob. Required.
    std::function<void(const std::string &key, const std::vector<uint8_t> &data)> save;
    /// Locks (`lock` true, waiting up to `timeout_ms`) or unlocks `key`;
    /// returns false when the lock was not had in time (BUSY). Optional.
    std::function<bool(const std::string &key, bool lock, int32_t timeout_ms)> lock;
};

namespace detail {
inline int32_t store_load(void *user_data, const char *key, mailoauth_blob *sink) noexcept
{
    try {
        auto *cb = static_cast<store_callbacks *>(user_data);
        std::optional<std::vector<uint8_t>> blob = cb->load(key != nullptr ? key : "");
        if (!blob) return 0;
        return mailoauth_blob_set(sink, blob->data(), static_cast<int64_t>(blob->size()));
    } catch (const store_failure &f) {
        return f.value;
    } catch (...) {
        return 1;
    }
}
inline int32_t store_save(void *user_data, const char *key, const uint8_t *data, int64_t len) noexcept
{
    try {
        auto *cb = static_cast<store_callbacks *>(user_data);
        std::vector<uint8_t> blob;
        if (data != nullptr && len > 0) blob.assign(data, data + len);
        cb->save(key != nullptr ? key : "", blob);
        return 0;
    } catch (const store_failure &f) {
        return f.value;
    } catch (...) {
        return 1;
    }
}
inline int32_t store_lock(void *user_data, const char *key, int32_t lock, int32_t timeout_ms) noexcept
{
    try {
        auto *cb = static_cast<store_callbacks *>(user_data);
        return cb->lock(key != nullptr ? key : "", lock != 0, timeout_ms) ? 0 : 1;
    } catch (const store_failure &f) {
        return f.value;
    } catch (...) {
        return 1;
    }
}

/// What the C library may still call back into while any handle of a
/// context lives: the registered store callbacks. Shared by the context and
/// its child handles, so handles can be destroyed in any order.
struct context_keepalive {
    std::mutex lock;
    std::vector<std::unique_ptr<store_callbacks>> stores;
};

struct context_deleter {
    void operator()(mailoauth_context *c) const noexcept { mailoauth_context_free(c); }
};
struct op_deleter {
    void operator()(mailoauth_op *o) const noexcept { mailoauth_op_free(o); }
};
struct mailbox_deleter {
    void operator()(mailoauth_mailbox *m) const noexcept { mailoauth_mailbox_free(m); }
};
} // namespace detail

// ======================================================================= op

/// A long operation (consent, account test). Move-only; destroying it
/// cancels it if it still runs.
class op {
public:
    op() = default;
    op(op &&) noexcept = default;
    op &operator=(op &&o) noexcept
    {
        // the old handle goes first, while what its callbacks need still lives
        h_ = std::move(o.h_);
        keep_ = std::move(o.keep_);
        return *this;
    }

    /// Waits up to `timeout` (0: only looks, for a UI timer): true when done,
    /// false while still running; throws the operation's failure.
    bool wait(std::chrono::milliseconds timeout) const
    {
        const int32_t rc = mailoauth_op_wait(get(), detail::clamp_ms(timeout));
        if (rc == MAILOAUTH_PENDING) return false;
        check(rc);
        return true;
    }

    /// Waits up to `timeout` for the operation and returns its result; when
    /// the time is up it cancels the operation and throws error(TIMEOUT).
    json::value wait_or_cancel(std::chrono::milliseconds timeout) const
    {
        timeout = detail::clamp_duration(timeout);
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            if (wait(left)) return result();
        }
        check(mailoauth_op_cancel(get()));
        // A cancelled op ends promptly; it may also have finished or failed
        // on its own just now.
        const int32_t rc = mailoauth_op_wait(get(), 10000);
        if (rc == MAILOAUTH_OK) return result();
        if (rc != MAILOAUTH_CANCELLED && rc != MAILOAUTH_PENDING) throw error::from_last_error(rc);
        throw error(MAILOAUTH_TIMEOUT, "the operation did not finish within " + std::to_string(timeout.count()) +
                                           " ms and was cancelled");
    }

    /// {"state", "authorize_url", "user_code", "verification_uri", "message", "expires_at"}
    json::value info() const { return json::parse(info_json()); }
    std::string info_json() const
    {
        char *out = nullptr;
        check(mailoauth_op_info(get(), &out));
        return detail::take_string(out);
    }
    /// The finished operation's result; throws its failure, or
    /// error(INVALID_STATE) while it still runs.
    json::value result() const { return json::parse(result_json()); }
    std::string result_json() const
    {
        char *out = nullptr;
        check(mailoauth_op_result(get(), &out));
        return detail::take_string(out);
    }
    /// Cancels from any thread; a waiting wait() throws CANCELLED promptly.
    void cancel() const { check(mailoauth_op_cancel(get())); }

    mailoauth_op *handle() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

private:
    friend class context;
    op(mailoauth_op *h, std::shared_ptr<detail::context_keepalive> keep) : keep_(std::move(keep)), h_(h) {}
    mailoauth_op *get() const
    {
        if (!h_) throw error(MAILOAUTH_INVALID_STATE, "empty (moved-from) mailoauth::op");
        return h_.get();
    }
    // keep_ is declared first so it is destroyed after the handle.
    std::shared_ptr<detail::context_keepalive> keep_;
    std::unique_ptr<mailoauth_op, detail::op_deleter> h_;
};

// ================================================================== mailbox

/// One entry of mailbox::poll().
struct message_summary {
    std::string id; ///< stable across connections
    int64_t size = 0;
    std::string from;
    std::vector<std::string> to;
    std::string subject;
    std::string date; ///< RFC 3339
    std::string message_id;
};

/// One entry of mailbox::list_folders().
struct folder {
    std::string name;
    std::string delimiter;
    std::string special; ///< inbox, sent, drafts, trash, junk, archive, all, flagged, or empty
};

/// An open mailbox folder (IMAP or POP3). Move-only; its calls are
/// serialised by the library; cancel() works from any thread.
class mailbox {
public:
    mailbox() = default;
    mailbox(mailbox &&) noexcept = default;
    mailbox &operator=(mailbox &&o) noexcept
    {
        // freeing a mailbox may unlock through the store: free it while the store lives
        h_ = std::move(o.h_);
        keep_ = std::move(o.keep_);
        return *this;
    }

    /// The unacknowledged messages, oldest first, at most max_messages.
    std::vector<message_summary> poll(int32_t max_messages = 100) const
    {
        const json::value list = json::parse(poll_json(max_messages));
        std::vector<message_summary> out;
        out.reserve(list.size());
        for (const json::value &m : list.items()) {
            message_summary s;
            s.id = m.string_or("id");
            s.size = m.int_or("size", 0);
            s.from = m.string_or("from");
            s.to = m.strings_at("to");
            s.subject = m.string_or("subject");
            s.date = m.string_or("date");
            s.message_id = m.string_or("message_id");
            out.push_back(std::move(s));
        }
        return out;
    }
    std::string poll_json(int32_t max_messages = 100) const
    {
        char *out = nullptr;
        check(mailoauth_mailbox_poll(get(), max_messages, &out));
        return detail::take_string(out);
    }
    /// The raw RFC 5322 bytes of one message.
    std::vector<uint8_t> fetch(const std::string &id) const
    {
        uint8_t *out = nullptr;
        int64_t len = 0;
        check(mailoauth_mailbox_fetch(get(), detail::c_arg(id, "id"), &out, &len));
        return detail::take_bytes(out, len);
    }
    /// Streams one message into a file (created or replaced).
    void fetch_to_file(const std::string &id, const std::string &path) const
    {
        check(mailoauth_mailbox_fetch_to_file(get(), detail::c_arg(id, "id"), detail::c_arg(path, "path")));
    }
    /// "seen", "delete", "move:<folder>" (IMAP) or "keep".
    void ack(const std::string &id, const std::string &action) const
    {
        check(mailoauth_mailbox_ack(get(), detail::c_arg(id, "id"), detail::c_arg(action, "action")));
    }
    /// true when new mail may be there, false when none came within
    /// `timeout`; throws CANCELLED or a network failure.
    bool wait(std::chrono::milliseconds timeout) const
    {
        const int32_t rc = mailoauth_mailbox_wait(get(), detail::clamp_ms(timeout));
        if (rc == MAILOAUTH_TIMEOUT) return false;
        check(rc);
        return true;
    }
    /// IMAP folders with their special use.
    std::vector<folder> list_folders() const
    {
        char *out = nullptr;
        check(mailoauth_mailbox_list_folders(get(), &out));
        const json::value list = json::parse(detail::take_string(out));
        std::vector<folder> folders;
        for (const json::value &f : list.items())
            folders.push_back(folder{f.string_or("name"), f.string_or("delimiter"), f.string_or("special")});
        return folders;
    }
    /// Cancels the call running on this mailbox (from any thread).
    void cancel() const { check(mailoauth_mailbox_cancel(get())); }

    mailoauth_mailbox *handle() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

private:
    friend class context;
    mailbox(mailoauth_mailbox *h, std::shared_ptr<detail::context_keepalive> keep) : keep_(std::move(keep)), h_(h) {}
    mailoauth_mailbox *get() const
    {
        if (!h_) throw error(MAILOAUTH_INVALID_STATE, "empty (moved-from) mailoauth::mailbox");
        return h_.get();
    }
    std::shared_ptr<detail::context_keepalive> keep_;
    std::unique_ptr<mailoauth_mailbox, detail::mailbox_deleter> h_;
};

// ================================================================== context

/// The answer of an SMTP send.
struct send_result {
    std::string message_id;
    std::vector<std::string> accepted;
    std::string server_reply;
};

/// A library context: configuration, token cache, worker threads. Move-only;
/// may be shared by reference between threads. Destroying it cancels the
/// calls running on it.
class context {
public:
    context() = default;
    /// Creates a context from the configuration (ABI.md "Context"); checks
    /// the ABI version of the loaded library.
    explicit context(const json::value &config) : context(config.dump(), raw_json_tag{}) {}
    /// The same from JSON text the host already has (e.g. a file); the
    /// library checks it strictly.
    static context from_json_text(const std::string &config_json) { return context(config_json, raw_json_tag{}); }

    context(context &&) noexcept = default;
    context &operator=(context &&o) noexcept
    {
        h_ = std::move(o.h_);
        keep_ = std::move(o.keep_);
        return *this;
    }

    /// The resolved configuration (never a secret).
    json::value describe() const { return json::parse(describe_json()); }
    std::string describe_json() const
    {
        char *out = nullptr;
        check(mailoauth_context_describe(get(), &out));
        return detail::take_string(out);
    }
    /// Cancels every call running on this context now (any thread).
    void cancel() const { check(mailoauth_context_cancel(get())); }
    /// The 32-byte key of cache protection "key" (copied; zeroed by the library on free).
    void set_cache_key(const uint8_t *key, std::size_t len) const
    {
        check(mailoauth_context_set_cache_key(get(), key, detail::byte_len(len, "key")));
    }
    void set_cache_key(const std::vector<uint8_t> &key) const { set_cache_key(key.data(), key.size()); }
    /// Moves unreadable cache entries aside.
    void cache_reset() const { check(mailoauth_cache_reset(get())); }

    /// Routes the cache through the host's callbacks (kept alive by this
    /// context and its child handles). std::nullopt unregisters (back to files).
    void set_store(std::optional<store_callbacks> callbacks) const
    {
        mailoauth_context *c = get();
        std::lock_guard<std::mutex> hold(keep_->lock);
        if (!callbacks) {
            check(mailoauth_context_set_store(c, nullptr, nullptr, nullptr, nullptr));
            return;
        }
        if (!callbacks->load || !callbacks->save)
            throw error(MAILOAUTH_INVALID_ARGUMENT, "store callbacks need load and save");
        auto cb = std::make_unique<store_callbacks>(std::move(*callbacks));
        const bool has_lock = static_cast<bool>(cb->lock);
        keep_->stores.reserve(keep_->stores.size() + 1); // nothing may throw once registered
        check(mailoauth_context_set_store(c, detail::store_load, detail::store_save,
                                          has_lock ? detail::store_lock : nullptr, cb.get()));
        keep_->stores.push_back(std::move(cb));
    }

    // ---------------------------------------------------------- consent

    /// Starts a consent ({"account", "protocols", "flow", "prompt", "timeout_s", …}).
    op consent_begin(const json::value &request) const
    {
        const std::string text = request.dump();
        mailoauth_op *out = nullptr;
        check(mailoauth_consent_begin(get(), text.c_str(), &out));
        return op(out, keep_);
    }

    /// Blocking consent: begins it, calls `on_waiting(info)` once when the
    /// sign-in URL or device code is known (to open the browser or show the
    /// code when "browser" is "none"), and waits up to `timeout`. When the
    /// time is up the consent is cancelled and error(TIMEOUT) thrown. Returns
    /// the result ({"account", "username", "tenant_id", "scopes", "expires_at"}).
    json::value consent(const json::value &request, std::chrono::milliseconds timeout,
                        const std::function<void(const json::value &info)> &on_waiting = {}) const
    {
        op o = consent_begin(request);
        const auto deadline = std::chrono::steady_clock::now() + detail::clamp_duration(timeout);
        auto left = [&] {
            return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        };
        if (on_waiting) {
            for (;;) {
                const json::value info = o.info();
                if (info.find("authorize_url") != nullptr || info.find("user_code") != nullptr) {
                    on_waiting(info);
                    break;
                }
                const auto rest = left();
                if (rest.count() <= 0) break;
                if (o.wait((std::min)(rest, std::chrono::milliseconds(50)))) return o.result();
            }
        }
        const auto rest = left();
        return o.wait_or_cancel(rest.count() > 0 ? rest : std::chrono::milliseconds(0));
    }

    // ----------------------------------------------------------- tokens

    /// A valid access token for `account` (cache or silent refresh; never
    /// prompts). `protocols`: a space-separated subset of "smtp imap pop3",
    /// empty for all.
    secret_string token(const std::string &account, const std::string &protocols = {},
                        bool force_refresh = false) const
    {
        char *out = nullptr;
        check(mailoauth_token_get(get(), detail::c_arg(account, "account"),
                                  protocols.empty() ? nullptr : detail::c_arg(protocols, "protocols"),
                                  force_refresh ? MAILOAUTH_TOKEN_FORCE_REFRESH : 0, &out));
        return detail::take_secret(out);
    }
    /// [{"account", "username", "tenant_id", "protocols", "state", …}], never a secret.
    json::value account_list() const
    {
        char *out = nullptr;
        check(mailoauth_account_list(get(), &out));
        return json::parse(detail::take_string(out));
    }
    /// Signs an account out (its grant leaves the store).
    void account_remove(const std::string &account) const
    {
        check(mailoauth_account_remove(get(), detail::c_arg(account, "account")));
    }

    /// Starts the account test ("Test settings"): {"account", "protocols"}.
    /// The op's result is {"steps": [{"step", "code", "name", "message", "hint", "server_reply", "ms"}]}.
    op account_test_begin(const json::value &request) const
    {
        const std::string text = request.dump();
        mailoauth_op *out = nullptr;
        check(mailoauth_account_test_begin(get(), text.c_str(), &out));
        return op(out, keep_);
    }
    /// The account test, blocking up to `timeout` (cancelled and
    /// error(TIMEOUT) after that). A failed step is in the result, not thrown.
    json::value account_test(const json::value &request, std::chrono::milliseconds timeout) const
    {
        return account_test_begin(request).wait_or_cancel(timeout);
    }

    // ------------------------------------------------------------- SMTP

    /// Sends a message built from {"account", "message": {"from", "to", …}, …}.
    send_result smtp_send(const json::value &request) const
    {
        const std::string text = request.dump();
        char *out = nullptr;
        check(mailoauth_smtp_send(get(), text.c_str(), &out));
        return to_send_result(detail::take_string(out));
    }
    /// Sends RFC 5322 bytes as they are ({"account", "envelope": {…} | "from_headers"}).
    send_result smtp_send_mime(const json::value &request, const std::vector<uint8_t> &mime) const
    {
        return smtp_send_mime(request, mime.data(), mime.size());
    }
    send_result smtp_send_mime(const json::value &request, const uint8_t *mime, std::size_t len) const
    {
        const std::string text = request.dump();
        char *out = nullptr;
        check(mailoauth_smtp_send_mime(get(), text.c_str(), mime, detail::byte_len(len, "mime"), &out));
        return to_send_result(detail::take_string(out));
    }
    /// Forwards a polled message ({"account", "to", "mode", "comment"}).
    send_result smtp_forward(const json::value &request, const std::vector<uint8_t> &original) const
    {
        const std::string text = request.dump();
        char *out = nullptr;
        check(mailoauth_smtp_forward(get(), text.c_str(), original.data(),
                                     detail::byte_len(original.size(), "original"), &out));
        return to_send_result(detail::take_string(out));
    }

    // --------------------------------------------------------- mailboxes

    /// Opens a folder ({"account", "protocol", "folder", "start", "lock_timeout_ms", …}).
    mailbox open_mailbox(const json::value &request) const
    {
        const std::string text = request.dump();
        mailoauth_mailbox *out = nullptr;
        check(mailoauth_mailbox_open(get(), text.c_str(), &out));
        return mailbox(out, keep_);
    }

    mailoauth_context *handle() const noexcept { return h_.get(); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

private:
    struct raw_json_tag {};
    context(const std::string &config_json, raw_json_tag) : keep_(std::make_shared<detail::context_keepalive>())
    {
        mailoauth_context *out = nullptr;
        check(mailoauth_context_new(detail::c_arg(config_json, "config"), MAILOAUTH_ABI_VERSION, &out));
        h_.reset(out);
    }
    mailoauth_context *get() const
    {
        if (!h_) throw error(MAILOAUTH_INVALID_STATE, "empty (moved-from) mailoauth::context");
        return h_.get();
    }
    static send_result to_send_result(const std::string &text)
    {
        const json::value v = json::parse(text);
        return send_result{v.string_or("message_id"), v.strings_at("accepted"), v.string_or("server_reply")};
    }

    // keep_ first: the store callbacks outlive the handle.
    std::shared_ptr<detail::context_keepalive> keep_;
    std::unique_ptr<mailoauth_context, detail::context_deleter> h_;
};

} // namespace mailoauth

#endif // MAILOAUTH_HPP
