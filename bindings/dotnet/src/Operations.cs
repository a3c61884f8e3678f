// Long operations (consent, account test): awaitable as a Task, or polled
// from a UI timer with Wait(0).
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using MailOAuth.Interop;

namespace MailOAuth
{
    /// <summary>A consent request (ABI.md "Consent").</summary>
    public sealed class ConsentRequest
    {
        /// <summary>The login hint and the name the grant is stored under.</summary>
        public string Account { get; set; }
        /// <summary>Subset of "smtp", "imap", "pop3" (null: all three, one prompt).</summary>
        public IList<string> Protocols { get; set; }
        /// <summary>"browser" (default), "device" or "app".</summary>
        public string Flow { get; set; }
        public string Prompt { get; set; }
        public int? TimeoutSeconds { get; set; }
        public bool? AcceptOtherAccount { get; set; }

        public JsonObject ToJson()
        {
            var o = new JsonObject();
            if (Account != null) o.Add("account", Account);
            if (Protocols != null) o.Add("protocols", Protocols);
            if (Flow != null) o.Add("flow", Flow);
            if (Prompt != null) o.Add("prompt", Prompt);
            if (TimeoutSeconds.HasValue) o.Add("timeout_s", TimeoutSeconds.Value);
            if (AcceptOtherAccount.HasValue) o.Add("accept_other_account", AcceptOtherAccount.Value);
            return o;
        }
    }

    /// <summary>The state of an operation (mailoauth_op_info).</summary>
    public sealed class OperationInfo
    {
        /// <summary>starting, waiting_for_user, exchanging, done, failed, cancelled.</summary>
        public string State { get; private set; }
        /// <summary>The sign-in URL (open it yourself with browser "none").</summary>
        public string AuthorizeUrl { get; private set; }
        /// <summary>Device code flow: the code to type at VerificationUri.</summary>
        public string UserCode { get; private set; }
        public string VerificationUri { get; private set; }
        public string Message { get; private set; }
        public long? ExpiresAt { get; private set; }
        public JsonObject Json { get; private set; }

        internal OperationInfo(JsonObject o)
        {
            Json = o;
            State = o.GetString("state");
            AuthorizeUrl = o.GetString("authorize_url");
            UserCode = o.GetString("user_code");
            VerificationUri = o.GetString("verification_uri");
            Message = o.GetString("message");
            ExpiresAt = o.GetInt64("expires_at");
        }
    }

    /// <summary>A running operation. Dispose cancels it if it still runs.</summary>
    public abstract class MailOAuthOperation : IDisposable
    {
        private readonly OpHandle _handle;
        private readonly MailOAuthContext _context;

        internal MailOAuthOperation(OpHandle handle, MailOAuthContext context)
        {
            _handle = handle;
            _context = context;
        }

        /// <summary>Waits up to <paramref name="timeoutMs"/> (0: only looks, for a UI timer;
        /// negative: as long as the operation may take). True when done, false while pending;
        /// a failure throws MailOAuthException.</summary>
        public bool Wait(int timeoutMs)
        {
            int rc = NativeMethods.mailoauth_op_wait(_handle, timeoutMs);
            if (rc == ResultCode.Pending) return false;
            _context.Call(rc);
            return true;
        }

        /// <summary>Completes when the operation is done; faults with MailOAuthException on
        /// failure; cancelling the token cancels the operation (the task is then cancelled).</summary>
        public Task WaitAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            return Task.Factory.StartNew(() =>
            {
                using (var c = new NativeCancellation(cancellationToken, () => NativeMethods.mailoauth_op_cancel(_handle)))
                {
                    int rc = NativeMethods.mailoauth_op_wait(_handle, -1);
                    c.Check(rc);                        // same thread as the call: the last error is ours
                }
            }, cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        /// <summary>WaitAsync, then the result: a cancelled wait gives a cancelled task, a failure a
        /// faulted one (with the MailOAuthException).</summary>
        internal Task<T> Complete<T>(CancellationToken cancellationToken, Func<T> result)
        {
            var tcs = new TaskCompletionSource<T>();
            WaitAsync(cancellationToken).ContinueWith(t =>
            {
                if (t.IsCanceled) tcs.TrySetCanceled(cancellationToken);
                else if (t.IsFaulted) tcs.TrySetException(t.Exception.InnerExceptions);
                else
                {
                    try { tcs.TrySetResult(result()); }
                    catch (Exception e) { tcs.TrySetException(e); }
                }
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            return tcs.Task;
        }

        /// <summary>The current state, URL or device code.</summary>
        public OperationInfo Info()
        {
            NativeString s;
            _context.Call(NativeMethods.mailoauth_op_info(_handle, out s));
            using (s) return new OperationInfo(Json.ParseObject(s.Read()));
        }

        /// <summary>The result document (INVALID_STATE while running; the failure when failed).</summary>
        public JsonObject ResultJson()
        {
            NativeString s;
            _context.Call(NativeMethods.mailoauth_op_result(_handle, out s));
            using (s) return Json.ParseObject(s.Read());
        }

        /// <summary>Cancels the operation (any thread, idempotent); a wait returns CANCELLED.</summary>
        public void Cancel()
        {
            _context.Call(NativeMethods.mailoauth_op_cancel(_handle));
        }

        public void Dispose()
        {
            _handle.Dispose();
        }
    }

    /// <summary>The result of a consent (never a secret).</summary>
    public sealed class ConsentResult
    {
        public string Account { get; private set; }
        public string Username { get; private set; }
        public string TenantId { get; private set; }
        public IList<string> Scopes { get; private set; }
        public IList<string> Protocols { get; private set; }
        public long? ExpiresAt { get; private set; }
        public JsonObject Json { get; private set; }

        internal ConsentResult(JsonObject o)
        {
            Json = o;
            Account = o.GetString("account");
            Username = o.GetString("username");
            TenantId = o.GetString("tenant_id");
            Scopes = o.GetStrings("scopes");
            Protocols = o.GetStrings("protocols");
            ExpiresAt = o.GetInt64("expires_at");
        }
    }

    public sealed class ConsentOperation : MailOAuthOperation
    {
        internal ConsentOperation(OpHandle h, MailOAuthContext c) : base(h, c) { }

        /// <summary>The result of a finished consent.</summary>
        public ConsentResult Result() { return new ConsentResult(ResultJson()); }

        /// <summary>Awaits the consent and returns its result.</summary>
        public Task<ConsentResult> CompleteAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            return Complete(cancellationToken, Result);
        }
    }

    /// <summary>One step of the account test.</summary>
    public sealed class AccountTestStep
    {
        /// <summary>"token", "smtp", "imap" or "pop3".</summary>
        public string Step { get; private set; }
        public int Code { get; private set; }
        public string Name { get; private set; }
        public string Message { get; private set; }
        public string Hint { get; private set; }
        public string ServerReply { get; private set; }
        public long Milliseconds { get; private set; }
        public bool Ok { get { return Code == ResultCode.Ok; } }

        internal AccountTestStep(JsonObject o)
        {
            Step = o.GetString("step");
            Code = (int)(o.GetInt64("code") ?? -1);
            Name = o.GetString("name");
            Message = o.GetString("message");
            Hint = o.GetString("hint");
            ServerReply = o.GetString("server_reply");
            Milliseconds = o.GetInt64("ms") ?? 0;
        }
    }

    public sealed class AccountTestResult
    {
        public IList<AccountTestStep> Steps { get; private set; }
        public JsonObject Json { get; private set; }

        internal AccountTestResult(JsonObject o)
        {
            Json = o;
            var steps = new List<AccountTestStep>();
            var a = o.GetArray("steps");
            if (a != null)
                foreach (var x in a)
                    if (x is JsonObject) steps.Add(new AccountTestStep((JsonObject)x));
            Steps = steps;
        }
    }

    public sealed class AccountTestOperation : MailOAuthOperation
    {
        internal AccountTestOperation(OpHandle h, MailOAuthContext c) : base(h, c) { }

        public AccountTestResult Result() { return new AccountTestResult(ResultJson()); }

        public Task<AccountTestResult> CompleteAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            return Complete(cancellationToken, Result);
        }
    }
}
