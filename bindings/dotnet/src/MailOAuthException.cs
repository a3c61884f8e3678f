// Result codes (ABI.md "Result codes") and the one exception type every
// failure becomes, filled from mailoauth_last_error's JSON.
using System;
using System.Collections.Generic;
using MailOAuth.Interop;

namespace MailOAuth
{
    /// <summary>The library's result codes. Never renumbered (ABI.md).</summary>
    public static class ResultCode
    {
        public const int Ok = 0;
        public const int Pending = 1;
        public const int InvalidArgument = 100;
        public const int InvalidConfig = 101;
        public const int AbiMismatch = 102;
        public const int InvalidState = 103;
        public const int Busy = 104;
        public const int ConsentRequired = 200;
        public const int Cancelled = 201;
        public const int Timeout = 202;
        public const int Declined = 203;
        public const int ProviderError = 204;
        public const int Throttled = 205;
        public const int AccountMismatch = 206;
        public const int Network = 300;
        public const int Tls = 301;
        public const int Protocol = 302;
        public const int AuthRejected = 303;
        public const int MailboxAccessDenied = 304;
        public const int SendRejected = 305;
        public const int NotFound = 306;
        public const int TooLarge = 307;
        public const int UntrustedHost = 308;
        public const int CacheIo = 400;
        public const int CacheCorrupt = 401;
        public const int CacheVersion = 402;
        public const int Internal = 900;

        /// <summary>The static English name of a code ("CONSENT_REQUIRED").</summary>
        public static string Name(int code)
        {
            MailOAuthLibrary.EnsureLoaded();
            return Utf8.FromNative(NativeMethods.mailoauth_result_str(code));
        }
    }

    /// <summary>A failed call: the result code and the calling thread's last-error record
    /// (message and hint in the context's language, English or German).</summary>
    [Serializable]
    public class MailOAuthException : Exception
    {
        /// <summary>The result code (ResultCode.*).</summary>
        public int Code { get; private set; }
        /// <summary>Its name, e.g. "CONSENT_REQUIRED".</summary>
        public string Name { get; private set; }
        /// <summary>What an administrator or user should do, when the library knows.</summary>
        public string Hint { get; private set; }
        /// <summary>The identity provider's code, e.g. "AADSTS700082".</summary>
        public string ProviderCode { get; private set; }
        /// <summary>The OAuth error, e.g. "invalid_grant".</summary>
        public string ProviderError { get; private set; }
        /// <summary>The mail server's reply (control characters removed, at most 1 KiB).</summary>
        public string ServerReply { get; private set; }
        public string CorrelationId { get; private set; }
        /// <summary>Seconds to wait before retrying (THROTTLED).</summary>
        public long? RetryAfterSeconds { get; private set; }
        /// <summary>Recipients the server refused (SEND_REJECTED).</summary>
        public IList<string> Rejected { get; private set; }
        /// <summary>The whole last-error record as the library gave it.</summary>
        public string ErrorJson { get; private set; }

        public MailOAuthException(int code, string name, string message, string hint = null)
            : base(message ?? name ?? ("mailoauth error " + code))
        {
            Code = code;
            Name = name;
            Hint = hint;
            Rejected = new List<string>();
        }

        internal MailOAuthException(int code, JsonObject record, string json, Exception inner)
            : base(record.GetString("message") ?? ("mailoauth error " + code), inner)
        {
            Code = code;
            Name = record.GetString("name");
            Hint = record.GetString("hint");
            ProviderCode = record.GetString("provider_code");
            ProviderError = record.GetString("provider_error");
            ServerReply = record.GetString("server_reply");
            CorrelationId = record.GetString("correlation_id");
            RetryAfterSeconds = record.GetInt64("retry_after_s");
            Rejected = record.GetStrings("rejected");
            ErrorJson = json;
        }

        public override string ToString()
        {
            string s = GetType().FullName + " [" + Code + " " + Name + "]: " + Message;
            if (!string.IsNullOrEmpty(Hint)) s += " (hint: " + Hint + ")";
            if (!string.IsNullOrEmpty(ProviderCode)) s += " (provider: " + ProviderCode + ")";
            if (!string.IsNullOrEmpty(ServerReply)) s += " (server: " + ServerReply + ")";
            if (InnerException != null) s += " ---> " + InnerException;
            return s;
        }

        /// <summary>Reads the calling thread's last error. Must run right after the failing
        /// call, on the same thread (no await in between).</summary>
        internal static MailOAuthException FromLastError(int code, Exception inner = null)
        {
            NativeString s;
            int rc = NativeMethods.mailoauth_last_error(out s);
            using (s)
            {
                string json = rc == ResultCode.Ok ? s.Read() : null;
                JsonObject record = null;
                if (json != null)
                {
                    try { record = Json.ParseObject(json); }
                    catch (FormatException) { record = null; }
                }
                // The record belongs to this failure only if it names the same code.
                if (record == null || record.GetInt64("code") != code)
                {
                    record = new JsonObject();
                    record.Add("code", (long)code);
                    record.Add("name", Utf8.FromNative(NativeMethods.mailoauth_result_str(code)));
                    record.Add("message", "mailoauth call failed: " + record.GetString("name"));
                    json = record.ToString();
                }
                return new MailOAuthException(code, record, json, inner);
            }
        }
    }
}
