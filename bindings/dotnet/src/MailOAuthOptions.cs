// A typed configuration (ABI.md "Context"): only the keys set are sent, so
// the library's defaults apply to the rest. Anything not covered here goes
// into Extra (an unknown key is an error the library names).
using System.Collections.Generic;

namespace MailOAuth
{
    /// <summary>A mail server: host, port, security ("tls", "starttls", "none").</summary>
    public sealed class MailServer
    {
        public string Host { get; set; }
        public int Port { get; set; }
        public string Security { get; set; }

        public MailServer() { }

        public MailServer(string host, int port, string security)
        {
            Host = host;
            Port = port;
            Security = security;
        }

        internal JsonObject ToJson()
        {
            var o = new JsonObject();
            if (Host != null) o.Add("host", Host);
            if (Port != 0) o.Add("port", Port);
            if (Security != null) o.Add("security", Security);
            return o;
        }
    }

    public sealed class MailOAuthOptions
    {
        /// <summary>Required: the app registration's client id.</summary>
        public string ClientId { get; set; }
        /// <summary>"microsoft" (default), "microsoft-usgov", "microsoft-china" or "custom".</summary>
        public string Provider { get; set; }
        /// <summary>"organizations" (default), "common", a tenant domain or id.</summary>
        public string Tenant { get; set; }
        public string Authority { get; set; }
        /// <summary>Scopes per protocol ("smtp", "imap", "pop3", "app").</summary>
        public IDictionary<string, string> Scopes { get; set; }
        /// <summary>Servers per protocol ("smtp", "imap", "pop3").</summary>
        public IDictionary<string, MailServer> Servers { get; set; }
        public IList<string> TrustedHosts { get; set; }
        /// <summary>Folder of the token cache (null: the per-user default).</summary>
        public string CachePath { get; set; }
        /// <summary>"user" (default), "machine", "key" or "none".</summary>
        public string CacheProtection { get; set; }
        /// <summary>Extra PEM trust anchors.</summary>
        public string CaFile { get; set; }
        /// <summary>"system" (default), "none", or a proxy URL.</summary>
        public string Proxy { get; set; }
        public int? HttpTimeoutMs { get; set; }
        /// <summary>"system" (default) opens the browser; "none" leaves it to the host.</summary>
        public string Browser { get; set; }
        /// <summary>"en" (default) or "de": the language of messages and hints.</summary>
        public string Language { get; set; }
        /// <summary>Local test services only (http:// and security none on 127.0.0.0/8, ::1).</summary>
        public bool? AllowPlaintextLoopback { get; set; }
        public bool? IgnoreUnknownKeys { get; set; }
        /// <summary>Any further keys, written as given (e.g. "limits", "redirect", "endpoints").</summary>
        public JsonObject Extra { get; set; }

        /// <summary>The configuration document.</summary>
        public JsonObject ToJson()
        {
            var o = new JsonObject();
            if (Provider != null) o.Add("provider", Provider);
            if (Tenant != null) o.Add("tenant", Tenant);
            if (ClientId != null) o.Add("client_id", ClientId);
            if (Authority != null) o.Add("authority", Authority);
            if (Scopes != null)
            {
                var s = new JsonObject();
                foreach (var kv in Scopes) s.Add(kv.Key, kv.Value);
                o.Add("scopes", s);
            }
            if (Servers != null)
            {
                var s = new JsonObject();
                foreach (var kv in Servers) s.Add(kv.Key, kv.Value == null ? null : kv.Value.ToJson());
                o.Add("servers", s);
            }
            if (TrustedHosts != null) o.Add("trusted_hosts", TrustedHosts);
            if (CachePath != null || CacheProtection != null)
            {
                var c = new JsonObject();
                if (CachePath != null) c.Add("path", CachePath);
                if (CacheProtection != null) c.Add("protection", CacheProtection);
                o.Add("cache", c);
            }
            if (CaFile != null) o.Add("tls", new JsonObject { { "ca_file", CaFile } });
            if (Proxy != null || HttpTimeoutMs.HasValue)
            {
                var h = new JsonObject();
                if (Proxy != null) h.Add("proxy", Proxy);
                if (HttpTimeoutMs.HasValue) h.Add("timeout_ms", HttpTimeoutMs.Value);
                o.Add("http", h);
            }
            if (Browser != null) o.Add("browser", Browser);
            if (Language != null) o.Add("language", Language);
            if (AllowPlaintextLoopback.HasValue) o.Add("allow_plaintext_loopback", AllowPlaintextLoopback.Value);
            if (IgnoreUnknownKeys.HasValue) o.Add("ignore_unknown_keys", IgnoreUnknownKeys.Value);
            if (Extra != null)
                foreach (var kv in Extra) o[kv.Key] = kv.Value;
            return o;
        }
    }
}
