// Silent tokens, the cached accounts and sign-out (ABI.md "Tokens and accounts").
using System;
using System.Collections.Generic;
using MailOAuth.Interop;

namespace MailOAuth
{
    /// <summary>A cached account (never a secret).</summary>
    public sealed class AccountInfo
    {
        public string Account { get; private set; }
        public string Username { get; private set; }
        public string TenantId { get; private set; }
        public IList<string> Protocols { get; private set; }
        /// <summary>"ok", "consent_required" or "throttled".</summary>
        public string State { get; private set; }
        public long? Since { get; private set; }
        public long? AccessTokenExpiresAt { get; private set; }
        public JsonObject Json { get; private set; }

        internal AccountInfo(JsonObject o)
        {
            Json = o;
            Account = o.GetString("account");
            Username = o.GetString("username");
            TenantId = o.GetString("tenant_id");
            Protocols = o.GetStrings("protocols");
            State = o.GetString("state");
            Since = o.GetInt64("since");
            AccessTokenExpiresAt = o.GetInt64("access_token_expires_at");
        }
    }

    public sealed class MailOAuthTokens
    {
        /// <summary>MAILOAUTH_TOKEN_FORCE_REFRESH.</summary>
        public const int ForceRefreshFlag = 1;

        private readonly MailOAuthContext _context;

        internal MailOAuthTokens(MailOAuthContext context) { _context = context; }

        /// <summary>An access token for <paramref name="account"/>, from the cache or by a silent
        /// refresh; never prompts (CONSENT_REQUIRED when a sign-in is needed). The library's copy
        /// is zeroed and freed at once; keep the returned string no longer than needed.</summary>
        /// <param name="protocols">space-separated subset of "smtp imap pop3"; null: all.</param>
        public string Get(string account, string protocols = null, bool forceRefresh = false)
        {
            if (account == null) throw new ArgumentNullException("account");
            NativeSecret s;
            _context.Call(NativeMethods.mailoauth_token_get(_context.Handle, Utf8.ToNative(account, "account"),
                Utf8.ToNative(protocols, "protocols"), forceRefresh ? ForceRefreshFlag : 0, out s));
            using (s) return s.Read();
        }

        /// <summary>The accounts in the cache.</summary>
        public IList<AccountInfo> ListAccounts()
        {
            NativeString s;
            _context.Call(NativeMethods.mailoauth_account_list(_context.Handle, out s));
            var result = new List<AccountInfo>();
            using (s)
                foreach (var x in Json.ParseArray(s.Read()))
                    if (x is JsonObject) result.Add(new AccountInfo((JsonObject)x));
            return result;
        }

        /// <summary>Signs the account out: its grant is removed from the store.</summary>
        public void Remove(string account)
        {
            if (account == null) throw new ArgumentNullException("account");
            _context.Call(NativeMethods.mailoauth_account_remove(_context.Handle, Utf8.ToNative(account, "account")));
        }
    }
}
