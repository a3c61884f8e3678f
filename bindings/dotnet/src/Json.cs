// A minimal JSON writer and reader (RFC 8259), so hosts never assemble
// request JSON by string concatenation. BCL-only (works on .NET Framework
// 4.6.2 without System.Text.Json or Newtonsoft).
//
// Values: null, bool, string, numbers (any integral type, float, double,
// decimal), JsonObject (ordered keys), any IDictionary with string keys, and
// any IEnumerable (arrays, lists) as JSON arrays. Parsing gives null, bool,
// string, long (integers that fit) or double, JsonArray, JsonObject.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace MailOAuth
{
    /// <summary>A JSON object that keeps its keys in insertion order. Supports collection
    /// initializers: <c>new JsonObject { { "account", a }, { "protocols", new[] { "smtp" } } }</c>.</summary>
    public sealed class JsonObject : IEnumerable<KeyValuePair<string, object>>
    {
        private readonly List<KeyValuePair<string, object>> _items = new List<KeyValuePair<string, object>>();
        private readonly Dictionary<string, int> _index = new Dictionary<string, int>(StringComparer.Ordinal);

        /// <summary>Adds a key; a key given twice is an error (the library refuses duplicates too).</summary>
        public void Add(string key, object value)
        {
            if (key == null) throw new ArgumentNullException("key");
            if (_index.ContainsKey(key)) throw new ArgumentException("duplicate JSON key: " + key, "key");
            _index[key] = _items.Count;
            _items.Add(new KeyValuePair<string, object>(key, value));
        }

        /// <summary>Gets a value (null when missing) or sets one (replacing in place).</summary>
        public object this[string key]
        {
            get
            {
                int i;
                return _index.TryGetValue(key, out i) ? _items[i].Value : null;
            }
            set
            {
                int i;
                if (_index.TryGetValue(key, out i)) _items[i] = new KeyValuePair<string, object>(key, value);
                else Add(key, value);
            }
        }

        public bool ContainsKey(string key) { return _index.ContainsKey(key); }

        public int Count { get { return _items.Count; } }

        public IEnumerable<string> Keys
        {
            get { foreach (var kv in _items) yield return kv.Key; }
        }

        public string GetString(string key) { return this[key] as string; }

        public long? GetInt64(string key)
        {
            object v = this[key];
            if (v is long) return (long)v;
            if (v is double) return (long)(double)v;
            return null;
        }

        public JsonObject GetObject(string key) { return this[key] as JsonObject; }

        public JsonArray GetArray(string key) { return this[key] as JsonArray; }

        /// <summary>The strings of an array value (empty when missing).</summary>
        public IList<string> GetStrings(string key)
        {
            var result = new List<string>();
            var a = GetArray(key);
            if (a != null)
                foreach (var x in a)
                    if (x is string) result.Add((string)x);
            return result;
        }

        public IEnumerator<KeyValuePair<string, object>> GetEnumerator() { return _items.GetEnumerator(); }

        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }

        public override string ToString() { return Json.Serialize(this); }
    }

    /// <summary>A parsed JSON array.</summary>
    public sealed class JsonArray : List<object>
    {
        public override string ToString() { return Json.Serialize(this); }
    }

    /// <summary>Serialize and parse.</summary>
    public static class Json
    {
        private const int MaxDepth = 256;

        public static string Serialize(object value)
        {
            var sb = new StringBuilder();
            Write(sb, value, 0);
            return sb.ToString();
        }

        private static void Write(StringBuilder sb, object v, int depth)
        {
            if (depth > MaxDepth) throw new ArgumentException("JSON nested too deeply");
            if (v == null) { sb.Append("null"); return; }
            if (v is string) { WriteString(sb, (string)v); return; }
            if (v is bool) { sb.Append((bool)v ? "true" : "false"); return; }
            if (v is int || v is long || v is short || v is sbyte || v is byte || v is ushort || v is uint || v is ulong)
            {
                sb.Append(Convert.ToString(v, CultureInfo.InvariantCulture));
                return;
            }
            if (v is double || v is float)
            {
                double d = Convert.ToDouble(v, CultureInfo.InvariantCulture);
                if (double.IsNaN(d) || double.IsInfinity(d)) throw new ArgumentException("JSON has no NaN or Infinity");
                sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
                return;
            }
            if (v is decimal) { sb.Append(((decimal)v).ToString(CultureInfo.InvariantCulture)); return; }
            if (v is char) { WriteString(sb, v.ToString()); return; }
            if (v is Enum) throw new ArgumentException("pass enum values as strings or numbers explicitly");
            if (v is JsonObject)
            {
                sb.Append('{');
                bool first = true;
                foreach (var kv in (JsonObject)v)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, kv.Key);
                    sb.Append(':');
                    Write(sb, kv.Value, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var dict = v as IDictionary;
            if (dict != null)
            {
                sb.Append('{');
                bool first = true;
                foreach (DictionaryEntry kv in dict)
                {
                    var key = kv.Key as string;
                    if (key == null) throw new ArgumentException("JSON object keys must be strings");
                    if (!first) sb.Append(',');
                    first = false;
                    WriteString(sb, key);
                    sb.Append(':');
                    Write(sb, kv.Value, depth + 1);
                }
                sb.Append('}');
                return;
            }
            var seq = v as IEnumerable;
            if (seq != null)
            {
                sb.Append('[');
                bool first = true;
                foreach (var x in seq)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    Write(sb, x, depth + 1);
                }
                sb.Append(']');
                return;
            }
            throw new ArgumentException("cannot write a " + v.GetType().Name + " as JSON");
        }

        private static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029')
                            sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else
                            sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }

        /// <summary>Parses one JSON document; FormatException names the position of an error.</summary>
        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            var p = new Parser(text);
            p.SkipWs();
            object v = p.Value(0);
            p.SkipWs();
            if (p.Pos != text.Length) throw p.Error("unexpected text after the JSON value");
            return v;
        }

        /// <summary>Parses a document that must be an object.</summary>
        public static JsonObject ParseObject(string text)
        {
            var o = Parse(text) as JsonObject;
            if (o == null) throw new FormatException("JSON: expected an object");
            return o;
        }

        /// <summary>Parses a document that must be an array.</summary>
        public static JsonArray ParseArray(string text)
        {
            var a = Parse(text) as JsonArray;
            if (a == null) throw new FormatException("JSON: expected an array");
            return a;
        }

        private sealed class Parser
        {
            private readonly string _s;
            internal int Pos;

            internal Parser(string s) { _s = s; }

            internal FormatException Error(string what)
            {
                return new FormatException("JSON: " + what + " at offset " + Pos.ToString(CultureInfo.InvariantCulture));
            }

            internal void SkipWs()
            {
                while (Pos < _s.Length && (_s[Pos] == ' ' || _s[Pos] == '\t' || _s[Pos] == '\n' || _s[Pos] == '\r')) Pos++;
            }

            private void Expect(string word)
            {
                if (string.CompareOrdinal(_s, Pos, word, 0, word.Length) != 0) throw Error("invalid literal");
                Pos += word.Length;
            }

            internal object Value(int depth)
            {
                if (depth > MaxDepth) throw Error("nested too deeply");
                if (Pos >= _s.Length) throw Error("unexpected end");
                char c = _s[Pos];
                switch (c)
                {
                    case '{': return Obj(depth);
                    case '[': return Arr(depth);
                    case '"': return Str();
                    case 't': Expect("true"); return true;
                    case 'f': Expect("false"); return false;
                    case 'n': Expect("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return Num();
                        throw Error("unexpected character");
                }
            }

            private JsonObject Obj(int depth)
            {
                var o = new JsonObject();
                Pos++;
                SkipWs();
                if (Pos < _s.Length && _s[Pos] == '}') { Pos++; return o; }
                while (true)
                {
                    SkipWs();
                    if (Pos >= _s.Length || _s[Pos] != '"') throw Error("expected a key");
                    string key = Str();
                    SkipWs();
                    if (Pos >= _s.Length || _s[Pos] != ':') throw Error("expected ':'");
                    Pos++;
                    SkipWs();
                    object v = Value(depth + 1);
                    if (o.ContainsKey(key)) throw Error("duplicate key \"" + key + "\"");
                    o.Add(key, v);
                    SkipWs();
                    if (Pos >= _s.Length) throw Error("unexpected end");
                    if (_s[Pos] == ',') { Pos++; continue; }
                    if (_s[Pos] == '}') { Pos++; return o; }
                    throw Error("expected ',' or '}'");
                }
            }

            private JsonArray Arr(int depth)
            {
                var a = new JsonArray();
                Pos++;
                SkipWs();
                if (Pos < _s.Length && _s[Pos] == ']') { Pos++; return a; }
                while (true)
                {
                    SkipWs();
                    a.Add(Value(depth + 1));
                    SkipWs();
                    if (Pos >= _s.Length) throw Error("unexpected end");
                    if (_s[Pos] == ',') { Pos++; continue; }
                    if (_s[Pos] == ']') { Pos++; return a; }
                    throw Error("expected ',' or ']'");
                }
            }

            private string Str()
            {
                Pos++;                                       // opening quote
                var sb = new StringBuilder();
                while (true)
                {
                    if (Pos >= _s.Length) throw Error("unterminated string");
                    char c = _s[Pos++];
                    if (c == '"') return sb.ToString();
                    if (c < 0x20) throw Error("control character in a string");
                    if (c != '\\') { sb.Append(c); continue; }
                    if (Pos >= _s.Length) throw Error("unterminated escape");
                    char e = _s[Pos++];
                    switch (e)
                    {
                        case '"': sb.Append('"'); break;
                        case '\\': sb.Append('\\'); break;
                        case '/': sb.Append('/'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'n': sb.Append('\n'); break;
                        case 'r': sb.Append('\r'); break;
                        case 't': sb.Append('\t'); break;
                        case 'u':
                            if (Pos + 4 > _s.Length) throw Error("short \\u escape");
                            int code;
                            if (!int.TryParse(_s.Substring(Pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out code))
                                throw Error("bad \\u escape");
                            Pos += 4;
                            sb.Append((char)code);
                            break;
                        default: throw Error("bad escape");
                    }
                }
            }

            private object Num()
            {
                int start = Pos;
                if (_s[Pos] == '-') Pos++;
                if (Pos >= _s.Length || _s[Pos] < '0' || _s[Pos] > '9') throw Error("bad number");
                if (_s[Pos] == '0') Pos++;
                else while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                bool integral = true;
                if (Pos < _s.Length && _s[Pos] == '.')
                {
                    integral = false;
                    Pos++;
                    if (Pos >= _s.Length || _s[Pos] < '0' || _s[Pos] > '9') throw Error("bad number");
                    while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                }
                if (Pos < _s.Length && (_s[Pos] == 'e' || _s[Pos] == 'E'))
                {
                    integral = false;
                    Pos++;
                    if (Pos < _s.Length && (_s[Pos] == '+' || _s[Pos] == '-')) Pos++;
                    if (Pos >= _s.Length || _s[Pos] < '0' || _s[Pos] > '9') throw Error("bad number");
                    while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                }
                string t = _s.Substring(start, Pos - start);
                long l;
                if (integral && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l)) return l;
                return double.Parse(t, NumberStyles.Float, CultureInfo.InvariantCulture);
            }
        }
    }
}
