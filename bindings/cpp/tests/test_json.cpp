// bindings/cpp/tests/test_json.cpp: mailoauth::json (the request builder and
// the strict reader of the C++ wrapper), secret_string and the library
// basics, without the mail stack.
//
// - escaping: quotes, backslash, every control character as \u00XX, DEL,
//   UTF-8 (2-, 3- and 4-byte) passed through byte for byte, NUL as \u0000;
// - invalid UTF-8 refused (INVALID_ARGUMENT naming the key): stray
//   continuation bytes, overlongs, surrogates, > U+10FFFF, truncated
//   sequences, 0xFE/0xFF, in values and in keys;
// - the reader: RFC 8259 grammar, duplicate keys, lone surrogates, raw
//   control characters, depth, numbers (int64 limits, doubles);
// - properties over random strings and random documents (fixed seeds,
//   MAILOAUTH_TEST_LOOPS scales them): dump → parse gives the same value, and
//   the dumped text has no raw control character and is valid UTF-8;
// - the same random strings through the library's own strict parser:
//   a configuration whose scopes.smtp is the string, read back from
//   mailoauth_context_describe;
// - errors from the library: INVALID_CONFIG naming the key, the record's
//   JSON, ABI_MISMATCH is not reachable through the wrapper;
// - secret_string moves.
// Prints one line per failing check and "N passed, N failed".
#include "testutil.hpp"
#include "alloc_audit.hpp"

#include <random>

using tu::value;
namespace mo = mailoauth;
namespace json = mailoauth::json;
using namespace std::chrono_literals;

namespace {

int loops(int base)
{
    const char *v = std::getenv("MAILOAUTH_TEST_LOOPS");
    const int k = v && *v ? std::atoi(v) : 1;
    return base * (k > 0 ? k : 1);
}

std::string utf8(uint32_t cp)
{
    std::string o;
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
    return o;
}

/// A random valid UTF-8 string, weighted towards the characters that need
/// care: quotes, backslashes, controls, DEL, multi-byte and astral ones.
std::string random_string(std::mt19937 &rng, bool allow_nul)
{
    std::uniform_int_distribution<int> len_d(0, 40), kind_d(0, 9);
    std::string s;
    const int n = len_d(rng);
    for (int i = 0; i < n; ++i) {
        uint32_t cp;
        switch (kind_d(rng)) {
        case 0: cp = std::uniform_int_distribution<uint32_t>(allow_nul ? 0 : 1, 0x1F)(rng); break;
        case 1: cp = '"'; break;
        case 2: cp = '\\'; break;
        case 3: cp = std::uniform_int_distribution<uint32_t>(0x7F, 0x7FF)(rng); break;
        case 4: {
            cp = std::uniform_int_distribution<uint32_t>(0x800, 0xFFFD)(rng);
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0x2028; // line separator: valid, often mishandled
            break;
        }
        case 5: cp = std::uniform_int_distribution<uint32_t>(0x10000, 0x10FFFF)(rng); break;
        case 6: cp = '/'; break;
        default: cp = std::uniform_int_distribution<uint32_t>(0x20, 0x7E)(rng); break;
        }
        s += utf8(cp);
    }
    return s;
}

value random_value(std::mt19937 &rng, int depth)
{
    std::uniform_int_distribution<int> kind_d(0, depth >= 4 ? 4 : 6);
    switch (kind_d(rng)) {
    case 0: return value();
    case 1: return value(std::uniform_int_distribution<int>(0, 1)(rng) == 1);
    case 2: return value(static_cast<int64_t>(rng()) * (std::uniform_int_distribution<int>(0, 1)(rng) ? -1 : 1));
    case 3: {
        double d = std::uniform_real_distribution<double>(-1e12, 1e12)(rng);
        return value(d);
    }
    case 4: return value(random_string(rng, true));
    case 5: {
        value a = json::array();
        const int n = std::uniform_int_distribution<int>(0, 4)(rng);
        for (int i = 0; i < n; ++i) a.push_back(random_value(rng, depth + 1));
        return a;
    }
    default: {
        value o = json::object();
        const int n = std::uniform_int_distribution<int>(0, 4)(rng);
        for (int i = 0; i < n; ++i) o.set(random_string(rng, true), random_value(rng, depth + 1));
        return o;
    }
    }
}

bool has_raw_control(const std::string &text)
{
    for (char c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return true;
    return false;
}

// ------------------------------------------------------------- escaping

void test_escaping()
{
    CHECK(json::object({{"s", "a\"b"}}).dump() == "{\"s\":\"a\\\"b\"}", json::object({{"s", "a\"b"}}).dump());
    CHECK(value("a\\b").dump() == "\"a\\\\b\"", value("a\\b").dump());
    CHECK(value("line\nbreak\r\t").dump() == "\"line\\u000abreak\\u000d\\u0009\"", value("line\nbreak\r\t").dump());
    CHECK(value(std::string("\x01\x1f\x7f", 3)).dump() == "\"\\u0001\\u001f\\u007f\"",
          value(std::string("\x01\x1f\x7f", 3)).dump());
    CHECK(value(std::string("a\0b", 3)).dump() == "\"a\\u0000b\"", "NUL is escaped, not cut: ",
          value(std::string("a\0b", 3)).dump());
    const std::string u = "Grüße 日本 😀 \u2028";
    CHECK(value(u).dump() == "\"" + u + "\"", "UTF-8 passes through unchanged: ", value(u).dump());
    CHECK(value("/").dump() == "\"/\"", "slash stays");
    // Every control character as \u00XX, lower-case hex.
    for (int c = 0; c < 0x20; ++c) {
        char want[8];
        std::snprintf(want, sizeof want, "\\u%04x", c);
        const std::string got = value(std::string(1, static_cast<char>(c))).dump();
        CHECK(got == "\"" + std::string(want) + "\"", "control ", c, " → ", got);
    }
    // Numbers and the rest.
    CHECK(value(0).dump() == "0" && value(-42).dump() == "-42", "ints");
    CHECK(value(std::numeric_limits<int64_t>::min()).dump() == "-9223372036854775808", "int64 min");
    CHECK(value(std::numeric_limits<uint64_t>::max() / 4).dump() == "4611686018427387903", "uint64 within int64");
    EXPECT_ERROR(value(std::numeric_limits<uint64_t>::max()), MAILOAUTH_INVALID_ARGUMENT, "int64");
    EXPECT_ERROR(value(std::nan("")), MAILOAUTH_INVALID_ARGUMENT, "finite");
    EXPECT_ERROR(value(HUGE_VAL), MAILOAUTH_INVALID_ARGUMENT, "finite");
    CHECK(value(0.1).dump() == "0.1", "shortest double: ", value(0.1).dump());
    CHECK(json::parse(value(1e300).dump()).as_double() == 1e300, "1e300 round trip: ", value(1e300).dump());
    CHECK(value(nullptr).dump() == "null" && value(true).dump() == "true" && value(false).dump() == "false",
          "literals");
    CHECK(value(static_cast<const char *>(nullptr)).is_null(), "a NULL C string is null");
    CHECK(json::object().dump() == "{}" && json::array().dump() == "[]", "empty containers");
    const value nested = json::object({{"to", json::array({"a@x", "b@x"})}, {"n", json::object({{"k", 1}})}});
    CHECK(nested.dump() == "{\"to\":[\"a@x\",\"b@x\"],\"n\":{\"k\":1}}", nested.dump());
    CHECK(value(std::vector<std::string>{"smtp", "imap"}).dump() == "[\"smtp\",\"imap\"]", "vector<string>");
    EXPECT_ERROR(json::object({{"a", 1}, {"a", 2}}), MAILOAUTH_INVALID_ARGUMENT, "'a'");
    value o = json::object({{"a", 1}});
    o.set("a", 2).set("b", 3);
    CHECK(o.dump() == "{\"a\":2,\"b\":3}", "set replaces, appends: ", o.dump());
    EXPECT_ERROR(value(1).push_back(2), MAILOAUTH_INVALID_ARGUMENT, "array");
}

void test_invalid_utf8()
{
    const char *bad[] = {
        "\x80",                 // stray continuation byte
        "a\xbf",                // stray continuation byte after ASCII
        "\xc0\xaf",             // overlong '/'
        "\xc1\xbf",             // overlong
        "\xe0\x80\xaf",         // overlong 3-byte
        "\xf0\x80\x80\xaf",     // overlong 4-byte
        "\xed\xa0\x80",         // surrogate U+D800
        "\xed\xbf\xbf",         // surrogate U+DFFF
        "\xf4\x90\x80\x80",     // U+110000
        "\xf5\x80\x80\x80",     // lead byte beyond U+10FFFF
        "\xe2\x82",             // truncated 3-byte
        "\xf0\x9f\x98",         // truncated 4-byte
        "\xc3",                 // truncated 2-byte at the end
        "\xc3(",                // bad continuation
        "\xfe",                 // never valid
        "\xff",                 // never valid
        "ok\xe2\x28\xa1",       // bad second byte
    };
    for (const char *b : bad) {
        const std::string s = std::string("pre ") + b + " post";
        EXPECT_ERROR(json::object({{"subject", s}}).dump(), MAILOAUTH_INVALID_ARGUMENT, "'subject'");
        EXPECT_ERROR(json::object({{s, 1}}).dump(), MAILOAUTH_INVALID_ARGUMENT, "not valid UTF-8");
        EXPECT_ERROR(json::array({s}).dump(), MAILOAUTH_INVALID_ARGUMENT, "not valid UTF-8");
        CHECK(!mo::detail::utf8_valid(s), "utf8_valid refuses ", tu::cat(std::hex, static_cast<int>(static_cast<unsigned char>(b[0]))));
    }
    // the boundaries that are valid
    for (const char *good : {"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
                             "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"}) {
        CHECK(mo::detail::utf8_valid(good), "valid boundary refused");
        CHECK(json::parse(value(good).dump()).as_string() == good, "boundary round trip");
    }
    // The refusal names the key in which it happened, and the byte.
    try {
        (void)json::object({{"message", json::object({{"to", json::array({"ok", "b\xff"})}})}}).dump();
        CHECK(false, "invalid UTF-8 in a nested array passed");
    } catch (const mo::error &e) {
        CHECK(e.code() == MAILOAUTH_INVALID_ARGUMENT && e.message().find("'to'") != std::string::npos &&
                  e.message().find("byte 1") != std::string::npos,
              e.message());
    }
}

// ---------------------------------------------------------------- parser

void test_parser()
{
    const char *invalid[] = {
        "",           " ",          "{",           "}",          "[1,]",          "{\"a\":1,}",    "{\"a\" 1}",
        "{a:1}",      "'x'",        "\"abc",       "\"\\x\"",    "\"\\u12\"",     "\"\\ud800\"",   "\"\\udc00\"",
        "\"\\ud800\\u0041\"",       "01",          "1.",         ".5",            "-",             "+1",
        "1e",         "1e+",        "0x10",        "NaN",        "Infinity",      "tru",           "nul",
        "[1 2]",      "{\"a\":1}x", "[] []",       "\"\t\"",     "\"a\nb\"",      "{\"a\":1,\"a\":2}", "1e400",
        "\"\xff\"",   "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
    };
    for (const char *t : invalid) EXPECT_ERROR(json::parse(t), MAILOAUTH_PROTOCOL, "invalid JSON");

    const value v = json::parse(" {\"a\" : [1, -0, 2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\"],"
                                " \"b\": {}, \"c\": \"\\u0000\"} ");
    CHECK(v.is_object() && v.size() == 3, v.dump());
    CHECK(v["a"][0].as_int() == 1 && v["a"][1].is_int() && v["a"][1].as_int() == 0, "ints");
    CHECK(v["a"][2].as_double() == 2500.0 && !v["a"][2].is_int(), "2.5e3 is a double");
    CHECK(v["a"][3].as_bool() && !v["a"][4].as_bool() && v["a"][5].is_null(), "literals");
    CHECK(v["a"][6].as_string() == "x\u00e9\U0001F600/\b\f\n\r\t", "escapes decoded");
    CHECK(v["c"].as_string() == std::string(1, '\0'), "\\u0000 decodes to NUL");
    CHECK(v["missing"].is_null() && v["a"][99].is_null() && v["a"][-1].is_null(), "absent lookups are null");
    CHECK(v.string_or("missing", "fb") == "fb" && v.int_or("b", 7) == 7, "fallbacks");
    EXPECT_ERROR(v["a"].as_string(), MAILOAUTH_PROTOCOL, "string");
    EXPECT_ERROR(v["a"][2].as_int(), MAILOAUTH_PROTOCOL, "integer");

    // On temporaries: members and items are moved out, never left dangling (ASan watches).
    int64_t sum = 0;
    for (const value &x : json::parse("[1, 2, 3]").items()) sum += x.as_int();
    CHECK(sum == 6, "range-for over a temporary's items()");
    const std::string deep = json::parse("{\"a\": {\"b\": [\"x\", \"y\"]}}")["a"]["b"][1].as_string();
    CHECK(deep == "y", "chained lookups on a temporary: ", deep);
    const value member = json::parse("{\"k\": {\"n\": 1}}")["k"];
    CHECK(member["n"].as_int() == 1 && json::parse("{}")["missing"].is_null(), "a member taken from a temporary");
    CHECK(json::parse("{\"z\": 1, \"y\": 2}").keys() == (std::vector<std::string>{"z", "y"}), "keys in order");

    CHECK(json::parse("9223372036854775807").as_int() == std::numeric_limits<int64_t>::max(), "int64 max");
    CHECK(json::parse("-9223372036854775808").as_int() == std::numeric_limits<int64_t>::min(), "int64 min");
    const value big = json::parse("9223372036854775808");
    CHECK(big.is_number() && !big.is_int() && big.as_double() == 9223372036854775808.0, "beyond int64: a double");

    // depth: 128 levels pass, 129 do not
    CHECK(json::parse(std::string(128, '[') + std::string(128, ']')).is_array(), "depth 128");
    EXPECT_ERROR(json::parse(std::string(129, '[') + std::string(129, ']')), MAILOAUTH_PROTOCOL, "deeply");
    EXPECT_ERROR(json::parse(std::string(100000, '[')), MAILOAUTH_PROTOCOL, "deeply");
}

// ------------------------------------------------------------ properties

void test_properties()
{
    std::mt19937 rng(20260601);
    const int n = loops(3000);
    int bad = 0;
    for (int i = 0; i < n; ++i) {
        const std::string s = random_string(rng, true);
        const value doc = json::object({{"s", s}, {s, json::array({s, 1})}});
        std::string text;
        try {
            text = doc.dump();
        } catch (const mo::error &e) {
            bad += !CHECK(false, "dump of a valid string threw: ", e.what());
            continue;
        }
        if (has_raw_control(text) || !mo::detail::utf8_valid(text)) {
            bad += !CHECK(false, "dumped text has a raw control character or bad UTF-8: ", text);
            continue;
        }
        try {
            const value back = json::parse(text);
            if (back["s"].as_string() != s || back != doc) bad += !CHECK(false, "round trip differs: ", text);
        } catch (const mo::error &e) {
            bad += !CHECK(false, "parse of our own dump failed: ", e.what(), " in ", text);
        }
        if (bad > 10) break;
    }
    CHECK(bad == 0, bad, " random strings failed the round trip");

    // Random documents: dump → parse → equal, and dump is stable.
    bad = 0;
    for (int i = 0; i < loops(800); ++i) {
        const value v = random_value(rng, 0);
        const std::string text = v.dump();
        const value back = json::parse(text);
        if (back != v || back.dump() != text) bad += !CHECK(false, "document round trip differs: ", text);
        if (bad > 10) break;
    }
    CHECK(bad == 0, bad, " random documents failed the round trip");

    // Random invalid UTF-8 spliced into valid strings is always refused.
    const char *splice[] = {"\x80", "\xc0\x80", "\xed\xb0\x80", "\xf8\x88\x80\x80\x80", "\xe1\x80", "\xff"};
    bad = 0;
    for (int i = 0; i < loops(500); ++i) {
        std::string s = random_string(rng, false);
        // at a code point boundary: find one by walking back over continuation bytes
        std::size_t at = s.empty() ? 0 : std::uniform_int_distribution<std::size_t>(0, s.size())(rng);
        while (at > 0 && at < s.size() && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
        s.insert(at, splice[i % 6]);
        try {
            (void)json::object({{"k", s}}).dump();
            bad += !CHECK(false, "invalid UTF-8 passed");
        } catch (const mo::error &e) {
            if (e.code() != MAILOAUTH_INVALID_ARGUMENT) bad += !CHECK(false, "wrong code ", e.code());
        }
    }
    CHECK(bad == 0, bad, " invalid strings were not refused");
}

// The library's own strict parser: the string travels as cache.path of a
// configuration (any text but CR, LF and NUL, which configurations refuse)
// and comes back through context_describe.
void test_library_round_trip()
{
    std::mt19937 rng(7);
    int bad = 0, checked = 0;
    const int n = loops(300);
    for (int i = 0; i < n; ++i) {
        std::string s = random_string(rng, false);
        s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n'; }), s.end());
        const std::string path = "/nonexistent/" + s;
        const value cfg = json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                        {"cache", json::object({{"protection", "none"}, {"path", path}})}});
        try {
            mo::context ctx(cfg);
            const value d = ctx.describe();
            ++checked;
            if (d["cache"]["path"].as_string() != path)
                bad += !CHECK(false, "the library read back a different string: sent ", value(path).dump(), " got ",
                              d["cache"]["path"].dump());
        } catch (const mo::error &e) {
            bad += !CHECK(false, "the library refused our JSON: ", e.what(), " for ", value(path).dump());
        }
        if (bad > 10) break;
    }
    CHECK(bad == 0 && checked == n, bad, " of ", n, " strings did not survive the library's parser");

    // CR, LF and NUL inside a configuration string: refused cleanly, naming the key.
    for (const std::string &s : {std::string("a\rb"), std::string("a\nb"), std::string("a\0b", 3)}) {
        const value cfg = json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                        {"cache", json::object({{"protection", "none"}, {"path", "/x/" + s}})}});
        EXPECT_ERROR(mo::context{cfg}, MAILOAUTH_INVALID_ARGUMENT, "cache.path");
    }

    // The whole resolved configuration parses with our reader and reflects what we sent.
    const value cfg = json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                    {"tenant", "contoso.com"},
                                    {"language", "de"},
                                    {"cache", json::object({{"protection", "none"}, {"path", "/tmp/mo ü \"q\""}})}});
    try {
        mo::context ctx(cfg);
        const value d = ctx.describe();
        CHECK(d["tenant"].as_string() == "contoso.com" && d["language"].as_string() == "de" &&
                  d["cache"]["path"].as_string() == "/tmp/mo ü \"q\"",
              d.dump());
        CHECK(d["servers"]["smtp"]["port"].as_int() == 587, "preset filled in: ", d["servers"].dump());
        CHECK(json::parse(ctx.describe_json()) == d, "describe_json and describe agree");
    } catch (const mo::error &e) {
        CHECK(false, e.what());
    }
}

// --------------------------------------------------- library and errors

void test_library_errors()
{
    CHECK(mo::version() == MAILOAUTH_VERSION, "version ", mo::version(), " vs header ", MAILOAUTH_VERSION);
    CHECK(mo::abi_compatible() && mo::abi_version() >= MAILOAUTH_ABI_VERSION, "ABI ", mo::abi_version());
    CHECK(mo::result_name(MAILOAUTH_CONSENT_REQUIRED) == "CONSENT_REQUIRED", "result_name");

    // A configuration error: code, name, a message naming the key, the record.
    const mo::error e = EXPECT_ERROR(mo::context(json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                                              {"colour", "blue"}})),
                                     MAILOAUTH_INVALID_CONFIG, "colour");
    CHECK(std::string(e.what()).find("INVALID_CONFIG (101)") == 0, "what(): ", e.what());
    try {
        const value rec = json::parse(e.json());
        CHECK(rec["code"].as_int() == 101 && rec["name"].as_string() == "INVALID_CONFIG", e.json());
    } catch (const mo::error &pe) {
        CHECK(false, "last error record unreadable: ", pe.what(), " ", e.json());
    }
    EXPECT_ERROR(mo::context(json::object({{"client_id", "nope"}})), MAILOAUTH_INVALID_CONFIG, "client_id");
    EXPECT_OK(CHECK(mo::context::from_json_text("{\"client_id\": \"00000000-0000-0000-0000-000000000000\", "
                                                "\"tenant\": \"contoso.com\"}")
                        .describe()["tenant"]
                        .as_string() == "contoso.com",
                    "from_json_text"));
    EXPECT_ERROR(mo::context::from_json_text("{\"client_id\":"), MAILOAUTH_INVALID_CONFIG, nullptr);
    EXPECT_ERROR(mo::context::from_json_text("{\"client_id\":\"00000000-0000-0000-0000-000000000000\"}\xff"),
                 MAILOAUTH_INVALID_ARGUMENT, nullptr);
    EXPECT_ERROR(mo::context::from_json_text(std::string("{\"client_id\":\"a\0b\"}", 20)), MAILOAUTH_INVALID_ARGUMENT,
                 "NUL");
    // A German context answers in German (hint and message) for a call error.
    try {
        tu::temp_dir dir;
        mo::context de(json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                     {"language", "de"},
                                     {"cache", json::object({{"protection", "none"}, {"path", dir.path.string()}})}}));
        const mo::error ce = EXPECT_ERROR(de.token("nobody@contoso.test"), MAILOAUTH_CONSENT_REQUIRED, "Zustimmung");
        CHECK(ce.message() != ce.name() && ce.json().find("\"message\"") != std::string::npos, ce.json());
        const mo::error ae = EXPECT_ERROR(de.token(std::string("a\0b", 3)), MAILOAUTH_INVALID_ARGUMENT, "account");
        (void)ae;
        EXPECT_ERROR(de.token("a\r\nb@contoso.test"), MAILOAUTH_INVALID_ARGUMENT, nullptr);
        EXPECT_ERROR(de.token("b\xff@contoso.test"), MAILOAUTH_INVALID_ARGUMENT, nullptr);
        EXPECT_ERROR(de.account_remove("nobody@contoso.test"), MAILOAUTH_NOT_FOUND, nullptr);
        CHECK(de.account_list().is_array() && de.account_list().size() == 0, de.account_list().dump());
    } catch (const std::exception &x) {
        CHECK(false, x.what());
    }
    // A failed operation carries the library's hint, in the context's
    // language: a device-code consent at an identity provider that is not
    // there (a closed loopback port) fails with NETWORK.
    try {
        tu::temp_dir dir;
        mo::context de(json::object({{"provider", "custom"},
                                     {"authority", "http://127.0.0.1:9"},
                                     {"allow_plaintext_loopback", true},
                                     {"client_id", "00000000-0000-0000-0000-000000000000"},
                                     {"scopes", json::object({{"smtp", "https://outlook.office.com/SMTP.Send"},
                                                              {"imap", "https://outlook.office.com/IMAP.AccessAsUser.All"},
                                                              {"pop3", "https://outlook.office.com/POP.AccessAsUser.All"}})},
                                     {"language", "de"},
                                     {"cache", json::object({{"protection", "none"}, {"path", dir.path.string()}})}}));
        mo::op o = de.consent_begin(json::object({{"account", "a@contoso.test"}, {"flow", "device"}, {"timeout_s", 30}}));
        // the longest timeout there is: clamped, no overflow (UBSan watches)
        const mo::error ne = EXPECT_ERROR(o.wait_or_cancel(std::chrono::milliseconds::max()), MAILOAUTH_NETWORK, "127.0.0.1");
        CHECK(ne.hint().find("Proxy") != std::string::npos && ne.hint().find("prüfen") != std::string::npos,
              "a German hint: ", ne.json());
        EXPECT_ERROR(o.result(), MAILOAUTH_NETWORK, nullptr);
        CHECK(o.info()["state"].as_string() == "failed", o.info_json());
    } catch (const std::exception &x) {
        CHECK(false, x.what());
    }
}

void test_secret_and_moves()
{
    mo::secret_string a("token-abc", 9);
    CHECK(a.view() == "token-abc" && a.size() == 9 && std::string(a.c_str()) == "token-abc", "secret holds it");
    mo::secret_string b(std::move(a));
    CHECK(a.empty() && a.view().empty() && std::string(a.c_str()).empty(), "moved-from secret is empty");
    CHECK(b.view() == "token-abc", "moved-to secret has it");
    mo::secret_string c("x", 1);
    c = std::move(b);
    CHECK(c.view() == "token-abc" && b.empty(), "move assignment");
    static_assert(!std::is_copy_constructible_v<mo::secret_string>, "secrets are not copied");
    static_assert(!std::is_copy_constructible_v<mo::context>, "contexts are move-only");
    static_assert(!std::is_copy_constructible_v<mo::op>, "ops are move-only");
    static_assert(!std::is_copy_constructible_v<mo::mailbox>, "mailboxes are move-only");
    static_assert(std::is_nothrow_move_constructible_v<mo::context> && std::is_nothrow_move_assignable_v<mo::mailbox>,
                  "moves do not throw");

    // A moved-from context refuses calls with INVALID_STATE, the moved-to works.
    tu::temp_dir dir;
    mo::context one(json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                  {"cache", json::object({{"protection", "none"}, {"path", dir.path.string()}})}}));
    mo::context two(std::move(one));
    CHECK(!one && two, "the handle moved");
    EXPECT_ERROR(one.describe(), MAILOAUTH_INVALID_STATE, "moved-from");
    EXPECT_OK(two.describe());
    mo::context three;
    three = std::move(two);
    EXPECT_OK(three.cancel());
    EXPECT_ERROR(two.cancel(), MAILOAUTH_INVALID_STATE, nullptr);
    mo::op empty_op;
    EXPECT_ERROR(empty_op.wait(0ms), MAILOAUTH_INVALID_STATE, nullptr);
    mo::mailbox empty_mb;
    EXPECT_ERROR(empty_mb.poll(), MAILOAUTH_INVALID_STATE, nullptr);
}

void test_logger_basics()
{
    std::vector<std::string> lines;
    std::mutex m;
    mo::set_logger(5, [&](int level, const std::string &msg) {
        std::lock_guard<std::mutex> hold(m);
        lines.push_back(std::to_string(level) + " " + msg);
        throw std::runtime_error("a throwing logger must not break the library");
    });
    EXPECT_ERROR(mo::set_logger(9, [](int, const std::string &) {}), MAILOAUTH_INVALID_ARGUMENT, nullptr);
    // Something that logs: a configuration with an unknown key that is ignored (a warning).
    EXPECT_OK(mo::context(json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                        {"ignore_unknown_keys", true},
                                        {"colour", 1},
                                        {"cache", json::object({{"protection", "none"}, {"path", "/nonexistent/x"}})}})));
    std::size_t seen;
    {
        std::lock_guard<std::mutex> hold(m);
        seen = lines.size();
        bool named = false;
        for (const auto &l : lines) named = named || l.find("colour") != std::string::npos;
        CHECK(seen > 0 && named, "the logger received the warning about 'colour' (", seen, " lines)");
    }
    mo::clear_logger();
    EXPECT_OK(mo::context(json::object({{"client_id", "00000000-0000-0000-0000-000000000000"},
                                        {"ignore_unknown_keys", true},
                                        {"colour", 1}})));
    std::lock_guard<std::mutex> hold(m);
    CHECK(lines.size() == seen, "no log call after clear_logger");
}

} // namespace

int main()
{
    tu::start_watchdog(600);
    test_escaping();
    test_invalid_utf8();
    test_parser();
    test_properties();
    test_library_round_trip();
    test_library_errors();
    test_secret_and_moves();
    test_logger_basics();
    long produced = 0;
    const std::string leaks = audit::report(&produced);
    CHECK(produced > 0, "the allocation audit saw nothing: linked without the -Wl,--wrap options of run-tests.sh?");
    CHECK(leaks.empty(), "library memory and handles the wrapper did not release: ", leaks);
    return tu::summary();
}
