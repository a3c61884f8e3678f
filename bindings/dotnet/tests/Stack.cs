// The local stack (tests/stack/up.sh): its description file, the identity
// imitation's admin API, a configuration for it, and a browser consent with
// auto-consent (the way tests/host/stackutil.py drives it).
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Text;
using System.Threading;

namespace MailOAuth.Tests
{
    internal static class Stack
    {
        internal const string Alice = "alice@contoso.test";
        internal const string Bob = "bob@contoso.test";
        internal const string Carol = "carol@contoso.test";

        private static JsonObject _stack;
        private static string _whyNot;

        internal static string StackFile
        {
            get { return Environment.GetEnvironmentVariable("MAILOAUTH_STACK_FILE") ?? "/tmp/mailoauth-stack.json"; }
        }

        /// <summary>The stack description; skips the test (or fails under MAILOAUTH_REQUIRE_STACK=1).</summary>
        internal static JsonObject Need()
        {
            if (_stack != null) return _stack;
            if (_whyNot == null)
            {
                try
                {
                    var s = Json.ParseObject(File.ReadAllText(StackFile));
                    Http("GET", s.GetObject("idp").GetString("http") + "/health", null);
                    _stack = s;
                    return s;
                }
                catch (Exception e)
                {
                    _whyNot = "the local stack is not up (" + StackFile + "): " + e.Message + "; start it with tests/stack/up.sh";
                }
            }
            if (Environment.GetEnvironmentVariable("MAILOAUTH_REQUIRE_STACK") == "1") throw new Exception(_whyNot);
            throw new SkipException(_whyNot);
        }

        internal static void ResetIfUsed()
        {
            if (_stack == null) return;
            try { Admin("/admin/reset", null); }
            catch (Exception e) { Console.WriteLine("note: resetting the identity imitation failed: " + e.Message); }
        }

        internal static string IdpBase { get { return Need().GetObject("idp").GetString("http"); } }

        internal static string Http(string method, string url, string jsonBody)
        {
            var req = (HttpWebRequest)WebRequest.Create(url);
            req.Method = method;
            req.Proxy = null;
            req.Timeout = 30000;
            req.AllowAutoRedirect = true;
            if (jsonBody != null)
            {
                var bytes = Encoding.UTF8.GetBytes(jsonBody);
                req.ContentType = "application/json";
                req.ContentLength = bytes.Length;
                using (var rs = req.GetRequestStream()) rs.Write(bytes, 0, bytes.Length);
            }
            using (var resp = (HttpWebResponse)req.GetResponse())
            using (var r = new StreamReader(resp.GetResponseStream(), Encoding.UTF8))
            {
                if ((int)resp.StatusCode != 200) throw new Exception(method + " " + url + ": " + (int)resp.StatusCode);
                return r.ReadToEnd();
            }
        }

        internal static string Admin(string path, JsonObject body)
        {
            return Http("POST", IdpBase + path, body == null ? "{}" : Json.Serialize(body));
        }

        /// <summary>A fresh identity imitation with auto-consent on.</summary>
        internal static void FreshIdp()
        {
            Admin("/admin/reset", null);
            Admin("/admin/settings", new JsonObject { { "auto_consent", true } });
        }

        internal static string TempDir(string what)
        {
            string d = Path.Combine(Path.GetTempPath(), "mailoauth-dotnet-" + what + "-" + Guid.NewGuid().ToString("N").Substring(0, 12));
            Directory.CreateDirectory(d);
            return d;
        }

        /// <summary>A configuration for the local stack, with its own cache folder.</summary>
        internal static MailOAuthOptions Options(string language = null)
        {
            var s = Need();
            var idp = s.GetObject("idp");
            var imap = s.GetObject("imap");
            var pop3 = s.GetObject("pop3");
            var smtp = s.GetObject("smtp");
            return new MailOAuthOptions
            {
                Provider = "custom",
                Authority = idp.GetString("http"),
                AllowPlaintextLoopback = true,
                Tenant = idp.GetString("tenant"),
                ClientId = idp.GetString("client_id"),
                Scopes = new Dictionary<string, string>
                {
                    { "smtp", "https://outlook.office.com/SMTP.Send" },
                    { "imap", "https://outlook.office.com/IMAP.AccessAsUser.All" },
                    { "pop3", "https://outlook.office.com/POP.AccessAsUser.All" },
                    { "app", "https://outlook.office365.com/.default" },
                },
                Servers = new Dictionary<string, MailServer>
                {
                    { "imap", new MailServer(imap.GetString("host"), (int)imap.GetInt64("tls"), "tls") },
                    { "pop3", new MailServer(pop3.GetString("host"), (int)pop3.GetInt64("tls"), "tls") },
                    { "smtp", new MailServer(smtp.GetString("host"), (int)smtp.GetInt64("starttls"), "starttls") },
                },
                CaFile = s.GetString("ca_file"),
                CacheProtection = "none",
                CachePath = TempDir("cache"),
                Browser = "none",
                Language = language,
            };
        }

        internal static MailOAuthContext Context(string language = null)
        {
            return new MailOAuthContext(Options(language));
        }

        /// <summary>Plays the browser: follows the authorize URL (the imitation answers with the
        /// redirect at once under auto-consent) to the library's loopback listener.</summary>
        internal static void FollowAuthorize(string url)
        {
            string page = Http("GET", url, null);
            if (page == null) throw new Exception("no listener page");
        }

        /// <summary>A browser consent, completed through auto-consent, waited for with Wait(ms).</summary>
        internal static ConsentResult Consent(MailOAuthContext ctx, string account, params string[] protocols)
        {
            var req = new ConsentRequest { Account = account, Flow = "browser" };
            if (protocols.Length > 0) req.Protocols = protocols;
            using (var op = ctx.BeginConsent(req))
            {
                FollowAuthorize(op.Info().AuthorizeUrl);
                Assert.True(op.Wait(30000), "consent done within 30 s");
                return op.Result();
            }
        }

        internal static string Maildir(string address)
        {
            var parts = address.Split('@');
            return Need().GetString("maildir").Replace("%d", parts[1]).Replace("%n", parts[0]);
        }

        /// <summary>The delivered message of <paramref name="address"/> containing <paramref name="needle"/>
        /// (waits up to 20 s for Postfix).</summary>
        internal static byte[] WaitDelivered(string address, string needle)
        {
            var n = Encoding.UTF8.GetBytes(needle);
            for (int i = 0; i < 200; i++)
            {
                foreach (var sub in new[] { "new", "cur" })
                {
                    string d = Path.Combine(Maildir(address), sub);
                    if (!Directory.Exists(d)) continue;
                    foreach (var f in Directory.GetFiles(d))
                    {
                        byte[] b;
                        try { b = File.ReadAllBytes(f); }
                        catch (IOException) { continue; }
                        if (IndexOf(b, n) >= 0) return b;
                    }
                }
                Thread.Sleep(100);
            }
            throw new Exception("no mail with " + needle + " delivered to " + address);
        }

        internal static int IndexOf(byte[] hay, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= hay.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && hay[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }

        internal static string Nonce()
        {
            return "dn" + Guid.NewGuid().ToString("N").Substring(0, 16);
        }
    }
}
